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
    check_sharing(cfg, env)
    return _ALGOS[cfg.algo.name][1](env, cfg.algo, total_updates=total_updates)


def check_sharing(cfg, env) -> None:
    """Parameter sharing needs one group: every agent with the same observation and action spaces."""
    if getattr(cfg.algo, "share_params", False) and len(env.groups) > 1:
        from trustmarl.experiment.config import ConfigError

        groups = "; ".join(f"{g.name} ({', '.join(g.agents)}: obs {g.obs_dim}, {g.action_space})" for g in env.groups)
        raise ConfigError(
            f"algo.share_params=true needs every agent to have the same observation and action spaces, "
            f"but {cfg.env.name} has {len(env.groups)} groups: {groups}; use algo.share_params=false"
        )


_LOADED = False


def _load() -> None:
    """Import the built-in algorithm modules once (each registers its algorithms)."""
    global _LOADED
    if not _LOADED:
        _LOADED = True
        from trustmarl.algos import happo, hatrpo, ppo  # noqa: F401
