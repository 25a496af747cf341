"""Sequential (heterogeneous-agent) update primitives of HAPPO/HATRPO.

At every iteration the agents are updated one after another in a random order ``i_1..i_n``
(Kuba et al. 2022, Algorithm 1 / App. D Algorithms 2-3). Agent ``i_m`` maximises its surrogate weighted by the
compound factor ``M^{i_{1:m}} = prod_{earlier agents} pi_new(a|o) / pi_old(a|o)`` times the joint
advantage (Kuba et al. 2022, Proposition 3, eq. 9-10). The factor is kept in log space
as a per-sample quantity (no products over time), and it is neither clipped nor
normalised by default.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def draw_order(key: Array, n_agents: int, fixed: bool = False) -> Array:
    """Update order of the agents: a uniform random permutation (int32), or ``arange`` when ``fixed``.

    Random order every iteration is what Kuba et al. 2022, Proposition 2 requires; ``fixed`` is the HARL
    ``fixed_order`` ablation. ``fixed`` and ``n_agents`` must be static under jit.
    """
    if fixed:
        return jnp.arange(n_agents, dtype=jnp.int32)
    return jax.random.permutation(key, n_agents).astype(jnp.int32)


def init_log_factor(shape: tuple[int, ...], dtype=jnp.float32) -> Array:
    """``log M`` before the first agent of the permutation: zeros (``M^{i_1} = 1``, App. D line 7)."""
    return jnp.zeros(shape, dtype=dtype)


def update_factor(
    log_factor: Array, logp_new: Array, logp_old: Array, mask: Array | None = None
) -> Array:
    """Fold one updated agent into the compound factor: ``log M + mask * (logp_new - logp_old)``.

    Kuba et al. 2022, App. D (Alg. 2 line 14): ``M^{i_{1:m+1}} = pi_new^{i_m}/pi_old^{i_m} * M^{i_{1:m}}``.
    ``logp_*`` are the agent's *joint* log-probabilities of its action (summed over action
    dimensions = product of per-dimension ratios), evaluated per sample on the whole
    rollout with the parameters after / before the agent's update. ``mask`` (e.g. active masks)
    leaves inactive samples' factor unchanged.
    """
    delta = logp_new - logp_old
    if mask is not None:
        delta = mask * delta
    return log_factor + delta


def factor_from_log(log_factor: Array, clip: tuple[float, float] | None = None) -> Array:
    """``M = exp(log M)``; optionally clipped to ``[clip[0], clip[1]]`` (off by default, as in the authors' code)."""
    factor = jnp.exp(log_factor)
    if clip is not None:
        factor = jnp.clip(factor, clip[0], clip[1])
    return factor


def factor_stats(factor: Array, mask: Array | None = None) -> dict[str, Array]:
    """Mean, min and max of the factor over (active) samples, for logging.

    With a mask that selects no sample, all three statistics are NaN.
    """
    if mask is None:
        mask = jnp.ones_like(factor)
    mask = jnp.broadcast_to(mask, factor.shape).astype(factor.dtype)
    active = mask > 0
    count = jnp.sum(mask)
    nan = jnp.asarray(jnp.nan, dtype=factor.dtype)
    mean = jnp.sum(factor * mask) / jnp.maximum(count, 1.0)
    fmin = jnp.min(jnp.where(active, factor, jnp.inf))
    fmax = jnp.max(jnp.where(active, factor, -jnp.inf))
    has = count > 0
    return {
        "mean": jnp.where(has, mean, nan),
        "min": jnp.where(has, fmin, nan),
        "max": jnp.where(has, fmax, nan),
    }


def happo_objective(ratio: Array, adv: Array, factor: Array, eps: float) -> Array:
    """Per-sample HAPPO objective (to maximise) ``M * min(r A, clip(r, 1-eps, 1+eps) A)``.

    Kuba et al. 2022, eq. 11. The factor (> 0) sits outside the min, which equals ``min(r M A, clip(r) M A)``
    ; it is a constant of the current agent's update (``stop_gradient``).
    """
    factor = jax.lax.stop_gradient(factor)
    unclipped = ratio * adv
    clipped = jnp.clip(ratio, 1.0 - eps, 1.0 + eps) * adv
    return factor * jnp.minimum(unclipped, clipped)
