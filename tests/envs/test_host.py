"""Host environments: PettingZoo adapter, HostVecEnv (workers, auto-reset, seeding, crashes), MaMuJoCo."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from broken_envs import ToyParallelEnv  # noqa: E402

from trustmarl.envs.base import Box, Discrete  # noqa: E402
from trustmarl.envs.host import HostEnvError, HostVecEnv, MissingExtraError  # noqa: E402
from trustmarl.envs.host.pettingzoo_adapter import (  # noqa: E402
    PettingZooAdapter, group_agents, load_pettingzoo, mpe2_simple_spread, sisl_multiwalker, sisl_pursuit,
)
from trustmarl.envs.host.vector import episode_seed  # noqa: E402


def random_actions(vec: HostVecEnv, rng: np.random.Generator, avail=None, scale: float = 1.0) -> tuple:
    """Random valid actions per group with a leading [num_envs] axis (continuous ones unbounded)."""
    out = []
    for i, g in enumerate(vec.groups):
        if isinstance(g.action_space, Discrete):
            if avail is None:
                out.append(rng.integers(0, g.action_space.n, (vec.num_envs, g.n)))
            else:
                logits = np.where(avail[i], rng.random(avail[i].shape), -1.0)
                out.append(np.argmax(logits, axis=-1))
        else:
            out.append(scale * rng.normal(size=(vec.num_envs, g.n, g.action_space.dim)))
    return tuple(out)


def check_shapes(vec: HostVecEnv, ts) -> None:
    e = vec.num_envs
    assert len(ts.obs) == len(ts.avail) == len(ts.final_obs) == len(vec.groups)
    for g, o, av, fo in zip(vec.groups, ts.obs, ts.avail, ts.final_obs):
        assert o.shape == fo.shape == (e, g.n, g.obs_dim) and o.dtype == fo.dtype == np.float32
        assert av.shape == (e, g.n, g.avail_dim) and av.dtype == bool
        assert np.all(np.isfinite(o))
    assert ts.state.shape == ts.final_state.shape == (e, vec.state_dim) and ts.state.dtype == np.float32
    assert ts.reward.shape == (e, vec.n_agents) and ts.reward.dtype == np.float32
    assert ts.terminated.shape == ts.truncated.shape == (e,) and ts.terminated.dtype == bool
    assert ts.active.shape == (e, vec.n_agents) and ts.active.dtype == bool


# --- PettingZoo presets ----------------------------------------------------------------------------


def replay_single(factory, seed: int, env_index: int, actions_seq: list) -> list:
    """Reference: one raw Parallel API env, reset with the documented episode seeds, stepped by hand."""
    env = factory()
    adapter = PettingZooAdapter(env)
    episode = 0
    adapter.reset(seed=episode_seed(seed, env_index, episode))
    out = []
    for acts in actions_seq:
        s = adapter.step(tuple(a[env_index] for a in acts))
        out.append(s)
        if s.terminated or s.truncated:
            episode += 1
            adapter.reset(seed=episode_seed(seed, env_index, episode))
    return out


@pytest.mark.parametrize(
    "name,factory,n_agents,obs_dim,space",
    [
        ("simple_spread", mpe2_simple_spread(N=3, max_cycles=3), 3, 18, Discrete(5)),
        ("multiwalker", sisl_multiwalker(max_cycles=3), 3, 31, Box(4, -1.0, 1.0)),
        ("pursuit", sisl_pursuit(max_cycles=3), 8, 147, Discrete(5)),
    ],
)
def test_pettingzoo_presets_contract_and_auto_reset(name, factory, n_agents, obs_dim, space):
    rng = np.random.default_rng(0)
    with HostVecEnv([factory] * 2, num_workers=0, seed=7) as vec:
        assert len(vec.groups) == 1 and vec.groups[0].n == n_agents
        assert vec.groups[0].obs_dim == obs_dim and vec.groups[0].action_space == space
        ts = vec.reset()
        check_shapes(vec, ts)
        actions_seq = [random_actions(vec, rng, ts.avail) for _ in range(4)]
        ref = replay_single(factory, 7, 1, actions_seq)
        for t, acts in enumerate(actions_seq):
            ts = vec.step(acts)
            check_shapes(vec, ts)
            r = ref[t]
            # final_obs / reward / flags equal the un-vectorised env's step output (env copy 1)
            np.testing.assert_array_equal(ts.final_obs[0][1], r.obs[0])
            np.testing.assert_array_equal(ts.final_state[1], r.state)
            np.testing.assert_array_equal(ts.reward[1], r.reward)
            assert ts.truncated[1] == r.truncated and ts.terminated[1] == r.terminated
            done = ts.terminated | ts.truncated
            for e in range(2):
                if done[e]:  # auto-reset: obs is the new episode's, final_obs the old one's
                    assert not np.array_equal(ts.obs[0][e], ts.final_obs[0][e])
                else:
                    np.testing.assert_array_equal(ts.obs[0][e], ts.final_obs[0][e])
        if name != "multiwalker":  # multiwalker may end early by a fall; the others truncate at 3
            assert [bool(x) for x in ts.truncated] == [False, False]  # step 4 is the new episode's 1st


def test_truncation_at_max_cycles_simple_spread():
    with HostVecEnv([mpe2_simple_spread(max_cycles=3)] * 3, num_workers=0) as vec:
        vec.reset(seed=1)
        flags = [vec.step(random_actions(vec, np.random.default_rng(t))).truncated.copy() for t in range(6)]
    assert [bool(f.all()) for f in flags] == [False, False, True, False, False, True]
    assert not any(f.any() for f in flags[:2])


def test_reproducible_across_worker_counts_and_seeds():
    def run(num_workers, seed):
        rng = np.random.default_rng(3)
        with HostVecEnv([mpe2_simple_spread(max_cycles=4)] * 3, num_workers=num_workers, seed=seed) as vec:
            ts = vec.reset()
            obs = [ts.obs[0]]
            for _ in range(6):
                obs.append(vec.step(random_actions(vec, rng)).obs[0])
        return np.stack(obs)

    a, b = run(0, 5), run(2, 5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, run(0, 6))
    assert not np.array_equal(a[:, 0], a[:, 1])  # copies get different episode seeds


# --- grouping, clipping, masks, termination ---------------------------------------------------------


def test_group_agents_mixed_discrete_continuous():
    env = ToyParallelEnv()
    groups = group_agents(
        {a: env.observation_space(a) for a in env.possible_agents},
        {a: env.action_space(a) for a in env.possible_agents},
        env.possible_agents,
    )
    assert [(g.name, g.agents, g.obs_dim, g.action_space) for g in groups] == [
        ("g0_a", ("a_0", "a_1"), 2, Discrete(3)),
        ("g1_b", ("b_0",), 2, Box(2, -0.5, 0.5)),
    ]


def test_mixed_env_order_clipping_masks_and_termination():
    with HostVecEnv([lambda: ToyParallelEnv(mask=True, terminate_at=2)] * 2, num_workers=0) as vec:
        assert vec.agents == ("a_0", "a_1", "b_0")  # groups concatenated, not possible_agents order
        ts = vec.reset(seed=0)
        np.testing.assert_array_equal(ts.avail[0], np.tile([False, True, True], (2, 2, 1)))
        assert ts.avail[1].shape == (2, 1, 0)
        acts = (np.array([[1, 2], [2, 2]]), np.array([[[5.0, -7.0]], [[0.1, 0.2]]]))
        ts = vec.step(acts)
        env0 = vec.local_envs[0].env
        assert env0.last_actions["a_0"] == 1 and env0.last_actions["a_1"] == 2
        np.testing.assert_array_equal(env0.last_actions["b_0"], np.array([0.5, -0.5], np.float32))  # clipped
        assert env0.last_actions["b_0"].dtype == np.float32
        # b_0's reward (+0.5 bonus) is in the last column (global order)
        np.testing.assert_allclose(ts.reward[:, 2] - ts.reward[:, 0], 0.5, rtol=1e-6)
        assert not ts.terminated.any() and not ts.truncated.any()
        ts = vec.step(acts)
        assert ts.terminated.all() and not ts.truncated.any()  # termination kept apart from truncation


def test_state_falls_back_to_concatenated_obs():
    with HostVecEnv([ToyParallelEnv], num_workers=0) as vec:
        ts = vec.reset(seed=3)
        assert vec.state_dim == 6
        np.testing.assert_array_equal(ts.state[0], np.concatenate([o[0].reshape(-1) for o in ts.obs]))


def test_mpe2_uses_env_state():
    with HostVecEnv([mpe2_simple_spread()], num_workers=0) as vec:
        ts = vec.reset(seed=3)
        np.testing.assert_allclose(ts.state[0], vec.local_envs[0].env.state())


# --- worker crashes ---------------------------------------------------------------------------------


def test_worker_crash_names_worker_and_env_and_close_works():
    fns = [ToyParallelEnv] * 3 + [lambda: ToyParallelEnv(raise_at_step=2)]
    vec = HostVecEnv(fns, num_workers=2, seed=0)
    rng = np.random.default_rng(0)
    vec.reset()
    vec.step(random_actions(vec, rng))
    with pytest.raises(HostEnvError) as info:
        vec.step(random_actions(vec, rng))
    msg = str(info.value)
    assert "worker 1" in msg and "env 3" in msg and "toy env exploded at step 2" in msg
    procs = list(vec._procs)
    vec.close()
    vec.close()  # idempotent
    assert all(not p.is_alive() for p in procs)


def test_in_process_crash_names_env():
    vec = HostVecEnv([ToyParallelEnv, lambda: ToyParallelEnv(raise_at_step=1)], num_workers=0)
    vec.reset()
    with pytest.raises(HostEnvError, match=r"worker 0, env 1 raised ValueError: toy env exploded"):
        vec.step(random_actions(vec, np.random.default_rng(0)))
    vec.close()


def test_crash_while_building_is_reported():
    def bad():
        raise RuntimeError("cannot build me")

    with pytest.raises(HostEnvError, match=r"worker 1, env 1 raised RuntimeError: cannot build me"):
        HostVecEnv([ToyParallelEnv, bad], num_workers=2)


def test_script_without_main_guard_gets_a_hint(tmp_path):
    """Spawned workers re-import ``__main__``: a script without the guard fails with a message saying so."""
    import subprocess

    script = tmp_path / "train_me.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {os.path.dirname(__file__)!r})\n"
        "from broken_envs import ToyParallelEnv\n"
        "from trustmarl.envs.host import HostVecEnv\n"
        "HostVecEnv([ToyParallelEnv, ToyParallelEnv], num_workers=2).close()\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "worker 0 (envs [0]) died" in out.stderr and "if __name__ == '__main__':" in out.stderr


# --- missing extras ---------------------------------------------------------------------------------


def test_missing_package_raises_missing_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpe2", None)
    monkeypatch.delitem(sys.modules, "mpe2.simple_spread_v3", raising=False)
    with pytest.raises(MissingExtraError, match=r"pip install 'trustmarl\[pettingzoo\]'"):
        load_pettingzoo("mpe2.simple_spread_v3:parallel_env")


def test_missing_mujoco_raises_missing_extra(monkeypatch):
    from trustmarl.envs.host import mamujoco

    monkeypatch.setitem(sys.modules, "gymnasium_robotics", None)
    with pytest.raises(MissingExtraError, match=r"trustmarl\[mujoco\]"):
        mamujoco.mamujoco("HalfCheetah-2x3")


# --- JAX-native SimpleSpread vs mpe2 ----------------------------------------------------------------


def test_jax_simple_spread_matches_mpe2_through_host_path():
    try:
        from trustmarl.envs.mpe import SimpleSpread
    except ImportError as err:  # pragma: no cover - written by another engineer
        pytest.skip(f"trustmarl.envs.mpe.SimpleSpread is not available yet: {err}")
    import jax

    env = SimpleSpread(n_agents=3, local_ratio=0.5, max_cycles=25)
    rng = np.random.default_rng(11)
    with HostVecEnv([mpe2_simple_spread(N=3, local_ratio=0.5, max_cycles=25)] * 2, num_workers=0, seed=4) as vec:
        ts = vec.reset()
        states = []
        for e in range(2):
            world = vec.local_envs[e].env.unwrapped.world
            agent_pos = np.stack([a.state.p_pos for a in world.agents])
            landmark_pos = np.stack([lm.state.p_pos for lm in world.landmarks])
            state, jts = env.reset_to(agent_pos, landmark_pos)
            np.testing.assert_allclose(np.asarray(jts.obs[0]), ts.obs[0][e], atol=1e-5)
            states.append(state)
        step = jax.jit(env.step)
        for t in range(25):
            acts = rng.integers(0, 5, (2, 3))
            ts = vec.step((acts,))
            for e in range(2):
                states[e], jts = step(jax.random.PRNGKey(t), states[e], (acts[e],))
                np.testing.assert_allclose(np.asarray(jts.final_obs[0]), ts.final_obs[0][e], atol=1e-4)
                np.testing.assert_allclose(np.asarray(jts.final_state), ts.final_state[e], atol=1e-4)
                np.testing.assert_allclose(np.asarray(jts.reward), ts.reward[e], atol=1e-4)
                assert bool(jts.truncated) == bool(ts.truncated[e]) == (t == 24)
                assert not bool(jts.terminated) and not ts.terminated[e]


# --- Multi-Agent MuJoCo -----------------------------------------------------------------------------

MUJOCO_CASES = {
    # task: (n_agents, action dims per agent, single-agent obs width)
    "HalfCheetah-2x3": (2, 3, 17),
    "HalfCheetah-6x1": (6, 1, 17),
    "Walker2d-2x3": (2, 3, 17),
    "Ant-4x2": (4, 2, 105),
    "Ant-2x4": (2, 4, 105),
    "Hopper-3x1": (3, 1, 11),
    "Humanoid-17x1": (17, 1, 348),
    "ManySegmentSwimmer-10x2": (10, 2, 44),
}


@pytest.mark.parametrize("task", sorted(MUJOCO_CASES))
def test_mamujoco_factories(task):
    pytest.importorskip("gymnasium_robotics")
    from trustmarl.envs.host.mamujoco import mamujoco

    n_agents, act_dim, state_dim = MUJOCO_CASES[task]
    rng = np.random.default_rng(0)
    with HostVecEnv([mamujoco(task, max_episode_steps=2)], num_workers=0, seed=1) as vec:
        raw = vec.local_envs[0].env
        assert vec.n_agents == n_agents and vec.state_dim == state_dim
        assert all(isinstance(g.action_space, Box) and g.action_space.dim == act_dim for g in vec.groups)
        for g in vec.groups:  # obs widths are gymnasium-robotics' factored (agent_obsk=1) observations
            assert all(raw.observation_space(a).shape == (g.obs_dim,) for a in g.agents)
        ts = vec.reset()
        check_shapes(vec, ts)
        np.testing.assert_allclose(ts.state[0], raw.state(), rtol=1e-6)
        for t in range(3):
            ts = vec.step(random_actions(vec, rng, scale=3.0))
            check_shapes(vec, ts)
            assert np.all(ts.reward[0] == ts.reward[0, 0])  # the task reward, shared
            if t == 1 and not ts.terminated[0]:
                assert ts.truncated[0] and not np.array_equal(ts.obs[0], ts.final_obs[0])


def test_mamujoco_full_observation_and_humanoid_partition():
    pytest.importorskip("gymnasium_robotics")
    from trustmarl.envs.host.mamujoco import mamujoco

    with HostVecEnv([mamujoco("Humanoid-17x1", observation="full")], num_workers=0) as vec:
        assert len(vec.groups) == 1 and vec.groups[0].obs_dim == 348 + 17
        ts = vec.reset(seed=0)
        np.testing.assert_allclose(ts.obs[0][0, :, :348], np.tile(ts.state[0], (17, 1)), rtol=1e-6)
        np.testing.assert_array_equal(ts.obs[0][0, :, 348:], np.eye(17))
        inner = vec.local_envs[0].env.env
        # one actuator per agent, agent_i drives actuator i
        local = {a: np.array([float(i)]) for i, a in enumerate(inner.possible_agents)}
        np.testing.assert_array_equal(inner.map_local_actions_to_global_action(local), np.arange(17.0))


# --- every host preset through terminated and truncated episodes ------------------------------------

# preset -> (steps, terminations expected of the long-limit copy under random actions). Envs that cannot
# end by termination under random actions (simple_spread never does; pursuit only when every evader is
# caught; HalfCheetah and the swimmer have no unhealthy states) are run through truncations only.
# PettingZoo 1.27's multiwalker reports its time limit (max_cycles) as a termination, not a truncation
# (multiwalker.py sets terminations at env.frames >= max_cycles): its short copy "terminates" too.
TIME_LIMIT_IS_TERMINATION = {"sisl/multiwalker"}
ENDINGS = {
    "pettingzoo/simple_spread": (24, 0),
    "pettingzoo/pong": (24, 0),  # random play does not finish a game of 21 points in 400 steps
    "sisl/multiwalker": (150, 2),
    "sisl/multiwalker_li2022": (150, 1),  # its time limit is a truncation (trustmarl.envs.host.sisl)
    "sisl/pursuit": (18, 0),
    "sisl/pursuit_li2022": (18, 0),
    "mamujoco/halfcheetah_2x3": (24, 0),
    "mamujoco/halfcheetah_6x1": (24, 0),
    "mamujoco/walker2d_2x3": (80, 2),
    "mamujoco/ant_4x2": (150, 1),
    "mamujoco/ant_2x4": (150, 1),
    "mamujoco/hopper_3x1": (80, 2),
    "mamujoco/humanoid_17x1": (80, 2),
    "mamujoco/many_segment_swimmer_10x2": (24, 0),
    "magent2/battle": (12, 0),  # random armies do not wipe each other out in 400 steps
}


def test_every_host_preset_is_listed():
    from trustmarl.envs.host import registry

    assert sorted(ENDINGS) == registry.host_env_names()


@pytest.mark.parametrize("name", sorted(ENDINGS))
def test_host_preset_through_terminated_and_truncated_episodes(name):
    """Two copies: one with a time limit of 6 steps (truncations), one with 400 (terminations where the
    env has them). Every step's fields are well formed; after a termination the next step starts a new
    episode; the terminal step's final_state repeats the last state the env gave (multiwalker raised
    when asked for it after its walkers fell)."""
    from trustmarl.envs.host import registry

    if name.startswith("mamujoco/"):
        pytest.importorskip("gymnasium_robotics")
    if name == "pettingzoo/pong":
        pytest.importorskip("multi_agent_ale_py")
    if name == "magent2/battle":
        pytest.importorskip("magent2")
    steps, terminations = ENDINGS[name]
    key = registry.PRESETS[name].max_steps_key
    short, long = (registry.make_factory(name, {key: n}) for n in (6, 400 if terminations else 6))
    rng = np.random.default_rng(0)
    ends = {"terminated": [0, 0], "truncated": [0, 0]}
    with HostVecEnv([short, long], num_workers=0, seed=3) as vec:
        ts = vec.reset()
        check_shapes(vec, ts)
        for _ in range(steps):
            prev_state = ts.state
            ts = vec.step(random_actions(vec, rng, ts.avail))
            check_shapes(vec, ts)
            for e in range(2):
                ends["terminated"][e] += int(ts.terminated[e])
                ends["truncated"][e] += int(ts.truncated[e])
                assert not (ts.terminated[e] and ts.truncated[e])
                if ts.terminated[e]:
                    np.testing.assert_array_equal(ts.final_state[e], prev_state[e])
    limit_ends = "terminated" if name in TIME_LIMIT_IS_TERMINATION else "truncated"
    assert ends[limit_ends][0] >= steps // 6 - 1, ends
    if name not in TIME_LIMIT_IS_TERMINATION:
        assert ends["terminated"][0] == 0, ends
    assert ends["terminated"][1] >= terminations, ends


@pytest.mark.slow
def test_train_happo_multiwalker_through_falls(tmp_path):
    """The command that died at the first fall (exit 4): `trustmarl train happo sisl/multiwalker` now
    trains through terminated episodes."""
    from trustmarl.experiment.cli import main

    out = tmp_path / "run"
    code = main(["train", "happo", "sisl/multiwalker", "total_steps=400", "algo.num_envs=2", "algo.rollout_len=100",
                 "algo.hidden_sizes=[16]", "env.num_workers=0", "--out", str(out), "--no-progress"])
    assert code == 0
    import json

    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["env_steps"] == 400
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert sum(r["episodes"] for r in rows) >= 2  # episodes ended (the walkers fell) and training went on
