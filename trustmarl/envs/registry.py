"""Environment registry: readable names such as ``mpe/simple_spread`` map to environment classes.

Besides registered names, a JAX-native environment can be named by its import path
``"module.path:Attr"``: a :class:`MultiAgentEnv` subclass (its dataclass fields become the ``env.*``
keys) or instance. The same string works in ``trustmarl train``, ``eval`` and ``check-env``;
an import path to anything else (a PettingZoo Parallel env factory) is a host env
(:mod:`trustmarl.envs.host.registry`).

Names and descriptions of the built-in environments come from :mod:`trustmarl.catalog` without
importing them (no JAX); their modules are imported, and register themselves, when an environment is
built or its keys are read (:func:`env_factory`).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from typing import Any, Callable

from trustmarl import catalog

_REGISTRY: dict[str, tuple[Callable[..., Any], str]] = {}
_LOADED = False


def _load() -> None:
    """Import the built-in environment modules once (each registers its environments)."""
    global _LOADED
    if not _LOADED:
        _LOADED = True
        from trustmarl.envs import grid, jaxmarl_adapter, matrix, mpe  # noqa: F401


def register(name: str, factory: Callable[..., Any], description: str) -> None:
    """Register ``factory`` (usually an environment dataclass) under ``name``."""
    if name in _REGISTRY:
        raise ValueError(f"environment {name!r} is already registered")
    _REGISTRY[name] = (factory, description)


def env_names() -> list[str]:
    """Built-in (from the catalog, nothing imported) and registered JAX-native environment names."""
    if not catalog.environments():  # no catalog (a source checkout being rebuilt): import the modules
        _load()
    return sorted(set(_REGISTRY) | set(catalog.environments()))


def registered_names() -> list[str]:
    """The names the registry holds once every built-in module is imported (what the catalog is built from)."""
    _load()
    return sorted(_REGISTRY)


def is_registered(name: str) -> bool:
    return name in _REGISTRY or name in catalog.environments()


def is_import_path(name: str) -> bool:
    """``"module.path:attr"`` (not a registered name, not the ``pettingzoo:`` prefix form)."""
    if is_registered(name) or name.startswith("pettingzoo:") or name.count(":") != 1:
        return False
    module, attr = name.split(":")
    return bool(module) and bool(attr) and all(p.isidentifier() for p in module.split(".") + attr.split("."))


def import_object(name: str) -> Any:
    """The object at ``"module.path:attr"``; ``ValueError`` naming the path when it cannot be imported."""
    module_name, attr = name.split(":", 1)
    try:
        obj = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"cannot import {name!r}: {type(err).__name__}: {err}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"cannot import {name!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def is_jax_env_object(obj: Any) -> bool:
    from trustmarl.envs.base import MultiAgentEnv

    return (inspect.isclass(obj) and issubclass(obj, MultiAgentEnv)) or isinstance(obj, MultiAgentEnv)


def is_jax_env(name: str) -> bool:
    """A registered name or an import path to a :class:`MultiAgentEnv` subclass or instance."""
    if is_registered(name):
        return True
    if not is_import_path(name):
        return False
    try:
        return is_jax_env_object(import_object(name))
    except ValueError:
        return False


def describe(name: str) -> str:
    if name in _REGISTRY:
        return _REGISTRY[name][1]
    if name in catalog.environments():
        return catalog.environments()[name]["description"]
    obj = env_factory(name)
    return getattr(obj, "description", "") or f"JAX-native env {name}"


def env_factory(name: str) -> Callable[..., Any]:
    from trustmarl.envs.base import MultiAgentEnv

    if name not in _REGISTRY and not is_import_path(name):
        _load()
    if name in _REGISTRY:
        return _REGISTRY[name][0]
    if is_import_path(name):
        obj = import_object(name)
        if inspect.isclass(obj) and issubclass(obj, MultiAgentEnv):
            return obj
        if isinstance(obj, MultiAgentEnv):
            return lambda: obj
        raise KeyError(f"{name!r} is not a trustmarl MultiAgentEnv class or instance")
    raise KeyError(f"unknown environment {name!r}; choose one of: {', '.join(env_names())}")


def env_defaults(name: str) -> dict[str, Any]:
    """The hyperparameters of an environment and their default values."""
    factory = env_factory(name)
    if not dataclasses.is_dataclass(factory) or not inspect.isclass(factory):
        return {}  # an env instance: no hyperparameters
    out = {}
    for f in dataclasses.fields(factory):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out[f.name] = f.default_factory()  # type: ignore[misc]
    return out


def make(name: str, **kwargs: Any):
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
