"""What a new user meets first: ``--help``, ``list`` and argument errors answer without importing JAX, every
subcommand's help documents every argument with choices and two examples, ``list --keys`` describes each
hyperparameter, and third-party notices at env construction do not bury a one-line error. (Timings are in
``benchmarks/bench_cli.py``; tests never assert wall-clock limits.)"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trustmarl.experiment import cli

ROOT = Path(__file__).resolve().parents[2]
ENV = "mpe/simple_spread"
NO_JAX = [
    ["--help"], ["train", "--help"], ["eval", "--help"], ["list", "--help"], ["sweep", "--help"],
    ["report", "--help"], ["reproduce", "--help"], ["check-env", "--help"],
    ["list"], ["list", "--keys", "happo"], ["list", "--keys", ENV], ["list", "--keys", "mamujoco/halfcheetah_2x3"],
    ["train", "nope", ENV], ["train", "mappo", "nope/env"], ["train", "mappo", ENV, "bogus=1"],
    ["train", "mappo", ENV, "num_seeds=0"], ["train", "mappo", ENV, "total_steps=abc"],
    ["train", "maddpg", ENV, "algo.bogus=1"], ["train", "maac", ENV, "algo.noise_start=0.2"],
    ["train", "mappo", ENV, "algo.lr"], ["train", "mappo"], ["train", "mappo", ENV, "--bogus"],
    ["train", "mappo", ENV, "algo.clip_eps=-1"],  # OnPolicyConfig needs no JAX; other algorithms' values do
    ["reproduce", "x", "--tier", "bad"], ["frobnicate"], ["eval", "/nonexistent/run"],
    ["train", "--resume", "/nonexistent/run"],
]


def test_help_list_and_argument_errors_do_not_import_jax():
    script = (
        "import sys, contextlib, io\n"
        "from trustmarl.experiment.cli import main\n"
        f"for argv in {NO_JAX!r}:\n"
        "    out, err = io.StringIO(), io.StringIO()\n"
        "    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):\n"
        "        code = main(argv)\n"
        "    assert code in (0, 2), (argv, code)\n"
        "    assert code == 0 or err.getvalue().count('\\n') == 1, (argv, err.getvalue())\n"
        "    bad = sorted(m for m in ('jax', 'flax', 'optax') if m in sys.modules)\n"
        "    assert not bad, (argv, bad)\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stdout + res.stderr


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli._parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"trustmarl": parser, **action.choices}


@pytest.mark.parametrize("name", list(_subparsers()))
def test_help_documents_every_argument_and_two_examples(name):
    parser = _subparsers()[name]
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        assert action.help and len(action.help) > 10, (name, action.dest)
    text = parser.format_help()
    examples = [line for line in text.split("examples:", 1)[-1].splitlines() if line.strip().startswith("trustmarl ")]
    assert "examples:" in text and len(examples) >= 2, text
    if name == "train":
        for key in cli._run_keys():
            assert f"  {key}=" in text, key  # run keys with their defaults and descriptions
    if name == "reproduce":
        assert "--tier {smoke,cpu,full}" in text


def test_cli_tiers_are_the_reproductions_tiers():
    from trustmarl.studies.reproduce import TIERS

    assert cli.TIERS == TIERS


def test_list_keys_prints_default_and_description(capsys):
    from trustmarl import catalog

    assert cli.main(["list", "--keys", "hatrpo"]) == 0
    out = capsys.readouterr().out
    lines = {line.split(" = ")[0].strip(): line for line in out.splitlines() if line.startswith("  algo.")}
    keys = catalog.algorithms()["hatrpo"]["keys"]
    assert set(lines) == {f"algo.{k}" for k in keys}
    for k, v in keys.items():
        assert lines[f"algo.{k}"].split(" = ", 1)[1].startswith(cli._show(v["default"])) and v["help"] in lines[f"algo.{k}"]
    assert "algo.kl_threshold = 0.01" in out and "(not used by hatrpo:" in out
    assert "algo.epochs" not in lines  # declared unused by HATRPO


def test_mamujoco_notices_do_not_bury_an_error():
    pytest.importorskip("gymnasium_robotics")
    res = subprocess.run([sys.executable, "-m", "trustmarl", "check-env", "mamujoco/halfcheetah_2x3", "env.agent_obsk=-1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"})
    assert res.returncode == 2 and res.stdout == "", res.stdout
    assert res.stderr.count("\n") == 1 and "agent_obsk must be an integer >= 0" in res.stderr, res.stderr


def test_mujoco_compiler_notices_go_to_the_debug_log(caplog, capfd):
    pytest.importorskip("gymnasium_robotics")
    import logging

    from trustmarl.envs.host import mamujoco

    mamujoco._SEEN.clear()
    with caplog.at_level(logging.DEBUG, logger="trustmarl.envs.host.mamujoco"):
        env = mamujoco.mamujoco("HalfCheetah-2x3")()
        env.close()
        env = mamujoco.mamujoco("HalfCheetah-2x3")()
        env.close()
    out, err = capfd.readouterr()
    assert "settotalmass" not in out + err
    notices = [r.getMessage() for r in caplog.records if "settotalmass" in r.getMessage()]
    assert len(notices) == 1  # once per process, at debug level
