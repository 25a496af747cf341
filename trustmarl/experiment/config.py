"""Typed, validated run configurations: dataclass defaults < YAML presets < user file < ``key=value``.

A run config has three parts: top-level run keys (``seed``, ``num_seeds``, ``total_steps``, ...),
``algo.*`` (the algorithm's hyperparameters, one dataclass per algorithm family) and ``env.*``
(the environment's hyperparameters, the fields of its dataclass). Every error names the bad value
and what is allowed; the CLI turns it into one line and exit code 2.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from trustmarl.envs import registry as env_registry
from trustmarl.envs.host import registry as host_registry

PRESET_DIR = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(ValueError):
    """A configuration value that is unknown, of the wrong type or out of range."""


# ---- algorithm hyperparameters -----------------------------------------------------------------

@dataclasses.dataclass
class OnPolicyConfig:
    """Hyperparameters of the on-policy actor-critic family (MAPPO, IPPO, JR-PPO).

    Defaults follow the seed 004 spec §3.9 recommendation where it gives one and JaxMARL's MPE
    settings for the rollout shape; algorithm presets in ``trustmarl/configs`` override them.
    """

    name: str = "mappo"
    # rollout
    num_envs: int = 16
    rollout_len: int = 128
    # optimisation
    epochs: int = 4
    minibatches: int = 4
    actor_lr: float = 5e-4
    critic_lr: float = 5e-4
    anneal_lr: bool = False
    adam_eps: float = 1e-5
    max_grad_norm: float = 10.0
    sgd_unroll: bool = False  # unroll the epoch/minibatch loops: faster updates, ~2x longer compilation
    # returns and advantages
    gamma: float = 0.99
    gae_lambda: float = 0.95
    bootstrap_truncation: bool = False
    reward: str = "team"  # team | agent  (agent: each agent's own reward; needs critic=local)
    normalize_advantages: bool = True
    value_norm: bool = True
    # losses
    clip_eps: float = 0.2
    clip_rule: str = "fixed"  # fixed | per_agent (eps/N) | nth_root | joint (JR-PPO)
    ent_coef: float = 0.01
    vf_coef: float = 1.0
    agent_reduction: str = "mean"  # mean | sum over agents (seed 004 §7 #4)
    # agents and networks
    share_params: bool = True
    critic: str = "state"  # state: V(global state) | local: V(observation)
    agent_id: bool = True  # append a one-hot agent id to inputs of shared networks
    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    layer_norm: bool = False
    log_std_init: float = -0.5
    actor_head_gain: float = 0.01  # orthogonal-init gain of the policy head; larger = more random initial policies
    # recurrent actors (critics stay feed-forward): MLP encoder -> GRU -> head, trained on sequences
    recurrent: bool = False
    gru_size: int = 64
    seq_len: int = 0  # training sequence length; 0 = the whole rollout_len; must divide rollout_len

    # keys an algorithm inherits but does not read, with the reason; setting one is an error
    UNUSED: typing.ClassVar[dict[str, str]] = {}
    CHOICES: typing.ClassVar[dict[str, tuple[str, ...]]] = {
        "reward": ("team", "agent"),
        "clip_rule": ("fixed", "per_agent", "nth_root", "joint"),
        "agent_reduction": ("mean", "sum"),
        "critic": ("state", "local"),
        "activation": ("tanh", "relu", "gelu"),
    }

    def validate(self) -> None:
        positive_int(self, "num_envs", "rollout_len", "epochs", "minibatches")
        positive(self, "actor_lr", "critic_lr", "adam_eps", "max_grad_norm", "clip_eps")
        non_negative(self, "ent_coef", "vf_coef")
        in_range(self, "gamma", 0.0, 1.0, hi_open=True)
        in_range(self, "gae_lambda", 0.0, 1.0)
        for key, allowed in self.CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"algo.{key}={getattr(self, key)!r} is not allowed; choose one of {', '.join(allowed)}")
        if not self.hidden_sizes or any(h <= 0 for h in self.hidden_sizes):
            raise ConfigError(f"algo.hidden_sizes={list(self.hidden_sizes)} must be a non-empty list of positive ints")
        batch = self.num_envs * self.rollout_len
        if batch % self.minibatches:
            raise ConfigError(
                f"algo.minibatches={self.minibatches} must divide num_envs*rollout_len={batch}"
            )
        if self.recurrent:
            self._validate_recurrent()
        if self.reward == "agent" and self.critic != "local":
            raise ConfigError("algo.reward='agent' needs algo.critic='local' (a centralised V(s) has one value per step)")

    def train_samples(self) -> int:
        """Samples along the leading batch axis: env steps, or sequences of ``seq_len`` when recurrent."""
        steps = self.num_envs * self.rollout_len
        return steps // (self.seq_len or self.rollout_len) if self.recurrent else steps

    def _validate_recurrent(self) -> None:
        positive_int(self, "gru_size")
        if not isinstance(self.seq_len, int) or isinstance(self.seq_len, bool) or self.seq_len < 0:
            raise ConfigError(f"algo.seq_len={self.seq_len!r} must be an integer >= 0 (0 = the whole rollout_len)")
        if self.seq_len and self.rollout_len % self.seq_len:
            raise ConfigError(f"algo.seq_len={self.seq_len} must divide algo.rollout_len={self.rollout_len}")
        n_seq = self.train_samples()
        if n_seq % self.minibatches:
            raise ConfigError(
                f"algo.minibatches={self.minibatches} must divide the number of training sequences "
                f"num_envs*rollout_len/seq_len={n_seq} (recurrent minibatches hold whole sequences)"
            )


# ---- run config --------------------------------------------------------------------------------

@dataclasses.dataclass
class EnvConfig:
    name: str
    params: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class RunConfig:
    algo: Any  # an algorithm config dataclass (OnPolicyConfig or a subclass)
    env: EnvConfig
    seed: int = 0
    num_seeds: int = 1
    total_steps: int = 1_000_000
    chunk_updates: int = 10  # updates per jitted chunk (progress, metrics and checkpoints between chunks)
    checkpoint_every: int = 10  # chunks between checkpoints (the last one is always saved)
    eval_episodes: int = 32

    def validate(self) -> None:
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed={self.seed!r} must be a non-negative integer")
        positive_int(self, "num_seeds", "total_steps", "chunk_updates", "checkpoint_every", "eval_episodes")
        self.algo.validate()
        validate_env(self.env)

    def to_dict(self) -> dict[str, Any]:
        algo = {f.name: _plain(getattr(self.algo, f.name)) for f in dataclasses.fields(self.algo)}
        env = {"name": self.env.name, **{k: _plain(v) for k, v in self.env.params.items()}}
        top = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("algo", "env")}
        return {"algo": algo, "env": env, **top}


def _plain(v):
    return list(v) if isinstance(v, tuple) else v


# ---- validation helpers ------------------------------------------------------------------------

def positive_int(obj, *names):
    for n in names:
        v = getattr(obj, n)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"{_prefix(obj)}{n}={v!r} must be an integer >= 1")


def positive(obj, *names):
    for n in names:
        v = getattr(obj, n)
        if not (v > 0 and math.isfinite(v)):
            raise ConfigError(f"{_prefix(obj)}{n}={v!r} must be > 0")


def non_negative(obj, *names):
    for n in names:
        v = getattr(obj, n)
        if not (v >= 0 and math.isfinite(v)):
            raise ConfigError(f"{_prefix(obj)}{n}={v!r} must be >= 0")


def in_range(obj, name, lo, hi, hi_open=False):
    v = getattr(obj, name)
    ok = lo <= v < hi if hi_open else lo <= v <= hi
    if not ok:
        raise ConfigError(f"{_prefix(obj)}{name}={v!r} must be in [{lo}, {hi}{')' if hi_open else ']'}")


def _prefix(obj) -> str:
    return "" if isinstance(obj, RunConfig) else "algo."


def all_env_names() -> list[str]:
    """JAX-native and host environment names (``pettingzoo:module.path:attr`` is accepted besides)."""
    return env_registry.env_names() + host_registry.host_env_names()


def is_known_env(name: str) -> bool:
    return name in env_registry.env_names() or host_registry.is_host_env(name)


def _unknown_env(name: str) -> ConfigError:
    return ConfigError(
        f"unknown environment {name!r}; choose one of: {', '.join(all_env_names())}, "
        "or pettingzoo:module.path:attr (a PettingZoo Parallel API env factory)"
    )


def env_defaults(name: str) -> dict[str, Any]:
    """The ``env.*`` keys of a JAX-native or host environment and their defaults."""
    if host_registry.is_host_env(name):
        return host_registry.env_defaults(name)
    return env_registry.env_defaults(name)


def validate_env(env: EnvConfig) -> None:
    if not is_known_env(env.name):
        raise _unknown_env(env.name)
    if host_registry.is_host_env(env.name):
        return _validate_host_env(env)
    defaults = env_registry.env_defaults(env.name)
    _check_env_keys(env, defaults)
    try:
        env_registry.make(env.name, **env.params)
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


# ---- type coercion -----------------------------------------------------------------------------

def coerce(key: str, value: Any, typ: Any) -> Any:
    """Check ``value`` against ``typ`` (ints are accepted for floats, lists for tuples)."""
    origin = typing.get_origin(typ)
    if typ is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(typ)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(key, value, a)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}={value!r} has the wrong type")
    if origin is tuple or typ is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}={value!r} must be a list, e.g. [64, 64]")
        args = typing.get_args(typ)
        inner = args[0] if args else Any
        if inner is Any:
            return _to_tuple(value)
        return tuple(coerce(key, v, inner) for v in value)
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}={value!r} must be true or false")
    if typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            return int(value)  # 1e6 written as a float
        raise ConfigError(f"{key}={value!r} must be an integer")
    if typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}={value!r} must be a number")
    if typ is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}={value!r} must be a string")
    if isinstance(typ, type) and isinstance(value, typ):
        return value
    raise ConfigError(f"{key}={value!r} must be of type {getattr(typ, '__name__', typ)}")


def _to_tuple(v):
    """Nested lists to nested tuples (environment dataclasses must stay hashable)."""
    return tuple(_to_tuple(x) for x in v) if isinstance(v, (list, tuple)) else v


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


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of keys to values")
    return _flatten(data)


def preset_files(algo: str, env: str) -> list[Path]:
    """The packaged presets that apply, most general first: ``configs/<algo>.yaml``, then the
    environment family's ``configs/<algo>/<family>.yaml`` (family = the name before ``/``), then the
    task's ``configs/<algo>/<env with / and : as _>.yaml``."""
    env = host_registry.preset_name(env)
    files = [PRESET_DIR / f"{algo}.yaml"]
    if "/" in env:
        files.append(PRESET_DIR / algo / (env.split("/", 1)[0] + ".yaml"))
    files.append(PRESET_DIR / algo / (env.replace("/", "_").replace(":", "_") + ".yaml"))
    return [f for f in files if f.exists()]


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
) -> RunConfig:
    """Resolve a run config for ``algo`` on ``env``; raises ``ConfigError`` on any bad input."""
    from trustmarl.algos import algo_config_class, algo_names  # late import: algos import this module

    if algo not in algo_names():
        raise ConfigError(f"unknown algorithm {algo!r}; choose one of: {', '.join(algo_names())}")
    if not is_known_env(env):
        raise _unknown_env(env)
    layers: list[dict[str, Any]] = [load_yaml(f) for f in preset_files(algo, env)]
    if config_file is not None:
        layers.append(load_yaml(Path(config_file)))
    layers.append(dict(overrides or {}))
    algo_cls = algo_config_class(algo)
    for layer in layers[-2 if config_file is not None else -1:]:  # what the user set (presets are checked by tests)
        for key in layer:
            if key.startswith("algo.") and key[5:] in getattr(algo_cls, "UNUSED", {}):
                raise ConfigError(f"{key} is not used by {algo}: {algo_cls.UNUSED[key[5:]]}")
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    merged.pop("algo.name", None)
    merged.pop("env.name", None)

    algo_types = _field_types(algo_cls)
    run_types = {k: v for k, v in _field_types(RunConfig).items() if k not in ("algo", "env")}
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


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Rebuild a saved (resolved) config, validating it like a new one."""
    flat = _flatten(data)
    algo = flat.pop("algo.name", None)
    env = flat.pop("env.name", None)
    if algo is None or env is None:
        raise ConfigError("saved config lacks algo.name or env.name")
    from trustmarl.algos import algo_config_class, algo_names

    if algo not in algo_names():
        raise ConfigError(f"unknown algorithm {algo!r} in saved config; choose one of: {', '.join(algo_names())}")
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
