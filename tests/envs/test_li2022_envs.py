"""The environments of Li et al. 2022 (MAMT): Spread-2 and Spread-3-Sep/Mix/Ful (``mpe/spread_*``), the
Discrete(16) incremental Multi-Walker and the old-reward Pursuit (``sisl/*_li2022``), 25-step episodes.

Rewards are checked on hand-placed states against a NumPy oracle written here from the paper's
definitions; the Multi-Walker wrapper's decoding, clipping and reset, and the time limit, mostly on a
stub environment (no Box2D), plus a few steps of the real SISL environments.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trustmarl.envs import registry
from trustmarl.envs.host.pettingzoo_adapter import PettingZooAdapter

PAPER_MPE = ("mpe/spread_2", "mpe/spread_3_sep", "mpe/spread_3_mix", "mpe/spread_3_ful")


# =====================================================================================================
# Spread-2 / Spread-3-Sep / Mix / Ful
# =====================================================================================================

def reward_oracle(name: str, agents: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Per-agent rewards from Li et al. 2022 (App. D, F.1), by loops. Agent radius 0.15: collide below 0.3."""
    n = len(agents)
    d = lambda x, y: float(np.sqrt(np.sum((x - y) ** 2)))  # noqa: E731
    collide = lambda i, j: i != j and d(agents[i], agents[j]) < 0.3  # noqa: E731
    if name == "mpe/spread_3_sep":  # each agent its own landmark, no collisions
        return np.array([-d(agents[i], landmarks[i]) for i in range(n)])
    if name == "mpe/spread_3_mix":  # agents 0, 1 share landmarks 0, 1 and their collision; agent 2 alone
        pair = -sum(min(d(agents[a], landmarks[lm]) for a in (0, 1)) for lm in (0, 1)) - float(collide(0, 1))
        return np.array([pair, pair, -d(agents[2], landmarks[2])])
    glob = -sum(min(d(agents[a], landmarks[lm]) for a in range(n)) for lm in range(n))
    return np.array([glob - sum(collide(i, j) for j in range(n)) for i in range(n)])


# Hand-placed states: agents 0 and 1 overlap (0.1 apart), agent 2 overlaps agent 0 in some of them.
STATES = {
    "apart": (np.array([[0.5, 0.5], [-0.5, 0.4], [0.0, -0.7]]), np.array([[0.4, 0.6], [-0.2, 0.1], [0.9, -0.9]])),
    "pair": (np.array([[0.0, 0.0], [0.1, 0.0], [0.8, 0.8]]), np.array([[0.3, -0.2], [-0.6, 0.5], [0.0, 0.9]])),
    "three": (np.array([[0.0, 0.0], [0.1, 0.0], [0.05, 0.12]]), np.array([[0.7, 0.7], [-0.7, -0.3], [0.2, -0.8]])),
}


@pytest.fixture(scope="module")
def stepped():
    """One no-op step from every hand-placed state, per env and integration order: positions after
    the step and rewards. With mpe2's order (``position_first``) nothing moves in the first step from
    rest, so the rewards are those of the placed positions, overlaps included; with the original order
    (the presets' default) contact forces separate overlapping agents at once."""
    out = {}
    for name in PAPER_MPE:
        for integration in ("velocity_first", "position_first"):
            env = registry.make(name, integration=integration)
            step = jax.jit(env._step)
            for key, (agents, landmarks) in STATES.items():
                n = env.n_agents
                state, _ = env.reset_to(agents[:n], landmarks[:n])
                new, ts = step(jax.random.PRNGKey(0), state, (jnp.zeros(n, jnp.int32),))
                out[name, integration, key] = (np.asarray(new.agent_pos), np.asarray(new.landmark_pos),
                                               np.asarray(ts.reward))
    return out


@pytest.mark.parametrize("integration", ["velocity_first", "position_first"])
@pytest.mark.parametrize("name", PAPER_MPE)
@pytest.mark.parametrize("key", sorted(STATES))
def test_spread_rewards_against_oracle(stepped, name, integration, key):
    agents, landmarks, reward = stepped[name, integration, key]
    if integration == "position_first":  # the placed positions themselves
        np.testing.assert_array_equal(agents, STATES[key][0][: len(agents)].astype(np.float32))
    np.testing.assert_allclose(reward, reward_oracle(name, agents, landmarks), atol=1e-5)


def test_spread_collision_penalties_on_placed_overlaps(stepped):
    placed = lambda name, key: stepped[name, "position_first", key]  # noqa: E731
    dist = lambda a, lm: np.linalg.norm(a - lm, axis=-1)  # noqa: E731
    # Sep: overlaps cost nothing
    agents, landmarks, reward = placed("mpe/spread_3_sep", "three")
    np.testing.assert_allclose(reward, -dist(agents, landmarks), atol=1e-6)
    # Mix: agents 0 and 1 pay 1 for their overlap; agent 2 overlaps both at no cost
    agents, landmarks, reward = placed("mpe/spread_3_mix", "three")
    pair = -sum(np.min(dist(agents[:2], lm)) for lm in landmarks[:2])
    np.testing.assert_allclose(reward, [pair - 1.0, pair - 1.0, -dist(agents[2], landmarks[2])], atol=1e-6)
    # Ful: all three within 0.3 of each other, each pays 2
    agents, landmarks, reward = placed("mpe/spread_3_ful", "three")
    glob = -sum(np.min(dist(agents, lm)) for lm in landmarks)
    np.testing.assert_allclose(reward, glob - 2.0, atol=1e-6)
    # Spread-2: the overlapping pair pays 1 each
    agents, landmarks, reward = placed("mpe/spread_2", "pair")
    glob = -sum(np.min(dist(agents, lm)) for lm in landmarks)
    np.testing.assert_allclose(reward, glob - 1.0, atol=1e-6)


def test_spread_contacts_as_defined(stepped):
    # Sep: nobody collides, so overlapping agents do not push each other
    agents, _, _ = stepped["mpe/spread_3_sep", "velocity_first", "three"]
    np.testing.assert_allclose(agents, STATES["three"][0], atol=1e-7)
    # Mix: agents 0 and 1 push each other apart; agent 2 passes through them
    agents, _, _ = stepped["mpe/spread_3_mix", "velocity_first", "three"]
    assert np.linalg.norm(agents[0] - agents[1]) > 0.3
    np.testing.assert_allclose(agents[2], STATES["three"][0][2], atol=1e-7)
    # Ful: everybody pushes everybody
    agents, _, _ = stepped["mpe/spread_3_ful", "velocity_first", "three"]
    assert np.all(np.abs(agents - STATES["three"][0]).max(axis=1) > 1e-3)


def test_paper_spreads_fix_team_and_reward_and_use_the_original_integration():
    expect = {"mpe/spread_2": (2, "ful", 12), "mpe/spread_3_sep": (3, "sep", 18),
              "mpe/spread_3_mix": (3, "mix", 18), "mpe/spread_3_ful": (3, "ful", 18)}
    for name, (n, mode, obs_dim) in expect.items():
        env = registry.make(name)
        assert (env.n_agents, env.reward_mode, env.obs_dim, env.max_cycles) == (n, mode, obs_dim, 25)
        assert registry.env_defaults(name) == {"max_cycles": 25, "continuous_actions": False,
                                               "integration": "velocity_first"}
        assert "Li et al. 2022" in registry.describe(name)
        with pytest.raises(KeyError, match="reward_mode"):
            registry.make(name, reward_mode="mpe2")
    # velocity first: an agent pushed from rest moves in the very first step (mpe2's order: not yet)
    for name, moves in (("mpe/spread_2", True), ("mpe/simple_spread", False)):
        env = registry.make(name)
        n = env.n_agents
        state, _ = env.reset_to(np.array([[0.0, 0.0], [0.9, 0.9], [-0.9, 0.9]])[:n], np.zeros((n, 2)))
        new, _ = env._step(jax.random.PRNGKey(0), state, (jnp.array([2] + [0] * (n - 1), jnp.int32),))
        assert bool(np.abs(np.asarray(new.agent_pos[0])).max() > 1e-3) == moves


def test_paper_spread_truncates_at_25():
    env = registry.make("mpe/spread_3_mix")
    state, _ = env.reset(jax.random.PRNGKey(1))

    def body(state, key):
        state, ts = env.step(key, state, (jnp.zeros(3, jnp.int32),))
        return state, (ts.truncated, ts.terminated)

    _, (trunc, term) = jax.jit(lambda s: jax.lax.scan(body, s, jax.random.split(jax.random.PRNGKey(2), 60)))(state)
    assert np.flatnonzero(np.asarray(trunc)).tolist() == [24, 49] and not np.asarray(term).any()


# =====================================================================================================
# Multi-Walker: Discrete(16) incremental torques
# =====================================================================================================

class StubWalkers:
    """A Parallel API env with Multi-Walker's spaces that records the torques it is given and ends
    (terminates) its episodes after ``end_after`` steps."""

    def __init__(self, end_after: int = 1000, n: int = 2):
        from gymnasium.spaces import Box

        self.possible_agents = [f"walker_{i}" for i in range(n)]
        self.agents = []
        self._obs = Box(-np.inf, np.inf, (3,), np.float32)
        self._act = Box(-1.0, 1.0, (4,), np.float32)
        self.end_after = end_after
        self.received: list[dict] = []
        self.t = 0

    def observation_space(self, agent):
        return self._obs

    def action_space(self, agent):
        return self._act

    def _obs_dict(self):
        return {a: np.full(3, self.t, np.float32) for a in self.agents}

    def reset(self, seed=None, options=None):
        self.agents, self.t = list(self.possible_agents), 0
        return self._obs_dict(), {a: {} for a in self.agents}

    def step(self, actions):
        self.received.append({a: np.asarray(v) for a, v in actions.items()})
        self.t += 1
        done = self.t >= self.end_after
        agents = list(self.agents)
        obs = self._obs_dict()
        if done:
            self.agents = []
        return (obs, {a: 1.0 for a in agents}, {a: done for a in agents}, {a: False for a in agents},
                {a: {} for a in agents})

    def close(self):
        pass


def test_increment_table_bits():
    from trustmarl.envs.host.sisl import increment_table

    table = increment_table(0.2)
    assert table.shape == (16, 4)
    for k in range(16):
        bits = [int(b) for b in f"{k:04b}"]  # most significant bit first, as the authors' wrapper
        np.testing.assert_allclose(table[k], [(2 * b - 1) * 0.2 for b in bits])
    np.testing.assert_allclose(increment_table(0.5)[6], [-0.5, 0.5, 0.5, -0.5])


def test_discrete_multiwalker_accumulates_clips_and_resets():
    from gymnasium.spaces import Discrete

    from trustmarl.envs.host.sisl import DiscreteMultiWalker

    stub = StubWalkers()
    env = DiscreteMultiWalker(stub, torque_step=0.2)
    assert env.action_space("walker_0") == Discrete(16)
    assert env.observation_space("walker_0") == stub.observation_space("walker_0")
    env.reset(seed=0)
    # walker_0: 15 (all up) six times -> 0.2, 0.4, ..., 1.0, 1.0 (clipped); walker_1: 0 (all down) then 10
    for _ in range(6):
        env.step({"walker_0": 15, "walker_1": 0})
    env.step({"walker_0": 10, "walker_1": 10})  # 1010: up, down, up, down
    got0 = np.array([r["walker_0"] for r in stub.received])
    got1 = np.array([r["walker_1"] for r in stub.received])
    np.testing.assert_allclose(got0[:6, 0], [0.2, 0.4, 0.6, 0.8, 1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(got0[6], [1.0, 0.8, 1.0, 0.8], atol=1e-6)
    np.testing.assert_allclose(got1[5], [-1.0] * 4, atol=1e-6)
    np.testing.assert_allclose(got1[6], [-0.8, -1.0, -0.8, -1.0], atol=1e-6)
    assert all(v.dtype == np.float32 and v.shape == (4,) for v in stub.received[-1].values())
    # a new episode starts from rest: the first torque is the increment alone (the authors' wrapper
    # carried the last episode's torques over)
    env.reset(seed=1)
    env.step({"walker_0": 0, "walker_1": 15})
    np.testing.assert_allclose(stub.received[-1]["walker_0"], [-0.2] * 4, atol=1e-6)
    np.testing.assert_allclose(stub.received[-1]["walker_1"], [0.2] * 4, atol=1e-6)


def test_discrete_multiwalker_torque_reset_on_auto_reset():
    """Through HostVecEnv's automatic reset (episodes of 3 steps): every episode's first torque is the
    increment from rest."""
    from trustmarl.envs.host import HostVecEnv
    from trustmarl.envs.host.sisl import DiscreteMultiWalker, increment_table

    stub = StubWalkers(end_after=3)
    with HostVecEnv([lambda: DiscreteMultiWalker(stub)], num_workers=0, seed=0) as vec:
        vec.reset()
        ends = [bool(vec.step((np.array([[15, 15]]),)).terminated[0]) for _ in range(7)]
    assert ends == [False, False, True, False, False, True, False]
    firsts = np.array([stub.received[t]["walker_0"] for t in (0, 3, 6)])
    np.testing.assert_allclose(firsts, np.broadcast_to(increment_table()[15], (3, 4)), atol=1e-6)


# =====================================================================================================
# Time limit: truncation at 25, termination wins, through the adapter
# =====================================================================================================

def test_time_limit_truncates_not_terminates():
    from trustmarl.envs.host.sisl import TimeLimit

    adapter = PettingZooAdapter(TimeLimit(StubWalkers(), 25))
    adapter.reset(seed=0)
    flags = [adapter.step((np.zeros((2, 4)),)) for _ in range(25)]
    assert [s.truncated for s in flags] == [False] * 24 + [True]
    assert not any(s.terminated for s in flags)
    assert adapter.env.agents == []
    adapter.reset(seed=1)  # the count restarts
    assert not adapter.step((np.zeros((2, 4)),)).truncated and adapter.env.steps == 1
    # a termination at the limit stays a termination
    both = PettingZooAdapter(TimeLimit(StubWalkers(end_after=4), 4))
    both.reset(seed=0)
    last = [both.step((np.zeros((2, 4)),)) for _ in range(4)][-1]
    assert last.terminated and not last.truncated
    with pytest.raises(ValueError, match="episode_limit=0"):
        TimeLimit(StubWalkers(), 0)


def test_host_presets_registered_with_paper_settings():
    from trustmarl.envs.host import registry as host

    mw = host.env_defaults("sisl/multiwalker_li2022")
    assert mw["episode_limit"] == 25 and mw["torque_step"] == 0.2 and mw["max_cycles"] == 500
    pu = host.env_defaults("sisl/pursuit_li2022")
    assert pu["episode_limit"] == 25 and pu["urgency_reward"] == 0.0 and pu["shared_reward"] is False
    assert host.env_defaults("sisl/pursuit")["urgency_reward"] == -0.1  # the plain preset keeps PettingZoo's
    with pytest.raises(ValueError, match="episode_limit"):
        host.make_factory("sisl/pursuit_li2022", {"episode_limit": -1})
    with pytest.raises(ValueError, match="torque_step"):
        host.make_factory("sisl/multiwalker_li2022", {"torque_step": 0.0})


def test_real_sisl_presets_truncate_at_the_limit():
    pytest.importorskip("pettingzoo.sisl")
    from trustmarl.envs.host import HostVecEnv
    from trustmarl.envs.host import registry as host

    rng = np.random.default_rng(0)
    mw = host.make_factory("sisl/multiwalker_li2022", {"episode_limit": 4})
    with HostVecEnv([mw], num_workers=0, seed=1) as vec:
        assert vec.groups[0].action_space.n == 16 and vec.groups[0].obs_dim == 31
        vec.reset()
        steps = [vec.step((rng.integers(0, 16, (1, 3)),)) for _ in range(8)]
    assert [bool(s.truncated[0]) for s in steps] == [False, False, False, True] * 2
    assert not any(bool(s.terminated[0]) for s in steps)
    pu = host.make_factory("sisl/pursuit_li2022", {"episode_limit": 3})
    with HostVecEnv([pu], num_workers=0, seed=1) as vec:
        vec.reset()
        steps = [vec.step((rng.integers(0, 5, (1, 8)),)) for _ in range(6)]
    assert [bool(s.truncated[0]) for s in steps] == [False, False, True] * 2
    # no urgency penalty: rewards are tags (+0.01) and catches (+5) only, never negative
    assert min(float(s.reward.min()) for s in steps) >= 0.0
