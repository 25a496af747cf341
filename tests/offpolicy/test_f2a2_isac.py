"""F2A2-ISAC (Li et al. 2023, Section 6.3): the soft target, critic and actor losses of discrete SAC (Haarnoja et al. 2018,
eqs. 3, 5, 6; Christodoulou 2019, eqs. 10, 12) against a plain NumPy loop on a hand-built batch with a terminal
step, a truncated one (bootstrapped), an agent that is not alive and unavailable actions, with one shared network
(``copies=one``) and with a copy per agent (``copies=per_agent``); per-agent copies under ``consensus=mean`` with plain
gradient steps take the shared network's step; the refused settings."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from refnets import log_softmax, mlp, to_numpy
from trustmarl.algos import make_algorithm
from trustmarl.algos.agents import opt_init
from trustmarl.algos.f2a2 import copies_of
from trustmarl.algos.off_policy.engine import OffPolicyState
from trustmarl.experiment.config import build_config
from trustmarl.validation import ConfigError

TINY = {"algo.hidden_sizes": [8], "algo.num_envs": 2, "algo.rollout_len": 4, "algo.buffer_size": 64,
        "algo.batch_size": 8, "algo.learning_starts": 8, "env.n_agents": 3}
B, N, A, D = 4, 3, 5, 18
ALPHA, GAMMA = 0.08, 0.95


def _batch(rng):
    avail = rng.random((B, N, A)) < 0.8
    avail[..., 0] = True
    next_avail = rng.random((B, N, A)) < 0.7
    next_avail[..., 1] = True
    actions = np.array([[rng.choice(np.flatnonzero(avail[b, i])) for i in range(N)] for b in range(B)], np.int32)
    batch = dict(
        obs=(rng.normal(size=(B, N, D)),), avail=(avail,), actions=(actions,), reward=rng.normal(size=(B, N)),
        next_obs=(rng.normal(size=(B, N, D)),), next_avail=(next_avail,),
        terminated=np.array([False, True, False, False]), truncated=np.array([False, False, True, False]),
        active=np.array([[True] * N, [True] * N, [True, False, True], [True] * N]),
    )
    return batch


def _build(copies: str, **extra):
    return make_algorithm(build_config("f2a2_isac", "mpe/simple_spread", {**TINY, "algo.copies": copies, **extra}),
                          total_updates=4)


def _state(algo, actors, critics) -> OffPolicyState:
    """The fields ``train_step`` reads (no env, no buffer)."""
    ag = algo.agents
    return OffPolicyState(
        actor_params=actors, critic_params=critics, target_actor_params=actors, target_critic_params=critics,
        actor_opt=tuple(opt_init(algo.actor_tx, p, ag.stacked(g)) for g, p in enumerate(actors)),
        critic_opt=opt_init(algo.critic_tx, critics, algo.critic_stacked()), buffer=None,
        grad_steps=jnp.zeros((), jnp.int32), env_state=None, last=None, episodes=None, key=None, update=None,
        env_steps=None, extra=algo.init_extra(jax.random.PRNGKey(5), actors, critics))


@pytest.fixture(scope="module", params=["one", "per_agent"])
def setup(request):
    """Networks with random weights (per_agent: every agent's copy perturbed apart) and a hand-built batch."""
    algo = _build(request.param)
    rng = np.random.default_rng(3)
    with jax.enable_x64(True):
        actors, critics = algo.init_networks(jax.random.PRNGKey(0))
        noisy = lambda t, s: jax.tree.map(lambda x: jnp.asarray(x, jnp.float64) + s * rng.normal(size=x.shape), t)  # noqa: E731
        actors, critics, targets = noisy(actors, 0.5), noisy(critics, 0.5), noisy(critics, 0.5)
    return algo, actors, critics, targets, _batch(rng)


def _ref_pi(actor, o, av):
    """log pi over the available actions only (-inf elsewhere)."""
    z = mlp(actor, o, 1)
    lp = np.full(A, -np.inf)
    lp[av] = log_softmax(z[av])
    return lp


def _ref_soft_value(lp, q, av):
    return sum(np.exp(lp[a]) * (q[a] - ALPHA * lp[a]) for a in range(A) if av[a])


def _reference(actors, critics, targets, batch, per_agent: bool):
    """``(y [B, N], critic loss, actor loss)`` as a loop over samples and agents: means over the alive samples of
    all agents (one network), or per agent and summed over the agents (per_agent: agent i's copy on its samples)."""
    take = lambda t, *idx: to_numpy(jax.tree.map(lambda x: x[idx], t))["params"]  # noqa: E731
    y = np.zeros((B, N))
    c_sum, a_sum, count = np.zeros(N), np.zeros(N), np.zeros(N)
    for i in range(N):
        actor = take(actors[0], i) if per_agent else to_numpy(actors[0])["params"]
        qs = [take(critics[0], *((i, k) if per_agent else (k,))) for k in range(2)]
        qt = [take(targets[0], *((i, k) if per_agent else (k,))) for k in range(2)]
        for b in range(B):
            o, o2 = batch["obs"][0][b, i], batch["next_obs"][0][b, i]
            av, av2 = batch["avail"][0][b, i], batch["next_avail"][0][b, i]
            q_next = np.minimum(mlp(qt[0], o2, 1), mlp(qt[1], o2, 1))
            v = _ref_soft_value(_ref_pi(actor, o2, av2), q_next, av2)  # Christodoulou 2019, eq. 10
            y[b, i] = batch["reward"][b, i] + GAMMA * (0.0 if batch["terminated"][b] else 1.0) * v  # Haarnoja 2018, eq. 6
            if not batch["active"][b, i]:
                continue
            count[i] += 1
            a = batch["actions"][0][b, i]
            c_sum[i] += sum(0.5 * (mlp(q, o, 1)[a] - y[b, i]) ** 2 for q in qs)  # Haarnoja 2018, eq. 5
            q_min = np.minimum(mlp(qs[0], o, 1), mlp(qs[1], o, 1))
            a_sum[i] += -_ref_soft_value(_ref_pi(actor, o, av), q_min, av)  # Christodoulou 2019, eq. 12
    if per_agent:
        return y, float(np.sum(c_sum / count)), float(np.sum(a_sum / count))
    return y, c_sum.sum() / count.sum(), a_sum.sum() / count.sum()


def test_soft_target_and_critic_loss_match_numpy(setup):
    algo, actors, critics, targets, batch = setup
    y_ref, c_ref, _ = _reference(actors, critics, targets, batch, algo.per_agent)
    with jax.enable_x64(True):
        jb = jax.tree.map(jnp.asarray, batch)
        y = np.asarray(algo.soft_target(actors, targets, jb))
        c_loss, _ = algo.critic_loss(critics, jb, jnp.asarray(y))
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-6)  # float64 inputs; a float32-level rounding remains in the library path
    assert abs(float(c_loss) - c_ref) < 1e-6


def test_actor_loss_matches_numpy(setup):
    algo, actors, critics, targets, batch = setup
    _, _, a_ref = _reference(actors, critics, targets, batch, algo.per_agent)
    with jax.enable_x64(True):
        a_loss, _ = algo.actor_loss(actors, critics, jax.tree.map(jnp.asarray, batch))
    assert abs(float(a_loss) - a_ref) < 1e-6


def test_per_agent_copies_under_mean_consensus_take_the_shared_step():
    """copies=per_agent with consensus=mean and plain gradient steps, every copy starting from the shared networks and
    every agent alive: after one gradient step every copy equals the shared network after its step (the mean of the
    agents' gradients of their own means is the gradient of the mean over all samples)."""
    sgd = {"algo.optimizer": "sgd", "algo.actor_max_grad_norm": 1e9, "algo.critic_max_grad_norm": 1e9,
           "algo.actor_lr": 0.1, "algo.critic_lr": 0.1}
    one, per = _build("one", **sgd), _build("per_agent", **{**sgd, "algo.consensus": "mean"})
    rng = np.random.default_rng(4)
    batch = _batch(rng)
    batch["active"] = np.ones((B, N), bool)
    with jax.enable_x64(True):
        actors, critics = one.init_networks(jax.random.PRNGKey(1))
        actors, critics = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64) + 0.3 * rng.normal(size=x.shape), (actors, critics))
        jb = jax.tree.map(jnp.asarray, batch)
        out = []
        for algo, (a, c) in ((one, (actors, critics)), (per, jax.tree.map(lambda x: copies_of(x, N), (actors, critics)))):
            state = _state(algo, a, c)
            out.append(jax.jit(algo.train_step)(state, jb, jax.random.PRNGKey(2))[0])
    s1, sn = out
    moved = max(float(np.abs(np.asarray(x) - np.asarray(y)).max()) for x, y in zip(jax.tree.leaves(s1.actor_params), jax.tree.leaves(actors)))
    assert moved > 1e-3  # the step did something
    for new1, newn in ((s1.actor_params, sn.actor_params), (s1.critic_params, sn.critic_params),
                       (s1.target_critic_params, sn.target_critic_params)):
        for x, xs in zip(jax.tree.leaves(new1), jax.tree.leaves(newn)):
            for i in range(N):
                np.testing.assert_allclose(np.asarray(xs[i]), np.asarray(x), rtol=0, atol=1e-6)


def test_per_agent_pdhg_adds_the_dual_to_the_critic_gradient():
    """copies=per_agent under PDHG: the copy's gradient gets lambda_i + beta (w~_i - v_i) (Li et al. 2023, eq. 5.4a).
    With views equal to the copies and plain gradient steps, a dual lambda moves every critic copy by -lr lambda."""
    lr = 0.1
    algo = _build("per_agent", **{"algo.optimizer": "sgd", "algo.penalty": "gradient", "algo.actor_max_grad_norm": 1e9,
                                  "algo.critic_max_grad_norm": 1e9, "algo.critic_lr": lr})
    rng = np.random.default_rng(6)
    with jax.enable_x64(True):
        state = _state(algo, *jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), algo.init_networks(jax.random.PRNGKey(0))))
        jb = jax.tree.map(jnp.asarray, _batch(rng))
        cons = state.extra["consensus"]
        lam = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape)), cons.dual)
        step = jax.jit(algo.train_step)
        outs = []
        for dual in (jax.tree.map(jnp.zeros_like, lam), lam):
            cons_i = cons._replace(view=(state.actor_params, state.critic_params), dual=dual)
            outs.append(step(state._replace(extra={**state.extra, "consensus": cons_i}), jb, jax.random.PRNGKey(2))[0])
    for x0, x1, l in zip(jax.tree.leaves(outs[0].critic_params), jax.tree.leaves(outs[1].critic_params), jax.tree.leaves(lam[1])):
        np.testing.assert_allclose(np.asarray(x1) - np.asarray(x0), -lr * np.asarray(l), rtol=0, atol=1e-6)


@pytest.mark.parametrize("key,value,message", [
    ("algo.consensus", "bogus", "algo.consensus='bogus' is not allowed"),
    ("algo.copies", "some", "algo.copies='some' is not allowed; choose one of one, per_agent"),
    ("algo.share_params", False, "algo.share_params is not used by f2a2_isac: F2A2-ISAC always shares"),
    ("algo.n_critics", 3, "algo.n_critics=3 must be 1 or 2"),
])
def test_refused_settings(key, value, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        build_config("f2a2_isac", "mpe/simple_spread", {**TINY, "algo.copies": "per_agent", key: value})
