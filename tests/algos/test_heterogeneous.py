"""Stability on a heterogeneous task nobody tuned for (tests/algos/signal_gate.py): a discrete speaker
that sees a hidden target, a continuous mover that hears it, a binary gate rewarded for timing.

The issue this guards: on a task of this shape HAPPO with default settings ended below MAPPO and, in one
seed of four, lost about 90% of its gains while the critic's explained variance stayed high. HAPPO's
default then bootstrapped every time limit (HARL's MaMuJoCo practice), although here the limit is part
of the task (the speaker and the gate observe the time). Measured on this task, seeds 0-3, ~287k env
steps, team return: HAPPO with the bootstrap 3.6, 9.2, 13.2, 12.5 (mean 9.6); without it (the default
now) 11.5, 18.3, 19.8, 5.2 (13.7); MAPPO 18.6, 17.3, 19.8, 5.2 (15.2). The regression test trains
HAPPO and MAPPO (defaults; MAPPO's share_params=auto gives each agent its own network here) on four
seeds: no seed may lose more than half of its best gain, and HAPPO may not end below MAPPO by more
than the seed noise (3; the bootstrapped HAPPO was 5.6 below).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from _util import train
from signal_gate import SignalGate, scripted_return

ENV = "signal_gate:SignalGate"


def test_the_task_separates_random_from_scripted_play():
    env = SignalGate()
    assert [g.action_space.kind for g in env.groups] == ["discrete", "continuous", "discrete"]
    assert scripted_return(env, jax.random.PRNGKey(0)) > 15.0  # measured 19.1; uniform random play: -17.6


def smoothed(r: np.ndarray, w: int = 10) -> np.ndarray:
    """Per-seed running mean over ``w`` updates (NaN-aware), ``[seeds, updates - w + 1]``."""
    r = np.where(np.isfinite(r), r, np.nan)
    return np.stack([[np.nanmean(s[i : i + w]) for i in range(len(s) - w + 1)] for s in r])


@pytest.mark.slow
def test_happo_keeps_its_gains_and_is_not_below_mappo():
    """4 seeds x 150 updates (307k env steps) each of HAPPO and MAPPO with their default settings."""
    seeds, updates = (0, 1, 2, 3), 150
    finals = {}
    for algo in ("happo", "mappo"):
        _, _, m = train(algo, ENV, updates, seeds=seeds)
        curve = smoothed(np.asarray(m["episode_return"]))
        start, peak, final = curve[:, 0], curve.max(axis=1), curve[:, -1]
        assert np.all(peak - start > 5.0), (algo, start, peak)  # it learns
        assert np.all(final >= peak - 0.5 * (peak - start)), (algo, start, peak, final)  # and keeps it
        finals[algo] = final
    assert finals["happo"].mean() >= finals["mappo"].mean() - 3.0, finals
