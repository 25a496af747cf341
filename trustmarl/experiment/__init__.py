"""Running experiments: configs, training runs, checkpoints, metrics and the command line.

Public names are imported lazily so that ``import trustmarl.experiment.config`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ConfigError": "trustmarl.experiment.config",
    "RunConfig": "trustmarl.experiment.config",
    "build_config": "trustmarl.experiment.config",
    "config_from_dict": "trustmarl.experiment.config",
    "train": "trustmarl.experiment.runner",
    "evaluate_run": "trustmarl.experiment.runner",
    "resume_config": "trustmarl.experiment.runner",
    "load_run_config": "trustmarl.experiment.runner",
    "load_run_state": "trustmarl.experiment.runner",
    "RunDirError": "trustmarl.experiment.runner",
    "save_checkpoint": "trustmarl.experiment.checkpoint",
    "load_checkpoint": "trustmarl.experiment.checkpoint",
    "CheckpointError": "trustmarl.experiment.checkpoint",
    "main": "trustmarl.experiment.cli",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'trustmarl.experiment' has no attribute {name!r}")
