"""Tests of the JaxMARL adapter (SMAX, MaBrax) against the raw JaxMARL environments it wraps.

SMAX compiles slowly on CPU, so every test shares a few module-scoped jitted rollouts: one rollout of
8 ``smax/3m`` envs x 100 steps that steps our adapter and the raw ``jaxmarl`` env side by side with the
same keys and actions, and a short rollout of ``smax/2s3z``.
"""

from __future__ import annotations

import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trustmarl.envs import jaxmarl_adapter as jm
from trustmarl.envs.base import Discrete
from trustmarl.envs.host import MissingExtraError
from trustmarl.envs.registry import env_names, make

N_ENVS, N_STEPS = 8, 100
STOP = 4  # SMAX action index of "stop", the only action of a dead unit


def test_registered_names_and_lazy_import():
    names = env_names()
    for m in ("3m", "8m", "2s3z", "3s5z", "10m_vs_11m", "27m_vs_30m"):
        assert f"smax/{m}" in names
    assert "mabrax/humanoid_9_8" in names and "mabrax/halfcheetah_6x1" in names
    env = jm.SMAX_3m()
    assert (env.name, env.scenario, env.kwargs) == ("HeuristicEnemySMAX", "3m", ())
    assert hash(env) == hash(jm.SMAX_3m()) and env != jm.SMAX_8m()
    # a dict of kwargs is normalised into hashable sorted pairs
    assert jm.JaxMARLEnv(kwargs={"max_steps": 7, "attack_mode": "random"}).kwargs == (
        ("attack_mode", "random"), ("max_steps", 7)
    )


def test_missing_jaxmarl_raises_missing_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "jaxmarl", None)  # makes `import jaxmarl` fail
    jm.raw_env.cache_clear()
    jm.layout.cache_clear()
    with pytest.raises(MissingExtraError, match=r"trustmarl\[jaxmarl\]"):
        make("smax/3m")
    with pytest.raises(MissingExtraError, match=r"trustmarl\[jaxmarl\]"):
        jm.SMAX_3m().groups


_HIDE_JAXMARL = """
import importlib.abc, sys
class Hide(importlib.abc.MetaPathFinder):  # as if jaxmarl (and brax) were not installed
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("jaxmarl", "brax"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Hide())
from trustmarl.experiment.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("env,extra", [("smax/3m", "jaxmarl"), ("mabrax/ant_4x2", "mabrax")])
def test_train_without_jaxmarl_installed_is_one_line_and_exit_2(tmp_path, env, extra):
    """`trustmarl train happo smax/3m` on an install without the extra: one line naming the pip extra,
    exit code 2, no traceback, no run directory (the CLI in a fresh process where jaxmarl is missing)."""
    import subprocess

    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-c", _HIDE_JAXMARL, "train", "happo", env, "--out", str(out), "--no-progress"],
                         capture_output=True, text=True, timeout=600)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, res.stderr
    assert len(lines) == 1 and lines[0].startswith("trustmarl: error:"), res.stderr
    assert f"pip install 'trustmarl[{extra}]'" in lines[0] and env in lines[0]
    assert not out.exists()


jaxmarl = pytest.importorskip("jaxmarl")


def test_group_agents_by_space():
    obs = {"a_0": 9, "a_1": 9, "a_2": 8, "b_0": 9}
    act = {"a_0": Discrete(3), "a_1": Discrete(3), "a_2": Discrete(3), "b_0": Discrete(4)}
    groups = jm.group_agents(("a_0", "a_1", "a_2", "b_0"), obs, act)
    assert [g.agents for g in groups] == [("a_0", "a_1"), ("a_2",), ("b_0",)]
    assert [g.name for g in groups] == ["a_0", "a_1", "b"]
    assert len({g.name for g in groups}) == 3


def test_bad_hyperparameters():
    with pytest.raises(ValueError, match="not a SMAX map"):
        make("smax/3m", scenario="4m")
    with pytest.raises(ValueError, match="not a JaxMARL env"):
        jm.JaxMARLEnv(name="nope").validate()
    with pytest.raises(ValueError, match="hashable"):
        jm.JaxMARLEnv(kwargs=(("x", [1]),)).validate()


class _FakeJaxMARL:
    """A tiny JaxMARL-style env whose agents have distinct rewards and heterogeneous spaces.

    Agents ``a_0`` and ``a_2`` observe 2 numbers, ``a_1`` observes 3, so trustmarl's agent order is
    ``(a_0, a_2, a_1)``. Agent ``a_i`` gets reward ``(i + 1) * t`` at step ``t``; ``a_1`` dies at step 2;
    the episode ends only by the time limit ``max_steps = 3``; no ``get_avail_actions``.
    """

    agents = ["a_0", "a_1", "a_2"]
    max_steps = 3
    _dims = {"a_0": 2, "a_1": 3, "a_2": 2}

    class State(NamedTuple):
        step: jax.Array

    def observation_space(self, a):
        from jaxmarl.environments.spaces import Box as JBox

        return JBox(-1.0, 1.0, (self._dims[a],))

    def action_space(self, a):
        from jaxmarl.environments.spaces import Discrete as JDiscrete

        return JDiscrete(4)

    def get_avail_actions(self, state):
        raise NotImplementedError

    def _obs(self, step):
        return {a: jnp.full((d,), 10.0 * step + i) for i, (a, d) in enumerate(self._dims.items())}

    def reset(self, key):
        return self._obs(jnp.asarray(0)), self.State(jnp.asarray(0))

    def step_env(self, key, state, actions):
        t = state.step + 1
        rewards = {a: (i + 1.0) * t + 0.0 * actions[a] for i, a in enumerate(self.agents)}
        dones = {a: jnp.asarray(a == "a_1") & (t >= 2) for a in self.agents}
        dones["__all__"] = t >= self.max_steps
        return self._obs(t), self.State(t), rewards, dones, {}


def test_agent_order_rewards_and_generic_truncation(monkeypatch):
    """Rewards/obs are reordered into trustmarl's group order; the step-counter truncation rule."""
    fake = _FakeJaxMARL()
    monkeypatch.setattr(jm, "raw_env", lambda name, scenario=None, kwargs=(): fake)
    jm.layout.cache_clear()
    env = jm.JaxMARLEnv(name="fake", scenario=None)
    try:
        assert [g.agents for g in env.groups] == [("a_0", "a_2"), ("a_1",)]
        assert env.agents == ("a_0", "a_2", "a_1") and env.state_dim == 7 and env.max_episode_steps == 3
        state, ts = env.reset(jax.random.PRNGKey(0))
        assert ts.avail[0].shape == (2, 4) and ts.avail[0].all() and ts.avail[1].all()  # no masks: all true
        np.testing.assert_array_equal(ts.state, [0, 0, 2, 2, 1, 1, 1])  # obs concatenated in our order
        actions = (jnp.zeros(2, jnp.int32), jnp.zeros(1, jnp.int32))
        for t in (1, 2, 3):
            state, ts = env.step(jax.random.PRNGKey(t), state, actions)
            np.testing.assert_array_equal(ts.reward, [1.0 * t, 3.0 * t, 2.0 * t])
            np.testing.assert_array_equal(ts.final_obs[1], [[10.0 * t + 1] * 3])
            assert bool(ts.truncated) == (t == 3) and not bool(ts.terminated)
            if t < 3:
                np.testing.assert_array_equal(ts.active, [True, True, t < 2])
        np.testing.assert_array_equal(ts.obs[0], [[0, 0], [2, 2]])  # auto-reset after the time limit
        assert ts.active.all()
    finally:
        jm.layout.cache_clear()


@pytest.mark.parametrize(
    "map_name, n_allies, n_enemies, obs_dim", [("3m", 3, 3, 75), ("2s3z", 5, 5, 127)]
)
def test_smax_spaces(map_name, n_allies, n_enemies, obs_dim):
    env = make(f"smax/{map_name}")
    raw = env.raw
    assert [g.name for g in env.groups] == ["ally"]  # heterogeneous unit types share spaces in SMAX
    (g,) = env.groups
    assert g.agents == tuple(f"ally_{i}" for i in range(n_allies)) == tuple(raw.agents)
    assert g.action_space == Discrete(5 + n_enemies)  # 4 moves + stop + one attack per enemy
    assert g.obs_dim == obs_dim == raw.observation_space("ally_0").shape[0]
    obs, _ = jax.eval_shape(raw.reset, jax.random.PRNGKey(0))
    assert env.state_dim == obs["world_state"].shape[0]
    assert env.max_episode_steps == raw.max_steps == 100


# --- the shared smax/3m rollout: ours and raw jaxmarl side by side ----------------------------------


def _paired_rollout(env, key, n_envs: int, n_steps: int, paired: bool = True):
    """``n_envs`` x ``n_steps`` of our ``env.step`` and jaxmarl's ``raw.step`` with the same keys/actions.

    With ``paired=False`` only our env runs (half the compile time) and the ``raw_*`` entries are absent.
    """
    raw = env.raw

    def one_env(key):
        k0, ks = jax.random.split(key)
        state, ts = env.reset(k0)
        raw_obs, raw_state = raw.reset(k0)

        def body(carry, k):
            state, ts, raw_state = carry
            k_act, k_step = jax.random.split(k)
            actions = env.random_actions(k_act, ts.avail)
            state2, ts2 = env.step(k_step, state, actions)
            out = dict(ts=ts, actions=actions, next_ts=ts2, prev_state=state)
            if not paired:
                return (state2, ts2, raw_state), out
            r_obs, raw_state2, r_rew, r_done, _ = raw.step(k_step, raw_state, env.actions_dict(actions))
            # jaxmarl's step without its reset (its step uses the first half of split(k_step))
            t_obs = raw.step_env(jax.random.split(k_step)[0], raw_state, env.actions_dict(actions))[0]
            out.update(
                raw_terminal_obs=tuple(jnp.stack([t_obs[a] for a in g.agents]) for g in env.groups),
                raw_terminal_state=t_obs.get("world_state", jnp.zeros(())),
                raw_obs=tuple(jnp.stack([r_obs[a] for a in g.agents]) for g in env.groups), raw_state=r_obs.get("world_state", jnp.zeros(())),
                raw_reward=jnp.stack([r_rew[a] for a in env.agents]),
                raw_dead=jnp.stack([r_done[a] for a in env.agents]), raw_done=r_done["__all__"],
            )
            return (state2, ts2, raw_state2), out

        _, traj = jax.lax.scan(body, (state, ts, raw_state), jax.random.split(ks, n_steps))
        return traj

    return jax.jit(jax.vmap(one_env))(jax.random.split(key, n_envs))


@pytest.fixture(scope="module")
def env3m():
    return make("smax/3m")


@pytest.fixture(scope="module")
def traj3m(env3m):
    return jax.tree.map(np.asarray, _paired_rollout(env3m, jax.random.PRNGKey(42), N_ENVS, N_STEPS))


@pytest.mark.slow  # eager SMAX steps are slow; the rollout, type and win-rate tests below cover the contract
def test_check_env_smax_3m(env3m):
    from trustmarl.envs.checker import check_env

    assert check_env(env3m) == []


def test_reset_and_step_states_have_the_same_types(env3m):
    """JaxMARL's heuristic enemy starts from a weakly typed ``-1``; the contract's reset makes it an ordinary
    int32, so a jitted step (or training chunk) fed a reset state and then a stepped one compiles once."""
    state, ts = env3m.reset(jax.random.PRNGKey(0))
    weak = [jax.tree_util.keystr(p) for p, x in jax.tree_util.tree_leaves_with_path(state) if jax.typeof(x).weak_type]
    assert weak == []
    step = jax.jit(env3m.step)
    actions = (jnp.full((env3m.groups[0].n,), 4, jnp.int32),)  # stop is always available
    state, ts = step(jax.random.PRNGKey(1), state, actions)
    step(jax.random.PRNGKey(2), state, actions)
    assert step._cache_size() == 1


def test_win_rate_info(env3m, traj3m):
    """``info["win_rate"]`` is 1.0 exactly on the step where the allies win: all enemies dead and an ally
    alive; 0.0 when the allies are wiped out, on ordinary steps and after reset."""
    state, ts = env3m.reset(jax.random.PRNGKey(0))
    assert float(ts.info["win_rate"]) == 0.0
    n = env3m.raw.num_allies
    stop = (jnp.full((n,), 4, jnp.int32),)

    def with_alive(allies, enemies):
        alive = jnp.concatenate([jnp.asarray(allies), jnp.asarray(enemies)])
        health = jnp.where(alive, state.state.unit_health, 0.0)  # SMAX derives "alive" from health
        return state.replace(state=state.state.replace(unit_alive=alive, unit_health=health))

    _, won = env3m._step(jax.random.PRNGKey(1), with_alive([True, False, False], [False] * 3), stop)
    _, lost = env3m._step(jax.random.PRNGKey(1), with_alive([False] * 3, [True, True, False]), stop)
    assert bool(won.terminated) and float(won.info["win_rate"]) == 1.0
    assert bool(lost.terminated) and float(lost.info["win_rate"]) == 0.0
    nxt = traj3m["next_ts"]
    assert set(np.unique(nxt.info["win_rate"])) <= {0.0, 1.0}
    assert not (nxt.info["win_rate"] > 0)[~nxt.terminated].any()


def test_rollout_shapes_and_dtypes(traj3m, env3m):
    ts = traj3m["next_ts"]
    g = env3m.groups[0]
    assert ts.obs[0].shape == (N_ENVS, N_STEPS, g.n, g.obs_dim) and ts.obs[0].dtype == np.float32
    assert ts.final_obs[0].shape == ts.obs[0].shape and ts.final_obs[0].dtype == np.float32
    assert ts.avail[0].shape == (N_ENVS, N_STEPS, g.n, g.avail_dim) and ts.avail[0].dtype == np.bool_
    assert ts.state.shape == ts.final_state.shape == (N_ENVS, N_STEPS, env3m.state_dim)
    assert ts.state.dtype == np.float32
    assert ts.reward.shape == ts.active.shape == (N_ENVS, N_STEPS, 3)
    assert ts.reward.dtype == np.float32 and ts.active.dtype == np.bool_
    assert ts.terminated.shape == ts.truncated.shape == (N_ENVS, N_STEPS) and ts.terminated.dtype == np.bool_
    assert all(np.isfinite(x).all() for x in (ts.obs[0], ts.state, ts.reward))


def test_rollout_matches_raw_jaxmarl(traj3m):
    """Same key and actions: our rewards (agent order), obs, state and dones equal jaxmarl's ``step``."""
    ts = traj3m["next_ts"]
    np.testing.assert_array_equal(ts.reward, traj3m["raw_reward"])
    np.testing.assert_array_equal(ts.obs[0], traj3m["raw_obs"][0])  # includes jaxmarl's own auto-reset
    np.testing.assert_array_equal(ts.state, traj3m["raw_state"])
    np.testing.assert_array_equal(ts.done, traj3m["raw_done"])
    assert ts.reward.std() > 0  # damage is dealt: the comparison is not between zeros


def test_avail_masks_and_dead_agents(traj3m):
    for ts in (traj3m["ts"], traj3m["next_ts"]):
        av, active = ts.avail[0], ts.active
        assert av.any(-1).all()  # at least one action per agent, always
        assert av[..., STOP].all()  # stop is always available
        # a dead unit can only stop; a live one can move
        np.testing.assert_array_equal(av[~active], np.eye(av.shape[-1], dtype=bool)[STOP][None].repeat((~active).sum(), 0))
        assert av[active][:, :STOP].all()
    ts = traj3m["next_ts"]
    no_reset = ~ts.done
    np.testing.assert_array_equal(ts.active[no_reset], ~traj3m["raw_dead"][no_reset])
    assert (~ts.active).any()  # some allies died during the rollout
    # the random actions were always available
    acts = traj3m["actions"][0]
    assert np.take_along_axis(traj3m["ts"].avail[0], acts[..., None], -1).all()


def test_auto_reset_and_final_obs(traj3m, env3m):
    ts = traj3m["next_ts"]
    done = ts.done
    assert done.sum() >= N_ENVS  # episodes ended (and were reset) in the rollout
    same = ~done
    np.testing.assert_array_equal(ts.final_obs[0][same], ts.obs[0][same])
    np.testing.assert_array_equal(ts.final_state[same], ts.state[same])
    assert (ts.final_obs[0][done] != ts.obs[0][done]).any(axis=(-1, -2)).all()
    # after a reset every ally is alive again
    assert ts.active[done].all()
    # the final observation is the terminal one: jaxmarl's step_env before its reset
    np.testing.assert_array_equal(ts.final_obs[0], traj3m["raw_terminal_obs"][0])
    np.testing.assert_array_equal(ts.final_state, traj3m["raw_terminal_state"])


def test_terminated_vs_truncated(traj3m, env3m):
    ts = traj3m["next_ts"]
    assert not (ts.terminated & ts.truncated).any()
    # terminated exactly when a team is wiped out at the terminal state
    final_alive = ~traj3m["raw_dead"]  # allies alive at the terminal state
    ally_wiped = ~final_alive.any(-1)
    assert (ts.terminated | ~ally_wiped).all()  # all allies dead -> terminated
    # truncation happens only at the time limit (step 100 of an episode)
    ep_len = np.zeros(N_ENVS, dtype=int)
    for t in range(N_STEPS):
        ep_len += 1
        assert (~ts.truncated[:, t] | (ep_len == env3m.max_episode_steps)).all()
        assert (ep_len <= env3m.max_episode_steps).all()
        ep_len[ts.done[:, t]] = 0


def test_split_done_rules(env3m):
    """The terminated/truncated split on constructed SMAX states."""
    _, state = env3m.raw.reset(jax.random.PRNGKey(0))
    inner = state.state
    at_limit = state.replace(state=inner.replace(step=jnp.asarray(100)))
    won = state.replace(state=inner.replace(unit_alive=inner.unit_alive.at[3:].set(False)))
    won_at_limit = won.replace(state=won.state.replace(step=jnp.asarray(100)))
    true, false = jnp.asarray(True), jnp.asarray(False)
    assert tuple(map(bool, env3m._split_done(at_limit, true))) == (False, True)
    assert tuple(map(bool, env3m._split_done(won, true))) == (True, False)
    assert tuple(map(bool, env3m._split_done(won_at_limit, true))) == (True, False)
    assert tuple(map(bool, env3m._split_done(won, false))) == (False, False)


def test_smax_2s3z_contract():
    """Heterogeneous unit types (stalkers, zealots) in one group: jit+vmap rollout, masks, dead units.

    Our env alone (the pairing with raw jaxmarl is tested on 3m; compiling both doubles the time).
    """
    env = make("smax/2s3z")
    traj = jax.tree.map(np.asarray, _paired_rollout(env, jax.random.PRNGKey(1), 2, 60, paired=False))
    ts = traj["next_ts"]
    assert ts.obs[0].shape == (2, 60, 5, 127) and ts.obs[0].dtype == np.float32
    assert ts.state.shape == (2, 60, 120) and ts.reward.shape == ts.active.shape == (2, 60, 5)
    assert ts.avail[0].shape == (2, 60, 5, 10) and ts.avail[0].any(-1).all()
    assert (~ts.avail[0][~ts.active][:, :STOP]).all() and ts.avail[0][ts.active][:, :STOP].all()
    assert (~ts.active).any() and ts.done.any()  # units died, episodes ended
    np.testing.assert_array_equal(ts.reward, ts.reward[..., :1].repeat(5, -1))  # SMAX: one team reward
    # the one "ally" group really holds two unit types: 2 stalkers (type 2) and 3 zealots (type 3)
    state, _ = env.reset(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(np.asarray(state.state.unit_types[:5]), [2, 2, 3, 3, 3])


@pytest.mark.slow
def test_mabrax_halfcheetah_contract():
    pytest.importorskip("brax")
    from trustmarl.envs.base import Box
    from trustmarl.envs.checker import check_jax_env

    env = make("mabrax/halfcheetah_6x1", kwargs=(("episode_length", 20),))
    assert env.max_episode_steps == 20
    assert [g.agents for g in env.groups] == [("agent_0", "agent_1", "agent_3", "agent_4"), ("agent_2", "agent_5")]
    assert [g.obs_dim for g in env.groups] == [9, 8] and all(g.action_space == Box(1) for g in env.groups)
    assert env.state_dim == 9 * 4 + 8 * 2
    assert check_jax_env(env, max_episode_steps=40) == []
    run = jax.jit(lambda k: _paired_rollout(env, k, 2, 25))
    traj = jax.tree.map(np.asarray, run(jax.random.PRNGKey(0)))
    ts = traj["next_ts"]
    np.testing.assert_array_equal(ts.reward, traj["raw_reward"])
    for ours, theirs in zip(ts.obs, traj["raw_obs"]):
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(ts.state, np.concatenate([o.reshape(2, 25, -1) for o in ts.obs], -1))
    assert ts.truncated[:, 19].all() and not ts.terminated[:, :20].any()  # halfcheetah never falls
