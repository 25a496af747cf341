"""MATRL's lower bounds on the improvement of a joint policy update (Wen et al. 2021, Theorem 1, Remark 1).

Theorem 1 (Wen et al. 2021, eq. 4): if every agent ``j`` moves from ``pi_j`` to ``pi_hat_j`` with
``alpha_j = max_s D_TV(pi_j(.|s), pi_hat_j(.|s))``, then for agent ``i``

    eta_i(pi_hat) - eta_i(pi) >= g_i(pi_hat) - 4 gamma eps_i / (1 - gamma)^2 * (alpha_i + alpha_-i - alpha_i alpha_-i)^2,

``eps_i = max_{s,a} |A_i^pi(s, a)|`` and ``g_i`` the surrogate of eq. 3 (unnormalised discounted
visitation). The joint policy is ``(1 - prod_j (1 - alpha_j))``-coupled, which is
``alpha_i + alpha_-i - alpha_i alpha_-i`` for two agents; for ``n`` agents the same proof gives the
penalty with ``1 - prod_j (1 - alpha_j)`` (Wen et al. 2021, App. B, Lemmas 1-2, generalised).

Remark 1 (Wen et al. 2021, eq. 31): for the mixture ``pi_bar_j = rho_j pi_j + (1 - rho_j) pi_hat_j``,
``D_TV(pi_j, pi_bar_j) = (1 - rho_j) alpha_j``, so the same bound holds with those smaller distances.

These are diagnostics: in deep RL ``eps`` and ``alpha`` are only estimated (e.g. the largest |advantage|
and the largest per-sample TV in a batch), so the logged value is a heuristic, not a guarantee.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike


def joint_coupling(alpha: ArrayLike) -> Array:
    """``1 - prod_j (1 - alpha_j)`` over the last axis: the coupling of the joint policy (Wen et al. 2021,
    App. B Lemma 1; ``alpha_1 + alpha_2 - alpha_1 alpha_2`` for two agents, eq. 4)."""
    return 1.0 - jnp.prod(1.0 - jnp.asarray(alpha), axis=-1)


def theorem1_penalty(alpha: ArrayLike, eps: ArrayLike, gamma: float) -> Array:
    """``4 gamma eps / (1 - gamma)^2 * (1 - prod_j (1 - alpha_j))^2`` (Wen et al. 2021, eq. 4 / eq. 22).

    ``alpha`` ``[..., n]`` per-agent max-TV distances; ``eps`` broadcasts against the leading axes (one
    value per agent ``i`` whose bound is wanted, e.g. ``eps [n]`` with ``alpha [n]`` gives ``[n]``).
    """
    coupling = joint_coupling(alpha)
    return 4.0 * gamma * jnp.asarray(eps) / (1.0 - gamma) ** 2 * coupling**2


def remark1_penalty(alpha: ArrayLike, rho: ArrayLike, eps: ArrayLike, gamma: float) -> Array:
    """Theorem 1's penalty for the mixture ``pi_bar`` (Wen et al. 2021, eq. 31): ``alpha_j -> (1 - rho_j) alpha_j``.

    For two agents the coupling is ``alpha_1 rt_1 + alpha_2 rt_2 - alpha_1 alpha_2 rt_1 rt_2`` with
    ``rt_j = 1 - rho_j``; never larger than :func:`theorem1_penalty` for ``rho`` in ``[0, 1]``.
    """
    return theorem1_penalty(jnp.asarray(alpha) * (1.0 - jnp.asarray(rho)), eps, gamma)


def improvement_lower_bound(surrogate: ArrayLike, alpha: ArrayLike, eps: ArrayLike, gamma: float) -> Array:
    """``g_i - theorem1_penalty``: the guaranteed ``eta_i(new) - eta_i(old)`` of Theorem 1 (eq. 4)."""
    return jnp.asarray(surrogate) - theorem1_penalty(alpha, eps, gamma)
