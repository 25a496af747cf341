"""MATRL's policy-space meta-game: payoff tensors, mixtures and the restricted game (Wen et al. 2021).

In MATRL every agent ``j`` has two pure meta-strategies: its current policy ``pi_j`` (index 0) and its
candidate ``pi_hat_j`` from an independent trust-region step (index 1). A joint choice is
``x in {0, 1}^n``; agent ``k``'s payoff is the expected advantage of the joint policy ``pi^x`` relative
to the current joint policy (Wen et al. 2021, eq. 3 and eq. 5):

    G_k[x] = g_k^pi(pi_1^{x_1}, ..., pi_n^{x_n}),      G_k[0, ..., 0] = 0.

Layout used everywhere in trustmarl: a payoff tensor ``G`` has shape ``[n, 2, ..., 2]`` (``n`` axes of
size 2 after the agent axis), ``G[k, x_1, ..., x_n]``. A meta-strategy profile is ``rho`` of shape
``[n]``: ``rho_j`` is the probability that agent ``j`` keeps its CURRENT policy, so the aggregated
policy is ``pi_bar_j = rho_j pi_j + (1 - rho_j) pi_hat_j`` (Wen et al. 2021, section 3.2).

All functions are pure ``jax.numpy`` code with static shapes (``n`` is read from the array shapes),
so they can be jitted and vmapped (e.g. over seeds, or over thousands of random games).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike


def n_players(payoffs: ArrayLike) -> int:
    """The number of agents ``n`` of a payoff tensor of shape ``[n, 2, ..., 2]`` (static)."""
    shape = jnp.shape(payoffs)
    n = len(shape) - 1
    if n < 1 or shape[0] != n or any(s != 2 for s in shape[1:]):
        raise ValueError(f"a meta-game payoff tensor must have shape [n, 2, ..., 2] with n axes of size 2, got {shape}")
    return n


def strategy_weights(rho: ArrayLike) -> Array:
    """``[n, 2]`` per-agent weights of the two meta-strategies: ``(rho_j, 1 - rho_j)``."""
    rho = jnp.asarray(rho)
    return jnp.stack([rho, 1.0 - rho], axis=-1)


def _contract(tensor: Array, weights: Array, skip: int | None = None) -> Array:
    """Contract the trailing ``n`` size-2 axes of ``tensor`` with ``weights[j]``, except axis ``skip``.

    ``tensor`` has shape ``[..., 2, ..., 2]`` (``n`` trailing axes, agent ``j`` on trailing axis ``j``).
    """
    n = weights.shape[0]
    out = tensor
    for j in reversed(range(n)):  # agents after ``skip`` sit on the last axis, those before it on the
        if j == skip:             # second-to-last once ``skip``'s axis is the last one left
            continue
        axis = -1 if skip is None or j > skip else -2
        out = jnp.moveaxis(out, axis, -1) @ weights[j]
    return out


def expected_payoffs(payoffs: ArrayLike, rho: ArrayLike) -> Array:
    """``[n]`` payoffs of the mixed profile ``rho``: ``u_k(rho) = sum_x prod_j w_j(x_j) G_k[x]``.

    With the distribution mixture ``pi_bar_j = rho_j pi_j + (1 - rho_j) pi_hat_j`` this equals the
    surrogate ``g_k(pi_bar)`` exactly, because ``g`` is multilinear in the per-agent policies (Wen et al.
    2021, eq. 3 and eq. 25 with the hats restored).
    """
    g = jnp.asarray(payoffs)
    n = n_players(g)
    return _contract(g, strategy_weights(rho).astype(g.dtype), None).reshape(n)


def deviation_gains(payoffs: ArrayLike, rho: ArrayLike) -> Array:
    """``[n]`` gains ``d_i = u_i(current, rho_{-i}) - u_i(candidate, rho_{-i})``.

    ``u_i`` is linear in ``rho_i`` with slope ``d_i``, so ``d_i = dg_i / drho_i`` (Wen et al. 2021,
    eq. 26, written for ``n`` agents): a NE has ``d_i = 0`` where ``0 < rho_i < 1``, ``d_i >= 0`` where
    ``rho_i = 1`` and ``d_i <= 0`` where ``rho_i = 0`` (the projected fixed point of Theorem 2).
    """
    g = jnp.asarray(payoffs)
    n = n_players(g)
    w = strategy_weights(rho).astype(g.dtype)
    gains = []
    for i in range(n):
        both = _contract(g[i], w, skip=i)  # [2]: u_i(0, rho_-i), u_i(1, rho_-i)
        gains.append(both[0] - both[1])
    return jnp.stack(gains)


def regrets(payoffs: ArrayLike, rho: ArrayLike) -> Array:
    """``[n]`` regrets ``max_k u_i(k, rho_{-i}) - u_i(rho) >= 0`` of the profile ``rho``.

    With two meta-strategies: ``(1 - rho_i) max(d_i, 0) + rho_i max(-d_i, 0)``.
    """
    rho = jnp.asarray(rho)
    d = deviation_gains(payoffs, rho)
    return (1.0 - rho) * jnp.maximum(d, 0.0) + rho * jnp.maximum(-d, 0.0)


def nash_conv(payoffs: ArrayLike, rho: ArrayLike) -> Array:
    """NashConv ``sum_i max_k u_i(k, rho_{-i}) - u_i(rho)``: 0 exactly at a Nash equilibrium."""
    return jnp.sum(regrets(payoffs, rho))


def metagame_payoffs(
    ratios: ArrayLike,
    advantages: ArrayLike,
    clip: float | None = 0.1,
    mask: ArrayLike | None = None,
) -> Array:
    """Importance-sampled meta-game payoff tensor ``[n, 2, ..., 2]`` from one batch of the current policy.

    Wen et al. 2021, eq. 3 and eq. 5 (the TRPO surrogate reusing the trust-payoff-region batch, with
    clipped importance ratios, App. E):

        w_t(x)   = prod_{j : x_j = 1} clip(r_{j,t}, 1 - c, 1 + c),   r_{j,t} = pi_hat_j(a_j|o_j) / pi_j(a_j|o_j)
        G_k[x]   = sum_t m_t w_t(x) A_{k,t} / sum_t m_t,             G_k[0, ..., 0] := 0 exactly.

    ``ratios`` and ``advantages`` have shape ``[N, n]`` (samples x agents); ``advantages`` must NOT be
    mean-centred (raw, or divided by a per-agent std): ``sum_t w_t(x)`` varies with ``x``, so centring
    changes the equilibria, while a positive per-agent scale does not. ``clip=None`` disables clipping.
    ``mask`` ``[N]`` (optional) weighs the samples (0 = padding); with ``mask = pi(a)`` over all joint
    actions of a one-state game the result is the exact expectation. An agent that did not act at a
    sample should have ratio 1 there.
    """
    r = jnp.asarray(ratios)
    adv = jnp.asarray(advantages)
    if r.ndim != 2 or adv.shape != r.shape:
        raise ValueError(f"ratios and advantages must both have shape [N, n_agents], got {r.shape} and {adv.shape}")
    n = r.shape[1]
    dtype = jnp.result_type(r.dtype, adv.dtype, jnp.float32)
    m = jnp.ones(r.shape[:1], dtype) if mask is None else jnp.asarray(mask).astype(dtype)
    keep = (m > 0)[:, None]
    r = jnp.where(keep, r.astype(dtype), 1.0)  # padding may hold anything (inf, NaN): never read
    adv = jnp.where(keep, adv.astype(dtype), 0.0)
    if clip is not None:
        r = jnp.clip(r, 1.0 - clip, 1.0 + clip)
    w = jnp.ones(r.shape[:1], dtype)  # [N]; grows to [N, 2, ..., 2]
    for j in range(n):
        factor = jnp.stack([jnp.ones_like(r[:, j]), r[:, j]], axis=-1)  # x_j = 0 keeps pi_j (weight 1)
        w = w[..., None] * factor.reshape((r.shape[0],) + (1,) * j + (2,))
    total = jnp.maximum(jnp.sum(m), jnp.finfo(dtype).tiny)
    g = jnp.tensordot(adv * m[:, None], w, axes=([0], [0])) / total  # [n, 2, ..., 2]
    return g.at[(slice(None),) + (0,) * n].set(0.0)  # expected advantage of pi w.r.t. itself


def mixture_probs(probs: ArrayLike, probs_candidate: ArrayLike, rho: ArrayLike) -> Array:
    """Distribution mixture ``pi_bar = rho pi + (1 - rho) pi_hat`` (Wen et al. 2021, section 3.2).

    ``rho`` broadcasts against the leading axes (e.g. ``[n, 1]`` against ``[n, A]`` probabilities).
    """
    rho = jnp.asarray(rho)
    return rho * jnp.asarray(probs) + (1.0 - rho) * jnp.asarray(probs_candidate)


def mixture_ratio(ratio_candidate: ArrayLike, rho: ArrayLike) -> Array:
    """``pi_bar(a) / pi(a) = rho + (1 - rho) pi_hat(a) / pi(a)`` for sampled actions (Wen et al. 2021,
    section 3.2): the importance weight of the aggregated policy, from the candidate's ratio."""
    rho = jnp.asarray(rho)
    return rho + (1.0 - rho) * jnp.asarray(ratio_candidate)


def mixture_tv(probs: ArrayLike, probs_candidate: ArrayLike, rho: ArrayLike) -> Array:
    """``D_TV(pi, pi_bar) = (1 - rho) D_TV(pi, pi_hat)`` over the last (action) axis.

    Exact for the distribution mixture (Wen et al. 2021, Remark 1 / eq. 31 uses it per state).
    """
    p = jnp.asarray(probs)
    tv_candidate = 0.5 * jnp.sum(jnp.abs(jnp.asarray(probs_candidate) - p), axis=-1)
    return (1.0 - jnp.asarray(rho)) * tv_candidate


def restricted_hessian_2p(payoffs: ArrayLike) -> Array:
    """``[[0, gbar_1], [gbar_2, 0]]`` of the two-agent restricted game (Wen et al. 2021, eq. 29).

    ``gbar_i = d^2 g_i / (d rho_i d rho_{-i}) = G_i[1,1] - G_i[0,1] - G_i[1,0] + G_i[0,0]`` with
    ``G_i`` indexed [own choice, other's choice] (``G_i[0,0] = 0`` in a meta-game, which gives the
    paper's form). The diagonal is 0 (``g_i`` is linear in ``rho_i``), so the trace is 0 and the
    eigenvalues are ``+-sqrt(gbar_1 gbar_2)`` (eq. 30): never negative definite.
    """
    g = jnp.asarray(payoffs)
    if g.shape != (2, 2, 2):
        raise ValueError(f"restricted_hessian_2p needs a two-agent payoff tensor [2, 2, 2], got {g.shape}")
    g1 = g[0]  # [x_1, x_2]: own choice first already
    g2 = g[1].T  # agent 2's payoffs as [own choice, other's choice]
    gbar = jnp.stack([m[1, 1] - m[0, 1] - m[1, 0] + m[0, 0] for m in (g1, g2)])
    zero = jnp.zeros((), g.dtype)
    return jnp.stack([jnp.stack([zero, gbar[0]]), jnp.stack([gbar[1], zero])])
