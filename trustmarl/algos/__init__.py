"""Algorithm registry: name -> hyperparameter dataclass, factory, description and capabilities.

Every algorithm registers itself when its module is imported (``register_algo`` at the bottom of
the module); :func:`algo_names` lists them all, and the tests that loop over the registry cover a
new algorithm automatically. Names and descriptions of the built-in algorithms come from
:mod:`trustmarl.catalog` without importing them (no JAX); their modules are imported on first use.

An algorithm of your own is named by its import path, ``my_pkg.algo:MyAlgo`` (the class, or its
hyperparameter dataclass), exactly like an environment of your own: importing the module registers
it under its name, and the path works wherever a name does (``trustmarl train my_pkg.algo:MyAlgo ENV``,
sweeps). A run's saved config records the import path of an algorithm that is not built in
(``algo.import``, :func:`import_path_of`), so ``trustmarl eval`` and ``--resume`` in a new process
import it again.
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
    import_path: str = ""  # "module:Class" of the factory (how a new process finds an algorithm of your own)

    @property
    def builtin(self) -> bool:
        return self.import_path.startswith("trustmarl.")


_ALGOS: dict[str, AlgoSpec] = {}


def register_algo(name: str, config_cls: type, factory: Callable[..., Any], description: str, *,
                  family: str = "on-policy", action_kinds: tuple[str, ...] = ("discrete", "continuous")) -> None:
    path = f"{getattr(factory, '__module__', '')}:{getattr(factory, '__qualname__', '')}"
    _ALGOS[name] = AlgoSpec(name, config_cls, factory, description, family, tuple(action_kinds), path)


def algo_names() -> list[str]:
    """Built-in (from the catalog, nothing imported) and registered algorithm names."""
    from trustmarl import catalog

    if not catalog.algorithms():  # no catalog (a source checkout being rebuilt): import the modules
        _load()
    return sorted(set(_ALGOS) | set(catalog.algorithms()))


def registered_names() -> list[str]:
    """The names the registry holds once every built-in module is imported (what the catalog is built from)."""
    _load()
    return sorted(_ALGOS)


def is_import_path(name: str) -> bool:
    """``"module.path:Attr"``: an algorithm of your own by import path."""
    if name.count(":") != 1:
        return False
    module, attr = name.split(":")
    return bool(module) and bool(attr) and all(p.isidentifier() for p in module.split(".") + attr.split("."))


def is_known(name: str) -> bool:
    """A registered or built-in name, or an import path (checked when it is resolved); imports nothing."""
    from trustmarl import catalog

    return name in _ALGOS or name in catalog.algorithms() or is_import_path(name)


def unknown_algorithm(name: str, where: str = "") -> ConfigError:
    return ConfigError(
        f"unknown algorithm {name!r}{where}; choose one of: {', '.join(algo_names())}, or an import path "
        "module.path:Class to an algorithm of your own (a class registered with trustmarl.algos.register_algo)"
    )


def algo_spec(name: str) -> AlgoSpec:
    """The registered algorithm ``name``, or the one an import path ``module.path:Attr`` names (the class
    passed to :func:`register_algo` or its hyperparameter dataclass; importing the module registers it);
    ``ConfigError`` naming the problem otherwise."""
    if name in _ALGOS:
        return _ALGOS[name]
    if is_import_path(name):
        return _resolve_path(name)
    _load()
    if name not in _ALGOS:
        raise unknown_algorithm(name)
    return _ALGOS[name]


def _resolve_path(path: str) -> AlgoSpec:
    from trustmarl.envs.registry import import_object

    try:
        obj = import_object(path)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    matches = [s for s in _ALGOS.values() if obj is s.factory or obj is s.config_cls]
    if not matches:
        raise ConfigError(
            f"{path!r} is not a registered algorithm: its module must call trustmarl.algos.register_algo(NAME, "
            f"ConfigClass, {path.split(':')[1]}, DESCRIPTION) (see docs/writing_an_algorithm.md)"
        )
    if len(matches) > 1:
        raise ConfigError(f"{path!r} is registered as several algorithms ({', '.join(sorted(s.name for s in matches))}); "
                          "use one of these names")
    return matches[0]


def resolve_name(name: str) -> str:
    """The registered name of ``name`` (itself, or the algorithm an import path names)."""
    return algo_spec(name).name if is_import_path(name) else name


def import_path_of(name: str) -> str | None:
    """Where a new process finds algorithm ``name``: the ``module:Class`` of an algorithm of your own, or
    ``None`` for a built-in one (and for one defined in ``__main__`` or a function, which nothing can import)."""
    spec = _ALGOS.get(name)
    if spec is None or spec.builtin:
        return None
    module = spec.import_path.split(":")[0]
    return None if module in ("", "__main__") or "<locals>" in spec.import_path else spec.import_path


def algo_config_class(name: str) -> type:
    """The hyperparameter dataclass of ``name``. A built-in one is imported from its own module when the
    algorithm's module is not loaded yet (``OnPolicyConfig`` needs no JAX, so MAPPO's settings are
    checked without it)."""
    from trustmarl import catalog

    entry = catalog.fresh_algorithm(name)
    if name not in _ALGOS and entry is not None:
        from trustmarl.envs.registry import import_object

        return import_object(entry["config"])
    return algo_spec(name).config_cls


def describe_algo(name: str) -> str:
    from trustmarl import catalog

    if name not in _ALGOS and name in catalog.algorithms():
        return catalog.algorithms()[name]["description"]
    return algo_spec(name).description


def make_algorithm(cfg, total_updates: int | None = None, env=None):
    """Build the algorithm of a resolved ``RunConfig`` (``env`` defaults to ``cfg.env``'s JAX-native env)."""
    _load()
    from trustmarl.envs import make

    env = make(cfg.env.name, **cfg.env.params) if env is None else env
    check_compatible(cfg, env)
    return algo_spec(cfg.algo.name).factory(env, cfg.algo, total_updates=total_updates)


def check_compatible(cfg, env) -> None:
    """The algorithm supports the env's action kinds, parameter sharing has one group to share in, and the
    config's own env checks pass (``check_env(env)`` of the hyperparameter class, e.g. one flag per agent)."""
    spec = algo_spec(cfg.algo.name)
    bad = [g for g in env.groups if g.action_space.kind not in spec.action_kinds]
    if bad:
        groups = "; ".join(f"{g.name} ({g.action_space})" for g in bad)
        raise ConfigError(
            f"{spec.name} supports {' and '.join(spec.action_kinds)} actions only, but {cfg.env.name} has "
            f"{bad[0].action_space.kind} actions in group(s) {groups}"
            + ("; for continuous actions use maddpg or matd3 (off-policy), or mappo/happo" if bad[0].action_space.kind == "continuous" else "")
        )
    if getattr(cfg.algo, "share_params", False) is True and len(env.groups) > 1:  # "auto" never fails
        groups = "; ".join(f"{g.name} ({', '.join(g.agents)}: obs {g.obs_dim}, {g.action_space})" for g in env.groups)
        remedy = getattr(cfg.algo, "SHARE_REMEDY", "use algo.share_params=false or auto")  # an algorithm that always shares says its own
        raise ConfigError(
            f"algo.share_params=true needs every agent to have the same observation and action spaces, "
            f"but {cfg.env.name} has {len(env.groups)} groups: {groups}; {remedy}"
        )
    check_env = getattr(cfg.algo, "check_env", None)
    if check_env is not None:
        check_env(env)


_LOADED = False  # set once every built-in module imported without error
_LOADING = False  # an import in progress (a module that asks the registry while it loads gets what is there)


def _load() -> None:
    """Import the built-in algorithm modules once (each registers its algorithms)."""
    global _LOADED, _LOADING
    if _LOADED or _LOADING:
        return
    _LOADING = True
    try:
        from trustmarl.compilation import install_default

        install_default()  # a straight-line Threefry on the CPU: same numbers, far fewer runtime ops
        from trustmarl.algos.off_policy import f2a2_ddpg, f2a2_isac, f2a2_sac, iql, maac, maddpg, mamd, mamt, qmix, qtran, vdn  # noqa: F401
        from trustmarl.algos.on_policy import happo, hatrpo, ppo  # noqa: F401
        from trustmarl.algos.on_policy import coma, matrl  # noqa: F401
        _LOADED = True  # only after every import succeeded: a failed load is retried, not left half empty
    finally:
        _LOADING = False
