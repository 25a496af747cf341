"""``trustmarl reproduce``: the registry (listing, registering your own, tiers), its directory rules, the
paper-vs-ours report, and the smoke tiers of the built-in reproductions (Figure 1 in the default run,
the others slow)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trustmarl.experiment import cli
from trustmarl.studies import reproduce as repro

pytest.importorskip("rliable")
pytest.importorskip("matplotlib")


def call(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_names_paper_figure_and_tier_times(capsys):
    code, out, _ = call(capsys, "reproduce", "--list")
    assert code == 0
    for name in ("hatrpo-figure1", "hatrpo-proposition1", "hatrpo-halfcheetah", "decppo-agents", "matrl-matrix-games", "matrl-grid"):
        r = repro.get_reproduction(name)
        assert f"{name}\n  {r.paper}, {r.figure}" in out
        assert set(r.tiers) == {"smoke", "cpu", "full"}
        for t, time_text in r.tiers.items():
            assert f"--tier {t:6s} {time_text}" in out


@pytest.mark.parametrize("argv, needle", [
    (["reproduce"], "reproduce needs NAME"),
    (["reproduce", "nope"], "unknown reproduction 'nope'"),
    (["reproduce", "hatrpo-figure1", "--tier", "huge"], "argument --tier: invalid choice: 'huge' (choose from 'smoke', 'cpu', 'full')"),
    (["reproduce", "hatrpo-figure1", "--list"], "--list takes no NAME"),
    (["reproduce", "hatrpo-figure1", "--jobs", "0"], "--jobs 0 must be >= 1"),
])
def test_bad_input_exit_2(capsys, tmp_path, monkeypatch, argv, needle):
    monkeypatch.chdir(tmp_path)
    code, out, err = call(capsys, *argv)
    assert code == 2 and err.startswith("trustmarl: error: ") and err.count("\n") == 1 and needle in err, err
    assert not (tmp_path / "reproductions").exists()


@pytest.mark.parametrize("argv, needle", [
    (["reproduce", "hatrpo-figure1"], "trustmarl reproduce writes its report with matplotlib and rliable (matplotlib not installed)"),
    (["crossplay", "a", "b"], "trustmarl crossplay writes its report with matplotlib (matplotlib not installed)"),
])
def test_a_missing_report_extra_is_refused_before_any_work(capsys, tmp_path, monkeypatch, argv, needle):
    """Without matplotlib a reproduction used to train for hours and fail at its report (seen: the matrl-pong cpu
    tier with only the atari extra); now one line and exit 2 before anything runs or is written."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    monkeypatch.chdir(tmp_path)
    code, out, err = call(capsys, *argv)
    assert code == 2 and err.count("\n") == 1 and needle in err and "pip install 'trustmarl[report]'" in err, err
    assert list(tmp_path.iterdir()) == []


def test_register_your_own_and_its_report(capsys, tmp_path, monkeypatch):
    from test_report import final_window, make_run

    calls = []

    def fake(out_dir, tier, jobs=1):
        calls.append((tier, jobs))
        run = out_dir / "runs" / f"r{len(calls)}"
        make_run(run, final_window([0.5, 0.7]), algo="happo", env="matrix/proposition1")
        return {"comparisons": [{"claim": "J reaches the optimum", "paper": 1.0, "ours": 0.6, "holds": False,
                                 "note": "two seeds"}],
                "run_dirs": [str(out_dir / "runs")], "environment": ["a toy"], "custom": 42}

    monkeypatch.setattr(repro, "_REGISTRY", dict(repro._REGISTRY))
    repro.register_reproduction("toy", fake, paper="Doe 2024", figure="Table 9", tiers={"smoke": "1 s", "cpu": "2 s"})
    with pytest.raises(ValueError, match="already registered"):
        repro.register_reproduction("toy", fake, paper="x", figure="y", tiers=["smoke"])
    with pytest.raises(ValueError, match="unknown tier 'gpu'"):
        repro.register_reproduction("toy2", fake, paper="x", figure="y", tiers=["gpu"])

    out = tmp_path / "toy"
    code, stdout, err = call(capsys, "reproduce", "toy", "--out", out, "--jobs", "3")
    assert code == 0, err
    assert calls == [("smoke", 3)] and "toy (smoke) done" in stdout
    assert "paper vs ours: Doe 2024, Table 9 (smoke tier)" in stdout  # the verdict, on the console
    assert "  [FAILS] J reaches the optimum: paper 1; ours 0.6" in stdout and "0 of 1 checked claims hold" in stdout
    result = json.loads((out / "result.json").read_text())
    assert result["custom"] == 42 and result["paper"] == "Doe 2024" and result["tier"] == "smoke"
    md = (out / "report" / "report.md").read_text()
    assert "## Paper vs ours" in md and "| J reaches the optimum | 1 | 0.6 | no | two seeds |" in md
    assert "- a toy" in md and md.startswith("# Doe 2024, Table 9: reproduction toy (smoke)")
    assert "data:image/png;base64," in (out / "report" / "report.html").read_text()

    # the same reproduction continues in its directory; another tier needs --overwrite
    assert call(capsys, "reproduce", "toy", "--out", out)[0] == 0 and len(calls) == 2
    code, _, err = call(capsys, "reproduce", "toy", "--tier", "cpu", "--out", out)
    assert code == 2 and "already holds toy (smoke)" in err
    assert call(capsys, "reproduce", "toy", "--tier", "cpu", "--out", out, "--overwrite")[0] == 0
    assert calls[-1] == ("cpu", 1) and not (out / "runs" / "r1").exists()  # started afresh
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    code, _, err = call(capsys, "reproduce", "toy", "--out", tmp_path / "other", "--overwrite")
    assert code == 2 and "not a reproduction directory" in err and (tmp_path / "other" / "keep.txt").exists()


def _check(result, expect_all=True):
    comps = result["comparisons"]
    assert comps and all(c["ours"] is not None for c in comps)
    failing = [c for c in comps if c["holds"] is False]
    if expect_all:
        assert not failing, failing
    report = result["report"]
    assert report.endswith("report.html")
    return comps


@pytest.mark.slow  # like every other reproduction's smoke tier
def test_figure1_smoke(tmp_path):
    """Seed 001 Figure 1 at smoke scale (HATRPO; HAPPO joins from the cpu tier): J starts at -0.0625; one
    update with the factor raises J, without it J falls; the report puts the paper's 0.9375 / -0.5625 beside ours."""
    res = repro.reproduce("hatrpo-figure1", "smoke", tmp_path / "f1", in_process=True)
    comps = _check(res)
    assert len(comps) == 4
    j0 = comps[0]["ours"]
    assert j0 == pytest.approx(-0.0625, abs=0.05)
    md = (tmp_path / "f1" / "report" / "report.md").read_text()
    assert "| HATRPO with the factor M: J after one update rises | 0.9375 |" in md
    assert "| HATRPO without the factor (= simultaneous steps): J falls | -0.5625 |" in md
    index = json.loads((tmp_path / "f1" / "sweep" / "sweep.json").read_text())
    assert len(index["runs"]) == 2 and all(r["num_seeds"] == 2 for r in index["runs"])


@pytest.mark.slow
def test_proposition1_smoke(tmp_path):
    res = repro.reproduce("hatrpo-proposition1", "smoke", tmp_path / "p1", in_process=True)
    comps = _check(res)
    assert any("2/2^n" in c["claim"] and c["paper"] == 0.125 for c in comps)


@pytest.mark.slow
def test_decppo_agents_smoke(tmp_path):
    res = repro.reproduce("decppo-agents", "smoke", tmp_path / "d", in_process=True)
    comps = _check(res, expect_all=False)  # smoke runs are too short for the ratio claim
    assert comps[0]["holds"] and "N=2" in comps[0]["ours"] and "N=4" in comps[0]["ours"]


@pytest.mark.slow
def test_halfcheetah_smoke(tmp_path):
    pytest.importorskip("gymnasium_robotics")
    res = repro.reproduce("hatrpo-halfcheetah", "smoke", tmp_path / "hc", in_process=True)
    comps = _check(res, expect_all=False)
    assert {c["claim"] for c in comps} >= {"HATRPO final return", "MAPPO final return"}
    assert all(np.isfinite(float(c["ours"].split()[0])) for c in comps[:3])


@pytest.mark.slow
def test_matrl_matrix_games_cpu_tier(tmp_path):
    """MATRL's matrix games through the registry (cpu tier, ~30 s): Table 1 beside the paper's, the ordering per family."""
    res = repro.reproduce("matrl-matrix-games", "cpu", tmp_path / "mg", in_process=True)  # 200 games: the paper's protocol
    comps = res["comparisons"]
    assert sum(c["paper"] == "0.99 / 86.5" for c in comps) == 1  # MATRL on coordination games, as printed
    assert [c["holds"] for c in comps if c["holds"] is not None] == [True, True, True]
    assert (tmp_path / "mg" / "figure4.png").is_file() and (tmp_path / "mg" / "table1.md").is_file()


def test_matrl_grid_compares_with_the_paper_and_orders_matrl_against_il(monkeypatch, tmp_path):
    """The registered Figure 5 reproduction turns figure5's numbers into paper-vs-ours rows (runs faked)."""
    from trustmarl.studies import matrl_grid as figure5

    def fake(out_dir, tier):
        s = lambda m: {"final_return_sum_mean": m, "final_return_sum_std": 0.5}  # noqa: E731
        return {"results": {"grid/checkers": {"MATRL": s(18.0), "IL": s(-2.0)},
                            "grid/switch4": {"MATRL": s(1.0), "IL": s(2.0)}}}

    monkeypatch.setattr(figure5, "reproduce_matrl", fake)
    res = repro.get_reproduction("matrl-grid").fn(tmp_path, "smoke")
    rows = {c["claim"]: c for c in res["comparisons"]}
    assert rows["grid/checkers, MATRL: return summed over agents (last 10% of updates)"]["ours"] == "18.00 ± 0.50"
    assert rows["grid/checkers, MATRL: return summed over agents (last 10% of updates)"]["paper"] == "about 18"
    assert rows["grid/checkers: MATRL's return >= IL's"]["holds"] is True
    assert rows["grid/switch4: MATRL's return >= IL's"]["holds"] is False
    assert res["run_dirs"] == [str(tmp_path / "runs")]


def test_matrl_matrix_games_writes_the_report_it_names(capsys, tmp_path):
    """A reproduction without training runs (exact computations) still writes the HTML report the console names:
    the paper-vs-ours table and its figures, embedded; the verdict is printed."""
    code, out, err = call(capsys, "reproduce", "matrl-matrix-games", "--out", tmp_path / "mg")
    assert code == 0, err
    report = tmp_path / "mg" / "report" / "report.html"
    assert f"report: {report}" in out and report.is_file()
    page = report.read_text()
    assert "Paper vs ours" in page and page.count("src='data:image/png;base64,") == 2  # Figures 4 and 9
    assert "<title>Wen et al. 2021 (MATRL), Table 1, Figures 4 and 9" in page
    assert "paper vs ours: Wen et al. 2021 (MATRL), Table 1, Figures 4 and 9 (smoke tier)" in out
    assert "checked claims hold at this tier" in out and "[holds]" in out
    assert "seed 00" not in page + out


@pytest.mark.slow  # moved out of the default suite to keep it under 20 minutes on 2 cores
def test_f2a2_reproductions_smoke(tmp_path):
    """Li et al. 2023 Tables 4-5 and Figure 8 at smoke scale: every run finishes, the paper's Rover-Tower numbers
    stand beside ours, the traffic is counted (complete graph > 0 scalars, no edges: 0), no claim is checked."""
    res = repro.reproduce("f2a2-communication", "smoke", tmp_path / "comm", in_process=True)
    comps = {c["claim"]: c for c in res["comparisons"]}
    assert all(c["holds"] is None for c in comps.values())
    sent = {k.split(":")[0]: float(c["ours"].split("; ")[1]) for k, c in comps.items() if "scalars sent" in k}
    assert sent["coma mpe/simple_spread"] == 0 and sent["f2a2_coma 0 mpe/simple_spread"] == 0
    assert sent["f2a2_coma 100 mpe/simple_spread"] > 0
    # the same critic at equal schedules, and MA-AC also sends its policies (Li et al. 2023, Table 2): below 1
    assert 0.5 < float(comps["mpe/simple_spread: F2A2's transmissions / MA-AC's"]["ours"]) < 1
    paper = {k.split(":")[0]: c["paper"] for k, c in comps.items() if "scalars sent" in k}
    assert "MAAC" in paper["coma mpe/simple_spread"] and "F2A2-SAC" in paper["f2a2_coma 100 mpe/simple_spread"]
    assert paper["ma_ac 100 mpe/simple_spread"].startswith("n/a")  # MA-AC is not in Tables 4-5
    res = repro.reproduce("f2a2-ablation", "smoke", tmp_path / "abl", in_process=True)
    assert [c["holds"] for c in res["comparisons"]] == [None, None]  # JOINT vs w/o-JOINT, MOA vs w/o-MOA: reported only
    assert "with teammate models vs with the true policies" in res["comparisons"][1]["claim"]
