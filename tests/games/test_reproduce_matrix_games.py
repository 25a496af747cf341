"""The matrix-game entry point: ``reproduce_matrix_games`` and ``python -m trustmarl.games`` (smoke tier)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from trustmarl.games.__main__ import main  # noqa: E402
from trustmarl.games.reproduce import reproduce_matrix_games  # noqa: E402


@pytest.mark.slow  # ~15 s: eight compiled learners and two matplotlib figures
def test_smoke_tier_writes_table_and_figures(tmp_path, capsys):
    assert main(["--tier", "smoke", "--out", str(tmp_path)]) == 0
    assert "Table 1 (smoke tier: 20 games per family)" in capsys.readouterr().out
    for name in ("table1.md", "table1.json", "figure4.png", "figure9.png"):
        assert (tmp_path / name).stat().st_size > 0
    for name in ("figure4.png", "figure9.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    numbers = json.loads((tmp_path / "table1.json").read_text())
    assert numbers["tier"] == "smoke"
    assert numbers["table1"]["coordination"]["games"] == 20
    # Figure 4 (1000 iterations in the smoke tier): MATRL spirals in, IGA stays on the boundary cycle
    assert numbers["figure4"]["matrl"]["final_max_deviation"] < 0.1
    assert numbers["figure4"]["iga"]["min_max_deviation"] > 0.36
    np.testing.assert_allclose(numbers["figure9"]["chicken"]["matrl"], [1.0, 0.0], atol=1e-9)


def test_unknown_tier_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="tier"):
        reproduce_matrix_games(tmp_path, "gpu")
