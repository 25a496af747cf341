"""MAAC's ``train_step`` (one gradient iteration) against a plain NumPy/loop reference on a hand-built
batch of three agents (Iqbal & Sha 2019, eq. 3-5 and the authors' code):

- the buffer's reward normalisation ``(r - mean) / std``;
- the soft critic target ``y_i = r_i + gamma (1 - terminated) Q'_i(o', a') - log pi'_i(a'_i | o'_i) / reward_scale``
  (a truncated transition bootstraps, a terminated one does not), ``a' ~ pi'`` the target actors;
- the critic loss ``sum_i mean_b (Q_i(o, a) - y_i)^2`` plus the attention-logit penalty, and the 1/n
  scaling of the gradients of the modules every agent shares (keys, selectors, values, state-action encoders);
- the actor loss on the critic *after* this iteration's critic step: the counterfactual baseline
  ``b_i = sum_a pi_i(a | o_i) Q_i(o, (a, a~_-i))``, ``A_i = Q_i(o, a~) - b_i`` and the score-function loss
  ``mean_b log pi_i(a~_i | o_i) sg(log pi_i(a~_i | o_i) / reward_scale - A_i) + policy_reg mean(logits^2)``;
- Polyak targets.

The samples ``a'`` and ``a~`` are the test's (a sampler that hands out fixed actions and records the
distributions it was asked to sample from); gradients are read where the update hands them to Adam and
compared with central differences of the reference loss along random directions (float64).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from refnets import (
    agent_params,
    attention_critic,
    directional,
    dot,
    log_softmax,
    mlp,
    random_direction,
    tiny_env,
    to_numpy,
)

from trustmarl.algos import make_algorithm
from trustmarl.experiment.config import build_config

B, N, A, HEADS = 4, 3, 5, 2
GAMMA, TAU, SRS, PENALTY, POLICY_REG = 0.9, 0.3, 4.0, 0.05, 0.02
OBS = 6
CFG = {"algo.hidden_sizes": [8], "algo.critic_hidden": 8, "algo.attention_heads": HEADS,
       "algo.num_envs": 2, "algo.rollout_len": 4, "algo.buffer_size": 64, "algo.batch_size": B,
       "algo.learning_starts": 8, "algo.grad_steps": 1, "algo.gamma": GAMMA, "algo.tau": TAU,
       "algo.soft_reward_scale": SRS, "algo.attention_penalty": PENALTY, "algo.policy_reg": POLICY_REG,
       "algo.critic_lr": 0.05, "algo.reward_scale": 3.0, "algo.reward_norm": True}
SHARED = ("key", "selector", "value", "sa_enc_")  # the modules every agent's Q reads (MAAC code: grads / n)


def masked(logits, avail):
    return np.where(avail, logits, -1e9)


@pytest.fixture(scope="module")
def step():
    """One MAAC gradient iteration on the hand-built batch, run op by op so that the gradients handed to Adam
    and the distributions handed to the sampler can be recorded."""
    algo = make_algorithm(build_config("maac", "matrix/custom", CFG), total_updates=10, env=tiny_env(N, OBS))
    state = jax.jit(algo.init)(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    noisy = lambda tree, s: jax.tree.map(lambda x: x + s * jnp.asarray(rng.standard_normal(x.shape), x.dtype), tree)
    # policies far from uniform, targets different from the networks
    state = state._replace(actor_params=noisy(state.actor_params, 0.6), critic_params=noisy(state.critic_params, 0.3))
    state = state._replace(target_actor_params=noisy(state.actor_params, 0.3), target_critic_params=noisy(state.critic_params, 0.2))
    obs_dim = algo.groups[0].obs_dim
    avail = np.ones((B, N, A), bool)
    avail[0, 1, 3] = avail[2, 0, 0] = False
    next_avail = np.ones((B, N, A), bool)
    next_avail[1, 2, 4] = next_avail[3, 0, 2] = False
    raw = dict(
        obs=(rng.standard_normal((B, N, obs_dim)),), next_obs=(rng.standard_normal((B, N, obs_dim)),),
        avail=(avail,), next_avail=(next_avail,), actions=(np.array([[0, 1, 2], [3, 4, 0], [1, 1, 3], [2, 0, 4]]),),
        reward=rng.normal(1.0, 2.0, (B, N)), terminated=np.array([True, False, False, False]),
        truncated=np.array([False, True, False, False]), logp=np.zeros((B, N)), active=np.ones((B, N), bool),
    )
    next_a = np.array([[1, 2, 3], [0, 4, 1], [2, 3, 0], [4, 1, 3]])  # a' (never an unavailable action)
    tilde_a = np.array([[2, 0, 1], [1, 3, 4], [3, 2, 0], [0, 4, 2]])  # a~
    stats = (np.array([0.5, -0.2, 0.1]), np.array([2.0, 0.5, 1.5]))
    batch = algo.prepare(jax.tree.map(jnp.asarray, raw), tuple(map(jnp.asarray, stats)))

    seen, handed = [], {}
    record = lambda name, tree: jax.debug.callback(lambda t: handed.__setitem__(name, to_numpy(t)), tree)
    calls = []

    def sampler(logp, key):  # a' first (target policies at o'), then a~ (the actors at o): traced in this order
        jax.debug.callback(lambda lp: seen.append(np.asarray(lp, np.float64)), logp[0])
        calls.append(1)
        return (jnp.asarray(next_a if len(calls) == 1 else tilde_a, jnp.int32),)

    algo.sample = sampler
    apply_critic, apply_actors = algo.apply_critic, algo.apply_actors
    algo.apply_critic = lambda p, g, o: (record("critic", g), apply_critic(p, g, o))[1]
    algo.apply_actors = lambda p, g, o: (record("actors", g), apply_actors(p, g, o))[1]
    new_state, metrics = jax.jit(algo.train_step)(state, batch, jax.random.PRNGKey(3))
    jax.block_until_ready(new_state)
    assert len(calls) == 2 and len(seen) == 2
    return dict(state=state, new=new_state, metrics=metrics, raw=raw, stats=stats, next_a=next_a, tilde_a=tilde_a,
                seen=seen, handed=handed)


def policy(actor, obs, avail):
    """The reference policy of one group: raw logits and masked log-probabilities ``[B, N, A]``."""
    logits = np.stack([np.stack([mlp(agent_params(actor["params"], i), obs[b, i], 1) for i in range(N)]) for b in range(len(obs))])
    return logits, log_softmax(masked(logits, avail))


def reference_targets(s):
    """``y`` ``[B, N]`` from the raw batch, the buffer's statistics and the target networks."""
    raw, (mean, std) = s["raw"], s["stats"]
    r = (raw["reward"] - mean) / std  # MAAC code: rewards normalised by the buffer's mean and std
    tp, tc = to_numpy(s["state"].target_actor_params[0]), to_numpy(s["state"].target_critic_params["params"])
    _, next_logp = policy(tp, raw["next_obs"][0], raw["next_avail"][0])
    y = np.zeros((B, N))
    for b in range(B):
        a = s["next_a"][b]
        q, _ = attention_critic(tc, [raw["next_obs"][0][b]], [np.eye(A)[a]], HEADS)
        for i in range(N):
            y[b, i] = r[b, i] + GAMMA * (1.0 - raw["terminated"][b]) * q[i][a[i]] - next_logp[b, i, a[i]] / SRS
    return y, next_logp


def reference_critic_loss(critic, s, y):
    """``(sum_i mean_b (Q_i(o, a) - y_i)^2 + penalty * sum_{i,h} mean_{b, j != i} logit^2, per-agent MSE)``."""
    raw = s["raw"]
    sq, pen = np.zeros((B, N)), 0.0
    for b in range(B):
        a = raw["actions"][0][b]
        q, logits = attention_critic(critic, [raw["obs"][0][b]], [np.eye(A)[a]], HEADS)
        sq[b] = [(q[i][a[i]] - y[b, i]) ** 2 for i in range(N)]
        pen += np.sum(logits ** 2) / (B * (N - 1))  # diagonal entries are zero
    return sq.mean(0).sum() + PENALTY * pen, sq.mean(0)


def reference_actor_terms(s, critic):
    """Per sample and agent ``log pi_i(a~_i)``, ``A_i`` and the detached factor ``f_i``, on ``critic``."""
    raw, act = s["raw"], s["tilde_a"]
    _, logp = policy(to_numpy(s["state"].actor_params[0]), raw["obs"][0], raw["avail"][0])
    adv = np.zeros((B, N))
    for b in range(B):
        q, _ = attention_critic(critic, [raw["obs"][0][b]], [np.eye(A)[act[b]]], HEADS)
        for i in range(N):
            baseline = sum(np.exp(logp[b, i, k]) * q[i][k] for k in range(A))  # pi-weighted, over agent i's actions
            adv[b, i] = q[i][act[b, i]] - baseline
    logp_a = np.take_along_axis(logp, act[..., None], -1)[..., 0]
    return logp_a, adv, logp_a / SRS - adv


def reference_actor_loss(actor, s, coef):
    """Per agent ``mean_b log pi_i(a~_i | o_i) coef_i + policy_reg mean_{b,a} logits_i^2``."""
    raw = s["raw"]
    logits, logp = policy(actor, raw["obs"][0], raw["avail"][0])
    logp_a = np.take_along_axis(logp, s["tilde_a"][..., None], -1)[..., 0]
    return (logp_a * coef).mean(0) + POLICY_REG * np.mean(logits ** 2, axis=(0, 2))


def test_soft_target_and_critic_loss(step):
    y, next_logp = reference_targets(step)
    # the first sample drawn is a' from the *target* actors at o'
    np.testing.assert_allclose(step["seen"][0], next_logp, rtol=1e-4, atol=1e-4)
    critic = to_numpy(step["state"].critic_params["params"])
    _, per_agent = reference_critic_loss(critic, step, y)
    np.testing.assert_allclose(np.asarray(step["metrics"]["diag/critic_loss_per_agent"]), per_agent, rtol=1e-4)


def test_critic_gradient_with_the_penalty_and_shared_modules_scaled_by_one_over_n(step):
    y, _ = reference_targets(step)
    critic = to_numpy(step["state"].critic_params)
    grads = step["handed"]["critic"]
    loss = lambda c: reference_critic_loss(c["params"], step, y)[0]
    rng = np.random.default_rng(1)
    for shared, scale in ((True, 1.0 / N), (False, 1.0)):
        d = random_direction(critic, rng, lambda name, shared=shared: name.split("/")[1].startswith(SHARED) == shared)
        np.testing.assert_allclose(dot(grads, d), scale * directional(loss, critic, d), rtol=1e-3)


def test_actor_step_on_the_updated_critic_with_the_counterfactual_baseline(step):
    """Advantages and the actor loss read Q from the critic after this iteration's critic step; the actor
    gradient is the score-function gradient of the reference loss (its sign included)."""
    new_critic = to_numpy(step["new"].critic_params["params"])
    _, adv, coef = reference_actor_terms(step, new_critic)
    m = step["metrics"]
    np.testing.assert_allclose(np.asarray(m["diag/advantage_per_agent"]), adv.mean(0), rtol=1e-3, atol=1e-5)
    actor = to_numpy(step["state"].actor_params[0])
    np.testing.assert_allclose(np.asarray(m["diag/actor_loss_per_agent"]), reference_actor_loss(actor, step, coef),
                               rtol=1e-3, atol=1e-6)
    # the second sample drawn is a~ from the current actors at o
    _, logp = policy(actor, step["raw"]["obs"][0], step["raw"]["avail"][0])
    np.testing.assert_allclose(step["seen"][1], logp, rtol=1e-4, atol=1e-4)
    grads = step["handed"]["actors"][0]
    rng = np.random.default_rng(2)
    for _ in range(2):
        d = random_direction(actor, rng)
        expect = directional(lambda p: reference_actor_loss(p, step, coef).sum(), actor, d)
        np.testing.assert_allclose(dot(grads, d), expect, rtol=1e-3)
    # the critic did move: the pre-step critic gives other advantages (so the test tells the two apart)
    _, adv_old, _ = reference_actor_terms(step, to_numpy(step["state"].critic_params["params"]))
    assert np.abs(adv_old - adv).max() > 1e-2


def test_polyak_targets(step):
    old, new = step["state"], step["new"]
    for target, net, before in ((new.target_critic_params, new.critic_params, old.target_critic_params),
                                (new.target_actor_params, new.actor_params, old.target_actor_params)):
        for t, p, b in zip(jax.tree.leaves(target), jax.tree.leaves(net), jax.tree.leaves(before)):
            np.testing.assert_allclose(np.asarray(t), TAU * np.asarray(p, np.float64) + (1 - TAU) * np.asarray(b, np.float64),
                                       rtol=1e-5, atol=1e-6)
