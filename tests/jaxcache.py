"""A persistent JAX compilation cache for tests that build identical programs repeatedly.

Runs, resumes and evaluations build fresh algorithm objects that re-trace and re-compile the same
programs; pointing JAX at a cache folder makes the repeats cheap. The previous settings are restored.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import jax

_KEYS = (
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
)


def _reset_cache() -> None:
    try:
        from jax.experimental.compilation_cache import compilation_cache as cc

        cc.reset_cache()
    except (ImportError, AttributeError):  # pragma: no cover - other jax versions
        pass


@contextlib.contextmanager
def compilation_cache(directory: str | Path):
    old = {k: getattr(jax.config, k) for k in _KEYS}
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    _reset_cache()
    try:
        yield
    finally:
        for k, v in old.items():
            jax.config.update(k, v)
        _reset_cache()
