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
           "PYTHONPATH": str(Path(__file__).resolve().parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "runs"), str(tmp_path / "cache"), part],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), proc.stdout[-3000:] + proc.stderr[-3000:]
