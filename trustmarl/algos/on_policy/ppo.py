"""MAPPO, IPPO and JR-PPO: simultaneous PPO updates of all agents (Sun et al. 2023).

The three differ only in configuration:
- MAPPO: centralised critic V(s); independent per-agent ratios, each clipped (Sun et al. 2023, eq. 3/4);
- IPPO: decentralised critic V(o^k) (de Witt et al. 2020; Sun et al. 2023, Section 3);
- JR-PPO: one joint ratio per env step, the product of the agents' ratios, clipped (eq. 6, Alg. 1).
The per-agent clip range follows ``clip_rule``: ``fixed`` (eps), ``per_agent`` (eps/N, eq. 9) or
``nth_root`` ((1+eps)^(1/N) - 1, our extension: the symmetric per-agent share).
The losses reduce over all leading sample axes (``[B]``, or ``[n_seq, seq_len]`` for recurrent actors).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from trustmarl.algos import register_algo
from trustmarl.algos.agents import masked_mean
from trustmarl.algos.on_policy.common import ActorCritic, Batch, TrainState
from trustmarl.algos.on_policy.config import OnPolicyConfig
from trustmarl.algos.on_policy.diagnostics import (
    epoch_metrics,
    minibatch_ratio_range,
    per_agent_mean,
    reduce_epochs,
    trust_region_diagnostics,
)
from trustmarl.validation import ConfigError
from trustmarl.trust.ratios import joint_clip_objective, per_agent_clip, ppo_clip_objective


class PPO(ActorCritic):
    """Simultaneous multi-agent PPO; see the module docstring for the variants."""

    ENV_BLOCKS = True  # run key env_blocks: every reduction over env copies goes through the block helpers

    def __init__(self, env, cfg: OnPolicyConfig, total_updates: int | None = None):
        super().__init__(env, cfg, total_updates)
        self.name = cfg.name
        self.joint = cfg.clip_rule == "joint"
        self.eps = cfg.clip_eps if self.joint else per_agent_clip(cfg.clip_eps, self.n_agents, cfg.clip_rule)

    def agent_mean(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        """Reduce ``[..., N]`` over samples and agents: mean, or sum over agents."""
        if self.cfg.agent_reduction == "sum":
            return jnp.mean(jnp.sum(x * mask, axis=-1))
        return masked_mean(x, mask)

    def loss(self, actor_params, critic_params, mb: Batch):
        cfg = self.cfg
        dists = self.batch_policy(actor_params, mb)
        logp = self.log_prob(dists, mb.actions)  # [..., N]
        entropy = self.entropy(dists)
        mask = mb.active
        log_ratio = logp - mb.logp
        # the same per-agent vocabulary as HAPPO: |λ_k - 1| > eps_i per agent (JR-PPO: against its joint eps)
        aux = {"diag/clip_frac_per_agent": per_agent_mean((jnp.abs(jnp.exp(log_ratio) - 1.0) > self.eps).astype(jnp.float32), mask),
               **minibatch_ratio_range(log_ratio, mask)}
        if self.joint:
            # Sun et al. 2023, eq. 6 (JR-PPO): min(λ A, clip(λ, 1±eps) A), λ = Π_k λ_k, one term per step
            obj = joint_clip_objective(logp, mb.logp, mb.adv[..., 0], self.eps, mask)
            pi_loss = -obj.mean()
            ent = jnp.mean(jnp.sum(entropy * mask, axis=-1))  # entropy of the joint (product) policy = Σ_k H_k
            log_joint = jnp.sum((logp - mb.logp) * mask, axis=-1)
            clip_frac = jnp.mean(jnp.abs(jnp.exp(log_joint) - 1.0) > self.eps)
        else:
            # Sun et al. 2023, eq. 3/4 (Schulman et al. 2017, eq. 7 per agent): independent ratios λ_k,
            # each clipped at eps_i (eps, or eps/N by Sun et al. 2023, eq. 9)
            adv = jnp.broadcast_to(mb.adv, logp.shape)
            ratio = jnp.exp(logp - mb.logp)
            obj = ppo_clip_objective(ratio, adv, self.eps)
            pi_loss = -self.agent_mean(obj, mask)
            aux["diag/policy_loss_per_agent"] = -per_agent_mean(obj, mask)
            ent = self.agent_mean(entropy, mask)  # entropy bonus: Schulman et al. 2017, eq. 9 (Yu et al. 2022, MAPPO code)
            clip_frac = masked_mean((jnp.abs(ratio - 1.0) > self.eps).astype(jnp.float32), mask)
        v_loss = self.value_loss(critic_params, mb)
        total = pi_loss - cfg.ent_coef * ent + cfg.vf_coef * v_loss  # Schulman et al. 2017, eq. 9: L_clip - c_ent H + c_V L_V
        return total, {"loss/policy": pi_loss, "loss/value": v_loss, "loss/entropy": ent, "diag/clip_frac": clip_frac, **aux}

    def learn_batch(self, state: TrainState, batch: Batch):
        cfg = self.cfg

        def apply(params, grads, opt):
            actor, critic = self.apply_actor(params[0], grads[0], opt[0]), self.apply_critic(params[1], grads[1], opt[1])
            return (actor[0], critic[0]), (actor[1], critic[1])

        loss = lambda params, mb: self.loss(params[0], params[1], mb)  # noqa: E731
        key, k_epochs = jax.random.split(state.key)
        params, opt, metrics = self.sgd(
            loss, apply, (state.actor_params, state.critic_params), (state.actor_opt, state.critic_opt),
            batch, k_epochs, cfg.epochs, cfg.minibatches, reduce=reduce_epochs,
        )
        metrics.update(epoch_metrics(metrics.pop("ratio_min_epoch"), metrics.pop("ratio_max_epoch")))
        metrics.update(trust_region_diagnostics(self, params[0], batch))
        state = state._replace(actor_params=params[0], critic_params=params[1], actor_opt=opt[0], critic_opt=opt[1], key=key)
        return state, metrics


@dataclasses.dataclass
class JRPPOConfig(OnPolicyConfig):
    """JR-PPO: the joint ratio needs one centralised advantage per env step."""

    name: str = "jrppo"
    clip_rule: str = "joint"
    critic: str = "state"

    def validate(self) -> None:
        super().validate()
        if self.clip_rule != "joint":
            raise ConfigError(f"algo.clip_rule={self.clip_rule!r} is not allowed for jrppo; it must be 'joint'")
        if self.critic != "state":
            raise ConfigError(f"algo.critic={self.critic!r} is not allowed for jrppo; it must be 'state' (centralised advantage)")


@dataclasses.dataclass
class IPPOConfig(OnPolicyConfig):
    name: str = "ippo"
    critic: str = "local"


register_algo("mappo", OnPolicyConfig, PPO, "MAPPO: PPO with a centralised critic V(s); clip eps, eps/N or nth-root (Sun et al. 2023)")
register_algo("ippo", IPPOConfig, PPO, "IPPO: PPO with decentralised critics V(o); clip eps, eps/N or nth-root (Sun et al. 2023)")
register_algo("jrppo", JRPPOConfig, PPO, "JR-PPO: PPO on the clipped joint ratio Π_k λ_k (Sun et al. 2023, Alg. 1)")
