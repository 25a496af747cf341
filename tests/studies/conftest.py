"""Set-up of the studies tests (sweep, report, reproduce): the experiment tests' dummy algorithm
(``tests/experiment/_dummy.py``) and a compilation cache, as in ``tests/experiment/conftest.py``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

EXPERIMENT_TESTS = Path(__file__).resolve().parents[1] / "experiment"
sys.path.insert(0, str(EXPERIMENT_TESTS))

import _dummy  # noqa: E402
from jaxcache import compilation_cache  # noqa: E402

_dummy.register()


@pytest.fixture(scope="module", autouse=True)
def _compilation_cache(tmp_path_factory):
    with compilation_cache(tmp_path_factory.getbasetemp() / "jax_cache_studies"):
        yield
