"""Shared set-up of the experiment-layer tests: the dummy algorithm and a compilation cache.

Many tests build a fresh algorithm object (as a real run or resume does), which re-traces and
re-compiles identical programs; a persistent compilation cache in a temporary folder makes those
repeats cheap. The previous cache settings are restored after each test module.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _dummy  # noqa: E402

_dummy.register()

_CACHE_KEYS = (
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
)


def _reset_cache() -> None:
    try:
        from jax.experimental.compilation_cache import compilation_cache as cc

        cc.reset_cache()
    except (ImportError, AttributeError):  # pragma: no cover - older/newer jax
        pass


@pytest.fixture(scope="session")
def _cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("jax_cache")


@pytest.fixture(scope="module", autouse=True)
def _compilation_cache(_cache_dir):
    old = {k: getattr(jax.config, k) for k in _CACHE_KEYS}
    jax.config.update("jax_compilation_cache_dir", str(_cache_dir))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    _reset_cache()
    yield
    for k, v in old.items():
        jax.config.update(k, v)
    _reset_cache()
