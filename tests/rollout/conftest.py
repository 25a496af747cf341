"""A persistent JAX compilation cache for the host rollout tests (see ``tests/jaxcache.py``)."""

from __future__ import annotations

import pytest
from jaxcache import compilation_cache


@pytest.fixture(scope="package", autouse=True)
def _compilation_cache(tmp_path_factory):
    with compilation_cache(tmp_path_factory.mktemp("jax_cache_rollout")):
        yield
