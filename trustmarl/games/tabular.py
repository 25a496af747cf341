"""Exact evaluation of two-agent tabular Markov games: the oracle for MATRL's bounds (Wen et al. 2021).

A game has transitions ``P[s, a_1, a_2, s']``, rewards ``R[i, s, a_1, a_2]`` (general sum), an initial
distribution ``p0[s]`` and a discount ``gamma``; policies are tables ``pi_1[s, a_1]``, ``pi_2[s, a_2]``.
Everything is exact linear algebra (a linear solve per evaluation), jittable and vmappable, so
Theorem 1 and Remark 1 can be checked on thousands of random games (`tests/games/test_tabular.py`).

Conventions (Wen et al. 2021, section 3.1 and App. B, as TRPO): ``eta_i = E[sum_t gamma^t R_i]``;
``p^pi(s) = sum_t gamma^t P(s_t = s)`` is the *unnormalised* discounted visitation, for which Theorem 1
holds as stated.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike


class TabularGame(NamedTuple):
    transition: Array  # [S, A1, A2, S]
    reward: Array  # [2, S, A1, A2]
    initial: Array  # [S]
    gamma: Array  # scalar


class Evaluation(NamedTuple):
    value: Array  # [2, S]  V_i^pi(s)
    q: Array  # [2, S, A1, A2]  Q_i^pi(s, a_1, a_2)
    advantage: Array  # [2, S, A1, A2]  A_i^pi = Q_i^pi - V_i^pi
    visitation: Array  # [S]  unnormalised discounted visitation of pi from p0
    eta: Array  # [2]  eta_i(pi) = sum_s p0(s) V_i(s)


def joint_policy(pi1: ArrayLike, pi2: ArrayLike) -> Array:
    """``[S, A1, A2]`` product policy ``pi_1(a_1|s) pi_2(a_2|s)``."""
    return jnp.asarray(pi1)[:, :, None] * jnp.asarray(pi2)[:, None, :]


def evaluate(game: TabularGame, pi1: ArrayLike, pi2: ArrayLike) -> Evaluation:
    """Exact values, advantages, visitation and returns of the joint policy (Wen et al. 2021, eq. 1)."""
    joint = joint_policy(pi1, pi2)
    p_pi = jnp.einsum("sab,sabt->st", joint, game.transition)  # [S, S]
    r_pi = jnp.einsum("sab,isab->is", joint, game.reward)  # [2, S]
    n = p_pi.shape[0]
    system = jnp.eye(n, dtype=p_pi.dtype) - game.gamma * p_pi
    value = jnp.linalg.solve(system, r_pi.T).T  # V = (I - gamma P_pi)^-1 r_pi
    q = game.reward + game.gamma * jnp.einsum("sabt,it->isab", game.transition, value)
    advantage = q - value[:, :, None, None]
    visitation = jnp.linalg.solve(system.T, game.initial)  # p0^T (I - gamma P_pi)^-1
    return Evaluation(value=value, q=q, advantage=advantage, visitation=visitation, eta=value @ game.initial)


def surrogate(evaluation: Evaluation, pi1_new: ArrayLike, pi2_new: ArrayLike) -> Array:
    """``[2]`` expected advantage gains ``g_i^pi(pi_hat_1, pi_hat_2) = sum_s p^pi(s) sum_a pi_hat(a|s) A_i^pi(s, a)``
    (Wen et al. 2021, eq. 3)."""
    joint = joint_policy(pi1_new, pi2_new)
    return jnp.einsum("s,sab,isab->i", evaluation.visitation, joint, evaluation.advantage)


def max_tv(pi: ArrayLike, pi_new: ArrayLike) -> Array:
    """``max_s D_TV(pi(.|s), pi_new(.|s))`` (Wen et al. 2021, eq. 7)."""
    return jnp.max(0.5 * jnp.sum(jnp.abs(jnp.asarray(pi_new) - jnp.asarray(pi)), axis=-1))


def random_game(
    rng: np.random.Generator, n_states: int, n_actions: tuple[int, int], gamma: float, sharpen: float = 1.0, batch: int = 1
) -> TabularGame:
    """``batch`` random games (numpy, stacked on a leading axis): normal rewards, transitions ``u^sharpen``
    normalised (``u`` uniform), a random initial distribution. Drawn on the host so that jitted oracles
    do not compile a random-number generator."""
    a1, a2 = n_actions
    u = rng.uniform(1e-3, 1.0, size=(batch, n_states, a1, a2, n_states)) ** sharpen
    p0 = rng.uniform(1e-3, 1.0, size=(batch, n_states))
    return TabularGame(
        transition=u / u.sum(axis=-1, keepdims=True),
        reward=rng.normal(size=(batch, 2, n_states, a1, a2)),
        initial=p0 / p0.sum(axis=-1, keepdims=True),
        gamma=np.broadcast_to(np.asarray(gamma, np.float64), (batch,)).copy(),
    )


def random_policy(rng: np.random.Generator, n_states: int, n_actions: int, batch: int = 1) -> np.ndarray:
    """``[batch, S, A]`` policies with rows drawn from a flat Dirichlet."""
    return rng.dirichlet(np.ones(n_actions), size=(batch, n_states))
