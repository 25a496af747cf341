"""Configuration errors, validators and type coercion (no imports from the rest of the package).

Every error names the bad value and what is allowed, in one line; the CLI prints it as
``trustmarl: error: ...`` and exits with code 2 before anything is compiled. Hyperparameter
dataclasses (beside their algorithms) and the run config use these helpers in ``validate()``.
A dataclass's keys are printed with its ``KEY_PREFIX`` (``"algo."`` unless the class says otherwise).
"""

from __future__ import annotations

import math
import types
import typing
from typing import Any


class ConfigError(ValueError):
    """A configuration value that is unknown, of the wrong type or out of range."""


def _prefix(obj) -> str:
    return getattr(obj, "KEY_PREFIX", "algo.")


def positive_int(obj, *names):
    for n in names:
        v = getattr(obj, n)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"{_prefix(obj)}{n}={v!r} must be an integer >= 1")


def non_negative_int(obj, *names):
    for n in names:
        v = getattr(obj, n)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ConfigError(f"{_prefix(obj)}{n}={v!r} must be an integer >= 0")


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


def in_range(obj, name, lo, hi, hi_open=False, lo_open=False):
    v = getattr(obj, name)
    ok = (lo < v if lo_open else lo <= v) and (v < hi if hi_open else v <= hi)
    if not ok:
        raise ConfigError(
            f"{_prefix(obj)}{name}={v!r} must be in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        )


def choices(obj, table: dict[str, tuple[str, ...]]):
    """Each ``key`` of ``table`` must be one of its allowed strings."""
    for key, allowed in table.items():
        if getattr(obj, key) not in allowed:
            raise ConfigError(f"{_prefix(obj)}{key}={getattr(obj, key)!r} is not allowed; choose one of {', '.join(allowed)}")


def hidden_sizes(obj, name: str = "hidden_sizes"):
    v = getattr(obj, name)
    if not v or any(not isinstance(h, int) or h <= 0 for h in v):
        raise ConfigError(f"{_prefix(obj)}{name}={list(v)} must be a non-empty list of positive ints")


def divides(obj, name: str, total: int, what: str):
    v = getattr(obj, name)
    if total % v:
        raise ConfigError(f"{_prefix(obj)}{name}={v} must divide {what}={total}")


# ---- type coercion -----------------------------------------------------------------------------

_KINDS = {tuple: "a list", list: "a list", bool: "true or false", int: "an integer", float: "a number", str: "a string"}


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
        kinds = [_KINDS.get(typing.get_origin(a) or a) for a in args if a is not type(None)]
        if len(errors) > 1 and all(kinds):  # e.g. "must be a list of strings or a string"
            raise ConfigError(f"{key}={value!r} must be {' or '.join(dict.fromkeys(kinds))}"
                              + (" (or null)" if type(None) in args else ""))
        raise ConfigError(errors[0] if errors else f"{key}={value!r} has the wrong type")
    if origin is tuple or typ is tuple:
        if not isinstance(value, (list, tuple)):
            example = "[a, b]" if typing.get_args(typ)[:1] == (str,) else "[64, 64]"
            raise ConfigError(f"{key}={value!r} must be a list, e.g. {example}")
        args = typing.get_args(typ)
        inner = args[0] if args else Any
        if inner is Any:
            return to_tuple(value)
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


def to_tuple(v):
    """Nested lists to nested tuples (environment dataclasses must stay hashable)."""
    return tuple(to_tuple(x) for x in v) if isinstance(v, (list, tuple)) else v
