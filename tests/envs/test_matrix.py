"""Tests of the one-state games in ``trustmarl.envs.matrix`` (seed 001 Proposition 1 and Figure 1)."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trustmarl.envs.base import Box, Discrete
from trustmarl.envs.matrix import (
    CLIMBING_GAME,
    MatrixGame,
    Proposition1Game,
    proposition1_payoff,
)
from trustmarl.envs.registry import make


def _split_actions(env, joint) -> tuple:
    """A global joint action -> tuple over groups of int32 arrays."""
    out, start = [], 0
    for g in env.groups:
        out.append(jnp.asarray(joint[start : start + g.n], dtype=jnp.int32))
        start += g.n
    return tuple(out)


def _all_rewards(env) -> dict[tuple, np.ndarray]:
    """Per-agent reward of every joint action (vmapped over the joint actions)."""
    counts = [g.action_space.n for g in env.groups for _ in range(g.n)]
    joints = np.array(list(itertools.product(*[range(c) for c in counts])), dtype=np.int32)
    state, _ = env.reset(jax.random.PRNGKey(0))

    def one(joint):
        return env.step(jax.random.PRNGKey(1), state, _split_actions(env, joint))[1].reward

    rewards = np.asarray(jax.jit(jax.vmap(one))(jnp.asarray(joints)))
    return {tuple(int(x) for x in j): r for j, r in zip(joints, rewards)}


@pytest.mark.parametrize("n", [2, 4])
def test_proposition1_payoffs_exact(n):
    env = make("matrix/proposition1", n_agents=n)
    rewards = _all_rewards(env)
    assert len(rewards) == 2**n
    half = n // 2
    winners = {(0,) * half + (1,) * half, (1,) * half + (0,) * half}
    for joint, r in rewards.items():
        expected = 1.0 if joint in winners else 0.0
        np.testing.assert_array_equal(r, np.full(n, expected, np.float32))
    # The same game as a generic payoff tensor gives the same rewards (two implementations agree).
    generic = _all_rewards(MatrixGame(payoff=proposition1_payoff(n)))
    assert generic.keys() == rewards.keys()
    for joint in rewards:
        np.testing.assert_array_equal(generic[joint], rewards[joint])


@pytest.mark.parametrize("n, expected", [(2, 0.5), (4, 0.125)])
def test_proposition1_shared_policy_value(n, expected):
    """seed 001 section 2.3: J(theta) = 2 theta^{n/2} (1-theta)^{n/2}, max 2/2^n at theta = 1/2."""
    rewards = _all_rewards(Proposition1Game(n_agents=n))
    thetas = np.linspace(0.0, 1.0, 101)
    values = []
    for theta in thetas:  # P(a^i = 0) = theta for every agent (a shared policy)
        values.append(sum(r[0] * np.prod([theta if a == 0 else 1 - theta for a in j]) for j, r in rewards.items()))
    values = np.array(values)
    assert np.argmax(values) == 50
    assert values[50] == pytest.approx(expected, abs=1e-12)
    assert max(r[0] for r in rewards.values()) == 1.0  # J* = 1 with independent deterministic policies


def test_proposition1_validation():
    for bad in (3, 0, 1, -2):
        with pytest.raises(ValueError, match="n_agents"):
            make("matrix/proposition1", n_agents=bad)
    with pytest.raises(ValueError, match="n_agents"):
        proposition1_payoff(5)


def test_differential_game_reward_unclipped():
    env = make("matrix/differential")
    (g,) = env.groups
    assert g.n == 2 and isinstance(g.action_space, Box) and g.action_space.dim == 1
    state, _ = env.reset(jax.random.PRNGKey(0))
    step = jax.jit(env.step)
    actions = np.random.default_rng(0).normal(scale=8.0, size=(200, 2, 1)).astype(np.float32)
    actions[0] = [[20.0], [-3.0]]  # outside the declared [-10, 10] range: not clipped
    for i, a in enumerate(actions):
        _, ts = step(jax.random.PRNGKey(i), state, (jnp.asarray(a),))
        expected = np.float32(a[0, 0]) * np.float32(a[1, 0])
        np.testing.assert_allclose(np.asarray(ts.reward), [expected, expected], rtol=1e-6)
        assert bool(ts.terminated) and not bool(ts.truncated)
    _, ts = step(jax.random.PRNGKey(0), state, (jnp.asarray(actions[0]),))
    np.testing.assert_allclose(np.asarray(ts.reward), [-60.0, -60.0])


@pytest.mark.parametrize("shape", [(3, 2, 4), (3, 3, 2), (2, 2, 2, 2), (5,)])
def test_matrix_game_random_payoff(shape):
    payoff = np.random.default_rng(sum(shape)).normal(size=shape).astype(np.float32)
    env = make("matrix/custom", payoff=payoff.tolist())
    hash(env)  # stored as nested tuples
    # groups: runs of consecutive agents with equal action counts, in agent order
    assert env.agents == tuple(f"agent_{i}" for i in range(len(shape)))
    assert [a for g in env.groups for a in [g.action_space.n] * g.n] == list(shape)
    assert all(isinstance(g.action_space, Discrete) for g in env.groups)
    rewards = _all_rewards(env)
    assert len(rewards) == payoff.size
    for joint, r in rewards.items():
        np.testing.assert_array_equal(r, np.full(len(shape), payoff[joint], np.float32))


def test_matrix_game_groups_and_default():
    assert [g.n for g in MatrixGame(payoff=np.zeros((3, 3, 2))).groups] == [2, 1]
    assert [g.name for g in MatrixGame(payoff=np.zeros((2, 2))).groups] == ["agent"]
    env = make("matrix/custom")
    assert env.payoff == CLIMBING_GAME
    rewards = _all_rewards(env)
    assert rewards[(0, 0)][0] == 11.0 and rewards[(0, 1)][0] == -30.0 and rewards[(2, 2)][0] == 5.0


@pytest.mark.parametrize(
    "payoff, match",
    [(3.0, "rank"), ((1.0,), "1 action"), (((1.0, 2.0), (3.0,)), "rectangular"), (((1.0, 2.0, 3.0),), "1 action")],
)
def test_matrix_game_validation(payoff, match):
    with pytest.raises(ValueError, match=match):
        make("matrix/custom", payoff=payoff)


@pytest.mark.parametrize("name", ["matrix/custom", "matrix/proposition1", "matrix/differential"])
def test_one_step_episodes_and_auto_reset(name):
    env = make(name)
    key = jax.random.PRNGKey(3)
    state, ts0 = env.reset(key)
    for g, o in zip(env.groups, ts0.obs):
        np.testing.assert_array_equal(np.asarray(o), np.ones((g.n, 1), np.float32))
    np.testing.assert_array_equal(np.asarray(ts0.state), np.ones(env.state_dim, np.float32))
    assert not bool(ts0.done)
    step = jax.jit(env.step)
    for i in range(5):
        key, k_act, k_step = jax.random.split(key, 3)
        state, ts = step(k_step, state, env.random_actions(k_act))
        assert bool(ts.terminated) and not bool(ts.truncated)  # every episode lasts one step
        for o, fo, o0 in zip(ts.obs, ts.final_obs, ts0.obs):
            np.testing.assert_array_equal(np.asarray(o), np.asarray(o0))  # a fresh reset observation
            np.testing.assert_array_equal(np.asarray(fo), np.asarray(o0))
        assert int(state) == 0  # the step counter was reset
