"""Consensus of per-agent parameter copies over a communication graph (F2A2, Li et al. 2023, section 5).

The problem
-----------
F2A2 (Li, Jin, Wang, Yan & Zha 2023) makes a centralised actor-critic fully decentralised: every agent
``i`` keeps its own copy ``w~_i`` of the parameters a centralised algorithm would share (a critic, an
actor, or both), and the copies are tied together by consensus constraints ``w_sh = w~_i`` (eq. 5.1),
handled with the augmented Lagrangian (eq. 5.2)::

    L = sum_i J_i(w~_i) - sum_i <lambda_i, w_sh - w~_i> + beta/2 sum_i ||w_sh - w~_i||^2

and one primal-dual hybrid gradient (PDHG) iteration per update step (eq. 5.4)::

    (5.4a/b) w~_i     <- w~_i - eta [grad J_i(w~_i) + lambda_i + beta (w~_i - w_sh)]   (primal, per agent)
    (5.4c)   w_sh     <- (1/n) sum_i w~_i                                            (consensus)
    (5.4d)   lambda_i <- lambda_i - beta (w_sh - w~_i)                                (dual ascent)

Starting from ``lambda_i = 0``, (5.4d) keeps ``sum_i lambda_i = 0``, so the average (5.4c) is the exact
minimiser of ``L`` over ``w_sh``, and at a fixed point every copy equals ``w_sh`` with
``sum_i grad J_i(w_sh) = 0``: the optimum of ``sum_i J_i`` under consensus. The penalty ``beta`` must
be > 0: the paper's Algorithm 1 sets it to zero at initialisation, but with ``beta = 0`` the pull towards
``w_sh`` and the dual step both vanish and the copies never agree. One ``beta`` per block of parameters
(e.g. critic and actor) is allowed, as the paper says below eq. 5.2.

Each agent's own view, Metropolis-Hastings mixing
-------------------------------------------------
Without a central machine nobody computes the average (5.4c). Each agent ``i`` keeps its own *view*
``v_i`` of ``w_sh`` and forms it from the copies ``p_j`` its neighbours last published, with the
Metropolis-Hastings weights of the graph (Xiao & Boyd 2004, "Fast linear iterations for distributed
averaging")::

    W_ij = 1 / (1 + max(d_i, d_j))   for every edge {i, j},     W_ii = 1 - sum_{j != i} W_ij,
    v_i  <- sum_j W_ij p_j

(``d_i`` is agent ``i``'s degree). ``W`` is symmetric and doubly stochastic, so when every agent
publishes its current copy ``sum_i (v_i - w~_i) = 0``: the dual step ``lambda_i <- lambda_i - beta
(v_i - w~_i)`` still keeps ``sum_i lambda_i = 0`` and the fixed point is still the exact optimum, on
any connected graph, fixed or time-varying. (A row-stochastic average such as the uniform mean over
the closed neighbourhood does not keep the sum and settles at a biased point on a time-varying graph.)
On the complete graph ``W_ij = 1/n``: the plain mean of (5.4c). The primal step adds
``lambda_i + beta (w~_i - v_i)`` to the gradient of agent ``i``'s own objective (``penalty_grads``).

Who talks to whom: graphs
-------------------------
Graphs are ``[n, n]`` boolean adjacency matrices without self loops: ``complete``, ``empty``,
``from_edges`` (agent names), and the protocol of the paper's Table 4 (``Protocol(graph="ring",
extra_edges=p)``): per run, a random permutation of the agents defines a ring (so the graph is always
connected); at every update step ``round(p * M)`` extra edges are drawn uniformly without replacement
from the ``M`` pairs that are not on the ring (``p`` in ``[0, 1]``, rounding half up; ``p = 1`` gives the
complete graph, ``p = 0`` the bare ring). The paper's "0" column of Table 4 is the graph with no edges
at all, not the bare ring: that is ``Protocol(graph="empty")``.

When: the asynchronous schedule
-------------------------------
The protocol of the paper's Table 5: after each consensus step an agent draws the number of update
steps until its next one, ``max(1, round(N(mu, sigma)))``; ``mu = inf`` means never. When agent ``i``'s
timer fires (and it has at least one neighbour) it publishes its current copy, reads the latest
*published* copies of its current neighbours - possibly stale: a neighbour that did not fire still
holds an older copy - and mixes them with ``W``. Agents that fire at the same step publish before
anyone reads. ``N(1, 0)`` is the synchronous scheme of Algorithm 1: every agent at every step.

Agents that hear nobody
-----------------------
At an update step at which an agent does not communicate (its timer did not fire, or it has no
neighbour) its published copy stays as it was, and ``no_comm`` says what its view is:

* ``"stale_anchor"`` (default): it keeps its last view, so ``beta`` and ``lambda`` keep pulling its copy
  towards the last parameters it heard (with no neighbour ever: towards its initial copy).
* ``"own_view"``: it takes its own current copy as its view; the pull ``beta (w~_i - v_i)`` vanishes and
  ``lambda_i`` stops moving: between exchanges the agent is an independent learner (one that never
  communicates keeps ``lambda_i = 0``, so its penalty is exactly zero).

With either reading the graph without edges and the never-firing schedule ``N(inf, 0)`` give the same
run bit for bit, and so do the synchronous schedule on the complete graph and on the ring plus 100 % of
the extra edges.

Communication accounting
------------------------
Messages are counted point to point, as pulls: when agent ``i`` communicates it receives one message
from each of its ``d_i`` current neighbours (their published copies), so an undirected edge between
two communicating agents carries two messages. Broadcasting counts one message per agent per consensus
event instead. The counters (``CommCounters``) are int32 event and message counts per agent; scalars
(message count x payload size) are computed on the host in Python integers by ``comm_metrics``, so a
large payload cannot overflow. The message counters grow by at most ``n - 1`` per update step, which
bounds a run to ``(2**31 - 1) / (n - 1)`` update steps (8.4 million with 256 agents). Environment
information that a decentralised learner is assumed to see during training (joint observations,
executed actions as labels) is not communication; it is counted apart (``observe``).

Usage
-----
For per-agent copies of a critic held as a pytree whose leaves are ``[n, ...]``::

    protocol = Protocol(n_agents=n, graph="ring", extra_edges=0.4, interval_mean=8.0, interval_std=4.0)
    cons = init(key, critic, protocol, beta=1.0)
    ...  # every update step:
    grads = jax.tree.map(jnp.add, grads_of_own_losses, penalty_grads(cons, critic))   # eq. 5.4a
    critic = optimiser step(critic, grads)
    cons = step(cons, critic, step_key, protocol)                                     # eq. 5.4c/d

or, with an optimiser that normalises its steps (Adam), the consensus terms as an exact proximal step of size
``eta`` outside it (what the F2A2 algorithms do by default, ``trustmarl.algos.f2a2.tie_copies``)::

    critic = optimiser step(critic, grads_of_own_losses)
    critic = pull(cons, critic, eta)                                                  # eq. 5.4a, prox
    cons = step(cons, critic, step_key, protocol)                                     # eq. 5.4c/d
    ...  # at report time (host side):
    metrics = comm_metrics(cons.counters, {"shared_critic": payload_size(critic)})

Every function is pure JAX with static shapes: ``init`` and ``step`` jit and vmap (e.g. over seeds).
``Protocol`` is a static pytree (no leaves), so it can be passed to jitted functions as an argument.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

from trustmarl.validation import ConfigError

PyTree = Any

GRAPHS = ("complete", "empty", "ring")
"""Named graphs of a ``Protocol``; a fixed graph can also be given as an adjacency matrix."""
NO_COMM = ("stale_anchor", "own_view")
"""What an agent takes as its view at an update step at which it does not communicate."""
KINDS = ("shared_critic", "shared_actor", "policy_params", "actions")
"""Kinds of payload that ``comm_metrics`` accounts for separately."""

NEVER = 2**31 - 1
"""Timer value of an agent that never fires (``interval_mean = inf``)."""
MAX_INTERVAL = 2**30
"""Largest interval drawn by the schedule (a finite but huge mean is clipped here)."""


# --------------------------------------------------------------------------------------------------
# Graphs: [n, n] boolean adjacency, symmetric, no self loops
# --------------------------------------------------------------------------------------------------


def complete(n: int) -> np.ndarray:
    """The complete graph on ``n`` agents (every pair connected)."""
    return ~np.eye(n, dtype=bool)


def empty(n: int) -> np.ndarray:
    """The graph on ``n`` agents with no edges (nobody communicates)."""
    return np.zeros((n, n), dtype=bool)


def from_edges(names: Sequence[str], edges: Iterable[tuple[str, str]]) -> np.ndarray:
    """Adjacency of the undirected graph with the given edges between named agents.

    ``names`` fixes the agent order (row ``i`` is ``names[i]``). Raises ``ConfigError`` for an unknown
    name (listing the agents) or a self loop; a repeated edge is harmless.
    """
    names = list(names)
    index = {name: i for i, name in enumerate(names)}
    adj = empty(len(names))
    for edge in edges:
        a, b = edge
        for name in (a, b):
            if name not in index:
                raise ConfigError(f"unknown agent {name!r} in edge {tuple(edge)!r}; agents are {', '.join(names)}")
        if a == b:
            raise ConfigError(f"edge {tuple(edge)!r} is a self loop; an edge must join two different agents")
        adj[index[a], index[b]] = adj[index[b], index[a]] = True
    return adj


def ring(order: ArrayLike) -> Array:
    """The ring that visits the agents in ``order`` (a permutation of ``0..n-1``), closed at the end.

    Jittable (``order`` may be traced). ``n = 2`` gives one edge, ``n = 1`` none.
    """
    order = jnp.asarray(order)
    n = order.shape[0]
    adj = jnp.zeros((n, n), bool).at[order, jnp.roll(order, -1)].set(True)
    return (adj | adj.T) & ~jnp.eye(n, dtype=bool)


def _non_ring_pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Ring positions ``(a, b)``, ``a < b``, of the pairs that are not neighbours on the ring (static)."""
    on_ring = {(min(k, (k + 1) % n), max(k, (k + 1) % n)) for k in range(n)}
    pairs = [(a, b) for a in range(n) for b in range(a + 1, n) if (a, b) not in on_ring]
    a, b = (np.array(x, dtype=np.int32) for x in zip(*pairs)) if pairs else (np.zeros(0, np.int32),) * 2
    return a, b


def n_extra_edges(n: int, p: float) -> int:
    """``round(p * M)`` (half up): extra edges per update step of the ring protocol, ``M`` = non-ring pairs."""
    return math.floor(p * len(_non_ring_pairs(n)[0]) + 0.5)


def ring_plus_random(order: ArrayLike, key: Array, p: float) -> Array:
    """The ring through ``order`` plus ``round(p * M)`` uniformly drawn non-ring edges (Table 4 protocol).

    The extra edges are the top-``k`` of independent uniform scores over the ``M`` non-ring pairs, a
    uniformly random subset of fixed size, so the function is jittable (``order`` and ``key`` may be
    traced; ``p`` is static). ``p = 1`` gives the complete graph.
    """
    order = jnp.asarray(order)
    n = order.shape[0]
    a, b = _non_ring_pairs(n)
    k = n_extra_edges(n, p)
    adj = ring(order)
    if k == 0:
        return adj
    _, idx = jax.lax.top_k(jax.random.uniform(key, (len(a),)), k)
    i, j = order[jnp.asarray(a)[idx]], order[jnp.asarray(b)[idx]]
    return adj.at[i, j].set(True).at[j, i].set(True)


# --------------------------------------------------------------------------------------------------
# Mixing: Metropolis-Hastings weights (Xiao & Boyd 2004)
# --------------------------------------------------------------------------------------------------


def metropolis_weights(adjacency: ArrayLike, dtype=jnp.float32) -> Array:
    """``[n, n]`` Metropolis-Hastings weights of a graph: symmetric and doubly stochastic.

    ``W_ij = 1 / (1 + max(d_i, d_j))`` on edges, 0 off the graph, and ``W_ii = 1 - sum_{j != i} W_ij``
    (Xiao & Boyd 2004), the latter computed as ``1/(1+d_i) + sum_j (1/(1+d_i) - W_ij)`` (every
    term >= 0, so no cancellation; on a regular graph such as the complete graph or a ring every
    entry of a row is then exactly the same float). An agent without neighbours gets ``W_ii = 1``.
    """
    adj = jnp.asarray(adjacency, bool) & ~jnp.eye(jnp.shape(adjacency)[0], dtype=bool)
    deg = jnp.sum(adj, axis=1).astype(dtype)
    one = jnp.asarray(1.0, dtype)
    edge = one / (one + jnp.maximum(deg[:, None], deg[None, :]))
    own = one / (one + deg)
    off = jnp.where(adj, edge, 0.0).astype(dtype)
    diag = own + jnp.sum(jnp.where(adj, own[:, None] - edge, 0.0), axis=1).astype(dtype)
    return off + jnp.diag(diag)


def mix(weights: ArrayLike, tree: PyTree) -> PyTree:
    """``out_i = sum_j W_ij x_j`` for every leaf ``x`` of shape ``[n, ...]`` (weights cast to its dtype).

    Full-precision contraction (no reduced-precision matmul passes on accelerators).
    """
    weights = jnp.asarray(weights)

    def one(x):
        return jnp.einsum("ij,j...->i...", weights.astype(x.dtype), x, precision=jax.lax.Precision.HIGHEST)

    return jax.tree.map(one, tree)


# --------------------------------------------------------------------------------------------------
# PDHG pieces (Li et al. 2023, eq. 5.2 and 5.4)
# --------------------------------------------------------------------------------------------------


def check_beta(beta: PyTree) -> None:
    """Refuse a penalty ``beta`` that is not > 0 and finite (each leaf: one number per block).

    Traced values (e.g. ``beta`` swept under ``vmap``) cannot be checked and are let through.
    """
    leaves = jax.tree.leaves(beta)
    if not leaves:
        raise ConfigError("consensus penalty beta is empty; give one number (> 0), or one per block of parameters")
    for b in leaves:
        if isinstance(b, jax.core.Tracer):
            continue
        value = np.asarray(b)
        if value.ndim != 0 or not np.issubdtype(value.dtype, np.number):
            raise ConfigError(f"consensus penalty beta={b!r} must be a number > 0 (one per block of parameters)")
        if not (math.isfinite(float(value)) and float(value) > 0):
            raise ConfigError(
                f"consensus penalty beta={float(value)!r} must be > 0: with beta = 0 the copies never agree "
                "(the consensus pull and the dual step of Li et al. 2023, eq. 5.4, both vanish)"
            )


def _per_leaf(beta: PyTree, tree: PyTree) -> PyTree:
    """``beta`` (one number, or a pytree prefix of ``tree``) broadcast to one scalar per leaf of ``tree``."""
    try:
        return jax.tree.map(lambda b, sub: jax.tree.map(lambda x: jnp.asarray(b, jnp.result_type(x)), sub), beta, tree)
    except ValueError as err:
        raise ValueError(f"beta must be one number or a pytree prefix of the copies (one number per block): {err}")


def lagrangian_grad(copies: PyTree, views: PyTree, duals: PyTree, beta: PyTree) -> PyTree:
    """``lambda_i + beta (w~_i - v_i)``: the gradient of the augmentation terms of eq. 5.2 w.r.t. ``w~_i``.

    Add it to the gradient of agent ``i``'s own objective for the primal step (eq. 5.4a/b).
    """
    betas = _per_leaf(beta, copies)
    return jax.tree.map(lambda w, v, lam, b: lam + b * (w - v), copies, views, duals, betas)


def proximal_pull(copies: PyTree, views: PyTree, duals: PyTree, beta: PyTree, eta: float) -> PyTree:
    """``(w~_i + eta beta v_i - eta lambda_i) / (1 + eta beta)``: the exact proximal step of size ``eta`` on the
    augmentation terms of eq. 5.2, ``argmin_u <lambda_i, u - v_i> + beta/2 ||u - v_i||^2 + 1/(2 eta) ||u - w~_i||^2``.

    Used after the optimiser's step on agent ``i``'s own objective instead of adding ``lagrangian_grad`` to the
    gradient the optimiser normalises (Li et al. 2023, eq. 5.4a split in two): the gap ``w~_i - v_i`` then contracts
    by the factor ``1 / (1 + eta beta)`` whatever the optimiser does, for every ``eta beta > 0``.
    """
    betas = _per_leaf(beta, copies)
    return jax.tree.map(lambda w, v, lam, b: (w + eta * b * v - eta * lam) / (1.0 + eta * b), copies, views, duals, betas)


def dual_ascent(duals: PyTree, copies: PyTree, views: PyTree, beta: PyTree) -> PyTree:
    """``lambda_i <- lambda_i - beta (v_i - w~_i)`` (eq. 5.4d, with agent ``i``'s view ``v_i`` for ``w_sh``)."""
    betas = _per_leaf(beta, copies)
    return jax.tree.map(lambda lam, w, v, b: lam - b * (v - w), duals, copies, views, betas)


# --------------------------------------------------------------------------------------------------
# Protocol: graph and schedule (static)
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Who talks to whom and when (static configuration; a pytree without leaves, safe to pass to jit).

    Fields:
      * ``n_agents``: number of agents ``n``.
      * ``graph``: ``"complete"`` (default), ``"empty"`` (no edges: the paper's Table 4 column "0"),
        ``"ring"`` (a random ring per run plus ``extra_edges`` drawn anew every update step: Table 4
        columns 20-100), or a fixed ``[n, n]`` boolean adjacency matrix (e.g. from ``from_edges``).
      * ``extra_edges``: ``p`` in ``[0, 1]``, the fraction of non-ring pairs added at every step
        (``graph="ring"`` only; 0 = bare ring, 1 = complete graph).
      * ``interval_mean``, ``interval_std``: the ``N(mu, sigma)`` of the asynchronous schedule (Table 5);
        ``(1, 0)`` (default) = every agent at every step; ``mu = inf`` = never.
      * ``no_comm``: ``"stale_anchor"`` or ``"own_view"``, the view of an agent that hears nobody
        at a step (see the module docstring).
    """

    n_agents: int
    graph: Any = "complete"
    extra_edges: float = 0.0
    interval_mean: float = 1.0
    interval_std: float = 0.0
    no_comm: str = "stale_anchor"

    def __post_init__(self):
        n = self.n_agents
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigError(f"n_agents={n!r} must be an integer >= 1")
        if isinstance(self.graph, str):
            if self.graph not in GRAPHS:
                raise ConfigError(f"graph={self.graph!r} must be one of {GRAPHS} or an [n, n] adjacency matrix")
        else:
            adj = np.asarray(self.graph)
            if adj.shape != (n, n) or adj.dtype != bool:
                raise ConfigError(f"graph must be a boolean [{n}, {n}] adjacency matrix, got {adj.dtype} {adj.shape}")
            if np.any(np.diag(adj)) or np.any(adj != adj.T):
                raise ConfigError("graph adjacency must be symmetric with no self loops")
            object.__setattr__(self, "graph", tuple(tuple(bool(x) for x in row) for row in adj))
        p = self.extra_edges
        if not (isinstance(p, (int, float)) and 0.0 <= p <= 1.0):
            raise ConfigError(f"extra_edges={p!r} must be in [0, 1]")
        if p and self.graph != "ring":
            raise ConfigError(f"extra_edges={p!r} needs graph='ring' (extra edges are added to the ring)")
        mu, sigma = self.interval_mean, self.interval_std
        if not (isinstance(mu, (int, float)) and mu > 0):  # inf allowed: never
            raise ConfigError(f"interval_mean={mu!r} must be > 0 (inf: never communicate)")
        if not (isinstance(sigma, (int, float)) and sigma >= 0 and math.isfinite(sigma)):
            raise ConfigError(f"interval_std={sigma!r} must be >= 0 and finite")
        if self.no_comm not in NO_COMM:
            raise ConfigError(f"no_comm={self.no_comm!r} must be one of {NO_COMM}")

    @property
    def never(self) -> bool:
        """True when the schedule never fires (``interval_mean = inf``)."""
        return not math.isfinite(self.interval_mean)

    def graph_at(self, order: Array, key: Array) -> Array:
        """The ``[n, n]`` adjacency at one update step (``order``: the run's ring; ``key``: this step's)."""
        n = self.n_agents
        if self.graph == "complete":
            return jnp.asarray(complete(n))
        if self.graph == "empty":
            return jnp.asarray(empty(n))
        if self.graph == "ring":
            return ring_plus_random(order, key, self.extra_edges)
        return jnp.asarray(np.array(self.graph, dtype=bool))


jax.tree_util.register_static(Protocol)


def draw_intervals(key: Array, n: int, mean: float, std: float) -> Array:
    """``[n]`` int32 update-step intervals ``max(1, round(N(mean, std)))`` (Table 5); ``NEVER`` if mean = inf."""
    if not math.isfinite(mean):
        return jnp.full((n,), NEVER, jnp.int32)
    x = jnp.round(mean + std * jax.random.normal(key, (n,)))
    return jnp.clip(x, 1, MAX_INTERVAL).astype(jnp.int32)


def tick(timer: Array, key: Array, protocol: Protocol) -> tuple[Array, Array]:
    """Advance the agents' timers by one update step: ``(fire [n] bool, new timer [n] int32)``.

    A timer counts the update steps left until the agent's next consensus step; an agent that fires
    draws its next interval with ``key``.
    """
    if protocol.never:
        return jnp.zeros(timer.shape, bool), timer
    timer = timer - 1
    fire = timer <= 0
    fresh = draw_intervals(key, timer.shape[0], protocol.interval_mean, protocol.interval_std)
    return fire, jnp.where(fire, fresh, timer)


# --------------------------------------------------------------------------------------------------
# Communication accounting
# --------------------------------------------------------------------------------------------------


class CommCounters(NamedTuple):
    """Cumulative communication counters; every field is int32 (per agent ``[n]`` unless said otherwise)."""

    events: Array  # consensus events: update steps at which the agent communicated
    sent: Array  # point-to-point messages sent (one per neighbour that pulled the agent's copy)
    received: Array  # point-to-point messages received (one per neighbour heard, per event)
    observed: Array  # environment records observed (not communication; added by the caller with ``observe``)
    updates: Array  # [] update steps counted


def counters_init(n: int) -> CommCounters:
    zeros = jnp.zeros((n,), jnp.int32)
    return CommCounters(zeros, zeros, zeros, zeros, jnp.zeros((), jnp.int32))


def count_messages(counters: CommCounters, adjacency: ArrayLike, active: ArrayLike) -> CommCounters:
    """Count one update step at which the ``active`` agents ([n] bool) pull their neighbours' copies.

    An active agent with ``d_i > 0`` neighbours has one event and receives ``d_i`` messages; every
    agent sends one message to each active neighbour. Also usable on its own, e.g. for a baseline that
    exchanges actions.
    """
    adj = jnp.asarray(adjacency, bool)
    pulls = adj & jnp.asarray(active, bool)[:, None]  # row i: the neighbours agent i hears
    received = jnp.sum(pulls, axis=1, dtype=jnp.int32)
    return counters._replace(
        events=counters.events + (received > 0).astype(jnp.int32),
        sent=counters.sent + jnp.sum(pulls, axis=0, dtype=jnp.int32),
        received=counters.received + received,
        updates=counters.updates + 1,
    )


def observe(counters: CommCounters, records: ArrayLike = 1) -> CommCounters:
    """Add ``records`` (a number or ``[n]``) environment records observed per agent (not communication).

    A record is whatever the caller counts once per step (e.g. one joint observation and joint action);
    its size in scalars is given to ``comm_metrics``.
    """
    add = jnp.broadcast_to(jnp.asarray(records, jnp.int32), counters.observed.shape)
    return counters._replace(observed=counters.observed + add)


def payload_size(copies: PyTree) -> int:
    """Scalars in one agent's copy of a pytree whose leaves are ``[n, ...]`` (static)."""
    return int(sum(math.prod(np.shape(x)[1:]) for x in jax.tree.leaves(copies)))


def _check_payload(payload: Mapping[str, int]) -> dict[str, int]:
    out = {}
    for kind, size in dict(payload).items():
        if kind not in KINDS:
            raise ConfigError(f"payload kind {kind!r} is unknown; kinds are {', '.join(KINDS)}")
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 0:
            raise ConfigError(f"payload size of {kind!r}={size!r} must be an integer >= 0 (scalars per message)")
        out[kind] = int(size)
    return out


def comm_metrics(counters: CommCounters, payload: Mapping[str, int], observed_scalars: int = 0) -> dict[str, Any]:
    """Flat communication metrics from the counters (host side, exact integers).

    ``payload`` maps the kinds in ``KINDS`` carried by every message of a consensus event to their
    size in scalars (multiply by 4 for float32 bytes); ``observed_scalars`` is the size of one observed
    record. Returns ``comm/<name>_per_agent`` (numpy ``[..., n]``) and ``comm/<name>_total`` (sum over
    agents: a Python number, or an array over leading batch axes such as seeds) for ``consensus_events``,
    ``messages_sent``, ``messages_received``, ``scalars_sent``, ``scalars_received`` (point to point,
    all kinds), ``<kind>_scalars_sent`` / ``_received`` per kind, ``broadcast_scalars_sent`` (one
    broadcast of the payload per event) and ``observed_scalars``; plus
    ``comm/edges_per_event_per_agent`` (neighbours heard per event), ``comm/edges_per_event`` (the same
    over all events) and ``comm/update_steps``.
    """
    payload = _check_payload(payload)
    if not isinstance(observed_scalars, (int, np.integer)) or observed_scalars < 0:
        raise ConfigError(f"observed_scalars={observed_scalars!r} must be an integer >= 0")
    c = {name: np.asarray(value).astype(np.int64) for name, value in counters._asdict().items()}
    size = sum(payload.values())
    per_agent = {
        "consensus_events": c["events"],
        "messages_sent": c["sent"],
        "messages_received": c["received"],
        "scalars_sent": c["sent"] * size,
        "scalars_received": c["received"] * size,
        "broadcast_scalars_sent": c["events"] * size,
        "observed_scalars": c["observed"] * int(observed_scalars),
    }
    for kind, s in payload.items():
        per_agent[f"{kind}_scalars_sent"] = c["sent"] * s
        per_agent[f"{kind}_scalars_received"] = c["received"] * s

    def scalar(x):
        return x.item() if np.ndim(x) == 0 else x

    out: dict[str, Any] = {}
    for name, value in per_agent.items():
        out[f"comm/{name}_per_agent"] = value
        out[f"comm/{name}_total"] = scalar(value.sum(axis=-1))
    out["comm/edges_per_event_per_agent"] = c["received"] / np.maximum(c["events"], 1)
    out["comm/edges_per_event"] = scalar(c["received"].sum(-1) / np.maximum(c["events"].sum(-1), 1))
    out["comm/update_steps"] = scalar(c["updates"])
    return out


# --------------------------------------------------------------------------------------------------
# State, init and step
# --------------------------------------------------------------------------------------------------


class ConsensusState(NamedTuple):
    """Consensus state of ``n`` agents; the pytrees have the structure of the copies (leaves ``[n, ...]``)."""

    published: PyTree  # the copy each agent last published (what its neighbours read)
    view: PyTree  # each agent's view v_i of the shared parameters w_sh
    dual: PyTree  # dual variables lambda_i (eq. 5.2)
    beta: PyTree  # penalty beta, one scalar per leaf of the copies
    order: Array  # [n] int32 permutation: the ring of this run (used by graph="ring")
    timer: Array  # [n] int32 update steps until each agent's next consensus step (NEVER: never)
    counters: CommCounters


def _agent_select(mask: Array, a: PyTree, b: PyTree) -> PyTree:
    """Per agent: leaves of ``a`` where ``mask[i]``, else of ``b``."""
    return jax.tree.map(lambda x, y: jnp.where(mask.reshape(mask.shape + (1,) * (x.ndim - 1)), x, y), a, b)


def init(key: Array, copies: PyTree, protocol: Protocol, beta: PyTree = 1.0) -> ConsensusState:
    """Initial state: every agent has published its initial copy and views it; ``lambda_i = 0``.

    ``beta`` > 0 is one number or a pytree prefix of ``copies`` (one number per block); anything else
    raises ``ConfigError``. ``key`` draws the run's ring and the first schedule intervals (an agent
    first communicates after one interval: at the first step under ``N(1, 0)``).
    """
    check_beta(beta)
    n = protocol.n_agents
    for x in jax.tree.leaves(copies):
        if np.ndim(x) < 1 or np.shape(x)[0] != n:
            raise ValueError(f"every leaf of the copies needs a leading agent axis of size {n}, got shape {np.shape(x)}")
    k_order, k_timer = jax.random.split(key)
    return ConsensusState(
        published=copies,
        view=copies,
        dual=jax.tree.map(jnp.zeros_like, copies),
        beta=_per_leaf(beta, copies),
        order=jax.random.permutation(k_order, n).astype(jnp.int32),
        timer=draw_intervals(k_timer, n, protocol.interval_mean, protocol.interval_std),
        counters=counters_init(n),
    )


def penalty_grads(state: ConsensusState, copies: PyTree) -> PyTree:
    """``lambda_i + beta (w~_i - v_i)`` per agent: add to the gradient of the agent's own objective (eq. 5.4a/b)."""
    return lagrangian_grad(copies, state.view, state.dual, state.beta)


def pull(state: ConsensusState, copies: PyTree, eta: float) -> PyTree:
    """The copies after the proximal step of size ``eta`` on the consensus terms (``proximal_pull``; views and duals
    of ``state``)."""
    return proximal_pull(copies, state.view, state.dual, state.beta, eta)


def penalty(state: ConsensusState, copies: PyTree) -> Array:
    """``[n]`` augmentation terms of eq. 5.2 per agent, ``-<lambda_i, v_i - w~_i> + beta/2 ||v_i - w~_i||^2``.

    Its gradient w.r.t. the copies is ``penalty_grads`` (the views and duals are state, not
    differentiated), so adding ``penalty(...).sum()`` to a loss is the same primal step.
    """
    per_leaf = jax.tree.map(
        lambda w, v, lam, b: jnp.sum((-lam * (v - w) + 0.5 * b * (v - w) ** 2).reshape(w.shape[0], -1), axis=1),
        copies,
        state.view,
        state.dual,
        state.beta,
    )
    return sum(jax.tree.leaves(per_leaf))


def step(state: ConsensusState, copies: PyTree, key: Array, protocol: Protocol) -> ConsensusState:
    """One consensus event over all agents after their primal step: publish, mix, dual ascent (eq. 5.4c/d).

    ``copies`` are the agents' current copies ``w~_i`` (leaves ``[n, ...]``). ``key`` is split in two:
    the first half draws this step's graph (``Protocol.graph_at``), the second the agents' next
    intervals (``tick``). Agents whose timer fires and that have a neighbour publish their copy, then
    set their view to the Metropolis-Hastings mix of their neighbours' published copies; the others
    keep their published copy and take the ``no_comm`` view. Every agent then takes the dual step with
    its own view. Counters record the messages.
    """
    k_graph, k_timer = jax.random.split(key)
    adj = protocol.graph_at(state.order, k_graph)
    fire, timer = tick(state.timer, k_timer, protocol)
    talk = fire & jnp.any(adj, axis=1)
    published = _agent_select(talk, copies, state.published)  # publish before anyone reads
    leaves = jax.tree.leaves(copies)
    weights = metropolis_weights(adj, jnp.result_type(*leaves) if leaves else jnp.float32)
    mixed = mix(weights, published)  # eq. 5.4c over the graph: v_i = sum_j W_ij p_j
    quiet = state.view if protocol.no_comm == "stale_anchor" else copies
    view = _agent_select(talk, mixed, quiet)
    return state._replace(
        published=published,
        view=view,
        dual=dual_ascent(state.dual, copies, view, state.beta),  # eq. 5.4d
        timer=timer,
        counters=count_messages(state.counters, adj, talk),
    )


def sum_copies(x: Array) -> Array:
    """``sum_i x[i]`` over the leading copies axis, added one copy at a time: on XLA:CPU bitwise ``jnp.sum(x, 0)`` and
    30x faster at 60 copies of 216k parameters (8 against 250 ms: the reduction over the major axis is not vectorised)."""
    return jax.lax.fori_loop(1, x.shape[0], lambda i, acc: acc + x[i], x[0])


def disagreement(copies: PyTree) -> Array:
    """``[n]`` distance of each agent's copy to the mean copy, ``||w~_i - mean_j w~_j||`` over all leaves.

    A diagnostic of how far the agents are from consensus (0 when all copies agree).
    """
    sq = [jnp.sum(((x - sum_copies(x) / x.shape[0]) ** 2).reshape(x.shape[0], -1), axis=1) for x in jax.tree.leaves(copies)]
    return jnp.sqrt(sum(sq))
