"""COMA, F2A2-COMA and MA-AC: the joint surrogates against Li et al. 2023's Prop. 3 (finite differences and
hand-assembled gradients), the tabular fixed point of the joint critic, the reduction of F2A2-COMA to COMA,
the critic's inputs, the TD(lambda) targets against a loop, and the refused settings."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trustmarl.algos import f2a2, make_algorithm
from trustmarl.experiment.config import build_config
from trustmarl.validation import ConfigError

RNG = np.random.default_rng(3)


# ---- Prop. 3: the actor's score-function weight (C4) -------------------------------------------


def test_actor_surrogate_is_the_gradient_of_the_joint_objective():
    """2 agents, |A1| = 3, |A2| = 4, random Q and delta, softmax policy of agent 1, fixed policy of agent 2:
    the surrogate's gradient equals minus the finite-difference gradient of the joint objective
    ``alpha1 E[Q - B] - alpha2 E[delta^2]`` (B held fixed), and a 1e5-sample estimate is within 3 s.e."""
    q, delta = RNG.normal(size=(3, 4)), RNG.normal(size=(3, 4))
    theta0, pi2 = RNG.normal(size=3), RNG.dirichlet(np.ones(4))
    a1, a2 = 1.0, 0.5
    with jax.enable_x64(True):
        pi1_0 = np.exp(theta0) / np.exp(theta0).sum()
        base = (pi1_0[:, None] * q).sum(0)  # B(a2) = sum_a1 pi1(a1) Q(a1, a2), held fixed

        def objective(theta):
            pi1 = np.exp(theta) / np.exp(theta).sum()
            joint = pi1[:, None] * pi2[None, :]
            return np.sum(joint * (a1 * (q - base[None]) - a2 * delta**2))

        eps = 1e-6
        fd = np.array([(objective(theta0 + eps * e) - objective(theta0 - eps * e)) / (2 * eps) for e in np.eye(3)])
        w = f2a2.actor_weight(jnp.asarray(q - base[None]), jnp.asarray(delta), a1, a2, joint=True)

        def surrogate(theta):
            logp = jax.nn.log_softmax(theta)
            probs = jax.lax.stop_gradient(jnp.exp(logp))[:, None] * pi2[None, :]
            return -jnp.sum(probs * logp[:, None] * w)

        grad = np.asarray(jax.grad(surrogate)(jnp.asarray(theta0)))
        np.testing.assert_allclose(-grad, fd, atol=1e-8)
        # Monte Carlo: per-sample -grad log pi1(a1) w(a1, a2)
        n = 100_000
        s1, s2 = RNG.choice(3, n, p=pi1_0), RNG.choice(4, n, p=pi2)
        score = np.eye(3)[s1] - pi1_0[None]  # grad log softmax
        per = score * np.asarray(w)[s1, s2][:, None]
        se = per.std(0) / np.sqrt(n)
        assert np.all(np.abs(per.mean(0) - fd) < 3 * se + 1e-12)
        # w/o-JOINT drops the delta^2 term
        w_sep = f2a2.actor_weight(jnp.asarray(q - base[None]), jnp.asarray(delta), a1, a2, joint=False)
        np.testing.assert_allclose(np.asarray(w_sep), a1 * (q - base[None]))


# ---- Prop. 3: the critic's gradient (C5) --------------------------------------------------------


@pytest.mark.parametrize("joint", [True, False])
def test_critic_surrogate_gradient_is_the_per_sample_formula(joint):
    """``d/dphi mean_b surrogate = mean_b (-alpha1 rho_b + 2 alpha2 delta_b) dQ_b`` (joint) or
    ``mean_b 2 alpha2 delta_b dQ_b`` (w/o-JOINT), for a small MLP critic, to 1e-10 in float64."""
    a1, a2 = 0.7, 1.3
    with jax.enable_x64(True):
        x, y, rho = (jnp.asarray(RNG.normal(size=s)) for s in ((16, 3), (16,), (16,)))
        rho = jnp.abs(rho)
        params = {"w1": jnp.asarray(RNG.normal(size=(3, 5))), "w2": jnp.asarray(RNG.normal(size=(5,)))}
        qf = lambda p, xb: jnp.tanh(xb @ p["w1"]) @ p["w2"]  # noqa: E731
        loss = lambda p: jnp.mean(f2a2.critic_surrogate(qf(p, x), y, a1, a2, joint, rho))  # noqa: E731
        grad = jax.grad(loss)(params)
        jac = jax.jacrev(qf)(params, x)  # per-sample dQ_b
        delta = qf(params, x) - y
        coef = (-a1 * rho + 2 * a2 * delta) if joint else 2 * a2 * delta
        for k in params:
            hand = jnp.tensordot(coef, jac[k], axes=(0, 0)) / x.shape[0]
            np.testing.assert_allclose(np.asarray(grad[k]), np.asarray(hand), atol=1e-10)


# ---- the joint critic's fixed point (C6) ---------------------------------------------------------


def test_joint_critic_fixed_point_is_shifted_by_alpha1_over_2alpha2_1_minus_gamma():
    """Tabular on-policy evaluation, 4 states x 2 actions, gamma = 0.9, alpha1 = alpha2 = 1: semi-gradient
    steps on the joint surrogate converge to ``Q^pi + alpha1 / (2 alpha2 (1 - gamma)) = Q^pi + 5`` on every
    entry; with ratios rho != 1 on the alpha1 term the shift is ``(I - gamma P^pi)^-1 alpha1 rho / (2 alpha2)``,
    different for every state-action pair."""
    ns, na, gamma = 4, 2, 0.9
    P = RNG.dirichlet(np.ones(ns), size=(ns, na))  # [s, a, s']
    r = RNG.normal(size=(ns, na))
    pi = RNG.dirichlet(np.ones(na), size=ns)
    Ppi = np.einsum("sat,tb->satb", P, pi).reshape(ns * na, ns * na)
    q_pi = np.linalg.solve(np.eye(ns * na) - gamma * Ppi, r.reshape(-1))
    with jax.enable_x64(True):
        def solve(rho):
            @jax.jit
            def step(q):
                y = jnp.asarray(r.reshape(-1)) + gamma * jnp.asarray(Ppi) @ q
                g = jax.grad(lambda qq: jnp.sum(f2a2.critic_surrogate(qq, y, 1.0, 1.0, True, rho)))(q)
                return q - 0.25 * g

            q = jnp.zeros(ns * na)
            for _ in range(1500):
                q = step(q)
            return np.asarray(q)

        np.testing.assert_allclose(solve(jnp.ones(ns * na)) - q_pi, 5.0, atol=1e-9)
        rho = RNG.uniform(0.2, 1.0, ns * na)
        offset = solve(jnp.asarray(rho)) - q_pi
        np.testing.assert_allclose(offset, np.linalg.solve(np.eye(ns * na) - gamma * Ppi, rho / 2), atol=1e-9)
        assert offset.std() > 0.01  # a state-dependent bias


# ---- the algorithms ------------------------------------------------------------------------------

TINY = {"algo.num_envs": 2, "algo.rollout_len": 8, "algo.hidden_sizes": [8], "env.n_agents": 3, "env.max_cycles": 5,
        "algo.reward": "agent", "algo.share_params": False, "algo.epochs": 2, "algo.minibatches": 2,
        "algo.actor_lr": 0.05, "algo.critic_lr": 0.05, "algo.target_every": 5, "algo.max_grad_norm": 1e9}


def _f64(tree):
    return jax.tree.map(lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


@pytest.fixture(scope="module")
def rollout():
    """One COMA rollout (float32) and the initial states of COMA and F2A2-COMA on it."""
    key = jax.random.PRNGKey(4)
    coma = make_algorithm(build_config("coma", "mpe/simple_spread", TINY), total_updates=4)
    s0 = jax.jit(coma.init)(key)
    s0, traj, _ = jax.jit(coma.rollout)(s0)
    return s0, traj


def _learn_runs(rollout, optimizer: str, updates: int = 3):
    """COMA and F2A2-COMA (w/o-JOINT, copies replaced by their mean) learning ``updates`` times from one rollout, float64."""
    s0, traj = rollout
    coma = make_algorithm(build_config("coma", "mpe/simple_spread", {**TINY, "algo.optimizer": optimizer}), total_updates=4)
    f2 = make_algorithm(build_config("f2a2_coma", "mpe/simple_spread", {
        **TINY, "algo.optimizer": optimizer, "algo.consensus": "mean", "algo.joint": False}), total_updates=4)
    f0 = jax.jit(f2.init_state)(jax.random.PRNGKey(4), s0.last, s0.env_state)  # COMA's init: the same networks
    f0 = f0._replace(key=s0.key, carry=(s0.carry, f0.carry[1]), episodes=s0.episodes)  # no committed actions yet
    c0 = jax.jit(coma.init_state)(jax.random.PRNGKey(4), s0.last, s0.env_state)._replace(key=s0.key)
    out = []
    with jax.enable_x64(True):
        traj = _f64(traj)
        for algo, state in ((coma, _f64(c0)), (f2, _f64(f0))):
            learn = jax.jit(algo.learn)
            for _ in range(updates):
                state, metrics = learn(state, traj)
            out.append((state, metrics))
    return coma, f2, out


@pytest.fixture(scope="module")
def sgd_runs(rollout):
    return _learn_runs(rollout, "sgd")


def _max_diff(coma_state, f2_state):
    """Largest differences (numpy, float64) of the actors, the critic copies and the target copies from COMA's."""
    def diff(xs, ys, copies):
        return max(float(np.max(np.abs(np.asarray(a)[None] * 1.0 - np.asarray(b)) if copies else np.abs(np.asarray(a) - np.asarray(b))))
                   for a, b in zip(jax.tree.leaves(xs), jax.tree.leaves(ys)))

    return (diff(coma_state.actor_params, f2_state.actor_params, False),
            diff(coma_state.critic_params, f2_state.critic_params, True),
            diff(coma_state.extra["target_critic"], f2_state.extra["target_critic"], True))


def test_f2a2_coma_reduces_to_coma(sgd_runs):
    """Li et al. 2023's reduction: separate objectives, the complete graph with the copies replaced by their
    mean, plain gradient steps, float64: F2A2-COMA's actors, critic copies and target copies equal COMA's
    to 1e-10 after 3 updates of 4 update steps each (the mean of n steps and one step on the mean loss
    round differently)."""
    _, _, ((cs, cm), (fs, fm)) = sgd_runs
    assert jax.tree.leaves(cs.critic_params)[0].dtype == np.float64 and jax.tree.leaves(fs.actor_params)[0].dtype == np.float64
    d_actor, d_critic, d_target = _max_diff(cs, fs)
    assert max(d_actor, d_critic, d_target) < 1e-10, (d_actor, d_critic, d_target)
    moved = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                for a, b in zip(jax.tree.leaves(cs.critic_params), jax.tree.leaves(cs.extra["target_critic"])))
    assert moved > 1e-4  # the critic learned since the last hard target copy (12 steps, a copy every 5)
    np.testing.assert_allclose(np.asarray(fm["diag/consensus_distance_per_agent"]), 0.0, atol=1e-12)
    # communication: COMA reports 0; the mean is one complete-graph event per update step: 3 x 2 messages
    assert float(cm["comm/messages_sent_total"]) == 0.0
    assert float(fm["comm/messages_sent_total"]) == 3 * 4 * 3 * 2
    assert float(fm["comm/consensus_events_total"]) == 3 * 4 * 3


def test_f2a2_coma_does_not_reduce_to_coma_with_adam(rollout):
    """Adam per agent is not Adam on the mean gradient: the same comparison must fail."""
    _, _, ((cs, _), (fs, _)) = _learn_runs(rollout, "adam", updates=1)
    assert max(_max_diff(cs, fs)[:2]) > 1e-6


def test_critic_reads_the_state_own_observation_and_the_others_actions(sgd_runs):
    """``Q_i(s, (., a_-i))`` ignores agent i's own action and changes with any other agent's."""
    coma, _, ((cs, _), _) = sgd_runs
    with jax.enable_x64(True):
        state = jnp.asarray(RNG.normal(size=(coma.env.state_dim,)))
        obs = (jnp.asarray(RNG.normal(size=(3, coma.groups[0].obs_dim))),)
        acts = jnp.array([0, 1, 2])
        q = lambda a: np.asarray(coma.q_values(cs.critic_params, state, obs, coma.onehot((a,)))[0])  # noqa: E731
        base, own, other = q(acts), q(acts.at[0].set(4)), q(acts.at[1].set(4))
    np.testing.assert_array_equal(base[0], own[0])  # agent 0's own action is not an input of Q_0
    assert np.abs(base[0] - other[0]).max() > 1e-6 and np.abs(base[2] - own[2]).max() > 1e-6


def test_td_lambda_targets_match_a_loop(sgd_runs):
    coma, _, ((cs, _), _) = sgd_runs
    T, E, N, gamma, lam = 6, 2, 3, coma.cfg.gamma, coma.cfg.td_lambda
    r, q_next, done = RNG.normal(size=(T, E, N)), RNG.normal(size=(T, E, N)), RNG.random((T, E)) < 0.3
    boot = RNG.normal(size=(E, N))
    from trustmarl.trust.gae import gae

    _, g = gae(jnp.asarray(r), jnp.asarray(q_next), jnp.asarray(done)[..., None], jnp.asarray(boot), gamma, lam)
    ref, nxt_g, nxt_q = np.zeros((T, E, N)), boot, boot
    for t in reversed(range(T)):
        nd = 1.0 - done[t][:, None]
        ref[t] = r[t] + gamma * nd * ((1 - lam) * nxt_q + lam * nxt_g)
        nxt_g, nxt_q = ref[t], q_next[t]
    np.testing.assert_allclose(np.asarray(g), ref, atol=1e-5)


# ---- refused settings ------------------------------------------------------------------------------


@pytest.mark.parametrize("key,value,words", [
    ("algo.beta", 0.0, "beta=0.0 must be > 0"),
    ("algo.beta", -1.0, "must be > 0"),
    ("algo.alpha1", -0.5, "alpha1=-0.5 must be a finite number >= 0"),
    ("algo.extra_edges", 1.5, "extra_edges=1.5 must be in"),
    ("algo.interval_mean", -3.0, "interval_mean=-3.0 must be > 0"),
    ("algo.interval_std", -1.0, "interval_std=-1.0"),
    ("algo.no_comm", "shout", "no_comm='shout' is not allowed"),
    ("algo.consensus", "vote", "consensus='vote' is not allowed"),
    ("algo.share_params", True, "policies are individual"),
    ("algo.optimizer", "rmsprop", "optimizer='rmsprop'"),
])
def test_bad_consensus_settings_are_refused(key, value, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
        build_config("f2a2_coma", "mpe/simple_spread", {key: value})


def test_both_alphas_zero_one_agent_and_unknown_edges_are_refused():
    with pytest.raises(ConfigError, match="both 0"):
        build_config("f2a2_coma", "mpe/simple_spread", {"algo.alpha1": 0.0, "algo.alpha2": 0.0})
    cfg = build_config("f2a2_coma", "mpe/simple_spread", {"algo.graph": "edges", "algo.edges": ["agent_0:agent_9"]})
    from trustmarl.envs import make

    env = make("mpe/simple_spread", n_agents=3)
    with pytest.raises(ConfigError, match=r"unknown agent 'agent_9'.*agents are agent_0, agent_1, agent_2"):
        cfg.algo.check_env(env)

    @dataclasses.dataclass
    class Group:
        agents: tuple

    class OneAgent:
        groups = (Group(("solo",)),)

    with pytest.raises(ConfigError, match="consensus needs at least 2 agents"):
        cfg.algo.check_env(OneAgent())
    with pytest.raises(ConfigError, match="ma_ac mixes"):
        build_config("ma_ac", "mpe/simple_spread", {"algo.consensus": "pdhg"})


# ---- MA-AC's policy traffic (Li et al. 2023, Table 2 and Section 6.4) ----------------------------


def test_policy_params_counted_against_the_formula():
    """3 agents with policies of 5, 7 and 11 scalars, a critic of 13: agent 0 communicates at 2 update steps, agents 1
    and 2 at 3 (a ring of 3 is the complete graph). Every event of agent i pulls the 2 other policies:
    received_i = events_i (23 - P_i), sent_j = (8 - events_j) P_j, added to the scalars of the critic messages."""
    from trustmarl.trust import consensus as C

    counters = C.counters_init(3)
    for active in ([True, True, True], [False, True, True], [True, True, True]):
        counters = C.count_messages(counters, C.complete(3), jnp.asarray(active))
    p, ev = np.array([5, 7, 11]), np.array([2, 3, 3])
    m = f2a2.comm_metrics(counters, {"shared_critic": 13}, 0, p)
    np.testing.assert_array_equal(np.asarray(m["comm/policy_params_scalars_received_per_agent"]), ev * (23 - p))
    np.testing.assert_array_equal(np.asarray(m["comm/policy_params_scalars_sent_per_agent"]), (8 - ev) * p)
    sent = np.asarray(counters.sent) * 13 + (8 - ev) * p
    np.testing.assert_array_equal(np.asarray(m["comm/scalars_sent_per_agent"]), sent)
    assert float(m["comm/scalars_sent_total"]) == sent.sum() == float(m["comm/scalars_received_total"])
    assert float(m["comm/broadcast_scalars_sent_total"]) == (ev * (13 + p)).sum()
    assert "comm/policy_params_scalars_sent_total" not in f2a2.comm_metrics(counters, {"shared_critic": 13}, 0)


def test_ma_ac_sends_its_policies_and_f2a2_coma_does_not():
    """On simple_spread (3 agents, MLP [8] actors on 18 observations, 5 actions: 18*8 + 8 + 8*5 + 5 = 197 scalars each),
    k = 4 complete-graph events: MA-AC sends k n (n - 1) (critic + 197) scalars, F2A2-COMA k n (n - 1) critic."""
    from trustmarl.trust import consensus as C

    k, n = 4, 3
    counters = C.counters_init(n)
    for _ in range(k):
        counters = C.count_messages(counters, C.complete(n), jnp.ones((n,), bool))
    sent = {}
    for name in ("ma_ac", "f2a2_coma"):
        algo = make_algorithm(build_config(name, "mpe/simple_spread", TINY), total_updates=4)
        sizes = algo.policy_sizes(jax.eval_shape(lambda algo=algo: algo.init_params(jax.random.PRNGKey(0))[0]))
        if name == "ma_ac":
            np.testing.assert_array_equal(sizes, [197] * n)
        else:
            assert sizes is None
        sent[name] = float(f2a2.comm_metrics(counters, algo.comm_payload(), 0, sizes)["comm/scalars_sent_total"])
        critic = algo.comm_payload()["shared_critic"]
    assert sent["f2a2_coma"] == k * n * (n - 1) * critic
    assert sent["ma_ac"] == k * n * (n - 1) * (critic + 197)
