"""``to_pettingzoo``: every registered JAX-native env behind PettingZoo's Parallel API.

Each wrapper passes PettingZoo's own ``parallel_api_test`` (with its warnings turned into errors) and
trustmarl's PettingZoo checker; equal envs share one compiled reset/step, so the parametrised tests
compile each env once per process.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("pettingzoo")
from pettingzoo.test import parallel_api_test  # noqa: E402  (imported before warnings become errors)

from trustmarl.envs import env_names, make, to_pettingzoo  # noqa: E402
from trustmarl.envs.host import MissingExtraError  # noqa: E402

SLOW_PREFIXES = ("smax/", "mabrax/")  # JaxMARL envs compile for tens of seconds each on CPU


def _cases():
    for name in env_names():
        marks = [pytest.mark.slow] if name.startswith(SLOW_PREFIXES) else []
        yield pytest.param(name, marks=marks, id=name)


def _wrap(name: str, **kwargs):
    try:
        return to_pettingzoo(name, **kwargs)
    except MissingExtraError as err:  # e.g. MaBrax without brax, JaxMARL not installed
        pytest.skip(f"{name}: {err}")


@pytest.mark.parametrize("name", list(_cases()))
def test_parallel_api_test(name):
    env = _wrap(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Live agent was not given ..." and friends fail the test
        parallel_api_test(env, num_cycles=30)
    obs, infos = env.reset(seed=1)
    assert set(obs) == set(env.possible_agents) == set(infos)
    for agent, o in obs.items():
        assert env.observation_space(agent).contains(o), agent
        assert o.dtype == np.float32
    assert env.state().shape == env.state_space.shape and env.state().dtype == np.float32


def test_trustmarl_checker_accepts_the_wrapper():
    from trustmarl.envs.checker import check_pettingzoo_env

    assert check_pettingzoo_env(_wrap("mpe/rover_tower"), steps=60) == []


def test_same_keys_same_results_as_the_jax_env():
    """``reset(seed)`` starts the key stream ``PRNGKey(seed)``; each reset and step takes the next split."""
    from trustmarl.envs.pettingzoo_wrapper import _compiled

    env = make("mpe/simple_tag")
    pz = to_pettingzoo(env)
    reset, step = _compiled(env)  # jax.jit(env.reset), jax.jit(env._step), compiled once per env
    obs, _ = pz.reset(seed=3)
    key, sub = jax.random.split(jax.random.PRNGKey(3))
    state, ts = reset(sub)
    np.testing.assert_allclose(obs["adversary_1"], np.asarray(ts.obs[0][1]), atol=1e-6)
    actions = {"adversary_0": 1, "adversary_1": 2, "adversary_2": 3, "agent_0": 4}
    obs, rew, term, trunc, _ = pz.step(actions)
    key, sub = jax.random.split(key)
    _, ts = step(sub, state, (jnp.array([1, 2, 3], jnp.int32), jnp.array([4], jnp.int32)))
    np.testing.assert_allclose(obs["agent_0"], np.asarray(ts.obs[1][0]), atol=1e-6)
    np.testing.assert_allclose([rew[a] for a in env.agents], np.asarray(ts.reward), atol=1e-6)
    assert not any(term.values()) and not any(trunc.values())
    np.testing.assert_allclose(pz.state(), np.asarray(ts.state), atol=1e-6)


def test_episode_end_removes_the_agents():
    pz = to_pettingzoo("mpe/simple_spread", n_agents=2, max_cycles=3)
    pz.reset(seed=0)
    for t in range(3):
        assert pz.agents == ["agent_0", "agent_1"]
        obs, rew, term, trunc, infos = pz.step({a: 0 for a in pz.agents})
    assert all(trunc.values()) and not any(term.values()) and pz.agents == []
    assert set(infos["agent_0"]["action_mask"]) == {1} and infos["agent_0"]["action_mask"].dtype == np.int8
    with pytest.raises(RuntimeError, match="reset"):
        pz.step({})
    pz.reset()
    assert pz.agents == ["agent_0", "agent_1"]


def test_continuous_actions_are_clipped_to_the_space():
    """matrix/differential: reward a1 * a2 with actions in [-10, 10]."""
    pz = to_pettingzoo("matrix/differential")
    pz.reset(seed=0)
    _, rew, _, _, _ = pz.step({"agent_0": np.array([20.0]), "agent_1": np.array([-1.5])})
    assert rew["agent_0"] == pytest.approx(-15.0)


def test_render_rgb_array():
    pz = to_pettingzoo("mpe/treasure_collection", render_mode="rgb_array")
    pz.reset(seed=0)
    frame = pz.render()
    assert frame.shape == (320, 320, 3) and frame.dtype == np.uint8 and (frame != 255).any()
    assert to_pettingzoo("mpe/simple").render() is None  # no render_mode: nothing to draw
    with pytest.raises(ValueError, match="does not implement render"):
        to_pettingzoo("matrix/custom", render_mode="rgb_array")


def test_arguments():
    assert to_pettingzoo("mpe/simple_spread", n_agents=2).possible_agents == ["agent_0", "agent_1"]
    with pytest.raises(TypeError, match="only to an environment given by name"):
        to_pettingzoo(make("mpe/simple"), n_agents=2)
    with pytest.raises(TypeError, match="MultiAgentEnv"):
        to_pettingzoo(object())
    with pytest.raises(KeyError, match="unknown environment"):
        to_pettingzoo("mpe/nope")
