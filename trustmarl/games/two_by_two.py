"""Two-agent, two-action matrix games on exact payoffs: values, policy gradients, equilibria.

A game is a payoff tensor ``P`` of shape ``[2, 2, 2]``: ``P[k, a_1, a_2]`` is agent ``k``'s payoff (the
layout of :class:`trustmarl.envs.matrix.GeneralSumMatrixGame`). A policy profile is ``pol = (alpha,
beta)``: the probabilities that agent 1 and agent 2 play action 0 (Singh et al. 2000; Wen et al. 2021,
App. D). Everything is pure ``jax.numpy`` and vmappable over games.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from trustmarl.trust.nash import equilibrium_candidates


def clip01(x: ArrayLike) -> Array:
    """Project a probability onto ``[0, 1]`` (the projected gradient step of Singh et al. 2000)."""
    return jnp.clip(x, 0.0, 1.0)


def values(payoffs: ArrayLike, alpha: ArrayLike, beta: ArrayLike) -> Array:
    """``[2]`` expected payoffs ``V_k(alpha, beta) = sum_{a_1, a_2} pi_1(a_1) pi_2(a_2) P_k[a_1, a_2]``."""
    p = jnp.asarray(payoffs)
    pi1 = jnp.stack([alpha, 1.0 - alpha])
    pi2 = jnp.stack([beta, 1.0 - beta])
    return (p @ pi2) @ pi1


def gradients(payoffs: ArrayLike, alpha: ArrayLike, beta: ArrayLike) -> tuple[Array, Array]:
    """``(dV_1/dalpha (beta), dV_2/dbeta (alpha))`` of the bilinear values (Singh et al. 2000, eq. 3;
    Wen et al. 2021, App. D): ``dV_1/dalpha = beta u_1 + P_1[0,1] - P_1[1,1]`` and
    ``dV_2/dbeta = alpha u_2 + P_2[1,0] - P_2[1,1]``, ``u_k = P_k[0,0] - P_k[0,1] - P_k[1,0] + P_k[1,1]``."""
    p = jnp.asarray(payoffs)
    u1 = p[0, 0, 0] - p[0, 0, 1] - p[0, 1, 0] + p[0, 1, 1]
    u2 = p[1, 0, 0] - p[1, 0, 1] - p[1, 1, 0] + p[1, 1, 1]
    return beta * u1 + p[0, 0, 1] - p[0, 1, 1], alpha * u2 + p[1, 1, 0] - p[1, 1, 1]


def nash_equilibria(payoffs: ArrayLike) -> tuple[Array, Array]:
    """``(candidates [5, 2], valid [5])``: the pure profiles (as ``(alpha, beta)``, lexicographic in the
    actions) and the interior mixed one, exactly as support enumeration finds them (ties count)."""
    return equilibrium_candidates(jnp.asarray(payoffs), tol=0.0)


def first_nash(payoffs: ArrayLike) -> Array:
    """The first equilibrium in support-enumeration order (what the reference code hands to WoLF)."""
    cands, valid = nash_equilibria(payoffs)
    return cands[jnp.argmax(valid)]


def near_equilibrium(pol: ArrayLike, candidates: Array, valid: Array, sq_radius: float = 2.5e-3) -> Array:
    """True when both coordinates are within ``sqrt(sq_radius)`` (0.05) of one valid equilibrium.

    The reference code's test ``(x - x*)^2 < 2.5e-3`` per coordinate, kept verbatim."""
    pol = jnp.asarray(pol)
    close = jnp.all((pol[None, :] - candidates) ** 2 < sq_radius, axis=-1)
    return jnp.any(close & valid)
