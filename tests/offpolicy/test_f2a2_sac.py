"""F2A2-SAC: the reduction to MAAC (float64, plain gradient steps, copies of the shared modules replaced by
their mean), its failure when the whole critic is averaged, the truncated ratios (Li et al. 2023,
Remark 4) on a bandit, the behaviour probabilities stored in the buffer, and the refused settings."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trustmarl.algos import make_algorithm
from trustmarl.experiment.config import build_config
from trustmarl.validation import ConfigError

RNG = np.random.default_rng(5)
TINY = {"algo.hidden_sizes": [8], "algo.num_envs": 2, "algo.rollout_len": 4, "algo.buffer_size": 64,
        "algo.batch_size": 8, "algo.learning_starts": 8, "algo.grad_steps": 2, "algo.critic_hidden": 8,
        "algo.attention_heads": 2, "env.n_agents": 3, "env.max_cycles": 5, "algo.optimizer": "sgd",
        "algo.critic_max_grad_norm": 1e9, "algo.actor_max_grad_norm": 1e9, "algo.tau": 0.1}
REDUCED = {"algo.joint": False, "algo.consensus": "mean", "algo.n_critics": 1, "algo.share": "maac",
           "algo.batch_per_agent": False}  # one batch for all, as MAAC's one critic reads


def _f64(tree):
    return jax.tree.map(lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


@pytest.fixture(scope="module")
def data():
    """One rollout of F2A2-SAC (its transitions carry the behaviour log-probability vectors)."""
    f2 = make_algorithm(build_config("f2a2_sac", "mpe/simple_spread", {**TINY, **REDUCED}), total_updates=4)
    s0 = jax.jit(f2.init)(jax.random.PRNGKey(2))
    s0, traj, _ = jax.jit(f2.rollout)(s0)
    return s0, traj


def _learn(algo, state, traj, updates):
    with jax.enable_x64(True):
        state, traj = _f64(state), _f64(traj)
        learn = jax.jit(algo.learn)
        for _ in range(updates):
            state, metrics = learn(state, traj)
    return state, metrics


def _compare(maac_critic, copies, offsets) -> tuple[float, float]:
    """Largest difference of the shared modules (every copy) and of each agent's own head and encoder (its copy)."""
    shared, own = 0.0, 0.0
    flat = jax.tree_util.tree_flatten_with_path(maac_critic)[0]
    for (path, m), c in zip(flat, jax.tree.leaves(copies)):
        m, c = np.asarray(m), np.asarray(c)
        name = str(path[1].key)
        if name.startswith(("key", "selector", "value", "sa_enc_")):
            shared = max(shared, float(np.abs(c - m[None]).max()))
        else:  # [n_copies, n_g, ...]: agent (offset + k) owns slot k of its copy
            g = int(name.split("_")[-1])
            for k in range(m.shape[0]):
                own = max(own, float(np.abs(c[offsets[g] + k, k] - m[k]).max()))
    return shared, own


@pytest.fixture(scope="module")
def runs(data):
    s0, traj = data
    maac = make_algorithm(build_config("maac", "mpe/simple_spread", TINY), total_updates=4)
    f2 = make_algorithm(build_config("f2a2_sac", "mpe/simple_spread", {**TINY, **REDUCED}), total_updates=4)
    m0 = jax.jit(maac.init_state)(jax.random.PRNGKey(9), s0.last, s0.env_state)._replace(key=s0.key)
    f0 = jax.jit(f2.init_state)(jax.random.PRNGKey(9), s0.last, s0.env_state)._replace(key=s0.key)
    maac_traj = {k: v for k, v in traj.items() if k != "behaviour_logp"}
    return f2, _learn(maac, m0, maac_traj, 5), _learn(f2, f0, traj, 5)


@pytest.mark.slow  # the default suite's 20-minute budget: F2A2-COMA's reduction to COMA (tests/algos/test_coma.py) stays in it
def test_f2a2_sac_reduces_to_maac(runs):
    """Separate objectives with MAAC's estimators, one critic, MAAC's split of the critic with the copies of
    the shared modules replaced by their mean, true policies, plain gradient steps, float64: after 10
    gradient steps F2A2-SAC's actors, target actors and critics equal MAAC's to 1e-10."""
    f2, (ms, mm), (fs, fm) = runs
    assert float(fm["diag/learning"]) == 1.0 and int(fm["diag/grad_steps"]) == 10
    for a, b in ((ms.actor_params, fs.actor_params), (ms.target_actor_params, fs.target_actor_params)):
        assert max(float(np.abs(np.asarray(x) - np.asarray(y)).max()) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))) < 1e-10
    offsets = [int(o) for o in f2.agents.offsets]
    assert max(_compare(ms.critic_params, fs.critic_params[0], offsets)) < 1e-10
    assert max(_compare(ms.target_critic_params, fs.target_critic_params[0], offsets)) < 1e-10
    moved = max(float(np.abs(np.asarray(x) - np.asarray(y)).max())
                for x, y in zip(jax.tree.leaves(ms.critic_params), jax.tree.leaves(ms.target_critic_params)))
    assert moved > 1e-5  # the critics learned (the targets trail them)
    assert float(fm["comm/consensus_events_total"]) == 10 * 3  # one complete-graph event per gradient step


@pytest.mark.slow  # the other half of the reduction above
def test_averaging_the_whole_critic_does_not_reduce_to_maac(data, runs):
    """``share=critic`` averages every agent's head too (each head then moves 1/n as far): the comparison fails."""
    s0, traj = data
    _, (ms, _), _ = runs
    f2 = make_algorithm(build_config("f2a2_sac", "mpe/simple_spread", {**TINY, **REDUCED, "algo.share": "critic"}), total_updates=4)
    f0 = jax.jit(f2.init_state)(jax.random.PRNGKey(9), s0.last, s0.env_state)._replace(key=s0.key)
    fs, _ = _learn(f2, f0, traj, 5)
    assert _compare(ms.critic_params, fs.critic_params[0], [int(o) for o in f2.agents.offsets])[1] > 1e-6


def test_behaviour_log_probabilities_are_stored(data):
    """Every stored transition carries each agent's behaviour log-probability vector; at the taken action it is
    the stored log-probability."""
    _, traj = data
    beh = traj["behaviour_logp"][0]  # [T, E, n, A]
    taken = np.take_along_axis(np.asarray(beh), np.asarray(traj["actions"][0])[..., None], -1)[..., 0]
    np.testing.assert_allclose(taken, np.asarray(traj["logp"]), atol=1e-6)
    np.testing.assert_allclose(np.exp(np.asarray(beh)).sum(-1), 1.0, atol=1e-5)


def test_truncated_ratios_on_a_bandit():
    """One state, 5 actions, exact enumeration (Li et al. 2023, Remark 4): with eps = inf the importance-weighted
    buffer estimate E_pi0[rho dQ] equals the resampled one E_pi[dQ]; truncated at eps = 1 it is biased, so the
    two halves that the paper sums are not two estimates of one expectation."""
    pi, pi0 = RNG.dirichlet(np.ones(5)), RNG.dirichlet(np.ones(5))
    dq = RNG.normal(size=(5, 3))
    for eps, agree in ((np.inf, True), (1.0, False)):
        rho = np.minimum(eps, pi / pi0)
        buffer_half, resampled_half = (pi0 * rho) @ dq, pi @ dq
        if agree:
            np.testing.assert_allclose(buffer_half, resampled_half, atol=1e-12)
        else:
            assert np.abs(buffer_half - resampled_half).max() > 0.01


@pytest.mark.parametrize("key,value,words", [
    ("algo.share", "heads", "share='heads' is not allowed"),
    ("algo.combine", "max", "combine='max' is not allowed"),
    ("algo.n_critics", 3, "n_critics=3 must be 1 or 2"),
    ("algo.ratio_clip", 0.0, "ratio_clip=0.0 must be > 0"),
    ("algo.beta", 0.0, "must be > 0"),
])
def test_bad_settings_are_refused(key, value, words):
    with pytest.raises(ConfigError, match=words):
        build_config("f2a2_sac", "mpe/simple_spread", {key: value})


def test_teammate_model_learns_a_fixed_policy():
    """A fixed stochastic policy softmax(W o) of 3 agents: after cross-entropy training on sampled (o, a)
    pairs, the teammate model's total-variation distance to it on held-out observations is below 0.05."""
    import optax

    from trustmarl.algos import f2a2

    n, d, A = 3, 4, 5
    W = jnp.asarray(RNG.normal(size=(n, d, A)))
    net = f2a2.TeammateModel(A, 64)
    params = jax.vmap(net.init, in_axes=(0, None))(jax.random.split(jax.random.key(0), 2), jnp.zeros((n, d)))
    others = jnp.ones((2, n))
    avail = jnp.ones((n, A), bool)
    true_logp = lambda o: jax.nn.log_softmax(jnp.einsum("bnd,nda->bna", o, W))  # noqa: E731
    tx = optax.adam(3e-3)
    opt = jax.vmap(tx.init)(params)

    @jax.jit
    def step(params, opt, key):
        k_o, k_a = jax.random.split(key)
        o = jax.random.normal(k_o, (256, n, d))
        a = jax.random.categorical(k_a, true_logp(o))
        grads = jax.grad(lambda p: f2a2.moa_loss(f2a2.moa_log_probs(net, p, o, avail), a, others).sum())(params)
        upd, opt = jax.vmap(tx.update)(grads, opt)
        return optax.apply_updates(params, upd), opt

    for k in range(1500):
        params, opt = step(params, opt, jax.random.key(k + 1))
    o = jax.random.normal(jax.random.key(99), (2000, n, d))
    tv = f2a2.moa_tv(f2a2.moa_log_probs(net, params, o, avail), true_logp(o), others)
    assert float(tv.max()) < 0.05, tv


@pytest.mark.slow  # moved out of the default suite to keep it under 20 minutes on 2 cores
def test_f2a2_sac_with_teammate_models_runs_and_logs_their_distance():
    f2 = make_algorithm(build_config("f2a2_sac", "mpe/simple_spread", {**TINY, "algo.moa": True, "algo.moa_hidden": 8}),
                        total_updates=4)
    s = jax.jit(f2.init)(jax.random.PRNGKey(0))
    update = jax.jit(f2.update)
    for _ in range(3):
        s, m = update(s)
    tv = np.asarray(m["diag/moa_tv_per_agent"])
    assert tv.shape == (3,) and np.all((tv > 0) & (tv < 1)) and np.isfinite(float(m["loss/critic"]))
