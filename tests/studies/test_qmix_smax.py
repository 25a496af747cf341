"""``trustmarl reproduce qmix-smax`` at smoke scale: QMIX and MAPPO on SMAX 3m through the sweep, the evaluation
win rate read from ``eval/win_rate`` of every seed, no claim checked; the cpu and full tiers' plans."""

from __future__ import annotations

import math

import pytest

from trustmarl.studies import qmix_smax
from trustmarl.studies import reproduce as repro

pytest.importorskip("rliable")
pytest.importorskip("matplotlib")


@pytest.mark.slow  # two SMAX compilations and their evaluations: minutes on a loaded 2-core machine
def test_qmix_smax_smoke(tmp_path):
    res = repro.reproduce("qmix-smax", "smoke", tmp_path / "qs", in_process=True)
    comps = {c["claim"].split(":")[0]: c for c in res["comparisons"]}
    assert set(comps) == {"smax/3m, qmix", "smax/3m, mappo"}
    assert all(c["holds"] is None for c in comps.values())
    numbers = res["numbers"]
    for label in ("qmix smax/3m", "mappo smax/3m"):  # one seed, evaluated: a win rate in [0, 1]
        assert len(numbers[label]) == 1 and math.isfinite(numbers[label][0]) and 0.0 <= numbers[label][0] <= 1.0


def test_qmix_smax_tiers_cover_the_five_methods_on_both_maps():
    for tier in ("cpu", "full"):
        labels = {b["label"] for b in qmix_smax.blocks(tier)}
        assert labels == {f"{a} {e}" for a in ("qmix", "vdn", "iql", "mappo", "happo") for e in ("smax/3m", "smax/2s3z")}
        assert all(b["overrides"] == {} for b in qmix_smax.blocks(tier))  # the packaged presets, unchanged
    assert qmix_smax.TIERS["full"]["steps"] == 2_000_000 and qmix_smax.TIERS["full"]["seeds"] == 5
    assert set(repro.get_reproduction("qmix-smax").tiers) == {"smoke", "cpu", "full"}
