"""Shared set-up of the experiment-layer tests: the dummy algorithm and a compilation cache.

Many tests build a fresh algorithm object (as a real run or resume does), which re-traces and
re-compiles identical programs; a persistent compilation cache in a temporary folder makes those
repeats cheap. The previous cache settings are restored after each test module.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _dummy  # noqa: E402
from jaxcache import compilation_cache  # noqa: E402

_dummy.register()


@pytest.fixture(scope="session")
def _cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("jax_cache")


@pytest.fixture(scope="module", autouse=True)
def _compilation_cache(_cache_dir):
    with compilation_cache(_cache_dir):
        yield
