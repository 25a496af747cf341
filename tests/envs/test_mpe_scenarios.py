"""The particle-world scenarios other than simple_spread (see test_mpe.py): parity with mpe2 step by step,
Rover-Tower against the spec, rendering, validation.

Parity runs in float64 (``jax.enable_x64``): mpe2 computes in float64 and rounds observations to float32, so
observations and the global state must agree to 1e-6 and rewards to 1e-9. Each episode starts from the
mpe2 world's state, copied into ours; actions are random (continuous ones multiples of 1/64, exact in both
precisions). A "crowded" start (every position scaled by 0.3) makes contacts, tags, forests and food
happen; the tests count those events so that a branch that is never reached cannot pass unnoticed.
"""

from __future__ import annotations

import copy
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trustmarl.envs.base import Discrete
from trustmarl.envs.mpe import RoverTower
from trustmarl.envs.registry import describe, make

pytest.importorskip("mpe2")

# One jitted raw step shared by all tests: equal envs hash equal, so each (env, dtype) compiles once.
_STEP = jax.jit(lambda env, key, state, actions: env._step(key, state, actions), static_argnums=0)

CLASSIC = {  # our name: (mpe2 module, mpe2 kwargs for our defaults)
    "simple": ("simple_v3", {}),
    "simple_reference": ("simple_reference_v3", {}),
    "simple_speaker_listener": ("simple_speaker_listener_v4", {}),
    "simple_push": ("simple_push_v3", {}),
    "simple_adversary": ("simple_adversary_v3", {}),
    "simple_tag": ("simple_tag_v3", {}),
    "simple_crypto": ("simple_crypto_v3", {}),
    "simple_world_comm": ("simple_world_comm_v3", {}),
}
# continuous actions: these cover every action layout (move only, move + speak, speak only)
CONTINUOUS_FAST = ("simple_reference", "simple_speaker_listener", "simple_crypto", "simple_world_comm")


def _goal(name: str, world) -> list[int]:
    """Our ``goal`` indices from an mpe2 world (goal landmarks, crypto's key)."""
    lms = world.landmarks
    index = lambda lm: next(i for i, x in enumerate(lms) if x is lm)  # noqa: E731
    if name == "simple_reference":
        return [index(world.agents[0].goal_b), index(world.agents[1].goal_b)]
    if name == "simple_speaker_listener":
        return [index(world.agents[0].goal_b)]
    if name in ("simple_push", "simple_adversary"):
        return [index(world.agents[0].goal_a)]
    if name == "simple_crypto":
        return [index(world.agents[0].goal_a), int(np.argmax(world.agents[2].key))]
    return []


def _touching(e1, e2) -> bool:
    return bool(np.linalg.norm(e1.state.p_pos - e2.state.p_pos) < e1.size + e2.size)


def _events(name: str, world) -> dict[str, int]:
    """Branches of the scenario that the current mpe2 world state exercises."""
    ag, lm = world.agents, world.landmarks
    out: dict[str, int] = {}
    if name in ("simple_tag", "simple_world_comm"):
        adv = [a for a in ag if a.adversary]
        good = [a for a in ag if not a.adversary]
        out["tag"] = sum(_touching(a, g) for a in adv for g in good)
        out["out_of_bounds"] = sum(bool(np.any(np.abs(g.state.p_pos) > 0.9)) for g in good)
        out["obstacle_contact"] = sum(_touching(a, x) for a in ag for x in lm if x.collide)
    if name == "simple_world_comm":
        forests = [x for x in lm if x.size == 0.3]
        inside = [any(_touching(a, f) for f in forests) for a in ag]
        out["hidden"] = int(any(inside) and not all(inside))
        out["food"] = sum(_touching(g, f) for g in ag if not g.adversary for f in lm if f.size == 0.03)
    if name == "simple_push":
        out["push"] = int(_touching(ag[0], ag[1]))
    return out


def _copy_world(name: str, env, world):
    return env.make_state(np.stack([a.state.p_pos for a in world.agents]),
                          np.stack([x.state.p_pos for x in world.landmarks]), _goal(name, world))


def _random_actions(env, rng, continuous: bool):
    ours, theirs = [], {}
    for g in env.groups:
        if continuous:
            x = rng.integers(0, 65, size=(g.n, g.action_space.dim)) / 64.0
            ours.append(jnp.asarray(x))
        else:
            x = rng.integers(0, g.action_space.n, size=g.n)
            ours.append(jnp.asarray(x, jnp.int32))
        for k, a in enumerate(g.agents):
            theirs[a] = x[k].astype(np.float32) if continuous else int(x[k])
    return tuple(ours), theirs


def _compare(env, ts, obs: dict, ref, where: str) -> None:
    for g, o in zip(env.groups, ts.obs):
        for k, a in enumerate(g.agents):
            np.testing.assert_allclose(np.asarray(o[k]), obs[a], atol=1e-6, rtol=0, err_msg=f"{where}: obs of {a}")
    np.testing.assert_allclose(np.asarray(ts.state), ref.state(), atol=1e-6, rtol=0, err_msg=f"{where}: state")


def _parity_episode(name: str, seed: int, continuous: bool, scale: float = 1.0, steps: int = 25) -> dict[str, int]:
    module, kwargs = CLASSIC[name]
    ref = importlib.import_module(f"mpe2.{module}").parallel_env(continuous_actions=continuous, max_cycles=steps, **kwargs)
    ref.reset(seed=seed)
    world = ref.unwrapped.world
    for e in world.entities:
        e.state.p_pos = e.state.p_pos * scale
    env = make(f"mpe/{name}", continuous_actions=continuous, max_cycles=steps)
    assert list(env.agents) == list(ref.possible_agents)
    for g in env.groups:  # spaces as mpe2's
        for a in g.agents:
            assert ref.observation_space(a).shape == (g.obs_dim,)
            sp = ref.action_space(a)
            if continuous:
                assert sp.shape == (g.action_space.dim,) and float(sp.low.min()) == 0.0 and float(sp.high.max()) == 1.0
            else:
                assert isinstance(g.action_space, Discrete) and sp.n == g.action_space.n
    assert ref.state_space.shape == (env.state_dim,)
    state, ts = env.reset_to(_copy_world(name, env, world))
    _compare(env, ts, {a: ref.unwrapped.observe(a) for a in env.agents}, ref, "reset")
    rng = np.random.default_rng(seed)
    counts: dict[str, int] = {}
    for t in range(steps):
        ours, theirs = _random_actions(env, rng, continuous)
        obs, rew, term, trunc, _ = ref.step(theirs)
        state, ts = _STEP(env, jax.random.PRNGKey(t), state, ours)
        _compare(env, ts, obs, ref, f"step {t}")
        np.testing.assert_allclose(np.asarray(ts.reward), [rew[a] for a in env.agents], atol=1e-9, rtol=0,
                                   err_msg=f"step {t}: rewards")
        assert bool(ts.truncated) == all(trunc.values()) == (t == steps - 1)
        assert not bool(ts.terminated) and not any(term.values())
        for k, v in _events(name, world).items():
            counts[k] = counts.get(k, 0) + v
    return counts


# events each scenario must show over its two discrete episodes (the crowded one makes them happen)
EXPECTED_EVENTS = {
    "simple_push": ("push",),
    "simple_tag": ("tag", "out_of_bounds", "obstacle_contact"),
    "simple_world_comm": ("tag", "out_of_bounds", "obstacle_contact", "hidden", "food"),
}


CROWDED = {"simple_push": 0.05, "simple_tag": 0.1}  # the scale of the crowded start (so that agents meet)


@pytest.mark.parametrize("name", list(CLASSIC))
def test_parity_with_mpe2_float64(name):
    with jax.enable_x64(True):
        counts = _parity_episode(name, seed=0, continuous=False)
        crowded = _parity_episode(name, seed=1, continuous=False, scale=CROWDED.get(name, 0.3))
    for k in EXPECTED_EVENTS.get(name, ()):
        assert counts.get(k, 0) + crowded.get(k, 0) > 0, f"no {k!r} event in the episodes: {counts}, {crowded}"


@pytest.mark.parametrize(
    "name", [n if n in CONTINUOUS_FAST else pytest.param(n, marks=pytest.mark.slow) for n in CLASSIC]
)
def test_parity_with_mpe2_continuous_float64(name):
    with jax.enable_x64(True):
        _parity_episode(name, seed=2, continuous=True, scale=0.5)


@pytest.mark.slow
def test_parity_float32_simple_tag():
    """The default float32 env follows mpe2's float64 over an episode with contacts (tags, obstacles):
    the stiff contact force amplifies float32 rounding (measured: at most 4e-6 over 8 crowded episodes),
    hence 1e-4."""
    name = "simple_tag"
    module, _ = CLASSIC[name]
    ref = importlib.import_module(f"mpe2.{module}").parallel_env()
    ref.reset(seed=3)
    world = ref.unwrapped.world
    for e in world.entities:
        e.state.p_pos = e.state.p_pos * 0.3
    env = make("mpe/simple_tag")
    state, _ = env.reset_to(_copy_world(name, env, world))
    rng = np.random.default_rng(3)
    for t in range(25):
        ours, theirs = _random_actions(env, rng, False)
        obs, rew, _, _, _ = ref.step(theirs)
        state, ts = _STEP(env, jax.random.PRNGKey(t), state, ours)
        assert ts.obs[0].dtype == jnp.float32
        for g, o in zip(env.groups, ts.obs):
            for k, a in enumerate(g.agents):
                np.testing.assert_allclose(np.asarray(o[k]), obs[a], atol=1e-4, rtol=0)
        np.testing.assert_allclose(np.asarray(ts.reward), [rew[a] for a in env.agents], atol=1e-4, rtol=0)


# --- Cooperative Treasure Collection ----------------------------------------------------------------------


def _ctc_pair(seed: int, steps: int, continuous: bool = False):
    from mpe2 import collect_treasure_v1

    ref = collect_treasure_v1.parallel_env(max_cycles=steps, continuous_actions=continuous)
    ref.reset(seed=seed)
    env = make("mpe/treasure_collection", max_cycles=steps, continuous_actions=continuous)
    return ref, env, ref.unwrapped.world


def _ctc_state(env, world):
    collectors = [a for a in world.agents if a.collector]
    return env.make_state(
        np.stack([a.state.p_pos for a in world.agents]), np.stack([x.state.p_pos for x in world.landmarks]),
        [x.type for x in world.landmarks], agent_vel=np.stack([a.state.p_vel for a in world.agents]),
        holding=[-1 if a.holding is None else a.holding for a in collectors], alive=[x.alive for x in world.landmarks])


def _replay_respawns(state, world, n_types: int):
    """Put into ``state`` the respawns mpe2 will draw in its next step (its ``post_step`` draws, for each
    dead treasure in order, ``uniform()``, a position and a type from the world's generator)."""
    rng = copy.deepcopy(world.np_random)
    pos, typ = np.array(state.respawn_pos), np.array(state.respawn_type)
    for i, lm in enumerate(world.landmarks):
        if not lm.alive:
            rng.uniform()
            pos[i] = rng.uniform(-0.95, 0.95, world.dim_p)
            typ[i] = int(rng.integers(0, n_types))
    return state._replace(respawn_pos=jnp.asarray(pos, state.respawn_pos.dtype), respawn_type=jnp.asarray(typ, jnp.int32))


def _ctc_steps(ref, env, world, state, steps: int, rng, continuous=False, actions=None):
    """Step both; compare everything; return the events seen (pickups, deliveries, collector overlaps)."""
    seen = {"pickup": 0, "delivery": 0, "overlap": 0, "respawn": 0}
    for t in range(steps):
        state = _replay_respawns(state, world, env.num_deposits)
        held_before = np.array(state.holding)
        dead_before = ~np.asarray(state.alive)
        if actions is None:
            ours, theirs = _random_actions(env, rng, continuous)
        else:
            ours, theirs = actions
        obs, rew, _, trunc, _ = ref.step(theirs)
        state, ts = _STEP(env, jax.random.PRNGKey(t), state, ours)
        _compare(env, ts, obs, ref, f"step {t}")
        np.testing.assert_allclose(np.asarray(ts.reward), [rew[a] for a in env.agents], atol=1e-9, rtol=0,
                                   err_msg=f"step {t}: rewards")
        assert bool(ts.truncated) == all(trunc.values())
        mpe2_holding = [-1 if a.holding is None else a.holding for a in world.agents if a.collector]
        np.testing.assert_array_equal(np.asarray(state.holding), mpe2_holding)
        np.testing.assert_array_equal(np.asarray(state.alive), [x.alive for x in world.landmarks])
        held = np.asarray(state.holding)
        seen["pickup"] += int(np.sum((held_before < 0) & (held >= 0)))
        seen["delivery"] += int(np.sum((held_before >= 0) & (held < 0)))
        seen["respawn"] += int(np.sum(dead_before & np.asarray(state.alive)))
        col = np.asarray(state.agent_pos)[: env.num_collectors]
        d = np.linalg.norm(col[:, None] - col[None], axis=-1)
        seen["overlap"] += int(np.sum(np.triu(d < 0.1, 1)))
    return state, seen


def test_treasure_collection_parity_random_episode_float64():
    """A whole 100-step episode under random actions (the pickups, respawns and rewards of mpe2)."""
    with jax.enable_x64(True):
        ref, env, world = _ctc_pair(seed=0, steps=100)
        state, ts = env.reset_to(_ctc_state(env, world))
        _compare(env, ts, {a: ref.unwrapped.observe(a) for a in env.agents}, ref, "reset")
        _, seen = _ctc_steps(ref, env, world, state, 100, np.random.default_rng(0))
    assert seen["pickup"] > 0 and seen["respawn"] > 0, seen


def test_treasure_collection_parity_staged_events_float64():
    """A hand-made start where everything happens on the first step: two collectors on two stacked
    treasures (the first free collector in order takes the first treasure, the next one the second, a third
    collector gets nothing), a holding collector on its deposit (delivers), one on the wrong deposit (keeps
    its treasure), overlapping collectors (-5 each); then random steps with a dead treasure respawning."""
    with jax.enable_x64(True):
        ref, env, world = _ctc_pair(seed=1, steps=100)  # the env of the random episode (compiled once)
        col = [a for a in world.agents if a.collector]
        dep = [a for a in world.agents if not a.collector]
        t0, t1 = world.landmarks[0], world.landmarks[1]
        t1.state.p_pos = t0.state.p_pos.copy()
        for c in col[:3]:
            c.state.p_pos = t0.state.p_pos + np.array([0.01, 0.0])
        col[3].holding, col[3].state.p_pos = 1, dep[1].state.p_pos + np.array([0.0, 0.05])
        col[4].holding, col[4].state.p_pos = 0, dep[1].state.p_pos - np.array([0.0, 0.05])
        col[5].state.p_pos = col[2].state.p_pos + np.array([0.0, 0.02])
        for i in (3, 4):
            col[i].color = 0.85 * world.treasure_colors[col[i].holding]
        state, ts = env.reset_to(_ctc_state(env, world))
        _compare(env, ts, {a: ref.unwrapped.observe(a) for a in env.agents}, ref, "reset")
        types = (t0.type, t1.type)
        noop = (jnp.zeros(6, jnp.int32), jnp.zeros(2, jnp.int32))
        state, first = _ctc_steps(ref, env, world, state, 1, None, actions=(noop, {a: 0 for a in env.agents}))
        assert first["pickup"] == 2 and first["delivery"] == 1 and first["overlap"] >= 3, first
        np.testing.assert_array_equal(np.asarray(state.holding), [types[0], types[1], -1, -1, 0, -1])
        _, rest = _ctc_steps(ref, env, world, state, 24, np.random.default_rng(1))
    assert rest["respawn"] >= 2, rest


@pytest.mark.slow
def test_treasure_collection_continuous_parity_float64():
    with jax.enable_x64(True):
        ref, env, world = _ctc_pair(seed=2, steps=40, continuous=True)
        for e in world.entities:
            e.state.p_pos = e.state.p_pos * 0.5
        state, _ = env.reset_to(_ctc_state(env, world))
        _ctc_steps(ref, env, world, state, 40, np.random.default_rng(2), continuous=True)


def test_treasure_collection_layout():
    env = make("mpe/treasure_collection")
    assert [(g.name, g.n, g.obs_dim) for g in env.groups] == [("collector", 6, 86), ("deposit", 2, 84)]
    assert env.state_dim == 684 and env.max_episode_steps == 100
    assert all(g.action_space == Discrete(5) for g in env.groups)


# --- Rover-Tower -------------------------------------------------------------------------------------------


def _rover_tower_state(env: RoverTower):
    """Rovers 0-3 at (0.1 r, 0), towers at (0, -0.5); landmarks l at (0.5, 0.1 l); tower s is paired with rover
    (s + 1) % 4 and has goal landmark 5 - s."""
    agent_pos = [[0.1 * r, 0.0] for r in range(4)] + [[0.0, -0.5]] * 4
    landmark_pos = [[0.5, 0.1 * i] for i in range(6)]
    return env.make_state(agent_pos, landmark_pos, rover_of_tower=[1, 2, 3, 0], goal=[5, 4, 3, 2])


def test_rover_tower_layout_and_reward_hand_computed():
    """Observation layout and rewards of spec §3.5 on a hand-made state, values computed by hand."""
    env = make("mpe/rover_tower")
    assert [(g.name, g.n, g.obs_dim, g.action_space) for g in env.groups] == [
        ("rover", 4, 13, Discrete(5)), ("tower", 4, 8, Discrete(5))]
    assert env.state_dim == 4 * 13 + 4 * 8 and env.max_episode_steps == 25
    state, ts = env.reset_to(_rover_tower_state(env))
    rover, tower = (np.asarray(o) for o in ts.obs)
    # rover 2 is paired with tower 1: [one-hot(1), message of tower 1 (none yet), pos, vel]
    np.testing.assert_allclose(rover[2], [0, 1, 0, 0, 0, 0, 0, 0, 0, 0.2, 0, 0, 0], atol=1e-7)
    # tower 3 is paired with rover 0 and has goal landmark 2: [one-hot(0), rover 0's position, (0.5, 0.2)]
    np.testing.assert_allclose(tower[3], [1, 0, 0, 0, 0.0, 0.0, 0.5, 0.2], atol=1e-7)
    np.testing.assert_allclose(np.asarray(ts.state), np.concatenate([rover.ravel(), tower.ravel()]))
    # Step: towers 0..3 say 0, 1, 4, 2; rovers do nothing (rover 3 pushes right). Velocity-first physics:
    # rover 3: v = 1.5 * 0.1 = 0.15, p = 0.3 + 0.015.
    actions = (jnp.array([0, 0, 0, 2], jnp.int32), jnp.array([0, 1, 4, 2], jnp.int32))
    state, ts = _STEP(env, jax.random.PRNGKey(0), state, actions)
    rover, tower = (np.asarray(o) for o in ts.obs)
    np.testing.assert_allclose(rover[3, 9:], [0.315, 0.0, 0.15, 0.0], atol=1e-6)
    np.testing.assert_allclose(rover[3, :9], [0, 0, 1, 0, 0, 0, 0, 0, 1], atol=0)  # tower 2 said 4
    np.testing.assert_allclose(rover[0, :9], [0, 0, 0, 1, 0, 0, 1, 0, 0], atol=0)  # tower 3 said 2
    # pair rewards -d2 + 10 [d2 < 0.1725]: tower s -> rover (s + 1) % 4 -> goal 5 - s
    rover_x = np.array([0.0, 0.1, 0.2, 0.315])
    d2 = np.array([(rover_x[(s + 1) % 4] - 0.5) ** 2 + (0.1 * (5 - s)) ** 2 for s in range(4)])
    assert list(d2 < 0.1725) == [False, False, True, False]  # 0.41, 0.25, 0.1242, 0.29
    pair = -d2 + 10 * (d2 < 0.1725)
    np.testing.assert_allclose(np.asarray(ts.reward), np.concatenate([pair[[3, 0, 1, 2]], pair]), atol=1e-6)
    np.testing.assert_allclose(np.asarray(env.pair_rewards(state)), pair, atol=1e-6)


def test_rover_tower_speed_limit_and_static_towers():
    """Rovers cap their speed at 1.0 (velocity first: the capped velocity moves them); pushing from rest they
    approach 1.5 * 0.1 / 0.25 = 0.6 < 1. Towers never move, whatever their action."""
    env = make("mpe/rover_tower")
    base = _rover_tower_state(env)
    fast = base._replace(agent_vel=base.agent_vel.at[:4].set(jnp.asarray([2.0, 0.0], base.agent_vel.dtype)))
    right = (jnp.full(4, 2, jnp.int32), jnp.full(4, 3, jnp.int32))
    state, _ = _STEP(env, jax.random.PRNGKey(0), fast, right)  # v = 0.75 * 2 + 0.15 = 1.65 -> 1.0
    np.testing.assert_allclose(np.asarray(state.agent_vel)[:4], [[1.0, 0.0]] * 4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(state.agent_pos)[:4, 0], 0.1 * np.arange(4) + 0.1, atol=1e-6)
    state = base
    for _ in range(40):
        state, _ = _STEP(env, jax.random.PRNGKey(0), state, right)
    np.testing.assert_allclose(np.asarray(state.agent_vel)[:4], [[0.6, 0.0]] * 4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(state.agent_pos)[4:], [[0.0, -0.5]] * 4, atol=0)
    np.testing.assert_allclose(np.asarray(state.agent_vel)[4:], 0.0, atol=0)


def test_rover_tower_reset_distribution():
    env = make("mpe/rover_tower")
    n = 512
    states, _ = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(0), n))
    r_of_t, t_of_r = np.asarray(states.rover_of_tower), np.asarray(states.tower_of_rover)
    assert np.all(np.sort(r_of_t, axis=1) == np.arange(4))  # a permutation
    np.testing.assert_array_equal(np.take_along_axis(r_of_t, t_of_r, axis=1), np.tile(np.arange(4), (n, 1)))
    assert len({tuple(p) for p in r_of_t}) == 24  # every pairing appears
    goal = np.asarray(states.goal)
    assert goal.min() == 0 and goal.max() == 5 and abs(goal.mean() - 2.5) < 0.15
    pos = np.asarray(states.agent_pos)
    assert pos.min() >= -1 and pos.max() <= 1 and abs(pos.mean()) < 0.04
    assert np.all(np.asarray(states.comm) == 0) and np.all(np.asarray(states.agent_vel) == 0)


# --- all scenarios: rendering, validation, registry --------------------------------------------------------

ALL = ["simple_spread", *CLASSIC, "rover_tower", "treasure_collection"]


def _random_state(env, rng):
    """A state built on the host (no compilation): random positions, every goal/type/pairing index 0..."""
    n, u = env.n_agents, lambda k: rng.uniform(-1, 1, size=(k, 2))  # noqa: E731
    if name_of(env) == "simple_spread":
        return env.make_state(u(n), u(n))
    if name_of(env) == "rover_tower":
        return env.make_state(u(n), u(env.n_landmarks), rover_of_tower=rng.permutation(4), goal=rng.integers(0, 6, 4))
    if name_of(env) == "treasure_collection":
        return env.make_state(u(n), u(env.num_treasures), rng.integers(0, 2, env.num_treasures),
                              holding=[0, 1, -1, -1, -1, -1], alive=[True] * 5 + [False])
    comm = np.eye(max(env.world.dim_c, 1))[:1].repeat(n, 0)[:, : env.world.dim_c]  # everybody "says" symbol A
    return env.make_state(u(n), u(env.world.n_landmarks), [0] * len(env.goal_choices()), comm=comm)


def name_of(env) -> str:
    return {"SimpleSpread": "simple_spread", "RoverTower": "rover_tower", "TreasureCollection": "treasure_collection"}.get(
        type(env).__name__, "")


@pytest.mark.parametrize("name", ALL)
def test_render_is_a_picture_that_follows_the_agents(name):
    env = make(f"mpe/{name}")
    state = _random_state(env, np.random.default_rng(0))
    frame = env.render(state)
    assert frame.shape == (320, 320, 3) and frame.dtype == np.uint8
    colors = {tuple(c) for c in frame.reshape(-1, 3)}
    assert len(colors) >= 4  # white background, black borders, at least two entity colours
    assert (frame != 255).any(axis=-1).mean() > 0.001  # entities cover part of the picture
    shifted = state._replace(agent_pos=state.agent_pos + jnp.asarray([0.3, -0.2], state.agent_pos.dtype))
    assert np.abs(env.render(shifted).astype(int) - frame).sum() > 0


def test_render_colours_follow_mpe2():
    """Entity colours are mpe2's (``color * 200``): simple_tag adversaries red, the good agent green."""
    env = make("mpe/simple_tag")
    state = env.make_state([[-0.5, 0.0], [0.0, 0.5], [0.0, -0.5], [0.5, 0.0]], [[1.2, 1.2], [-1.2, -1.2]])
    frame = env.render(state)
    centre = lambda x, y: frame[int((1.5 - y) / 3 * 320), int((x + 1.5) / 3 * 320)]  # noqa: E731
    np.testing.assert_array_equal(centre(-0.5, 0.0), [170, 70, 70])  # 200 * (0.85, 0.35, 0.35)
    np.testing.assert_array_equal(centre(0.5, 0.0), [70, 170, 70])


VALIDATION = [
    ("simple", {"max_cycles": 0}, "max_cycles must be an integer >= 1, got 0"),
    ("simple", {"continuous_actions": 1}, "continuous_actions must be true or false"),
    ("simple_reference", {"local_ratio": 2.0}, "local_ratio must be a number in \\[0, 1\\], got 2.0"),
    ("simple_adversary", {"num_good": 0}, "num_good must be an integer >= 1, got 0"),
    ("simple_tag", {"num_adversaries": 1.5}, "num_adversaries must be an integer >= 1, got 1.5"),
    ("simple_tag", {"num_obstacles": -1}, "num_obstacles must be an integer >= 0"),
    ("simple_world_comm", {"num_food": 0}, "num_food must be an integer >= 1"),
    ("rover_tower", {"n_landmarks": 11}, "n_landmarks must be an integer in \\[1, 10\\], got 11"),
    ("rover_tower", {"integration": "rk4"}, "integration must be one of 'position_first', 'velocity_first', got 'rk4'"),
    ("treasure_collection", {"num_deposits": 7}, "num_deposits must be an integer in \\[1, 6\\], got 7"),
    ("treasure_collection", {"num_treasures": 0}, "num_treasures must be an integer >= 1, got 0"),
]


@pytest.mark.parametrize("name, kwargs, match", VALIDATION)
def test_validation_names_the_value_and_what_is_allowed(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make(f"mpe/{name}", **kwargs)


def test_every_scenario_is_registered_with_a_one_line_description():
    for name in ALL:
        text = describe(f"mpe/{name}")
        assert text and "\n" not in text and len(text) < 200, (name, text)


def test_groups_follow_mpe2_roles():
    """Agents with different spaces or roles are in different groups, in mpe2's agent order."""
    layout = {
        "simple_speaker_listener": [("speaker", 1, 3), ("listener", 1, 11)],
        "simple_push": [("adversary", 1, 8), ("agent", 1, 19)],
        "simple_adversary": [("adversary", 1, 8), ("agent", 2, 10)],
        "simple_tag": [("adversary", 3, 16), ("agent", 1, 14)],
        "simple_crypto": [("eve", 1, 4), ("bob", 1, 8), ("alice", 1, 8)],
        "simple_world_comm": [("leadadversary", 1, 34), ("adversary", 3, 34), ("agent", 2, 28)],
        "simple_reference": [("agent", 2, 21)],
        "simple": [("agent", 1, 4)],
    }
    for name, expected in layout.items():
        assert [(g.name, g.n, g.obs_dim) for g in make(f"mpe/{name}").groups] == expected, name
    assert make("mpe/simple_world_comm").groups[0].action_space == Discrete(20)
    assert make("mpe/simple_reference").groups[0].action_space == Discrete(50)
    assert make("mpe/simple_world_comm", num_adversaries=1).groups[0].name == "leadadversary"


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL)
def test_env_checker_passes(name):
    from trustmarl.envs.checker import check_jax_env

    env = make(f"mpe/{name}")
    assert check_jax_env(env, max_episode_steps=env.max_episode_steps + 1) == []
