"""Probability ratios, clip rules and PPO-clip objectives (independent and joint).

Notation follows Sun et al. 2023 ("Trust Region Bounds for Decentralized PPO Under Non-stationarity"):
``lambda_k = pi_new_k(a^k|s^k) / pi_old_k(a^k|s^k)`` is agent k's *independent* ratio and
``lambda_joint = prod_k lambda_k`` the *joint* ratio of the product policy (Sun et al. 2023, Section 4.1).

All array functions are pure ``jax.numpy`` code, jit/vmap friendly, and accept arbitrary leading
batch dimensions. Objectives are returned elementwise and are meant to be MAXIMISED (negate and
average them for a loss).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

CLIP_RULES = ("fixed", "per_agent", "nth_root")


def per_agent_clip(eps: float, n_agents: int, rule: str = "per_agent") -> float:
    """Per-agent clip range derived from a joint trust-region budget ``eps``.

    Rules:
      * ``"fixed"``: ``eps`` for every agent (plain IPPO/MAPPO).
      * ``"per_agent"``: ``eps / n_agents`` (Sun et al. 2023, eq. 9, the alpha/N rule: per-agent ratios in
        ``[1 - eps/N, 1 + eps/N]`` bound the joint TV by ``eps`` via Thm 3 + Prop. 2).
      * ``"nth_root"``: ``(1 + eps)**(1/N) - 1`` (our extension): the symmetric
        per-agent range whose N-fold product reaches exactly ``1 + eps``, so the joint ratio of N
        in-range agents stays inside ``[1 - eps, 1 + eps]``. Not from the paper.

    Returns a Python float (static: safe to use as a jit-time constant).
    """
    if rule not in CLIP_RULES:
        raise ValueError(f"unknown clip rule {rule!r}; expected one of {CLIP_RULES}")
    if not eps > 0:
        raise ValueError(f"clip eps must be > 0, got {eps}")
    if int(n_agents) != n_agents or n_agents < 1:
        raise ValueError(f"n_agents must be an integer >= 1, got {n_agents}")
    if rule == "fixed" or n_agents == 1:
        return float(eps)  # every rule reduces to single-agent PPO's eps for N = 1 (exactly)
    if rule == "per_agent":
        return float(eps) / int(n_agents)  # Sun et al. 2023, eq. 9
    return math.pow(1.0 + float(eps), 1.0 / int(n_agents)) - 1.0  # our extension: (1 + delta)^N = 1 + eps


def log_ratio(logp_new: ArrayLike, logp_old: ArrayLike) -> Array:
    """``log lambda = log pi_new(a|s) - log pi_old(a|s)``, elementwise."""
    return jnp.asarray(logp_new) - jnp.asarray(logp_old)


def ppo_clip_objective(ratio: ArrayLike, adv: ArrayLike, eps: float | ArrayLike) -> Array:
    """PPO clipped surrogate term ``min(lambda A, clip(lambda, 1-eps, 1+eps) A)``, elementwise.

    Sun et al. 2023, eq. 2 (PPO; eqs. 3/4 apply it per agent). To be maximised.
    """
    ratio = jnp.asarray(ratio)
    adv = jnp.asarray(adv)
    return jnp.minimum(ratio * adv, jnp.clip(ratio, 1.0 - eps, 1.0 + eps) * adv)


def _masked_diff(logp_new: ArrayLike, logp_old: ArrayLike, mask: ArrayLike | None) -> Array:
    """Per-agent log-ratios with masked agents set to exactly 0 (NaN/inf-safe, also in gradients)."""
    new = jnp.asarray(logp_new)
    old = jnp.asarray(logp_old)
    if mask is None:
        return new - old
    mask = jnp.asarray(mask)
    keep = mask != 0
    # substitute before subtracting so that -inf/NaN log-probs of dead agents never reach the
    # arithmetic (jnp.where alone would still leak NaN into the gradient of the unused branch).
    new = jnp.where(keep, new, 0.0)
    old = jnp.where(keep, old, 0.0)
    return (new - old) * mask.astype(new.dtype)


def joint_log_ratio(logp_new: ArrayLike, logp_old: ArrayLike, mask: ArrayLike | None = None) -> Array:
    """``log lambda_joint = sum_k m_k (log pi_new_k - log pi_old_k)`` over the LAST axis (agents).

    Sun et al. 2023, Section 4.1: the joint ratio of a product policy is the product of the independent
    ratios. Masked (dead) agents contribute 0.
    """
    return jnp.sum(_masked_diff(logp_new, logp_old, mask), axis=-1)


def joint_ratio(
    logp_new: ArrayLike,
    logp_old: ArrayLike,
    mask: ArrayLike | None = None,
    max_log_ratio: float = 20.0,
) -> Array:
    """``lambda_joint = exp(clip(sum_k log lambda_k, -max, +max))`` (Sun et al. 2023, Section 4.1).

    The clamp in log space is an overflow guard for many agents; it is inactive
    for any realistic ratio and zeroes the gradient only beyond ``exp(+-max_log_ratio)``.
    """
    lr = joint_log_ratio(logp_new, logp_old, mask)
    return jnp.exp(jnp.clip(lr, -max_log_ratio, max_log_ratio))


def joint_clip_objective(
    logp_new: ArrayLike,
    logp_old: ArrayLike,
    adv: ArrayLike,
    eps: float | ArrayLike,
    mask: ArrayLike | None = None,
) -> Array:
    """JR-PPO term ``min(lambda_joint A, clip(lambda_joint, 1-eps, 1+eps) A)`` per timestep.

    Sun et al. 2023, eq. 6 (JR-PPO, Algorithm 1). ``logp_*`` have shape ``[..., N]`` (agents last),
    ``adv`` has shape ``[...]`` (one centralised advantage per timestep). To be maximised.
    """
    return ppo_clip_objective(joint_ratio(logp_new, logp_old, mask), adv, eps)
