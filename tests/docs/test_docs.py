"""The documentation site builds with ``mkdocs build --strict`` (no broken links, every page in the nav),
and its generated reference pages list every algorithm key and environment of the registries."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_mkdocs_build_strict_and_generated_reference(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "NO_MKDOCS_2_WARNING": "1", "JAX_PLATFORMS": "cpu"}
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    site = tmp_path / "site"
    for page in ("quickstart", "concepts", "sweeps", "reports", "reproductions", "writing_an_algorithm",
                 "algorithms/hatrpo", "reproductions/hatrpo-figure1", "reference/config", "reference/cli"):
        assert (site / page / "index.html").is_file(), page
    config = (site / "reference" / "config" / "index.html").read_text()
    cli = (site / "reference" / "cli" / "index.html").read_text()
    from trustmarl import algos
    from trustmarl.experiment.config import all_env_names

    for name in algos.algo_names():
        cls = algos.algo_config_class(name)
        if not cls.__module__.startswith("trustmarl."):
            continue  # registered by another test in this process (the docs build sees the package's own)
        assert f"Algorithm <code>{name}</code>" in config
        for f in dataclasses.fields(cls):
            if f.name != "name" and f.name not in getattr(cls, "UNUSED", {}):
                assert f"algo.{f.name}" in config, (name, f.name)
    for env in all_env_names():
        assert f"<code>{env}</code>" in config
    for command in ("train", "eval", "list", "check-env", "sweep", "report", "reproduce"):
        assert f"trustmarl {command}" in cli
