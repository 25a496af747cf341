"""``reproduce_matrl`` (Wen et al. 2021, Figure 5a-b): the table, curves and commands from run metrics;
the smoke tier end to end (slow)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from trustmarl.studies.matrl_grid import (  # noqa: E402
    PAPER_UPDATES,
    curves,
    final_window,
    plot,
    reproduce_matrl,
    summarise,
    table_markdown,
    train_command,
)


def fake_rows(n_updates: int, seeds: int, slope: float, rho: bool = True):
    rows = []
    for u in range(n_updates):
        r = {"update": u + 1, "env_steps": 2000 * (u + 1), "wall_time": 1.0 + u}
        for k in range(seeds):
            r[f"episode_return_sum/seed_{k}"] = slope * u + k
        if rho:
            r.update({"diag/rho_per_agent/agent_0": 0.0, "diag/rho_per_agent/agent_1": 1.0 if u % 2 else 0.0,
                      "diag/nash_fallbacks_total": 0.5 * (u // 50)})  # one seed of three failed twice by the end
        rows.append(r)
    rows[3]["episode_return_sum/seed_0"] = None  # no episode ended: NaN-aware means
    return rows


def test_summary_table_and_plot_from_metrics(tmp_path):
    rows = fake_rows(100, 3, 0.1)
    steps, vals = curves(rows, 3)
    assert steps[-1] == 200_000 and vals.shape == (3, 100) and math.isnan(vals[0, 3])
    np.testing.assert_allclose(final_window(vals), [9.45 + k for k in range(3)])  # mean of updates 90..99
    s = summarise(rows, 3)
    assert s["final_return_sum_mean"] == pytest.approx(10.45) and s["env_steps"] == 200_000
    assert s["mean_rho"] == pytest.approx(0.25) and s["all_candidates_fraction"] == pytest.approx(0.5)
    assert s["mean_rho_per_agent"] == [0.0, 0.5] and s["nash_fallbacks"] == pytest.approx(1.5)
    il = summarise(fake_rows(100, 3, -0.01, rho=False), 3)
    assert "mean_rho" not in il
    pp = {**s, "final_return_sum_mean": 11.0}
    md = table_markdown({"grid/checkers": {"MATRL": s, "IL": il, "IL-PP": pp}}, "t")
    assert "| grid/checkers | MATRL | 200,000 | 10.45 ± 0.82 |" in md and "about 18" in md and "about -2" in md
    assert "| 0.00 / 0.50 | 50% | 2 | about 18 |" in md and "| MATRL - IL-PP | | -0.55 |" in md
    path = plot({"grid/checkers": {"MATRL": (steps, vals)}}, tmp_path / "c.png", 3)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_commands_are_the_paper_lengths():
    cmd = train_command("grid/checkers", "IL", PAPER_UPDATES["grid/checkers"], 5)
    assert cmd == "trustmarl train matrl grid/checkers num_seeds=5 total_steps=400000 algo.independent=true --out runs/checkers_il"
    cmd = train_command("grid/switch4", "IL-PP", PAPER_UPDATES["grid/switch4"], 5)
    assert "total_steps=1000000 algo.rho=0.0" in cmd
    cmd = train_command("grid/switch4", "QMIX", PAPER_UPDATES["grid/switch4"], 5)  # the same env steps as MATRL's
    assert cmd == "trustmarl train qmix grid/switch4 num_seeds=5 total_steps=1000000 --out runs/switch4_qmix"
    cmd = train_command("grid/checkers", "IL (reference code)", 200, 5)
    assert cmd.endswith("algo.independent=true --preset reference --out runs/checkers_il_reference_code")


@pytest.mark.slow  # ~5-6 min of compilation: 14 runs
def test_smoke_tier_writes_table_curves_and_resumes(tmp_path):
    numbers = reproduce_matrl(tmp_path, "smoke")
    for name in ("matrl_grid.md", "matrl_grid.json", "matrl_grid.png"):
        assert (tmp_path / name).stat().st_size > 0
    saved = json.loads((tmp_path / "matrl_grid.json").read_text())
    assert set(saved["results"]) == {"grid/checkers", "grid/switch4"}
    assert [len(saved["results"][e]) for e in ("grid/checkers", "grid/switch4")] == [8, 7]  # + IL (reference code), + VDN, QMIX, QTRAN
    assert saved["results"]["grid/checkers"]["QMIX"]["env_steps"] == saved["results"]["grid/checkers"]["MATRL"]["env_steps"]
    assert saved["results"]["grid/switch4"]["MATRL"]["updates"] == 2
    again = reproduce_matrl(tmp_path, "smoke")  # finished runs are reused, not retrained
    assert again["seconds"] < numbers["seconds"] / 3
