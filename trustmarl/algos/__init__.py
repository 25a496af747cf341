"""Algorithm registry: name -> (hyperparameter dataclass, factory, one-line description)."""

from __future__ import annotations

from typing import Any, Callable

_ALGOS: dict[str, tuple[type, Callable[..., Any], str]] = {}


def register_algo(name: str, config_cls: type, factory: Callable[..., Any], description: str) -> None:
    _ALGOS[name] = (config_cls, factory, description)


def algo_names() -> list[str]:
    _load()
    return sorted(_ALGOS)


def algo_config_class(name: str) -> type:
    _load()
    return _ALGOS[name][0]


def describe_algo(name: str) -> str:
    _load()
    return _ALGOS[name][2]


def make_algorithm(cfg, total_updates: int | None = None, env=None):
    """Build the algorithm of a resolved ``RunConfig`` (``env`` defaults to ``cfg.env``)."""
    _load()
    from trustmarl.envs import make

    env = make(cfg.env.name, **cfg.env.params) if env is None else env
    return _ALGOS[cfg.algo.name][1](env, cfg.algo, total_updates=total_updates)


_LOADED = False


def _load() -> None:
    """Import the built-in algorithm modules once (each registers its algorithms)."""
    global _LOADED
    if not _LOADED:
        _LOADED = True
        from trustmarl.algos import happo, hatrpo, ppo  # noqa: F401
