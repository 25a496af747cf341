"""F2A2-ISAC (Li et al. 2023, Section 6.3): the soft target, critic and actor losses of discrete SAC (Haarnoja et al. 2018,
eqs. 3, 5, 6; Christodoulou 2019, eqs. 10, 12) against a plain NumPy loop on a hand-built batch with a terminal
step, a truncated one (bootstrapped), an agent that is not alive and unavailable actions; the refused settings."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from refnets import log_softmax, mlp, to_numpy
from trustmarl.algos import make_algorithm
from trustmarl.experiment.config import build_config
from trustmarl.validation import ConfigError

TINY = {"algo.hidden_sizes": [8], "algo.num_envs": 2, "algo.rollout_len": 4, "algo.buffer_size": 64,
        "algo.batch_size": 8, "algo.learning_starts": 8, "env.n_agents": 3}
B, N, A, D = 4, 3, 5, 18
ALPHA, GAMMA = 0.08, 0.95


@pytest.fixture(scope="module")
def setup():
    algo = make_algorithm(build_config("f2a2_isac", "mpe/simple_spread", TINY), total_updates=4)
    rng = np.random.default_rng(3)
    with jax.enable_x64(True):
        actors, critics = algo.init_networks(jax.random.PRNGKey(0))
        noisy = lambda t, s: jax.tree.map(lambda x: jnp.asarray(x, jnp.float64) + s * rng.normal(size=x.shape), t)  # noqa: E731
        actors, critics, targets = noisy(actors, 0.5), noisy(critics, 0.5), noisy(critics, 0.5)
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
    return algo, actors, critics, targets, batch


def _ref_pi(actor, o, av):
    """log pi over the available actions only (-inf elsewhere)."""
    z = mlp(actor, o, 1)
    lp = np.full(A, -np.inf)
    lp[av] = log_softmax(z[av])
    return lp


def _ref_soft_value(lp, q, av):
    return sum(np.exp(lp[a]) * (q[a] - ALPHA * lp[a]) for a in range(A) if av[a])


def _reference(actors, critics, targets, batch):
    """``(y [B, N], critic loss, actor loss)`` as a loop over samples and agents."""
    actor = to_numpy(actors[0])["params"]
    qs = [to_numpy(jax.tree.map(lambda x, k=k: x[k], critics[0]))["params"] for k in range(2)]
    qt = [to_numpy(jax.tree.map(lambda x, k=k: x[k], targets[0]))["params"] for k in range(2)]
    y = np.zeros((B, N))
    c_loss = a_loss = 0.0
    count = 0
    for b in range(B):
        for i in range(N):
            o, o2 = batch["obs"][0][b, i], batch["next_obs"][0][b, i]
            av, av2 = batch["avail"][0][b, i], batch["next_avail"][0][b, i]
            q_next = np.minimum(mlp(qt[0], o2, 1), mlp(qt[1], o2, 1))
            v = _ref_soft_value(_ref_pi(actor, o2, av2), q_next, av2)  # Christodoulou 2019, eq. 10
            y[b, i] = batch["reward"][b, i] + GAMMA * (0.0 if batch["terminated"][b] else 1.0) * v  # Haarnoja 2018, eq. 6
            if not batch["active"][b, i]:
                continue
            count += 1
            a = batch["actions"][0][b, i]
            c_loss += sum(0.5 * (mlp(q, o, 1)[a] - y[b, i]) ** 2 for q in qs)  # Haarnoja 2018, eq. 5
            q_min = np.minimum(mlp(qs[0], o, 1), mlp(qs[1], o, 1))
            a_loss += -_ref_soft_value(_ref_pi(actor, o, av), q_min, av)  # Christodoulou 2019, eq. 12
    return y, c_loss / count, a_loss / count


def test_soft_target_and_critic_loss_match_numpy(setup):
    algo, actors, critics, targets, batch = setup
    y_ref, c_ref, _ = _reference(actors, critics, targets, batch)
    with jax.enable_x64(True):
        jb = jax.tree.map(jnp.asarray, batch)
        y = np.asarray(algo.soft_target(actors, targets, jb))
        c_loss, _ = algo.critic_loss(critics, jb, jnp.asarray(y))
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-6)  # float64 inputs; a float32-level rounding remains in the library path
    assert abs(float(c_loss) - c_ref) < 1e-6


def test_actor_loss_matches_numpy(setup):
    algo, actors, critics, targets, batch = setup
    _, _, a_ref = _reference(actors, critics, targets, batch)
    with jax.enable_x64(True):
        a_loss, _ = algo.actor_loss(actors, critics, jax.tree.map(jnp.asarray, batch))
    assert abs(float(a_loss) - a_ref) < 1e-6


@pytest.mark.parametrize("key,value,message", [
    ("algo.copies", "per_agent", "algo.copies='per_agent' is not available yet"),
    ("algo.copies", "some", "algo.copies='some' is not allowed; choose one of one, per_agent"),
    ("algo.share_params", False, "algo.share_params is not used by f2a2_isac: F2A2-ISAC always shares"),
    ("algo.n_critics", 3, "algo.n_critics=3 must be 1 or 2"),
])
def test_refused_settings(key, value, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        build_config("f2a2_isac", "mpe/simple_spread", {**TINY, key: value})
