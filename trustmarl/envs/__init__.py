"""JAX-native multi-agent environments and the registry.

Importing this package is cheap (no JAX): the environment modules are imported, and register their
environments, the first time the registry is asked for them (:func:`trustmarl.envs.registry.env_names`,
``make``, ...). The names below are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "AgentGroup": "trustmarl.envs.base",
    "Box": "trustmarl.envs.base",
    "Discrete": "trustmarl.envs.base",
    "MultiAgentEnv": "trustmarl.envs.base",
    "TimeStep": "trustmarl.envs.base",
    "describe": "trustmarl.envs.registry",
    "env_defaults": "trustmarl.envs.registry",
    "env_names": "trustmarl.envs.registry",
    "make": "trustmarl.envs.registry",
    "register": "trustmarl.envs.registry",
}


def to_pettingzoo(env_or_name, render_mode=None, **kwargs):
    """Any JAX-native env as a PettingZoo Parallel API env (see :mod:`trustmarl.envs.pettingzoo_wrapper`;
    needs the ``pettingzoo`` extra, imported on first use)."""
    from trustmarl.envs.pettingzoo_wrapper import to_pettingzoo as _to_pettingzoo

    return _to_pettingzoo(env_or_name, render_mode=render_mode, **kwargs)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'trustmarl.envs' has no attribute {name!r}")


__all__ = [
    "AgentGroup", "Box", "Discrete", "MultiAgentEnv", "TimeStep",
    "describe", "env_defaults", "env_names", "make", "register", "to_pettingzoo",
]
