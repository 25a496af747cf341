"""Tests of the consensus module (Li et al. 2023, eq. 5.2 and 5.4; Metropolis-Hastings weights, Xiao &
Boyd 2004): graphs, mixing, the PDHG pieces, the asynchronous schedule, the no-communication readings
and the communication accounting, against closed forms and plain NumPy loop references."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trustmarl.trust import consensus as C
from trustmarl.validation import ConfigError

RNG = np.random.default_rng(0)
C5 = RNG.normal(size=(5, 3)).astype(np.float32)  # targets c_i of f_i(w) = 1/2 ||w - c_i||^2, 5 agents
C8 = RNG.normal(size=(8, 3)).astype(np.float32)  # the same for 8 agents


def run_quadratic(protocol, c, beta=1.0, iters=3000, lr=0.1, key=0, w0=None, dtype=jnp.float32):
    """PDHG on f_i(w) = 1/2 ||w - c_i||^2: plain gradient step ``lr`` on grad f_i + penalty, then ``step``.

    Returns the final copies, the final state and |sum_i lambda_i| (max over coordinates) per iteration.
    """
    c = jnp.asarray(c, dtype)
    w0 = jnp.zeros_like(c) if w0 is None else jnp.asarray(w0, dtype)
    s0 = C.init(jax.random.PRNGKey(key), w0, protocol, beta=beta)

    def body(carry, k):
        w, s = carry
        w = w - lr * ((w - c) + C.penalty_grads(s, w))  # eq. 5.4a, SGD
        s = C.step(s, w, k, protocol)  # eq. 5.4c/d
        return (w, s), jnp.max(jnp.abs(jnp.sum(s.dual, axis=0)))

    keys = jax.random.split(jax.random.PRNGKey(key + 1000), iters)
    (w, s), dual_sum = jax.jit(lambda w, s: jax.lax.scan(body, (w, s), keys))(w0, s0)
    return np.asarray(w), s, np.asarray(dual_sum)


# ---------------------------------------------------------------------------------------------- graphs


def test_graph_builders():
    assert np.array_equal(C.complete(3), [[0, 1, 1], [1, 0, 1], [1, 1, 0]])
    assert not C.empty(4).any() and C.empty(4).shape == (4, 4)
    adj = C.from_edges(["a", "b", "c", "d"], [("a", "b"), ("c", "b"), ("b", "a")])
    expected = np.zeros((4, 4), bool)
    expected[0, 1] = expected[1, 0] = expected[1, 2] = expected[2, 1] = True
    assert np.array_equal(adj, expected)
    with pytest.raises(ConfigError, match=r"unknown agent 'x'.*agents are a, b, c"):
        C.from_edges(["a", "b", "c"], [("a", "x")])
    with pytest.raises(ConfigError, match="self loop"):
        C.from_edges(["a", "b"], [("a", "a")])
    # a fixed graph in a protocol: symmetric, no self loops, right size
    C.Protocol(4, graph=adj)
    with pytest.raises(ConfigError, match="symmetric"):
        C.Protocol(2, graph=np.array([[False, True], [False, False]]))
    with pytest.raises(ConfigError, match=r"\[3, 3\]"):
        C.Protocol(3, graph=adj)
    for bad in ({"graph": "star"}, {"extra_edges": 0.5}, {"graph": "ring", "extra_edges": 1.5},
                {"interval_mean": 0.0}, {"interval_std": -1.0}, {"no_comm": "silent"}):
        with pytest.raises(ConfigError):
            C.Protocol(4, **bad)


def test_ring_is_a_cycle_through_the_order():
    order = np.array([2, 0, 3, 1, 4])
    adj = np.asarray(C.ring(order))
    assert np.array_equal(adj, adj.T) and not adj.diagonal().any() and np.all(adj.sum(1) == 2)
    for k in range(5):
        assert adj[order[k], order[(k + 1) % 5]]
    assert np.asarray(C.ring(np.array([1, 0]))).sum() == 2  # n = 2: one edge
    assert not np.asarray(C.ring(np.array([0]))).any()  # n = 1: none


@pytest.mark.parametrize("n, ps", [(8, (0.0, 0.2, 0.4, 0.8, 1.0)), (5, (0.4, 1.0))])
def test_ring_plus_random_edges(n, ps):
    """Table 4 protocol: exactly n + round(p M) edges, symmetric, no self loops, the ring always present,
    different extra edges at different steps, p = 1 the complete graph, and uniform over the non-ring pairs."""
    m_pairs = n * (n - 1) // 2 - n
    order = np.asarray(jax.random.permutation(jax.random.PRNGKey(1), n))
    ring = np.asarray(C.ring(order))
    draw = jax.jit(jax.vmap(C.ring_plus_random, in_axes=(None, 0, None)), static_argnums=2)
    for p in ps:
        k = math.floor(p * m_pairs + 0.5)
        assert C.n_extra_edges(n, p) == k
        graphs = np.asarray(draw(order, jax.random.split(jax.random.PRNGKey(2), 2000), p))
        assert np.all(graphs.sum(axis=(1, 2)) == 2 * (n + k))  # undirected edges, counted twice
        assert np.all(graphs == graphs.transpose(0, 2, 1))
        assert not graphs[:, np.arange(n), np.arange(n)].any()
        assert np.all(graphs[:, ring])  # the ring at every step
        if 0 < k < m_pairs:
            assert len({g.tobytes() for g in graphs[:20]}) > 1  # resampled every step
            # each non-ring pair is drawn with probability k / M (uniform subset), within 5 s.e.
            freq = graphs.mean(0)[~ring & ~np.eye(n, dtype=bool)]
            se = math.sqrt(k / m_pairs * (1 - k / m_pairs) / len(graphs))
            assert np.max(np.abs(freq - k / m_pairs)) < 5 * se
    assert np.array_equal(graphs[0], C.complete(n))  # p = 1
    assert C.n_extra_edges(8, 0.225) == 5  # 4.5 rounds half up (Python's round would give 4)


# ---------------------------------------------------------------------------------------------- mixing


def mh_reference(adj):
    """Metropolis-Hastings weights by plain loops (Xiao & Boyd 2004)."""
    n = len(adj)
    d = adj.sum(1)
    w = np.zeros((n, n))
    for i, j in itertools.product(range(n), range(n)):
        if i != j and adj[i, j]:
            w[i, j] = 1.0 / (1 + max(d[i], d[j]))
    for i in range(n):
        w[i, i] = 1.0 - w[i].sum()
    return w


def test_metropolis_weights_match_loop_and_are_doubly_stochastic():
    rng = np.random.default_rng(3)
    weights = jax.jit(C.metropolis_weights)
    for n in (1, 2, 5, 8):
        for _ in range(5):
            upper = np.triu(rng.random((n, n)) < 0.4, 1)
            adj = upper | upper.T
            w = np.asarray(weights(adj))
            np.testing.assert_allclose(w, mh_reference(adj), atol=1e-7)
            assert np.array_equal(w, w.T) and np.all(w >= 0)
            np.testing.assert_allclose(w.sum(0), 1.0, atol=1e-6)
            np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-6)
            assert np.all(w[~adj & ~np.eye(n, dtype=bool)] == 0)
    assert np.array_equal(np.asarray(C.metropolis_weights(C.empty(4))), np.eye(4))  # nobody: own copy
    w_ring = np.asarray(C.metropolis_weights(C.ring(np.arange(6))))
    assert set(np.unique(w_ring)) == {0.0, np.float32(1 / 3)}  # regular graph: one value per row


def test_complete_graph_mixing_is_the_plain_mean():
    for n in (2, 3, 5, 7):
        w = np.asarray(C.metropolis_weights(C.complete(n)))
        assert np.all(w == np.float32(1 / n))  # every weight, the diagonal included, exactly fl(1/n)
        x = {"a": jnp.asarray(RNG.normal(size=(n, 4, 3)), jnp.float32), "b": jnp.asarray(RNG.normal(size=(n,)), jnp.float32)}
        mixed = C.mix(w, x)
        for key, leaf in x.items():
            mean = np.broadcast_to(np.asarray(leaf).astype(np.float64).mean(0), leaf.shape)
            np.testing.assert_allclose(np.asarray(mixed[key]), mean, rtol=0, atol=1e-6)
    # a general graph: out_i = sum_j W_ij x_j per leaf
    adj = C.from_edges("abcd", [("a", "b"), ("b", "c"), ("c", "d")])
    x = RNG.normal(size=(4, 2, 2)).astype(np.float32)
    np.testing.assert_allclose(
        np.asarray(C.mix(C.metropolis_weights(adj), x)), np.einsum("ij,jkl->ikl", mh_reference(adj), x), atol=1e-6
    )


# ----------------------------------------------------------------------------------------- PDHG pieces


def test_lagrangian_gradient_and_dual_step_with_one_beta_per_block():
    n = 3
    tree = lambda s: {"critic": jnp.asarray(RNG.normal(size=(n, 2, 2)) + s, jnp.float32),
                      "actor": {"w": jnp.asarray(RNG.normal(size=(n, 5)), jnp.float32)}}
    w, v, lam = tree(0.0), tree(1.0), tree(-1.0)
    beta = {"critic": 2.0, "actor": 0.5}
    g = C.lagrangian_grad(w, v, lam, beta)
    np.testing.assert_allclose(g["critic"], lam["critic"] + 2.0 * (w["critic"] - v["critic"]), rtol=1e-6)
    np.testing.assert_allclose(g["actor"]["w"], lam["actor"]["w"] + 0.5 * (w["actor"]["w"] - v["actor"]["w"]), rtol=1e-6)
    d = C.dual_ascent(lam, w, v, beta)
    np.testing.assert_allclose(d["critic"], lam["critic"] - 2.0 * (v["critic"] - w["critic"]), rtol=1e-6)
    np.testing.assert_allclose(d["actor"]["w"], lam["actor"]["w"] - 0.5 * (v["actor"]["w"] - w["actor"]["w"]), rtol=1e-6)
    # the penalty terms of eq. 5.2: autograd of penalty() equals penalty_grads(), and both use the state's beta
    state = C.init(jax.random.PRNGKey(0), w, C.Protocol(n), beta=beta)._replace(view=v, dual=lam)
    auto = jax.grad(lambda c: C.penalty(state, c).sum())(w)
    for a, b, c in zip(jax.tree.leaves(auto), jax.tree.leaves(C.penalty_grads(state, w)), jax.tree.leaves(g)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b, c, rtol=1e-6)
    assert C.penalty(state, w).shape == (n,)
    with pytest.raises(ValueError, match="prefix"):
        C.lagrangian_grad(w, v, lam, {"critic": 1.0})


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), {"critic": 1.0, "actor": 0.0}])
def test_beta_must_be_positive(bad):
    """With beta = 0 the copies never agree (Li et al. 2023, Algorithm 1 line 1 sets it to zero: refused)."""
    copies = {"critic": jnp.zeros((3, 2)), "actor": jnp.zeros((3, 1))}
    with pytest.raises(ConfigError, match="beta"):
        C.init(jax.random.PRNGKey(0), copies, C.Protocol(3), beta=bad)
    with pytest.raises(ConfigError, match="never agree"):
        C.check_beta(0.0)


# ---------------------------------------------------------------------------------- consensus (claims)


@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_pdhg_reaches_the_consensus_optimum(beta):
    """n = 5, d = 3, f_i = 1/2 ||w - c_i||^2, full averaging: every copy and view -> mean_i c_i.

    In float64 to < 1e-6 as claimed (the error is ~1e-15); in float32 the dual sum random-walks at the
    float32 resolution (|sum lambda| ~ 5e-6 after 3000 steps), so the copies land within 1e-6 to 2e-6.
    """
    target = C5.astype(np.float64).mean(0)
    with jax.enable_x64(True):
        w, s, _ = run_quadratic(C.Protocol(5), C5, beta=beta, dtype=jnp.float64)
        assert w.dtype == np.float64
        assert np.max(np.abs(w - target)) < 1e-6
        assert np.max(np.abs(np.asarray(s.view) - target)) < 1e-6
    w, s, _ = run_quadratic(C.Protocol(5), C5, beta=beta)
    assert np.max(np.abs(w - target)) < 1e-5 and np.max(np.abs(np.asarray(s.view) - target)) < 1e-5


def test_tiny_beta_gives_no_consensus():
    """beta -> 0: the copies stay at their own optima c_i (the beta = 0 closed form), far from mean c_i.

    On this instance max_i |c_i - mean c|_inf = 1.914 and beta = 1e-6 ends at 1.908 (copies within 0.006
    of c_i after 3000 steps); beta = 0 itself is refused."""
    w, _, _ = run_quadratic(C.Protocol(5), C5, beta=1e-6)
    assert np.max(np.abs(w - C5.mean(0))) > 0.5
    assert np.max(np.abs(w - C5.mean(0))) == pytest.approx(np.max(np.abs(C5 - C5.mean(0))), abs=0.01)
    np.testing.assert_allclose(w, C5, atol=0.01)


def test_dual_sum_stays_zero():
    """With lambda_i(0) = 0 and doubly stochastic mixing, sum_i lambda_i = 0 at every iteration (float64:
    machine precision), on the complete graph and on the ring plus 40 % random edges resampled every step."""
    with jax.enable_x64(True):
        for protocol in (C.Protocol(5), C.Protocol(5, graph="ring", extra_edges=0.4)):
            c = C5.astype(np.float64)
            _, s, dual_sum = run_quadratic(protocol, c, dtype=jnp.float64, iters=1000)
            assert np.max(dual_sum) < 1e-12
            assert np.max(np.abs(np.asarray(s.dual))) > 0.1  # the duals themselves are far from zero


def test_pdhg_iteration_matches_loop_reference():
    """15 synchronous iterations of eq. 5.4 on the ring + 40 % edges: primal step with grad f_i + lambda_i
    + beta (w_i - v_i), Metropolis-Hastings views of the new copies, dual step, as a plain loop."""
    n, iters, beta, lr = 6, 15, 0.8, 0.1
    c = C8[:n]
    protocol = C.Protocol(n, graph="ring", extra_edges=0.4)
    w_got, s, _ = run_quadratic(protocol, c, beta=beta, iters=iters, key=4)
    w, v, lam = np.zeros((n, 3)), np.zeros((n, 3)), np.zeros((n, 3))
    for key in jax.random.split(jax.random.PRNGKey(4 + 1000), iters):
        w = w - lr * ((w - c) + lam + beta * (w - v))
        weights = mh_reference(np.asarray(C.ring_plus_random(s.order, jax.random.split(key)[0], 0.4)))
        v = np.array([sum(weights[i, j] * w[j] for j in range(n)) for i in range(n)])
        lam = lam - beta * (v - w)
    np.testing.assert_allclose(w_got, w, atol=1e-5)
    np.testing.assert_allclose(np.asarray(s.view), v, atol=1e-5)
    np.testing.assert_allclose(np.asarray(s.dual), lam, atol=1e-5)
    assert np.max(np.abs(w - w.mean(0))) > 0.05  # still far from consensus: the transient is compared


def uniform_foil(c, p, beta=1.0, iters=3000, lr=0.1):
    """The same PDHG iteration with a uniform average over the closed neighbourhood (row stochastic only)."""
    c = jnp.asarray(c)
    n = c.shape[0]
    order = jax.random.permutation(jax.random.PRNGKey(0), n)

    def body(carry, k):
        w, v, lam = carry
        w = w - lr * ((w - c) + lam + beta * (w - v))
        adj = C.ring_plus_random(order, k, p) | jnp.eye(n, dtype=bool)
        v = (adj / adj.sum(1, keepdims=True)) @ w
        return (w, v, lam - beta * (v - w)), None

    z = jnp.zeros_like(c)
    (w, _, _), _ = jax.jit(lambda z: jax.lax.scan(body, (z, z, z), jax.random.split(jax.random.PRNGKey(5), iters)))(z)
    return np.asarray(w)


def test_metropolis_mixing_reaches_the_exact_optimum_on_time_varying_graphs():
    """8 agents: ring, ring + 40 % and ring + 80 % random edges resampled every step -> mean c_i (< 1e-5 in
    float32); the uniform closed-neighbourhood average on the same time-varying graphs misses (0.026 and
    0.023 here); with no edges there is no consensus (closed forms for both no-communication readings)."""
    target = C8.mean(0)
    for p in (0.0, 0.4, 0.8):
        w, s, dual_sum = run_quadratic(C.Protocol(8, graph="ring", extra_edges=p), C8)
        assert np.max(np.abs(w - target)) < 1e-5, p
        assert np.max(np.abs(np.asarray(s.view) - target)) < 1e-5, p
        assert np.max(dual_sum) < 2e-5  # float32 resolution
    for p in (0.4, 0.8):
        assert np.max(np.abs(uniform_foil(C8, p) - target)) > 1e-3
    # no edges: an independent learner reaches its own c_i; a stale anchor is held at its initial copy
    w0 = RNG.normal(size=(8, 3)).astype(np.float32)
    w, s, _ = run_quadratic(C.Protocol(8, graph="empty", no_comm="own_view"), C8, w0=w0)
    np.testing.assert_allclose(w, C8, atol=1e-5)
    assert np.max(np.abs(w - target)) > 1.0
    assert not np.asarray(s.dual).any()  # lambda never moved: the penalty is exactly zero
    w, _, _ = run_quadratic(C.Protocol(8, graph="empty"), C8, w0=w0)
    np.testing.assert_allclose(w, w0, atol=1e-4)
    assert np.max(np.abs(w - target)) > 1.0


# --------------------------------------------------------------------------- schedule, bitwise equalities


def test_schedule_intervals():
    key = jax.random.PRNGKey(0)
    assert np.all(np.asarray(C.draw_intervals(key, 6, 1.0, 0.0)) == 1)
    assert np.all(np.asarray(C.draw_intervals(key, 6, math.inf, 0.0)) == C.NEVER)
    x = np.asarray(C.draw_intervals(key, 100_000, 3.0, 4.0))
    assert x.dtype == np.int32 and x.min() == 1
    z = np.asarray(jax.random.normal(key, (100_000,)))
    assert np.array_equal(x, np.maximum(1, np.round(3.0 + 4.0 * z)).astype(np.int32))
    assert np.asarray(C.draw_intervals(key, 3, 1e12, 0.0)).max() == C.MAX_INTERVAL


def fields(state):
    """Everything in a state that is part of a run (the timers differ by construction between schedules)."""
    return jax.tree.leaves(state._replace(timer=None))


@pytest.mark.parametrize("no_comm", C.NO_COMM)
def test_no_edges_equals_never_bit_for_bit(no_comm):
    c = C5
    w_a, s_a, _ = run_quadratic(C.Protocol(5, graph="empty", no_comm=no_comm), c, iters=300)
    w_b, s_b, _ = run_quadratic(C.Protocol(5, interval_mean=math.inf, no_comm=no_comm), c, iters=300)
    w_c, s_c, _ = run_quadratic(C.Protocol(5, graph="ring", extra_edges=0.4, interval_mean=math.inf, no_comm=no_comm), c, iters=300)
    assert np.array_equal(w_a, w_b) and np.array_equal(w_a, w_c)
    for a, b, cc in zip(fields(s_a), fields(s_b), fields(s_c)):
        assert np.array_equal(a, b) and np.array_equal(a, cc)
    assert int(s_a.counters.events.sum()) == 0
    if no_comm == "own_view":  # an independent learner: exactly plain gradient descent on its own f_i
        w = np.zeros_like(c)
        w_ind = jax.jit(lambda w: jax.lax.fori_loop(0, 300, lambda _, w: w - 0.1 * (w - c), w))(w)
        assert np.array_equal(w_a, np.asarray(w_ind))


def test_complete_graph_equals_ring_with_all_edges_and_synchronous_schedule_bit_for_bit():
    runs = [run_quadratic(p, C5, iters=300, key=3) for p in (
        C.Protocol(5),  # complete graph, N(1, 0)
        C.Protocol(5, interval_mean=1.0, interval_std=0.0, no_comm="own_view"),
        C.Protocol(5, graph="ring", extra_edges=1.0),  # Table 4, 100 %
    )]
    for w, s, _ in runs[1:]:
        assert np.array_equal(w, runs[0][0])
        for a, b in zip(jax.tree.leaves(s), jax.tree.leaves(runs[0][1])):
            assert np.array_equal(a, b)
    assert np.all(np.asarray(runs[0][1].counters.events) == 300)


def async_reference(protocol, copies_seq, state0, keys):
    """Plain NumPy loop reference of ``step``: timers, publish-then-read, stale copies, MH mixing by
    loops, the no_comm view, the dual step and pull counting. The graph and the interval draws use the
    library's (separately tested) ``ring_plus_random`` / ``draw_intervals`` with the documented key split."""
    n = protocol.n_agents
    pub, view, dual = (np.asarray(x, np.float64) for x in (state0.published, state0.view, state0.dual))
    beta = float(state0.beta)
    timer = np.asarray(state0.timer).copy()
    events, sent, received = np.zeros(n, int), np.zeros(n, int), np.zeros(n, int)
    for w, key in zip(copies_seq, keys):
        k_graph, k_timer = jax.random.split(key)
        adj = np.asarray(C.ring_plus_random(state0.order, k_graph, protocol.extra_edges))
        timer = timer - 1
        fire = timer <= 0
        timer = np.where(fire, np.asarray(C.draw_intervals(k_timer, n, protocol.interval_mean, protocol.interval_std)), timer)
        weights = mh_reference(adj)
        talk = [fire[i] and adj[i].any() for i in range(n)]
        for i in range(n):
            if talk[i]:
                pub[i] = w[i]
        for i in range(n):
            if talk[i]:
                view[i] = sum(weights[i, j] * pub[j] for j in range(n))
                events[i] += 1
                for j in range(n):
                    if adj[i, j]:
                        received[i] += 1
                        sent[j] += 1
            elif protocol.no_comm == "own_view":
                view[i] = w[i]
        dual = dual - beta * (view - w)
    return pub, view, dual, timer, events, sent, received


@pytest.mark.parametrize("no_comm", C.NO_COMM)
def test_asynchronous_step_matches_loop_reference(no_comm):
    """Ring + 40 % edges, N(3, 1.5): stale published copies, views, duals and counters as a plain loop."""
    n, steps = 6, 40
    protocol = C.Protocol(n, graph="ring", extra_edges=0.4, interval_mean=3.0, interval_std=1.5, no_comm=no_comm)
    copies_seq = RNG.normal(size=(steps, n, 2)).astype(np.float32)
    keys = jax.random.split(jax.random.PRNGKey(7), steps)
    state = C.init(jax.random.PRNGKey(8), jnp.asarray(RNG.normal(size=(n, 2)), jnp.float32), protocol, beta=0.7)
    ref = async_reference(protocol, copies_seq, state, keys)
    step = jax.jit(C.step)
    for w, key in zip(copies_seq, keys):
        state = step(state, jnp.asarray(w), key, protocol)
    for got, want in zip((state.published, state.view, state.dual), ref[:3]):
        np.testing.assert_allclose(np.asarray(got), want, atol=2e-5)
    assert np.array_equal(np.asarray(state.timer), ref[3])
    c = state.counters
    for got, want in zip((c.events, c.sent, c.received), ref[4:]):
        assert np.array_equal(np.asarray(got), want)
    assert 0 < ref[4].sum() < n * steps  # asynchronous: some agents fired, not all every step
    assert int(c.updates) == steps


# --------------------------------------------------------------------------------------------- accounting


@pytest.mark.parametrize(
    "graph, expected_p2p",
    [("complete", lambda n: n * (n - 1)), ("ring", lambda n: 2 * n), ("empty", lambda n: 0)],
)
def test_communication_accounting(graph, expected_p2p):
    """4 agents, payload P, k synchronous events: point to point k n (n-1) P (complete), k 2n P (ring),
    0 (no edges); broadcast k n P; sent = received; per kind; observed records apart."""
    n, k, p_critic, p_actor = 4, 7, 13, 5
    protocol = C.Protocol(n, graph=graph)
    copies = {"critic": jnp.zeros((n, p_critic)), "actor": jnp.zeros((n, p_actor))}
    state = C.init(jax.random.PRNGKey(0), copies, protocol)
    step = jax.jit(C.step)
    for t in range(k):
        state = step(state, copies, jax.random.PRNGKey(t), protocol)
    counters = C.observe(state.counters, 3)
    payload = {"shared_critic": C.payload_size(copies["critic"]), "shared_actor": C.payload_size(copies["actor"])}
    assert payload == {"shared_critic": 13, "shared_actor": 5}
    m = C.comm_metrics(counters, payload, observed_scalars=11)
    size = p_critic + p_actor
    assert m["comm/scalars_sent_total"] == k * expected_p2p(n) * size
    assert m["comm/scalars_received_total"] == k * expected_p2p(n) * size
    assert m["comm/shared_critic_scalars_sent_total"] == k * expected_p2p(n) * p_critic
    assert m["comm/shared_actor_scalars_received_total"] == k * expected_p2p(n) * p_actor
    assert m["comm/messages_sent_total"] == k * expected_p2p(n)
    events = 0 if graph == "empty" else k
    assert m["comm/consensus_events_total"] == n * events
    assert m["comm/broadcast_scalars_sent_total"] == k * n * size * (graph != "empty")
    assert np.array_equal(m["comm/consensus_events_per_agent"], [events] * n)
    assert m["comm/edges_per_event"] == (expected_p2p(n) / n if events else 0.0)
    assert np.array_equal(m["comm/observed_scalars_per_agent"], [33] * n)
    assert m["comm/observed_scalars_total"] == 33 * n
    assert m["comm/update_steps"] == k
    assert isinstance(m["comm/scalars_sent_total"], int)
    with pytest.raises(ConfigError, match="kinds are shared_critic"):
        C.comm_metrics(counters, {"critic": 3})
    # exact Python integers where int32 would overflow: 1e6 messages of a 1e5-scalar payload
    big = counters._replace(sent=jnp.full((n,), 10**6, jnp.int32))
    assert C.comm_metrics(big, {"shared_critic": 10**5})["comm/scalars_sent_total"] == 4 * 10**11


@pytest.mark.parametrize("mu", [8.0, 20.0])
def test_asynchronous_schedule_event_count(mu):
    """N(mu, mu/2): each agent's consensus events over T = 10,000 update steps within 5 % of T / max(1, mu)."""
    n, horizon = 4, 10_000
    protocol = C.Protocol(n, interval_mean=mu, interval_std=mu / 2)
    copies = jnp.zeros((n, 1))
    state = C.init(jax.random.PRNGKey(0), copies, protocol)
    run = jax.jit(lambda s: jax.lax.scan(lambda s, k: (C.step(s, copies, k, protocol), None), s,
                                         jax.random.split(jax.random.PRNGKey(1), horizon))[0])
    events = np.asarray(run(state).counters.events)
    np.testing.assert_allclose(events, horizon / max(1.0, mu), rtol=0.05)


# -------------------------------------------------------------------------------------- jit and vmap


def test_vmap_over_seeds_equals_a_loop_and_jit_works():
    n, seeds, steps = 5, 3, 30
    protocol = C.Protocol(n, graph="ring", extra_edges=0.4, interval_mean=2.0, interval_std=1.0)
    copies = jnp.asarray(RNG.normal(size=(seeds, n, 2, 3)), jnp.float32)
    init_keys = jax.random.split(jax.random.PRNGKey(0), seeds)
    step_keys = jax.random.split(jax.random.PRNGKey(1), seeds * steps).reshape(seeds, steps, -1)

    def one_seed(key, w, keys):
        state = C.init(key, {"q": w}, protocol, beta=0.5)

        def body(carry, k):
            w, s = carry
            w = w - 0.1 * (w + C.penalty_grads(s, {"q": w})["q"])
            return (w, C.step(s, {"q": w}, k, protocol)), None

        return jax.lax.scan(body, (w, state), keys)[0]

    batched = jax.jit(jax.vmap(one_seed))(init_keys, copies, step_keys)
    for i in range(seeds):
        single = jax.jit(one_seed)(init_keys[i], copies[i], step_keys[i])
        for a, b in zip(jax.tree.leaves(batched), jax.tree.leaves(single)):
            np.testing.assert_allclose(np.asarray(a)[i], np.asarray(b), rtol=1e-6, atol=1e-6)
    assert len({np.asarray(batched[1].order)[i].tobytes() for i in range(seeds)}) > 1  # a ring per seed
    m = C.comm_metrics(batched[1].counters, {"shared_critic": 6})  # a seed axis: per seed, per agent
    assert m["comm/scalars_sent_per_agent"].shape == (seeds, n) and m["comm/scalars_sent_total"].shape == (seeds,)
    assert np.array_equal(m["comm/scalars_sent_total"], 6 * np.asarray(batched[1].counters.sent).sum(1))
    # the protocol is a static pytree: it can be passed to jit as an argument (same as closing over it)
    state = C.init(init_keys[0], copies[0], protocol)
    as_argument = jax.jit(C.step)(state, copies[0], step_keys[0, 0], protocol)
    closed_over = jax.jit(lambda s, w, k: C.step(s, w, k, protocol))(state, copies[0], step_keys[0, 0])
    for a, b in zip(jax.tree.leaves(as_argument), jax.tree.leaves(closed_over)):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_disagreement():
    x = {"a": jnp.asarray([[0.0, 0.0], [2.0, 0.0]]), "b": jnp.asarray([[1.0], [1.0]])}
    np.testing.assert_allclose(np.asarray(C.disagreement(x)), [1.0, 1.0])
    assert float(jnp.max(C.disagreement({"a": jnp.ones((4, 3))}))) == 0.0
