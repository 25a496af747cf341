"""MATRL on a matrix game logs each agent's action probabilities and prints them at the end of a run, so a
zero-sum run (matching pennies: every return is 0) shows what the agents learned. The logged values are the
next policy's probabilities, checked against the policy read back from the checkpoint."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np

from trustmarl.experiment import cli
from trustmarl.experiment.runner import load_run_state


def test_matching_pennies_run_shows_the_action_probabilities(tmp_path, capsys):
    run = tmp_path / "mp"
    argv = ["train", "matrl", "matrix/matching_pennies", "algo.num_envs=64", "algo.rollout_len=4",
            "algo.hidden_sizes=[8]", "algo.actor_head_gain=1.0", "total_steps=512", "chunk_updates=2",
            "--out", str(run), "--no-progress"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    summary = json.loads((run / "summary.json").read_text())
    probs = np.asarray(summary["final_action_probs_per_agent"])  # [agents, actions], last 10% = the last update
    assert probs.shape == (2, 2) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    _, algo, state, _ = load_run_state(run)
    obs, avail = (jnp.ones((1, 2, 1)),), (jnp.ones((1, 2, 2), bool),)
    policy = np.exp(np.asarray(algo.policy(jax.tree.map(lambda x: x[0], state.actor_params), obs, avail)[0][0]))[0]
    np.testing.assert_allclose(probs, policy, atol=1e-5)
    line = next(l for l in out.splitlines() if l.startswith("matrl on matrix/matching_pennies"))
    shown = " ".join("[" + " ".join(f"{p:.2f}" for p in agent) + "]" for agent in probs).replace("] [", "], [")
    assert f"action probabilities per agent {shown}" in line, line


def test_no_action_probabilities_for_continuous_or_many_actions():
    from trustmarl.algos import make_algorithm
    from trustmarl.experiment.config import build_config

    for env in ("matrix/differential", "mpe/simple_spread"):  # continuous; 5 actions
        algo = make_algorithm(build_config("matrl", env, {"algo.hidden_sizes": [8], "algo.num_envs": 2,
                                                          "algo.rollout_len": 4}), total_updates=1)
        assert algo.action_probabilities(None, None) == {}
