"""Each agent samples its own minibatch (``batch_per_agent``, the default of F2A2-SAC, F2A2-DDPG and F2A2-TD3):
the N batches are drawn with N keys and differ; copy ``i``'s critic gradient is the one-batch gradient computed on
agent ``i``'s batch alone and does not move when another agent's batch changes. (F2A2-DDPG and F2A2-TD3 on hand-built
per-agent batches against the per-sample formulas: tests/offpolicy/test_f2a2_ddpg.py.)"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from refnets import tiny_env, to_numpy

from trustmarl import replay
from trustmarl.algos import make_algorithm
from trustmarl.algos.agents import opt_init
from trustmarl.algos.off_policy.engine import OffPolicyState
from trustmarl.envs.base import Discrete
from trustmarl.experiment.config import build_config

B, N, OBS, A = 6, 3, 3, 4
SAC = {"algo.hidden_sizes": [8], "algo.num_envs": 2, "algo.rollout_len": 8, "algo.buffer_size": 64, "algo.batch_size": B,
       "algo.learning_starts": 8, "algo.critic_hidden": 8, "algo.attention_heads": 2, "algo.optimizer": "sgd"}


def make(name, extra):
    return make_algorithm(build_config(name, "matrix/custom", {**SAC, **extra}), total_updates=10, env=tiny_env(N, OBS, Discrete(A)))


def batch_of(rng, per: bool):
    """A hand-built batch (``per``: one per agent on a leading axis) with the target ``y`` ``[B, N]`` of F2A2-SAC."""
    def one():
        beh = np.log(rng.dirichlet(np.ones(A), (B, N)))
        actions = rng.integers(0, A, (B, N))
        return {"obs": (rng.standard_normal((B, N, OBS)),), "avail": (np.ones((B, N, A), bool),), "actions": (actions.astype(np.int32),),
                "logp": np.take_along_axis(beh, actions[..., None], -1)[..., 0], "behaviour_logp": (beh,)}
    if not per:
        return one()
    return jax.tree.map(lambda *xs: np.stack(xs), *(one() for _ in range(N)))


def critic_grads(algo, state, batch, y):
    """The gradient F2A2-SAC's critic step hands to its optimiser (every copy)."""
    got = {}
    apply_critic = algo.apply_critic
    algo.apply_critic = lambda p, g, o: (jax.debug.callback(lambda t: got.__setitem__("g", to_numpy(t)), g), apply_critic(p, g, o))[1]
    jax.block_until_ready(jax.jit(algo.critic_step)(state, dict(batch, y=y), jax.random.PRNGKey(3)))
    algo.apply_critic = apply_critic
    return got["g"]


def copy_slice(tree, i):
    return [np.asarray(x)[i] for x in jax.tree.leaves(tree)]  # F2A2-SAC's critics: a tuple of [N copies, ...]


def test_each_agent_draws_its_own_batch():
    """N batches from N keys: batch i is the one-batch draw with key i, bitwise, and no two are equal."""
    algo = make("f2a2_sac", {})
    state = jax.jit(algo.init)(jax.random.PRNGKey(0))
    state, traj, _ = jax.jit(algo.rollout)(state)
    step, nxt = algo.split_transition(traj)
    buffer = replay.insert_transitions(state.buffer, step, nxt, traj["terminated"] | traj["truncated"])
    key, stats = jax.random.PRNGKey(7), (jnp.float32(0.5), jnp.float32(2.0))
    per = jax.jit(algo.sample_batch)(buffer, key, stats)
    one = jax.jit(jax.vmap(lambda k: algo.sample_one(buffer, k, stats)))(jax.random.split(key, N))
    for a, b in zip(jax.tree.leaves(per), jax.tree.leaves(one)):
        assert a.shape[:2] == (N, B)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    logp = np.asarray(per["logp"])  # the tiny env's observations are all ones: the behaviour log-probabilities tell the draws apart
    assert all(not np.array_equal(logp[i], logp[j]) for i in range(N) for j in range(i))
    assert jax.tree.leaves(jax.jit(make("f2a2_sac", {"algo.batch_per_agent": False}).sample_batch)(buffer, key, stats))[0].shape[0] == B


@pytest.mark.slow  # ~40 s on 2 cores; the DDPG/TD3 own-batch formula tests cover the shared reading by default
def test_copy_i_reads_agent_i_batch_only():
    """Separate objectives (the critic loss reads the buffer actions only, no draw): with per-agent batches, copy i's
    critic gradient equals the one-batch algorithm's copy-i gradient on agent i's batch (rtol 1e-4, float32), and changing another
    agent's batch leaves it bitwise unchanged while that agent's copy moves."""
    rng = np.random.default_rng(0)
    extra = {"algo.joint": False}
    per_algo, one_algo = make("f2a2_sac", extra), make("f2a2_sac", {**extra, "algo.batch_per_agent": False})
    f32 = lambda t: jax.tree.map(lambda x: jnp.asarray(x, jnp.float32) if np.issubdtype(np.asarray(x).dtype, np.floating)  # noqa: E731
                                 else jnp.asarray(x), t)
    actors, critics = per_algo.init_networks(jax.random.PRNGKey(1))
    critics = jax.tree.map(lambda x: x + 0.3 * rng.standard_normal(x.shape), to_numpy(critics))  # copies that differ
    state = f32(OffPolicyState(actors, critics, actors, critics, (), opt_init(per_algo.critic_tx, critics, True), None, jnp.int32(0), None,
                               None, None, None, jnp.int32(0), jnp.int32(0), extra=per_algo.init_extra(jax.random.PRNGKey(2), actors, critics)))
    batches, y = batch_of(rng, True), rng.standard_normal((B, N))
    g = critic_grads(per_algo, state, f32(batches), f32(y))
    for i in range(N):  # float32: the batched and the single evaluation may round differently in the last bits
        ref = critic_grads(one_algo, state, f32(jax.tree.map(lambda x, i=i: x[i], batches)), f32(y))
        for a, b in zip(copy_slice(g, i), copy_slice(ref, i)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    changed = jax.tree.map(lambda x: x.copy(), batches)
    changed["obs"][0][2] = rng.standard_normal((B, N, OBS))
    g2 = critic_grads(per_algo, state, f32(changed), f32(y))
    for i in (0, 1):
        for a, b in zip(copy_slice(g, i), copy_slice(g2, i)):
            np.testing.assert_array_equal(a, b)
    assert max(np.abs(a - b).max() for a, b in zip(copy_slice(g, 2), copy_slice(g2, 2))) > 1e-3
