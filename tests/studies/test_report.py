"""``trustmarl report``: numbers checked on synthetic runs with known values (final window, bootstrap CI of
the mean against the exact bootstrap distribution, IQM, probability of improvement, curve bands), the
metric rule, the output files (a self-contained HTML page), the marl-eval export against its schema, and
one-line errors for directories that are not runs."""

from __future__ import annotations

import copy
import itertools
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from trustmarl.experiment import cli
from trustmarl.studies import report as rep
from trustmarl.experiment.logger import row_to_json

jsonschema = pytest.importorskip("jsonschema")
pytest.importorskip("rliable")
pytest.importorskip("matplotlib")


def make_run(path: Path, values, algo="mappo", env="mpe/simple_spread", algo_params=None, env_params=None,
             extra=None, steps_per_update=100, seed=0, summary=True):
    """A run directory with per-seed ``episode_return/seed_k`` columns from ``values [updates, seeds]``;
    ``extra`` maps other columns to arrays [updates] (mean columns) or [updates, seeds] (per-seed columns)."""
    values = np.asarray(values, dtype=float)
    t, k = values.shape
    path.mkdir(parents=True)
    config = {"algo": {"name": algo, **(algo_params or {})}, "env": {"name": env, **(env_params or {})},
              "seed": seed, "num_seeds": k, "total_steps": t * steps_per_update}
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    rows = []
    for u in range(t):
        row = {"update": u + 1, "env_steps": (u + 1) * steps_per_update, "wall_time": float(u),
               "episode_return": float(np.nanmean(values[u])) if np.isfinite(values[u]).any() else math.nan}
        row.update({f"episode_return/seed_{s}": float(values[u, s]) for s in range(k)})
        for name, arr in (extra or {}).items():
            arr = np.asarray(arr, dtype=float)
            if arr.ndim == 2:
                row[name] = float(np.nanmean(arr[u])) if np.isfinite(arr[u]).any() else math.nan
                row.update({f"{name}/seed_{s}": float(arr[u, s]) for s in range(k)})
            else:
                row[name] = float(arr[u])
        rows.append(row)
    (path / "metrics.jsonl").write_text("".join(row_to_json(r) + "\n" for r in rows))
    if summary:
        (path / "summary.json").write_text(json.dumps({"status": "completed", "env_steps": t * steps_per_update,
                                                       "final_return": float(np.mean(values[-1]))}))
    return path


def final_window(finals, updates=20, early=1000.0):
    """[updates, seeds]: ``early`` everywhere except the last 10% of updates, which hold ``finals``."""
    v = np.full((updates, len(finals)), early)
    v[-max(1, updates // 10):] = finals
    return v


# ---- statistics ------------------------------------------------------------------------------------

def exact_bootstrap_quantiles(x, q):
    """Quantiles of the bootstrap distribution of the mean: every one of the n^n equally likely resamples."""
    means = [np.mean([x[i] for i in idx]) for idx in itertools.product(range(len(x)), repeat=len(x))]
    return np.percentile(means, q, method="inverted_cdf")


def test_final_scores_mean_ci_iqm_and_probability_of_improvement(tmp_path):
    a = make_run(tmp_path / "a", final_window([1.0, 2.0, 3.0, 4.0]), algo_params={"clip_eps": 0.1})
    b = make_run(tmp_path / "b", final_window([1.0, 2, 3, 4, 5, 6, 7, 8]), algo_params={"clip_eps": 0.2})
    runs = rep.load_runs([a, b])
    np.testing.assert_array_equal(rep.final_scores(runs[0], "episode_return"), [1, 2, 3, 4])  # last 10% only
    res = rep.analyse(runs, reps=20000)
    row_a = next(r for r in res["table"] if r["config"] == "mappo (clip_eps=0.1)")
    row_b = next(r for r in res["table"] if r["config"] == "mappo (clip_eps=0.2)")
    assert row_a["seeds"] == 4 and row_a["mean"] == pytest.approx(2.5)
    lo, hi = exact_bootstrap_quantiles([1, 2, 3, 4], [2.5, 97.5])
    assert row_a["mean_ci"][0] == pytest.approx(lo, abs=0.13) and row_a["mean_ci"][1] == pytest.approx(hi, abs=0.13)
    assert row_b["iqm"] == pytest.approx(4.5)  # mean of the middle half (3, 4, 5, 6)
    assert row_b["mean"] == pytest.approx(4.5) and row_b["median"] == pytest.approx(4.5)
    assert row_b["iqm_ci"][0] < 4.5 < row_b["iqm_ci"][1]
    # P(A > B) by counting pairs: a > b in 0+1+2+3 = 6 of 32 pairs, ties 4 of 32 count half
    (p,) = [p for p in res["poi"]]
    assert {p["x"], p["y"]} == {"mappo (clip_eps=0.1)", "mappo (clip_eps=0.2)"}
    expected = (6 + 0.5 * 4) / 32 if p["x"] == "mappo (clip_eps=0.1)" else 1 - (6 + 0.5 * 4) / 32
    assert p["p"] == pytest.approx(expected)
    assert p["seeds"] in ([4, 8], [8, 4]) and all(math.isnan(c) for c in p["ci"])  # A has 4 seeds: no interval
    assert row_a["intervals_reliable"] is False and row_b["intervals_reliable"] is True
    c = make_run(tmp_path / "c", final_window([1.0, 2, 3, 4, 5]), algo_params={"clip_eps": 0.3})
    (p,) = [p for p in rep.analyse(rep.load_runs([b, c]), reps=4000)["poi"]]
    assert p["ci"][0] <= p["p"] <= p["ci"][1] and p["ci"][1] - p["ci"][0] > 0.2


def test_few_seeds_are_flagged_and_poi_has_no_false_certainty(tmp_path):
    """Two seeds each, every seed of A above every seed of B: P(A > B) = 1, and the bootstrap 'interval' would
    be [1, 1] (every resample of 2 seeds keeps that order); the report shows no interval and says why."""
    a = make_run(tmp_path / "a", final_window([3.0, 4.0]), algo="happo")
    b = make_run(tmp_path / "b", final_window([1.0, 2.0]), algo="mappo")
    res = rep.write_report([a, b], tmp_path / "rep", reps=500)
    (p,) = res["analysis"]["poi"]
    assert p["p"] == pytest.approx(1.0) and all(math.isnan(c) for c in p["ci"])
    assert rep.poi_bootstrap(np.array([[3.0], [4.0]]), np.array([[1.0], [2.0]]), 500)[1:] == (1.0, 1.0)  # the trap
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| mpe/simple_spread | happo | mappo | 2, 2 | 1.000 | n/a (fewer than 5 seeds) |" in md
    assert "[1, 1]" not in md and "[1.000, 1.000]" not in md
    assert "Fewer than 5 seeds per configuration: the intervals are unreliable" in md
    assert re.search(r"\| happo \| 2 \| 3\.5 \| \[3, 4\]\* \|", md)  # the interval is starred
    assert "reliable from 5" in md and "both have 5" in md  # the minimum seeds of each statistic
    assert "1 task;" in md and "1 tasks" not in md
    html_page = (tmp_path / "rep" / "report.html").read_text()
    assert "the intervals are unreliable" in html_page


def test_figures_poi_dot_not_clipped_diagnostics_legend_and_per_agent_caption(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    diag = {"diag/ratio_max": np.linspace(1.3, 1.0, 20), "diag/ratio_min": np.linspace(0.7, 1.0, 20),
            "diag/clip_frac": np.linspace(0.3, 0.1, 20)}
    agents = {"episode_return_per_agent/agent_0": np.linspace(0, 1, 20),
              "episode_return_per_agent/agent_1": np.linspace(0, 2, 20)}  # different rewards on a cooperative task
    a = make_run(tmp_path / "a", final_window([3.0, 4.0]), algo="happo", extra={**diag, **agents})
    b = make_run(tmp_path / "b", final_window([1.0, 2.0]), algo="mappo", extra=diag)
    analysis = rep.analyse(rep.load_runs([a, b]), reps=200)
    ax = rep.plot_poi(analysis).axes[0]
    dot = [line for line in ax.lines if line.get_marker() == "o"][0]
    lo, hi = ax.get_xlim()
    assert dot.get_xdata()[0] == pytest.approx(1.0) and hi > 1.0 and lo < 0.0 and not dot.get_clip_on()
    fig = rep.plot_diagnostics(analysis, rep.diagnostic_panels(analysis["groups"][0].runs + analysis["groups"][1].runs))
    (legend,) = fig.legends  # one legend for all panels, the clip-fraction panel included
    labels = [t.get_text() for t in legend.get_texts()]
    assert "happo" in labels and "mappo" in labels and any("dashed" in t for t in labels)
    assert not any(ax.get_legend() for ax in fig.axes)
    rep.write_report([a, b], tmp_path / "rep", reps=200)
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "per_agent.png" in md and "general-sum" not in md


def test_bootstrap_is_over_seeds_not_updates(tmp_path):
    """Many noisy updates per seed but only 3 seeds: the interval reflects the 3 seed values, however many
    updates there are (an update-level bootstrap would shrink it towards zero width)."""
    rng = np.random.default_rng(0)
    finals = np.array([0.0, 10.0, 20.0])
    v = finals + rng.normal(0, 0.01, size=(1000, 3))
    runs = rep.load_runs([make_run(tmp_path / "r", v)])
    (row,) = rep.analyse(runs, reps=4000)["table"]
    lo, hi = exact_bootstrap_quantiles(list(finals), [2.5, 97.5])
    assert row["mean_ci"][0] == pytest.approx(lo, abs=0.7) and row["mean_ci"][1] == pytest.approx(hi, abs=0.7)
    assert row["mean_ci"][1] - row["mean_ci"][0] > 10


def test_curve_band_and_one_seed():
    y = np.array([[1.0, 1.0, 1.0], [0.0, 3.0, 6.0]])
    mean, lo, hi = rep.curve_band(y, reps=3000)
    np.testing.assert_allclose(mean, [1.0, 3.0])
    assert lo[0] == hi[0] == 1.0  # identical seeds: no width
    assert 0.0 <= lo[1] < 3.0 < hi[1] <= 6.0
    mean, lo, hi = rep.curve_band(np.array([[2.0], [4.0]]))
    np.testing.assert_allclose(mean, [2.0, 4.0]) and np.isnan(lo).all()


def test_curves_bin_updates_and_align_seed_blocks(tmp_path):
    """Two runs of one configuration (seeds in two blocks) form one group; 400 updates become 100 points."""
    x = np.arange(1, 401, dtype=float)
    a = make_run(tmp_path / "a", np.stack([x, 2 * x], 1), seed=0)
    b = make_run(tmp_path / "b", np.stack([3 * x], 1), seed=2)
    (g,) = rep.group_runs(rep.load_runs([a, b]))
    steps, y = rep.group_curve(g, "episode_return")
    assert y.shape == (100, 3) and steps[-1] == 40000
    np.testing.assert_allclose(y[0], [2.5, 5.0, 7.5])  # mean of updates 1-4 per seed


# ---- the metric rule ----------------------------------------------------------------------------------

def test_metric_rule_and_override(tmp_path):
    v = final_window([1.0, 2.0])
    plain = make_run(tmp_path / "plain", v)
    ev = np.full_like(v, np.nan)
    ev[::5] = 7.0
    with_eval = make_run(tmp_path / "eval", v, extra={"eval/return": ev, "episode_return_sum": 3 * v})
    win = make_run(tmp_path / "win", v, env="smax/3m", extra={"episode_win_rate": np.full_like(v, 0.5)})
    assert rep.choose_metric(rep.load_runs([plain]))[0] == "episode_return"
    assert rep.choose_metric(rep.load_runs([with_eval]))[0] == "eval/return"
    assert rep.choose_metric(rep.load_runs([plain, with_eval]))[0] == "episode_return"  # what every run has
    assert rep.choose_metric(rep.load_runs([win]))[0] == "episode_win_rate"
    assert rep.choose_metric(rep.load_runs([with_eval]), "sum")[0] == "episode_return_sum"
    # evaluation metrics: the window is the last 10% of the evaluated updates (here the last one: update 16)
    np.testing.assert_array_equal(rep.final_scores(rep.load_runs([with_eval])[0], "eval/return"), [7.0, 7.0])
    with pytest.raises(rep.ReportError, match="'episode_return_sum' is not logged"):
        rep.choose_metric(rep.load_runs([plain, with_eval]), "sum")


# ---- files, CLI and errors ---------------------------------------------------------------------------

def test_report_files_html_is_self_contained(capsys, tmp_path):
    diag = {"diag/ratio_max": np.linspace(1.3, 1.0, 20), "diag/ratio_min": np.linspace(0.7, 1.0, 20),
            "diag/tv_joint": np.linspace(0.2, 0.0, 20), "diag/kl": np.linspace(0.01, 0.0, 20)}
    general = {"episode_return_per_agent/agent_0": np.linspace(0, 1, 20), "episode_return_per_agent/agent_1": np.linspace(0, -1, 20)}
    make_run(tmp_path / "runs" / "a", final_window([1.0, 2.0, 3.0]), algo="happo", extra={**diag, **general})
    make_run(tmp_path / "runs" / "b", final_window([0.0, 0.5, 1.0]), algo="mappo", extra=diag)
    make_run(tmp_path / "runs" / "c", final_window([5.0, 6.0]), algo="mappo", env="matrix/proposition1",
             env_params={"n_agents": 4})
    code = cli.main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "rep"), "--reps", "500"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "report of 3 runs (episode_return:" in out
    for name in ("curves", "final", "poi", "per_agent", "diagnostics"):
        assert (tmp_path / "rep" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert "<svg" in (tmp_path / "rep" / f"{name}.svg").read_text()[:500]
    page = (tmp_path / "rep" / "report.html").read_text()
    assert page.count("src='data:image/png;base64,") == 5
    assert not re.search(r"""(src|href)=['"](http|//|[^'"]*\.(png|svg|css|js))""", page)  # nothing external
    assert "<script" not in page
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| mpe/simple_spread | happo | 3 | 2 |" in md and "| matrix/proposition1 | mappo | 2 | 5.5 |" in md
    results = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert results["metric"] == "episode_return" and len(results["table"]) == 3
    # cooperative runs (identical per-agent returns) get no per-agent figure
    same = {"episode_return_per_agent/agent_0": np.ones(20), "episode_return_per_agent/agent_1": np.ones(20)}
    make_run(tmp_path / "coop", final_window([1.0, 2.0]), extra=same)
    res = rep.write_report([tmp_path / "coop"], tmp_path / "rep2", reps=200)
    assert not any("per_agent" in f for f in res["files"]) and not (tmp_path / "rep2" / "poi.png").exists()


@pytest.mark.parametrize("args, needles", [
    (["/nonexistent/dir"], ["'/nonexistent/dir' does not exist"]),
    (["EMPTY"], ["is not a trustmarl run or sweep directory"]),
    (["RUN", "--metric", "sum"], ["'episode_return_sum' is not logged"]),
    (["RUN", "--reps", "10"], ["--reps 10 must be >= 100"]),
])
def test_bad_report_input_is_one_line_exit_2(capsys, tmp_path, args, needles):
    (tmp_path / "empty").mkdir()
    make_run(tmp_path / "run", final_window([1.0]))
    argv = [str(tmp_path / "empty") if a == "EMPTY" else str(tmp_path / "run") if a == "RUN" else a for a in args]
    code = cli.main(["report", *argv, "--out", str(tmp_path / "rep")])
    out, err = capsys.readouterr()
    assert code == 2 and err.startswith("trustmarl: error: ") and err.count("\n") == 1, err
    for n in needles:
        assert n in err
    assert not (tmp_path / "rep").exists()


# ---- marl-eval ---------------------------------------------------------------------------------------

def test_marl_eval_export_matches_the_schema(tmp_path):
    schema = json.loads(rep.MARL_EVAL_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    nan_early = final_window([1.0, 2.0, 3.0])
    nan_early[0, 1] = np.nan  # no episode ended in the first update of seed 1
    runs = rep.load_runs([
        make_run(tmp_path / "a", nan_early, algo="happo", extra={"episode_win_rate": np.full_like(nan_early, 0.25)}),
        make_run(tmp_path / "b", final_window([0.0, 1.0, 2.0]), algo="mappo", algo_params={"clip_rule": "a,b"},
                 extra={"episode_win_rate": np.full((20, 3), 0.5)}),
    ])
    data = rep.marl_eval_json(rep.analyse(runs, reps=200), points=10)
    jsonschema.validate(data, schema)
    assert rep.validate_marl_eval(data) == []
    algos = data["mpe"]["simple_spread"]
    assert sorted(algos) == ["happo", "mappo"]  # commas would be replaced: labels come from differing keys only
    seed1 = algos["happo"]["seed_1"]
    assert list(seed1)[-1] == "absolute_metrics" and len(seed1) == 11
    assert seed1["step_0"]["step_count"] == 200 and seed1["step_9"]["step_count"] == 2000
    assert seed1["absolute_metrics"] == {"return": [2.0], "win_rate": [0.25]}
    assert all(math.isfinite(v) for s in seed1.values() for m, vs in s.items() if m != "step_count" for v in vs)

    # the schema and the cross-tree rules catch broken documents
    broken = copy.deepcopy(data)
    del broken["mpe"]["simple_spread"]["mappo"]["seed_0"]["absolute_metrics"]
    assert any("absolute_metrics" in p for p in rep.validate_marl_eval(broken))
    broken = copy.deepcopy(data)
    broken["mpe"]["simple_spread"]["a,b"] = broken["mpe"]["simple_spread"].pop("mappo")
    assert rep.validate_marl_eval(broken)
    broken = copy.deepcopy(data)
    del broken["mpe"]["simple_spread"]["mappo"]["seed_0"]["step_3"]
    assert any("numbers of steps" in p for p in rep.validate_marl_eval(broken))
    broken = copy.deepcopy(data)
    broken["mpe"]["simple_spread"]["mappo"]["seed_0"]["step_3"]["step_count"] = "300"
    assert rep.validate_marl_eval(broken)


def test_report_on_a_sweep_uses_its_labels(tmp_path):
    from trustmarl.studies import sweep as sweep_mod

    sd = tmp_path / "sw"
    (sd / "runs").mkdir(parents=True)
    make_run(sd / "runs" / "x", final_window([1.0, 2.0]))
    make_run(sd / "runs" / "y", final_window([3.0, 4.0]), algo_params={"clip_rule": "per_agent"})
    index = {"name": "s", "runs": [{"name": "x", "dir": "runs/x", "label": "MAPPO eps"},
                                   {"name": "y", "dir": "runs/y", "label": "MAPPO eps/N"}]}
    (sd / sweep_mod.INDEX_FILE).write_text(json.dumps(index))
    res = rep.analyse(rep.load_runs([sd]), reps=200)
    assert res["configs"] == ["MAPPO eps", "MAPPO eps/N"]


def test_vectorised_estimators_equal_rliables():
    from rliable import metrics

    rng = np.random.default_rng(1)
    batch = rng.integers(0, 5, size=(50, 7, 3)).astype(float)  # ties included
    for est in (metrics.aggregate_mean, metrics.aggregate_iqm, metrics.aggregate_median):
        np.testing.assert_allclose(rep._vectorised(est)(batch), [est(b) for b in batch], rtol=1e-12)
    other = rng.integers(0, 5, size=(50, 4, 3)).astype(float)
    np.testing.assert_allclose(rep._poi_batch(batch, other),
                               [metrics.probability_of_improvement(a, b) for a, b in zip(batch, other)], rtol=1e-12)


def test_a_sweep_label_naming_its_env_labels_the_configuration_without_it(tmp_path):
    """A study labels its runs "<algo> <env>" to find them; the report's configuration is the algorithm on every
    task (not "qmix smax/3m" on smax/2s3z)."""
    from trustmarl.studies import sweep as sweep_mod

    sd = tmp_path / "sw"
    (sd / "runs").mkdir(parents=True)
    runs = []
    for algo in ("mappo", "ippo"):
        for env in ("mpe/simple_spread", "mpe/simple_reference"):
            name = f"{algo}-{env.split('/')[1]}"
            make_run(sd / "runs" / name, final_window([1.0, 2.0]), algo=algo, env=env)
            runs.append({"name": name, "dir": f"runs/{name}", "label": f"{algo} {env}"})
    (sd / sweep_mod.INDEX_FILE).write_text(json.dumps({"name": "s", "runs": runs}))
    res = rep.analyse(rep.load_runs([sd]), reps=200)
    assert sorted(res["configs"]) == ["ippo", "mappo"]
    assert len(res["tasks"]) == 2
