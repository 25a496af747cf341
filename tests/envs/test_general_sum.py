"""General-sum one-state games (``matrix/general_sum`` and the named 2x2 games of Wen et al. 2021)."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trustmarl.envs.checker import check_jax_env
from trustmarl.envs.matrix import GENERAL_SUM_GAMES, GeneralSumMatrixGame
from trustmarl.envs.registry import env_defaults, make

NAMED = {
    "matrix/matching_pennies": [[[1, -1], [-1, 1]], [[-1, 1], [1, -1]]],
    "matrix/prisoners_dilemma": [[[3, 1], [4, 2]], [[3, 4], [1, 2]]],
    "matrix/chicken": [[[3, 2], [4, 1]], [[3, 4], [2, 1]]],
    "matrix/stag_hunt": [[[4, 1], [3, 2]], [[4, 3], [1, 2]]],
}


def _rewards_of_every_joint_action(env) -> dict[tuple, np.ndarray]:
    counts = [g.action_space.n for g in env.groups for _ in range(g.n)]
    joints = np.array(list(itertools.product(*[range(c) for c in counts])), dtype=np.int32)
    state, _ = env.reset(jax.random.PRNGKey(0))

    def one(joint):
        actions, start = [], 0
        for g in env.groups:
            actions.append(joint[start : start + g.n])
            start += g.n
        return env.step(jax.random.PRNGKey(1), state, tuple(actions))[1].reward

    rewards = np.asarray(jax.jit(jax.vmap(one))(jnp.asarray(joints)))
    return {tuple(int(v) for v in j): r for j, r in zip(joints, rewards)}


@pytest.mark.parametrize("name", sorted(NAMED))
def test_named_games_pay_each_agent_its_own_payoff(name):
    """The payoffs of Wen et al. 2021 / the reference code (spec section 3.1), per agent."""
    env = make(name)
    assert env_defaults(name) == {}  # fixed games: nothing to configure
    payoff = np.array(NAMED[name], np.float32)
    rewards = _rewards_of_every_joint_action(env)
    assert len(rewards) == 4
    for (a1, a2), r in rewards.items():
        np.testing.assert_array_equal(r, payoff[:, a1, a2])
    np.testing.assert_array_equal(np.asarray(GENERAL_SUM_GAMES[name.split("/")[1]]), payoff)


@pytest.mark.parametrize("shape", [(2, 2, 2), (3, 2, 3, 2), (2, 4, 3), (1, 3)])
def test_user_payoff_tensor(shape):
    payoffs = np.random.default_rng(sum(shape)).normal(size=shape).astype(np.float32)
    env = make("matrix/general_sum", payoffs=payoffs.tolist())
    hash(env)
    assert env.n_agents == shape[0]
    assert [g.action_space.n for g in env.groups for _ in range(g.n)] == list(shape[1:])
    for joint, r in _rewards_of_every_joint_action(env).items():
        np.testing.assert_array_equal(r, payoffs[(slice(None),) + joint])


def test_env_checker_passes():
    assert check_jax_env(make("matrix/general_sum", payoffs=np.ones((3, 2, 3, 2)).tolist())) == []


@pytest.mark.parametrize(
    "payoffs, match",
    [
        (3.0, r"rank >= 2"),
        ([1.0, 2.0], r"rank >= 2"),
        ([[1.0, 2.0], [3.0, 4.0]], r"one entry per agent, i.e. 1"),  # a cooperative payoff given by mistake
        ([[[1.0, 2.0], [3.0, 4.0]]] * 3, r"shape \(3, 2, 2\).*i.e. 2"),
        ([[[1.0], [2.0]], [[3.0], [4.0]]], r"agent 1\) has 1 action"),
        ([[[1.0, 2.0], [3.0]], [[1.0, 2.0], [3.0, 4.0]]], "rectangular"),
        ([[[1.0, float("nan")], [3.0, 4.0]], [[1.0, 2.0], [3.0, 4.0]]], "finite"),
    ],
)
def test_bad_payoffs_are_rejected_with_the_value_and_what_is_allowed(payoffs, match):
    with pytest.raises(ValueError, match=match):
        make("matrix/general_sum", payoffs=payoffs)


def test_named_games_take_no_payoffs_and_default_is_matching_pennies():
    with pytest.raises(KeyError, match="payoffs"):
        make("matrix/chicken", payoffs=[[[0.0]]])
    assert make("matrix/general_sum") == GeneralSumMatrixGame()
    np.testing.assert_array_equal(make("matrix/general_sum").payoff_array, np.array(NAMED["matrix/matching_pennies"]))


def test_one_step_episodes_reset():
    env = make("matrix/matching_pennies")
    step = jax.jit(env.step)
    state, _ = env.reset(jax.random.PRNGKey(0))
    for i in range(3):
        state, ts = step(jax.random.PRNGKey(i), state, (jnp.array([0, 0], jnp.int32),))
        assert bool(ts.terminated) and int(state) == 0
        np.testing.assert_array_equal(np.asarray(ts.reward), [1.0, -1.0])
