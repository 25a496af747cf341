"""F2A2-DDPG and F2A2-TD3 (Li et al. 2023, Props. 4 and 5): MADDPG and MATD3 made fully decentralised.

The centralised counterpart is MADDPG with one shared, agent-conditioned critic ``Q(x, a, onehot(i))``
(``maddpg critic=shared``, Li et al. 2023, App. H.3). Here every agent ``i`` holds its own copy ``w~_i`` of
that critic (layout ``[K, N, ...]``: ``K`` critics, one copy per agent), trains it on its own reward and
reads ``Q_i = Q(x, a, onehot(i))`` from it; the copies are tied by the consensus of
:mod:`trustmarl.algos.f2a2` over the agent axis (PDHG by default, Li et al. 2023, eq. 5.4). Actors are
MADDPG's discrete actors (Gumbel-softmax, masked logits); the behaviour policy is ``pi0 = softmax(logits)``
(the argmax of a Gumbel-softmax sample is a Gumbel-max sample of it, whatever the temperature), whose
log-probability vectors every transition stores for the ratios.

Per gradient step, with ``y_i = r_i + gamma (1 - terminated) min_k Q'_{k,i}(x', a')`` on agent ``i``'s own
reward from its target copies (``a'``: the target actors' next actions, the others' from agent ``i``'s
teammate models with ``moa=true``), ``a0`` the buffer actions, ``a^`` resampled actions (agent ``i``'s own a
straight-through Gumbel-softmax sample of its actor, the others' from its teammate models, or with
``moa=false`` as ``actor_others`` says: their current deterministic policies or the executed actions), and
the stop-gradient ratios ``rho_f = min(eps, pi_i(a0_i) / pi0_i(a0_i))``, ``rho_b = min(eps, pi0_i(a^_i) / pi_i(a^_i))``,
in the reward convention (rewards ``r = -c``; the surrogates of Props. 4-5 whose gradients are the paper's):

- critic copy ``i``: ``mean[-alpha1 rho_f Q_1(x, a0) + alpha2 sum_k (Q_k(x, a0) - y_i)^2]
  + mean[-alpha1 Q_1(x, a^) + alpha2 rho_b sum_k (Q_k(x, a^) - y_i)^2]``; critic 2 has no alpha1 term; the
  halves summed (``combine=sum``, as the paper) or averaged; plus ``lambda_i + beta (w~_i - v_i)`` (eq. 5.4a);
- actor ``i``: ``mean[-alpha1 Q_1(x, a^_psi) + alpha2 rho_b sum_k (Q_k(x, a^_psi) - y_i)^2]`` through agent
  ``i``'s relaxed action only (critic frozen), plus MADDPG's ``policy_reg mean(logits^2)``;
- w/o-JOINT (``joint=false``): critic ``alpha2 sum_k mean (Q_k(x, a0) - y_i)^2``, actor ``-alpha1 mean Q_1(x, a^_psi)``;
- then one consensus event (eq. 5.4c/d), the teammate models' step, the Polyak targets.

F2A2-TD3 adds twin critics (minimum in the target), target smoothing by a Gumbel-softmax sample of the target
actors' logits (a categorical sample at any temperature; option: uniform with probability ``target_epsilon``),
and per-agent actor delays ``d_i`` drawn once per seed from ``policy_delays`` ({2, 3}; the paper gives no values):
agent ``i``'s actor and target step when the gradient-step count is a multiple of ``d_i``.

With ``joint=false``, ``consensus=mean``, ``moa=false``, one critic and plain gradient steps, F2A2-DDPG's
parameters are ``maddpg critic=shared``'s.

Recurrent actors (``recurrent=true``): MADDPG's GRU actors and sequences; the actor outputs are unrolled over the
sequences (:meth:`MADDPG.batch_outputs`), the critic copies stay feed-forward on the flattened steps, and every mean
is over the valid (unpadded) steps. The paper's teammate models do not read sequences.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from trustmarl.algos import f2a2, register_algo
from trustmarl.algos.off_policy.maddpg import MADDPG, MADDPGConfig
from trustmarl.algos.off_policy.sequences import batch_mean
from trustmarl.networks import MASKED_LOGIT
from trustmarl.validation import ConfigError


@dataclasses.dataclass
class F2A2DDPGConfig(MADDPGConfig, f2a2.OffPolicyFields):
    """F2A2-DDPG: per-agent copies of MADDPG's shared critic on own rewards, joint objective, consensus (Li et al. 2023)."""

    name: str = "f2a2_ddpg"
    critic: str = "shared"  # the agents hold copies of MADDPG's one agent-conditioned critic Q(x, a, onehot(i))
    actor_others: str = "current"  # moa=false: the others' resampled actions from their current policies (current) or the buffer
    policy_delays: tuple[int, ...] = (1,)  # each agent's actor delay, drawn once per seed from these values
    target_epsilon: float = 0.0  # target smoothing option: a uniform available next action with this probability

    RECURRENT_ALGOS = ("f2a2_ddpg", "f2a2_td3")  # GRU actors on MADDPG's sequences (the critic copies stay feed-forward)

    def validate(self) -> None:
        super().validate()
        self.validate_off_policy()
        if self.critic != "shared":
            raise ConfigError(f"algo.critic={self.critic!r}: F2A2's agents hold copies of one shared critic; only 'shared' is allowed")
        if self.policy_delay != 1:
            raise ConfigError(f"algo.policy_delay={self.policy_delay!r} is not read by {self.name}: set algo.policy_delays "
                              "(each agent's delay is drawn from them)")
        delays = tuple(self.policy_delays)
        if not delays or any(not isinstance(d, int) or isinstance(d, bool) or d < 1 for d in delays):
            raise ConfigError(f"algo.policy_delays={list(delays)} must be a non-empty list of integers >= 1")
        if max(delays) > self.grad_steps:
            raise ConfigError(f"algo.policy_delays={list(delays)} has a delay above algo.grad_steps={self.grad_steps}: some updates "
                              "would take no step of that agent's actor; make algo.grad_steps >= every delay")
        if not (isinstance(self.target_epsilon, (int, float)) and 0.0 <= self.target_epsilon <= 1.0):
            raise ConfigError(f"algo.target_epsilon={self.target_epsilon!r} must be in [0, 1]")


@dataclasses.dataclass
class F2A2TD3Config(F2A2DDPGConfig):
    """F2A2-TD3: twin critics, target smoothing, per-agent actor delays from {2, 3} (Li et al. 2023, Prop. 5)."""

    name: str = "f2a2_td3"
    twin_critics: bool = True
    target_noise: float = 0.2  # > 0: smoothed targets (discrete actions: a Gumbel-softmax sample of the target logits)
    policy_delays: tuple[int, ...] = (2, 3)

    def validate(self) -> None:
        super().validate()
        if not self.twin_critics:
            raise ConfigError("algo.twin_critics=false is F2A2-DDPG with delays; f2a2_td3 needs twin critics (Prop. 5)")


def _per_copy(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """``tx`` applied to every copy on the leading axis alone (each agent clips and steps its own copy)."""
    return optax.GradientTransformation(jax.vmap(tx.init), jax.vmap(tx.update))


class F2A2DDPG(f2a2.OffPolicyCopies, MADDPG):
    def __init__(self, env, cfg: F2A2DDPGConfig, total_updates: int | None = None):
        super().__init__(env, cfg, total_updates)
        self.setup_copies(env, cfg)
        self.critic_weight = 1.0  # every copy descends its own agent's loss
        self.per_agent_delays = tuple(cfg.policy_delays) != (1,)
        self.critic_tx = _per_copy(self.critic_tx)  # the engine vmaps over the K critics, this over the copies

    def init_networks(self, key):
        """MADDPG's shared critic(s), copied to every agent (all copies start equal)."""
        actors, critic = super().init_networks(key)  # [K, 1, ...]
        return actors, jax.tree.map(lambda p: jnp.repeat(p, self.n_agents, axis=1), critic)

    def agent_major(self, copies):
        return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), copies)

    from_agent_major = agent_major

    def policy_log_probs(self, actor_params, obs, avail):
        return self.output_log_probs(self.outputs(actor_params, obs), avail)

    def output_log_probs(self, outputs, avail):
        return tuple(jax.nn.log_softmax(self.masked_logits(o, av)) for o, av in zip(outputs, avail))

    def batch_log_probs(self, actor_params, batch):
        return self.output_log_probs(self.batch_outputs(actor_params, batch), batch["avail"])

    def init_extra(self, key, actor_params, critic_params):
        extra = super().init_extra(key, actor_params, critic_params)
        choices = jnp.asarray(self.cfg.policy_delays, jnp.int32)
        return {**extra, "delays": jax.random.choice(jax.random.fold_in(key, 31), choices, (self.n_agents,))}

    def policy_delays(self, state):
        return state.extra["delays"]

    # ---- the others' actions ---------------------------------------------------------------------------
    def observer_vectors(self, own: tuple, logp: tuple, key) -> jax.Array:
        """``[N, B, A]``: observer ``i``'s joint action vector, its own ``own`` actions, the others' from its teammate models
        (their predicted log-probabilities ``logp``)."""
        joint = self.observer_actions(own, logp, key)
        vecs = [jax.nn.one_hot(a, g.action_space.n) for a, g in zip(joint, self.groups)]
        return jnp.concatenate([v.reshape(v.shape[:-2] + (-1,)) for v in vecs], -1)

    def others_actions(self, batch: dict, out: tuple, a_hat: tuple, key) -> jax.Array:
        """The others' actions at a resampled ``a^`` (agent ``i``'s own slot is replaced): ``[N, B, A]`` from the
        teammate models, else ``[B, A]``: the current deterministic policies or the buffer (``actor_others``)."""
        if self.cfg.moa:
            return self.observer_vectors(a_hat, batch["moa"]["now"], key)
        if self.cfg.actor_others == "current":
            return jax.lax.stop_gradient(self.joint(batch["obs"], self.action_vectors(out, batch["avail"]))[..., self.joint_obs_dim:])
        return self.joint(batch["obs"], self.agents.action_vectors(batch["actions"]))[..., self.joint_obs_dim:]

    def resampled(self, out: tuple, batch: dict, key):
        """Every agent's own straight-through Gumbel-softmax sample ``[B, A]`` (forward: a one-hot drawn from
        softmax(logits)) and the drawn actions per group (no gradient)."""
        vecs = self.action_vectors(out, batch["avail"], key, straight_through=True)
        own = self.joint(batch["obs"], vecs)[..., self.joint_obs_dim:]
        return own, tuple(jnp.argmax(jax.lax.stop_gradient(v), -1).astype(jnp.int32) for v in vecs)

    # ---- one gradient step -------------------------------------------------------------------------------
    def train_step(self, state, batch, key):
        batch = self.teammates(state, batch, jax.random.fold_in(key, 11))
        return super().train_step(state, batch, key)

    def next_action_vectors(self, state, batch, key):
        vecs = super().next_action_vectors(state, batch, key)
        eps = self.cfg.target_epsilon
        if not eps:
            return vecs
        out = []  # F2A2-TD3's smoothing option: a uniform available action with probability eps
        for g, (v, av) in enumerate(zip(vecs, batch["next_avail"])):
            k_u, k_mix = jax.random.split(jax.random.fold_in(key, 100 + g))
            u = jax.nn.one_hot(jax.random.categorical(k_u, jnp.where(av, 0.0, MASKED_LOGIT)), v.shape[-1], dtype=v.dtype)
            out.append(jnp.where(jax.random.uniform(k_mix, v.shape[:-1] + (1,)) < eps, u, v))
        return tuple(out)

    def td_target(self, state, batch, key):
        """``y_i = r_i + gamma (1 - terminated) min_k Q'_{k,i}(x', a')`` from agent ``i``'s target copies ``[N, B]``
        (per-agent batches: at agent ``i``'s batch); with teammate models the others' next actions are drawn from agent
        ``i``'s models (Li et al. 2023, Alg. 1, line 10)."""
        if not self.cfg.moa and not self.per_agent_batch:
            return super().td_target(state, batch, key)
        next_act = self.next_action_vectors(state, batch, key)
        x = self.joint(batch["next_obs"], next_act)  # [(N,) B, D]
        if self.cfg.moa:
            own = tuple(jnp.argmax(v, -1).astype(jnp.int32) for v in next_act)
            acts = self.observer_vectors(own, batch["moa"]["next"], jax.random.fold_in(key, 7))
            x_obs = x[..., : self.joint_obs_dim]
            x = jnp.concatenate([jnp.broadcast_to(x_obs, acts.shape[:2] + x_obs.shape[-1:]), acts], -1)
        q_next = self.q_values(state.target_critic_params, x, per_agent=True).min(0)  # [N, B]
        not_done = 1.0 - self.own_steps(batch["terminated"]).astype(jnp.float32).T  # [N, B] or [1, B]
        return jax.lax.stop_gradient(self.own_agents(batch["reward"]).T + self.cfg.gamma * not_done * q_next)

    def critic_step(self, state, batch, key):
        """Every copy on Prop. 4 / 5's critic surrogate plus the consensus terms (eq. 5.4a); ``mean``: the copies
        are then replaced by their mean."""
        cfg, y, w = self.cfg, batch["y"], batch.get("weight")  # w: padded steps excluded (recurrent actors)
        x0 = self.joint(batch["obs"], self.agents.action_vectors(batch["actions"]))  # [B, D] (per-agent batches: [N, B, D])
        out = jax.lax.stop_gradient(self.batch_outputs(state.actor_params, batch))
        logp = self.output_log_probs(out, batch["avail"])
        own, a_hat = self.resampled(out, batch, key)
        rho_f, rho_b = (r.T for r in self.ratios(jax.lax.stop_gradient(self.own_rows(logp)), batch, self.own_rows(a_hat)))  # [N, B]
        x_hat = self.substitute(x0[..., : self.joint_obs_dim], self.others_actions(batch, out, a_hat, jax.random.fold_in(key, 9)),
                                jax.lax.stop_gradient(own))

        def loss(critics):
            q0 = self.q_values(critics, x0, per_agent=self.per_agent_batch)  # [K, N, B]
            # Li et al. 2023, Props. 4-5 (reward convention), the buffer half; critic 2 has no alpha1 term
            per = sum(f2a2.critic_surrogate(q0[k], y, cfg.alpha1 if k == 0 else 0.0, cfg.alpha2, cfg.joint, rho_f)
                      for k in range(self.n_critics))
            if cfg.joint:  # the resampled half: -alpha1 Q_1(a^) + alpha2 rho_b sum_k (Q_k(a^) - y)^2
                qr = self.q_values(critics, x_hat, per_agent=True)
                per = self.half(per, -cfg.alpha1 * qr[0] + cfg.alpha2 * rho_b * sum(jnp.square(q - y) for q in qr))
            per_agent = batch_mean(per, w, axis=-1)
            return per_agent.sum(), (per_agent, batch_mean(q0[0], w, axis=-1), batch_mean(q0[0] - y, w, axis=-1))

        grads, (c_loss, q_mean, offset) = jax.grad(loss, has_aux=True)(state.critic_params)
        cons = self.consensus(state)
        pen = self.from_agent_major(f2a2.penalty_grads(cfg, cons, self.agent_major(state.critic_params)))
        critic, critic_opt = self.apply_critic(state.critic_params, jax.tree.map(jnp.add, grads, pen), state.critic_opt)
        critic, cons = f2a2.after_critic(cfg.consensus, cons, self.agent_major(critic))
        state = state._replace(critic_params=self.from_agent_major(critic), critic_opt=critic_opt,
                               extra=self.with_consensus(state.extra, cons))
        return state, {"loss/critic": c_loss.mean(), "diag/critic_loss_per_agent": c_loss, "diag/q_per_agent": q_mean,
                       "diag/critic_offset_per_agent": offset, "diag/ratio_forward_per_agent": batch_mean(rho_f, w, axis=-1),
                       "diag/ratio_backward_per_agent": batch_mean(rho_b, w, axis=-1)}

    def actor_objective(self, state, batch, out, key):
        """``[N]``: ``mean[-alpha1 Q_1(x, a^_psi) + alpha2 rho_b sum_k (Q_k(x, a^_psi) - y_i)^2]`` through agent ``i``'s
        relaxed action (Li et al. 2023, Props. 4-5, reward convention; w/o-JOINT: the first term)."""
        cfg = self.cfg
        own, a_hat = self.resampled(out, batch, key)
        x_obs = self.joint(batch["obs"], self.agents.action_vectors(batch["actions"]))[..., : self.joint_obs_dim]
        others = self.others_actions(batch, jax.lax.stop_gradient(out), a_hat, jax.random.fold_in(key, 9))
        q = self.q_values(state.critic_params, self.substitute(x_obs, others, own), per_agent=True)  # [K, N, B]
        per = -cfg.alpha1 * q[0]
        if cfg.joint:
            logp = jax.lax.stop_gradient(self.output_log_probs(out, batch["avail"]))
            rho_b = self.ratios(self.own_rows(logp), batch, self.own_rows(a_hat))[1].T
            per = per + cfg.alpha2 * rho_b * sum(jnp.square(qk - batch["y"]) for qk in q)
        return batch_mean(per, batch.get("weight"), axis=-1)  # padded steps excluded (recurrent actors)

    def own_outputs(self, out: tuple) -> tuple:
        return self.own_rows(out)

    def after_actors(self, state, batch, key):
        """One consensus event (eq. 5.4c/d) over the communication graph, then the teammate models' step."""
        cfg, cons = self.cfg, self.consensus(state)
        copies, cons = f2a2.tie_copies(cfg, cons, self.agent_major(state.critic_params), jax.random.fold_in(key, 4), self.protocol)
        state = state._replace(critic_params=self.from_agent_major(copies), extra=self.with_consensus(state.extra, cons))
        metrics = f2a2.consensus_metrics(cfg.consensus, cons, copies)
        if cfg.moa:
            state, more = self.moa_step(state, batch)
            metrics.update(more)
        return state, metrics


register_algo(
    "f2a2_ddpg", F2A2DDPGConfig, F2A2DDPG,
    "F2A2-DDPG: per-agent copies of MADDPG's shared critic on own rewards, joint objective, consensus (Li et al. 2023, Prop. 4)",
    family="off-policy", action_kinds=("discrete",),
)
register_algo(
    "f2a2_td3", F2A2TD3Config, F2A2DDPG,
    "F2A2-TD3: F2A2-DDPG with twin critic copies, smoothed targets and per-agent actor delays (Li et al. 2023, Prop. 5)",
    family="off-policy", action_kinds=("discrete",),
)
