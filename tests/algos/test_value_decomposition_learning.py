"""What IQL, VDN, QMIX and QTRAN learn on two-agent cooperative matrix games (4 seeds, fixed keys; slow:
each algorithm compiles once, ~30-50 s on a loaded 2-core machine).

- the climbing game (Claus & Boutilier 1998) under uniform exploration: the additive (VDN) and monotonic
  (QMIX) factorisations and IQL cannot represent the optimum (0, 0) = 11 beside its -30 penalties and settle
  elsewhere (VDN and IQL: on (2, 2) = 5, the argmax of the row and column means) -- the documented failure;
- the penalty game (optimum 10 on the anti-diagonal, -20 on the diagonal, the safe (1, 1) = 2) with a decaying
  epsilon: IQL, VDN and QMIX all settle on the safe (1, 1), QTRAN-base reaches an optimum in most seeds;
- an easy game (one 5 among zeros and a 2) that VDN and QMIX solve in most seeds.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from trustmarl.algos import make_algorithm
from trustmarl.experiment.config import build_config

pytestmark = pytest.mark.slow

CLIMBING = [[11.0, -30.0, 0.0], [-30.0, 7.0, 6.0], [0.0, 0.0, 5.0]]
PENALTY = [[-20.0, 0.0, 10.0], [0.0, 2.0, 0.0], [10.0, 0.0, -20.0]]
EASY = [[2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 5.0, 0.0]]


def greedy_joint_actions(algo: str, payoff, epsilon_end: float, seeds: int = 4, updates: int = 300) -> list[tuple]:
    extra = {"algo.critic_lr": 3e-3} if algo in ("qmix", "qtran") else {}
    extra |= {"algo.mixer_embed": 8, "algo.hypernet_hidden": 8} if algo == "qmix" else {}
    extra |= {"algo.joint_hidden": [16, 16]} if algo == "qtran" else {}
    cfg = build_config(algo, "matrix/custom", {
        "env.payoff": payoff, "algo.num_envs": 16, "algo.rollout_len": 1, "algo.buffer_size": 512, "algo.batch_size": 64,
        "algo.learning_starts": 64, "algo.hidden_sizes": [16], "algo.epsilon_end": epsilon_end,
        "algo.epsilon_anneal_end": 1500, "algo.target_every": 20, "algo.actor_lr": 3e-3, "algo.team_reward": "mean", **extra})
    a = make_algorithm(cfg, total_updates=updates)
    run = jax.jit(jax.vmap(lambda k: jax.lax.scan(lambda c, _: a.update(c), a.init(k), None, length=updates)[0]))
    state = run(jax.random.split(jax.random.PRNGKey(0), seeds))
    obs, avail = (np.ones((seeds, 2, 1), np.float32),), (np.ones((seeds, 2, 3), bool),)
    return [tuple(x) for x in np.asarray(jax.vmap(a.greedy)(state.actor_params, obs, avail)[0]).tolist()]


def test_climbing_game_defeats_additive_and_monotonic_factorisations():
    assert greedy_joint_actions("vdn", CLIMBING, 1.0) == [(2, 2)] * 4  # the additive fit's argmax, not (0, 0)
    assert greedy_joint_actions("iql", CLIMBING, 1.0) == [(2, 2)] * 4
    assert (0, 0) not in greedy_joint_actions("qmix", CLIMBING, 1.0)


def test_penalty_game_only_qtran_coordinates():
    for algo in ("iql", "vdn", "qmix"):
        assert greedy_joint_actions(algo, PENALTY, 0.05) == [(1, 1)] * 4, algo
    found = [a in ((0, 2), (2, 0)) for a in greedy_joint_actions("qtran", PENALTY, 0.05)]
    assert sum(found) >= 2, found


@pytest.mark.parametrize("algo", ["vdn", "qmix"])
def test_easy_game_is_solved(algo):
    found = greedy_joint_actions(algo, EASY, 0.05)  # (these keys: one seed of each settles on (0, 0) = 2)
    assert found.count((2, 1)) >= 3, found
