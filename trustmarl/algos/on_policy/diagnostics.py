"""Trust-region diagnostics logged after every update (Sun et al. 2023, Section 7; Kuba et al. 2022).

Computed once per update on the whole batch, with the updated policies against the behaviour
policies that collected it: per-agent ratio range, KL(old||new), per-agent TV (exact over
available actions for discrete actions, the sample estimate 0.5|λ-1| for continuous ones), the
joint TV estimate Σ_k max_t TV_t^k (Prop. 2 upper bound), the joint-ratio range and the critic's
explained variance, and each agent's policy entropy. Sample axes are flattened first, so
feed-forward ``[B]`` and recurrent ``[n_seq, seq_len]`` batches give the same per-agent statistics.

During the epochs, the policy losses also report the ratio range of every epoch (Sun et al. 2023,
Fig. 1a: the range grows with the number of epochs, clipping or not): :func:`minibatch_ratio_range`
measures it on each minibatch at the parameters that minibatch's step starts from, and
:func:`reduce_epochs` keeps its min/max per epoch, logged as ``diag/ratio_min_epoch_<e>`` and
``diag/ratio_max_epoch_<e>`` (e = 1..epochs). With one minibatch, epoch e's value is exactly the
range after e - 1 epochs (epoch 1's is 1); the range after the last epoch is ``diag/ratio_min/max``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from trustmarl.algos.base import block_mean
from trustmarl.trust.divergence import (
    explained_variance,
    joint_tv_estimate,
    ratio_range,
)


def per_agent_kl_tv(dists, old_dists, new_dists, avail, log_ratio):
    """Per-sample ``[B, N]`` KL(old||new) and TV between behaviour and current policies (``dists``: the
    groups' distribution objects; a Gaussian's TV is estimated from the taken action's ``log_ratio``)."""
    kls, tvs, start = [], [], 0
    for dist, old, new, av in zip(dists, old_dists, new_dists, avail):
        n = old[0].shape[-2]
        kls.append(dist.kl(old, new, av))
        tvs.append(dist.tv(old, new, av, log_ratio[..., start : start + n]))
        start += n
    return jnp.concatenate(kls, axis=-1), jnp.concatenate(tvs, axis=-1)


def trust_region_diagnostics(algo, actor_params, batch) -> dict[str, jax.Array]:
    dists = algo.batch_policy(actor_params, batch)
    log_ratio = algo.log_prob(dists, batch.actions) - batch.logp  # [..., N]
    kl, tv = per_agent_kl_tv(algo.dists, batch.dist, dists, batch.avail, log_ratio)
    flat = lambda x: x.reshape((-1, x.shape[-1]))  # noqa: E731  [..., N] -> [B, N]
    log_ratio, kl, tv, mask = flat(log_ratio), flat(kl), flat(tv), flat(batch.active)
    rmin, rmax = ratio_range(log_ratio, mask, axis=0)
    denom = jnp.maximum(block_mean(mask.sum(0)), 1.0)  # env blocks: the blocks' mean count (see masked_mean)
    joint_log_ratio = jnp.sum(log_ratio * mask, axis=-1)
    tv_max = jnp.max(jnp.where(mask > 0, tv, 0.0), axis=0)
    kl_per_agent = jnp.sum(kl * mask, 0) / denom
    entropy = flat(algo.entropy(dists))
    return {
        "diag/ratio_min_per_agent": rmin,
        "diag/ratio_max_per_agent": rmax,
        "diag/ratio_min": rmin.min(),
        "diag/ratio_max": rmax.max(),
        "diag/joint_ratio_min": jnp.exp(joint_log_ratio.min()),
        "diag/joint_ratio_max": jnp.exp(joint_log_ratio.max()),
        "diag/kl_per_agent": kl_per_agent,
        "diag/kl": kl_per_agent.sum(),  # KL of the joint (product) policy = Σ_k KL_k
        "diag/approx_kl": jnp.sum((jnp.expm1(log_ratio) - log_ratio) * mask) / denom.sum(),
        "diag/tv_per_agent": jnp.sum(tv * mask, 0) / denom,
        "diag/tv_max_per_agent": tv_max,
        "diag/tv_joint": joint_tv_estimate(tv, mask),
        "diag/explained_variance": explained_variance(batch.value, batch.returns),
        "diag/entropy_per_agent": jnp.sum(entropy * mask, 0) / denom,  # of the updated policy, every algorithm
    }


def per_agent_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Masked mean of ``[..., N]`` over all sample axes: ``[N]`` (0 for an agent with no active sample)."""
    x, mask = x.reshape((-1, x.shape[-1])), jnp.broadcast_to(mask, x.shape).reshape((-1, x.shape[-1]))
    return jnp.sum(x * mask, 0) / jnp.maximum(block_mean(mask.sum(0)), 1.0)  # env blocks: as masked_mean


def minibatch_ratio_range(log_ratio: jax.Array, mask: jax.Array) -> dict[str, jax.Array]:
    """Min and max of the ratios of the active entries of one minibatch (1 when none is active)."""
    active = jnp.broadcast_to(mask, log_ratio.shape) > 0
    return {
        "ratio_min_epoch": jnp.exp(jnp.min(jnp.where(active, log_ratio, 0.0))),
        "ratio_max_epoch": jnp.exp(jnp.max(jnp.where(active, log_ratio, 0.0))),
    }


def reduce_epochs(aux: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Stacked ``[epochs, minibatches, ...]`` aux -> means, except the ratio ranges: min/max per epoch ``[epochs]``."""
    out = {}
    for k, v in aux.items():
        if k.endswith("ratio_min_epoch"):
            out[k] = v.min(axis=1)
        elif k.endswith("ratio_max_epoch"):
            out[k] = v.max(axis=1)
        else:
            out[k] = jnp.mean(v, axis=(0, 1))
    return out


def epoch_metrics(ratio_min: jax.Array, ratio_max: jax.Array) -> dict[str, jax.Array]:
    """``[epochs]`` ranges -> scalar metrics ``diag/ratio_min_epoch_<e>`` / ``diag/ratio_max_epoch_<e>`` (e from 1)."""
    out = {}
    for e in range(ratio_min.shape[0]):
        out[f"diag/ratio_min_epoch_{e + 1}"] = ratio_min[e]
        out[f"diag/ratio_max_epoch_{e + 1}"] = ratio_max[e]
    return out
