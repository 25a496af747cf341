"""Test-suite root: puts ``tests/`` on ``sys.path`` so shared helpers (``jaxcache``) import by name."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
