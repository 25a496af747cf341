"""MAgent2 battle (``magent2/battle``, Li et al. 2023 Fig. 7): one group of both armies with 845-wide views and
``Discrete(21)``, the team size per map size, a few random steps, bad map sizes, and the one-line message
naming the ``magent`` extra when magent2 is missing. The env tests need the extra."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from trustmarl.envs.host import registry
from trustmarl.envs.host.vector import HostVecEnv


def test_battle_is_one_group_of_both_armies():
    pytest.importorskip("magent2")
    info = registry.probe("magent2/battle", {"map_size": 20})
    (g,) = info.groups
    assert g.n == 24 and g.obs_dim == 13 * 13 * 5 and g.action_space.n == 21  # 12 per team at map 20
    assert g.agents[:12] == tuple(f"red_{i}" for i in range(12)) and g.agents[12:] == tuple(f"blue_{i}" for i in range(12))
    assert info.state_dim == 20 * 20 * 5 and info.max_episode_steps == 500
    f = registry.make_factory("magent2/battle", {"map_size": 20, "max_cycles": 5})
    rng = np.random.default_rng(0)
    with HostVecEnv([f], num_workers=0, seed=3) as vec:
        ts = vec.reset()
        assert ts.obs[0].shape == (1, 24, 845) and ts.obs[0].dtype == np.float32
        for t in range(5):
            ts = vec.step((rng.integers(0, 21, (1, 24)),))
            assert ts.reward.shape == (1, 24) and np.all(np.isfinite(ts.reward))
            assert np.all(ts.reward <= 5.2 + 1e-6) and np.all(ts.reward >= -0.205 - 1e-6)  # magent2's default rewards
        assert bool(ts.truncated[0]) and not bool(ts.terminated[0])  # max_cycles is a time limit


def test_team_size_per_map_size():
    """magent2 drops the agents placed on the border: 12 per team at map 20 (not int(0.2 * 20)^2 = 16)."""
    pytest.importorskip("magent2")
    for m, n in ((12, 2), (20, 12), (40, 64)):
        (g,) = registry.probe("magent2/battle", {"map_size": m}).groups
        assert g.n == 2 * n, (m, g.n)


def test_bad_map_size_is_refused():
    pytest.importorskip("magent2")
    with pytest.raises(ValueError, match="map_size=11 is too small: battle needs an integer map_size >= 12"):
        registry.make_factory("magent2/battle", {"map_size": 11})


def test_missing_extra_names_the_install_command(capsys, monkeypatch):
    from trustmarl.experiment import cli

    for name in ["magent2", *(m for m in sys.modules if m.startswith("magent2."))]:
        monkeypatch.setitem(sys.modules, name, None)  # as if trustmarl[magent] were not installed
    assert cli.main(["train", "ippo", "magent2/battle", "--out", "/nonexistent/z"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "magent2/battle" in err[0] and "pip install 'trustmarl[magent]'" in err[0], err
