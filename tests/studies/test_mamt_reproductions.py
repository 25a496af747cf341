"""The reproductions of Li et al. 2022 (``mamt-divergence``, ``mamt-dilemma``, ``mamt-compare``): every tier's
runs are valid configurations (cheap: no training), and the divergence smoke tier runs end to end."""

from __future__ import annotations

import math

import pytest

from trustmarl.studies import mamt_studies as li2022
from trustmarl.studies import reproduce as repro
from trustmarl.studies.sweep import parse_sweep

pytest.importorskip("rliable")
pytest.importorskip("matplotlib")

NAMES = ("mamt-divergence", "mamt-dilemma", "mamt-compare")


@pytest.mark.parametrize("tier", ["smoke", "cpu", "full"])
def test_every_tier_builds_valid_runs(monkeypatch, tmp_path, tier):
    specs = {}

    def fake_study(out_dir, name, seeds, blocks, jobs, in_process):
        specs[name] = {"name": name, "seeds": seeds, "runs": blocks}
        return tmp_path, {}

    monkeypatch.setattr(li2022, "_study", fake_study)
    for name in NAMES:
        r = repro.get_reproduction(name)
        assert set(r.tiers) == {"smoke", "cpu", "full"} and r.paper == "Li et al. 2022 (MAMT)"
        res = r.fn(tmp_path, tier)
        assert res["run_dirs"] and res["environment"] and res["metric"] == "eval/return"
    for name, spec in specs.items():
        runs = parse_sweep(spec).runs  # validates every configuration with build_config
        labels = {b["label"] for b in spec["runs"]}
        assert len(labels) == len(spec["runs"]), name
        assert all(r.num_seeds == li2022.TIERS[tier]["seeds"] for r in runs)
        if tier != "smoke":
            assert all(r.overrides["eval_episodes"] == 10 for r in runs)  # the paper's protocol
    assert {"spread_2 maac", "spread_2 mamd q=1", "spread_2 mamt q=0.2"} <= {b["label"] for b in specs["divergence"]["runs"]} \
        if tier != "smoke" else True
    dilemma = {b["label"]: b for b in specs["dilemma"]["runs"]}
    assert "mix mamd_op" in dilemma and "sep mamd_op" not in dilemma  # Sep/Ful MAMD-OP = MAAC/MAMD, not rerun
    if tier == "full":
        assert any(b["env"] == "mpe/rover_tower" for b in specs["divergence"]["runs"])
        assert all(b["overrides"]["total_steps"] == 50_000 * 25 for b in specs["compare"]["runs"])


@pytest.mark.slow
def test_divergence_smoke(tmp_path):
    """The smoke tier end to end (tiny networks, 300 env steps): MAAC, MAMD and MAMT on Spread-2, kl_delta per
    agent beside MAAC's, no claim checked. Slow: three compilations of the off-policy update and evaluation
    (2.5 min at a load of 10 on 2 cores, 11 min at a load of 20)."""
    res = repro.reproduce("mamt-divergence", "smoke", tmp_path / "div", in_process=True)
    comps = res["comparisons"]
    assert [c["claim"].split(":")[1].split("(")[0].strip() for c in comps] == ["MAMD", "MAMT"]
    for c in comps:
        assert c["holds"] is None and "agent 0:" in c["ours"] and "agent 1:" in c["ours"]
        values = [float(x) for part in c["ours"].split(";") for x in part.split(":")[1].split(" vs ")]
        assert all(math.isfinite(v) for v in values), c["ours"]
    md = (tmp_path / "div" / "report" / "report.md").read_text()
    assert "## Paper vs ours" in md and "below (Figs. 15-18; MAMT vs MAAC)" in md


class FakeRun:
    """A run whose every metric is a constant (per label), for the claim logic without training."""

    def __init__(self, ret: float, kl: float = math.nan):
        self.ret, self.kl = ret, kl

    def series(self, base, measured_only=False):
        import numpy as np

        v = self.ret if base == "eval/return" else self.kl
        return np.arange(10.0), np.full((10, 3), v), True


def test_claims_from_the_runs(monkeypatch, tmp_path):
    """The paper-vs-ours rows: kl_delta below MAAC's per agent; Fig. 8's orderings from final return and area."""
    fake = {
        "divergence": {"spread_2 maac": FakeRun(-20, 0.02), "spread_2 mamd q=0.2": FakeRun(-21, 0.01),
                       "spread_2 mamt q=0.2": FakeRun(-19, 0.005), "spread_2 mamd q=1": FakeRun(-21, 0.03),
                       "spread_2 mamt q=1": FakeRun(-19, 0.001)},
        "dilemma": {"sep maac": FakeRun(-10), "sep mamd": FakeRun(-12), "mix maac": FakeRun(-15), "mix mamd": FakeRun(-14),
                    "mix mamd_op": FakeRun(-13), "ful maac": FakeRun(-30), "ful mamd": FakeRun(-31)},
    }
    monkeypatch.setattr(li2022, "_study", lambda out_dir, name, *a: (tmp_path, fake[name]))
    rows = {c["claim"]: c for c in li2022.divergence(tmp_path, "cpu")["comparisons"]}
    assert rows["spread_2: MAMT (q=0.2) keeps kl_delta below MAAC's, every agent"]["holds"] is True
    assert rows["spread_2: MAMD (q=1) keeps kl_delta below MAAC's, every agent"]["holds"] is False
    assert "agent 1: 0.001 vs 0.02" in rows["spread_2: MAMT (q=1) keeps kl_delta below MAAC's, every agent"]["ours"]
    rows = {c["claim"]: c for c in li2022.dilemma(tmp_path, "cpu")["comparisons"]}
    assert len(rows) == 6
    assert rows["Spread-3-Sep: MAMD-OP (= MAAC) >= MAMD (final return)"]["holds"] is True  # -10 >= -12
    assert rows["Spread-3-Mix: MAMD-OP >= MAAC and MAMD (area under the curve)"]["holds"] is True  # -13 >= -14, -15
    assert rows["Spread-3-Ful: MAMD-OP (= MAMD) >= MAAC (final return)"]["holds"] is False  # -31 < -30
    assert "mamd_op: -31" in rows["Spread-3-Ful: MAMD-OP (= MAMD) >= MAAC (final return)"]["ours"]
    smoke = li2022.dilemma(tmp_path, "smoke")["comparisons"]
    assert smoke and all(c["holds"] is None for c in smoke)
