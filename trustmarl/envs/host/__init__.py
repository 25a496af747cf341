"""Host (Python) environments behind trustmarl's environment contract.

Host environments run in Python (PettingZoo Parallel API, SISL, Gymnasium-Robotics MaMuJoCo) rather than
in JAX. :class:`HostVecEnv` runs several copies in worker processes and returns numpy
:class:`~trustmarl.envs.base.TimeStep` batches with a leading ``[num_envs]`` axis, so the same jitted
policy and update functions used for JAX-native environments can train on them.

The heavy submodules are imported lazily: ``from trustmarl.envs.host import HostVecEnv`` works without
PettingZoo or MuJoCo installed, and a missing optional package raises :class:`MissingExtraError` naming
the pip extra to install.
"""

from __future__ import annotations

import importlib
from typing import Any


class MissingExtraError(ImportError):
    """An optional dependency is missing; the message names the ``pip install`` command that adds it."""


class HostEnvError(RuntimeError):
    """An environment copy raised inside a worker (the message names the worker and env index)."""


_LAZY = {
    "HostVecEnv": "trustmarl.envs.host.vector",
    "PettingZooAdapter": "trustmarl.envs.host.pettingzoo_adapter",
    "PettingZooFactory": "trustmarl.envs.host.pettingzoo_adapter",
    "group_agents": "trustmarl.envs.host.pettingzoo_adapter",
    "load_pettingzoo": "trustmarl.envs.host.pettingzoo_adapter",
    "mpe2_simple_spread": "trustmarl.envs.host.pettingzoo_adapter",
    "sisl_multiwalker": "trustmarl.envs.host.pettingzoo_adapter",
    "sisl_pursuit": "trustmarl.envs.host.pettingzoo_adapter",
    "MaMuJoCoFactory": "trustmarl.envs.host.mamujoco",
    "MAMUJOCO_TASKS": "trustmarl.envs.host.mamujoco",
    "mamujoco": "trustmarl.envs.host.mamujoco",
}

__all__ = ["HostEnvError", "MissingExtraError", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
