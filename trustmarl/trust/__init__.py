"""Trust-region building blocks: ratios and clip rules, divergences and diagnostics, GAE, normalisers,
MATRL's meta-game (payoffs, Nash equilibria, mixtures, bounds), MAMD/MAMT's Tsallis mirror-descent
penalties and learned per-agent trust regions (coordination coefficients, D_ns, TRD-Net), and F2A2's
consensus of per-agent parameter copies (the namespace ``trustmarl.trust.consensus``: graphs, mixing,
PDHG, accounting).

Each piece is a small pure ``jax.numpy`` function, unit-tested on its own; algorithms compose them.
"""

from trustmarl.trust import consensus
from trustmarl.trust.bounds import joint_coupling, remark1_penalty, theorem1_penalty
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
from trustmarl.trust.metagame import (
    deviation_gains,
    expected_payoffs,
    metagame_payoffs,
    mixture_probs,
    mixture_ratio,
    mixture_tv,
    nash_conv,
    regrets,
)
from trustmarl.trust.nash import SELECTIONS, MetaNash, solve_metagame
from trustmarl.trust.normalize import (
    ValueNormState,
    normalize_advantages,
    value_norm_denormalize,
    value_norm_init,
    value_norm_normalize,
    value_norm_stats,
    value_norm_update,
)
from trustmarl.trust.radii import (
    TRDNet,
    clamp_radii,
    coordination_coefficients,
    coordination_graph,
    gcn_aggregate,
    model_cross_entropy,
    nonstationarity,
    pad_log_probs,
    tightest_teammate,
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
from trustmarl.trust.tsallis import (
    log_q,
    mirror_descent_surrogate,
    tsallis_penalty,
    tsallis_penalty_sample,
    tsallis_relative_entropy,
)

__all__ = [
    "TRDNet",
    "clamp_radii",
    "coordination_coefficients",
    "coordination_graph",
    "gcn_aggregate",
    "log_q",
    "mirror_descent_surrogate",
    "model_cross_entropy",
    "nonstationarity",
    "pad_log_probs",
    "tightest_teammate",
    "tsallis_penalty",
    "tsallis_penalty_sample",
    "tsallis_relative_entropy",
    "CLIP_RULES",
    "MetaNash",
    "SELECTIONS",
    "deviation_gains",
    "expected_payoffs",
    "joint_coupling",
    "metagame_payoffs",
    "mixture_probs",
    "mixture_ratio",
    "mixture_tv",
    "nash_conv",
    "regrets",
    "remark1_penalty",
    "solve_metagame",
    "theorem1_penalty",
    "ValueNormState",
    "approx_kl",
    "categorical_kl",
    "categorical_tv",
    "consensus",
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
