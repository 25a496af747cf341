"""Value decomposition on SMAX 3m with the packaged presets: calibrated learning tests (slow).

Each algorithm trains with its ``trustmarl/configs/<algo>/smax.yaml`` preset (pymarl's SMAC settings for
feed-forward agents: 64-unit ReLU Q-networks, epsilon 1 -> 0.05 over 50k env steps, hard target copies every
200 gradient steps, Adam 5e-4, 8 env copies x 8 steps per update, one gradient step of 128 transitions) on
``smax/3m`` (JaxMARL's HeuristicEnemySMAX: 3 marines against 3 scripted marines; the team reward is the
enemies' health lost, normalised to 1 for the whole team, plus 1 for a won battle) with ``SEEDS`` vmapped seeds
split from ``PRNGKey(0)``; then the greedy policy plays ``EPISODES`` fresh battles per seed (the same battles,
``PRNGKey(1000)``, at every evaluation).

**QMIX's mixer initialisation on SMAX's state** (Rashid et al. 2018; our preset). SMAX's global state
(``obs["world_state"]``, 72 features on 3m) holds raw map coordinates (0-32), not SMAC's normalised features.
With LeCun-normal hypernetwork kernels the untrained mixer gives Q_tot ~ 215 and dQ_tot/dQ_i ~ 255 on such
states (utilities ~0.1; team returns are ~1), and QMIX did not learn. Measured on the 2-core machine
(``python tests/algos/test_qmix_smax_learning.py STEPS '{overrides}' ALGO`` prints the curve of one run):

- before, LeCun mixer kernels, 2 seeds: greedy win rate 0.0 for both seeds at every evaluation from 25,600 to
  1,024,000 env steps; the training return (last 10% of each 25,600-step chunk) fell from 0.096 to 0.01-0.07.
  With ``algo.reward_scale=10`` (JaxMARL's REW_SCALE) to 512,000 steps: win rate 0.0, return 0.01-0.20;
- the same kernels with the state divided by 32 (the map width) in the mixer (a one-off diagnostic, not an
  option), 102,400 steps: training return 0.20 -> 0.32, greedy win rate 0.0 and 0.125: it learns, slowly;
- the preset now (``mixer_init_scale: 0.001``: orthogonal kernels at scale 0.001 in every mixer layer, JaxMARL's
  MIXER_INIT_SCALE; the mixer starts at Q_tot ~ 0): greedy win rates per 25,600-step chunk [0.0, 0.094],
  [0.406, 0.406], [0.438, 0.281], [0.594, 0.5] at 102,400 steps, then [0.594, 0.594], [0.688, 0.562],
  [0.812, 0.562] at 204,800 (training return 0.35 -> 1.43, training win rate 0.53), 99 s at a load of ~10;
- VDN (Sunehag et al. 2018), 2 seeds, 256,000 steps: training return 0.18 -> 0.32, greedy win rate 0.0;
- IQL, 2 seeds, 256,000 steps: training return 0.18 -> 0.43, greedy win rate 0.094 and 0.0.

So :func:`test_qmix_wins_smax_3m` asserts QMIX's mean greedy win rate after 102,400 env steps above
``QMIX_WIN`` (measured 0.547), and :func:`test_vdn_beats_random_policy_on_smax_3m` that VDN's greedy return beats
the uniformly random policy's (thresholds in the constants below with their measurements).
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
CHUNK = 25_600  # env steps between the calibration's evaluations (400 updates of 8 x 8 steps)
EPISODES = 32  # greedy evaluation battles per seed
QMIX_STEPS = 102_400  # env steps per seed of the QMIX test
QMIX_WIN = 0.25  # mean greedy win rate QMIX must exceed after QMIX_STEPS (measured 0.594 and 0.5; 0.0 before the fix)
VDN_STEPS = 256_000  # env steps per seed of the VDN test
# the uniformly random policy's team return on the same 32 evaluation battles x 2 seeds: measured 0.140 and 0.171
# (mean 0.156; battles last 16-17 steps, win rate 0.0)
RANDOM_RETURN = 0.156
# VDN's greedy team return after VDN_STEPS must exceed this: measured 0.233 and 0.388 (mean 0.31; greedy win rate
# 0.0; the greedy return over the run's evaluations every 25,600 steps: 0.23, 0.10, 0.11, 0.15, 0.18, 0.09, 0.17,
# 0.23, 0.30, 0.31), 2.1 min on the shared 2-core machine at a load of ~7
VDN_RETURN = 0.20


def train_and_evaluate(algo_name: str = "qmix", steps: int = QMIX_STEPS, seeds: int = SEEDS, chunk: int = CHUNK,
                       overrides: dict | None = None, report=None) -> list[dict[str, np.ndarray]]:
    """Train ``algo_name`` on smax/3m with its preset; the greedy evaluation (``run_episodes``) after every chunk."""
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
        out.append(evaluate(algo, jax.vmap(algo.policy_view)(state), seeds, deterministic=True))
        if report is not None:
            train_win = np.nanmean(np.asarray(m["episode_win_rate"])[:, -per_chunk // 10:])
            train_ret = np.nanmean(np.asarray(m["episode_return"])[:, -per_chunk // 10:])
            report(f"{(i + 1) * per_chunk * spu:>9,d} env steps/seed  greedy: win rate {np.round(out[-1]['win_rate'], 3)},"
                   f" return {np.round(out[-1]['return'], 3)}; training (last 10% of the chunk): win rate"
                   f" {train_win:.3f}, return {train_ret:.3f}  ({time.perf_counter() - t0:.0f} s)")
    return out


def evaluate(algo, views, seeds: int, deterministic: bool) -> dict[str, np.ndarray]:
    k_env, k_act = jax.random.split(jax.random.PRNGKey(1000))  # the same battles at every evaluation
    return run_episodes(algo, views, JaxStepper(algo.env, seeds, EPISODES, k_env), k_act, deterministic)


def random_policy(seeds: int = SEEDS) -> dict[str, np.ndarray]:
    """The uniformly random policy over the available actions (epsilon 1 throughout) on the same battles."""
    cfg = build_config("vdn", "smax/3m", {"algo.epsilon_start": 1.0, "algo.epsilon_end": 1.0})
    algo = make_algorithm(cfg, total_updates=1)
    state = init_seeds(algo, jax.random.split(jax.random.PRNGKey(0), seeds))
    return evaluate(algo, jax.vmap(algo.policy_view)(state), seeds, deterministic=False)


@pytest.mark.slow
def test_qmix_wins_smax_3m():
    win = train_and_evaluate("qmix", QMIX_STEPS)[-1]["win_rate"]  # the calibration's chunks: the same computation
    assert win.mean() > QMIX_WIN, win


@pytest.mark.slow
def test_vdn_beats_random_policy_on_smax_3m():
    rnd = random_policy()["return"]
    assert abs(rnd.mean() - RANDOM_RETURN) < 0.03, rnd  # the baseline itself, as measured
    ret = train_and_evaluate("vdn", VDN_STEPS)[-1]["return"]  # the calibration's chunks: the same computation
    assert ret.mean() > VDN_RETURN, ret


if __name__ == "__main__":  # calibration: python tests/algos/test_qmix_smax_learning.py STEPS '{overrides}' ALGO
    import json

    print("random policy:", {k: np.round(v, 3).tolist() for k, v in random_policy().items()}, flush=True)
    train_and_evaluate(sys.argv[3] if len(sys.argv) > 3 else "qmix", int(sys.argv[1]) if len(sys.argv) > 1 else QMIX_STEPS,
                       overrides=json.loads(sys.argv[2]) if len(sys.argv) > 2 else None,
                       report=lambda s: print(s, flush=True))
