"""trustmarl: multi-agent reinforcement learning with trust-region methods in JAX.

Importing the package is cheap; the public names below are loaded on first use::

    import trustmarl
    cfg = trustmarl.build_config("mappo", "mpe/simple_spread", {"total_steps": 100_000})
    summary = trustmarl.train(cfg, "runs/demo")
    policy = trustmarl.load_policy("runs/demo", seed=0)  # policy.act(obs, deterministic=True)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "build_config": "trustmarl.experiment.config",
    "RunConfig": "trustmarl.experiment.config",
    "ConfigError": "trustmarl.experiment.config",
    "train": "trustmarl.experiment.runner",
    "evaluate_run": "trustmarl.experiment.runner",
    "load_policy": "trustmarl.experiment.policy",
    "make_algorithm": "trustmarl.algos",
    "algo_names": "trustmarl.algos",
    "make_env": ("trustmarl.envs", "make"),
    "env_names": "trustmarl.envs",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        target = _LAZY[name]
        module, attr = target if isinstance(target, tuple) else (target, name)
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'trustmarl' has no attribute {name!r}")
