"""Value normalisation (running statistics) and advantage normalisation, as pure functions.

Value normalisation follows MAPPO's and HARL's "ValueNorm" (Yu et al. 2021):
exponential running averages of the mean and of the mean of squares with weight ``beta`` close to
1, a debiasing term (as in Adam: the running averages start at 0 and are divided by the accumulated
weight ``1 - beta^k``), and the variance clamped from below at ``1e-2``. It is a running normaliser,
not PopArt (no output-layer rescaling). The critic regresses ``normalize(returns)``; its predictions
are ``denormalize``-d before GAE.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

DEFAULT_BETA = 0.99999
DEBIAS_EPS = 1e-5  # lower bound on the debiasing term (avoids 0/0 before the first update)
VAR_MIN = 1e-2  # variance clamp


class ValueNormState(NamedTuple):
    """Running statistics (a pytree; scalars). ``beta`` is carried so updates need no config."""

    running_mean: Array  # EMA of E[x]
    running_mean_sq: Array  # EMA of E[x^2]
    debiasing_term: Array  # EMA of 1 (= 1 - beta^k after k updates)
    beta: Array


def value_norm_init(beta: float = DEFAULT_BETA) -> ValueNormState:
    """Fresh statistics: everything 0, so mean = 0 and var = VAR_MIN until the first update."""
    zero = jnp.zeros(())  # default float dtype (float64 under jax x64)
    return ValueNormState(zero, zero, zero, jnp.asarray(beta, zero.dtype))


def value_norm_update(state: ValueNormState, x: ArrayLike, mask: ArrayLike | None = None, total=None) -> ValueNormState:
    """One EMA step with the mean and mean-of-squares of all (unmasked) entries of ``x``.

    A batch whose mask is all zero leaves the state unchanged. ``total`` (default ``jnp.sum``) sums an array
    to a scalar; a batch spread over several programs passes a sum over all of them (e.g. a ``psum``).
    """
    total_fn = jnp.sum if total is None else total
    x = jnp.asarray(x, state.running_mean.dtype)
    w = jnp.ones(x.shape, x.dtype) if mask is None else jnp.broadcast_to(jnp.asarray(mask, x.dtype), x.shape)
    total = total_fn(w)
    n = jnp.maximum(total, 1.0)
    x = jnp.where(w != 0, x, 0.0)
    batch_mean = total_fn(w * x) / n
    batch_mean_sq = total_fn(w * x * x) / n
    b = jnp.where(total > 0, state.beta, 1.0)  # empty batch -> no-op
    return ValueNormState(
        running_mean=b * state.running_mean + (1.0 - b) * batch_mean,
        running_mean_sq=b * state.running_mean_sq + (1.0 - b) * batch_mean_sq,
        debiasing_term=b * state.debiasing_term + (1.0 - b),
        beta=state.beta,
    )


def value_norm_stats(state: ValueNormState) -> tuple[Array, Array]:
    """Debiased ``(mean, var)``; ``var`` is clamped to at least ``VAR_MIN``."""
    debias = jnp.maximum(state.debiasing_term, DEBIAS_EPS)
    mean = state.running_mean / debias
    mean_sq = state.running_mean_sq / debias
    var = jnp.maximum(mean_sq - mean**2, VAR_MIN)
    return mean, var


def value_norm_normalize(state: ValueNormState, x: ArrayLike) -> Array:
    """``(x - mean) / sqrt(var)`` with the debiased running statistics."""
    mean, var = value_norm_stats(state)
    return (jnp.asarray(x) - mean) / jnp.sqrt(var)


def value_norm_denormalize(state: ValueNormState, x: ArrayLike) -> Array:
    """Inverse of :func:`value_norm_normalize`: ``x * sqrt(var) + mean``."""
    mean, var = value_norm_stats(state)
    return jnp.asarray(x) * jnp.sqrt(var) + mean


def normalize_advantages(adv: ArrayLike, mask: ArrayLike | None = None, eps: float = 1e-8, total=None) -> Array:
    """``(adv - mean) / (std + eps)`` with mean/std (population, ddof 0) over all unmasked entries.

    Masked entries are set to 0 in the output (they are excluded from losses anyway; this keeps
    NaNs in padding from leaking). ``total`` as in :func:`value_norm_update`: moments over a batch spread
    over several programs.
    """
    adv = jnp.asarray(adv)
    if total is not None:
        w = jnp.ones(adv.shape, adv.dtype) if mask is None else jnp.broadcast_to(jnp.asarray(mask) != 0, adv.shape).astype(adv.dtype)
        n = jnp.maximum(total(w), 1.0)
        x = jnp.where(w != 0, adv, 0.0)
        mean = total(x) / n
        std = jnp.sqrt(total(w * (x - mean) ** 2) / n)
        return jnp.where(w != 0, (x - mean) / (std + eps), 0.0)
    if mask is None:
        mean = jnp.mean(adv)
        std = jnp.std(adv)
        return (adv - mean) / (std + eps)
    keep = jnp.broadcast_to(jnp.asarray(mask) != 0, adv.shape)
    w = keep.astype(adv.dtype)
    n = jnp.maximum(jnp.sum(w), 1.0)
    x = jnp.where(keep, adv, 0.0)
    mean = jnp.sum(x) / n
    std = jnp.sqrt(jnp.sum(w * (x - mean) ** 2) / n)
    return jnp.where(keep, (x - mean) / (std + eps), 0.0)
