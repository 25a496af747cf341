"""Li et al. 2023's MAgent2 battle experiment (Fig. 7) and the SMAX rows of Tables 4-5 (``f2a2-magent``, ``f2a2-smax``).

Default tests: the convergence time (Fig. 7b) and the episode-weighted moving average against plain loops on
hand-built curves; the self-play chain on battle (an IQL self-play run -> its checkpoint -> the fixed army acting
with exactly that policy's actions, also on a larger map); transfer through ``trustmarl eval --env``; the tiers'
plans, the SMAX presets and bad input (one line, exit 2). Slow: both reproductions' smoke tiers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trustmarl.studies import f2a2_magent as fm
from trustmarl.studies import f2a2_smax as fs
from trustmarl.studies import reproduce as repro


# ---- Fig. 7b: convergence time --------------------------------------------------------------------

def _plain_ma(per_episode: list[float], window: int) -> list[float]:
    return [float(np.mean(per_episode[max(0, e - window + 1): e + 1])) for e in range(len(per_episode))]


def test_convergence_time_on_a_hand_built_step_curve():
    """One episode per update: 200 episodes of 0 then 300 of 1. The 100-episode mean holds (t - 199) / 100 ones at
    update t, so it first reaches 0.95 (95 % of the way from 0 to 1) at update 294."""
    values = np.r_[np.zeros(200), np.ones(300)]
    steps, wall = 10.0 * np.arange(1, 501), 0.5 * np.arange(1, 501)
    c = fm.convergence_time(steps, wall, values, np.ones(500))
    assert c == {"update": 294, "env_steps": 2950.0, "wall_seconds": 147.5, "start": 0.0, "final": 1.0, "threshold": 0.95}
    # a negative reward curve rising from -1 to -0.2: 95 % of the way is -0.24, reached at update 294 again
    c = fm.convergence_time(steps, wall, -1.0 + 0.8 * values, np.ones(500))
    assert c["update"] == 294 and math.isclose(c["threshold"], -0.24)
    # a falling curve converges when it has come down 95 % of the way
    assert fm.convergence_time(steps, wall, 1.0 - values, np.ones(500))["update"] == 294


def test_moving_average_counts_episodes_not_updates():
    """Update t finished k_t episodes of mean return v_t: the same as a plain per-episode moving average over the
    expanded list; updates without an episode carry the last value; NaN before the first episode."""
    rng = np.random.default_rng(0)
    values = rng.normal(size=60)
    episodes = rng.integers(0, 4, size=60).astype(float)
    episodes[:3] = 0
    values[episodes == 0] = np.nan
    got = fm.episode_moving_average(values, episodes, window=7)
    per_episode, last = [], []
    for v, k in zip(values, episodes):
        per_episode += [v] * int(k)
        last.append(len(per_episode) - 1)
    ref = _plain_ma(per_episode, 7)
    want = [ref[i] if i >= 0 else np.nan for i in last]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    assert np.isnan(got[:3]).all()


def test_run_curves_read_each_seed_from_the_logs():
    """Fig. 7 from a run's rows: per-seed returns, the logged per-seed mean episode count, cumulative wall time."""
    from trustmarl.studies.report import RunData

    a = np.r_[np.zeros(150), np.ones(150)]
    b = np.r_[np.zeros(100), np.ones(200)]
    rows = [{"update": t + 1, "env_steps": 100.0 * (t + 1), "wall_time": 2.0 * (t + 1), "episode_return": (a[t] + b[t]) / 2,
             "episode_return/seed_0": a[t], "episode_return/seed_1": b[t], "episodes": 1.0} for t in range(300)]
    run = RunData(path=None, config={"num_seeds": 2}, summary=None, rows=rows)
    c = fm.run_curves(run)
    assert c["reward"].shape == (300, 2)
    assert [v["update"] for v in c["convergence"]] == [244, 194]  # 95 ones among the last 100 episodes
    assert [v["env_steps"] for v in c["convergence"]] == [24500.0, 19500.0]
    assert [v["wall_seconds"] for v in c["convergence"]] == [490.0, 390.0]


# ---- the self-play chain and transfer ----------------------------------------------------------------

TINY_IQL = {"env.map_size": 12, "env.max_cycles": 6, "algo.num_envs": 1, "algo.rollout_len": 6, "algo.buffer_size": 24,
            "algo.batch_size": 4, "algo.learning_starts": 6, "algo.hidden_sizes": [8], "total_steps": 12,
            "chunk_updates": 2, "eval_every": 0}


def _selfplay(root, name: str, overrides: dict):
    pytest.importorskip("magent2")
    from trustmarl.experiment import runner
    from trustmarl.experiment.config import build_config

    runner.train(build_config("iql", "magent2/battle", {**TINY_IQL, **overrides}), root / name, progress=False,
                 tensorboard=False)
    return root


@pytest.fixture(scope="module")
def selfplay(tmp_path_factory):
    """A tiny IQL self-play run on battle (map 12, 2 per team; the packaged preset: no agent id)."""
    return _selfplay(tmp_path_factory.mktemp("selfplay"), "sp", {})


@pytest.fixture(scope="module")
def selfplay_id(tmp_path_factory):
    """The same with an agent id: its network then fits only its own army size."""
    return _selfplay(tmp_path_factory.mktemp("selfplay_id"), "sp_id", {"algo.agent_id": True})


@pytest.mark.parametrize("map_size", [12, 16])
def test_the_frozen_self_play_policy_acts_for_the_fixed_army(selfplay, map_size):
    """red learns, blue acts by the self-play checkpoint: the actions sent to battle for blue equal the frozen
    policy's on the same observations (the run's own map, and map 16 with 6 per team: one shared network)."""
    import trustmarl
    from trustmarl.envs.host import registry
    from trustmarl.envs.host.vector import HostVecEnv
    from trustmarl.experiment.backends import env_info
    from trustmarl.experiment.config import build_config

    cfg = build_config("f2a2_isac", "magent2/battle", {"env.map_size": map_size, "env.max_cycles": 6, "fixed_agents": "blue_",
                                                      "fixed_policy": str(selfplay / "sp"), "fixed_deterministic": True})
    info = env_info(cfg)
    n = {12: 2, 16: 6}[map_size]
    assert info.agents == tuple(f"red_{i}" for i in range(n))
    sent = []

    class Recording(HostVecEnv):
        def step(self, actions):
            sent.append(np.asarray(actions[0]).copy())
            return super().step(actions)

    factory = registry.make_factory("magent2/battle", cfg.env.params)
    vec = info.wrap_vec(Recording([factory], num_workers=0, seed=1), seed=1)
    policy = trustmarl.load_policy(selfplay / "sp")  # the checkpoint itself, on its own map (2 per team)
    rng = np.random.default_rng(0)
    try:
        vec.reset(1)
        for _ in range(4):
            obs = np.asarray(vec._last.obs[0])[0]  # every agent's view, red then blue
            vec.step((rng.integers(0, 21, (1, n)).astype(np.int32),))
            for j in range(n):  # the frozen network is shared: any two of its agents' slots give blue_j's action
                raw = {"red_0": obs[n + j], "red_1": obs[n + j], "blue_0": obs[n + j], "blue_1": obs[n + j]}
                assert sent[-1][0, n + j] == policy.act(raw)["blue_0"]
    finally:
        vec.close()


def test_the_frozen_checkpoint_is_recorded(selfplay):
    import hashlib

    rec = fm.checkpoint_record(selfplay / "sp")
    ckpt = selfplay / "sp" / "checkpoints" / "last.npz"
    assert rec == {"checkpoint": str(ckpt), "update": 2, "env_steps": 12,
                   "sha256": hashlib.sha256(ckpt.read_bytes()).hexdigest()}


@pytest.mark.slow  # a second self-play run
def test_a_frozen_policy_with_an_agent_id_does_not_fit_a_larger_army(selfplay_id, capsys):
    """As a fixed army on a larger map, and through ``trustmarl eval --env``: one line, exit 2."""
    from trustmarl.experiment import cli
    from trustmarl.experiment.backends import env_info
    from trustmarl.experiment.config import ConfigError, build_config

    cfg = build_config("f2a2_isac", "magent2/battle", {"env.map_size": 16, "fixed_agents": "blue_",
                                                      "fixed_policy": str(selfplay_id / "sp_id")})
    with pytest.raises(ConfigError, match=r"does not fit magent2/battle with .*'map_size': 16.*has shape \(1, 849, 8\), "
                                          r"there \(1, 857, 8\)"):
        env_info(cfg)
    assert cli.main(["eval", str(selfplay_id / "sp_id"), "--env", "map_size=16"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not fit magent2/battle" in err, err


def test_transfer_evaluates_on_a_larger_map(selfplay, capsys):
    """``trustmarl eval RUN --env map_size=16``: the shared network plays 6 per team, no training."""
    from trustmarl.experiment import cli

    assert cli.main(["eval", str(selfplay / "sp"), "--env", "map_size=16", "--episodes", "1", "--json"]) == 0
    import json

    res = json.loads(capsys.readouterr().out)
    assert res["env_params"] == {"map_size": 16} and len(res["mean_return_per_agent"]) == 12


# ---- plans, presets and bad input -------------------------------------------------------------------

def test_tiers_follow_the_paper_protocol():
    assert fm.TIERS["full"]["teams"] == (12, 16, 64, 144, 256) and fm.TIERS["full"]["seeds"] == 10
    assert fm.TIERS["full"]["transfer"] == (256, 625) and fm.TIERS["full"]["rounds"] == 2000
    assert fm.TIERS["cpu"]["teams"] == (16, 64) and fm.TIERS["cpu"]["seeds"] == 2 and fm.TIERS["cpu"]["transfer"] == (64, 256)
    assert fm.TIERS["smoke"]["teams"] == (16,) and fm.TIERS["smoke"]["rounds"] == 0  # against random
    assert {n: fm.team_map(n) for n in (12, 16, 64, 144, 256)} == {12: 20, 16: 24, 64: 40, 144: 60, 256: 80}
    cpu = {b["label"] for b in fs.blocks("cpu")}
    assert cpu == {"maac centralised smax/3m", "f2a2_sac 100 smax/3m", "f2a2_sac 0 smax/3m"} and fs.TIERS["cpu"]["seeds"] == 3
    full = fs.blocks("full")
    assert len(full) == 3 * 12 and fs.TIERS["full"]["seeds"] == 5 and fs.TIERS["full"]["steps"] == 2_000_000
    assert {b["algo"] for b in full if b["env"] == "smax/8m"} == {"coma", "f2a2_coma"}
    assert all(b["overrides"] == {} or set(b["overrides"]) <= {"algo.graph", "algo.extra_edges", "algo.no_comm",
                                                                "algo.interval_mean", "algo.interval_std", "algo.joint"}
               for b in full if b["algo"] != "maac")  # MAAC: F2A2-SAC's settings (the test below)
    assert all(b["overrides"].get("algo.joint") is True for b in full if b["algo"] in ("f2a2_sac", "f2a2_coma"))  # the paper's objective
    for name in ("f2a2-magent", "f2a2-smax"):
        assert set(repro.get_reproduction(name).tiers) == {"smoke", "cpu", "full"}


def test_team_sizes_of_the_maps():
    pytest.importorskip("magent2")
    from trustmarl.envs.host import registry

    for team in (16, 64):
        (g,) = registry.probe("magent2/battle", {"map_size": fm.team_map(team)}).groups
        assert g.n == 2 * team


@pytest.mark.parametrize("algo", ["maac", "f2a2_sac", "coma", "f2a2_coma"])
def test_smax_presets_carry_smacs_episode_limits(algo):
    from trustmarl.experiment.config import build_config

    for m, limit in (("3m", 60), ("8m", 120), ("2s3z", 120)):
        c = build_config(algo, f"smax/{m}", {})
        assert c.env.params["kwargs"] == (("max_steps", limit),), (algo, m)
        assert (c.algo.actor_lr, c.algo.critic_lr, c.algo.gamma) == (5e-4, 5e-4, 0.99)
        assert (c.total_steps, c.eval_every, c.eval_episodes) == (2_000_000, 10_000, 32)


@pytest.mark.parametrize("args,needles", [
    (["f2a2_isac", "magent2/battle", "env.map_size=11"], ["map_size=11 is too small", ">= 12"]),
    (["f2a2_isac", "magent2/battle", "algo.copies=two"], ["algo.copies='two' is not allowed", "one, per_agent"]),
    (["f2a2_isac", "mpe/rover_tower"], ["has 2 groups", "F2A2-ISAC always shares one actor and critic", "use f2a2_sac"]),
    (["f2a2_isac", "mpe/rover_tower", "algo.copies=per_agent"], ["has 2 groups", "use f2a2_sac"]),
])
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, monkeypatch, args, needles):
    if "magent2/battle" in args:
        pytest.importorskip("magent2")
    from trustmarl.experiment import cli

    monkeypatch.setattr("trustmarl.experiment.backends._Chunks", None)  # nothing may compile
    code = cli.main(["train", *args, "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and all(n in err for n in needles), err
    assert "share_params=false" not in err  # not a key of f2a2_isac


# ---- the smoke tiers ------------------------------------------------------------------------------

@pytest.mark.slow  # a battle run at 16 per team and its transfer to 64 per team: a minute or more on 2 loaded cores
def test_f2a2_magent_smoke(tmp_path):
    pytest.importorskip("magent2")
    pytest.importorskip("matplotlib")
    res = repro.reproduce("f2a2-magent", "smoke", tmp_path / "fm", in_process=True)
    claims = [c["claim"] for c in res["comparisons"]]
    assert claims[0].startswith("16 per team") and claims[1].startswith("transfer: the 16-per-team policy on 64")
    assert res["opponent"]["opponent"].startswith("random") and all(c["holds"] is None for c in res["comparisons"])
    assert (tmp_path / "fm" / "fig7.json").is_file()


@pytest.mark.slow  # three SMAX compilations with evaluations: minutes on a loaded 2-core machine
def test_f2a2_smax_smoke(tmp_path):
    pytest.importorskip("jaxmarl")
    res = repro.reproduce("f2a2-smax", "smoke", tmp_path / "fsx", in_process=True)
    assert set(res["numbers"]) == {"maac centralised smax/3m", "f2a2_sac 100 smax/3m", "f2a2_sac 0 smax/3m"}
    assert all(0.0 <= w[0] <= 1.0 for w in res["numbers"].values())
    assert all(c["holds"] is None for c in res["comparisons"])


def test_the_centralised_smax_run_takes_the_f2a2_variants_settings():
    """The reproduction's MAAC runs with F2A2-SAC's value of every key they share (same actors, batches, schedule):
    both SMAX presets have GRU actors on whole episodes at the same settings, so nothing needs overriding; COMA keeps
    its own (team reward, shared actors)."""
    import dataclasses

    from trustmarl.experiment.config import build_config

    first = {b["label"]: b for b in fs.blocks("cpu")}["maac centralised smax/3m"]
    c, d = build_config("maac", "smax/3m", first["overrides"]).algo, build_config("f2a2_sac", "smax/3m", {}).algo
    assert c.recurrent and d.recurrent and first["overrides"] == {}
    assert all(getattr(c, f.name) == getattr(d, f.name) for f in dataclasses.fields(c) if f.name != "name")
    assert fs.blocks("full")[-12]["overrides"] == {}  # 8m: COMA centralised as it is
