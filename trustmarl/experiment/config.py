"""Typed, validated run configurations: dataclass defaults < YAML presets < user file < ``key=value``.

A run config has three parts: top-level run keys (``seed``, ``num_seeds``, ``total_steps``, ...),
``algo.*`` (the algorithm's hyperparameters, one dataclass per algorithm family) and ``env.*``
(the environment's hyperparameters, the fields of its dataclass). Every error names the bad value
and what is allowed; the CLI turns it into one line and exit code 2.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import yaml

from trustmarl.envs import registry as env_registry
from trustmarl.envs.host import registry as host_registry
from trustmarl.validation import ConfigError, coerce, non_negative_int, positive_int

__all__ = ["ConfigError", "EnvConfig", "RunConfig", "build_config", "config_from_dict", "parse_overrides"]

PRESET_DIR = Path(__file__).resolve().parent.parent / "configs"


# ---- run config --------------------------------------------------------------------------------

@dataclasses.dataclass
class EnvConfig:
    name: str
    params: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class RunConfig:
    KEY_PREFIX: typing.ClassVar[str] = ""  # run keys are top-level (no "algo." prefix in messages)

    algo: Any  # an algorithm's hyperparameter dataclass (beside its algorithm, e.g. OnPolicyConfig)
    env: EnvConfig
    seed: int = 0  # seed of the first training seed; the others are derived from it
    num_seeds: int = 1  # independent seeds trained together as one vmap (each with the full algo.num_envs)
    total_steps: int = 1_000_000  # env steps per seed
    chunk_updates: int = 10  # updates per jitted chunk (progress, metrics and checkpoints between chunks)
    checkpoint_every: int = 10  # chunks between checkpoints (the last one is always saved)
    checkpoint_seconds: float = 300.0  # also checkpoint this long after the last one; never sooner than 20x its write time
    eval_episodes: int = 32  # episodes per seed of each evaluation (and of `trustmarl eval`); off-policy algorithms: 10
    eval_every: int = 0  # env steps per seed between deterministic evaluations in training; 0 = never; off-policy: 10000
    checkpoint_keep: int | None = None  # updates between numbered checkpoints kept (checkpoints/update_NNNNNNN.npz, e.g. for crossplay); null = none
    devices: typing.Any = 1  # int or "auto": devices the seed axis is sharded over (one program per device, no communication): a number dividing num_seeds, or "auto"; with env_blocks > 1 the env blocks are sharded instead (a number dividing env_blocks)
    env_blocks: int = 1  # blocks each seed's algo.num_envs env copies are split into (a divisor of num_envs): each block rolls out and samples its own minibatches, gradients are averaged over blocks; the blocks are sharded over `devices` (1 = no blocks)
    fixed_agents: tuple[str, ...] | str | None = None  # agents that do not learn: a list of names or a name prefix (e.g. blue_); null = none
    fixed_policy: str | None = None  # what acts for fixed_agents: random (default) or a run directory / checkpoint file whose frozen policy acts
    fixed_seed: int = 0  # the seed of fixed_policy's run whose policy acts
    fixed_deterministic: bool = False  # fixed_policy acts greedily / by its Gaussian mean instead of sampling

    def validate(self) -> None:
        self.validate_run_keys()
        self.algo.validate()
        validate_env(self.env)
        n = getattr(self.algo, "num_envs", None)
        if self.env_blocks > 1 and n is not None and n % self.env_blocks:
            raise ConfigError(f"env_blocks={self.env_blocks} must divide algo.num_envs={n} (each block holds num_envs/env_blocks env copies)")

    def validate_run_keys(self) -> None:
        """The top-level run keys alone (checked before the algorithm's module is imported)."""
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed={self.seed!r} must be a non-negative integer")
        positive_int(self, "num_seeds", "total_steps", "chunk_updates", "checkpoint_every", "eval_episodes")
        non_negative_int(self, "eval_every")
        k = self.checkpoint_keep
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ConfigError(f"checkpoint_keep={k!r} must be an integer >= 1 (updates between kept checkpoints), or null for none")
        d = self.devices
        if d != "auto" and (isinstance(d, bool) or not isinstance(d, int) or d < 1):
            raise ConfigError(f"devices={d!r} must be an integer >= 1 dividing num_seeds, or auto (the most available devices that divide it)")
        positive_int(self, "env_blocks")
        if isinstance(d, int) and self.env_blocks > 1 and self.env_blocks % d:
            raise ConfigError(f"devices={d} must divide env_blocks={self.env_blocks} (each device runs env_blocks/devices blocks of every seed)")
        if isinstance(d, int) and self.env_blocks == 1 and self.num_seeds % d:
            raise ConfigError(f"devices={d} must divide num_seeds={self.num_seeds} (each device trains num_seeds/devices seeds)")
        if not (isinstance(self.checkpoint_seconds, (int, float)) and self.checkpoint_seconds >= 0):
            raise ConfigError(f"checkpoint_seconds={self.checkpoint_seconds!r} must be a number >= 0")
        _check_fixed_keys(self)

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as saved in a run directory. An algorithm of your own also records its import
        path (``algo.import``) so that a new process can import it again."""
        from trustmarl.algos import import_path_of

        algo = {f.name: _plain(getattr(self.algo, f.name)) for f in dataclasses.fields(self.algo)}
        path = import_path_of(self.algo.name)
        if path is not None:
            algo = {"name": algo.pop("name"), "import": path, **algo}
        env = {"name": self.env.name, **{k: _plain(v) for k, v in self.env.params.items()}}
        top = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name not in ("algo", "env")}
        return {"algo": algo, "env": env, **top}


def _check_fixed_keys(cfg) -> None:
    """The fixed-agent run keys alone (no env built): types, ``fixed_policy`` needs ``fixed_agents``,
    ``fixed_policy`` is ``random`` or an existing path."""
    agents, policy = cfg.fixed_agents, cfg.fixed_policy
    if policy is not None and agents is None:
        raise ConfigError(f"fixed_policy={policy!r} needs fixed_agents (the agents it acts for: a list of names or a prefix)")
    if agents is None:
        return
    if isinstance(agents, str):
        if not agents:
            raise ConfigError("fixed_agents='' must be a non-empty agent-name prefix or a list of agent names")
    elif not agents or any(not isinstance(a, str) or not a for a in agents):
        raise ConfigError(f"fixed_agents={list(agents)!r} must be a non-empty list of agent names, or a name prefix")
    if policy is not None and policy != "random" and not Path(policy).exists():
        raise ConfigError(f"fixed_policy={policy!r} must be 'random', a run directory or a checkpoint inside one; "
                          "that path does not exist")
    if isinstance(cfg.fixed_seed, bool) or not isinstance(cfg.fixed_seed, int) or cfg.fixed_seed < 0:
        raise ConfigError(f"fixed_seed={cfg.fixed_seed!r} must be an integer >= 0 (a seed of the fixed policy's run)")


def _plain(v):
    return list(v) if isinstance(v, tuple) else v


def all_env_names() -> list[str]:
    """JAX-native and host environment names (import paths ``module.path:Attr`` are accepted besides)."""
    return env_registry.env_names() + host_registry.host_env_names()


def env_kind(name: str) -> str:
    """``"jax"`` or ``"host"`` for an environment name (registered, host preset, or import path);
    ``ConfigError`` naming the problem otherwise. The one place that decides how a name is run."""
    if env_registry.is_jax_env(name):
        return "jax"
    if name in host_registry.PRESETS or name.startswith(host_registry.GENERIC_PREFIX):
        return "host"
    if env_registry.is_import_path(name):
        try:
            env_registry.import_object(name)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        return "host"  # not a MultiAgentEnv: a PettingZoo Parallel env factory
    raise ConfigError(
        f"unknown environment {name!r}; choose one of: {', '.join(all_env_names())}, or an import path "
        "module.path:Attr (a trustmarl MultiAgentEnv class or a PettingZoo Parallel API env factory; "
        "pettingzoo:module.path:attr also works)"
    )


def is_known_env(name: str) -> bool:
    try:
        env_kind(name)
    except ConfigError:
        return False
    return True


def is_host(name: str) -> bool:
    return env_kind(name) == "host"


def env_defaults(name: str) -> dict[str, Any]:
    """The ``env.*`` keys of a JAX-native or host environment and their defaults."""
    if env_kind(name) == "host":
        return host_registry.env_defaults(name)
    return env_registry.env_defaults(name)


def env_key_help(name: str) -> dict[str, dict[str, Any]]:
    """``{key: {"default": ..., "help": ...}}`` of an environment's ``env.*`` keys: a built-in JAX-native env's
    from :mod:`trustmarl.catalog` (nothing imported), others from their dataclass or host preset."""
    from trustmarl import catalog

    if env_kind(name) == "host":
        known = {"agent_obsk": "graph distance of the joints an agent observes (Multi-Agent MuJoCo)",
                 "observation": "local: the agent_obsk view | full: the whole observation plus a one-hot agent id",
                 "max_episode_steps": "episode length (time limit)", "max_cycles": "episode length (time limit)",
                 "n_agents": "agents", "local_ratio": "weight of the agent's own reward against the global one",
                 "obs_type": "ram: the 128-byte RAM / 255 | grayscale84: the screen in grayscale, 84x84, / 255 (Pong)",
                 "frame_skip": "frames per step, rewards summed (Pong)",
                 "full_action_space": "18 actions (true, as Wen et al. 2021's code) or Pong's 6"}
        other = f"a keyword argument of {name}'s PettingZoo constructor"
        out = {k: {"default": v, "help": known.get(k, other)} for k, v in host_registry.env_defaults(name).items()}
        out["num_workers"]["help"] = ("worker processes stepping the env copies; -1: automatic (0 for cheap envs, "
                                      "else one per copy up to the CPU count)")
        return out
    entry = catalog.environments().get(name)
    if entry is not None and entry.get("keys") is not None:
        return entry["keys"]
    return catalog.env_keys(name)


def run_key_help() -> dict[str, str]:
    """One-line descriptions of the run keys (the comments beside ``RunConfig``'s fields)."""
    from trustmarl import catalog

    return catalog.field_help(RunConfig)


def describe_env(name: str) -> str:
    return host_registry.describe(name) if env_kind(name) == "host" else env_registry.describe(name)


def validate_env(env: EnvConfig) -> None:
    if env_kind(env.name) == "host":
        return _validate_host_env(env)
    defaults = env_registry.env_defaults(env.name)
    _check_env_keys(env, defaults)
    try:
        env_registry.make(env.name, **env.params)
    except ImportError as e:  # MissingExtraError (e.g. SMAX without trustmarl[jaxmarl]) names the pip extra
        raise ConfigError(f"{env.name}: {e}") from None
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{env.name}: {e}") from None


def _check_env_keys(env: EnvConfig, defaults: dict[str, Any], open_keys: bool = False) -> None:
    for k, v in env.params.items():
        if k not in defaults:
            if open_keys:
                continue
            raise ConfigError(
                f"unknown key env.{k} for {env.name}; allowed: {', '.join('env.' + d for d in sorted(defaults)) or 'none'}"
            )
        env.params[k] = coerce(f"env.{k}", v, type(defaults[k]) if defaults[k] is not None else Any)


def _validate_host_env(env: EnvConfig) -> None:
    """Keys and types of a host env, and that its factory can be built (packages importable).

    The env itself is built later (when the run starts); a missing optional package is a ConfigError.
    """
    _check_env_keys(env, host_registry.env_defaults(env.name), open_keys=host_registry.is_generic(env.name))
    try:
        host_registry.validate_params(env.name, env.params)
        host_registry.make_factory(env.name, env.params)
    except ImportError as e:  # MissingExtraError names the pip extra
        raise ConfigError(f"{env.name}: {e}") from None
    except (ValueError, TypeError, KeyError) as e:
        raise ConfigError(f"{env.name}: {e}") from None


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def parse_value(text: str) -> Any:
    """Parse a command-line value with YAML scalar rules (``1e-3``, ``true``, ``[64, 64]``)."""
    try:
        v = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(v, str):
        try:  # YAML 1.1 reads "1e-3" as a string
            return float(v) if v.lower() not in ("nan", "inf", "-inf") and any(c.isdigit() for c in v) else v
        except ValueError:
            return v
    return v


def parse_overrides(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. algo.clip_eps=0.1)")
        k, v = item.split("=", 1)
        if not k:
            raise ConfigError(f"override {item!r} has an empty key")
        out[k.strip()] = parse_value(v)
    return out


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k in ("algo", "env") and not prefix:
            for kk, vv in v.items():
                out[f"{k}.{kk}"] = vv
        else:
            out[prefix + k] = v
    return out


def flat_config(d: dict[str, Any]) -> dict[str, Any]:
    """``{"algo": {"lr": 1}}`` -> ``{"algo.lr": 1}`` (one level, as in config files)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            out[k] = v
    return out


def read_yaml_mapping(path: str | Path, what: str = "config file", error: type[Exception] = ConfigError,
                      hint: str = "", empty_ok: bool = False) -> dict[str, Any]:
    """The mapping a YAML file holds (every YAML file trustmarl reads goes through here), or one line
    raised as ``error``: a missing file, a directory, unreadable or invalid YAML, not a mapping (``hint``
    is appended to that message, e.g. the allowed keys). An empty file is ``{}`` when ``empty_ok``."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise error(f"{what} {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise error(f"{str(path)!r} is a directory, not a {what}") from None
    except OSError as e:
        raise error(f"cannot read {what} {str(path)!r}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise error(f"{what} {str(path)!r} is not valid YAML: {' '.join(str(e).split())}") from None
    if data is None and empty_ok:
        return {}
    if not isinstance(data, dict):
        raise error(f"{what} {str(path)!r} must hold a mapping{hint}")
    return data


def load_yaml(path: Path) -> dict[str, Any]:
    """A config file (``--config``, presets) as flat ``key: value`` overrides."""
    return _flatten(read_yaml_mapping(path, "config file", hint=" of keys to values", empty_ok=True))


def preset_files(algo: str, env: str, variant: str | None = None) -> list[Path]:
    """The packaged presets that apply, most general first: ``configs/<algo>.yaml``, then the
    environment family's ``configs/<algo>/<family>.yaml`` (family = the name before ``/``), then the
    task's ``configs/<algo>/<env with / and : as _>.yaml``. A named ``variant`` (``--preset NAME``)
    adds the same three layers named ``<...>.<variant>.yaml`` on top (e.g. ``happo/mamujoco.paper.yaml``,
    a paper's exact settings beside the defaults); a variant with no file for ``algo`` on ``env`` is an error."""
    env = host_registry.preset_name(env)
    files = [PRESET_DIR / f"{algo}.yaml"]
    if "/" in env:
        files.append(PRESET_DIR / algo / (env.split("/", 1)[0] + ".yaml"))
    files.append(PRESET_DIR / algo / (env.replace("/", "_").replace(":", "_") + ".yaml"))
    layers = [f for f in files if f.exists()]
    if variant is not None:
        extra = [f.with_suffix(f".{variant}.yaml") for f in files]
        extra = [f for f in extra if f.exists()]
        if not extra:
            known = sorted({p.name[len(f.stem) + 1 : -len(".yaml")] for f in files for p in f.parent.glob(f"{f.stem}.*.yaml")})
            raise ConfigError(
                f"--preset {variant!r}: no such preset for {algo} on {env}; available: {', '.join(known) or 'none'}"
            )
        layers += extra
    return layers


def drop_unused(algo: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` without the ``algo.*`` keys ``algo`` does not use (for one override set shared by
    several algorithms, e.g. a sweep); :func:`build_config` rejects such keys when they are set directly."""
    from trustmarl.algos import algo_config_class

    unused = getattr(algo_config_class(algo), "UNUSED", {})
    return {k: v for k, v in overrides.items() if not (k.startswith("algo.") and k[5:] in unused)}


def build_config(
    algo: str,
    env: str,
    overrides: dict[str, Any] | None = None,
    config_file: str | Path | None = None,
    preset: str | None = None,
) -> RunConfig:
    """Resolve a run config for ``algo`` on ``env``; raises ``ConfigError`` on any bad input.
    ``preset`` names a preset variant (see :func:`preset_files`)."""
    from trustmarl import algos  # late import: algos import this module

    if not algos.is_known(algo):
        raise algos.unknown_algorithm(algo)
    env_kind(env)  # raises for an unknown name
    algo = algos.resolve_name(algo)  # an import path: its module is imported and registers the algorithm
    layers: list[dict[str, Any]] = [load_yaml(f) for f in preset_files(algo, env, preset)]
    if config_file is not None:
        layers.append(load_yaml(Path(config_file)))
    layers.append(dict(overrides or {}))
    user_layers = layers[-2 if config_file is not None else -1:]  # what the user set (presets are checked by tests)
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    merged.pop("algo.name", None)
    merged.pop("env.name", None)
    merged.pop("algo.import", None)
    run_types = {k: v for k, v in _field_types(RunConfig).items() if k not in ("algo", "env")}
    _check_before_import(algo, merged, user_layers, run_types)

    algo_cls = algos.algo_config_class(algo)
    # run keys an algorithm family sets by default, below every preset and user layer (e.g. the off-policy
    # family's periodic deterministic evaluation)
    merged = {**getattr(algo_cls, "RUN_DEFAULTS", {}), **merged}
    for layer in user_layers:
        for key in layer:
            if key.startswith("algo.") and key[5:] in getattr(algo_cls, "UNUSED", {}):
                raise ConfigError(f"{key} is not used by {algo}: {algo_cls.UNUSED[key[5:]]}")
    algo_types = _field_types(algo_cls)
    algo_kwargs: dict[str, Any] = {"name": algo}
    env_params: dict[str, Any] = {}
    run_kwargs: dict[str, Any] = {}
    for key, value in merged.items():
        if key.startswith("algo."):
            k = key[5:]
            if k not in algo_types:
                allowed = ", ".join("algo." + n for n in algo_types if n != "name")
                raise ConfigError(f"unknown key {key!r} for algorithm {algo}; allowed: {allowed}")
            algo_kwargs[k] = coerce(key, value, algo_types[k])
        elif key.startswith("env."):
            env_params[key[4:]] = value
        elif key in run_types:
            run_kwargs[key] = coerce(key, value, run_types[key])
        else:
            raise ConfigError(
                f"unknown key {key!r}; allowed: {', '.join(run_types)}, algo.<hyperparameter>, env.<hyperparameter>"
                " (see `trustmarl list`)"
            )
    cfg = RunConfig(algo=algo_cls(**algo_kwargs), env=EnvConfig(env, env_params), **run_kwargs)
    cfg.validate()
    return cfg


def _check_before_import(algo: str, merged: dict[str, Any], user_layers: list[dict[str, Any]],
                         run_types: dict[str, Any]) -> None:
    """The errors that need no algorithm module (no JAX): unknown and bad run keys, and for a built-in
    algorithm, unknown or unused ``algo.*`` keys (from :mod:`trustmarl.catalog`)."""
    from trustmarl import catalog

    run_kwargs = {}
    for key, value in merged.items():
        if key.startswith(("algo.", "env.")):
            continue
        if key not in run_types:
            raise ConfigError(
                f"unknown key {key!r}; allowed: {', '.join(run_types)}, algo.<hyperparameter>, env.<hyperparameter>"
                " (see `trustmarl list`)"
            )
        run_kwargs[key] = coerce(key, value, run_types[key])
    RunConfig(algo=None, env=None, **run_kwargs).validate_run_keys()
    entry = catalog.fresh_algorithm(algo)
    if entry is None:
        return
    unused = entry["unused"]
    for layer in user_layers:
        for key in layer:
            if key.startswith("algo.") and key[5:] in unused:
                raise ConfigError(f"{key} is not used by {algo}: {unused[key[5:]]}")
    for key in merged:
        if key.startswith("algo.") and key[5:] not in entry["keys"] and key[5:] not in unused:
            allowed = ", ".join("algo." + n for n in entry["keys"])
            raise ConfigError(f"unknown key {key!r} for algorithm {algo}; allowed: {allowed}")


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Rebuild a saved (resolved) config, validating it like a new one."""
    flat = _flatten(data)
    algo = flat.pop("algo.name", None)
    env = flat.pop("env.name", None)
    path = flat.pop("algo.import", None)
    if algo is None or env is None:
        raise ConfigError("saved config lacks algo.name or env.name")
    from trustmarl import algos
    from trustmarl.algos import algo_config_class

    if algo not in algos.algo_names() and path is not None:
        found = algos.algo_spec(str(path)).name  # imports the module that registers it
        if found != algo:
            raise ConfigError(f"saved config names algorithm {algo!r} but {path!r} registers {found!r}")
    if algo not in algos.algo_names():
        raise algos.unknown_algorithm(algo, " in saved config (an algorithm of your own is found again when its "
                                            "module is importable: the config records it as algo.import)")
    algo_types = _field_types(algo_config_class(algo))
    run_types = _field_types(RunConfig)
    kwargs = {}
    env_params = {}
    run_kwargs = {}
    for key, value in flat.items():
        if key.startswith("algo."):
            if key[5:] not in algo_types:
                raise ConfigError(f"unknown key {key!r} in saved config")
            kwargs[key[5:]] = coerce(key, value, algo_types[key[5:]])
        elif key.startswith("env."):
            env_params[key[4:]] = value
        elif key in run_types:
            run_kwargs[key] = coerce(key, value, run_types[key])
        else:
            raise ConfigError(f"unknown key {key!r} in saved config")
    cfg = RunConfig(algo=algo_config_class(algo)(name=algo, **kwargs), env=EnvConfig(env, env_params), **run_kwargs)
    cfg.validate()
    return cfg
