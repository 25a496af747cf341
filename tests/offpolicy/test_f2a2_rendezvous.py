"""F2A2-DDPG, F2A2-TD3 and F2A2-SAC at their defaults on Rendezvous (``benchmarks/tryout.py``: 3 agents meet on a
ring of 8 cells in 12 steps; random play -9.84, walking to agent 0's start cell -1.06), a task none of them was
tuned for.

The defaults (separate objectives, the consensus terms as a proximal step outside Adam: ``joint=false``,
``penalty=proximal``) learn; the paper's setting read literally (the joint objective of Li et al. 2023, eq. 4.4, with
the consensus terms on the gradient Adam normalises: ``joint=true``, ``penalty=gradient``) learns nothing. Measured,
15k env steps (``benchmarks/results/tryout_f2a2_defaults.json``, ``tryout_f2a2_sac_defaults.json``, per seed):
F2A2-DDPG -1.70, -1.08, -1.25; F2A2-TD3 -2.08, -1.93, -3.19; F2A2-SAC -6.28 (one seed); MADDPG -1.82, -2.11, -2.53.
The paper's setting: F2A2-DDPG -9.62 (one seed, ``tryout_f2a2_paper_and_maac.json``; -9.93 at 60k steps, 3 seeds,
``tryout.json``). One seed of 15k
steps each here, thresholds set below the worst measured seed with a margin, so a change to either side shows.
F2A2-SAC is slow here (one seed of 15k steps took 23 minutes on 2 shared cores: every agent's copy evaluates the
whole attention critic)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))  # tryout: the Rendezvous env

from trustmarl.experiment.config import build_config  # noqa: E402
from trustmarl.experiment.runner import train  # noqa: E402

RANDOM = -9.84  # uniform random play (benchmarks/tryout.py, 2,000 episodes)
# (algorithm, threshold): the worst measured seed minus a margin of about 2 (F2A2-SAC: 1.7 from its one seed)
THRESHOLDS = [("f2a2_ddpg", -4.0), ("f2a2_td3", -5.0), ("f2a2_sac", -8.0)]


def _final(tmp_path, algo: str, **keys) -> float:
    over = {"total_steps": 15_000, "eval_every": 0, **{f"algo.{k}": v for k, v in keys.items()}}
    return train(build_config(algo, "tryout:Rendezvous", over), tmp_path / algo, progress=False,
                 tensorboard=False)["final_return"]


@pytest.mark.slow  # 15k env steps each: F2A2-DDPG 41 s, F2A2-TD3 57 s at a load of 6; F2A2-SAC 7 min (18-23 min at a load of 13)
@pytest.mark.parametrize("algo,threshold", THRESHOLDS)
def test_f2a2_learns_rendezvous_at_its_defaults(tmp_path, algo, threshold):
    assert _final(tmp_path, algo) > threshold


@pytest.mark.slow  # one off-policy run of 15k env steps: 42 s at a load of 6
def test_the_paper_setting_read_literally_learns_nothing_on_rendezvous(tmp_path):
    """Recorded, not endorsed: the joint objective with the consensus terms inside Adam stays at random play's level
    (the duals wind up and the joint actor has no gradient at the critic's fixed point, docs/algorithms/f2a2_ddpg.md)."""
    assert _final(tmp_path, "f2a2_ddpg", joint=True, penalty="gradient") < RANDOM + 1.5
