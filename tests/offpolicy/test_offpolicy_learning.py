"""Off-policy learning tests with fixed seeds and thresholds calibrated on measured runs.

MPE simple_spread (3 agents, 25-step episodes): a uniformly random policy's team return is about
-27 to -30 and an untrained deterministic one about -42. Measured (2 seeds, batch 256, 64-unit
networks, the algorithms' defaults otherwise): the deterministic evaluation return after 30k env
steps is -19.9 (MADDPG) and -20.5 (MATD3); MAAC learns slower, -24.8 after 60k.
"""

from __future__ import annotations

import pytest

from trustmarl.experiment.config import build_config
from trustmarl.experiment.runner import train

SPREAD = {"algo.batch_size": 256, "algo.hidden_sizes": [64, 64], "algo.buffer_size": 100_000, "eval_episodes": 10}


def run(tmp_path, algo: str, steps: int, **extra):
    cfg = build_config(algo, "mpe/simple_spread", {**SPREAD, "total_steps": steps, "eval_every": steps, **extra})
    summary = train(cfg, tmp_path / algo, progress=False, tensorboard=False)
    assert summary["status"] == "completed"
    return summary


@pytest.mark.slow  # moved out of the default suite to keep it under 20 minutes on 2 cores
def test_maddpg_learns_simple_spread(tmp_path):
    s = run(tmp_path, "maddpg", 30_000)
    assert s["final_eval_return"] > -24.0, s
    assert s["final_return"] > s["initial_return"] + 4.0, s


@pytest.mark.slow
def test_matd3_learns_simple_spread(tmp_path):
    s = run(tmp_path, "matd3", 30_000, num_seeds=2)
    assert s["final_eval_return"] > -24.0, s
    assert all(r > -26.0 for r in s["final_eval_return_per_seed"]), s


@pytest.mark.slow
def test_maac_learns_simple_spread(tmp_path):
    s = run(tmp_path, "maac", 60_000, num_seeds=2)
    assert s["final_eval_return"] > -28.0, s
    assert s["final_return"] > s["initial_return"] + 2.5, s


# MaMuJoCo HalfCheetah 2x3 with the TD3-style preset (configs/<algo>/mamujoco.yaml: 10k random warm-up
# steps, 1000-step episodes). Measured for MADDPG (seed 0): training return -297 (the warm-up's random
# policy) -> +532 after 60k steps, deterministic evaluation +1099. Evaluations are noisy this early
# (-235 at 40k, +403 at 50k), so the test uses the whole training curve and a loose evaluation bar.
@pytest.mark.slow
@pytest.mark.parametrize("algo", ["maddpg", "matd3"])
def test_learns_halfcheetah_2x3(tmp_path, algo):
    pytest.importorskip("gymnasium_robotics")
    cfg = build_config(algo, "mamujoco/halfcheetah_2x3", {"total_steps": 60_000, "eval_every": 60_000, "eval_episodes": 5})
    s = train(cfg, tmp_path / algo, progress=False, tensorboard=False)
    assert s["status"] == "completed"
    assert s["final_return"] > s["initial_return"] + 300.0, s
    assert s["final_eval_return"] > 100.0, s
