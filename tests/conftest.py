"""Test-suite root: puts ``tests/`` on ``sys.path`` so shared helpers (``jaxcache``) import by name."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# The default suite is compile-bound: most tests build tiny programs, run them a few times and compare numbers.
# LLVM's optimisation of XLA:CPU's kernels is a large share of each compilation and buys little for such programs,
# so tests compile at optimisation level 0 (measured on 26 tests of test_learning/test_ppo/test_maac_reference/
# the two-step game: 18% less CPU time in all, learning runs included; the registry-wide contract test: 19%).
# It changes how fast kernels run, not what they compute (no fast-math either way). Benchmarks and users keep
# XLA's default. A level already in XLA_FLAGS wins; TRUSTMARL_TEST_XLA_DEFAULT=1 keeps the default here too.
import os  # noqa: E402

_flags = os.environ.get("XLA_FLAGS", "")
if os.environ.get("TRUSTMARL_TEST_XLA_DEFAULT") != "1" and "xla_backend_optimization_level" not in _flags:
    os.environ["XLA_FLAGS"] = (_flags + " --xla_backend_optimization_level=0").strip()

# The command line stores compiled programs in a persistent cache (trustmarl.compilation.enable_compilation_cache);
# the suite must not write into the user's home: off unless set (tests/experiment/test_compilation_cache.py tests it).
os.environ.setdefault("TRUSTMARL_COMPILATION_CACHE", "off")
