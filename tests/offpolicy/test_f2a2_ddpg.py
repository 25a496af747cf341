"""F2A2-DDPG and F2A2-TD3 (Li et al. 2023, Props. 4-5) on a hand-built batch, float64:

- the gradients the critic and actor steps hand to their optimisers equal the per-sample formulas of
  Props. 4 and 5 in the reward convention, on one batch for all and (``batch_per_agent``) with copy ``i`` and
  actor ``i`` on agent ``i``'s own batch, assembled by hand (plain NumPy networks, derivatives of Q by
  central differences): critic ``(-alpha1 rho_f + 2 alpha2 delta_1) dQ_1(a0) + (-alpha1 + 2 alpha2 rho_b
  delta^_1) dQ_1(a^)``, critic 2 without an alpha1 term, actor ``((-alpha1 + 2 alpha2 rho_b delta^_1) d_a Q_1
  + 2 alpha2 rho_b delta^_2 d_a Q_2) d pi~`` through the agent's own relaxed action;
- the reduction: w/o-JOINT, copies replaced by their mean, the true policies, plain gradient steps on one
  batch: F2A2-DDPG's parameters equal ``maddpg critic=shared``'s to 1e-10;
- each agent's actor steps counted against its own delay drawn from {2, 3};
- refused settings.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from refnets import directional, dot, mlp, random_direction, tiny_env, to_numpy

from trustmarl.algos import make_algorithm
from trustmarl.algos.agents import opt_init
from trustmarl.algos.off_policy.engine import OffPolicyState
from trustmarl.envs.base import Discrete
from trustmarl.experiment.config import build_config
from trustmarl.networks import MASKED_LOGIT
from trustmarl.validation import ConfigError

B, N, OBS, A = 5, 3, 3, 4
A1, A2, TAU, REG = 0.7, 1.3, 0.6, 0.02
CFG = {"algo.hidden_sizes": [8], "algo.num_envs": 2, "algo.rollout_len": 4, "algo.buffer_size": 64, "algo.batch_size": B,
       "algo.learning_starts": 8, "algo.gumbel_temperature": TAU, "algo.policy_reg": REG, "algo.actor_others": "current"}
ONE = {"algo.batch_per_agent": False}  # one batch for all (what MADDPG's shared critic reads)
F2A2 = {"algo.alpha1": A1, "algo.alpha2": A2, "algo.joint": True}  # the paper's joint objective (not the default)
SGD = {"algo.optimizer": "sgd", "algo.critic_max_grad_norm": 1e9, "algo.actor_max_grad_norm": 1e9, "algo.tau": 0.2,
       "algo.critic_lr": 0.05, "algo.actor_lr": 0.05}


def f64(tree):
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float64) if jnp.issubdtype(jnp.result_type(x), jnp.floating) else x, tree)


def make(name, extra=None):
    extra = {**(F2A2 if name.startswith("f2a2") else {}), **(extra or {})}
    return make_algorithm(build_config(name, "matrix/custom", {**CFG, **extra}), total_updates=10,
                          env=tiny_env(N, OBS, Discrete(A)))


def light_state(algo, key):
    """What a gradient step reads of the training state (networks, optimisers, counters, the algorithm's extra),
    without the environment and the buffer, whose initialisation costs more to compile than the step."""
    actors, critics = algo.init_networks(key)
    return OffPolicyState(
        actor_params=actors, critic_params=critics, target_actor_params=actors, target_critic_params=critics,
        actor_opt=tuple(opt_init(algo.actor_tx, p, algo.agents.stacked(g)) for g, p in enumerate(actors)),
        critic_opt=opt_init(algo.critic_tx, critics, algo.critic_stacked()), buffer=None, grad_steps=jnp.int32(0),
        env_state=None, last=None, episodes=None, key=key, update=jnp.int32(0), env_steps=jnp.int32(0),
        extra=algo.init_extra(jax.random.fold_in(key, 2), actors, critics))


def batch_of(rng):
    avail = np.ones((B, N, A), bool)
    avail[1, 2, 1] = avail[3, 0, 3] = False  # masked actions: never drawn, probability 0
    beh = np.log(np.where(avail, rng.dirichlet(np.ones(A), (B, N)), 0.0) + 1e-300)
    beh = beh - np.log(np.exp(beh).sum(-1, keepdims=True))
    actions = np.array([[rng.choice(np.flatnonzero(avail[b, i])) for i in range(N)] for b in range(B)])
    return {
        "obs": (rng.standard_normal((B, N, OBS)),), "next_obs": (rng.standard_normal((B, N, OBS)),),
        "avail": (avail,), "next_avail": (avail,), "actions": (actions.astype(np.int32),),
        "logp": np.take_along_axis(beh, actions[..., None], -1)[..., 0], "behaviour_logp": (beh,),
        "reward": rng.normal(0.5, 1.0, (B, N)), "terminated": np.array([False, True, False, False, False]),
        "truncated": np.zeros(B, bool), "active": np.ones((B, N), bool), "y": rng.normal(0.0, 1.0, (N, B)),
    }


def noisy(tree, rng, s):
    return jax.tree.map(lambda x: x + s * rng.standard_normal(x.shape), tree)


@pytest.fixture(scope="module", params=[("f2a2_ddpg", False), ("f2a2_td3", False), ("f2a2_ddpg", True), ("f2a2_td3", True)],
                ids=["ddpg-one-batch", "td3-one-batch", "ddpg-own-batches", "td3-own-batches"])
def steps(request):
    """One critic step and one actor step (float64), with the gradients they hand to the optimisers; on one batch, or
    (``batch_per_agent``) on N different batches ``[N, B, ...]``, agent i's the i-th."""
    name, per = request.param
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        algo = make(name, None if per else ONE)
        state = f64(light_state(algo, jax.random.PRNGKey(0)))
        actors, critics = noisy(to_numpy(state.actor_params), rng, 0.8), noisy(to_numpy(state.critic_params), rng, 0.3)
        actors, critics = f64(actors), f64(critics)  # copies that differ: each agent must read its own
        state = state._replace(actor_params=actors, critic_params=critics,
                               extra=f64(algo.init_extra(jax.random.PRNGKey(1), actors, critics)))  # views = copies, duals 0
        raw = batch_of(rng)
        if per:  # every agent its own batch; y [N, B]: agent i's targets at its batch
            raw = jax.tree.map(lambda *xs: np.stack(xs), raw, *(batch_of(rng) for _ in range(N - 1)))
            raw["y"] = rng.normal(0.0, 1.0, (N, B))
            assert not np.array_equal(raw["obs"][0][0], raw["obs"][0][1])
        batch = f64(jax.tree.map(jnp.asarray, raw))
        handed = {}
        apply_critic, apply_actors = algo.apply_critic, algo.apply_actors

        def record(name, tree):
            jax.debug.callback(lambda t: handed.__setitem__(name, to_numpy(t)), tree)

        algo.apply_critic = lambda p, g, o: (record("critic", g), apply_critic(p, g, o))[1]
        algo.apply_actors = lambda p, g, o: (record("actors", g), apply_actors(p, g, o))[1]
        kc, ka = jax.random.PRNGKey(11), jax.random.PRNGKey(12)
        jax.block_until_ready(jax.jit(algo.critic_step)(state, batch, kc))
        jax.block_until_ready(jax.jit(algo.actor_step)(state, batch, ka))
        shape = ((N,) if per else ()) + (B, N, A)
        g_c = np.asarray(jax.random.gumbel(jax.random.fold_in(kc, 0), shape, jnp.float64))
        g_a = np.asarray(jax.random.gumbel(jax.random.fold_in(ka, 0), shape, jnp.float64))
    return {"name": name, "K": 2 if name == "f2a2_td3" else 1, "state": state, "batch": raw, "handed": handed,
            "g_c": g_c, "g_a": g_a, "per": per}


def own_batch(s, i, gumbel):
    """Agent ``i``'s batch and the Gumbel noise drawn at it (one batch: the batch for every agent)."""
    if not s["per"]:
        return s["batch"], gumbel
    return jax.tree.map(lambda x: x[i], {k: v for k, v in s["batch"].items() if k != "y"}), gumbel[i]


def logits_of(actor, obs, avail):
    z = np.stack([np.stack([mlp(jax.tree.map(lambda x, i=i: x[i], actor["params"]), obs[b, i], 1) for i in range(N)])
                  for b in range(len(obs))])
    return np.where(avail, z, MASKED_LOGIT)


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def q_of(critics, k, i, obs_b, act_b):
    """Copy ``i``'s critic ``k`` on ``[x, onehot(i)]``, ``x`` = (joint observation, joint action vector)."""
    x = np.concatenate([obs_b.reshape(-1), act_b.reshape(-1), np.eye(N)[i]])
    return mlp(jax.tree.map(lambda p: p[k, i], critics["params"]), x, 1)[0]


def pieces(b, actor, gumbel):
    """Resampled actions a^ (own: Gumbel-max of the masked logits; others: argmax of theirs), ratios, soft samples."""
    obs, avail, a0 = b["obs"][0], b["avail"][0], b["actions"][0]
    z = logits_of(actor, obs, avail)
    pi = softmax(z)
    a_hat, greedy = np.argmax(z + gumbel, -1), np.argmax(z, -1)
    take = lambda x, a: np.take_along_axis(x, a[..., None], -1)[..., 0]  # noqa: E731
    rho_f = np.minimum(1.0, take(pi, a0) / np.exp(b["logp"]))
    rho_b = np.minimum(1.0, np.exp(take(b["behaviour_logp"][0], a_hat)) / take(pi, a_hat))
    assert avail[np.arange(B)[:, None], np.arange(N)[None], a_hat].all()  # masked actions are never drawn
    return z, a_hat, greedy, rho_f, rho_b


def joint_with(i, own_vec, greedy):
    """Observer ``i``'s joint action: the others' greedy actions, its own slot ``own_vec``."""
    act = np.eye(A)[greedy].copy()
    act[i] = own_vec
    return act


def test_critic_gradient_is_the_per_sample_formula(steps):
    s, K = steps, steps["K"]
    y = s["batch"]["y"]
    actor, critics = to_numpy(s["state"].actor_params[0]), to_numpy(s["state"].critic_params)
    w = {}  # per (k, i, b): the fixed weights of dQ_k(a0) and dQ_k(a^) of Props. 4-5 (reward convention)
    for i in range(N):  # copy i on agent i's batch
        b, g = own_batch(s, i, s["g_c"])
        _, a_hat, greedy, rho_f, rho_b = pieces(b, actor, g)
        obs, a0 = b["obs"][0], b["actions"][0]
        for t in range(B):
            x0, xh = np.eye(A)[a0[t]], joint_with(i, np.eye(A)[a_hat[t, i]], greedy[t])
            for k in range(K):
                d0, dh = q_of(critics, k, i, obs[t], x0) - y[i, t], q_of(critics, k, i, obs[t], xh) - y[i, t]
                a1 = A1 if k == 0 else 0.0  # critic 2 has no alpha1 term
                w[k, i, t] = ((-a1 * rho_f[t, i] + 2 * A2 * d0) / B, (-a1 + 2 * A2 * rho_b[t, i] * dh) / B, x0, xh, obs[t])

    def formula(c):
        return sum(w0 * q_of(c, k, i, o, x0) + wh * q_of(c, k, i, o, xh) for (k, i, t), (w0, wh, x0, xh, o) in w.items())

    rng = np.random.default_rng(1)
    for _ in range(3):
        d = random_direction(critics, rng)
        # own batches: ~1e-7 absolute deviations under the enable_x64 context, none with x64 on globally (float32 compilations
        # of earlier tests reused, probably: tests/offpolicy/test_f2a2_batches.py saw the same)
        np.testing.assert_allclose(dot(s["handed"]["critic"], d), directional(formula, critics, d), rtol=1e-5 if s["per"] else 1e-6)


def test_actor_gradient_is_the_per_sample_formula(steps):
    s, K = steps, steps["K"]
    y = s["batch"]["y"]
    actor, critics = to_numpy(s["state"].actor_params[0]), to_numpy(s["state"].critic_params)
    c, views = np.zeros((K, B, N)), []
    for i in range(N):  # actor i on agent i's batch
        b, g = own_batch(s, i, s["g_a"])
        z0, a_hat, greedy, _, rho_b = pieces(b, actor, g)
        obs, avail = b["obs"][0], b["avail"][0]
        views.append((obs, avail, g, a_hat, greedy, softmax((z0 + g) / TAU)))
        for t in range(B):
            xh = joint_with(i, np.eye(A)[a_hat[t, i]], greedy[t])
            for k in range(K):
                dh = q_of(critics, k, i, obs[t], xh) - y[i, t]
                c[k, t, i] = ((-A1 if k == 0 else 0.0) + 2 * A2 * rho_b[t, i] * dh) / B

    def formula(p):
        total = 0.0
        for i, (obs, avail, g, a_hat, greedy, soft0) in enumerate(views):
            z = logits_of(p, obs, avail)
            own = np.eye(A)[a_hat] + softmax((z + g) / TAU) - soft0  # straight-through: forward one-hot
            total = total + REG * np.mean(raw_logits(p, obs)[:, i] ** 2)  # MADDPG's policy_reg mean(logits^2)
            total = total + sum(c[k, t, i] * q_of(critics, k, i, obs[t], joint_with(i, own[t, i], greedy[t]))
                                for k in range(K) for t in range(B))
        return total

    rng = np.random.default_rng(2)
    for _ in range(3):
        d = random_direction(actor, rng)
        np.testing.assert_allclose(dot(s["handed"]["actors"][0], d), directional(formula, actor, d), rtol=1e-5 if s["per"] else 1e-6)


def raw_logits(actor, obs):
    return np.stack([np.stack([mlp(jax.tree.map(lambda x, i=i: x[i], actor["params"]), obs[t, i], 1) for i in range(N)])
                     for t in range(len(obs))])


def test_reduces_to_maddpg_with_the_shared_critic():
    """w/o-JOINT, copies replaced by their mean, the true policies, plain gradient steps, one batch, float64: after 4
    gradient steps F2A2-DDPG's actors, critic copies and targets equal ``maddpg critic=shared``'s to 1e-10."""
    rng = np.random.default_rng(3)
    with jax.enable_x64(True):
        f2 = make("f2a2_ddpg", {**SGD, **ONE, "algo.joint": False, "algo.consensus": "mean", "algo.alpha1": 1.0, "algo.alpha2": 1.0})
        md = make("maddpg", {**SGD, "algo.critic": "shared"})
        fs, ms = f64(light_state(f2, jax.random.PRNGKey(4))), f64(light_state(md, jax.random.PRNGKey(4)))
        m0 = ms
        batch = f64(jax.tree.map(jnp.asarray, batch_of(rng)))
        f_step, m_step = jax.jit(f2.train_step), jax.jit(md.train_step)
        for t in range(4):
            fs, fm = f_step(fs, batch, jax.random.PRNGKey(20 + t))
            ms, _ = m_step(ms, batch, jax.random.PRNGKey(20 + t))
            fs, ms = fs._replace(grad_steps=fs.grad_steps + 1), ms._replace(grad_steps=ms.grad_steps + 1)
    gap = lambda a, b: max(float(np.abs(np.asarray(x) - np.asarray(y)).max()) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))  # noqa: E731
    assert gap(fs.actor_params, ms.actor_params) < 1e-10 and gap(fs.target_actor_params, ms.target_actor_params) < 1e-10
    for i in range(N):  # every copy equals the shared critic
        pick = lambda tree, i=i: jax.tree.map(lambda x: x[:, i], tree)  # noqa: E731
        assert gap(pick(fs.critic_params), pick(ms.critic_params, 0)) < 1e-10
        assert gap(pick(fs.target_critic_params), pick(ms.target_critic_params, 0)) < 1e-10
    assert gap(ms.critic_params, ms.target_critic_params) > 1e-4 and gap(ms.actor_params, m0.actor_params) > 1e-4
    assert np.isfinite(float(fm["loss/critic"]))


def test_each_agent_steps_its_actor_against_its_own_delay():
    """F2A2-TD3: delays drawn once per seed from {2, 3}; over gradient steps 0..7 agent i's actor takes
    #{t : t % d_i == 0} Adam steps, and between its steps its actor and target actor stay."""
    algo = make("f2a2_td3", ONE)
    state = light_state(algo, jax.random.PRNGKey(0))
    draw = jax.jit(jax.vmap(lambda k: algo.init_extra(k, state.actor_params, state.critic_params)["delays"]))
    delays = np.asarray(draw(jax.random.split(jax.random.PRNGKey(1), 8)))  # 8 seeds
    assert set(delays.ravel().tolist()) == {2, 3}
    d = next(x for x in delays if len(set(x.tolist())) == 2)
    state = state._replace(extra={**state.extra, "delays": jnp.asarray(d)})
    batch = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32) if x.dtype == np.float64 else jnp.asarray(x), batch_of(np.random.default_rng(5)))
    step = jax.jit(algo.train_step)
    for t in range(8):
        new, m = step(state, batch, jax.random.PRNGKey(t))
        new = new._replace(grad_steps=new.grad_steps + 1)
        due = t % d == 0
        moved = [not np.array_equal(np.asarray(x)[i], np.asarray(y)[i]) for i in range(N)
                 for x, y in [(jax.tree.leaves(new.actor_params)[0], jax.tree.leaves(state.actor_params)[0])]]
        moved_t = [not np.array_equal(np.asarray(jax.tree.leaves(new.target_actor_params)[0])[i],
                                      np.asarray(jax.tree.leaves(state.target_actor_params)[0])[i]) for i in range(N)]
        assert moved == due.tolist() and moved_t == due.tolist(), (t, d)
        assert np.array_equal(np.isnan(np.asarray(m["diag/actor_loss_per_agent"])), ~due)
        state = new
    counts = [x for path, x in jax.tree_util.tree_flatten_with_path(state.actor_opt)[0] if "count" in jax.tree_util.keystr(path)]
    np.testing.assert_array_equal(np.asarray(counts[0]), [sum(t % di == 0 for t in range(8)) for di in d])
    np.testing.assert_array_equal(np.asarray(state.extra["delays"]), d)  # drawn once


@pytest.mark.parametrize("eps", [np.inf, 1.0])
def test_the_ratios_reweight_one_estimate_into_the_other_on_a_bandit(eps):
    """One state, every action enumerated (Li et al. 2023, Remark 4) with the algorithm's own ratios: untruncated,
    ``E_pi0[rho_f g] = E_pi[g]`` and ``E_pi[rho_b h] = E_pi0[h]`` (the two halves of Prop. 4's critic gradient estimate
    the same expectations); truncated at eps = 1 they do not (the bias of the paper's setting)."""
    algo = make("f2a2_ddpg", {**ONE, "algo.ratio_clip": eps})
    rng = np.random.default_rng(6)
    pi, pi0 = rng.dirichlet(np.ones(A), N), rng.dirichlet(np.ones(A), N)  # [N, A]
    acts = np.broadcast_to(np.arange(A)[:, None], (A, N)).astype(np.int32)  # sample b: every agent takes action b
    logp = (jnp.asarray(np.broadcast_to(np.log(pi), (A, N, A))),)
    batch = {"actions": (jnp.asarray(acts),), "logp": jnp.asarray(np.log(pi0).T),
             "behaviour_logp": (jnp.asarray(np.broadcast_to(np.log(pi0), (A, N, A))),)}
    rho_f, rho_b = (np.asarray(r, np.float64) for r in algo.ratios(logp, batch, (jnp.asarray(acts),)))  # [A, N]
    g, h = rng.normal(size=A), rng.normal(size=A)
    forward, backward = (pi0.T * rho_f).T @ g, (pi.T * rho_b).T @ h
    if eps == np.inf:
        np.testing.assert_allclose(forward, pi @ g, atol=1e-5)
        np.testing.assert_allclose(backward, pi0 @ h, atol=1e-5)
    else:
        assert np.abs(forward - pi @ g).max() > 0.01 or np.abs(backward - pi0 @ h).max() > 0.01


@pytest.mark.parametrize("algo,key,value,words", [
    ("f2a2_ddpg", "algo.critic", "per_agent", "only 'shared' is allowed"),
    ("f2a2_ddpg", "algo.policy_delays", [], "must be a non-empty list of integers >= 1"),
    ("f2a2_td3", "algo.policy_delays", [2, 0], "must be a non-empty list of integers >= 1"),
    ("f2a2_ddpg", "algo.policy_delay", 2, "set algo.policy_delays"),
    ("f2a2_td3", "algo.grad_steps", 2, "has a delay above algo.grad_steps=2"),
    ("matd3", "algo.grad_steps", 1, "policy_delay=2 is more than algo.grad_steps=1"),
    ("f2a2_td3", "algo.target_epsilon", 1.5, "must be in \\[0, 1\\]"),
    ("f2a2_td3", "algo.twin_critics", False, "needs twin critics"),
    ("f2a2_ddpg", "algo.combine", "max", "combine='max' is not allowed"),
    ("f2a2_ddpg", "algo.ratio_clip", 0.0, "ratio_clip=0.0 must be > 0"),
    ("f2a2_ddpg", "algo.beta", 0.0, "must be > 0"),
    ("f2a2_ddpg", "algo.penalty", "adam", "penalty='adam' is not allowed; choose one of proximal, gradient"),
    ("f2a2_ddpg", "algo.penalty_lr", 0.0, "penalty_lr=0.0 must be a finite number > 0"),
    ("f2a2_ddpg", "algo.share_params", True, "policies are individual"),
    ("maddpg", "algo.critic", "both", "critic='both' is not allowed"),
])
def test_bad_settings_are_refused(algo, key, value, words):
    with pytest.raises(ConfigError, match=words):
        build_config(algo, "mpe/simple_spread", {key: value})


@pytest.mark.parametrize("argv, needle", [
    (["train", "f2a2_td3", "mpe/rover_tower", "algo.policy_delays=[2,0]"], "algo.policy_delays=[2, 0] must be"),
    (["train", "f2a2_ddpg", "mpe/rover_tower", "algo.critic=per_agent"], "algo.critic='per_agent'"),
    (["train", "maddpg", "mpe/simple_spread", "algo.critic=both"], "algo.critic='both' is not allowed"),
])
def test_bad_keys_on_the_command_line_exit_2_in_one_line(capsys, monkeypatch, tmp_path, argv, needle):
    from trustmarl.experiment import cli, runner

    monkeypatch.setattr(runner, "build_algorithm", lambda *a, **k: pytest.fail("built despite bad input"))
    monkeypatch.chdir(tmp_path)
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1 and needle in err, err


@pytest.mark.slow  # a full update with teammate models: compile-heavy, kept out of the default suite
def test_f2a2_td3_with_teammate_models_runs_and_logs_their_distance():
    algo = make_algorithm(build_config("f2a2_td3", "mpe/simple_spread", {
        "algo.hidden_sizes": [8], "algo.num_envs": 2, "algo.rollout_len": 4, "algo.buffer_size": 64, "algo.batch_size": 8,
        "algo.learning_starts": 8, "algo.moa": True, "algo.moa_hidden": 8, "env.n_agents": 3, "env.max_cycles": 5}), total_updates=4)
    s = jax.jit(algo.init)(jax.random.PRNGKey(0))
    update = jax.jit(algo.update)
    for _ in range(3):
        s, m = update(s)
    tv = np.asarray(m["diag/moa_tv_per_agent"])
    assert tv.shape == (3,) and np.all((tv > 0) & (tv < 1)) and np.isfinite(float(m["loss/critic"]))
    assert float(m["comm/consensus_events_total"]) == 3 * 4 * 3  # 3 updates x 4 gradient steps x 3 agents
