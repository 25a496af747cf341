"""Checkers and Switch (Wen et al. 2021, section 4; MA-Gym 2020): spec T8 oracles and parity with MA-Gym.

``data/magym_402763c_episodes.npz`` holds episodes of MA-Gym's own environments (commit 402763c, made
by ``data/record_magym.py``); the JAX-native versions must replay them exactly.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trustmarl.envs.checker import check_jax_env
from trustmarl.envs.grid import APPLE, LEMON, SWITCH_STARTS, SWITCH_TARGETS, checkers_fruit_layout, switch_free_cells
from trustmarl.envs.registry import env_defaults, make

DATA = Path(__file__).parent / "data" / "magym_402763c_episodes.npz"
DOWN, LEFT, UP, RIGHT, NOOP = 0, 1, 2, 3, 4

# Switch4 in 15 steps (actions of agents 0..3 per step): agents 0 and 2 cross first (2 right behind 0),
# agents 1 and 3 wait in their room and follow; all four have arrived after step 15.
SWITCH4_PLAN = (
    [(DOWN, NOOP, NOOP, NOOP), (RIGHT, NOOP, UP, NOOP)]
    + [(RIGHT, NOOP, RIGHT, NOOP)] * 4
    + [(UP, NOOP, RIGHT, NOOP), (NOOP, DOWN, DOWN, NOOP), (NOOP, LEFT, NOOP, UP)]
    + [(NOOP, LEFT, NOOP, LEFT)] * 4
    + [(NOOP, UP, NOOP, DOWN), (NOOP, NOOP, NOOP, LEFT)]
)


BATCH = 16  # every replay runs 16 episodes of max_steps steps: one compiled program per environment


@functools.lru_cache(maxsize=None)
def _replayer(env):
    """Jitted, vmapped ``_step`` replay (no auto-reset) of actions ``[BATCH, max_steps, n]``."""

    def one(actions):
        def body(state, a):
            state, ts = env._step(jax.random.PRNGKey(0), state, (a,))
            return state, (ts.reward, ts.terminated, ts.truncated, ts.obs[0], ts.state)

        state, ts0 = env.reset(jax.random.PRNGKey(0))
        _, (rew, term, trunc, obs, gstate) = jax.lax.scan(body, state, actions)
        return rew, term, trunc, jnp.concatenate([ts0.obs[0][None], obs]), gstate

    return jax.jit(jax.vmap(one))


def _replay_batch(env, actions: np.ndarray):
    """Replay ``actions`` [E <= BATCH, T <= max_steps, n] (padded with no-ops); numpy outputs cut to [E, T]."""
    e, t, n = actions.shape
    padded = np.full((BATCH, env.max_steps, n), NOOP, np.int32)
    padded[:e, :t] = actions
    rew, term, trunc, obs, gstate = (np.asarray(x) for x in _replayer(env)(jnp.asarray(padded)))
    return rew[:e, :t], term[:e, :t], trunc[:e, :t], obs[:e, : t + 1], gstate[:e, :t]


def _replay(env, actions):
    """One episode: rewards [T, n], terminated [T], truncated [T], obs [T + 1, n, d], state [T, state_dim]."""
    return tuple(x[0] for x in _replay_batch(env, np.asarray(actions)[None]))


@pytest.mark.parametrize("name", ["checkers", "switch2", "switch4"])
def test_replays_magym_episodes_exactly(name):
    """Observations, per-agent rewards and episode ends equal MA-Gym's (16 recorded episodes each)."""
    data = np.load(DATA)
    env = make(f"grid/{name}")
    actions, obs, rewards, dones, lengths = (data[f"{name}_{k}"] for k in ("actions", "obs", "rewards", "dones", "lengths"))
    assert actions.shape[0] == BATCH and actions.shape[1] == env.max_steps
    if name.startswith("switch"):
        assert (rewards == 5.0).any()  # arrivals are exercised
    rew, term, trunc, ours, _ = _replay_batch(env, actions.astype(np.int32))
    for e, length in enumerate(lengths):
        np.testing.assert_allclose(rew[e, :length], rewards[e, :length], atol=1e-6)
        np.testing.assert_allclose(ours[e, : length + 1], obs[e, : length + 1], atol=1e-7)
        done = term[e] | trunc[e]
        np.testing.assert_array_equal(done[:length], dones[e, :length])
        assert done[length - 1]
        if length < env.max_steps:
            assert term[e, length - 1] and not trunc[e, length - 1]  # ended by the task, not the time limit


def test_checkers_layout_rewards_and_sequential_moves():
    """T8: 9 apples and 9 lemons in columns 0-5; agent 0 gets +5 - 0.01 for an apple, -5 - 0.01 for a
    lemon; agent 1 +-1; eaten fruit is gone; agents move in index order."""
    layout = checkers_fruit_layout()
    assert (layout == APPLE).sum() == 9 and (layout == LEMON).sum() == 9 and not layout[:, 6:].any()
    assert layout[0, 0] == APPLE and layout[0, 1] == LEMON and layout[1, 0] == LEMON and layout[1, 1] == APPLE
    env = make("grid/checkers")
    _, ts = env.reset(jax.random.PRNGKey(0))
    np.testing.assert_allclose(np.asarray(ts.obs[0]), [[0, 0.86, 0, 0, 0, 1, 3, 0, 2, 0, 0], [0.67, 0.86, 2, 0, 0, 1, 3, 0, 0, 0, 0]])
    # agent 0: left onto the lemon (0,5), left onto the apple (0,4), right back to (0,5) (now empty);
    # agent 1: left onto the lemon (2,5), up onto the apple (1,5), no-op
    plan = [(LEFT, LEFT), (LEFT, UP), (RIGHT, NOOP)]
    rew, term, trunc, obs, state = _replay(env, np.array(plan))
    np.testing.assert_allclose(rew, [[-5.01, -1.01], [4.99, 0.99], [-0.01, -0.01]], atol=1e-6)
    assert not term.any() and not trunc.any()
    # sequential order: agent 0 moves down into (1,6) first, so agent 1's move up into it is ignored
    rew, _, _, obs, _ = _replay(env, np.array([(DOWN, UP)]))
    np.testing.assert_allclose(obs[1, :, :2], [[0.33, 0.86], [0.67, 0.86]])
    np.testing.assert_allclose(rew, [[-0.01, -0.01]], atol=1e-7)
    # and agent 1 may enter a cell agent 0 left earlier in the same step
    rew, _, _, obs, _ = _replay(env, np.array([(DOWN, NOOP), (UP, UP)]))
    np.testing.assert_allclose(obs[2, :, :2], [[0.0, 0.86], [0.33, 0.86]])


def _snake_through_all_fruit() -> list[tuple[int, int]]:
    """Agent 0 visits every fruit cell (row 0 leftwards, row 1 rightwards, row 2 leftwards); agent 1 waits."""
    plan = [(LEFT, NOOP)] * 6 + [(DOWN, NOOP)] + [(RIGHT, NOOP)] * 5 + [(DOWN, NOOP)] + [(LEFT, NOOP)] * 5
    return plan


def test_checkers_terminates_when_the_ninth_apple_is_eaten_and_truncates_at_100():
    env = make("grid/checkers")
    plan = np.array(_snake_through_all_fruit())
    rew, term, trunc, _, state = _replay(env, plan)
    first_end = int(np.argmax(term))
    # the snake eats apples at (0,4),(0,2),(0,0), (1,1),(1,3),(1,5), (2,4),(2,2),(2,0): the last one on its last step
    assert first_end == len(plan) - 1 and term[-1] and not term[:-1].any() and not trunc.any()
    assert np.isclose(rew[:, 0].sum(), 9 * 5 - 9 * 5 - 0.01 * len(plan), atol=1e-4)  # 9 apples, 9 lemons
    np.testing.assert_allclose(state[-1, 4:22], 0.0)  # no fruit left in the global state
    rew, term, trunc, _, _ = _replay(env, np.full((100, 2), NOOP))
    assert trunc[99] and not trunc[:99].any() and not term.any()
    np.testing.assert_allclose(rew.sum(axis=0), [-1.0, -1.0], atol=1e-5)


def test_switch4_optimum_is_14_4_and_arrived_agents_keep_paying():
    """T8: optimal joint play finishes at step 15 with team return 4 (5 - 0.1 * 14) = 14.4 (summed over
    agents; per agent 3.6); an agent that has arrived stops and keeps receiving -0.1."""
    env = make("grid/switch4")
    rew, term, trunc, obs, state = _replay(env, np.array(SWITCH4_PLAN))
    assert len(SWITCH4_PLAN) == 15 and term[14] and not term[:14].any() and not trunc.any()
    np.testing.assert_allclose(rew.sum(axis=0), [3.6] * 4, atol=1e-5)
    assert rew.sum() == pytest.approx(14.4, abs=1e-4)
    arrival = np.argmax(rew == 5.0, axis=0)
    np.testing.assert_array_equal(arrival, [6, 13, 7, 14])  # steps 7, 14, 8, 15
    np.testing.assert_allclose(rew[7:, 0], -0.1, atol=1e-7)  # agent 0 arrived at step 7 and pays on
    np.testing.assert_allclose(obs[-1], [[0.0, 1.0], [0.0, 0.0], [1.0, 1.0], [1.0, 0.0]])
    np.testing.assert_array_equal(state[-1, 8:12], 1.0)  # arrived flags in the global state
    # an arrived agent does not move any more
    more = np.array(SWITCH4_PLAN[:7] + [(DOWN, NOOP, NOOP, NOOP)])
    _, _, _, obs, _ = _replay(env, more)
    np.testing.assert_allclose(obs[-1, 0], [0.0, 1.0])


def test_switch_random_play_and_time_limit():
    """T8: random play over 50 steps returns >= -20 (summed over 4 agents); the episode is cut at 50."""
    env = make("grid/switch4")
    actions = np.random.default_rng(0).integers(0, 5, size=(BATCH, 50, 4))
    rew, term, trunc, _, _ = _replay_batch(env, actions)
    totals = np.array([r[: (np.argmax(t | u) + 1)].sum() for r, t, u in zip(rew, term, trunc)])
    assert np.all(totals >= -20.0 - 1e-4)
    assert np.all(trunc[:, 49] | term.any(axis=1))


def test_switch2_blocks_the_absent_agents_start_cells():
    """MA-Gym quirk kept: in Switch2 the start cells (2, 1) and (2, 5) of agents 2 and 3 stay occupied."""
    env = make("grid/switch2")
    _, _, _, obs, _ = _replay(env, np.array([(DOWN, DOWN), (DOWN, DOWN), (DOWN, DOWN)]))
    np.testing.assert_allclose(obs[-1], [[0.5, 0.17], [0.5, 0.83]])  # stopped in row 1, not row 2
    free = switch_free_cells()
    assert free.sum() == 15 and all(free[tuple(p)] for p in SWITCH_STARTS) and all(free[tuple(p)] for p in SWITCH_TARGETS)


@pytest.mark.parametrize("name", ["grid/checkers", "grid/switch2", "grid/switch4"])
def test_contract_render_and_options(name):
    env = make(name)
    if name != "grid/switch2":  # the same class as switch4: the checker's compile time is saved
        assert check_jax_env(env) == []
    state, ts = env.reset(jax.random.PRNGKey(0))
    img = env.render(state)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and img.std() > 0
    assert env.max_episode_steps == (100 if name == "grid/checkers" else 50)
    full = make(name, full_observable=True)
    _, ts_full = full.reset(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(np.asarray(ts_full.obs[0]), np.tile(np.asarray(ts.obs[0]).reshape(1, -1), (env.n_agents, 1)))
    team = make(name, reward_mode="team")
    s, _ = team.reset(jax.random.PRNGKey(0))
    a = (jnp.full((env.n_agents,), LEFT, jnp.int32),)
    r_team = np.asarray(jax.jit(team.step)(jax.random.PRNGKey(0), s, a)[1].reward)
    r_ind = np.asarray(jax.jit(env.step)(jax.random.PRNGKey(0), state, a)[1].reward)
    np.testing.assert_allclose(r_team, np.full(env.n_agents, r_ind.sum()), rtol=1e-6)
    assert "n_agents" not in env_defaults(name)


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("grid/checkers", {"max_steps": 0}, "max_steps"),
        ("grid/switch4", {"reward_mode": "sum"}, "reward_mode"),
        ("grid/switch2", {"full_observable": "yes"}, "full_observable"),
    ],
)
def test_validation(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make(name, **kwargs)


@pytest.mark.slow  # ~a minute: breadth-first search over all 15^4 joint positions
def test_switch4_no_joint_plan_finishes_before_step_15():
    """The spec's BFS (T8): with the sequential-move rule all four agents arrive at step 15 at the
    earliest. An independent numpy model of the rules, over every joint action."""
    free = switch_free_cells()
    cells = [tuple(c) for c in np.argwhere(free)]
    index = {c: i for i, c in enumerate(cells)}
    moves = np.array([(1, 0), (0, -1), (-1, 0), (0, 1), (0, 0)])
    nxt = np.zeros((len(cells), 5), np.int64)  # cell index after each move ignoring agents (-1: blocked)
    for i, (r, c) in enumerate(cells):
        for k, (dr, dc) in enumerate(moves):
            q = (r + dr, c + dc)
            nxt[i, k] = index.get(q, -1) if 0 <= q[0] < 3 and 0 <= q[1] < 7 else -1
    targets = np.array([index[tuple(t)] for t in SWITCH_TARGETS])
    starts = np.array([index[tuple(s)] for s in SWITCH_STARTS])
    joint = np.array(np.meshgrid(*[np.arange(5)] * 4, indexing="ij")).reshape(4, -1).T  # [625, 4]
    n = len(cells)
    seen = np.zeros(n**4, bool)
    code = lambda p: ((p[:, 0] * n + p[:, 1]) * n + p[:, 2]) * n + p[:, 3]  # noqa: E731
    frontier = starts[None]
    seen[code(frontier)] = True
    for depth in range(1, 15):
        new_states = []
        for chunk in np.array_split(frontier, max(1, len(frontier) // 2000)):
            pos = np.repeat(chunk, len(joint), axis=0)
            act = np.tile(joint, (len(chunk), 1))
            for i in range(4):
                arrived = pos[:, i] == targets[i]
                to = nxt[pos[:, i], act[:, i]]
                blocked = (to < 0) | arrived | np.any((pos == to[:, None]) & (np.arange(4) != i), axis=1)
                pos[:, i] = np.where(blocked, pos[:, i], to)
            assert not np.all(pos == targets, axis=1).any(), f"all arrived after {depth} steps"
            c = np.unique(code(pos))
            c = c[~seen[c]]
            seen[c] = True
            new_states.append(np.stack(np.unravel_index(c, (n,) * 4), axis=1))
        frontier = np.concatenate(new_states)
    # and step 15 is reachable (the plan above)
    rew, term, *_ = _replay(make("grid/switch4"), np.array(SWITCH4_PLAN))
    assert term[14]
