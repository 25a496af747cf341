"""Run files are written with the permissions of the metrics: ``config.yaml``, ``summary.json`` and the
checkpoint as ``open()`` would create them (0644 under the usual umask 022), not ``mkstemp``'s 0600."""

from __future__ import annotations

import os
import stat

import _dummy
from trustmarl.experiment.runner import train


def test_run_files_share_the_metrics_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        train(_dummy.config(total_steps=16, chunk_updates=2, num_seeds=1), tmp_path / "run", progress=False,
              tensorboard=False)
    finally:
        os.umask(old)
    mode = lambda name: stat.S_IMODE((tmp_path / "run" / name).stat().st_mode)  # noqa: E731
    assert mode("metrics.jsonl") == 0o644
    for name in ("config.yaml", "summary.json", "checkpoints/last.npz", "checkpoints/last.json"):
        assert mode(name) == 0o644, (name, oct(mode(name)))
