"""The ``trustmarl`` command line, run in-process: listings, one-line errors with exit code 2 before
anything is built, a train -> resume -> eval cycle, divergence (exit 3) and check-env forwarding."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from trustmarl.envs import registry
from trustmarl.experiment import cli, runner

ENV = "matrix/proposition1"
# Same settings as test_runner.BASE, so compiled programs come from the shared compilation cache.
SMALL = ["total_steps=160", "chunk_updates=3", "num_seeds=2", "checkpoint_every=2", "seed=3"]


def call(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(code, out, err, *needles):
    assert code == 2
    assert err.startswith("trustmarl: error: ") and err.count("\n") == 1, err
    for n in needles:
        assert n in err, (n, err)


# ---- list ----------------------------------------------------------------------------------------

def test_list_names_every_algorithm_and_environment(capsys):
    from trustmarl import algos

    code, out, _ = call(capsys, "list")
    assert code == 0
    for name in algos.algo_names():
        assert re.search(rf"^\s+{re.escape(name)}\s+{re.escape(algos.describe_algo(name))}$", out, re.M)
    for name in registry.env_names():
        assert re.search(rf"^\s+{re.escape(name)}\s+{re.escape(registry.describe(name))}$", out, re.M)
    assert "total_steps" in out


def test_list_keys(capsys):
    code, out, _ = call(capsys, "list", "--keys", "dummy")
    assert code == 0 and "algo.lr = 0.1" in out and "algo.nan_at = -1" in out and "algo.name" not in out
    code, out, _ = call(capsys, "list", "--keys", ENV)
    assert code == 0 and "env.n_agents = 4" in out
    code, out, _ = call(capsys, "list", "--keys")
    assert code == 0 and "algo.lr = 0.1" in out and "env.max_cycles = 25" in out and "total_steps = 1000000" in out
    assert_usage_error(*call(capsys, "list", "--keys", "nope"), "unknown name 'nope'", "dummy", ENV)


# ---- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "argv, needles",
    [
        (["train", "nope", ENV], ["unknown algorithm 'nope'", "dummy"]),
        (["train", "dummy", "nope/env"], ["unknown environment 'nope/env'", ENV]),
        (["train", "dummy", ENV, "algo.bogus=1"], ["'algo.bogus'", "algo.lr"]),
        (["train", "dummy", ENV, "bogus=1"], ["'bogus'", "total_steps"]),
        (["train", "dummy", ENV, "algo.lr=abc"], ["algo.lr='abc' must be a number"]),
        (["train", "dummy", ENV, "algo.lr=-1"], ["algo.lr=-1", "must be > 0"]),
        (["train", "dummy", ENV, "num_seeds=0"], ["num_seeds=0 must be an integer >= 1"]),
        (["train", "dummy", ENV, "env.n_agents=3"], ["n_agents", "3"]),
        (["train", "dummy", ENV, "algo.lr"], ["'algo.lr' must look like key=value"]),
        (["train", "dummy", ENV, "--config", "/nonexistent.yaml"], ["'/nonexistent.yaml' does not exist"]),
        (["train"], ["train needs ALGO and ENV"]),
        (["train", "dummy"], ["train needs ALGO and ENV"]),
        (["frobnicate"], ["invalid choice: 'frobnicate'"]),
        (["train", "--resume", "/nonexistent/run"], ["'/nonexistent/run' does not exist"]),
        (["eval", "/nonexistent/run"], ["'/nonexistent/run' does not exist"]),
        (["train", "dummy", ENV, "--bogus-flag"], ["unrecognized arguments: --bogus-flag"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_building(capsys, monkeypatch, tmp_path, argv, needles):
    def no_build(*a, **k):
        raise AssertionError("an algorithm was built despite bad input")

    monkeypatch.setattr(runner, "build_algorithm", no_build)
    monkeypatch.chdir(tmp_path)
    code, out, err = call(capsys, *argv)
    assert_usage_error(code, out, err, *needles)
    assert out == "" and not (tmp_path / "runs").exists()


def test_existing_run_dir_is_refused_before_building(capsys, monkeypatch, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "config.yaml").write_text("{}")
    monkeypatch.setattr(runner, "build_algorithm", lambda *a, **k: pytest.fail("built"))
    assert_usage_error(*call(capsys, "train", "dummy", ENV, "--out", tmp_path / "d"), "already exists", "--overwrite")


def test_config_file_then_overrides_and_default_out_dir(capsys, monkeypatch, tmp_path):
    seen = {}

    def fake_train(cfg, out, resume, overwrite, progress):
        seen.update(cfg=cfg, out=out, resume=resume, overwrite=overwrite, progress=progress)
        return {"status": "completed"}

    monkeypatch.setattr(runner, "train", fake_train)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"algo": {"lr": 0.2, "noise": 0.0}, "total_steps": 40}))
    code, _, _ = call(capsys, "train", "dummy", ENV, "--config", "c.yaml", "total_steps=48", "--no-progress")
    assert code == 0
    cfg = seen["cfg"]
    assert (cfg.algo.lr, cfg.algo.noise, cfg.total_steps) == (0.2, 0.0, 48)
    assert (seen["resume"], seen["overwrite"], seen["progress"]) == (False, False, False)
    assert re.fullmatch(r"runs/dummy_matrix_proposition1_\d{8}-\d{6}", seen["out"].as_posix())


def test_interrupt_exit_130_with_resume_hint(capsys, monkeypatch, tmp_path):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "train", interrupted)
    code, _, err = call(capsys, "train", "dummy", ENV, "--out", tmp_path / "r")
    assert code == 130 and f"trustmarl train --resume {tmp_path / 'r'}" in err


# ---- a real cycle (dummy algorithm) --------------------------------------------------------------

def test_train_resume_eval_cycle(capsys, tmp_path):
    run_dir = tmp_path / "run"
    code, out, _ = call(capsys, "train", "dummy", ENV, *SMALL, "--out", run_dir, "--no-progress")
    assert code == 0 and f"run saved to {run_dir}" in out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["status"], summary["updates"]) == ("completed", 20)

    assert_usage_error(*call(capsys, "train", "dummy", ENV, *SMALL, "--out", run_dir), "already exists")
    assert_usage_error(*call(capsys, "train", "--resume", run_dir, "algo.lr=0.5"), "cannot change algo.lr")
    assert_usage_error(*call(capsys, "train", "--resume", run_dir, "--out", tmp_path / "x"), "--resume cannot")
    assert_usage_error(*call(capsys, "train", "--resume", run_dir, "dummy"), "only key=value")
    assert_usage_error(*call(capsys, "train", "--resume", run_dir, "total_steps=80"), "already at update 20")

    code, out, _ = call(capsys, "train", "--resume", run_dir, "total_steps=200", "--no-progress")
    assert code == 0
    assert json.loads((run_dir / "summary.json").read_text())["updates"] == 25

    code, out, _ = call(capsys, "eval", run_dir, "--episodes", "3", "--json")
    res = json.loads(out)
    assert code == 0 and (res["episodes"], res["deterministic"], res["update"]) == (3, True, 25)
    assert res["mean_return"] == pytest.approx(runner.evaluate_run(run_dir)["mean_return"])
    code, out, _ = call(capsys, "eval", run_dir, "--stochastic")
    assert code == 0 and "stochastic episodes" in out and "at update 25" in out
    assert_usage_error(*call(capsys, "eval", run_dir, "--episodes", "0"), "--episodes 0 must be >= 1")


def test_diverged_run_exits_3(capsys, tmp_path):
    # the settings of test_runner's divergence test (compiled programs are cached)
    argv = ["train", "dummy", ENV, *SMALL[:-2], "checkpoint_every=5", "seed=3", "algo.nan_at=8"]
    code, _, err = call(capsys, *argv, "--out", tmp_path / "nan", "--no-progress")
    assert code == 3
    assert "training diverged: loss/actor is nan at update 8" in err
    assert json.loads((tmp_path / "nan" / "summary.json").read_text())["status"] == "diverged"


# ---- check-env and entry points ------------------------------------------------------------------

def test_check_env_takes_every_name_train_takes(capsys, tmp_path, monkeypatch):
    """One env-name syntax: a registered JAX name (with env.* overrides), a host preset, an import path to
    a JAX-native class, and a PettingZoo factory with and without the pettingzoo: prefix."""
    monkeypatch.syspath_prepend(os.path.join(os.path.dirname(__file__), "..", "envs"))
    for argv in (["mpe/simple_spread", "env.n_agents=2"], ["pettingzoo/simple_spread"],
                 ["broken_envs:ToyEnv", "env.episode_len=3"], ["broken_envs:toy_parallel_env"],
                 ["pettingzoo:broken_envs:toy_parallel_env"]):
        code, out, err = call(capsys, "check-env", *argv)
        assert code == 0 and "OK, no contract violations" in out and err == "", (argv, out, err)
    code, out, _ = call(capsys, "check-env", "broken_envs:ToyEnv", "env.bug=obs_shape")
    assert code == 1 and "problem(s) found" in out and "obs" in out
    assert_usage_error(*call(capsys, "check-env", "no/such_env"), "unknown environment 'no/such_env'")
    assert_usage_error(*call(capsys, "check-env", "no_such_module_xyz:Env"), "cannot import 'no_such_module_xyz:Env'")
    assert_usage_error(*call(capsys, "check-env", "mpe/simple_spread", "env.bogus=1"), "unknown key env.bogus")


def test_train_and_eval_a_users_jax_env_by_import_path(capsys, tmp_path, monkeypatch):
    """The name that passes check-env trains from the command line, with its fields as env.* keys, and
    the saved run evaluates (the env is re-imported from the config)."""
    monkeypatch.syspath_prepend(os.path.join(os.path.dirname(__file__), "..", "envs"))
    run = tmp_path / "toy"
    code, _, err = call(capsys, "train", "dummy", "broken_envs:ToyEnv", "env.episode_len=3", *SMALL, "--out", run, "--no-progress")
    assert code == 2 and "dummy supports discrete actions only" in err  # ToyEnv has a continuous group
    code, out, err = call(capsys, "train", "mappo", "broken_envs:ToyEnv", "env.episode_len=3", "total_steps=64",
                          "algo.num_envs=2", "algo.rollout_len=8", "algo.minibatches=1", "algo.epochs=1",
                          "algo.hidden_sizes=[8]", "algo.share_params=false", "--out", run, "--no-progress")
    assert code == 0, err
    assert yaml.safe_load((run / "config.yaml").read_text())["env"] == {"name": "broken_envs:ToyEnv", "episode_len": 3}
    code, out, _ = call(capsys, "eval", run, "--episodes", "2")
    assert code == 0 and "mean length 3" in out
    assert_usage_error(*call(capsys, "train", "mappo", "broken_envs:ToyEnv", "env.nope=1", "--out", tmp_path / "x"),
                       "unknown key env.nope for broken_envs:ToyEnv")


def test_help_exits_0(capsys):
    code, out, _ = call(capsys, "--help")
    assert code == 0 and "train" in out and "check-env" in out


def test_python_dash_m_entry_point():
    res = subprocess.run(
        [sys.executable, "-m", "trustmarl", "train", "nope", ENV], capture_output=True, text=True, timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.startswith("trustmarl: error: unknown algorithm 'nope'") and res.stderr.count("\n") == 1


def test_package_exports_are_lazy():
    code = (
        "import sys, trustmarl; assert 'trustmarl.experiment.runner' not in sys.modules; "
        "from trustmarl.experiment import runner; assert trustmarl.train is runner.train; "
        "assert trustmarl.make_env('matrix/proposition1').n_agents == 4; print(trustmarl.__version__)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "0.1.0"
