"""MAAC: actor-attention-critic (Iqbal & Sha 2019) with soft actor-critic actors.

One centralised attention critic (:class:`~trustmarl.networks.AttentionCritic`) gives every agent
``Q_i(o, (., a_-i))``, the value of each of its own actions given the other agents' actions; agents of
different groups attend to each other (Rover-Tower's rovers and towers). Discrete actions only (the
critic outputs one value per own action). Per gradient step, on a batch from the buffer:

- critic (Iqbal & Sha 2019, eq. 3; the soft target of their code):
  ``L_Q = sum_i E[(Q_i(o, a) - y_i)^2] + 1e-3 sum_{i,h} mean((q_i . k_j)^2)`` with
  ``y_i = r_i + gamma (1 - terminated) Q'_i(o', a') - log pi'_i(a'_i | o'_i) / soft_reward_scale``, ``a' ~ pi'``
  (the target policies); the attention-logit penalty and the 1/n scaling of the gradients of the
  modules shared by all agents (keys, selectors, values, state-action encoders) follow the authors' code;
- actors (Iqbal & Sha 2019, eq. 4 and the counterfactual baseline of eq. 5), on the critic *after* this
  iteration's critic step (the order of the authors' code): with ``a~ ~ pi`` for every agent,
  ``A_i = Q_i(o, a~) - sum_{a_i} pi_i(a_i | o_i) Q_i(o, (a_i, a~_-i))`` and the score-function loss
  ``E[log pi_i(a~_i | o_i) sg(log pi_i(a~_i | o_i) / soft_reward_scale - A_i)] + policy_reg mean(logits^2)``,
  i.e. soft policy iteration with entropy coefficient ``1 / soft_reward_scale`` (the paper's reward scale);
- targets: Polyak averaging of the critic and the actors after every gradient step;
- a lagged old policy (hard copy every ``old_policy_lag`` = m iterations, as the MAAC/MAMT code keeps):
  ``diag/kl_delta_per_agent`` is the batch mean of ``log pi_i(a~_i) - log pi_i^old(a~_i)`` (Li et al. 2022,
  Figs. 15-18), the anchor of the mirror-descent algorithms built on MAAC.

Recurrent actors (``recurrent=true``; :mod:`trustmarl.algos.off_policy.sequences`): a GRU actor per group, the
actors, target actors and lagged old policy unrolled over sampled sequences (:meth:`MAAC.batch_policies`), the
critic on the flattened steps, every batch mean over the valid (unpadded) steps; with ``epsilon_*`` set, acting
mixes a uniform available action into the softmax sample (the stored log-probability is the mixture's).

The update is written as hooks that MAAC's descendants (MAMD, MAMT, F2A2-SAC) override or reuse:
:meth:`MAAC.critic_step` (:meth:`~MAAC.soft_target`, :meth:`~MAAC.critic_loss`), :meth:`MAAC.policy_terms`
(``a~``, log pi, Q, baseline, advantage), :meth:`MAAC.actor_coefficient` (the detached per-agent factor
of the score-function loss), :meth:`MAAC.after_actors` (further networks), with their own state in
``state.extra`` (:meth:`MAAC.init_extra`).

The preset follows the MAMT paper's Table 2 (= the MAAC reference code): 12 env copies, an update every
100 env steps, 4 gradient steps of batch 1024, tau 0.001, reward scale 100, rewards normalised by the
buffer's statistics, critic L2 1e-3. Not reproduced: the reference code's BatchNorm on the inputs.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from trustmarl.algos import register_algo
from trustmarl.algos.base import block_categorical
from trustmarl.algos.f2a2 import gather
from trustmarl.algos.off_policy.config import OffPolicyConfig
from trustmarl.algos.off_policy.engine import OffPolicy, OffPolicyState
from trustmarl.algos.off_policy.sequences import (EpsilonFields, FeedForwardHead, SequenceAgents, SequenceFields, batch_mean,
                                                  epsilon_mixture, epsilon_schedule)
from trustmarl.networks import AttentionCritic, LogitsActor, RecurrentActor
from trustmarl.validation import ConfigError, non_negative, positive, positive_int

SHARED_CRITIC_MODULES = ("key", "selector", "value", "sa_enc_")  # gradients scaled by 1/n (MAAC code)


@dataclasses.dataclass
class MAACConfig(OffPolicyConfig, SequenceFields, EpsilonFields):
    """MAAC hyperparameters (MAMT paper Table 2, the MAAC code's defaults)."""

    name: str = "maac"
    tau: float = 0.001
    reward_norm: bool = True
    critic_l2: float = 1e-3
    soft_reward_scale: float = 100.0  # the entropy coefficient is 1 / soft_reward_scale
    critic_hidden: int = 128  # width of the attention critic's embeddings
    attention_heads: int = 4  # attention heads of the critic (Iqbal & Sha 2019, eq. 3)
    attention_penalty: float = 1e-3  # coefficient of the squared attention logits in the critic loss
    old_policy_lag: int = 100  # m: gradient iterations between hard copies of the lagged old policy (kl_delta)

    UNUSED = {
        "noise_start": "MAAC's actors are stochastic (softmax policies): no action noise",
        "noise_end": "MAAC's actors are stochastic (softmax policies): no action noise",
        "noise_decay_steps": "MAAC's actors are stochastic (softmax policies): no action noise",
        "gumbel_temperature": "MAAC samples its softmax policies directly",
    }
    CHOICES: typing.ClassVar[dict[str, tuple[str, ...]]] = {**OffPolicyConfig.CHOICES, "sequences": ("windows", "episodes")}
    RECURRENT_ALGOS = ("maac",)  # descendants (MAMD, MAMT) refuse recurrent=true; F2A2-SAC names itself

    def validate(self) -> None:
        super().validate()
        positive(self, "soft_reward_scale")
        positive_int(self, "critic_hidden", "attention_heads", "old_policy_lag")
        non_negative(self, "attention_penalty")
        if self.critic_hidden % self.attention_heads:
            raise ConfigError(
                f"algo.attention_heads={self.attention_heads} must divide algo.critic_hidden={self.critic_hidden}"
            )
        self.validate_epsilon()
        self.validate_sequences()


class PolicyTerms(NamedTuple):
    """The shared terms of the family's actor losses on a batch ``[B, ...]`` (per group tuples, ``[B, N]`` arrays)."""

    logits: tuple  # [B, n_g, A] raw actor outputs (carry gradients)
    logp: tuple  # [B, n_g, A] log pi_i(. | o_i), unavailable actions masked (carry gradients)
    actions: tuple  # [B, n_g] a~ ~ pi (no gradient)
    logp_a: jax.Array  # [B, N] log pi_i(a~_i | o_i) (carries the gradient)
    q_all: tuple  # [B, n_g, A] Q_i(o, (., a~_-i)) (no gradient)
    q: jax.Array  # [B, N] Q_i(o, a~)
    baseline: jax.Array  # [B, N] sum_a pi_i(a | o_i) Q_i(o, (a, a~_-i))
    adv: jax.Array  # [B, N] Q_i - b_i
    old_logp: Any = None  # [B, n_g, A] log pi_i^old(. | o_i) of the lagged old policy, when given (no gradient)
    old_logp_a: Any = None  # [B, N] log pi_i^old(a~_i | o_i)


class MAAC(SequenceAgents, OffPolicy):
    # run key env_blocks: critic and actor gradients all-reduced (engine's apply_*), the batch's actions a~ and a' drawn as
    # rows of one draw for all blocks (sample), replay sampling and reward statistics per block (engine)
    ENV_BLOCKS = True

    def __init__(self, env, cfg: MAACConfig, total_updates: int | None = None):
        super().__init__(env, cfg, total_updates)
        net = dict(hidden_sizes=tuple(cfg.hidden_sizes), activation=cfg.activation, layer_norm=cfg.layer_norm)
        self.recurrent = bool(getattr(cfg, "recurrent", False))
        if self.recurrent:  # MLP encoder, GRU, linear logits head (the on-policy family's RecurrentActor)
            self.actors = tuple(RecurrentActor(FeedForwardHead(LogitsActor(g.action_space.n, ())), tuple(cfg.hidden_sizes),
                                               cfg.gru_size, cfg.activation, cfg.layer_norm) for g in self.groups)
        else:
            self.actors = tuple(LogitsActor(g.action_space.n, **net) for g in self.groups)
        self.agent_nets = self.actors  # the networks SequenceAgents steps
        self.critic = AttentionCritic(group_sizes=tuple(g.n for g in self.groups),
                                      n_actions=tuple(g.action_space.n for g in self.groups),
                                      hidden=cfg.critic_hidden, heads=cfg.attention_heads)

    def check_env_blocks(self, blocks: int) -> None:
        """Recurrent actors refuse env blocks: their sequence batches' sampled actions (drawn as each block's rows of one
        draw) and means over valid steps have not been compared against the program without blocks."""
        super().check_env_blocks(blocks)
        if self.recurrent:
            raise ConfigError(f"env_blocks={blocks}: {self.name} with recurrent=true does not split its env copies into "
                              "blocks (not yet checked against the program without blocks); use env_blocks=1")

    def init_networks(self, key):
        k_actor, k_critic = jax.random.split(key)
        ag = self.agents
        actors = tuple(ag.init(a, jax.random.fold_in(k_actor, g), g, *self.agent_inputs(g)) for g, a in enumerate(self.actors))
        obs = tuple(jnp.zeros((g.n, g.obs_dim)) for g in self.groups)
        act = tuple(jnp.zeros((g.n, g.action_space.n)) for g in self.groups)
        return actors, self.critic.init(k_critic, obs, act)

    def log_policies(self, actor_params: tuple, obs: tuple, avail: tuple) -> tuple[tuple, tuple]:
        """Per group ``(logits, log pi)`` ``[..., n_g, A]`` (unavailable actions masked out of ``log pi``); recurrent
        actors: from a zero hidden state."""
        ag, logits = self.agents, []
        if self.recurrent:
            logits = list(self.single_step(actor_params, obs, avail))
        else:
            for g in range(len(self.groups)):
                logits.append(ag.apply(self.actors[g], actor_params[g], g, ag.with_id(g, obs[g])))
        return self.with_log_probs(tuple(logits), avail)

    def with_log_probs(self, logits: tuple, avail: tuple) -> tuple[tuple, tuple]:
        return tuple(logits), tuple(jax.nn.log_softmax(self.masked_logits(lg, av)) for lg, av in zip(logits, avail))

    def batch_policies(self, actor_params: tuple, batch: dict, nxt: bool = False) -> tuple[tuple, tuple]:
        """:meth:`log_policies` at the batch's ``obs`` (or ``next_obs``, with the next step's masks); recurrent actors
        unroll the batch's sequences (``batch["seq"]``), the successor being one more step from ``o_t``'s hidden state."""
        obs, avail = ("next_obs", "next_avail") if nxt else ("obs", "avail")
        if "seq" not in batch:
            return self.log_policies(actor_params, batch[obs], batch[avail])
        out, out_next = self.unroll(lambda h, o, av, r: self.agent_step(actor_params, h, o, av, r), batch["seq"], with_next=nxt)
        return self.with_log_probs(self.flatten_outputs(out_next if nxt else out), batch[avail])

    def sample(self, logp: tuple, key) -> tuple:
        """A sample of every agent's policy at ``log pi`` (per group ``[B, n_g, A]``, ``B`` env copies or a batch's samples):
        ``jax.random.categorical``'s draw; with env blocks each block's rows of one draw for the rows of all blocks
        (:func:`~trustmarl.algos.base.block_categorical`), so that blocks sharing a key draw differently."""
        return tuple(block_categorical(jax.random.fold_in(key, g), lp) for g, lp in enumerate(logp))

    gather = staticmethod(gather)  # [..., N]: per agent the entry of x (per group [..., n_g, A]) at its action

    def onehot(self, actions: tuple) -> tuple:
        return tuple(jax.nn.one_hot(a, g.action_space.n) for g, a in zip(self.groups, actions))

    # ---- acting --------------------------------------------------------------------------------
    def behaviour(self, actor_params, obs, avail, key, env_steps):
        _, logp = self.log_policies(actor_params, obs, avail)
        return self.explore_logp(logp, avail, key, env_steps)

    def explore_logp(self, logp: tuple, avail: tuple, key, env_steps):
        """A sample of the policies; with ``epsilon`` on, a uniform available action with probability epsilon, else a
        sample of the policy, the log-probability being the mixture's (what the buffer stores as the behaviour's)."""
        if not getattr(self.cfg, "explores_uniformly", False):
            actions = self.sample(logp, key)
            return actions, self.gather(logp, actions)
        eps = epsilon_schedule(self.cfg, env_steps)
        random = self.agents.random_actions(jax.random.fold_in(key, 1000), avail)
        pairs = [epsilon_mixture(jax.random.fold_in(key, g), lp, av, r, eps) for g, (lp, av, r) in enumerate(zip(logp, avail, random))]
        return tuple(a for a, _ in pairs), jnp.concatenate([lp for _, lp in pairs], -1)

    def explore(self, logits, avail, key, env_steps):
        return self.explore_logp(self.with_log_probs(logits, avail)[1], avail, key, env_steps)

    def greedy_outputs(self, logits, avail):
        return tuple(jnp.argmax(self.masked_logits(lg, av), -1).astype(jnp.int32) for lg, av in zip(logits, avail))

    def sample_batch(self, buffer, key, reward_stats):
        """Recurrent actors: sequences, flattened for the critic (``seq`` and the padding ``weight`` beside them)."""
        if self.recurrent:
            return self.sample_flat_sequences(buffer, key, reward_stats)
        return super().sample_batch(buffer, key, reward_stats)

    def greedy(self, actor_params, obs, avail):
        _, logp = self.log_policies(actor_params, obs, avail)
        return tuple(jnp.argmax(lp, -1).astype(jnp.int32) for lp in logp)

    # ---- learning: one gradient iteration, in hooks (critic, policy terms, actor coefficient, after the actors)
    def train_step(self, state: OffPolicyState, batch: dict, key):
        """Critic step, then the actors on the *updated* critic (the MAAC and MAMT code's order), then
        :meth:`after_actors`, then the Polyak targets."""
        k_next, k_act = jax.random.split(key)
        pre_actor = state.actor_params
        state, metrics = self.critic_step(state, batch, k_next)
        state, terms, actor_metrics = self.actor_step(state, batch, k_act)
        state, more = self.after_actors(state, batch, terms, pre_actor, jax.random.fold_in(key, 2))
        return self.update_targets(state), {**metrics, **actor_metrics, **more}

    def q_values(self, critic_params, obs: tuple, act: tuple):
        """``(Q_i(o, (., a_-i)) per group [..., n_g, A], attention logits)`` of the critic the targets and the
        actors read (F2A2-SAC: each agent's own copy, the first of its twin critics)."""
        return self.critic.apply(critic_params, obs, act)

    def soft_target(self, target_actor_params, target_critic_params, batch: dict, key) -> jax.Array:
        """``y_i = r_i + gamma (1 - terminated) Q'_i(o', a') - log pi'_i(a'_i | o'_i) / soft_reward_scale`` with
        ``a' ~ pi'`` (Iqbal & Sha 2019, eq. 3 with the soft target of their code), ``[B, N]``, no gradient."""
        cfg = self.cfg
        _, next_logp = self.batch_policies(target_actor_params, batch, nxt=True)
        next_a = self.sample(next_logp, key)
        q_next, _ = self.q_values(target_critic_params, batch["next_obs"], self.onehot(next_a))
        not_done = 1.0 - batch["terminated"].astype(jnp.float32)[:, None]  # truncation bootstraps
        y = batch["reward"] + cfg.gamma * not_done * self.gather(q_next, next_a) - self.gather(next_logp, next_a) / cfg.soft_reward_scale
        return jax.lax.stop_gradient(y)

    def critic_loss(self, critic_params, batch: dict, y: jax.Array):
        """``sum_i E[(Q_i(o, a) - y_i)^2]`` (Iqbal & Sha 2019, eq. 3) plus the authors' attention-logit penalty
        ``attention_penalty * sum over agents and heads of mean_(j != i) logit^2``; aux ``(per-agent loss, mean Q)``."""
        q_all, logits = self.critic.apply(critic_params, batch["obs"], self.onehot(batch["actions"]))
        q, w = self.gather(q_all, batch["actions"]), batch.get("weight")  # w: padded steps excluded (recurrent actors)
        per_agent = batch_mean(jnp.square(q - y), w)
        if w is None:
            penalty = jnp.sum(jnp.square(logits)) / (logits.shape[0] * max(self.n_agents - 1, 1))
        else:
            penalty = batch_mean(jnp.sum(jnp.square(logits), axis=(1, 2, 3)), w) / max(self.n_agents - 1, 1)
        return per_agent.sum() + self.cfg.attention_penalty * penalty, (per_agent, batch_mean(q, w))

    def critic_step(self, state: OffPolicyState, batch: dict, key):
        """One Adam step of the critic; the gradients of the modules every agent shares are scaled by 1/n."""
        y = self.soft_target(state.target_actor_params, state.target_critic_params, batch, key)
        grads, (c_loss, q_mean) = jax.grad(self.critic_loss, has_aux=True)(state.critic_params, batch, y)
        grads = scale_shared(grads, 1.0 / self.n_agents)
        critic_params, critic_opt = self.apply_critic(state.critic_params, grads, state.critic_opt)
        state = state._replace(critic_params=critic_params, critic_opt=critic_opt)
        return state, {"loss/critic": c_loss.mean(), "diag/critic_loss_per_agent": c_loss, "diag/q_per_agent": q_mean}

    def policy_terms(self, actor_params, critic_params, batch: dict, key, old_actor_params=None) -> PolicyTerms:
        """What every actor loss of the family reads (Iqbal & Sha 2019, eq. 4-5): ``a~ ~ pi`` for every agent,
        ``Q_i(o, a~)``, the counterfactual baseline ``b_i = sum_a pi_i(a | o_i) Q_i(o, (a, a~_-i))`` and
        ``A_i = Q_i - b_i``. Only ``logp``/``logp_a``/``logits`` carry gradients (to the actors)."""
        logits, logp = self.batch_policies(actor_params, batch)
        acts = self.sample(jax.lax.stop_gradient(logp), key)
        q_all, _ = self.q_values(critic_params, batch["obs"], self.onehot(acts))
        q_all = jax.lax.stop_gradient(q_all)
        probs = [jax.lax.stop_gradient(jnp.exp(lp)) for lp in logp]
        baseline = jnp.concatenate([jnp.sum(p * q, -1) for p, q in zip(probs, q_all)], -1)
        q = self.gather(q_all, acts)
        old_logp = old = None
        if old_actor_params is not None:
            _, old_logp = jax.lax.stop_gradient(self.batch_policies(old_actor_params, batch))
            old = self.gather(old_logp, acts)
        return PolicyTerms(logits, logp, acts, self.gather(logp, acts), q_all, q, baseline, q - baseline, old_logp, old)

    def actor_coefficient(self, state: OffPolicyState, terms: PolicyTerms) -> tuple[jax.Array, dict]:
        """The detached per-sample, per-agent factor ``f_i`` of the score-function loss
        ``E[log pi_i(a~_i | o_i) f_i]``: MAAC's soft policy iteration ``f_i = log pi_i(a~_i) / soft_reward_scale - A_i``
        (Iqbal & Sha 2019, eq. 4 with entropy coefficient 1 / soft_reward_scale). ``[B, N]`` and metrics."""
        return terms.logp_a / self.cfg.soft_reward_scale - terms.adv, {}

    def actor_penalty(self, state: OffPolicyState, terms: PolicyTerms) -> jax.Array:
        """``[N]``: a differentiable per-agent term added to the actor loss (e.g. an exact divergence). MAAC: 0."""
        return jnp.zeros((self.n_agents,))

    def actor_step(self, state: OffPolicyState, batch: dict, key):
        """One Adam step of every actor on ``E[log pi_i(a~_i) sg(f_i)] + policy_reg mean(logits^2)``."""
        cfg, w = self.cfg, batch.get("weight")  # w: padded steps excluded (recurrent actors)

        def actor_loss(actor_params):
            terms = self.policy_terms(actor_params, state.critic_params, batch, key, state.extra["old_actor"])
            coef, aux = self.actor_coefficient(state, terms)
            pol = terms.logp_a * jax.lax.stop_gradient(coef)
            if w is None:
                reg = jnp.concatenate([jnp.mean(jnp.square(lg), axis=(0, -1)) for lg in terms.logits])
            else:
                reg = jnp.concatenate([batch_mean(jnp.mean(jnp.square(lg), -1), w) for lg in terms.logits])
            per_agent = batch_mean(pol, w) + cfg.policy_reg * reg + self.actor_penalty(state, terms)
            return per_agent.sum(), (per_agent, jax.lax.stop_gradient(terms), aux)

        grads, (a_loss, terms, aux) = jax.grad(actor_loss, has_aux=True)(state.actor_params)
        actor_params, actor_opt = self.apply_actors(state.actor_params, grads, state.actor_opt)
        entropy = jnp.concatenate([batch_mean(-jnp.sum(jnp.exp(lp) * jnp.where(jnp.isfinite(lp), lp, 0.0), -1), w)
                                   for lp in terms.logp])
        metrics = {
            "loss/actor": a_loss.mean(), "loss/entropy": entropy.mean(), "diag/actor_loss_per_agent": a_loss,
            "diag/entropy_per_agent": entropy, "diag/advantage_per_agent": batch_mean(terms.adv, w),
            # Li et al. 2022's consecutive-policy divergence: batch mean of log pi_i(a~_i) - log pi_i^old(a~_i), a~ ~ pi
            "diag/kl_delta_per_agent": batch_mean(terms.logp_a - terms.old_logp_a, w), **aux,
        }
        return state._replace(actor_params=actor_params, actor_opt=actor_opt), terms, metrics

    def after_actors(self, state: OffPolicyState, batch: dict, terms: PolicyTerms, pre_actor: tuple, key):
        """Steps after the actors' (further networks, trust radii). MAAC: the lagged old policy (the MAAC and
        MAMT code) becomes a hard copy of the actors from before this iteration's step whenever
        ``(niter + 1) % old_policy_lag == 0``, ``niter`` counting critic steps including this one."""
        niter = state.grad_steps + 1
        refresh = (niter + 1) % self.cfg.old_policy_lag == 0
        old = jax.tree.map(lambda p, o: jnp.where(refresh, p, o), pre_actor, state.extra["old_actor"])
        return state._replace(extra={**state.extra, "old_actor": old}), {}

    def init_extra(self, key, actor_params, critic_params):
        return {"old_actor": actor_params}

def scale_shared(grads, factor: float):
    """Scale the gradients of the critic modules every agent shares (MAAC code: 1/n after the backward pass)."""
    def scale(path, g):
        name = str(getattr(path[1], "key", "")) if len(path) > 1 else ""
        return g * factor if name.startswith(SHARED_CRITIC_MODULES) else g

    return jax.tree_util.tree_map_with_path(scale, grads)


register_algo(
    "maac", MAACConfig, MAAC,
    "MAAC: soft actor-critic actors with a multi-head attention critic and a counterfactual baseline (Iqbal & Sha 2019)",
    family="off-policy", action_kinds=("discrete",),
)
