"""A persistent JAX compilation cache for the host rollout tests.

Runs, resumes and evaluations build fresh algorithm objects that compile identical programs; the cache
(in a temporary folder, for this test package only) makes the repeats cheap.
"""

from __future__ import annotations

import jax
import pytest

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


@pytest.fixture(scope="package", autouse=True)
def _compilation_cache(tmp_path_factory):
    old = {k: getattr(jax.config, k) for k in _KEYS}
    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache_rollout")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    _reset_cache()
    yield
    for k, v in old.items():
        jax.config.update(k, v)
    _reset_cache()
