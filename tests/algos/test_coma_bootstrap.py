"""F2A2-COMA's TD(lambda) bootstrap after a rollout reads the actions the agents commit to at the last observation
``s_T`` and execute at the next rollout's first step, never a fresh draw from the other agents' policies
(Li et al. 2023: a decentralised agent sees the others' executed actions, not their policies)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trustmarl.algos import make_algorithm
from trustmarl.algos.on_policy.coma import COMA
from trustmarl.compilation import rolled_threefry
from trustmarl.experiment.config import build_config

T, E = 8, 2  # 5-step episodes: the rollout's last transition (step 8) ends none, so the bootstrap enters its target
TINY = {"algo.num_envs": E, "algo.rollout_len": T, "algo.hidden_sizes": [8], "env.n_agents": 3, "env.max_cycles": 5,
        "algo.epochs": 1, "algo.minibatches": 1, "algo.actor_lr": 0.5, "algo.target_every": 5}


@pytest.fixture(scope="module")
def run():
    """F2A2-COMA: rollout 1, its batch, the update, rollout 2."""
    algo = make_algorithm(build_config("f2a2_coma", "mpe/simple_spread", TINY), total_updates=4)
    rollout, make_batch, learn_batch = jax.jit(algo.rollout), jax.jit(algo.make_batch), jax.jit(algo.learn_batch)
    with rolled_threefry():  # the same numbers, a shorter compilation
        s0 = jax.jit(algo.init)(jax.random.PRNGKey(5))
    s1, traj1, _ = rollout(s0)
    sb, batch = make_batch(s1, traj1)
    s2, _ = learn_batch(sb, batch)  # = algo.learn(s1, traj1)
    s3, traj2, _ = rollout(s2)
    return algo, s0, s1, traj1, sb, batch, s2, s3, traj2


def _hand_bootstrap(algo, target_critic, last, probs, others):
    """``sum_a pi_i(a) Q'_i(s_T, (a, a_-i))`` in NumPy from the critic's per-own-action values at the joint action ``others``."""
    q = np.asarray(algo.q_values(target_critic, last.state, last.obs, algo.onehot(others))[0])  # [E, N, A]
    return np.sum(probs * q, -1)


def test_the_next_rollout_executes_the_committed_actions(run):
    """Rollout 2's first actions are those committed at ``s_T`` of rollout 1, with the log-probabilities of the policy
    that sampled them (before the update, which moved it); later steps and the first rollout sample afresh."""
    algo, s0, s1, traj1, sb, batch, s2, s3, traj2 = run
    assert not np.asarray(s0.carry[1]["valid"]).any()  # the first rollout: nothing committed yet
    committed = s2.carry[1]
    assert np.asarray(committed["valid"]).all()
    np.testing.assert_array_equal(np.asarray(sb.carry[1]["actions"][0]), np.asarray(committed["actions"][0]))
    np.testing.assert_array_equal(np.asarray(traj2["actions"][0][0]), np.asarray(committed["actions"][0]))
    np.testing.assert_array_equal(np.asarray(traj2["logp"][0]), np.asarray(committed["logp"]))
    np.testing.assert_array_equal(np.asarray(traj2["obs"][0][0]), np.asarray(s1.last.obs[0]))  # executed at s_T itself
    before = algo.log_prob(algo.policy(s1.actor_params, s1.last.obs, s1.last.avail), committed["actions"])
    after = algo.log_prob(algo.policy(s2.actor_params, s1.last.obs, s1.last.avail), committed["actions"])
    np.testing.assert_allclose(np.asarray(committed["logp"]), np.asarray(before), atol=1e-6)  # pi before the update
    assert np.abs(np.asarray(after - before)).max() > 1e-3  # the update moved the policy
    assert not np.asarray(s3.carry[1]["valid"]).any()  # used once; the next update commits again
    # the host loop starts fresh episodes on resume by zeroing the carry: that drops the commitment
    assert not np.asarray(jax.tree.map(jnp.zeros_like, s2.carry)[1]["valid"]).any()


def test_the_bootstrap_is_the_hand_computation_on_the_executed_actions(run):
    """The target of rollout 1's last step is ``r + gamma sum_a pi_i(a) Q'_i(s_T, (a, a_-i))`` with ``a_-i`` the
    actions rollout 2 executes first, ``pi`` the policy before the update, ``Q'`` the target copies (to 1e-6)."""
    algo, s0, s1, traj1, sb, batch, s2, s3, traj2 = run
    assert not np.asarray(traj1["done"][-1]).any()
    probs = np.exp(np.asarray(algo.policy(s1.actor_params, s1.last.obs, s1.last.avail)[0][0]))
    boot = _hand_bootstrap(algo, s1.extra["target_critic"], s1.last, probs, (traj2["actions"][0][0],))
    y = np.asarray(traj1["reward"][-1]) + algo.cfg.gamma * boot
    np.testing.assert_allclose(np.asarray(batch.target).reshape(T, E, -1)[-1], y, rtol=1e-6, atol=1e-6)


def test_the_bootstrap_reads_no_policy(run):
    """Committed actions set by hand (not a draw of the policy) give the hand-computed bootstrap, which differs from
    the one on a fresh draw of the true policies; replacing the policy afterwards changes nothing."""
    algo, s0, s1, traj1, sb, batch, s2, s3, traj2 = run
    committed = sb.carry[1]
    n = algo.groups[0].action_space.n
    other = (committed["actions"][0] + 1 + jnp.arange(3)[None]) % n  # another action for every agent
    state = sb._replace(carry=(sb.carry[0], dict(committed, actions=(other,))))
    value = np.asarray(algo.last_value(state))
    probs = np.exp(np.asarray(committed["dist"][0][0]))
    np.testing.assert_allclose(value, _hand_bootstrap(algo, state.extra["target_critic"], state.last, probs, (other,)),
                               rtol=1e-6, atol=1e-6)
    fresh = np.asarray(COMA.last_value(algo, state._replace(carry=state.carry[0])))  # a~_-i ~ pi: what is not used
    assert np.abs(fresh - value).max() > 1e-3
    moved = state._replace(actor_params=s2.actor_params)  # another policy at update time
    np.testing.assert_array_equal(np.asarray(algo.last_value(moved)), value)


@pytest.mark.slow  # ~40 s (GRU compilation); the feed-forward tests above cover the same by default
def test_recurrent_actors_commit_from_their_carried_hidden_state():
    """GRU actors: the committed actions are drawn from the hidden state carried out of the rollout and executed first
    by the next rollout (whose hidden state advances under the updated policy); the bootstrap is the hand computation."""
    algo = make_algorithm(build_config("f2a2_coma", "mpe/simple_spread", {**TINY, "algo.recurrent": True, "algo.gru_size": 8}),
                          total_updates=4)
    with rolled_threefry():
        s0 = jax.jit(algo.init)(jax.random.PRNGKey(5))
    rollout = jax.jit(algo.rollout)
    s1, traj1, _ = rollout(s0)
    sb, batch = jax.jit(algo.make_batch)(s1, traj1)
    s2, _ = jax.jit(algo.learn_batch)(sb, batch)
    _, traj2, _ = rollout(s2)
    committed = s2.carry[1]
    np.testing.assert_array_equal(np.asarray(traj2["actions"][0][0]), np.asarray(committed["actions"][0]))
    np.testing.assert_array_equal(np.asarray(traj2["logp"][0]), np.asarray(committed["logp"]))
    hidden, dists = algo.policy_step(s1.actor_params, s1.carry[0], s1.last.obs, s1.last.avail, s1.last.done)
    np.testing.assert_array_equal(np.asarray(traj2["hidden"][0][0]), np.asarray(s1.carry[0][0]))  # the carried state
    probs = np.exp(np.asarray(dists[0][0]))
    boot = _hand_bootstrap(algo, s1.extra["target_critic"], s1.last, probs, (traj2["actions"][0][0],))
    y = np.asarray(traj1["reward"][-1]) + algo.cfg.gamma * (1.0 - np.asarray(traj1["done"][-1]))[:, None] * boot
    target = np.asarray(batch.target)  # [n_seq, seq_len, N]: sequence e holds env e's steps (seq_len = T)
    np.testing.assert_allclose(target[:, -1], y, rtol=1e-6, atol=1e-6)
