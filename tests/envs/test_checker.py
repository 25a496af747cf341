"""The env checker catches each deliberately broken environment and passes the good ones."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from broken_envs import JAX_BUGS, PZ_BUGS, ToyEnv, ToyParallelEnv  # noqa: E402

from trustmarl.envs.checker import assert_env_ok, check_env, check_jax_env, main_check_env  # noqa: E402

# bug -> words the report must contain
JAX_EXPECTED = {
    "obs_shape": "obs of group 'd' has shape (2, 2), expected (2, 3)",
    "obs_dtype": "obs of group 'd' has dtype int32",
    "reward_shape": "reward has shape (), expected (3,)",
    "no_avail": "agents ['d1'] of group 'd' have no available action",
    "nondeterministic_reset": "reset is not deterministic",
    "nan_obs": "obs of group 'c' contains NaN",
    "never_ends": "no episode ended within 200 steps",
    "state_shape": "state has shape (3,), expected (4,)",
    "done_shape": "truncated must be a scalar bool",
    "info_keys": "info keys differ: reset gives [], step gives ['near']",
}
PZ_EXPECTED = {
    "missing_agent_in_obs": "observation dict is missing agents ['a_1']",
    "missing_agent_in_rewards": "reward dict is missing agents ['b_0']",
    "obs_dtype": "observation of 'a_0' has dtype float64, its space says float32",
    "obs_outside_space": "observation of 'a_0' is outside its observation_space",
    "nondeterministic_reset": "reset is not deterministic",
    "empty_action_mask": "action_mask of 'a_0' allows no action",
    "nan_obs": "observation of 'b_0' contains NaN",
}


def test_every_bug_has_an_expectation():
    assert set(JAX_EXPECTED) == set(JAX_BUGS) and set(PZ_EXPECTED) == set(PZ_BUGS)


def test_good_jax_env_passes():
    assert check_jax_env(ToyEnv(), max_episode_steps=200) == []


@pytest.mark.parametrize("bug", JAX_BUGS)
def test_jax_bug_caught(bug):
    problems = check_jax_env(ToyEnv(bug=bug), max_episode_steps=200)
    assert any(JAX_EXPECTED[bug] in p for p in problems), problems


def test_good_pettingzoo_env_passes():
    assert check_env(ToyParallelEnv(mask=True)) == []
    assert check_env(ToyParallelEnv(terminate_at=2)) == []


@pytest.mark.parametrize("bug", PZ_BUGS)
def test_pettingzoo_bug_caught(bug):
    problems = check_env(ToyParallelEnv(bug=bug, mask=True))
    assert any(PZ_EXPECTED[bug] in p for p in problems), problems


def test_real_envs_pass_by_import_path():
    assert check_env("trustmarl.envs.mpe:SimpleSpread") == []
    assert check_env("mpe2.simple_spread_v3:parallel_env") == []
    assert check_env("broken_envs:toy_parallel_env") == []


def test_assert_env_ok_lists_all_violations():
    with pytest.raises(AssertionError) as info:
        assert_env_ok(ToyParallelEnv(bug="obs_dtype"))
    text = str(info.value)
    assert "has dtype float64" in text and text.count("\n- ") >= 6


def test_cli_exit_codes_and_report():
    lines: list[str] = []
    assert main_check_env(["broken_envs:toy_parallel_env"], print_fn=lines.append) == 0
    assert "OK" in lines[-1]
    lines.clear()
    assert main_check_env(["no_such_module_xyz:env"], print_fn=lines.append) == 1
    assert "could not load" in "\n".join(lines) and "no_such_module_xyz" in "\n".join(lines)
