"""``reproduce_matrl_pong`` (Wen et al. 2021, Figure 6): the claims read off the cross-play matrices, and the
smoke tier end to end (slow; needs the atari extra)."""

from __future__ import annotations

import json

import pytest

from trustmarl.studies import matrl_pong as mp


def test_claims_are_read_off_the_matrices_and_not_checked_at_the_smoke_tier():
    assert mp.share_won([[1.0, -2.0], [0.0, 3.0]]) == 0.5  # a draw (0) is not a win
    tr = lambda x: {"mean": x}  # noqa: E731
    numbers = {"tier": "cpu", "matrices": {
        "MATRL vs IL": {"share_player0_won": 0.8, "transitivity": tr(0.5)},
        "MATRL vs MATRL": {"share_player0_won": 0.5, "transitivity": tr(0.7)},
        "IL vs IL": {"share_player0_won": 0.5, "transitivity": tr(0.6)}}}
    assert [c["holds"] for c in mp.comparisons(numbers)] == [True, True]
    numbers["matrices"]["MATRL vs IL"]["share_player0_won"] = 0.4
    numbers["matrices"]["IL vs IL"]["transitivity"] = tr(0.9)
    assert [c["holds"] for c in mp.comparisons(numbers)] == [False, False]
    assert [c["holds"] for c in mp.comparisons({**numbers, "tier": "smoke"})] == [None, None]


@pytest.mark.slow  # ~3 min under load: two tiny Pong runs and three 2 x 2 cross-plays
def test_smoke_tier_end_to_end(tmp_path):
    pytest.importorskip("multi_agent_ale_py")
    pytest.importorskip("matplotlib")
    numbers = mp.reproduce_matrl_pong(tmp_path, "smoke")
    saved = json.loads((tmp_path / "matrl_pong.json").read_text())
    assert set(saved["matrices"]) == {"MATRL vs IL", "MATRL vs MATRL", "IL vs IL"}
    for m in numbers["matrices"].values():
        assert len(m["player0_return"]) == 2 and all(len(r) == 2 for r in m["player0_return"])
    assert (tmp_path / "crossplay" / "matrl_vs_il" / "crossplay.png").is_file()
