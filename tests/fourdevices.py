"""Run a test script in a fresh process with four XLA host-platform devices (the device count is fixed when the
backend starts, so multi-device tests cannot run in the pytest process itself)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_on_four_devices(script: str, tmp_path: Path, part: str) -> None:
    """``python -c script RUNS_DIR CACHE_DIR part`` with 4 host devices (and the test session's other XLA flags);
    the script prints ``OK`` last on success."""
    flags = ("--xla_force_host_platform_device_count=4 " + os.environ.get("XLA_FLAGS", "")).strip()
    env = {**os.environ, "XLA_FLAGS": flags,
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent),
                                          os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "runs"), str(tmp_path / "cache"), part],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), proc.stdout[-3000:] + proc.stderr[-3000:]


def train_on_one_and_four(out: Path, algo: str, env: str, overrides: dict, close) -> tuple:
    """Inside a four-device script: the run ``overrides`` on 1 and on 4 devices (``devices``), then a run stopped
    after one chunk on 4 devices resumed on 1, and the other way round; asserts the two runs and both resumed runs
    end ``close`` to the 1-device state (checkpoints hold host arrays). Returns ``(s1, s4, rows1, rows4)``."""
    from trustmarl.experiment.config import build_config
    from trustmarl.experiment.logger import read_jsonl
    from trustmarl.experiment.runner import load_run_state, resume_config, train

    kw = dict(progress=False, tensorboard=False)
    for d in (1, 4):
        train(build_config(algo, env, {**overrides, "devices": d}), out / f"d{d}", **kw)
    s1, s4 = load_run_state(out / "d1")[2], load_run_state(out / "d4")[2]
    assert close(s1, s4)
    for a, b in ((4, 1), (1, 4)):
        run = out / f"r{a}{b}"
        train(build_config(algo, env, {**overrides, "devices": a}), run, stop_after_chunks=1, **kw)
        summary = train(resume_config(run, {"devices": b}), run, resume=True, **kw)
        assert summary["status"] == "completed"
        assert close(load_run_state(run)[2], s1), f"resume {a} -> {b}"
    return s1, s4, read_jsonl(out / "d1" / "metrics.jsonl"), read_jsonl(out / "d4" / "metrics.jsonl")
