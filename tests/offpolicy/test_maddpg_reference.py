"""MADDPG and MATD3 ``train_step`` against a plain NumPy/loop reference on a batch that bootstraps
(three agents with 2-d continuous actions in [-1, 1]; one terminated, one truncated transition):

- the critic target ``y_i = r_i + gamma (1 - terminated) min_k Q'_{i,k}(x', a')`` (Lowe et al. 2017, eq. 6;
  the min over twin target critics: Ackermann et al. 2019 after Fujimoto et al. 2018), with MATD3's target
  smoothing ``a'_j = clip(mu'_j(o'_j) + clip(sigma eps, -c, c), low, high)``;
- the critic loss and its gradient (each agent's critics on the joint observation and action);
- the actor loss ``-mean_b Q_{i,1}(x, (a_-i from the buffer, mu_i(o_i))) + policy_reg mean(u^2)`` on the
  critic after this step's update (Lowe et al. 2017, eq. 5) and its gradient;
- MATD3's delay: on a step that is not a multiple of ``policy_delay`` the actors and their targets stay;
- Polyak targets.

The smoothing noise is drawn by the test from the key the update receives (``split(key)[0]``, folded with the
group index); gradients are read where the update hands them to Adam and compared with central
differences of the reference loss along random directions (float64).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from refnets import directional, dot, mlp, random_direction, tiny_env, to_numpy

from trustmarl.algos import make_algorithm
from trustmarl.envs.base import Box
from trustmarl.experiment.config import build_config

B, N, D, OBS = 4, 3, 2, 4
GAMMA, TAU, POLICY_REG, SIGMA, CLIP = 0.9, 0.3, 0.02, 0.8, 0.3
CFG = {"algo.hidden_sizes": [8], "algo.num_envs": 2, "algo.rollout_len": 4, "algo.buffer_size": 64,
       "algo.batch_size": B, "algo.learning_starts": 8, "algo.grad_steps": 2, "algo.gamma": GAMMA, "algo.tau": TAU,
       "algo.policy_reg": POLICY_REG, "algo.critic_lr": 0.05}
TD3 = {"algo.target_noise": SIGMA, "algo.target_noise_clip": CLIP}
KEY = jax.random.PRNGKey(3)


@pytest.fixture(scope="module", params=["maddpg", "matd3"])
def steps(request):
    """The update's gradient step at step counts 0 (actors updated) and 1 (MATD3: critics only), recorded."""
    name = request.param
    algo = make_algorithm(build_config(name, "matrix/custom", {**CFG, **(TD3 if name == "matd3" else {})}),
                          total_updates=10, env=tiny_env(N, OBS, Box(D, -1.0, 1.0)))
    state = jax.jit(algo.init)(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    noisy = lambda tree, s: jax.tree.map(lambda x: x + s * jnp.asarray(rng.standard_normal(x.shape), x.dtype), tree)  # noqa: E731
    # large actor weights: some target actions sit at the box edge, where the smoothing noise is clipped away
    state = state._replace(actor_params=noisy(state.actor_params, 0.8), critic_params=noisy(state.critic_params, 0.3))
    state = state._replace(target_actor_params=noisy(state.actor_params, 0.5), target_critic_params=noisy(state.critic_params, 0.3))
    raw = {
        "obs": (rng.standard_normal((B, N, OBS)),), "next_obs": (2.0 * rng.standard_normal((B, N, OBS)),),
        "avail": (np.ones((B, N, 0), bool),), "next_avail": (np.ones((B, N, 0), bool),),
        "actions": (rng.uniform(-1, 1, (B, N, D)),), "reward": rng.normal(1.0, 2.0, (B, N)),
        "terminated": np.array([True, False, False, False]), "truncated": np.array([False, True, False, False]),
        "logp": np.zeros((B, N)), "active": np.ones((B, N), bool),
    }
    batch = algo.prepare(jax.tree.map(jnp.asarray, raw), None)
    handed = {}
    apply_critic, apply_actors = algo.apply_critic, algo.apply_actors

    def record(name, tree):
        jax.debug.callback(lambda t: handed.__setitem__(name, to_numpy(t)), tree)

    algo.apply_critic = lambda p, g, o: (record("critic", g), apply_critic(p, g, o))[1]
    algo.apply_actors = lambda p, g, o: (record("actors", g), apply_actors(p, g, o))[1]
    step = jax.jit(algo.train_step)
    out = {}
    for count in (0, 1):
        handed.clear()
        new, metrics = step(state._replace(grad_steps=jnp.int32(count)), batch, KEY)
        jax.block_until_ready(new)
        out[count] = {"new": new, "metrics": metrics, "handed": dict(handed)}
    return {"name": name, "algo": algo, "state": state, "raw": raw, "out": out}


def actor_actions(actor, obs):
    """``(u, mu(o))`` per sample and agent ``[B, N, D]``: tanh squashed into [-1, 1]."""
    u = np.stack([np.stack([mlp(jax.tree.map(lambda x, i=i: x[i], actor["params"]), obs[b, i], 1) for i in range(N)])
                  for b in range(len(obs))])
    return u, np.tanh(u)


def q(critic, k, i, x):
    """Critic ``k`` of agent ``i`` on the joint input ``x`` ``[D_x]``."""
    return mlp(jax.tree.map(lambda p: p[k, i], critic["params"]), x, 1)[0]


def joint(obs, act):
    return np.concatenate([obs.reshape(-1), act.reshape(-1)])


def reference_targets(s):
    raw, twin, st = s["raw"], s["name"] == "matd3", s["state"]
    _, a_next = actor_actions(to_numpy(st.target_actor_params[0]), raw["next_obs"][0])
    if twin:  # target policy smoothing (Fujimoto et al. 2018, eq. 14), the noise drawn from the update's key
        k_target = jax.random.split(KEY)[0]
        eps = np.asarray(jax.random.normal(jax.random.fold_in(k_target, 0), (B, N, D)), np.float64)
        a_next = np.clip(a_next + np.clip(SIGMA * eps, -CLIP, CLIP), -1.0, 1.0)
    tc = to_numpy(st.target_critic_params)
    y = np.zeros((B, N))
    for b in range(B):
        x = joint(raw["next_obs"][0][b], a_next[b])
        for i in range(N):
            q_next = min(q(tc, k, i, x) for k in range(2 if twin else 1))
            y[b, i] = raw["reward"][b, i] + GAMMA * (1.0 - raw["terminated"][b]) * q_next
    return y


def reference_critic_loss(critic, s, y):
    """Per agent ``mean_{k, b} (Q_{i,k}(x, a) - y_i)^2``."""
    raw, n_k = s["raw"], 2 if s["name"] == "matd3" else 1
    per_agent = np.zeros(N)
    for i in range(N):
        per_agent[i] = np.mean([(q(critic, k, i, joint(raw["obs"][0][b], raw["actions"][0][b])) - y[b, i]) ** 2
                                for k in range(n_k) for b in range(B)])
    return per_agent


def reference_actor_loss(actor, s, critic):
    """Per agent ``-mean_b Q_{i,1}(x, (a_-i, mu_i(o_i))) + policy_reg mean_{b,d} u_i^2`` (others from the buffer)."""
    raw = s["raw"]
    u, mu = actor_actions(actor, raw["obs"][0])
    loss = np.zeros(N)
    for i in range(N):
        vals = []
        for b in range(B):
            act = raw["actions"][0][b].copy()
            act[i] = mu[b, i]
            vals.append(q(critic, 0, i, joint(raw["obs"][0][b], act)))
        loss[i] = -np.mean(vals) + POLICY_REG * np.mean(u[:, i] ** 2)
    return loss


def test_critic_target_loss_and_gradient(steps):
    y = reference_targets(steps)
    critic = to_numpy(steps["state"].critic_params)
    for count in (0, 1):  # the critic learns on every step
        out = steps["out"][count]
        np.testing.assert_allclose(np.asarray(out["metrics"]["diag/critic_loss_per_agent"]),
                                   reference_critic_loss(critic, steps, y), rtol=1e-4)
    rng = np.random.default_rng(1)
    for _ in range(2):
        d = random_direction(critic, rng)
        expect = directional(lambda c: reference_critic_loss(c, steps, y).sum(), critic, d)
        np.testing.assert_allclose(dot(steps["out"][0]["handed"]["critic"], d), expect, rtol=1e-3)


def test_actor_loss_and_gradient_on_the_updated_critic(steps):
    out = steps["out"][0]
    actor = to_numpy(steps["state"].actor_params[0])
    critic = to_numpy(out["new"].critic_params)
    np.testing.assert_allclose(np.asarray(out["metrics"]["diag/actor_loss_per_agent"]),
                               reference_actor_loss(actor, steps, critic), rtol=1e-4, atol=1e-6)
    rng = np.random.default_rng(2)
    for _ in range(2):
        d = random_direction(actor, rng)
        expect = directional(lambda p: reference_actor_loss(p, steps, critic).sum(), actor, d)
        np.testing.assert_allclose(dot(out["handed"]["actors"][0], d), expect, rtol=1e-3)


def leaves_close(a, b, **kw) -> bool:
    return all(np.allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), **kw)
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_polyak_targets_and_the_actor_delay(steps):
    """Step 0: actors and both targets move (Polyak). MATD3 at step 1 (policy_delay 2): the critics learn and
    their targets follow, the actors and their targets stay; MADDPG moves everything every step."""
    old = steps["state"]
    for count in (0, 1):
        new = steps["out"][count]["new"]
        moves = count == 0 or steps["name"] == "maddpg"
        assert not leaves_close(new.critic_params, old.critic_params)
        assert leaves_close(new.actor_params, old.actor_params) != moves
        for target, net, before, follows in ((new.target_critic_params, new.critic_params, old.target_critic_params, True),
                                             (new.target_actor_params, new.actor_params, old.target_actor_params, moves)):
            expect = jax.tree.map(lambda p, t: TAU * np.asarray(p, np.float64) + (1 - TAU) * np.asarray(t, np.float64), net, before)
            assert leaves_close(target, expect if follows else before, rtol=1e-5, atol=1e-6), (count, steps["name"])
        assert np.isnan(np.asarray(steps["out"][count]["metrics"]["loss/actor"])) != moves
