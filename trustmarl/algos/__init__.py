"""Algorithm registry: name -> hyperparameter dataclass, factory, description and capabilities.

Every algorithm registers itself when its module is imported (``register_algo`` at the bottom of
the module); :func:`algo_names` lists them all, and the tests that loop over the registry cover a
new algorithm automatically.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from trustmarl.validation import ConfigError


@dataclasses.dataclass(frozen=True)
class AlgoSpec:
    name: str
    config_cls: type  # the hyperparameter dataclass (its fields are the algo.* keys)
    factory: Callable[..., Any]  # (env, cfg, total_updates=...) -> algorithm
    description: str
    family: str  # "on-policy", "off-policy", ...
    action_kinds: tuple[str, ...]  # the action kinds its policies support ("discrete", "continuous")


_ALGOS: dict[str, AlgoSpec] = {}


def register_algo(name: str, config_cls: type, factory: Callable[..., Any], description: str, *,
                  family: str = "on-policy", action_kinds: tuple[str, ...] = ("discrete", "continuous")) -> None:
    _ALGOS[name] = AlgoSpec(name, config_cls, factory, description, family, tuple(action_kinds))


def algo_names() -> list[str]:
    _load()
    return sorted(_ALGOS)


def algo_spec(name: str) -> AlgoSpec:
    _load()
    return _ALGOS[name]


def algo_config_class(name: str) -> type:
    return algo_spec(name).config_cls


def describe_algo(name: str) -> str:
    return algo_spec(name).description


def make_algorithm(cfg, total_updates: int | None = None, env=None):
    """Build the algorithm of a resolved ``RunConfig`` (``env`` defaults to ``cfg.env``'s JAX-native env)."""
    _load()
    from trustmarl.envs import make

    env = make(cfg.env.name, **cfg.env.params) if env is None else env
    check_compatible(cfg, env)
    return _ALGOS[cfg.algo.name].factory(env, cfg.algo, total_updates=total_updates)


def check_compatible(cfg, env) -> None:
    """The algorithm supports the env's action kinds, parameter sharing has one group to share in, and the
    config's own env checks pass (``check_env(env)`` of the hyperparameter class, e.g. one flag per agent)."""
    spec = _ALGOS[cfg.algo.name]
    bad = [g for g in env.groups if g.action_space.kind not in spec.action_kinds]
    if bad:
        groups = "; ".join(f"{g.name} ({g.action_space})" for g in bad)
        raise ConfigError(
            f"{spec.name} supports {' and '.join(spec.action_kinds)} actions only, but {cfg.env.name} has "
            f"{bad[0].action_space.kind} actions in group(s) {groups}"
        )
    if getattr(cfg.algo, "share_params", False) is True and len(env.groups) > 1:  # "auto" never fails
        groups = "; ".join(f"{g.name} ({', '.join(g.agents)}: obs {g.obs_dim}, {g.action_space})" for g in env.groups)
        raise ConfigError(
            f"algo.share_params=true needs every agent to have the same observation and action spaces, "
            f"but {cfg.env.name} has {len(env.groups)} groups: {groups}; use algo.share_params=false or auto"
        )
    check_env = getattr(cfg.algo, "check_env", None)
    if check_env is not None:
        check_env(env)


_LOADED = False


def _load() -> None:
    """Import the built-in algorithm modules once (each registers its algorithms)."""
    global _LOADED
    if not _LOADED:
        _LOADED = True
        from trustmarl.compilation import install_default

        install_default()  # a straight-line Threefry on the CPU: same numbers, far fewer runtime ops
        from trustmarl.algos.off_policy import maac, maddpg, mamd, mamt  # noqa: F401
        from trustmarl.algos.on_policy import happo, hatrpo, ppo  # noqa: F401
        from trustmarl.algos.on_policy import matrl  # noqa: F401
