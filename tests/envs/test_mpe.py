"""Tests of the JAX ``simple_spread`` against mpe2's ``simple_spread_v3`` (the reference)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trustmarl.envs.base import Discrete
from trustmarl.envs.mpe import SimpleSpread
from trustmarl.envs.registry import make

simple_spread_v3 = pytest.importorskip("mpe2.simple_spread_v3")

# One jitted step shared by all tests: equal envs hash equal, so each (env, dtype) compiles once.
_STEP = jax.jit(lambda env, key, state, actions: env.step(key, state, actions), static_argnums=0)


def _mpe2_env(n: int, local_ratio: float = 0.5, max_cycles: int = 25):
    return simple_spread_v3.parallel_env(
        N=n, local_ratio=local_ratio, max_cycles=max_cycles, continuous_actions=False
    )


def _rollout_pair(n: int, seed: int, local_ratio: float = 0.5, max_cycles: int = 25):
    """Run mpe2 and ours from the same start with the same random actions.

    Yields, per step: (mpe2 obs [N, obs_dim], mpe2 state, mpe2 rewards [N], mpe2 truncated, mpe2
    agent pos/vel (float64), our TimeStep).
    """
    ref = _mpe2_env(n, local_ratio, max_cycles)
    names = [f"agent_{i}" for i in range(n)]
    obs, _ = ref.reset(seed=seed)
    world = ref.unwrapped.world
    env = make("mpe/simple_spread", n_agents=n, local_ratio=local_ratio, max_cycles=max_cycles)
    state, ts = env.reset_to(
        np.stack([a.state.p_pos for a in world.agents]), np.stack([lm.state.p_pos for lm in world.landmarks])
    )
    np.testing.assert_allclose(np.asarray(ts.obs[0]), np.stack([obs[k] for k in names]), atol=1e-6)
    np.testing.assert_allclose(np.asarray(ts.state), ref.state(), atol=1e-6)
    rng = np.random.default_rng(1000 + seed)
    key = jax.random.PRNGKey(seed)
    for _ in range(max_cycles):
        actions = rng.integers(0, 5, size=n)
        obs, rew, term, trunc, _ = ref.step({k: int(a) for k, a in zip(names, actions)})
        assert not any(term.values())
        key, sub = jax.random.split(key)
        state, ts = _STEP(env, sub, state, (jnp.asarray(actions, dtype=jnp.int32),))
        yield (
            np.stack([obs[k] for k in names]),
            ref.state(),
            np.array([rew[k] for k in names]),
            all(trunc.values()),
            np.stack([a.state.p_pos for a in world.agents]),
            np.stack([a.state.p_vel for a in world.agents]),
            ts,
        )


def _check_parity(n, seed, local_ratio, atol_obs, atol_rew, max_cycles=25):
    steps = 0
    collisions = 0
    for t, (obs, gstate, rew, trunc, _, _, ts) in enumerate(_rollout_pair(n, seed, local_ratio, max_cycles)):
        steps += 1
        # final_obs / final_state are the observation the step ended in (before any auto-reset)
        np.testing.assert_allclose(np.asarray(ts.final_obs[0]), obs, atol=atol_obs, rtol=0, err_msg=f"step {t}")
        np.testing.assert_allclose(np.asarray(ts.final_state), gstate, atol=atol_obs, rtol=0, err_msg=f"step {t}")
        np.testing.assert_allclose(np.asarray(ts.reward), rew, atol=atol_rew, rtol=0, err_msg=f"step {t}")
        assert bool(ts.truncated) == trunc == (t == max_cycles - 1)
        assert not bool(ts.terminated)
        if not trunc:  # no reset: obs is the step's observation (up to XLA fusion rounding)
            np.testing.assert_allclose(np.asarray(ts.obs[0]), np.asarray(ts.final_obs[0]), atol=1e-6, rtol=0)
        collisions += int(np.any(rew != rew.mean()))
    assert steps == max_cycles
    return collisions


@pytest.mark.parametrize("n", [3, 5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_parity_with_mpe2_float64(n, seed):
    """With x64 on, our physics is mpe2's float64 physics: obs (float32 in mpe2) agree to float32
    rounding, rewards to 1e-9."""
    with jax.enable_x64(True):
        _check_parity(n, seed, 0.5, atol_obs=1e-6, atol_rew=1e-9)


@pytest.mark.parametrize("n", [3, 5])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_parity_with_mpe2_float32(n, seed):
    """The default float32 env follows mpe2 (float64) over whole episodes.

    The stiff contact force (100 N per unit of penetration, dt = 0.1) amplifies float32 rounding:
    errors are ~1e-6 without contacts but reach ~1e-5..1e-4 after several collisions (measured over
    30 seeds: max 1.1e-4 at N = 5), hence 2e-4 here. Exactness is checked in float64 above; a wrong
    formula or a flipped collision penalty (0.5) is far above this tolerance."""
    _check_parity(n, seed, 0.5, atol_obs=2e-4, atol_rew=2e-4)


def test_parity_float64_physics_and_local_ratio():
    """Positions/velocities match mpe2 to 1e-10; other local_ratio values mix rewards like mpe2;
    the rollouts include collisions (so the contact forces and the -1 penalties are exercised)."""
    with jax.enable_x64(True):
        total_collisions = 0
        for local_ratio, seed in ((0.0, 5), (1.0, 6)):
            for _, _, rew, _, pos, vel, ts in _rollout_pair(3, seed, local_ratio, max_cycles=25):
                np.testing.assert_allclose(np.asarray(ts.final_obs[0])[:, 0:2], vel, atol=1e-10, rtol=0)
                np.testing.assert_allclose(np.asarray(ts.final_obs[0])[:, 2:4], pos, atol=1e-10, rtol=0)
                np.testing.assert_allclose(np.asarray(ts.reward), rew, atol=1e-9, rtol=0)
                total_collisions += int(np.any(rew != rew.mean()))
        assert total_collisions > 0


def test_short_episode_truncation_parity():
    with jax.enable_x64(True):
        _check_parity(3, 7, 0.5, atol_obs=1e-6, atol_rew=1e-9, max_cycles=7)


@pytest.mark.parametrize("n", [1, 2, 3, 6])
def test_spaces_match_mpe2(n):
    ref = _mpe2_env(n)
    env = SimpleSpread(n_agents=n)
    (g,) = env.groups
    assert g.name == "agent" and g.agents == tuple(ref.possible_agents)
    assert g.obs_dim == ref.observation_space("agent_0").shape[0]
    assert isinstance(g.action_space, Discrete) and g.action_space.n == ref.action_space("agent_0").n == 5
    assert env.state_dim == ref.state_space.shape[0] == n * g.obs_dim


def test_jit_vmap_64_envs():
    env = make("mpe/simple_spread")
    n_envs = 64
    keys = jax.random.split(jax.random.PRNGKey(0), n_envs)
    state, ts = jax.jit(jax.vmap(env.reset))(keys)
    assert ts.obs[0].shape == (n_envs, 3, 18) and ts.obs[0].dtype == jnp.float32
    assert ts.state.shape == (n_envs, 54)

    @jax.jit
    def rollout(state, key):
        def body(state, key):
            k_act, k_step = jax.random.split(key)
            actions = jax.random.randint(k_act, (n_envs, 3), 0, 5)
            state, ts = jax.vmap(env.step)(jax.random.split(k_step, n_envs), state, (actions,))
            return state, (ts.reward, ts.truncated, ts.final_obs[0], actions)

        return jax.lax.scan(body, state, jax.random.split(key, 30))

    state0 = state
    state, (reward, truncated, final_obs, actions) = rollout(state, jax.random.PRNGKey(1))
    assert reward.shape == (30, n_envs, 3) and bool(jnp.all(jnp.isfinite(reward)))
    assert bool(jnp.all(reward <= 0))
    # every env is truncated exactly at steps 25 (index 24) and nowhere else in 30 steps
    np.testing.assert_array_equal(np.asarray(truncated), np.broadcast_to((np.arange(30) == 24)[:, None], (30, n_envs)))
    # the batched run equals an unbatched run of env 5 with the same actions
    s = jax.tree.map(lambda x: x[5], state0)
    for t in range(3):
        s, ts1 = _STEP(env, jax.random.PRNGKey(0), s, (actions[t, 5],))
        np.testing.assert_allclose(np.asarray(ts1.obs[0]), np.asarray(final_obs[t, 5]), atol=1e-6)
        np.testing.assert_allclose(np.asarray(ts1.reward), np.asarray(reward[t, 5]), atol=1e-6)


def test_reset_distribution_matches_mpe2_ranges():
    env = SimpleSpread(n_agents=4)
    state, ts = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(0), 2000))
    for x in (state.agent_pos, state.landmark_pos):
        x = np.asarray(x)
        assert x.min() >= -1.0 and x.max() <= 1.0  # mpe2: np_random.uniform(-1, +1)
        assert x.min() < -0.99 and x.max() > 0.99
        assert abs(x.mean()) < 0.02 and abs(x.std() - 1 / np.sqrt(3)) < 0.01
    assert np.all(np.asarray(state.agent_vel) == 0) and np.all(np.asarray(state.step) == 0)
    # agents and landmarks are sampled independently
    assert not np.allclose(np.asarray(state.agent_pos), np.asarray(state.landmark_pos))
    np.testing.assert_array_equal(np.asarray(ts.reward), 0.0)
    # the observation layout: [vel, pos, landmark - pos, others - pos, comm zeros]
    obs = np.asarray(ts.obs[0])
    pos = np.asarray(state.agent_pos)
    np.testing.assert_allclose(obs[:, :, 2:4], pos, atol=0)
    np.testing.assert_allclose(obs[:, 1, 4:6], np.asarray(state.landmark_pos)[:, 0] - pos[:, 1], atol=1e-6)
    np.testing.assert_allclose(obs[:, 1, 12:14], pos[:, 0] - pos[:, 1], atol=1e-6)
    np.testing.assert_allclose(obs[:, 1, 14:16], pos[:, 2] - pos[:, 1], atol=1e-6)
    assert np.all(obs[:, :, -6:] == 0)


def test_auto_reset_property():
    """Over many random steps of 64 envs with short episodes: ``final_obs`` is what the raw step
    produced, and after ``done`` the obs/state are exactly a fresh reset from the reset key."""
    env = SimpleSpread(n_agents=3, max_cycles=3)
    n_envs = 64
    # separately jitted functions may differ by float rounding (XLA fusion), hence the 1e-6
    close = lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, rtol=0)  # noqa: E731

    @jax.jit
    def step_and_reference(step_keys, state, actions):
        """The auto-resetting step, and the raw step/reset from the same split keys."""
        split = jax.vmap(jax.random.split)(step_keys)
        return (
            jax.vmap(env.step)(step_keys, state, actions),
            jax.vmap(env._step)(split[:, 0], state, actions),
            jax.vmap(env._reset)(split[:, 1]),
        )

    state, _ = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(0), n_envs))
    key = jax.random.PRNGKey(1)
    n_done = 0
    for t in range(8):
        key, k_act, k_step = jax.random.split(key, 3)
        actions = (jax.random.randint(k_act, (n_envs, 3), 0, 5),)
        step_keys = jax.random.split(k_step, n_envs)
        (new_state, ts), (raw_state, raw_ts), (fresh_state, fresh_ts) = step_and_reference(step_keys, state, actions)
        done = np.asarray(ts.done)
        assert np.all(done == ((t + 1) % 3 == 0))
        n_done += done.sum()
        close(ts.final_obs[0], raw_ts.obs[0])
        close(ts.final_state, raw_ts.state)
        close(ts.reward, raw_ts.reward)
        expect_obs = np.where(done[:, None, None], np.asarray(fresh_ts.obs[0]), np.asarray(raw_ts.obs[0]))
        close(ts.obs[0], expect_obs)
        expect_pos = np.where(done[:, None, None], np.asarray(fresh_state.agent_pos), np.asarray(raw_state.agent_pos))
        close(new_state.agent_pos, expect_pos)
        np.testing.assert_array_equal(np.asarray(new_state.step), np.where(done, 0, (t + 1) % 3))
        if done.any():  # a fresh episode differs from the one that ended
            assert not np.allclose(np.asarray(ts.obs[0]), np.asarray(ts.final_obs[0]))
        state = new_state
    assert n_done == 2 * n_envs


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_agents": 0}, "n_agents"),
        ({"n_agents": 2.5}, "n_agents"),
        ({"local_ratio": 1.5}, "local_ratio"),
        ({"local_ratio": -0.1}, "local_ratio"),
        ({"max_cycles": 0}, "max_cycles"),
    ],
)
def test_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make("mpe/simple_spread", **kwargs)


def test_hashable_static_argument():
    env = make("mpe/simple_spread", n_agents=4)
    assert hash(env) == hash(SimpleSpread(n_agents=4)) and env == SimpleSpread(n_agents=4)
    f = jax.jit(lambda e, k: e.reset(k)[1].state, static_argnums=0)
    assert f(env, jax.random.PRNGKey(0)).shape == (env.state_dim,)


# --- seed 000's Spread-2 / Spread-3 rewards, continuous actions, integration order ----------------------

def test_spread2_paper_reward_is_twice_mpe2s_mixed_reward():
    """Spread-2 with the paper's reward (``reward_mode="ful"``: global - #collisions) over an mpe2 episode:
    the same physics and observations as mpe2, and rewards exactly twice mpe2's ``local_ratio=0.5`` mix."""
    with jax.enable_x64(True):
        ref = _mpe2_env(2)
        names = ["agent_0", "agent_1"]
        ref.reset(seed=11)
        world = ref.unwrapped.world
        env = make("mpe/simple_spread", n_agents=2, reward_mode="ful")
        assert env.groups[0].obs_dim == 12  # seed 000 §3.2: 12 for N = L = 2
        state, _ = env.reset_to(np.stack([a.state.p_pos for a in world.agents]),
                                np.stack([lm.state.p_pos for lm in world.landmarks]))
        rng = np.random.default_rng(11)
        for t in range(25):
            actions = rng.integers(0, 5, size=2)
            obs, rew, _, trunc, _ = ref.step({k: int(a) for k, a in zip(names, actions)})
            state, ts = _STEP(env, jax.random.PRNGKey(t), state, (jnp.asarray(actions, jnp.int32),))
            np.testing.assert_allclose(np.asarray(ts.final_obs[0]), np.stack([obs[k] for k in names]), atol=1e-6)
            np.testing.assert_allclose(np.asarray(ts.reward), 2 * np.array([rew[k] for k in names]), atol=1e-9)
            assert bool(ts.truncated) == all(trunc.values())


# three agents in a row (pairwise distances 0.2, 0.25, 0.05 < 0.3) and landmarks L0=(0,1), L1=(1,0), L2=(0,-1)
_ROW = np.array([[0.0, 0.0], [0.2, 0.0], [0.25, 0.0]])
_LANDMARKS = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, -1.0]])
_D12 = np.sqrt(0.25 ** 2 + 1)  # |p_2 - L2|


@pytest.mark.parametrize(
    "mode, expected",
    [
        # Sep: r_i = -|p_i - L_i|
        ("sep", [-1.0, -0.8, -_D12]),
        # Mix: r_0 = r_1 = -(min_{0,1} d(., L0) + min_{0,1} d(., L1)) - 1[collide(0, 1)] = -(1 + 0.8) - 1; r_2 = -|p_2 - L2|
        ("mix", [-2.8, -2.8, -_D12]),
        # Ful: -(1 + 0.75 + 1) - 2 collisions each
        ("ful", [-4.75, -4.75, -4.75]),
        # mpe2: 0.5 * (-2.75) + 0.5 * (-2)
        ("mpe2", [-2.375, -2.375, -2.375]),
    ],
)
def test_spread3_reward_modes_hand_computed(mode, expected):
    """Seed 000 Appendix D rewards (spec §3.3) on a hand-made state. With zero velocities the first step
    does not move anybody (``p += v dt`` comes first), so its reward is the reward of the initial state;
    after a second no-op step only the agents that collide in that mode have been pushed apart."""
    env = make("mpe/simple_spread", n_agents=3, reward_mode=mode)
    state, _ = env.reset_to(_ROW, _LANDMARKS)
    noop = (jnp.zeros(3, jnp.int32),)
    state, ts = _STEP(env, jax.random.PRNGKey(0), state, noop)
    np.testing.assert_allclose(np.asarray(state.agent_pos), _ROW, atol=1e-7)
    np.testing.assert_allclose(np.asarray(ts.reward), expected, atol=1e-6)
    state, _ = _STEP(env, jax.random.PRNGKey(0), state, noop)
    moved = np.any(np.abs(np.asarray(state.agent_pos) - _ROW) > 1e-6, axis=1)
    pushed = {"sep": [False, False, False], "mix": [True, True, False], "ful": [True, True, True], "mpe2": [True] * 3}
    np.testing.assert_array_equal(moved, pushed[mode])


def test_continuous_actions_parity_float64():
    """``continuous_actions=True`` follows mpe2's ``Box(0, 1, 5)`` spread: force 5 (a[2] - a[1], a[4] - a[3]).
    Actions are multiples of 1/64, exact in float32 and float64."""
    with jax.enable_x64(True):
        ref = simple_spread_v3.parallel_env(N=3, max_cycles=25, continuous_actions=True)
        names = [f"agent_{i}" for i in range(3)]
        obs, _ = ref.reset(seed=4)
        world = ref.unwrapped.world
        env = make("mpe/simple_spread", continuous_actions=True)
        g = env.groups[0]
        assert g.action_space.kind == "continuous" and g.action_space.dim == 5
        assert (g.action_space.low, g.action_space.high) == (0.0, 1.0)
        state, _ = env.reset_to(np.stack([a.state.p_pos for a in world.agents]),
                                np.stack([lm.state.p_pos for lm in world.landmarks]))
        rng = np.random.default_rng(4)
        for t in range(25):
            a = rng.integers(0, 65, size=(3, 5)) / 64.0
            obs, rew, _, _, _ = ref.step({k: a[i].astype(np.float32) for i, k in enumerate(names)})
            state, ts = _STEP(env, jax.random.PRNGKey(t), state, (jnp.asarray(a),))
            np.testing.assert_allclose(np.asarray(ts.final_obs[0]), np.stack([obs[k] for k in names]), atol=1e-6)
            np.testing.assert_allclose(np.asarray(ts.reward), [rew[k] for k in names], atol=1e-9)
            np.testing.assert_allclose(np.asarray(ts.final_obs[0])[:, 2:4],  # before the auto-reset at the end
                                       np.stack([x.state.p_pos for x in world.agents]), atol=1e-10)


def test_integration_orders():
    """mpe2 moves with the old velocity (``p += v dt`` first); the original MPE (``velocity_first``, seed 000's
    physics) moves with the new one. One step of agent 0 pushing right (force 5) from v = (1, 0)."""
    for order, x_after in (("position_first", 0.1 * 1.0), ("velocity_first", 0.1 * (0.75 * 1.0 + 5 * 0.1))):
        env = make("mpe/simple_spread", n_agents=1, integration=order)
        state, _ = env.reset_to([[0.0, 0.0]], [[0.5, 0.5]], agent_vel=[[1.0, 0.0]])
        state, _ = _STEP(env, jax.random.PRNGKey(0), state, (jnp.array([2], jnp.int32),))  # 2 = right
        np.testing.assert_allclose(np.asarray(state.agent_vel), [[0.75 + 0.5, 0.0]], atol=1e-6)
        np.testing.assert_allclose(np.asarray(state.agent_pos), [[x_after, 0.0]], atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"reward_mode": "team"}, "reward_mode must be one of 'mpe2', 'ful', 'sep', 'mix', got 'team'"),
        ({"reward_mode": "mix", "n_agents": 2}, "reward_mode='mix' .* needs n_agents=3"),
        ({"reward_mode": "ful", "local_ratio": 0.0}, "local_ratio=0.0 only applies to reward_mode='mpe2'"),
        ({"integration": "euler"}, "integration must be one of 'position_first', 'velocity_first'"),
        ({"continuous_actions": "yes"}, "continuous_actions must be true or false"),
    ],
)
def test_validation_of_variants(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make("mpe/simple_spread", **kwargs)
