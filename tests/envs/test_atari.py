"""Two-player Pong (``pettingzoo/pong``, Wen et al. 2021, Figure 6): RAM observations (shape, dtype, scale),
frame skip sums the rewards of the frames it repeats, the returns are zero-sum, and without the ``atari``
extra the command line names the install command (one line, exit 2). The env tests need the extra."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from trustmarl.envs.host.vector import HostVecEnv


def _needs_atari():
    pytest.importorskip("multi_agent_ale_py")
    pytest.importorskip("ale_py")


def _play(frame_skip: int, steps: int, actions: np.ndarray, obs_type: str = "ram", states: list | None = None):
    from trustmarl.envs.host import registry

    f = registry.make_factory("pettingzoo/pong", {"frame_skip": frame_skip, "max_cycles": 10_000, "obs_type": obs_type})
    obs, rewards = [], []
    with HostVecEnv([f], num_workers=0, seed=5) as vec:
        ts = vec.reset()
        obs.append(ts.obs[0][0])
        for t in range(steps):
            ts = vec.step((actions[t][None],))
            obs.append(ts.obs[0][0])
            rewards.append(ts.reward[0])
            if states is not None:
                states.append(ts.state[0])
    return vec, np.asarray(obs), np.asarray(rewards)


def test_grayscale_84x84_image_observations():
    """``obs_type=grayscale84``: the screen in grayscale, 84x84, / 255, flat float32; the state is still the RAM
    (equal to the RAM observations of the same game); the image changes as the game does."""
    _needs_atari()
    rng = np.random.default_rng(2)
    acts = rng.integers(0, 18, (40, 2))
    states: list = []
    vec, img, rew = _play(4, 40, acts, "grayscale84", states)
    _, ram, rew_ram = _play(4, 40, acts)
    assert vec.groups[0].obs_dim == 84 * 84 and vec.state_dim == 128
    assert img.shape == (41, 2, 7056) and img.dtype == np.float32 and 0.0 <= img.min() and img.max() <= 1.0
    np.testing.assert_array_equal(np.asarray(states), ram[1:, 0])  # the image env's state is the RAM
    np.testing.assert_array_equal(rew, rew_ram)
    assert np.abs(img[-1] - img[0]).max() > 0.1  # the paddles and the ball moved


def test_ram_observations_and_zero_sum_rewards():
    _needs_atari()
    rng = np.random.default_rng(0)
    acts = rng.integers(0, 18, (600, 2))
    vec, obs, rew = _play(1, 600, acts)
    assert vec.n_agents == 2 and vec.state_dim == 128 and vec.groups[0].action_space.n == 18
    assert obs.shape == (601, 2, 128) and obs.dtype == np.float32
    assert obs.min() >= 0.0 and obs.max() <= 1.0 and np.all(np.isclose(obs * 255, np.round(obs * 255), atol=1e-4))
    np.testing.assert_array_equal(obs[:, 0], obs[:, 1])  # both players see the console's RAM
    np.testing.assert_array_equal(rew.sum(-1), 0.0)  # +1 to the scorer, -1 to the other
    assert np.abs(rew).sum() > 0  # a point was scored in 600 frames of random play


def test_frame_skip_repeats_the_action_and_sums_the_rewards():
    _needs_atari()
    rng = np.random.default_rng(1)
    acts = rng.integers(0, 18, (150, 2))
    _, obs1, rew1 = _play(1, 600, np.repeat(acts, 4, axis=0))  # every frame, each action 4 times
    _, obs4, rew4 = _play(4, 150, acts)
    np.testing.assert_array_equal(obs4, obs1[::4])
    np.testing.assert_array_equal(rew4, rew1.reshape(150, 4, 2).sum(1))
    assert np.abs(rew4).sum() > 0


def test_bad_options():
    from trustmarl.envs.host.atari import PongFactory

    with pytest.raises(ValueError, match="obs_type='rgb_image' is not available; choose one of ram, grayscale84"):
        PongFactory(obs_type="rgb_image")
    with pytest.raises(ValueError, match="frame_skip=0 must be an integer >= 1"):
        PongFactory(frame_skip=0)


def test_missing_extra_names_the_install_command(capsys, monkeypatch):
    from trustmarl.experiment import cli

    monkeypatch.setitem(sys.modules, "multi_agent_ale_py", None)  # as if trustmarl[atari] were not installed
    assert cli.main(["train", "ippo", "pettingzoo/pong", "--out", "/nonexistent/z"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pettingzoo/pong" in err[0] and "pip install 'trustmarl[atari]'" in err[0], err
