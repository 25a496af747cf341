"""F2A2-ISAC (Li et al. 2023, Section 6.3): discrete soft actor-critic with an independent critic and full sharing.

Li et al. 2023 scale their framework to MAgent battle (hundreds of agents) with independent SAC: every
agent's critic reads only its own observation and gives one soft Q value per own action, ``Q(o_i, .)``, and
all agents share one actor and one critic ("similar to Gupta et al. 2017"). Every agent learns from its own
reward. ``copies=one`` is one network pair learning from every agent's samples, the limit of the paper's
per-agent copies under exact consensus; ``copies=per_agent`` gives every agent its own copy of the actor and the
critic, trained on its own samples and tied to the others by the framework's consensus (``algo.consensus``:
PDHG, Li et al. 2023, eq. 5.4, by default; one group of agents only). Under ``consensus=mean`` with plain
gradient steps and every agent alive, ``per_agent`` takes ``one``'s steps.

Per gradient step, on a batch of ``B`` joint transitions (``B x n`` agent samples; agents that were not
alive, ``active=False``, are left out of every mean), with ``K = n_critics`` critics (clipped double Q,
Christodoulou 2019, Section 4, from Fujimoto et al. 2018) and the temperature ``alpha``:

- soft value of the next observation, exact over the discrete actions (Christodoulou 2019, eq. 10;
  Haarnoja et al. 2018, eq. 3), with the *current* policy and the target critics:
  ``V(o'_i) = sum_a pi(a | o'_i) [min_k Q'_k(o'_i, a) - alpha log pi(a | o'_i)]``;
- target (Haarnoja et al. 2018, eq. 6): ``y_i = r_i + gamma (1 - terminated) V(o'_i)``; a truncated episode
  (time limit) bootstraps, a terminated one does not;
- critic (Haarnoja et al. 2018, eq. 5): ``J_Q = sum_k mean_(b,i active) 1/2 (Q_k(o_i, a_i) - y_i)^2``;
- actor (Christodoulou 2019, eq. 12), on the critics after this step's critic update:
  ``J_pi = mean_(b,i active) sum_a pi(a | o_i) [alpha log pi(a | o_i) - min_k Q_k(o_i, a)]`` (Q without gradient);
- targets: Polyak averaging of the critics (``tau``) after every gradient step; the actor has no target;
- ``per_agent``: copy ``i`` minimises agent ``i``'s terms (means over its own alive samples) and the consensus
  terms of Li et al. 2023, eq. 5.4a/b (by default as a proximal step at the consensus event, ``algo.penalty``;
  ``penalty=gradient``: ``lambda_i + beta (w~_i - v_i)`` on its gradient), then one consensus event over the
  actor and critic copies (eq. 5.4c/d); ``mean`` replaces the critic copies by their mean after the
  critic step and the actor copies after the actor step.

The temperature is fixed (``temperature``, 0.08 in Li et al. 2023's MAgent experiment); no automatic tuning.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from trustmarl.algos import f2a2, register_algo
from trustmarl.algos.off_policy.config import OffPolicyConfig
from trustmarl.algos.off_policy.engine import OffPolicy, OffPolicyState
from trustmarl.networks import LogitsActor
from trustmarl.trust import consensus as C
from trustmarl.validation import ConfigError, positive

COPIES = ("one", "per_agent")
NO_NOISE = "F2A2-ISAC samples its softmax policy: no action noise"
NO_JOINT = "F2A2-ISAC keeps SAC's separate critic and actor objectives (no joint objective)"


@dataclasses.dataclass
class F2A2ISACConfig(OffPolicyConfig, f2a2.ConsensusFields):
    """F2A2-ISAC hyperparameters (Li et al. 2023, App. G, MAgent column)."""

    name: str = "f2a2_isac"
    copies: str = "one"  # one: one actor and critic trained on every agent's samples | per_agent: a copy per agent, consensus
    temperature: float = 0.08  # SAC's entropy coefficient alpha (Li et al. 2023: 0.08 on MAgent)
    n_critics: int = 2  # 2: clipped double Q (Christodoulou 2019) | 1: one critic
    share_params: bool = True  # full sharing of actor and critic within a group (Li et al. 2023); not a key
    actor_lr: float = 1e-4  # Adam step size of the shared actor (Li et al. 2023)
    critic_lr: float = 1e-4  # Adam step size of the shared critic (Li et al. 2023)
    gamma: float = 0.95  # discount (Li et al. 2023, MAgent)
    batch_size: int = 128  # joint transitions per gradient step, each with every agent's sample (Li et al. 2023)
    buffer_size: int = 500_000  # joint transitions (Li et al. 2023: 5e5); each holds every agent's view
    tau: float = 0.005  # Polyak coefficient of the target critics (Haarnoja et al. 2018)
    actor_max_grad_norm: float = 10.0  # global-norm clipping of the actor's gradient (not in the paper)

    SHARE_REMEDY = ("F2A2-ISAC always shares one actor and critic among all agents (Li et al. 2023), whatever "
                    "algo.copies; for agents of several kinds use f2a2_sac (one network per agent)")
    UNUSED = {
        "noise_start": NO_NOISE, "noise_end": NO_NOISE, "noise_decay_steps": NO_NOISE,
        "gumbel_temperature": "F2A2-ISAC samples its softmax policy directly (no Gumbel-softmax)",
        "alpha1": NO_JOINT, "alpha2": NO_JOINT, "joint": NO_JOINT,
        "share_params": "F2A2-ISAC always shares its actor and critic among the agents of a group (Li et al. 2023)",
        "policy_reg": "F2A2-ISAC's actor loss is discrete SAC's (Christodoulou 2019, eq. 12), without a logit penalty",
    }

    def validate(self) -> None:
        super().validate()
        if self.copies not in COPIES:
            raise ConfigError(f"algo.copies={self.copies!r} is not allowed; choose one of {', '.join(COPIES)}")
        if self.copies == "per_agent":
            self.validate_consensus()
        positive(self, "temperature")
        if self.n_critics not in (1, 2):
            raise ConfigError(f"algo.n_critics={self.n_critics!r} must be 1 or 2")
        if not self.share_params:
            raise ConfigError("algo.share_params=false: F2A2-ISAC shares its actor and critic among the agents of a "
                              "group (Li et al. 2023)")

    def check_env(self, env) -> None:
        if self.copies != "per_agent":
            return
        if len(env.groups) != 1:
            raise ConfigError(f"algo.copies='per_agent' needs one group of agents with the same spaces; the environment "
                              f"has {len(env.groups)}: {self.SHARE_REMEDY}")
        self.protocol(env)


class F2A2ISAC(OffPolicy):
    def __init__(self, env, cfg: F2A2ISACConfig, total_updates: int | None = None):
        self.per_agent = cfg.copies == "per_agent"
        if self.per_agent:  # the engine then keeps one actor (and Adam state) per agent: the agents' copies
            cfg = dataclasses.replace(cfg, share_params=False)
        super().__init__(env, cfg, total_updates)
        net = dict(hidden_sizes=tuple(cfg.hidden_sizes), activation=cfg.activation, layer_norm=cfg.layer_norm)
        self.actors = tuple(LogitsActor(g.action_space.n, **net) for g in self.groups)
        self.critics = tuple(LogitsActor(g.action_space.n, **net, head_gain=1.0) for g in self.groups)
        self.protocol = cfg.protocol(env) if self.per_agent else None

    def init_networks(self, key):
        """One actor and K critics per group; ``per_agent``: every agent starts with a copy of the same ones."""
        k_actor, k_critic = jax.random.split(key)
        ag, K = self.agents, self.cfg.n_critics
        actors, critics = [], []
        for g, grp in enumerate(self.groups):
            x = ag.dummy_obs(g)[0]
            a = self.actors[g].init(jax.random.fold_in(k_actor, g), x)
            c = jax.vmap(lambda k, g=g, x=x: self.critics[g].init(k, x))(jax.random.split(jax.random.fold_in(k_critic, g), K))
            actors.append(f2a2.copies_of(a, grp.n) if self.per_agent else a)
            critics.append(f2a2.copies_of(c, grp.n) if self.per_agent else c)  # per group: [(n_g,) K, ...]
        return tuple(actors), tuple(critics)

    def critic_stacked(self) -> bool:
        return self.per_agent  # per_agent: one Adam state (and gradient clip) per agent's critic copy

    def init_extra(self, key, actor_params, critic_params):
        if not self.per_agent:
            return ()
        cfg = self.cfg
        return {"consensus": C.init(key, (actor_params, critic_params), self.protocol,
                                    beta=cfg.beta if cfg.consensus == "pdhg" else 1.0)}

    # ---- networks ----------------------------------------------------------------------------------
    def log_policies(self, actor_params: tuple, obs: tuple, avail: tuple) -> tuple:
        """Per group ``log pi(. | o_i)`` ``[..., n_g, A]``, unavailable actions masked out (``per_agent``: agent i's copy)."""
        ag = self.agents
        return tuple(jax.nn.log_softmax(self.masked_logits(ag.apply(self.actors[g], actor_params[g], g, ag.with_id(g, o)), av))
                     for g, (o, av) in enumerate(zip(obs, avail)))

    def q_values(self, critic_params: tuple, obs: tuple) -> tuple:
        """Per group ``Q_k(o_i, .)`` ``[K, ..., n_g, A]`` of the K critics (``per_agent``: agent i's copies)."""
        out = []
        for g, o in enumerate(obs):
            both = lambda p, x, net=self.critics[g]: jax.vmap(lambda pk: net.apply(pk, x))(p)  # noqa: E731  [K, ..., A]
            if self.per_agent:
                out.append(jax.vmap(both, in_axes=(0, -2), out_axes=-2)(critic_params[g], o))
            else:
                out.append(both(critic_params[g], self.agents.with_id(g, o)))
        return tuple(out)

    def average(self, x: jax.Array, w: jax.Array) -> jax.Array:
        """Mean of ``x`` ``[B, N]`` over the alive samples ``w``: of all agents (``one``), or per agent, summed over the
        agents (``per_agent``: copy i's objective is agent i's mean)."""
        if self.per_agent:
            return jnp.sum(jnp.sum(x * w, 0) / jnp.maximum(w.sum(0), 1.0))
        return jnp.sum(x * w) / jnp.maximum(w.sum(), 1.0)

    # ---- acting ------------------------------------------------------------------------------------
    def behaviour(self, actor_params, obs, avail, key, env_steps):
        logp = self.log_policies(actor_params, obs, avail)
        actions = tuple(jax.random.categorical(jax.random.fold_in(key, g), lp).astype(jnp.int32) for g, lp in enumerate(logp))
        return actions, jnp.concatenate([jnp.take_along_axis(lp, a[..., None], -1)[..., 0] for lp, a in zip(logp, actions)], -1)

    def greedy(self, actor_params, obs, avail):
        return tuple(jnp.argmax(lp, -1).astype(jnp.int32) for lp in self.log_policies(actor_params, obs, avail))

    def policy_change(self, old_actor, new_actor, obs, avail):
        ag = self.agents
        logits = lambda params: tuple(ag.apply(self.actors[g], params[g], g, ag.with_id(g, o)) for g, o in enumerate(obs))  # noqa: E731
        return self.categorical_kl_per_agent(logits(old_actor), logits(new_actor), avail)

    # ---- learning ----------------------------------------------------------------------------------
    def soft_target(self, actor_params, target_critic_params, batch: dict) -> jax.Array:
        """``y_i = r_i + gamma (1 - terminated) sum_a pi(a | o'_i) [min_k Q'_k(o'_i, a) - alpha log pi(a | o'_i)]``
        ``[B, N]`` (Haarnoja et al. 2018, eq. 6 with the soft value of eq. 3, exact over discrete actions as
        Christodoulou 2019, eq. 10), no gradient."""
        cfg = self.cfg
        next_logp = self.log_policies(actor_params, batch["next_obs"], batch["next_avail"])
        q_next = self.q_values(target_critic_params, batch["next_obs"])
        v = jnp.concatenate([soft_value(lp, q.min(0), av, cfg.temperature)
                             for lp, q, av in zip(next_logp, q_next, batch["next_avail"])], -1)
        not_done = 1.0 - batch["terminated"].astype(jnp.float32)[:, None]  # a truncation bootstraps
        return jax.lax.stop_gradient(batch["reward"] + cfg.gamma * not_done * v)

    def critic_loss(self, critic_params, batch: dict, y: jax.Array):
        """``sum_k mean_(b,i active) 1/2 (Q_k(o_i, a_i) - y_i)^2`` (Haarnoja et al. 2018, eq. 5); aux: mean Q ``[N]``."""
        q_all = self.q_values(critic_params, batch["obs"])
        q = jnp.concatenate([jnp.take_along_axis(qg, jnp.broadcast_to(a[None, ..., None], qg.shape[:-1] + (1,)), -1)[..., 0]
                             for qg, a in zip(q_all, batch["actions"])], -1)  # [K, B, N]
        loss = self.average(jnp.sum(0.5 * jnp.square(q - y), 0), batch["active"].astype(jnp.float32))
        return loss, q.mean((0, 1))

    def actor_loss(self, actor_params, critic_params, batch: dict):
        """``mean_(b,i active) sum_a pi(a | o_i) [alpha log pi(a | o_i) - min_k Q_k(o_i, a)]`` (Christodoulou 2019,
        eq. 12); aux: per-agent entropy ``[N]``."""
        logp = self.log_policies(actor_params, batch["obs"], batch["avail"])
        q = jax.lax.stop_gradient(self.q_values(critic_params, batch["obs"]))
        per = jnp.concatenate([-soft_value(lp, qg.min(0), av, self.cfg.temperature)
                               for lp, qg, av in zip(logp, q, batch["avail"])], -1)  # [B, N]
        entropy = jnp.concatenate([-jnp.sum(jnp.where(av, jnp.exp(lp) * lp, 0.0), -1) for lp, av in zip(logp, batch["avail"])], -1)
        return self.average(per, batch["active"].astype(jnp.float32)), jax.lax.stop_gradient(entropy.mean(0))

    def train_step(self, state: OffPolicyState, batch: dict, key):
        """Critic step, then the actor on the updated critics (Haarnoja et al. 2018, Algorithm 1), then (``per_agent``)
        the consensus event, then the targets."""
        mode = self.cfg.consensus
        cons = state.extra["consensus"] if self.per_agent else None
        pen_a, pen_c = f2a2.penalty_grads(self.cfg, cons, (state.actor_params, state.critic_params)) if self.per_agent else (0, 0)
        y = self.soft_target(state.actor_params, state.target_critic_params, batch)
        (c_loss, q_mean), grads = jax.value_and_grad(self.critic_loss, has_aux=True)(state.critic_params, batch, y)
        if self.per_agent:  # Li et al. 2023, eq. 5.4a: + lambda_i + beta (w~_i - v_i)
            grads = jax.tree.map(jnp.add, grads, pen_c)
        critic_params, critic_opt = self.apply_critic(state.critic_params, grads, state.critic_opt)
        if self.per_agent and mode == "mean":
            critic_params = f2a2.mean_copies(critic_params)
        (a_loss, entropy), a_grads = jax.value_and_grad(self.actor_loss, has_aux=True)(state.actor_params, critic_params, batch)
        if self.per_agent:  # Li et al. 2023, eq. 5.4b
            a_grads = jax.tree.map(jnp.add, a_grads, pen_a)
        actor_params, actor_opt = self.apply_actors(state.actor_params, a_grads, state.actor_opt)
        metrics = {"loss/critic": c_loss, "loss/actor": a_loss, "loss/entropy": entropy.mean(),
                   "diag/entropy_per_agent": entropy, "diag/q_per_agent": q_mean}
        if self.per_agent:
            if mode == "mean":
                actor_params = f2a2.mean_copies(actor_params)
            else:  # Li et al. 2023, eq. 5.4c/d: publish, mix, dual ascent
                (actor_params, critic_params), cons = f2a2.tie_copies(self.cfg, cons, (actor_params, critic_params), key, self.protocol)
            metrics.update(f2a2.consensus_metrics(mode, cons, (actor_params, critic_params)))
            state = state._replace(extra={**state.extra, "consensus": cons})
        state = state._replace(critic_params=critic_params, critic_opt=critic_opt, actor_params=actor_params, actor_opt=actor_opt)
        return self.update_targets(state, actors=False), metrics


def soft_value(logp: jax.Array, q: jax.Array, avail: jax.Array, alpha: float) -> jax.Array:
    """``sum_a pi(a) [q(a) - alpha log pi(a)]`` over the available actions ``[..., A] -> [...]`` (Christodoulou 2019, eq. 10)."""
    return jnp.sum(jnp.where(avail, jnp.exp(logp) * (q - alpha * logp), 0.0), -1)


register_algo(
    "f2a2_isac", F2A2ISACConfig, F2A2ISAC,
    "F2A2-ISAC: discrete soft actor-critic, independent critic on each agent's own view, one actor and critic "
    "shared by all agents (Li et al. 2023; Haarnoja et al. 2018; Christodoulou 2019)",
    family="off-policy", action_kinds=("discrete",),
)
