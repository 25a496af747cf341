"""Environment registry: readable names such as ``mpe/simple_spread`` map to environment classes."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from trustmarl.envs.base import MultiAgentEnv

_REGISTRY: dict[str, tuple[Callable[..., MultiAgentEnv], str]] = {}


def register(name: str, factory: Callable[..., MultiAgentEnv], description: str) -> None:
    """Register ``factory`` (usually an environment dataclass) under ``name``."""
    if name in _REGISTRY:
        raise ValueError(f"environment {name!r} is already registered")
    _REGISTRY[name] = (factory, description)


def env_names() -> list[str]:
    return sorted(_REGISTRY)


def describe(name: str) -> str:
    return _REGISTRY[name][1]


def env_factory(name: str) -> Callable[..., MultiAgentEnv]:
    if name not in _REGISTRY:
        raise KeyError(f"unknown environment {name!r}; choose one of: {', '.join(env_names())}")
    return _REGISTRY[name][0]


def env_defaults(name: str) -> dict[str, Any]:
    """The hyperparameters of an environment and their default values."""
    factory = env_factory(name)
    out = {}
    for f in dataclasses.fields(factory):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out[f.name] = f.default_factory()  # type: ignore[misc]
    return out


def make(name: str, **kwargs: Any) -> MultiAgentEnv:
    """Build the environment ``name`` with hyperparameters ``kwargs`` (validated)."""
    factory = env_factory(name)
    allowed = env_defaults(name)
    for k in kwargs:
        if k not in allowed:
            raise KeyError(
                f"unknown hyperparameter {k!r} for environment {name!r}; allowed: {', '.join(sorted(allowed)) or 'none'}"
            )
    env = factory(**kwargs)
    env.validate()
    return env
