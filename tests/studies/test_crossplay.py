"""Zero-sum runs report each player's return, and ``trustmarl crossplay`` (Wen et al. 2021, Figure 6) on
rock-paper-scissors: a cell equals the exact payoff of the two checkpoints' policies, a run played against
itself with one policy for both seats gives an antisymmetric matrix, bad input is one line and exit 2.

Two tiny IPPO runs (one shared policy for both seats, 3 updates, a checkpoint kept after every update) are
trained once for the module."""

from __future__ import annotations

import io
import shutil
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

pytest.importorskip("matplotlib")

from trustmarl.experiment import runner  # noqa: E402
from trustmarl.experiment.backends import build_algorithm, make_backend  # noqa: E402
from trustmarl.experiment.checkpoint import load_checkpoint  # noqa: E402
from trustmarl.experiment.config import build_config  # noqa: E402
from trustmarl.experiment.logger import read_jsonl  # noqa: E402
from trustmarl.studies import crossplay as cp  # noqa: E402

RPS = [[[0, -1, 1], [1, 0, -1], [-1, 1, 0]], [[0, 1, -1], [-1, 0, 1], [1, -1, 0]]]  # zero-sum and role-symmetric
OV = {"env.payoffs": RPS, "algo.share_params": True, "algo.agent_id": False, "algo.num_envs": 32, "algo.rollout_len": 1,
      "algo.hidden_sizes": [8], "algo.actor_head_gain": 4.0, "algo.actor_lr": 0.05, "total_steps": 96, "checkpoint_keep": 1,
      "chunk_updates": 3}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("xp")
    out = {}
    for name, seed in (("a", 0), ("b", 7)):
        cfg = build_config("ippo", "matrix/general_sum", {**OV, "seed": seed})
        out[name] = (root / name, runner.train(cfg, root / name, progress=False, tensorboard=False))
    return out


def policies(run_dir, n: int = 2):
    """P(action) of the run's ``n`` agents (seed 0) after every kept checkpoint, computed directly: ``[K, n, 3]``."""
    cfg = runner.load_run_config(run_dir)
    algo = build_algorithm(cfg)
    template = make_backend(cfg, algo).template()
    obs, avail = (jnp.ones((1, n, 1)),), (jnp.ones((1, n, 3), bool),)
    out = []
    for path in cp.kept_checkpoints(run_dir):
        state, _ = load_checkpoint(path, template)
        params = jax.tree.map(lambda x: x[0], state.actor_params)
        out.append(np.exp(np.asarray(algo.policy(params, obs, avail)[0][0]))[0])
    return np.stack(out)


# ---- zero-sum runs: each player's return, never the team mean ---------------------------------------

def test_zero_sum_run_reports_each_players_return(runs):
    run_dir, summary = runs["a"]
    rows = read_jsonl(run_dir / "metrics.jsonl")
    a0 = np.array([r["episode_return_per_agent/agent_0"] for r in rows])
    a1 = np.array([r["episode_return_per_agent/agent_1"] for r in rows])
    np.testing.assert_allclose(a0 + a1, 0.0, atol=1e-6)  # every episode's returns sum to 0
    assert np.abs(a0).max() > 0.05
    assert summary["zero_sum"] and len(summary["initial_return_per_agent"]) == 2
    np.testing.assert_allclose(sum(summary["final_return_per_agent"]), 0.0, atol=1e-6)
    buf = io.StringIO()
    runner._print_result(summary, buf)
    line = buf.getvalue().splitlines()[0]
    assert "returns per agent [" in line and "zero-sum" in line and "return 0" not in line and "sum over agents" not in line
    from trustmarl.algos.base import Algorithm

    algo = types.SimpleNamespace(PROGRESS_METRIC=Algorithm.PROGRESS_METRIC, progress_postfix=lambda row: {})
    post = runner._postfix(algo, rows, None, float("nan"))
    assert set(post) == {"agents"}  # no "ret" (the team mean, always 0) and no "sum"
    general = [{**r, "episode_return_sum": r["episode_return_sum"] + 1.0} for r in rows]
    assert not runner.is_zero_sum(general) and "ret" in runner._postfix(algo, general, None, float("nan"))


# ---- crossplay ------------------------------------------------------------------------------------------

def test_a_cell_equals_the_exact_payoff_of_the_two_policies(runs, tmp_path):
    (a, _), (b, _) = runs["a"], runs["b"]
    pa, pb = policies(a), policies(b)
    assert len(pa) == len(pb) == 3 and np.abs(pa[0] - pa[-1]).max() > 1e-3  # three different checkpoints
    payoff = np.asarray(RPS[0], np.float64)
    det = cp.crossplay(a, b, 4, tmp_path / "det", deterministic=True)
    want = np.array([[payoff[p[0].argmax(), q[1].argmax()] for q in pb] for p in pa])
    np.testing.assert_array_equal(np.asarray(det["player0_return"]), want)
    np.testing.assert_array_equal(np.asarray(det["player1_return"]), -want)
    assert det["zero_sum"] and det["updates_a"] == [1, 2, 3]
    n = 3000
    sto = cp.crossplay(a, b, n, None)
    exact = np.einsum("ix,xy,jy->ij", pa[:, 0], payoff, pb[:, 1])
    sd = np.sqrt(np.einsum("ix,xy,jy->ij", pa[:, 0], payoff ** 2, pb[:, 1]) - exact ** 2)
    assert np.all(np.abs(np.asarray(sto["player0_return"]) - exact) <= 4 * sd / np.sqrt(n) + 1e-9)
    files = sorted(p.name for p in (tmp_path / "det").iterdir())
    assert files == ["crossplay.csv", "crossplay.json", "crossplay.png"]
    csv_rows = (tmp_path / "det" / "crossplay.csv").read_text().splitlines()
    assert csv_rows[0].endswith(",1,2,3") and len(csv_rows) == 4


def test_a_run_against_itself_with_one_policy_per_seat_is_antisymmetric(runs):
    a, _ = runs["a"]
    m = np.asarray(cp.crossplay(a, a, 2, None, deterministic=True)["player0_return"])
    np.testing.assert_array_equal(m, -m.T)  # rock-paper-scissors is role-symmetric: M[i, j] = -M[j, i]
    assert np.all(np.diag(m) == 0)


def test_transitivity_counts_later_checkpoints_that_do_better():
    m = np.array([[0.0, -1, -2], [1, 0, -1], [2, 1, 0]])  # later player-0 rows score more; later columns hold it to less
    t = cp.transitivity(m)
    assert t == {"player0_later_better": 1.0, "player1_later_better": 1.0, "mean": 1.0}
    assert cp.transitivity(-m)["mean"] == 0.0


def test_a_run_with_a_fixed_opponent_plays_its_own_seat(runs, tmp_path, capsys):
    """Run c trained player 1 against a random player 0 (run key fixed_agents): its policy acts for agent_1 only,
    loaded by name like a fixed agent's; as player 0 it is refused in one line."""
    from trustmarl.experiment.cli import main

    (a, _), c = runs["a"], tmp_path / "c"
    runner.train(build_config("ippo", "matrix/general_sum", {**OV, "seed": 3, "fixed_agents": ["agent_0"]}), c,
                 progress=False, tensorboard=False)
    pa, pc = policies(a), policies(c, n=1)
    det = cp.crossplay(a, c, 2, None, deterministic=True)
    payoff = np.asarray(RPS[0], np.float64)
    want = np.array([[payoff[p[0].argmax(), q[0].argmax()] for q in pc] for p in pa])
    np.testing.assert_array_equal(np.asarray(det["player0_return"]), want)
    assert main(["crossplay", str(c), str(a), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no policy for agent(s) ['agent_0']" in err[0], err


@pytest.mark.parametrize("case", ["missing", "no_kept", "other_env", "episodes"])
def test_bad_input_is_one_line_and_exit_2(runs, tmp_path, capsys, case):
    from trustmarl.experiment.cli import main

    a, _ = runs["a"]
    b = tmp_path / "b"
    shutil.copytree(a, b)
    if case == "no_kept":
        for p in cp.kept_checkpoints(b):
            p.unlink()
    if case == "other_env":
        cfg = yaml.safe_load((b / "config.yaml").read_text())
        cfg["env"]["payoffs"] = [[[1, -1, 1], [1, 0, -1], [-1, 1, 0]], [[-1, 1, -1], [-1, 0, 1], [1, -1, 0]]]
        (b / "config.yaml").write_text(yaml.safe_dump(cfg))
    args = ["crossplay", str(a), str(tmp_path / "nowhere" if case == "missing" else b), "--out", str(tmp_path / "x")]
    args += ["--episodes", "0"] if case == "episodes" else []
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    needle = {"missing": "does not exist", "no_kept": "no kept checkpoints", "other_env": "different environments",
              "episodes": "--episodes 0 must be"}[case]
    assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "x").exists()


@pytest.mark.slow  # a host env: trains a tiny MATRL run on Pong (needs the atari extra)
def test_pong_crossplay_on_a_host_env(tmp_path):
    pytest.importorskip("multi_agent_ale_py")
    run = tmp_path / "pong"
    cfg = build_config("matrl", "pettingzoo/pong", {"algo.num_envs": 2, "algo.rollout_len": 50, "algo.hidden_sizes": [16],
                                                    "total_steps": 200, "checkpoint_keep": 1, "env.frame_skip": 4,
                                                    "env.max_cycles": 200, "env.num_workers": 0})
    runner.train(cfg, run, progress=False, tensorboard=False)
    res = cp.crossplay(run, run, 2, tmp_path / "xp")
    m0, m1 = np.asarray(res["player0_return"]), np.asarray(res["player1_return"])
    assert m0.shape == (2, 2) and res["zero_sum"] and np.array_equal(m1, -m0)
