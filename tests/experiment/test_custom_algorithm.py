"""An algorithm of your own by import path, like an environment of your own: ``trustmarl train
examples.iql:IQL ENV`` trains ``examples/iql.py``; the saved config records the import path, so ``eval`` and
``--resume`` in a *new process* (which never imported the module) find it; a longer ``total_steps`` continues
the run (epsilon-greedy exploration counted in env steps) bitwise as if it had been that long from the start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import yaml
from jaxcache import compilation_cache

from trustmarl.experiment import cli
from trustmarl.experiment.runner import load_run_state

ROOT = Path(__file__).resolve().parents[2]
ENV = "matrix/custom"
SETTINGS = ["env.payoff=[[2.0, 0.0], [0.0, 1.0]]", "chunk_updates=5", "algo.num_envs=4", "algo.rollout_len=1",
            "algo.buffer_size=64", "algo.batch_size=8", "algo.learning_starts=8", "algo.grad_steps=1",
            "algo.hidden_sizes=[8]", "algo.epsilon_decay_steps=60"]


def test_import_path_trains_and_a_new_process_evaluates_and_resumes(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # the import path resolves from the working directory, as for `python -m`
    with compilation_cache(tmp_path / "cache"):  # the new process and the long run find the programs compiled
        _train_resume_in_a_new_process_and_compare(tmp_path, capsys)


def _train_resume_in_a_new_process_and_compare(tmp_path, capsys):
    run_dir = tmp_path / "iql"
    code = cli.main(["train", "examples.iql:IQL", ENV, *SETTINGS, "total_steps=40", "--out", str(run_dir), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("my_iql on matrix/custom"), out
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["algo"]["name"] == "my_iql" and saved["algo"]["import"] == "examples.iql:IQL"

    script = (
        "import json, sys\n"
        "from trustmarl.experiment import cli\n"
        "assert 'examples.iql' not in sys.modules\n"
        f"assert cli.main(['train', '--resume', {str(run_dir)!r}, 'total_steps=80', '--no-progress']) == 0\n"
        f"assert cli.main(['eval', {str(run_dir)!r}, '--episodes', '2', '--json']) == 0\n"
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT), "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "cache"),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1"}
    res = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    result = json.loads(res.stdout.strip().splitlines()[-1])
    assert (result["algo"], result["update"], result["episodes"]) == ("my_iql", 20, 2)

    code = cli.main(["train", "examples.iql:IQL", ENV, *SETTINGS, "total_steps=80", "--out", str(tmp_path / "long"),
                     "--no-progress"])
    assert code == 0
    resumed, fresh = load_run_state(run_dir)[2], load_run_state(tmp_path / "long")[2]
    assert all(np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)
               for a, b in zip(jax.tree_util.tree_leaves(resumed), jax.tree_util.tree_leaves(fresh)))


def test_import_path_errors_are_one_line(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    for argv, needle in [
        (["train", "examples.nope:IQL", ENV], "cannot import 'examples.nope:IQL'"),
        (["train", "examples.iql:Nope", ENV], "has no attribute 'Nope'"),
        (["train", "examples.iql:IQLConfig", ENV, "algo.bogus=1"], "unknown key 'algo.bogus' for algorithm my_iql"),
        (["train", "trustmarl.algos.on_policy.ppo:PPO", ENV], "registered as several algorithms (ippo, jrppo, mappo)"),
        (["train", "json:loads", ENV], "'json:loads' is not a registered algorithm"),
    ]:
        code = cli.main(argv)
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and needle in err, (argv, err)


def test_list_keys_of_an_algorithm_by_import_path(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert cli.main(["list", "--keys", "examples.iql:IQL"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("my_iql (algorithm): IQL: independent deep Q-learning")
    assert "algo.epsilon_decay_steps = 10000" in out and "env steps over which epsilon falls linearly" in out
