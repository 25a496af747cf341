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
    (11 min at a load of 20 on 2 cores; about a minute on an idle machine, estimated)."""
    res = repro.reproduce("mamt-divergence", "smoke", tmp_path / "div", in_process=True)
    comps = res["comparisons"]
    assert [c["claim"].split(":")[1].split("(")[0].strip() for c in comps] == ["MAMD", "MAMT"]
    for c in comps:
        assert c["holds"] is None and "agent 0:" in c["ours"] and "agent 1:" in c["ours"]
        values = [float(x) for part in c["ours"].split(";") for x in part.split(":")[1].split(" vs ")]
        assert all(math.isfinite(v) for v in values), c["ours"]
    md = (tmp_path / "div" / "report" / "report.md").read_text()
    assert "## Paper vs ours" in md and "below (Figs. 15-18; MAMT vs MAAC)" in md
