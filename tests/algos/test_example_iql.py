"""The "Writing an algorithm" example (examples/iql.py) registers, trains through the runner and learns."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def test_iql_example_learns_a_matrix_game(tmp_path):
    import examples.iql  # noqa: F401  (registers "my_iql")
    from trustmarl.algos import algo_names
    from trustmarl.experiment.config import build_config
    from trustmarl.experiment.logger import read_jsonl
    from trustmarl.experiment.runner import evaluate_run, train

    assert "my_iql" in algo_names()
    # two agents, three actions: (2, 1) pays 5, (0, 0) pays 2, the rest 0 (an untrained greedy policy
    # lands on the optimum with probability 1/9; the TD loss must fall too)
    cfg = build_config("my_iql", "matrix/custom", {
        "env.payoff": [[2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 5.0, 0.0]], "total_steps": 3000, "chunk_updates": 10,
        "algo.num_envs": 10, "algo.rollout_len": 1, "algo.buffer_size": 1000, "algo.batch_size": 64,
        "algo.learning_starts": 100, "algo.grad_steps": 1, "algo.hidden_sizes": [16], "algo.epsilon_decay_steps": 1500,
        "algo.tau": 0.1, "algo.actor_lr": 3e-3,
    })
    summary = train(cfg, tmp_path / "iql", progress=False, tensorboard=False)
    assert summary["status"] == "completed"
    res = evaluate_run(tmp_path / "iql", episodes=4)
    assert res["mean_return"] == pytest.approx(5.0)  # both agents learned the better equilibrium
    td = [r["loss/td"] for r in read_jsonl(tmp_path / "iql" / "metrics.jsonl") if r["diag/learning"] == 1]
    assert np.mean(td[-20:]) < 0.5 * np.mean(td[:5]), (td[:5], td[-20:])
