"""What every F2A2 algorithm shares (Li et al. 2023): consensus settings, the joint surrogates, copies.

F2A2 (Li, Jin, Wang, Yan & Zha 2023) gives each agent ``i`` its own copy ``w~_i`` of what a centralised
actor-critic shares (here: the critic), trains the copy on agent ``i``'s own reward, and ties the copies
together by the primal-dual (PDHG) consensus of :mod:`trustmarl.trust.consensus`. This module holds, once,
what F2A2-COMA, MA-AC (Zhang et al. 2018), F2A2-SAC, F2A2-DDPG and F2A2-TD3 have in common:

* :class:`ConsensusFields`: the configuration of the consensus (graph, schedule, penalty ``beta``, the
  penalty factors ``alpha1``/``alpha2`` of the joint objective, how the copies are tied) and its checks;
* :func:`critic_surrogate` and :func:`actor_weight`: the joint actor-critic objective in the reward
  convention (Li et al. 2023, eq. 4.4 and Prop. 3, rewards ``r = -c``), and the separate objectives of
  the "w/o-JOINT" ablation (block coordinate descent, eq. 4.6);
* :func:`tie_copies`: one consensus event on ``[n, ...]`` copies (PDHG, plain mixing, or replacement by
  the mean) and :func:`consensus_metrics` / :func:`comm_metrics`: the logged diagnostics and counters;
* :class:`OffPolicyFields` and :class:`OffPolicyCopies`: what the off-policy instantiations add to their
  centralised parents (MAAC, MADDPG): the consensus state in ``state.extra``, the behaviour log-probability
  vectors stored with the transitions, the truncated ratios, the two estimators, the teammate models.

How the copies are tied (``consensus``):

* ``pdhg`` (F2A2): the primal step of copy ``i`` adds ``lambda_i + beta (w~_i - v_i)`` to its gradient
  (eq. 5.4a), then after the actor step one consensus event mixes the published copies over the graph
  into the views ``v_i`` and ascends the duals (eq. 5.4c/d);
* ``mix`` (MA-AC, Zhang et al. 2018, Algorithm 1): no penalty and no duals; after the actor step each
  agent that communicates replaces its copy by the Metropolis-Hastings mix of its neighbours' copies;
* ``mean``: every copy is replaced by the mean of the copies right after the critic step (the limit
  ``beta -> inf`` on the complete graph: the critic step projected onto the consensus set), so the actors
  read the agreed critic. With plain gradient steps and the separate objectives this is exactly the
  centralised algorithm (one critic trained on the mean of the agents' losses).
"""

from __future__ import annotations

import dataclasses
import math
import typing

import flax.linen as nn
import numpy as np
import jax
import jax.numpy as jnp

from trustmarl.algos.agents import opt_init, opt_step
from trustmarl.networks import MASKED_LOGIT
from trustmarl.trust import consensus as C
from trustmarl.validation import ConfigError

CONSENSUS = ("pdhg", "mix", "mean")


@dataclasses.dataclass
class ConsensusFields:
    """Consensus of the per-agent critic copies and the joint objective (Li et al. 2023, Sections 4-5)."""

    alpha1: float = 1.0  # weight of the actor objective in the joint objective (Li et al. 2023, eq. 4.4)
    alpha2: float = 1.0  # weight of the critic's squared TD error in the joint objective (eq. 4.4)
    joint: bool = True  # joint actor-critic objective (F2A2); false: separate objectives (the w/o-JOINT ablation)
    consensus: str = "pdhg"  # pdhg (F2A2, eq. 5.4) | mix (MA-AC: mix the copies, no duals) | mean (copies replaced by their mean)
    beta: float = 1.0  # consensus penalty beta > 0 of the augmented Lagrangian (eq. 5.2)
    graph: str = "complete"  # complete | empty | ring (random ring + extra_edges) | edges (the list in algo.edges)
    extra_edges: float = 0.0  # graph=ring: fraction p of the non-ring pairs added at every update step (Table 4)
    edges: tuple[str, ...] = ()  # graph=edges: undirected edges "agent_a:agent_b" by agent name
    interval_mean: float = 1.0  # mu of the consensus intervals max(1, round(N(mu, sigma))) in update steps; inf = never
    interval_std: float = 0.0  # sigma of the consensus intervals (Table 5)
    no_comm: str = "stale_anchor"  # an agent that hears nobody keeps its last view (stale_anchor) or views its own copy (own_view)

    CONSENSUS_CHOICES: typing.ClassVar[dict[str, tuple[str, ...]]] = {
        "consensus": CONSENSUS,
        "graph": ("complete", "empty", "ring", "edges"),
        "no_comm": C.NO_COMM,
    }

    def validate_consensus(self) -> None:
        for name, allowed in self.CONSENSUS_CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"algo.{name}={getattr(self, name)!r} is not allowed; choose one of {', '.join(allowed)}")
        for name in ("alpha1", "alpha2"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ConfigError(f"algo.{name}={v!r} must be a finite number >= 0 (a weight of the joint objective)")
        if self.alpha1 == 0 and self.alpha2 == 0:
            raise ConfigError("algo.alpha1 and algo.alpha2 are both 0: the joint objective would be empty; make one > 0")
        if self.consensus == "pdhg":
            try:
                C.check_beta(self.beta)
            except ConfigError as err:
                raise ConfigError(f"algo.beta: {err}") from None
        if self.consensus == "mean" and self.graph != "complete":
            raise ConfigError(f"algo.consensus='mean' replaces every copy by the mean of all copies: it needs "
                              f"algo.graph='complete', not {self.graph!r}")
        if self.graph == "edges" and not self.edges:
            raise ConfigError("algo.graph='edges' needs algo.edges, a list of 'agent_a:agent_b' pairs")
        if self.edges and self.graph != "edges":
            raise ConfigError(f"algo.edges is only read with algo.graph='edges', not {self.graph!r}")
        for e in self.edges:
            if not isinstance(e, str) or e.count(":") != 1:
                raise ConfigError(f"algo.edges entry {e!r} must be 'agent_a:agent_b'")
        self._protocol(2 if self.graph != "edges" else None)  # graph, p, mu, sigma, no_comm

    def _protocol(self, n: int | None, names=None) -> C.Protocol | None:
        if n is None:
            return None
        graph = self.graph
        if graph == "edges":
            graph = C.from_edges(names, [tuple(e.split(":")) for e in self.edges])
        no_comm = "own_view" if self.consensus == "mix" else self.no_comm
        p = self.extra_edges
        if not (isinstance(p, (int, float)) and 0.0 <= p <= 1.0):
            raise ConfigError(f"algo.extra_edges={p!r} must be in [0, 1] (the fraction of non-ring pairs added)")
        if p and self.graph != "ring":
            raise ConfigError(f"algo.extra_edges={p!r} needs algo.graph='ring' (extra edges are added to the ring)")
        if not (isinstance(self.interval_mean, (int, float)) and self.interval_mean > 0):
            raise ConfigError(f"algo.interval_mean={self.interval_mean!r} must be > 0 (inf: never communicate)")
        if not (isinstance(self.interval_std, (int, float)) and 0 <= self.interval_std < math.inf):
            raise ConfigError(f"algo.interval_std={self.interval_std!r} must be a finite number >= 0")
        return C.Protocol(n_agents=n, graph=graph, extra_edges=float(p), interval_mean=float(self.interval_mean),
                          interval_std=float(self.interval_std), no_comm=no_comm)

    def protocol(self, env) -> C.Protocol:
        """The consensus protocol on ``env``'s agents (``ConfigError`` for one agent or an unknown agent name)."""
        names = [a for g in env.groups for a in g.agents]
        if len(names) < 2:
            raise ConfigError(f"consensus needs at least 2 agents; the environment has {len(names)} ({', '.join(names)})")
        return self._protocol(len(names), names)

    def check_env(self, env) -> None:
        self.protocol(env)


# ---- the joint objective in the reward convention (Li et al. 2023, Prop. 3 and eq. 4.4) ----------


def critic_surrogate(q: jax.Array, y: jax.Array, alpha1: float, alpha2: float, joint: bool, rho=1.0) -> jax.Array:
    """Per-sample critic loss whose gradient is Li et al. 2023's critic gradient in the reward convention.

    Joint (Prop. 3, rewards ``r = -c``): ``-alpha1 rho Q + alpha2 (Q - sg(y))^2``, gradient
    ``(-alpha1 rho + 2 alpha2 delta) dQ`` with ``delta = Q - y``: the actor objective pushes the reward
    critic up, so its fixed point is shifted by ``+alpha1 / (2 alpha2 (1 - gamma))`` (the tabular case).
    ``rho``: a (stop-gradient) importance ratio of the off-policy instantiations. Separate (w/o-JOINT):
    ``alpha2 (Q - sg(y))^2``.
    """
    td = jnp.square(q - jax.lax.stop_gradient(y))
    if not joint:
        return alpha2 * td
    return -alpha1 * jax.lax.stop_gradient(rho) * q + alpha2 * td


def actor_weight(adv: jax.Array, delta: jax.Array, alpha1: float, alpha2: float, joint: bool) -> jax.Array:
    """Score-function weight (to maximise) of ``log pi_i(a_i | o_i)``: Li et al. 2023, Prop. 3 in the reward
    convention, ``alpha1 A - alpha2 delta^2`` (joint: actions the critic fits badly are discouraged), or
    ``alpha1 A`` (w/o-JOINT). No gradient."""
    w = alpha1 * adv - (alpha2 * jnp.square(delta) if joint else 0.0)
    return jax.lax.stop_gradient(w)


# ---- copies and consensus events ----------------------------------------------------------------


def copies_of(params, n: int):
    """``n`` identical copies of ``params`` on a leading agent axis (every agent starts from the same critic)."""
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (n,) + jnp.shape(x)), params)


def mean_copies(copies):
    """Every copy replaced by the mean of the copies."""
    return jax.tree.map(lambda x: jnp.broadcast_to(jnp.mean(x, axis=0), x.shape), copies)


def penalty_grads(mode: str, cons: C.ConsensusState, copies):
    """What the consensus adds to the gradient of every copy: ``lambda_i + beta (w~_i - v_i)`` under
    ``pdhg`` (Li et al. 2023, eq. 5.4a), nothing otherwise."""
    if mode == "pdhg":
        return C.penalty_grads(cons, copies)
    return jax.tree.map(jnp.zeros_like, copies)


def after_critic(mode: str, cons: C.ConsensusState, copies):
    """``mean``: the copies are replaced by their mean right after the critic step (a complete-graph event)."""
    if mode != "mean":
        return copies, cons
    n = cons.order.shape[0]
    counters = C.count_messages(cons.counters, C.complete(n), jnp.ones((n,), bool))
    return mean_copies(copies), cons._replace(counters=counters)


def tie_copies(mode: str, cons: C.ConsensusState, copies, key, protocol: C.Protocol):
    """One consensus event after the actor step: ``pdhg`` (eq. 5.4c/d), ``mix`` (copies <- mixed views)."""
    if mode == "mean":
        return copies, cons
    cons = C.step(cons, copies, key, protocol)
    if mode == "mix":  # Zhang et al. 2018, Algorithm 1: omega_i <- sum_j c(i, j) omega~_j (own_view: silent agents keep theirs)
        copies = cons.view
        cons = cons._replace(dual=jax.tree.map(jnp.zeros_like, cons.dual))
    return copies, cons


def consensus_metrics(mode: str, cons: C.ConsensusState, copies) -> dict:
    """Per agent: the copy's distance to the mean copy; under ``pdhg`` also ``||lambda_i||`` and ``||sum_i lambda_i||``."""
    out = {"diag/consensus_distance_per_agent": C.disagreement(copies)}
    if mode == "pdhg":
        sq = [jnp.sum(jnp.square(x).reshape(x.shape[0], -1), axis=1) for x in jax.tree.leaves(cons.dual)]
        out["diag/dual_norm_per_agent"] = jnp.sqrt(sum(sq))
        out["diag/dual_sum_norm"] = jnp.sqrt(sum(jnp.sum(jnp.square(jnp.sum(x, 0))) for x in jax.tree.leaves(cons.dual)))
    return out


def comm_metrics(counters: C.CommCounters, payload: dict[str, int], observed_scalars: int) -> dict:
    """Traceable cumulative communication metrics, ``comm/<name>_per_agent`` ``[N]`` and ``comm/<name>_total``
    (float32: exact up to 2**24; the host-side :func:`trustmarl.trust.consensus.comm_metrics` is exact).
    Messages are counted point to point (an edge between two communicating agents carries two); the
    broadcast count is one message per agent per event; ``observed_scalars`` counts the joint observations
    and executed actions every agent reads during training (not communication). Centralised algorithms
    pass zero counters: they report 0."""
    def f(x):
        return x.astype(jnp.float32)

    size = float(sum(payload.values()))
    per_agent = {
        "consensus_events": f(counters.events),
        "messages_sent": f(counters.sent),
        "messages_received": f(counters.received),
        "scalars_sent": f(counters.sent) * size,
        "scalars_received": f(counters.received) * size,
        "broadcast_scalars_sent": f(counters.events) * size,
        "observed_scalars": f(counters.observed) * float(observed_scalars),
    }
    for kind, s in payload.items():
        per_agent[f"{kind}_scalars_sent"] = f(counters.sent) * float(s)
        per_agent[f"{kind}_scalars_received"] = f(counters.received) * float(s)
    out = {}
    for name, v in per_agent.items():
        out[f"comm/{name}_per_agent"] = v
        out[f"comm/{name}_total"] = jnp.sum(v)
    out["comm/edges_per_event"] = jnp.sum(f(counters.received)) / jnp.maximum(jnp.sum(f(counters.events)), 1.0)
    out["comm/update_steps"] = f(counters.updates)
    return out


def payload_size(copies) -> int:
    return C.payload_size(copies)


def observed_record_size(env) -> int:
    """Scalars of one env step every agent reads in training: the global state and the executed joint action."""
    return int(env.state_dim) + int(env.n_agents)


__all__ = ["ConsensusFields", "OffPolicyCopies", "OffPolicyFields", "actor_weight", "after_critic", "comm_metrics", "consensus_metrics", "copies_of",
           "critic_surrogate", "gather", "mean_copies", "moa_log_probs", "moa_loss", "moa_tv", "penalty_grads", "tie_copies", "TeammateModel"]


# ---- teammate models (Li et al. 2023, Section 5.2, simplified) --------------------------------------
#
# Agent i never reads agent j's policy; it learns a model pi~_j(. | o_j) by supervised learning on j's
# executed actions (observed as labels). Here: one MLP per observer and target group on [o_j, onehot(j)]
# (the paper's character / mental recurrent nets and its two prediction heads are not implemented).


class TeammateModel(nn.Module):
    """Logits ``[..., n_g, A]`` of the actions of a group's agents from ``[o_j, onehot(j)]`` (one hidden ReLU layer)."""

    n_actions: int
    hidden: int = 128

    @nn.compact
    def __call__(self, obs):
        n = obs.shape[-2]
        x = jnp.concatenate([obs, jnp.broadcast_to(jnp.eye(n, dtype=obs.dtype), obs.shape[:-2] + (n, n))], -1)
        return nn.Dense(self.n_actions)(nn.relu(nn.Dense(self.hidden)(x)))


def moa_log_probs(model: TeammateModel, params, obs: jax.Array, avail: jax.Array) -> jax.Array:
    """``[n_observers, ..., n_g, A]``: every observer's predicted log-probabilities (params stacked over observers)."""
    logits = jax.vmap(model.apply, in_axes=(0, None))(params, obs)
    return jax.nn.log_softmax(jnp.where(avail, logits, MASKED_LOGIT), -1)


def moa_loss(logp: jax.Array, actions: jax.Array, others: jax.Array) -> jax.Array:
    """``[n_observers]`` cross-entropy on the executed actions ``[B, n_g]``, averaged over the other agents
    (``others`` ``[n_observers, n_g]``: 1 where the target is not the observer)."""
    nll = -jnp.take_along_axis(logp, jnp.broadcast_to(actions[None, ..., None], logp.shape[:-1] + (1,)), -1)[..., 0]
    return jnp.sum(nll.mean(1) * others, -1) / jnp.maximum(jnp.sum(others, -1), 1.0)


def moa_tv(logp: jax.Array, true_logp: jax.Array, others: jax.Array) -> jax.Array:
    """``[n_observers]`` total-variation distance ``1/2 sum_a |pi~_j(a) - pi_j(a)|`` to the true policies, over the others."""
    tv = 0.5 * jnp.sum(jnp.abs(jnp.exp(logp) - jnp.exp(true_logp)[None]), -1).mean(1)
    return jnp.sum(tv * others, -1) / jnp.maximum(jnp.sum(others, -1), 1.0)


# ---- what the off-policy F2A2 algorithms add to their centralised parents ---------------------------


@dataclasses.dataclass
class OffPolicyFields(ConsensusFields):
    """The off-policy instantiations' keys (Li et al. 2023, Props. 4-6 and Section 5.2)."""

    combine: str = "sum"  # sum | mean of the buffer and resampled estimators (Li et al. 2023 sum them)
    ratio_clip: float = 1.0  # eps of the truncated importance ratios min(eps, ratio) (inf: untruncated)
    moa: bool = False  # teammate models: the others' unexecuted actions come from each agent's model of them (false: their true policies)
    moa_hidden: int = 128  # hidden width of the teammate models (one ReLU layer)
    moa_lr: float = 1e-3  # Adam step size of the teammate models (cross-entropy on executed actions)

    def validate_off_policy(self) -> None:
        self.validate_consensus()
        if self.combine not in ("sum", "mean"):
            raise ConfigError(f"algo.combine={self.combine!r} is not allowed; choose one of sum, mean")
        if not (isinstance(self.ratio_clip, (int, float)) and self.ratio_clip > 0 and not math.isnan(self.ratio_clip)):
            raise ConfigError(f"algo.ratio_clip={self.ratio_clip!r} must be > 0 (inf: untruncated ratios)")
        for name in ("moa_hidden",):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"algo.{name}={v!r} must be an integer >= 1")
        if not (isinstance(self.moa_lr, (int, float)) and self.moa_lr > 0):
            raise ConfigError(f"algo.moa_lr={self.moa_lr!r} must be > 0")
        if getattr(self, "share_params", False):
            raise ConfigError("algo.share_params=true: F2A2's policies are individual (Li et al. 2023, Table 1)")


def gather(x: tuple, actions: tuple) -> jax.Array:
    """``[..., N]``: per agent the entry of ``x`` (per group ``[..., n_g, A]``) at its action."""
    return jnp.concatenate([jnp.take_along_axis(v, a[..., None], -1)[..., 0] for v, a in zip(x, actions)], -1)


class OffPolicyCopies:
    """Mixed in before an off-policy centralised algorithm (MAAC, MADDPG) by its F2A2 version: the consensus
    state of the per-agent critic copies and the communication counters, the behaviour log-probability
    vectors stored with every transition (for the ratios ``rho_b``), the truncated ratios, and the teammate
    models. The algorithm provides :meth:`policy_log_probs` and :meth:`agent_major` (its copies with the
    agent axis first) and calls :meth:`setup_copies` in its constructor."""

    def setup_copies(self, env, cfg) -> None:
        self.protocol = cfg.protocol(env)
        self.offsets = [int(o) for o in self.agents.offsets]
        self.moa_nets = tuple(TeammateModel(g.action_space.n, cfg.moa_hidden) for g in self.groups)
        self.moa_tx = self.make_tx(cfg.moa_lr, cfg.actor_max_grad_norm)
        # per group [N observers, n_g targets]: 1 where the target is another agent
        self.others = tuple(np.array([[float(o != self.offsets[g] + k) for k in range(grp.n)] for o in range(self.n_agents)],
                                     np.float32) for g, grp in enumerate(self.groups))

    def policy_log_probs(self, actor_params: tuple, obs: tuple, avail: tuple) -> tuple:
        """Per group ``log pi_i(. | o_i)`` ``[..., n_g, A]`` of the current (behaviour) policies."""
        raise NotImplementedError

    def agent_major(self, copies):
        """The copies with the agent axis first (what :mod:`trustmarl.trust.consensus` reads)."""
        return copies

    def from_agent_major(self, copies):
        return copies

    def shared_scalars(self, copies) -> int:
        """Scalars of one agent's published copy."""
        return sum(int(np.prod(x.shape[1:])) for x in jax.tree.leaves(self.agent_major(copies)))

    # ---- behaviour log-probability vectors in the buffer (these algorithms' transitions only) ----------
    def act(self, view, carry, last, key):
        env_actions, (actions, logp), carry = super().act(view, carry, last, key)
        logp_all = self.policy_log_probs(view.actor_params, last.obs, last.avail)
        warm = view.env_steps < self.cfg.warmup_steps
        uniform = [jnp.where(av, -jnp.log(jnp.maximum(jnp.sum(av, -1, keepdims=True), 1)), MASKED_LOGIT) for av in last.avail]
        return env_actions, (actions, logp, tuple(jnp.where(warm, u, lp) for u, lp in zip(uniform, logp_all))), carry

    def transition(self, view, last, ts, act_out):
        return dict(super().transition(view, last, ts, act_out[:2]), behaviour_logp=act_out[2])

    def example_transition(self, last):
        return dict(super().example_transition(last),
                    behaviour_logp=tuple(jnp.zeros((g.n, g.action_space.n)) for g in self.groups))

    # ---- ratios and the two estimators ---------------------------------------------------------------
    def ratios(self, logp: tuple, batch: dict, a_hat: tuple):
        """``(rho_f [B, N], rho_b [B, N])``: the agent's own truncated ratios ``min(eps, pi_i(a0_i) / pi0_i(a0_i))`` at
        the buffer actions and ``min(eps, pi0_i(a^_i) / pi_i(a^_i))`` at the resampled ones (Li et al. 2023, Remark 4;
        no gradient)."""
        eps = self.cfg.ratio_clip
        rho_f = jnp.minimum(eps, jnp.exp(gather(logp, batch["actions"]) - batch["logp"]))
        rho_b = jnp.minimum(eps, jnp.exp(gather(batch["behaviour_logp"], a_hat) - gather(logp, a_hat)))
        return jax.lax.stop_gradient(rho_f), jax.lax.stop_gradient(rho_b)

    def half(self, x_buf, x_res):
        """The buffer and the resampled estimators summed (``combine=sum``, Li et al. 2023) or averaged."""
        return x_buf + x_res if self.cfg.combine == "sum" else 0.5 * (x_buf + x_res)

    # ---- teammate models -------------------------------------------------------------------------------
    def observer_actions(self, own: tuple, obs: tuple, avail: tuple, key, moa) -> tuple:
        """Per group ``[N observers, B, n_g]``: observer ``i``'s joint action, its own ``own`` action and the
        others' drawn from its teammate models (Li et al. 2023, Section 5.2: ``a~_j ~ pi~_j(o_j)``)."""
        out = []
        for g, (net, a) in enumerate(zip(self.moa_nets, own)):
            logp = moa_log_probs(net, moa[g], obs[g], avail[g])
            drawn = jax.random.categorical(jax.random.fold_in(key, g), logp).astype(a.dtype)
            out.append(jnp.where(jnp.asarray(self.others[g])[:, None, :] > 0, drawn, a[None]))
        return tuple(out)

    def moa_step(self, state, batch):
        """One Adam step of every agent's teammate models on the executed actions; their TV to the true policies."""
        def loss(moa):
            per = [moa_loss(moa_log_probs(net, p, batch["obs"][g], batch["avail"][g]), batch["actions"][g], self.others[g])
                   * self.others[g].sum(-1) for g, (net, p) in enumerate(zip(self.moa_nets, moa))]
            return jnp.sum(sum(per)), sum(per) / max(self.n_agents - 1, 1)

        grads, ce = jax.grad(loss, has_aux=True)(state.extra["moa"])
        pairs = [opt_step(self.moa_tx, p, gr, o, True) for p, gr, o in zip(state.extra["moa"], grads, state.extra["moa_opt"])]
        moa = tuple(p for p, _ in pairs)
        true = self.policy_log_probs(state.actor_params, batch["obs"], batch["avail"])
        tv = sum(moa_tv(moa_log_probs(net, p, batch["obs"][g], batch["avail"][g]), jax.lax.stop_gradient(true[g]),
                        self.others[g]) * self.others[g].sum(-1) for g, (net, p) in enumerate(zip(self.moa_nets, moa)))
        extra = {**state.extra, "moa": moa, "moa_opt": tuple(o for _, o in pairs)}
        return state._replace(extra=extra), {"loss/moa": ce.mean(), "diag/moa_tv_per_agent": tv / max(self.n_agents - 1, 1)}

    # ---- consensus state and communication ------------------------------------------------------------
    def init_extra(self, key, actor_params, critic_params):
        cfg = self.cfg
        base = super().init_extra(key, actor_params, critic_params)
        cons = C.init(jax.random.fold_in(key, 5), self.agent_major(critic_params), self.protocol,
                      beta=cfg.beta if cfg.consensus == "pdhg" else 1.0)
        extra = {**(base if isinstance(base, dict) else {}), "consensus": cons._replace(counters=()),
                 "comm": C.counters_init(self.n_agents)}
        if cfg.moa:  # one teammate model per observer and target group, stacked over the observers
            moa = tuple(jax.vmap(net.init, in_axes=(0, None))(jax.random.split(jax.random.fold_in(key, 20 + g), self.n_agents),
                                                           jnp.zeros((grp.n, grp.obs_dim)))
                        for g, (net, grp) in enumerate(zip(self.moa_nets, self.groups)))
            extra.update(moa=moa, moa_opt=tuple(opt_init(self.moa_tx, p, True) for p in moa))
        return extra

    def consensus(self, state):
        return state.extra["consensus"]._replace(counters=state.extra["comm"])

    @staticmethod
    def with_consensus(extra, cons):
        return {**extra, "consensus": cons._replace(counters=()), "comm": cons.counters}

    def learn(self, state, traj):
        state, metrics = super().learn(state, traj)
        state = state._replace(extra={**state.extra, "comm": C.observe(state.extra["comm"], self.steps_per_update)})
        size = self.shared_scalars(state.critic_params)
        metrics.update(comm_metrics(state.extra["comm"], {"shared_critic": size}, observed_record_size(self.env)))
        return state, metrics
