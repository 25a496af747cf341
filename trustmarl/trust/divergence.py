"""Divergences between old and new policies and trust-region diagnostics.

Categorical inputs are log-probabilities over actions (last axis) of masked policies: unavailable
actions carry ``-inf`` or a very negative number. Unavailable actions (``avail == 0``) and actions of
zero old probability are excluded, with NaN-free values and gradients. Nothing is renormalised: the
inputs are assumed to be normalised over the available actions already.

Diagnostics follow Sun et al. 2023, Section 7: per-agent TV distances, their joint
estimate ``sum_k max_t TV_t^k`` (Prop. 2 upper bound) and ratio ranges.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike


def _available(logp: Array, avail: ArrayLike | None) -> Array:
    """Boolean mask of actions that count: available and with a finite log-probability."""
    keep = jnp.isfinite(logp)
    if avail is not None:
        keep = keep & (jnp.asarray(avail) != 0)
    return keep


def categorical_kl(
    logp_old_all: ArrayLike, logp_new_all: ArrayLike, avail: ArrayLike | None = None
) -> Array:
    """Exact ``KL(old || new) = sum_a p_old(a) (log p_old(a) - log p_new(a))`` over the last axis.

    Unavailable actions are excluded. For product policies the joint KL is the sum of the per-agent
    KLs (our choice); Pinsker gives ``TV <= sqrt(KL / 2)``.
    """
    lo = jnp.asarray(logp_old_all)
    ln = jnp.asarray(logp_new_all)
    keep = _available(lo, avail)
    lo_safe = jnp.where(keep, lo, 0.0)
    p_old = jnp.where(keep, jnp.exp(lo_safe), 0.0)
    counts = keep & (p_old > 0)
    ln_safe = jnp.where(counts, ln, 0.0)
    terms = jnp.where(counts, p_old * (lo_safe - ln_safe), 0.0)
    return jnp.sum(terms, axis=-1)


def categorical_tv(
    logp_old_all: ArrayLike, logp_new_all: ArrayLike, avail: ArrayLike | None = None
) -> Array:
    """Exact total variation ``0.5 sum_a |p_new(a) - p_old(a)|`` over available actions.

    Sun et al. 2023, Section 3 (D_TV definition) and Section 7 (per-state per-agent TV, Fig. 1b).
    """
    lo = jnp.asarray(logp_old_all)
    ln = jnp.asarray(logp_new_all)
    keep = jnp.ones(lo.shape, bool) if avail is None else jnp.asarray(avail) != 0
    p_old = jnp.where(keep, jnp.exp(jnp.where(keep, lo, -jnp.inf)), 0.0)
    p_new = jnp.where(keep, jnp.exp(jnp.where(keep, ln, -jnp.inf)), 0.0)
    return 0.5 * jnp.sum(jnp.abs(p_new - p_old), axis=-1)


def gaussian_kl(
    mean_old: ArrayLike, log_std_old: ArrayLike, mean_new: ArrayLike, log_std_new: ArrayLike
) -> Array:
    """``KL(N(mu_old, s_old^2) || N(mu_new, s_new^2))`` of diagonal Gaussians, summed over the last axis.

    Per dimension: ``log(s_new/s_old) + (s_old^2 + (mu_old - mu_new)^2) / (2 s_new^2) - 1/2``.
    Inputs broadcast (e.g. a state-independent ``log_std`` of shape ``[d]``).
    """
    mo, lso = jnp.asarray(mean_old), jnp.asarray(log_std_old)
    mn, lsn = jnp.asarray(mean_new), jnp.asarray(log_std_new)
    var_old = jnp.exp(2.0 * lso)
    var_new = jnp.exp(2.0 * lsn)
    per_dim = lsn - lso + (var_old + (mo - mn) ** 2) / (2.0 * var_new) - 0.5
    return jnp.sum(per_dim, axis=-1)


def approx_kl(log_ratio: ArrayLike) -> Array:
    """k3 estimator ``(lambda - 1) - log lambda`` of KL(old || new), elementwise.

    Unbiased for KL(old || new) when averaged over samples from the old policy, and >= 0
    (``log_ratio = log pi_new - log pi_old``).
    """
    lr = jnp.asarray(log_ratio)
    return jnp.expm1(lr) - lr


def tv_from_ratio(log_ratio: ArrayLike) -> Array:
    """Sample-based TV estimate ``0.5 |lambda - 1|``, elementwise.

    ``E_{a ~ pi_old}[0.5 |pi_new/pi_old - 1|] = TV(pi_old, pi_new)``, so its mean over samples of the
    old policy is unbiased; used for continuous actions where the exact sum is unavailable.
    """
    return 0.5 * jnp.abs(jnp.expm1(jnp.asarray(log_ratio)))


def joint_tv_estimate(tv: ArrayLike, mask: ArrayLike | None = None) -> Array:
    """Joint trust-region estimate ``sum_k max_t TV_t^k`` (Sun et al. 2023, Section 7, Prop. 2 upper bound).

    ``tv`` has shape ``[T, N]`` (samples x agents); more leading sample axes (``[T, E, N]``) are all
    maximised over. Masked entries (dead agents, padding) are ignored; an agent with no unmasked
    sample contributes 0.
    """
    tv = jnp.asarray(tv)
    if mask is not None:
        tv = jnp.where(jnp.asarray(mask) != 0, tv, 0.0)  # TV >= 0, so 0 never raises the max
    per_agent = jnp.max(tv, axis=tuple(range(tv.ndim - 1))) if tv.ndim > 1 else tv
    return jnp.sum(per_agent, axis=-1)


def ratio_range(
    log_ratio: ArrayLike, mask: ArrayLike | None = None, axis: int | tuple[int, ...] | None = 0
) -> tuple[Array, Array]:
    """``(min, max)`` of ``exp(log_ratio)`` over ``axis``, ignoring masked entries (Sun et al. 2023, Fig. 1a).

    With ``axis=0`` on ``[T, N]`` inputs this gives per-agent ranges; ``axis=None`` reduces all.
    Slices with no unmasked entry report ``(1, 1)`` (the ratio of an agent that did not act).
    """
    ratio = jnp.exp(jnp.asarray(log_ratio))
    keep = jnp.ones(ratio.shape, bool) if mask is None else jnp.asarray(mask) != 0
    keep = jnp.broadcast_to(keep, ratio.shape)
    lo = jnp.min(ratio, axis=axis, where=keep, initial=jnp.inf)
    hi = jnp.max(ratio, axis=axis, where=keep, initial=-jnp.inf)
    any_kept = jnp.any(keep, axis=axis)
    return jnp.where(any_kept, lo, 1.0), jnp.where(any_kept, hi, 1.0)


def explained_variance(pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None) -> Array:
    """``1 - Var(target - pred) / Var(target)`` over all (unmasked) entries.

    Convention: returns 0 when ``Var(target) == 0`` (a constant target explains nothing and this
    keeps logged metrics finite). 1 = perfect, 0 = no better than a constant, < 0 = worse.
    """
    pred = jnp.asarray(pred)
    target = jnp.asarray(target)
    w = jnp.ones(target.shape, target.dtype) if mask is None else jnp.asarray(mask).astype(target.dtype)
    w = jnp.broadcast_to(w, target.shape)
    n = jnp.maximum(jnp.sum(w), 1.0)

    def var(x: Array) -> Array:
        mean = jnp.sum(w * x) / n
        return jnp.sum(w * (x - mean) ** 2) / n

    resid = jnp.where(w != 0, target - pred, 0.0)
    var_t = var(jnp.where(w != 0, target, 0.0))
    safe = jnp.where(var_t > 0, var_t, 1.0)
    return jnp.where(var_t > 0, 1.0 - var(resid) / safe, 0.0)
