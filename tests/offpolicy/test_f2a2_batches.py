"""Each agent samples its own minibatch (``batch_per_agent``, the default of F2A2-SAC, F2A2-DDPG and F2A2-TD3):
the N batches are drawn with N keys and differ; copy ``i``'s critic gradient is the one-batch gradient computed on
agent ``i``'s batch alone and does not move when another agent's batch changes. (F2A2-DDPG and F2A2-TD3 on hand-built
per-agent batches against the per-sample formulas: tests/offpolicy/test_f2a2_ddpg.py.)"""

from __future__ import annotations

import functools

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


# ---- recurrent actors: every agent its own batch of sequences -------------------------------------------------------

REC = {"env.n_agents": 3, "env.max_cycles": 5, "algo.num_envs": 2, "algo.rollout_len": 10, "algo.hidden_sizes": [8],
       "algo.buffer_size": 64, "algo.batch_size": 4, "algo.learning_starts": 8, "algo.critic_hidden": 8, "algo.attention_heads": 2,
       "algo.reward_norm": False, "algo.recurrent": True, "algo.gru_size": 8, "algo.seq_len": 4, "algo.optimizer": "sgd",
       "algo.joint": False}
SEQUENCES = [{"algo.sequences": "episodes"}, {"algo.burn_in": 1, "algo.seq_len": 3}]


@functools.lru_cache(maxsize=None)
def recurrent(per: bool, items: tuple):
    """``(algorithm, state with one stored rollout)``: F2A2-SAC with GRU actors, each agent its own batch (``per``) or one."""
    a = make_algorithm(build_config("f2a2_sac", "mpe/simple_spread", {**REC, **dict(items), "algo.batch_per_agent": per}))
    state = a.init(jax.random.PRNGKey(0))
    state, traj, _ = jax.jit(a.rollout)(state)
    step, nxt = a.split_transition(traj)
    return a, state._replace(buffer=jax.jit(replay.insert_transitions)(state.buffer, step, nxt, traj["terminated"] | traj["truncated"]))


def sampler(a):
    return jax.jit(lambda b, k: a.sample_batch(b, k, None))


def grads_of(a):
    """The gradient F2A2-SAC's critic step hands to its optimiser, as a jitted ``(state, batch, y) -> copies`` (the copies
    of the step whose optimiser returns the gradient: ``pdhg`` changes nothing else in the critic step)."""
    def f(state, batch, y):
        a.apply_critic = lambda p, g, o: (g, o)
        try:
            return a.critic_step(state, dict(batch, y=y), jax.random.PRNGKey(3))[0].critic_params
        finally:
            del a.apply_critic
    return jax.jit(f)


@pytest.mark.parametrize("extra", SEQUENCES)
def test_each_agent_draws_its_own_sequences(extra):
    """Recurrent actors (the default ``batch_per_agent``): N batches of sequences from N keys, batch i bitwise the
    one-batch draw with key i (episodes from an episode's first step; windows with their burn-in steps), and no two
    agents' sequences are the same draw."""
    a, state = recurrent(True, tuple(extra.items()))
    assert make_algorithm(build_config("f2a2_sac", "mpe/simple_spread", {**REC, **extra})).per_agent_batch  # the default
    key = jax.random.PRNGKey(7)
    per = sampler(a)(state.buffer, key)
    one = jax.jit(lambda b, k: jax.vmap(lambda kk: a.sample_one(b, kk, None))(jax.random.split(k, N)))(state.buffer, key)
    L = a.cfg.seq_len
    assert per["seq"]["first"].shape == (N, 4, L) and per["weight"].shape == (N, 4 * L)
    for x, y in zip(jax.tree.leaves(per), jax.tree.leaves(one)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    if "burn" in per["seq"]:
        assert per["seq"]["burn"]["first"].shape == (N, 4, 1)
    else:  # every agent's sequences start at an episode's first step
        assert np.asarray(per["seq"]["first"])[:, :, 0].all()
    obs = np.asarray(per["seq"]["obs"][0])
    assert all(not np.array_equal(obs[i], obs[j]) for i in range(N) for j in range(i))


@pytest.mark.parametrize("extra", [pytest.param(SEQUENCES[0], marks=pytest.mark.slow), SEQUENCES[1]])  # episodes: slow (~20 s
# under load); the burn-in windows here and test_padded_steps_add_nothing_to_any_loss_or_gradient[f2a2_sac] cover them by default
def test_per_agent_sequences_of_one_draw_reduce_to_one_batch(extra):
    """When every agent draws the same sequences, the per-agent path is the one-batch path: agent i's policy
    log-probabilities over its unrolled sequences (burn-in or padded episodes) are the one-batch ones bitwise, and
    (separate objectives, a given target) every copy's critic gradient is the one-batch gradient (rtol 1e-5: the vmapped
    and the single evaluation may round differently). The check can fail: with agent 2's batch changed, copy 2's moves
    and the others' stay bitwise."""
    per_algo, state = recurrent(True, tuple(extra.items()))
    one_algo, _ = recurrent(False, tuple(extra.items()))
    one = sampler(one_algo)(state.buffer, jax.random.PRNGKey(7))
    stacked = jax.tree.map(lambda x: jnp.stack([x] * N), one)
    lp_per = jax.jit(lambda p, b: per_algo.own_rows(per_algo.batch_log_probs(p, b)))(state.actor_params, stacked)
    lp_one = jax.jit(one_algo.batch_log_probs)(state.actor_params, one)
    np.testing.assert_array_equal(np.asarray(lp_per[0]), np.asarray(lp_one[0]))
    y = jax.random.normal(jax.random.PRNGKey(5), one["reward"].shape)
    per_grads = grads_of(per_algo)
    g_per, g_one = per_grads(state, stacked, y), grads_of(one_algo)(state, one, y)
    for a, b in zip(jax.tree.leaves(g_per), jax.tree.leaves(g_one)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    other = sampler(one_algo)(state.buffer, jax.random.PRNGKey(8))
    g_mixed = per_grads(state, jax.tree.map(lambda s, o: s.at[2].set(o), stacked, other), y)
    assert max(np.abs(np.asarray(a)[2] - np.asarray(b)[2]).max() for a, b in zip(jax.tree.leaves(g_per), jax.tree.leaves(g_mixed))) > 1e-4
    for a, b in zip(jax.tree.leaves(g_per), jax.tree.leaves(g_mixed)):
        np.testing.assert_array_equal(np.asarray(a)[:2], np.asarray(b)[:2])
