"""Parameter sharing across agents whose spaces differ is bad input (exit code 2, nothing written)."""

from __future__ import annotations

import pytest

from trustmarl.algos import make_algorithm
from trustmarl.experiment.cli import main
from trustmarl.experiment.config import ConfigError, build_config

HETERO = "env.payoff=[[[1,0],[0,1],[0,0]],[[0,0],[0,0],[1,1]]]"  # action counts (2, 3, 2): three groups


def test_sharing_across_groups_is_rejected_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "mappo", "matrix/custom", HETERO, "algo.share_params=true", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "algo.share_params=true" in err[0] and "3 groups" in err[0]
    assert not out.exists()


def test_sharing_within_one_group_and_no_sharing_are_fine():
    cfg = build_config("mappo", "matrix/custom", {"env.payoff": [[[1, 0], [0, 1], [0, 0]], [[0, 0], [0, 0], [1, 1]]], "algo.share_params": False})
    assert len(make_algorithm(cfg, 1).groups) == 3
    with pytest.raises(ConfigError, match="share_params"):
        make_algorithm(build_config("happo", "matrix/custom", {"env.payoff": cfg.env.params["payoff"], "algo.share_params": True}), 1)
    assert make_algorithm(build_config("mappo", "mpe/simple_spread", {"algo.share_params": True}), 1).shared


def test_overwrite_with_bad_config_keeps_the_old_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "mappo", "matrix/proposition1", "total_steps=64", "algo.num_envs=8", "algo.rollout_len=4",
                 "--out", str(out), "--no-progress"]) == 0
    before = sorted(p.name for p in out.iterdir())
    code = main(["train", "mappo", "matrix/custom", HETERO, "algo.share_params=true", "--out", str(out), "--overwrite", "--no-progress"])
    assert code == 2
    assert sorted(p.name for p in out.iterdir()) == before and (out / "summary.json").exists()


def test_default_shares_only_when_every_agent_has_the_same_spaces(tmp_path):
    """MAPPO/IPPO/JR-PPO default to share_params=auto: one network on MPE (one group), one per agent on a
    heterogeneous env (three groups) instead of stopping; true is still refused there, bad strings too."""
    for algo in ("mappo", "ippo", "jrppo"):
        assert build_config(algo, "mpe/simple_spread").algo.share_params == "auto"
        assert make_algorithm(build_config(algo, "mpe/simple_spread"), 1).shared
        hetero = make_algorithm(build_config(algo, "matrix/custom", {"env.payoff": [[[1, 0], [0, 1], [0, 0]], [[0, 0], [0, 0], [1, 1]]]}), 1)
        assert not hetero.shared and len(hetero.groups) == 3
        assert all(hetero.stacked(g) for g in range(3))
    assert main(["train", "mappo", "matrix/custom", HETERO, "total_steps=64", "algo.num_envs=8", "algo.rollout_len=4",
                 "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    with pytest.raises(ConfigError, match="share_params='sometimes'.*true, false or auto"):
        build_config("mappo", "mpe/simple_spread", {"algo.share_params": "sometimes"})
