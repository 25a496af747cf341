"""Trust-region building blocks: ratios and clip rules, divergences and diagnostics, GAE, normalisers.

Each piece is a small pure ``jax.numpy`` function, unit-tested on its own; algorithms compose them.
"""

from trustmarl.trust.divergence import (
    approx_kl,
    categorical_kl,
    categorical_tv,
    explained_variance,
    gaussian_kl,
    joint_tv_estimate,
    ratio_range,
    tv_from_ratio,
)
from trustmarl.trust.gae import gae, gae_reference
from trustmarl.trust.normalize import (
    ValueNormState,
    normalize_advantages,
    value_norm_denormalize,
    value_norm_init,
    value_norm_normalize,
    value_norm_stats,
    value_norm_update,
)
from trustmarl.trust.ratios import (
    CLIP_RULES,
    joint_clip_objective,
    joint_log_ratio,
    joint_ratio,
    log_ratio,
    per_agent_clip,
    ppo_clip_objective,
)

__all__ = [
    "CLIP_RULES",
    "ValueNormState",
    "approx_kl",
    "categorical_kl",
    "categorical_tv",
    "explained_variance",
    "gae",
    "gae_reference",
    "gaussian_kl",
    "joint_clip_objective",
    "joint_log_ratio",
    "joint_ratio",
    "joint_tv_estimate",
    "log_ratio",
    "normalize_advantages",
    "per_agent_clip",
    "ppo_clip_objective",
    "ratio_range",
    "tv_from_ratio",
    "value_norm_denormalize",
    "value_norm_init",
    "value_norm_normalize",
    "value_norm_stats",
    "value_norm_update",
]
