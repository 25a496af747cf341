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

* ``pdhg`` (F2A2): eq. 5.4a's primal step is split in two. The optimiser (Adam) steps copy ``i`` on its own
  objective ``J_i``; after the actor step the consensus event first takes the exact proximal step of size
  ``eta = penalty_lr`` on the augmentation terms, ``w~_i <- (w~_i + eta beta v_i - eta lambda_i) / (1 + eta beta)``
  (``penalty=proximal``, default), then mixes the published copies over the graph into the views ``v_i`` and
  ascends the duals (eq. 5.4c/d). ``penalty=gradient`` instead adds ``lambda_i + beta (w~_i - v_i)`` to the
  gradient the optimiser takes (eq. 5.4a read literally). Under Adam that reading winds up: Adam moves every
  parameter by about its step size whatever the gap, while eq. 5.4d integrates ``beta (w~_i - v_i)`` into
  ``lambda_i`` at every event, so the duals grow without bound and drown ``J_i``'s gradient. The proximal step
  shrinks the gap by ``1 / (1 + eta beta)`` per event whatever the optimiser does (stable for every
  ``eta beta > 0``). With plain gradient steps both readings have the exact optimum of ``sum_i J_i`` as their
  fixed point; under Adam the proximal one settles where the agents' Adam steps on ``J_i`` balance, with
  ``lambda_i = -(Adam's step of copy i) / eta`` (tests/trust/test_consensus_adam.py);
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

from trustmarl import replay
from trustmarl.algos import teammate_models as TM
from trustmarl.algos.agents import opt_init, opt_step
from trustmarl.algos.off_policy.sequences import batch_mean, epsilon_schedule
from trustmarl.networks import MASKED_LOGIT
from trustmarl.trust import consensus as C
from trustmarl.validation import ConfigError

CONSENSUS = ("pdhg", "mix", "mean")
PENALTY = ("proximal", "gradient")
MOA_MODELS = ("simple", "paper")


@dataclasses.dataclass
class ConsensusFields:
    """Consensus of the per-agent critic copies and the joint objective (Li et al. 2023, Sections 4-5)."""

    alpha1: float = 1.0  # weight of the actor objective in the joint objective (Li et al. 2023, eq. 4.4)
    alpha2: float = 1.0  # weight of the critic's squared TD error in the joint objective (eq. 4.4)
    joint: bool = False  # true: the joint actor-critic objective (Li et al. 2023, eq. 4.4; its actor stalls at the critic's fixed point) | false: separate objectives (w/o-JOINT, eq. 4.6)
    consensus: str = "pdhg"  # pdhg (F2A2, eq. 5.4) | mix (MA-AC: mix the copies, no duals) | mean (copies replaced by their mean)
    beta: float = 1.0  # consensus penalty beta > 0 of the augmented Lagrangian (eq. 5.2)
    penalty: str = "proximal"  # pdhg step on the consensus terms: proximal (exact step of size penalty_lr after the optimiser's) | gradient (added to the gradient the optimiser normalises: eq. 5.4a read literally)
    penalty_lr: float = 0.1  # step size eta of the proximal consensus step (penalty=proximal): the gap to the view shrinks by 1/(1 + eta beta) per event
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
        "penalty": PENALTY,
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
            eta = self.penalty_lr
            if self.penalty == "proximal" and not (isinstance(eta, (int, float)) and math.isfinite(eta) and eta > 0):
                raise ConfigError(f"algo.penalty_lr={eta!r} must be a finite number > 0 (the step size of the proximal consensus step)")
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
        limit = int(getattr(env, "max_episode_steps", 0) or 0)
        if getattr(self, "moa", False) and getattr(self, "moa_model", "") == "paper" and limit and self.moa_window > limit:
            raise ConfigError(f"algo.moa_window={self.moa_window} is longer than the episode limit ({limit} steps): "
                              f"the mental net reads steps of the current episode only; use at most {limit}")
        paper = getattr(self, "moa", False) and getattr(self, "moa_model", "") == "paper"
        need = self.num_envs * (self.moa_window + 1) if paper else 0  # one window of moa_window + 1 steps per env copy
        if paper and self.learning_starts < need:
            raise ConfigError(f"algo.learning_starts={self.learning_starts} must be >= algo.num_envs*(algo.moa_window+1)="
                              f"{need}: the teammate models' batches are windows of the mental history, one per env copy")


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
    return jax.tree.map(lambda x: jnp.broadcast_to(C.sum_copies(x) / x.shape[0], x.shape), copies)


def penalty_grads(cfg: ConsensusFields, cons: C.ConsensusState, copies):
    """What the consensus adds to the gradient of every copy: ``lambda_i + beta (w~_i - v_i)`` under ``pdhg`` with
    ``penalty=gradient`` (Li et al. 2023, eq. 5.4a read literally), nothing otherwise (``penalty=proximal`` takes
    that step in :func:`tie_copies`, outside the optimiser)."""
    if cfg.consensus == "pdhg" and cfg.penalty == "gradient":
        return C.penalty_grads(cons, copies)
    return jax.tree.map(jnp.zeros_like, copies)


def after_critic(mode: str, cons: C.ConsensusState, copies):
    """``mean``: the copies are replaced by their mean right after the critic step (a complete-graph event)."""
    if mode != "mean":
        return copies, cons
    n = cons.order.shape[0]
    counters = C.count_messages(cons.counters, C.complete(n), jnp.ones((n,), bool))
    return mean_copies(copies), cons._replace(counters=counters)


def tie_copies(cfg: ConsensusFields, cons: C.ConsensusState, copies, key, protocol: C.Protocol):
    """One consensus event after the actor step: ``pdhg`` (``penalty=proximal``: first the proximal step of size
    ``penalty_lr`` on the consensus terms of eq. 5.2, then eq. 5.4c/d), ``mix`` (copies <- mixed views)."""
    mode = cfg.consensus
    if mode == "mean":
        return copies, cons
    if mode == "pdhg" and cfg.penalty == "proximal":  # eq. 5.4a's consensus terms, exactly and outside Adam
        copies = C.pull(cons, copies, cfg.penalty_lr)
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
        out["diag/dual_sum_norm"] = jnp.sqrt(sum(jnp.sum(jnp.square(C.sum_copies(x))) for x in jax.tree.leaves(cons.dual)))
    return out


def comm_metrics(counters: C.CommCounters, payload: dict[str, int], observed_scalars: int, policies=None) -> dict:
    """Traceable cumulative communication metrics, ``comm/<name>_per_agent`` ``[N]`` and ``comm/<name>_total``
    (float32: exact up to 2**24; the host-side :func:`trustmarl.trust.consensus.comm_metrics` is exact).
    Messages are counted point to point (an edge between two communicating agents carries two); the
    broadcast count is one message per agent per event; ``observed_scalars`` counts the joint observations
    and executed actions every agent reads during training (not communication). Centralised algorithms
    pass zero counters: they report 0.

    ``policies`` (MA-AC, whose agents need the others' policies: Li et al. 2023, Table 2, "joint policy:
    communication"): each agent's policy size in scalars ``[N]``. At each of its consensus events an agent receives
    the current policy of every other agent, point to point whatever the graph: ``policy_params_scalars_received_i =
    events_i (sum_j P_j - P_i)`` and ``policy_params_scalars_sent_j = (sum_i events_i - events_j) P_j``, added to
    ``scalars_sent`` / ``scalars_received``; the broadcast count adds ``events_i P_i``. Message counts stay the
    consensus messages."""
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
    if policies is not None:  # every event of agent i pulls the n - 1 other policies
        p, ev = jnp.asarray(np.asarray(policies, np.float32)), f(counters.events)
        sent, received = (jnp.sum(ev) - ev) * p, ev * (jnp.sum(p) - p)
        per_agent.update(policy_params_scalars_sent=sent, policy_params_scalars_received=received,
                         scalars_sent=per_agent["scalars_sent"] + sent, scalars_received=per_agent["scalars_received"] + received,
                         broadcast_scalars_sent=per_agent["broadcast_scalars_sent"] + ev * p)
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


# ---- teammate models (Li et al. 2023, Section 5.2) --------------------------------------------------
#
# Agent i never reads agent j's policy; it learns a model pi~_j(. | o_j) by supervised learning on j's
# executed actions (observed as labels). moa_model=simple: one MLP per observer and target group on
# [o_j, onehot(j)] (below); moa_model=paper: the character and mental nets and the two prediction heads of
# trustmarl.algos.teammate_models.


class TeammateModel(nn.Module):
    """Logits ``[..., n_g, A]`` of the actions of a group's agents from ``[o_j, onehot(j)]`` (one hidden ReLU layer)."""

    n_actions: int
    hidden: int = 128

    @nn.compact
    def __call__(self, obs):
        n = obs.shape[-2]
        x = jnp.concatenate([obs, jnp.broadcast_to(jnp.eye(n, dtype=obs.dtype), obs.shape[:-2] + (n, n))], -1)
        return nn.Dense(self.n_actions)(nn.relu(nn.Dense(self.hidden)(x)))


def moa_log_probs(model: TeammateModel, params, obs: jax.Array, avail: jax.Array, obs_axis=None) -> jax.Array:
    """``[n_observers, ..., n_g, A]``: every observer's predicted log-probabilities (params stacked over observers;
    ``obs_axis=0``: observer ``i`` reads ``obs[i]``, its own batch)."""
    logits = jax.vmap(model.apply, in_axes=(0, obs_axis))(params, obs)
    return jax.nn.log_softmax(jnp.where(avail, logits, MASKED_LOGIT), -1)


def moa_loss(logp: jax.Array, actions: jax.Array, others: jax.Array, weight=None) -> jax.Array:
    """``[n_observers]`` cross-entropy on the executed actions ``[B, n_g]``, averaged over the other agents
    (``others`` ``[n_observers, n_g]``: 1 where the target is not the observer) and over the batch's samples whose
    ``weight`` ``[B]`` is true (recurrent actors' padded steps excluded)."""
    a = actions if actions.ndim == logp.ndim - 1 else actions[None]  # per-observer batches: [n_observers, B, n_g]
    nll = -jnp.take_along_axis(logp, jnp.broadcast_to(a[..., None], logp.shape[:-1] + (1,)), -1)[..., 0]
    return jnp.sum(batch_mean(nll, weight, axis=1) * others, -1) / jnp.maximum(jnp.sum(others, -1), 1.0)


def moa_tv(logp: jax.Array, true_logp: jax.Array, others: jax.Array) -> jax.Array:
    """``[n_observers]`` total-variation distance ``1/2 sum_a |pi~_j(a) - pi_j(a)|`` to the true policies, over the others."""
    true = true_logp if true_logp.ndim == logp.ndim else true_logp[None]  # per-observer batches: [n_observers, B, n_g, A]
    tv = 0.5 * jnp.sum(jnp.abs(jnp.exp(logp) - jnp.exp(true)), -1).mean(1)
    return jnp.sum(tv * others, -1) / jnp.maximum(jnp.sum(others, -1), 1.0)


# ---- what the off-policy F2A2 algorithms add to their centralised parents ---------------------------


@dataclasses.dataclass
class OffPolicyFields(ConsensusFields):
    """The off-policy instantiations' keys (Li et al. 2023, Props. 4-6 and Section 5.2)."""

    combine: str = "sum"  # sum | mean of the buffer and resampled estimators (Li et al. 2023 sum them)
    ratio_clip: float = 1.0  # eps of the truncated importance ratios min(eps, ratio) (inf: untruncated)
    moa: bool = False  # teammate models: the others' unexecuted actions come from each agent's model of them (false: their true policies)
    moa_model: str = "simple"  # simple (one MLP on [o_j, onehot(j)]) | paper (character + mental GRUs, natural + impromptu heads, Li et al. 2023, Section 5.2)
    moa_hidden: int = 128  # hidden width of the teammate models (one ReLU layer; paper: of each prediction head)
    moa_lr: float = 1e-3  # Adam step size of the teammate models (cross-entropy on executed actions)
    moa_trajectories: int = 48  # paper: random-play trajectories per seed collected before training (Li et al. 2023: 1000)
    moa_traj_len: int = 0  # paper: steps per random-play trajectory; 0: the environment's episode limit
    moa_char_samples: int = 4  # paper: trajectories per target the character net encodes per gradient step (a subsample; all of them: moa_trajectories)
    moa_window: int = 5  # paper: steps of the current episode the mental net reads (at most the episode limit)
    moa_batch: int = 1600  # paper: windows per gradient step the natural head and the recurrent nets are trained on
    moa_recent: int = 1200  # paper: most recent buffer steps the impromptu head is trained on (the last ceil(moa_recent / num_envs) of each copy)
    batch_per_agent: bool | None = None  # each agent samples its own replay minibatch (Li et al. 2023, Alg. 1; recurrent actors: its own batch of sequences); false: one batch for all; default (null): true

    def validate_off_policy(self) -> None:
        self.validate_consensus()
        if self.combine not in ("sum", "mean"):
            raise ConfigError(f"algo.combine={self.combine!r} is not allowed; choose one of sum, mean")
        if not (isinstance(self.ratio_clip, (int, float)) and self.ratio_clip > 0 and not math.isnan(self.ratio_clip)):
            raise ConfigError(f"algo.ratio_clip={self.ratio_clip!r} must be > 0 (inf: untruncated ratios)")
        for name in ("moa_hidden", "moa_trajectories", "moa_char_samples", "moa_window", "moa_batch", "moa_recent"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"algo.{name}={v!r} must be an integer >= 1")
        if not isinstance(self.moa_traj_len, int) or isinstance(self.moa_traj_len, bool) or self.moa_traj_len < 0:
            raise ConfigError(f"algo.moa_traj_len={self.moa_traj_len!r} must be an integer >= 0 (0: the episode limit)")
        if self.moa_model not in MOA_MODELS:
            raise ConfigError(f"algo.moa_model={self.moa_model!r} is not allowed; choose one of {', '.join(MOA_MODELS)}")
        if self.moa_char_samples > self.moa_trajectories:
            raise ConfigError(f"algo.moa_char_samples={self.moa_char_samples} exceeds algo.moa_trajectories={self.moa_trajectories} "
                              "(the character net subsamples the collected trajectories)")
        if not (isinstance(self.moa_lr, (int, float)) and self.moa_lr > 0):
            raise ConfigError(f"algo.moa_lr={self.moa_lr!r} must be > 0")
        if getattr(self, "share_params", False):
            raise ConfigError("algo.share_params=true: F2A2's policies are individual (Li et al. 2023, Table 1)")
        if getattr(self, "recurrent", False) and self.moa and self.moa_model == "paper":
            raise ConfigError("algo.moa_model=paper does not read sequences: with algo.recurrent=true use algo.moa_model=simple "
                              "(or algo.moa=false)")
        if self.batch_per_agent is not None and not isinstance(self.batch_per_agent, bool):
            raise ConfigError(f"algo.batch_per_agent={self.batch_per_agent!r} must be true (each agent its own batch), "
                              "false (one batch for all) or null (true)")


def gather(x: tuple, actions: tuple) -> jax.Array:
    """``[..., N]``: per agent the entry of ``x`` (per group ``[..., n_g, A]``) at its action."""
    return jnp.concatenate([jnp.take_along_axis(v, a[..., None], -1)[..., 0] for v, a in zip(x, actions)], -1)


class OffPolicyCopies:
    """Mixed in before an off-policy centralised algorithm (MAAC, MADDPG) by its F2A2 version: the consensus
    state of the per-agent critic copies and the communication counters, the behaviour log-probability
    vectors stored with every transition (for the ratios ``rho_b``), the truncated ratios, and the teammate
    models. The algorithm provides :meth:`policy_log_probs`, :meth:`output_log_probs`, :meth:`batch_log_probs`
    (recurrent actors: from a step's outputs, over a batch's sequences) and :meth:`agent_major` (its copies with the
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
        """Per group ``log pi_i(. | o_i)`` ``[..., n_g, A]`` of the current (behaviour) policies (feed-forward actors)."""
        raise NotImplementedError

    def output_log_probs(self, outputs: tuple, avail: tuple) -> tuple:
        """Per group ``log pi_i`` ``[..., n_g, A]`` from the actors' outputs (recurrent actors' steps)."""
        raise NotImplementedError

    def batch_log_probs(self, actor_params: tuple, batch: dict) -> tuple:
        """Per group ``log pi_i`` at the batch's observations (recurrent actors: unrolled over ``batch["seq"]``)."""
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
        """The parent's acting (recurrent actors: ``(actions, logp, hidden in)`` with the hidden state carried), plus
        the behaviour policy's log-probability vectors: the policy at the step's hidden state, mixed with the uniform
        available action while ``epsilon`` is on, uniform during the warm-up."""
        if self.recurrent:  # the policy at the hidden state that entered the step: the outputs acting computed
            env_actions, act_out, carry, out = self.act_with_outputs(view, carry, last, key)
            logp_all = self.output_log_probs(out, last.avail)
        else:  # feed-forward: the same computation as the parent's acting (XLA merges the two)
            env_actions, act_out, carry = super().act(view, carry, last, key)
            logp_all = self.policy_log_probs(view.actor_params, last.obs, last.avail)
        n_avail = [jnp.maximum(jnp.sum(av, -1, keepdims=True), 1) for av in last.avail]
        if getattr(self.cfg, "explores_uniformly", False):  # eps / |available| + (1 - eps) pi(a), as acting draws
            eps = epsilon_schedule(self.cfg, view.env_steps)
            logp_all = [jnp.where(av, jnp.log(eps / n + (1.0 - eps) * jnp.exp(lp)), MASKED_LOGIT)
                        for av, n, lp in zip(last.avail, n_avail, logp_all)]
        warm = view.env_steps < self.cfg.warmup_steps
        uniform = [jnp.where(av, -jnp.log(n), MASKED_LOGIT) for av, n in zip(last.avail, n_avail)]
        return env_actions, (*act_out, tuple(jnp.where(warm, u, lp) for u, lp in zip(uniform, logp_all))), carry

    def transition(self, view, last, ts, act_out):
        return dict(super().transition(view, last, ts, act_out[:-1]), behaviour_logp=act_out[-1])

    def example_transition(self, last):
        return dict(super().example_transition(last),
                    behaviour_logp=tuple(jnp.zeros((g.n, g.action_space.n)) for g in self.groups))

    # ---- ratios and the two estimators ---------------------------------------------------------------
    def ratios(self, logp: tuple, batch: dict, a_hat: tuple):
        """``(rho_f [B, N], rho_b [B, N])``: the agent's own truncated ratios ``min(eps, pi_i(a0_i) / pi0_i(a0_i))`` at
        the buffer actions and ``min(eps, pi0_i(a^_i) / pi_i(a^_i))`` at the resampled ones (Li et al. 2023, Remark 4;
        no gradient)."""
        eps = self.cfg.ratio_clip  # logp, a_hat: each agent's own (per-agent batches: :meth:`own_rows`)
        rho_f = jnp.minimum(eps, jnp.exp(gather(logp, self.own_rows(batch["actions"])) - self.own_agents(batch["logp"])))
        rho_b = jnp.minimum(eps, jnp.exp(gather(self.own_rows(batch["behaviour_logp"]), a_hat) - gather(logp, a_hat)))
        return jax.lax.stop_gradient(rho_f), jax.lax.stop_gradient(rho_b)

    def half(self, x_buf, x_res):
        """The buffer and the resampled estimators summed (``combine=sum``, Li et al. 2023) or averaged."""
        return x_buf + x_res if self.cfg.combine == "sum" else 0.5 * (x_buf + x_res)

    # ---- teammate models (Li et al. 2023, Section 5.2; trustmarl.algos.teammate_models) -------------------
    @property
    def paper_moa(self) -> bool:
        return bool(self.cfg.moa) and self.cfg.moa_model == "paper"

    def pretrain_request(self):
        """The paper's teammate models read random-play trajectories collected before training (Appendix G)."""
        if not self.paper_moa:
            return super().pretrain_request()
        return self.cfg.moa_trajectories, self.cfg.moa_traj_len or int(self.env.max_episode_steps)

    def init_moa(self, key):
        """One teammate model per observer and target group, stacked over the observers."""
        keys = [jax.random.split(jax.random.fold_in(key, 20 + g), self.n_agents) for g in range(len(self.groups))]
        if self.paper_moa:
            return tuple(jax.vmap(lambda k, grp=grp: TM.init(k, grp.obs_dim, grp.n, grp.action_space.n, self.cfg.moa_hidden))(ks)
                         for ks, grp in zip(keys, self.groups))
        return tuple(jax.vmap(net.init, in_axes=(0, None))(ks, jnp.zeros((grp.n, grp.obs_dim)))
                     for ks, net, grp in zip(keys, self.moa_nets, self.groups))

    # ---- each agent's own minibatch (batch_per_agent) ---------------------------------------------------
    @property
    def per_agent_batch(self) -> bool:
        """Every agent samples its own minibatch (``batch_per_agent``, default true): the batch's fields carry a leading
        agent axis ``[N, B, ...]``; copy ``i``'s critic loss, actor ``i``'s loss and observer ``i``'s teammate models read
        row ``i``. Recurrent actors: every agent its own ``B`` sequences (``seq`` ``[N, B, L, ...]``, ``weight`` ``[N, B L]``)."""
        per_agent = self.cfg.batch_per_agent
        return True if per_agent is None else bool(per_agent)

    @property
    def batch_axis(self):
        """``in_axes`` of the batch in the vmaps over the copies and observers: 0 (agent ``i`` reads its own batch) or None."""
        return 0 if self.per_agent_batch else None

    def sample_batch(self, buffer, key, reward_stats):
        """One batch for all, or (``batch_per_agent``) ``N`` batches drawn with ``N`` keys on a leading agent axis: decentralised
        agents sample their own replay minibatches (Li et al. 2023, Algorithm 1, lines 8-9: "for each agent i: sample a batch")."""
        if not self.per_agent_batch:
            return self.sample_one(buffer, key, reward_stats)
        return jax.vmap(lambda k: self.sample_one(buffer, k, reward_stats))(jax.random.split(key, self.n_agents))

    def unroll(self, step, batch: dict, with_next: bool = True, successor: bool = False):
        """Recurrent actors with per-agent batches: every network unrolled on every agent's sequences ``[N, B, L, ...]``
        (as the feed-forward actors read every agent's batch; :meth:`own_rows` then picks agent ``i``'s at its own)."""
        seq_unroll = super().unroll
        if not (self.recurrent and self.per_agent_batch):
            return seq_unroll(step, batch, with_next, successor)
        return jax.vmap(lambda b: seq_unroll(step, b, with_next, successor))(batch)

    def flatten_outputs(self, outputs: tuple) -> tuple:
        """``[N, B, L, ...]`` -> ``[N, B L, ...]`` with per-agent batches (the layout of the flattened steps)."""
        flat = super().flatten_outputs
        return jax.vmap(flat)(outputs) if self.recurrent and self.per_agent_batch else flat(outputs)

    def steps_weight(self, batch: dict):
        """Per-agent batches: column ``i`` of ``[B, N]`` says which of agent ``i``'s steps count (the batch holds ``[N, B]``)."""
        w = batch.get("weight")
        return w.T if w is not None and self.per_agent_batch else w

    def group_weight(self, w, g: int):
        if w is None or w.ndim == 1:
            return w
        return w[:, self.offsets[g]:self.offsets[g] + self.groups[g].n]

    def own_rows(self, x: tuple) -> tuple:
        """Per group ``[N, B, n_g, ...]`` -> ``[B, n_g, ...]``: each agent's entries from its own batch (one batch: ``x``)."""
        if not self.per_agent_batch:
            return x
        out = []
        for g, v in enumerate(x):
            k = np.arange(v.shape[2])
            out.append(jnp.moveaxis(v[self.offsets[g] + k, :, k], 0, 1))
        return tuple(out)

    def own_agents(self, x: jax.Array) -> jax.Array:
        """``[N, B, N, ...]`` -> ``[B, N, ...]``: agent ``i``'s column of its own batch (rewards, log-probabilities)."""
        if not self.per_agent_batch:
            return x
        k = np.arange(self.n_agents)
        return jnp.moveaxis(x[k, :, k], 0, 1)

    def own_steps(self, x: jax.Array) -> jax.Array:
        """A per-transition field (``terminated``) as ``[B, N]`` (agent ``i``: its own batch's) or ``[B, 1]`` (one batch)."""
        return x.T if self.per_agent_batch else x[:, None]

    def sample_one(self, buffer, key, reward_stats):
        """One minibatch. The paper's teammate models: the batch drawn as the last steps of windows of ``moa_window + 1``
        consecutive steps (the mental net's history, ``moa_hist``), plus the teammate models' own data (``moa_data``):
        ``moa_batch`` windows for the natural head and the ``moa_recent`` newest steps for the impromptu head."""
        if not self.paper_moa:
            return super().sample_batch(buffer, key, reward_stats)
        cfg, w = self.cfg, self.cfg.moa_window
        k_rl, k_nat = jax.random.split(key)
        win = self.draw_windows(buffer, k_rl, cfg.batch_size, w + 1)
        batch = self.prepare(jax.tree.map(lambda x: x[:, -1], win), reward_stats)
        nat = self.draw_windows(buffer, k_nat, cfg.moa_batch, w + 1)
        m = -(-cfg.moa_recent // self.num_envs)  # the newest m steps of every copy
        c = replay.capacity(buffer.steps)
        t = jnp.broadcast_to(((buffer.steps.pos - 1 - jnp.arange(m)) % c)[:, None], (m, self.num_envs)).reshape(-1)
        e = jnp.broadcast_to(jnp.arange(self.num_envs)[None], (m, self.num_envs)).reshape(-1)
        recent = self.as_batch(*replay.gather_transitions(buffer, t, e))
        weight = jnp.broadcast_to((jnp.arange(m) < buffer.steps.size)[:, None], (m, self.num_envs)).reshape(-1)
        last = lambda x: jax.tree.map(lambda v: v[:, -1], x)  # noqa: E731
        data = dict(hist=self.history(nat), obs=last(nat["obs"]), avail=last(nat["avail"]), actions=last(nat["actions"]),
                    recent=dict(obs=recent["obs"], avail=recent["avail"], actions=recent["actions"], weight=weight.astype(jnp.float32)))
        return dict(batch, moa_hist=self.history(win), moa_data=data)

    @staticmethod
    def history(win: dict) -> dict:
        """A window's observations and actions per group ``[B, W + 1, ...]`` and which steps share the last
        step's episode (``now``, positions ``0 .. W - 1``) or its successor's (``next``, positions ``1 .. W``)."""
        now, nxt = TM.episode_masks(win["terminated"] | win["truncated"])
        return dict(obs=win["obs"], actions=win["actions"], now=now, next=nxt)

    def characters(self, moa, pretrain, idx) -> tuple:
        """Per group ``[N observers, n_g, 64]``: each observer's character of every target from the random-play
        trajectories ``idx`` ``[N, S]`` (its own subsample)."""
        out = []
        for g, (p, grp) in enumerate(zip(moa, self.groups)):
            def one(pp, i, g=g, grp=grp):
                return TM.character(pp, pretrain["obs"][g][i], pretrain["actions"][g][i], pretrain["valid"][i], grp.action_space.n)
            out.append(jax.vmap(one)(p, idx))
        return tuple(out)

    def paper_log_probs(self, g: int, p, e_char, obs, avail, hobs, hact, mask):
        """``(mixed, natural, impromptu)`` ``[N observers, B, n_g, A]`` of group ``g``'s agents."""
        n_act = self.groups[g].action_space.n

        def one(pp, ec, obs, avail, hobs, hact, mask):
            nat = TM.natural(pp, obs, avail, ec, TM.mental(pp, hobs, hact, mask, n_act))
            imp = TM.impromptu(pp, obs, avail)
            return TM.mix(nat, imp), nat, imp

        ax = self.batch_axis  # observer i reads its own batch
        return jax.vmap(one, in_axes=(0, 0, ax, ax, ax, ax, ax))(p, e_char, obs, avail, hobs, hact, mask)

    def teammates(self, state, batch: dict, key) -> dict:
        """``batch`` with ``moa``: every observer's predicted log-probabilities of every agent's action per group
        ``[N, B, n_g, A]`` at the observations (``now``) and at the next observations (``next``), no gradient."""
        if not self.cfg.moa:
            return batch
        moa = state.extra["moa"]
        if not self.paper_moa:
            pred = {k: tuple(moa_log_probs(net, p, batch[o][g], batch[a][g], self.batch_axis) for g, (net, p) in enumerate(zip(self.moa_nets, moa)))
                    for k, o, a in (("now", "obs", "avail"), ("next", "next_obs", "next_avail"))}
            return dict(batch, moa=jax.lax.stop_gradient(pred))
        idx = jax.random.randint(key, (self.n_agents, self.cfg.moa_char_samples), 0, self.cfg.moa_trajectories)
        chars = self.characters(moa, state.extra["pretrain"], idx)
        h = batch["moa_hist"]  # window axis: -3 of the observations, -2 of the actions
        now = tuple(self.paper_log_probs(g, moa[g], chars[g], batch["obs"][g], batch["avail"][g], h["obs"][g][..., :-1, :, :],
                                         h["actions"][g][..., :-1, :], h["now"])[0] for g in range(len(self.groups)))
        nxt = tuple(self.paper_log_probs(g, moa[g], chars[g], batch["next_obs"][g], batch["next_avail"][g], h["obs"][g][..., 1:, :, :],
                                         h["actions"][g][..., 1:, :], h["next"])[0] for g in range(len(self.groups)))
        return dict(batch, moa=jax.lax.stop_gradient(dict(now=now, next=nxt)), moa_char_idx=idx)

    def observer_actions(self, own: tuple, logp: tuple, key) -> tuple:
        """Per group ``[N observers, B, n_g]``: observer ``i``'s joint action, its own ``own`` action and the
        others' drawn from its teammate models' log-probabilities ``logp`` (:meth:`teammates`; Li et al. 2023,
        Section 5.2: ``a~_j ~ pi~_j``)."""
        out = []
        for g, (lp, a) in enumerate(zip(logp, own)):
            drawn = jax.random.categorical(jax.random.fold_in(key, g), lp).astype(a.dtype)
            own_a = a if self.per_agent_batch else a[None]  # per-agent batches: a [N, B, n_g], observer i's at its batch
            out.append(jnp.where(jnp.asarray(self.others[g])[:, None, :] > 0, drawn, own_a))
        return tuple(out)

    def moa_step(self, state, batch):
        """One Adam step of every agent's teammate models on the executed actions; their TV to the true policies."""
        if self.paper_moa:
            return self.paper_moa_step(state, batch)

        ax = self.batch_axis  # observer i learns from its own batch

        def loss(moa):
            per = [moa_loss(moa_log_probs(net, p, batch["obs"][g], batch["avail"][g], ax), batch["actions"][g], self.others[g],
                            batch.get("weight")) * self.others[g].sum(-1) for g, (net, p) in enumerate(zip(self.moa_nets, moa))]
            return jnp.sum(sum(per)), sum(per) / max(self.n_agents - 1, 1)

        grads, ce = jax.grad(loss, has_aux=True)(state.extra["moa"])
        state, moa = self.apply_moa(state, grads)
        true = self.batch_log_probs(state.actor_params, batch)
        tv = sum(moa_tv(moa_log_probs(net, p, batch["obs"][g], batch["avail"][g], ax), jax.lax.stop_gradient(true[g]),
                        self.others[g]) * self.others[g].sum(-1) for g, (net, p) in enumerate(zip(self.moa_nets, moa)))
        return state, {"loss/moa": ce.mean(), "diag/moa_tv_per_agent": tv / max(self.n_agents - 1, 1)}

    def apply_moa(self, state, grads):
        pairs = [opt_step(self.moa_tx, p, gr, o, True) for p, gr, o in zip(state.extra["moa"], grads, state.extra["moa_opt"])]
        moa = tuple(p for p, _ in pairs)
        return state._replace(extra={**state.extra, "moa": moa, "moa_opt": tuple(o for _, o in pairs)}), moa

    def paper_moa_step(self, state, batch):
        """The paper's models: the natural head (with the character and mental nets, end to end) by cross-entropy
        on ``moa_batch`` windows, the impromptu head on the ``moa_recent`` newest steps (Li et al. 2023, Section 5.2
        and Appendix G); the TV distance of the mixed prediction and of each head to the true policies."""
        d, pre, idx = batch["moa_data"], state.extra["pretrain"], batch["moa_char_idx"]
        n_other = max(self.n_agents - 1, 1)

        ax = self.batch_axis  # observer i learns from its own batch

        def loss(moa):
            chars = self.characters(moa, pre, idx)
            nat_ce, imp_ce = 0.0, 0.0
            for g, grp in enumerate(self.groups):
                n_act = grp.action_space.n

                def one(pp, ec, d, g=g, n_act=n_act):
                    h, r = d["hist"], d["recent"]
                    em = TM.mental(pp, h["obs"][g][:, :-1], h["actions"][g][:, :-1], h["now"], n_act)
                    # Li et al. 2023, Section 5.2 and Appendix G: each head's cross-entropy on the executed actions
                    nat = TM.nll(TM.natural(pp, d["obs"][g], d["avail"][g], ec, em), d["actions"][g]).mean(0)
                    imp = TM.nll(TM.impromptu(pp, r["obs"][g], r["avail"][g]), r["actions"][g])
                    return nat, jnp.sum(imp * r["weight"][:, None], 0) / jnp.maximum(jnp.sum(r["weight"]), 1.0)

                nat, imp = jax.vmap(one, in_axes=(0, 0, ax))(moa[g], chars[g], d)  # [N, n_g]
                nat_ce = nat_ce + jnp.sum(nat * self.others[g], -1) / n_other
                imp_ce = imp_ce + jnp.sum(imp * self.others[g], -1) / n_other
            return jnp.sum(nat_ce + imp_ce), (nat_ce, imp_ce)

        grads, (nat_ce, imp_ce) = jax.grad(loss, has_aux=True)(state.extra["moa"])
        state, moa = self.apply_moa(state, grads)
        true = jax.lax.stop_gradient(self.policy_log_probs(state.actor_params, batch["obs"], batch["avail"]))
        chars, h = self.characters(moa, pre, idx), batch["moa_hist"]
        tvs = [0.0, 0.0, 0.0]
        for g in range(len(self.groups)):
            out = self.paper_log_probs(g, moa[g], chars[g], batch["obs"][g], batch["avail"][g], h["obs"][g][..., :-1, :, :],
                                       h["actions"][g][..., :-1, :], h["now"])
            for k, lp in enumerate(out):
                tvs[k] = tvs[k] + moa_tv(lp, true[g], self.others[g]) * self.others[g].sum(-1) / n_other
        return state, {"loss/moa": jnp.mean(nat_ce + imp_ce), "loss/moa_natural": nat_ce.mean(), "loss/moa_impromptu": imp_ce.mean(),
                       "diag/moa_tv_per_agent": tvs[0], "diag/moa_tv_natural_per_agent": tvs[1],
                       "diag/moa_tv_impromptu_per_agent": tvs[2]}

    # ---- consensus state and communication ------------------------------------------------------------
    def init_extra(self, key, actor_params, critic_params):
        cfg = self.cfg
        base = super().init_extra(key, actor_params, critic_params)
        cons = C.init(jax.random.fold_in(key, 5), self.agent_major(critic_params), self.protocol,
                      beta=cfg.beta if cfg.consensus == "pdhg" else 1.0)
        extra = {**(base if isinstance(base, dict) else {}), "consensus": cons._replace(counters=()),
                 "comm": C.counters_init(self.n_agents)}
        if cfg.moa:  # one teammate model per observer and target group, stacked over the observers
            moa = self.init_moa(key)
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
