"""HAPPO: heterogeneous-agent PPO with sequential updates (Kuba et al. 2022, Section 4.2, App. D Algorithm 3).

Each iteration: one centralised critic V(s) gives the joint advantage Â(s, a) (GAE); a fresh random
permutation of all agents (across all groups) is drawn; the agents update one after another, agent
i_m maximising  M^{i_{1:m}} · min(r Â, clip(r, 1±eps) Â)  (eq. 11), where the compound factor

    M^{i_{1:m}}(s, a) = Π_{earlier agents j} π_new^j(a^j|o^j) / π_old^j(a^j|o^j)      (eq. 10)

is computed once per agent update on the whole rollout, never differentiated, and logged. The
critic is fitted after all actors (the schedule of HARL, the authors' later code).

The agent loop is a ``lax.scan`` over positions in the permutation; the agent's group is chosen with
``lax.switch`` and its parameters sliced out of the group's stacked parameters, so heterogeneous
groups (different observation/action sizes) and shared parameters (HARL semantics: the shared
network is updated once per agent, on that agent's data) both work.

Recurrent actors: the batch holds sequences ``[n_seq, seq_len]``; an agent's distribution (for its
loss and for its new log-probabilities in the factor) is the unroll of its GRU from the stored
hidden state at each sequence start with the stored resets, so the factor stays per sample
``[n_seq, seq_len]``. HATRPO shares this path (its KL and surrogate unroll the same way).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from trustmarl.algos import register_algo
from trustmarl.algos.agents import masked_mean, opt_step
from trustmarl.algos.on_policy.common import ActorCritic, Batch, TrainState
from trustmarl.algos.on_policy.config import OnPolicyConfig
from trustmarl.algos.on_policy.diagnostics import epoch_metrics, minibatch_ratio_range, reduce_epochs, trust_region_diagnostics
from trustmarl.validation import ConfigError, positive_int
from trustmarl.trust.sequential import draw_order, factor_from_log, factor_stats, happo_objective, update_factor


@dataclasses.dataclass
class HAPPOConfig(OnPolicyConfig):
    """HAPPO hyperparameters: the on-policy set plus the sequential-update options."""

    name: str = "happo"
    share_params: bool = False  # one network per agent, as the paper's heterogeneous agents
    agent_id: bool = False
    critic: str = "state"
    # A time limit is terminal unless a preset says it only cuts episodes short (MaMuJoCo presets bootstrap
    # it, as HARL does): bootstrapping a limit that is part of the task made HAPPO end below MAPPO on the
    # speaker/mover/gate task (tests/algos/test_heterogeneous.py) and hurt on MPE (docs/ppo_family.md).
    bootstrap_truncation: bool = False
    fixed_order: bool = False  # HARL's ablation; the paper redraws the order every iteration
    use_factor: bool = True  # False: every agent uses the plain advantage (ablation of eq. 10)
    critic_epochs: int = 5  # passes of the critic over the rollout per update (after all actors)
    critic_minibatches: int = 1  # critic minibatches per epoch

    UNUSED: typing.ClassVar[dict[str, str]] = {
        "vf_coef": "the critic is fitted on its own (algo.critic_lr, algo.critic_epochs, algo.critic_minibatches)",
        "agent_reduction": "each agent is updated on its own loss, one after the other",
    }

    def validate(self) -> None:
        super().validate()
        positive_int(self, "critic_epochs", "critic_minibatches")
        if self.clip_rule == "joint":
            raise ConfigError(f"algo.clip_rule={self.clip_rule!r} is not allowed for {self.name}; choose fixed, per_agent or nth_root")
        batch = self.num_envs * self.rollout_len
        if batch % self.critic_minibatches:
            raise ConfigError(f"algo.critic_minibatches={self.critic_minibatches} must divide num_envs*rollout_len={batch}")
        if self.recurrent and self.train_samples() % self.critic_minibatches:
            raise ConfigError(
                f"algo.critic_minibatches={self.critic_minibatches} must divide the number of training sequences "
                f"num_envs*rollout_len/seq_len={self.train_samples()}"
            )


class AgentData(NamedTuple):
    """One agent's slice of the batch, plus the factor and advantage it is trained with.

    Leading axes ``[B]``, or ``[n_seq, seq_len]`` for recurrent actors (then ``hidden`` ``[n_seq, H]``
    is the agent's hidden state entering each sequence and ``reset`` ``[n_seq, seq_len]`` the resets).
    """

    obs: jax.Array
    avail: jax.Array
    action: jax.Array
    dist: tuple
    logp_old: jax.Array
    active: jax.Array
    adv: jax.Array
    factor: jax.Array
    hidden: Any = ()
    reset: Any = None


class Sequential(ActorCritic):
    """The agent-by-agent update loop shared by HAPPO and HATRPO; subclasses define ``agent_update``."""

    def __init__(self, env, cfg: HAPPOConfig, total_updates: int | None = None):
        super().__init__(env, cfg, total_updates)
        self.name = cfg.name
        self.agent_group, self.agent_local, self.offsets = self.agents.agent_group, self.agents.agent_local, self.agents.offsets

    def actor_steps_per_update(self, g: int) -> int:
        """A shared group's optimiser steps once per agent of the group (HARL semantics)."""
        per_agent = self.cfg.epochs * self.cfg.minibatches
        return per_agent * (self.groups[g].n if self.shared else 1)

    def critic_steps_per_update(self) -> int:
        return self.cfg.critic_epochs * self.cfg.critic_minibatches

    # ---- one agent -------------------------------------------------------------------------
    def agent_dist(self, g: int, params, i: jax.Array, obs: jax.Array, avail: jax.Array, hidden: Any = (), reset: Any = None) -> tuple:
        """Distribution of agent ``i`` of group ``g`` on its observations ``[B, obs_dim]``.

        Recurrent actors: ``obs`` ``[n_seq, L, obs_dim]``, unrolled from ``hidden`` ``[n_seq, H]`` with ``reset``.
        """
        if self.cfg.agent_id and self.shared:
            one_hot = jax.nn.one_hot(i, self.groups[g].n, dtype=obs.dtype)
            obs = jnp.concatenate([obs, jnp.broadcast_to(one_hot, obs.shape[:-1] + one_hot.shape)], axis=-1)
        if not self.recurrent:
            return self.actors[g].apply(params, obs, avail)
        step = lambda h, x, r: self.actors[g].apply(params, h, x[0], x[1], r[..., None])  # noqa: E731
        return self.sequence(step, hidden, obs, avail, reset)

    def agent_log_prob(self, g: int, params, i, data: AgentData) -> tuple[tuple, jax.Array]:
        dist = self.agent_dist(g, params, i, data.obs, data.avail, data.hidden, data.reset)
        return dist, self.dists[g].log_prob(dist, data.action)

    def agent_entropy(self, g: int, dist: tuple) -> jax.Array:
        return self.dists[g].entropy(dist)

    def agent_update(self, g: int, params, opt, i, data: AgentData, key: jax.Array):
        """Return the agent's new parameters, optimiser state and a dict of scalar metrics."""
        raise NotImplementedError

    # ---- the sequential loop ---------------------------------------------------------------
    def _agent_data(self, batch: Batch, g: int, i: jax.Array, log_factor: jax.Array) -> AgentData:
        a = self.offsets[g] + i
        lead = batch.logp.ndim - 1  # sample axes: 1 ([B]) or 2 ([n_seq, seq_len]); the agent axis follows
        take = lambda x: jnp.take(x, i, axis=lead)  # noqa: E731  [..., n_g, ...] -> [..., ...]
        adv = batch.adv[..., 0] if self.n_values == 1 else jnp.take(batch.adv, a, axis=-1)
        factor = factor_from_log(log_factor) if self.cfg.use_factor else jnp.ones_like(log_factor)
        return AgentData(
            obs=take(batch.obs[g]),
            avail=take(batch.avail[g]),
            action=take(batch.actions[g]),
            dist=jax.tree.map(take, batch.dist[g]),
            logp_old=jnp.take(batch.logp, a, axis=-1),
            active=jnp.take(batch.active, a, axis=-1),
            adv=adv,
            factor=factor,
            hidden=jnp.take(batch.hidden[g], i, axis=1) if self.recurrent else (),  # [n_seq, n_g, H] -> [n_seq, H]
            reset=batch.reset,
        )

    def _update_in_group(self, g: int, actor_params, actor_opt, log_factor, i, batch: Batch, key):
        ag = self.agents
        data = self._agent_data(batch, g, i, log_factor)
        params = ag.take(actor_params[g], g, i)
        opt = ag.take(actor_opt[g], g, i)
        new_params, new_opt, metrics = self.agent_update(g, params, opt, i, data, key)
        _, logp_new = self.agent_log_prob(g, new_params, i, data)
        # Kuba et al. 2022, eq. 10 / App. D line 14: fold this agent's new/old ratio into M for the next agent
        log_factor = update_factor(log_factor, logp_new, data.logp_old, data.active)
        stats = factor_stats(data.factor, data.active)
        metrics.update(
            factor_mean=stats["mean"], factor_min=stats["min"], factor_max=stats["max"],
        )
        actor_params = tuple(ag.put(p, new_params, g, i) if k == g else p for k, p in enumerate(actor_params))
        actor_opt = tuple(ag.put(o, new_opt, g, i) if k == g else o for k, o in enumerate(actor_opt))
        return actor_params, actor_opt, log_factor, metrics

    def learn_batch(self, state: TrainState, batch: Batch):
        key, k_order, k_agents, k_critic = jax.random.split(state.key, 4)
        order = draw_order(k_order, self.n_agents, self.cfg.fixed_order)
        agent_group, agent_local = jnp.asarray(self.agent_group), jnp.asarray(self.agent_local)
        branches = [
            (lambda g: lambda ap, ao, lf, i, k: self._update_in_group(g, ap, ao, lf, i, batch, k))(g)
            for g in range(len(self.groups))
        ]

        def position(carry, inputs):
            actor_params, actor_opt, log_factor = carry
            agent, k = inputs
            actor_params, actor_opt, log_factor, metrics = jax.lax.switch(
                agent_group[agent], branches, actor_params, actor_opt, log_factor, agent_local[agent], k
            )
            return (actor_params, actor_opt, log_factor), metrics

        log_factor = jnp.zeros(batch.logp.shape[:-1])  # M^{i_1} = 1, per sample
        carry = (state.actor_params, state.actor_opt, log_factor)
        (actor_params, actor_opt, _), per_position = jax.lax.scan(
            position, carry, (order, jax.random.split(k_agents, self.n_agents))
        )
        state = state._replace(actor_params=actor_params, actor_opt=actor_opt, key=key)
        state, critic_metrics = self.critic_learn(state, batch, k_critic, self.cfg.critic_epochs, self.cfg.critic_minibatches)
        # per-epoch ratio ranges [positions, epochs] -> over all agents per epoch (Sun et al. 2023, Fig. 1a)
        epochs = {}
        if "ratio_max_epoch" in per_position:
            epochs = epoch_metrics(per_position.pop("ratio_min_epoch").min(0), per_position.pop("ratio_max_epoch").max(0))
        # per-position metrics -> per-agent arrays (agent order), plus the order itself
        metrics = {f"diag/{k}_per_agent": jnp.zeros_like(v).at[order].set(v) for k, v in per_position.items()}
        metrics.update(epochs)
        # each agent's position in this iteration's order (0 = updated first, factor M = 1)
        metrics["diag/position_per_agent"] = jnp.zeros_like(order).at[order].set(jnp.arange(self.n_agents, dtype=order.dtype))
        # the actors' losses, averaged over agents (the runner's NaN guard watches loss/*)
        for key, name in (("policy_loss", "loss/policy"), ("entropy", "loss/entropy")):
            if key in per_position:
                metrics[name] = per_position[key].mean()
        metrics["diag/factor_max"] = per_position["factor_max"].max()
        metrics["diag/factor_min"] = per_position["factor_min"].min()
        metrics.update(critic_metrics)
        metrics.update(trust_region_diagnostics(self, actor_params, batch))
        return state, metrics


class HAPPO(Sequential):
    ENV_BLOCKS = True  # run key env_blocks: every reduction over env copies goes through the block helpers

    def __init__(self, env, cfg: HAPPOConfig, total_updates: int | None = None):
        super().__init__(env, cfg, total_updates)
        from trustmarl.trust.ratios import per_agent_clip

        self.eps = per_agent_clip(cfg.clip_eps, self.n_agents, cfg.clip_rule)

    def agent_update(self, g, params, opt, i, data: AgentData, key):
        cfg = self.cfg

        def loss(p, mb: AgentData):
            dist, logp = self.agent_log_prob(g, p, i, mb)
            ratio = jnp.exp(logp - mb.logp_old)
            # Kuba et al. 2022, eq. 11: M^{i_{1:m}} · min(r Â, clip(r, 1±eps) Â), M held constant
            pi_loss = -masked_mean(happo_objective(ratio, mb.adv, mb.factor, self.eps), mb.active)
            ent = masked_mean(self.agent_entropy(g, dist), mb.active)  # entropy bonus: Schulman et al. 2017, eq. 9 (0.01, the HAPPO code's default)
            clip_frac = masked_mean((jnp.abs(ratio - 1.0) > self.eps).astype(jnp.float32), mb.active)
            aux = {"policy_loss": pi_loss, "entropy": ent, "clip_frac": clip_frac,
                   **minibatch_ratio_range(logp - mb.logp_old, mb.active)}
            return pi_loss - cfg.ent_coef * ent, aux

        apply = lambda p, gr, o: opt_step(self.actor_txs[g], p, gr, o, False)  # noqa: E731
        params, opt, aux = self.sgd(loss, apply, params, opt, data, key, cfg.epochs, cfg.minibatches, reduce=reduce_epochs)
        return params, opt, aux


register_algo(
    "happo", HAPPOConfig, HAPPO,
    "HAPPO: sequential per-agent PPO in a random order, weighted by the compound ratio factor M (Kuba et al. 2022, eq. 10-11)",
)
