"""Reports over runs and sweeps: learning curves with bootstrap bands, a final-performance table with
IQM and probability of improvement, per-agent curves, trust-region diagnostics, and a marl-eval export.

Statistics are over **seeds** (independent runs), never over episodes: a seed's score is first averaged
over its own updates/episodes, and only these per-seed values are resampled. The point estimators are
rliable's (``rliable.metrics.aggregate_mean``, ``aggregate_iqm``, ``probability_of_improvement``);
the intervals are percentile bootstraps with rliable's stratified scheme (runs resampled within each
task, ``reps`` times, 95%). The resampling is done here rather than with ``rliable.library``: that
module imports ``arch``, whose versions rliable allows (< 8) fail to import with pandas >= 3, while
arch 8 rejects the ``random_state=None`` rliable passes; the scheme is a few lines of numpy.

**Which metric is compared** (:func:`choose_metric`, override with ``metric=``/``--metric``): the first
of these that every run logs per seed:

1. the win rate, ``eval/win_rate`` (evaluation) then ``episode_win_rate`` (training episodes): what
   SMAC/SMAX papers report;
2. the deterministic evaluation return ``eval/return`` (team return of the evaluation episodes);
3. the team return of the training episodes, ``episode_return`` (the mean over agents of each agent's
   summed reward; for identical rewards this is every agent's return, as in MA-MuJoCo papers).

``--metric sum`` compares the sum over agents (``episode_return_sum``), ``eval_sum`` its evaluation
counterpart, ``team``/``eval``/``win_rate`` the above, and any other column name is used as given.

A run's **final score** per seed is its mean over the last 10% of the updates where the metric was
measured (at least one; for evaluation metrics only the updates with an evaluation count), the
window of ``summary.json``'s ``final_return``.

**Seeds each statistic needs** (:data:`MIN_SEEDS`): a 95% percentile-bootstrap interval is computed from
2 seeds but is unreliable below 5 (with n seeds there are few distinct resamples, and the interval
is too narrow: Agarwal et al. 2021 recommend stratified bootstrap intervals over at least a handful of
runs); the report says so for every configuration with fewer. The IQM trims a quarter of the seeds at
each end, so below 4 seeds it equals the mean. The probability of improvement P(X > Y) is a point
estimate from one seed each; its interval is only shown when X and Y both have 5 seeds (with 2 seeds
each, every resample gives 0, 0.5 or 1 and the "interval" [1, 1] claims certainty it does not have).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import math
import re
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from trustmarl.experiment.config import ConfigError, flat_config, read_yaml_mapping

METRIC_ALIASES = {
    "team": "episode_return",
    "sum": "episode_return_sum",
    "eval": "eval/return",
    "eval_sum": "eval/return_sum",
}
METRIC_RULE = ("eval/win_rate", "episode_win_rate", "eval/return", "episode_return")
METRIC_NAMES = {
    "episode_return": "team return (training episodes)",
    "episode_return_sum": "sum over agents of the return (training episodes)",
    "eval/return": "team return (deterministic evaluation)",
    "eval/return_sum": "sum over agents of the return (deterministic evaluation)",
    "episode_win_rate": "win rate (training episodes)",
    "eval/win_rate": "win rate (evaluation)",
}
# Keys that only change how a run is executed, not what it learns: runs differing only here are seeds
# of the same configuration.
EXECUTION_KEYS = ("seed", "num_seeds", "chunk_updates", "checkpoint_every", "eval_episodes", "env.num_workers",
                  "algo.sgd_unroll")
DIAGNOSTICS = (
    ("independent ratio range (min, max over agents and samples)", ("diag/ratio_max", "diag/ratio_min")),
    ("joint ratio range", ("diag/joint_ratio_max", "diag/joint_ratio_min")),
    ("joint TV estimate Σ_k max_t TV_t^k", ("diag/tv_joint",)),
    ("KL(old ‖ new) of the joint policy", ("diag/kl",)),
    ("HAPPO/HATRPO factor M (max, min)", ("diag/factor_max", "diag/factor_min")),
    ("clip fraction", ("diag/clip_frac",)),
)
FINAL_FRACTION = 0.1
#: seeds (per configuration and task) from which each statistic is reported as reliable; see the module doc
MIN_SEEDS = {"interval": 5, "iqm": 4, "poi_interval": 5}


class ReportError(ConfigError):
    """Bad input to a report (directories that are not runs, an unknown metric): one line, exit code 2."""


# ---- loading -------------------------------------------------------------------------------------

@dataclasses.dataclass
class RunData:
    """One run directory: its config (as saved), summary (if finished) and metric rows."""

    path: Path
    config: dict[str, Any]
    summary: dict[str, Any] | None
    rows: list[dict[str, Any]]
    label: str | None = None  # from a sweep index

    @property
    def flat(self) -> dict[str, Any]:
        return _flat(self.config)

    @property
    def algo(self) -> str:
        return str(self.flat.get("algo.name", "?"))

    @property
    def env(self) -> str:
        return str(self.flat.get("env.name", "?"))

    @property
    def num_seeds(self) -> int:
        return int(self.flat.get("num_seeds", 1))

    @property
    def seed(self) -> int:
        return int(self.flat.get("seed", 0))

    def columns(self) -> set[str]:
        cols: set[str] = set()
        for r in self.rows:
            cols.update(r)
        return cols

    def series(self, base: str, measured_only: bool = False) -> tuple[np.ndarray, np.ndarray, bool]:
        """``(env_steps [T], values [T, K], per_seed)`` of a metric: per-seed columns ``base/seed_k`` when
        logged (``per_seed=True``), else the logged mean over seeds as one column. ``measured_only`` drops
        updates where no seed has a value (evaluation metrics)."""
        cols = self.columns()
        per_seed = f"{base}/seed_0" in cols
        names = [f"{base}/seed_{k}" for k in range(self.num_seeds)] if per_seed else [base]
        x = np.array([_num(r.get("env_steps", r.get("update"))) for r in self.rows], dtype=np.float64)
        y = np.array([[_num(r.get(n)) for n in names] for r in self.rows], dtype=np.float64).reshape(len(self.rows), len(names))
        if measured_only:
            keep = np.isfinite(y).any(axis=1)
            x, y = x[keep], y[keep]
        return x, y, per_seed


def _num(v: Any) -> float:
    try:
        return float(v) if v is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


_flat = flat_config  # one level: {"algo": {"lr": 1}} -> {"algo.lr": 1}


def _read_rows(run_dir: Path) -> list[dict[str, Any]]:
    from trustmarl.experiment.logger import read_jsonl

    rows = read_jsonl(run_dir / "metrics.jsonl")
    if rows or not (run_dir / "metrics.csv").is_file():
        return rows
    import csv

    with open(run_dir / "metrics.csv", newline="") as f:
        return [{k: _num(v) for k, v in r.items()} for r in csv.DictReader(f)]


def load_run(run_dir: Path, label: str | None = None) -> RunData:
    run_dir = Path(run_dir)
    config = read_yaml_mapping(run_dir / "config.yaml", "run config", ReportError)
    summary = None
    if (run_dir / "summary.json").is_file():
        try:
            summary = json.loads((run_dir / "summary.json").read_text())
        except json.JSONDecodeError:
            summary = None
    return RunData(run_dir, config, summary, _read_rows(run_dir), label)


def load_runs(paths: Iterable[str | Path]) -> list[RunData]:
    """Runs of run directories, sweep directories (their ``sweep.json`` index) and folders holding runs.

    Raises :class:`ReportError` naming the first path that is none of these, or when no run has metrics.
    """
    runs: list[RunData] = []
    seen: set[Path] = set()
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise ReportError(f"{str(p)!r} does not exist")
        found = _find_runs(p)
        if not found and (p / "sweep.json").is_file():
            raise ReportError(f"sweep {str(p)!r} has no started runs yet (run `trustmarl sweep` first)")
        if not found:
            raise ReportError(
                f"{str(p)!r} is not a trustmarl run or sweep directory and holds none (no config.yaml or sweep.json)"
            )
        for run_dir, label in found:
            key = run_dir.resolve()
            if key not in seen:
                seen.add(key)
                runs.append(load_run(run_dir, label))
    runs = [r for r in runs if r.rows]
    if not runs:
        raise ReportError("none of the runs has metrics yet (metrics.jsonl is empty)")
    return runs


def _find_runs(p: Path, depth: int = 3) -> list[tuple[Path, str | None]]:
    if (p / "config.yaml").is_file():
        return [(p, None)]
    if (p / "sweep.json").is_file():
        try:
            index = json.loads((p / "sweep.json").read_text())
        except json.JSONDecodeError:
            raise ReportError(f"{p / 'sweep.json'} is not valid JSON") from None
        out = []
        for r in index.get("runs", []):
            d = p / r["dir"]
            if (d / "config.yaml").is_file():
                out.append((d, r.get("label")))
        return out
    if depth == 0 or not p.is_dir():
        return []
    out = []
    for child in sorted(p.iterdir()):
        if child.is_dir():
            out.extend(_find_runs(child, depth - 1))
    return out


# ---- grouping ------------------------------------------------------------------------------------

@dataclasses.dataclass
class Group:
    """The runs of one configuration on one task (their seeds are pooled)."""

    task: str
    config: str  # label
    runs: list[RunData]


def group_runs(runs: Sequence[RunData]) -> list[Group]:
    """Pool seeds: runs that differ only in execution keys (seed, num_seeds, chunk_updates, ...) form one group.

    The task is the environment with the ``env.*`` values that differ between runs of that environment;
    the configuration label is the sweep's label, else the algorithm with the ``algo.*``/run keys in which
    that algorithm's runs in the report differ.
    """
    flats = [{k: v for k, v in r.flat.items() if k not in EXECUTION_KEYS} for r in runs]
    env_keys: dict[str, set[str]] = {}
    for f in flats:
        env_keys.setdefault(str(f.get("env.name")), set())
    for env in env_keys:
        members = [f for f in flats if str(f.get("env.name")) == env]
        keys = {k for f in members for k in f if k.startswith("env.") and k != "env.name"}
        env_keys[env] = {k for k in keys if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in members}) > 1}
    differing: dict[str, list[str]] = {}  # per algorithm: the keys its configurations differ in
    for algo in {str(f.get("algo.name")) for f in flats}:
        members = [f for f in flats if str(f.get("algo.name")) == algo]
        keys = {k for f in members for k in f if not k.startswith("env.") and k != "algo.name"}
        differing[algo] = sorted(
            k for k in keys if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in members}) > 1
        )
    groups: dict[tuple[str, str], Group] = {}
    config_of: dict[str, str] = {}
    for run, f in zip(runs, flats):
        env = str(f.get("env.name"))
        task = env + "".join(f" {k[4:]}={_short(f.get(k))}" for k in sorted(env_keys[env]))
        ident = json.dumps({k: v for k, v in f.items() if not k.startswith("env.")}, sort_keys=True, default=str)
        algo = str(f.get("algo.name"))
        auto = algo + _suffix({k: f.get(k) for k in differing[algo] if k in f})
        given = run.label[:-len(env) - 1] if run.label and run.label.endswith(" " + env) else run.label
        label = config_of.setdefault(ident, given or auto)  # a sweep label naming its env names the task, not the configuration
        groups.setdefault((task, label), Group(task, label, [])).runs.append(run)
    return list(groups.values())


def _suffix(d: dict[str, Any]) -> str:
    parts = [f"{k.split('.', 1)[-1]}={_short(v)}" for k, v in d.items()]
    return f" ({', '.join(parts)})" if parts else ""


def _short(v: Any) -> str:
    if isinstance(v, float):
        return format(v, "g")
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_short(x) for x in v) + "]"
    return str(v)


# ---- the metric ----------------------------------------------------------------------------------

def choose_metric(runs: Sequence[RunData], requested: str | None = None) -> tuple[str, str]:
    """``(column, reason)``: the compared metric by the documented rule, or the requested one."""
    def has(run: RunData, base: str) -> bool:
        cols = run.columns()
        if f"{base}/seed_0" not in cols and base not in cols:
            return False
        _, y, _ = run.series(base)
        return bool(np.isfinite(y).any())

    if requested:
        base = METRIC_ALIASES.get(requested, requested)
        if requested == "win_rate":
            base = "eval/win_rate" if all(has(r, "eval/win_rate") for r in runs) else "episode_win_rate"
        missing = [r for r in runs if not has(r, base)]
        if missing:
            raise ReportError(
                f"metric {base!r} is not logged by {missing[0].path} ({len(missing)} of {len(runs)} runs lack it); "
                f"choose team, sum, eval, eval_sum, win_rate or a column of metrics.jsonl"
            )
        return base, "requested"
    for base in METRIC_RULE:
        if all(has(r, base) for r in runs):
            return base, f"rule: the first of {', '.join(METRIC_RULE)} that every run logs"
    raise ReportError("no run logs episode_return: nothing to compare")


def is_eval_metric(base: str) -> bool:
    return base.startswith("eval/")


def final_scores(run: RunData, base: str, fraction: float = FINAL_FRACTION) -> np.ndarray:
    """Per-seed final score: NaN-aware mean over the last ``fraction`` of the measured updates."""
    _, y, _ = run.series(base, measured_only=is_eval_metric(base))
    if len(y) == 0:
        return np.full(max(1, y.shape[1]), np.nan)
    w = max(1, int(math.ceil(fraction * len(y))))
    return _nanmean(y[-w:], axis=0)


def _nanmean(a: np.ndarray, axis=None) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    n = np.sum(np.isfinite(a), axis=axis)
    s = np.nansum(np.where(np.isfinite(a), a, 0.0), axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / np.maximum(n, 1), np.nan)


# ---- statistics ----------------------------------------------------------------------------------

def _rly():
    try:
        from rliable import metrics
    except ImportError:
        raise ReportError("reports need rliable and matplotlib: pip install 'trustmarl[report]'") from None
    return metrics


def _vectorised(estimator):
    """The same estimator over a batch of resampled ``[reps, runs, tasks]`` matrices (for speed); a test
    checks it against rliable's function on every resample."""
    metrics = _rly()
    if estimator is metrics.aggregate_mean:
        return lambda b: b.mean(axis=1).mean(axis=1)
    if estimator is metrics.aggregate_iqm:
        from scipy.stats import trim_mean

        return lambda b: trim_mean(b.reshape(len(b), -1), proportiontocut=0.25, axis=1)
    if estimator is metrics.aggregate_median:
        return lambda b: np.median(b.mean(axis=1), axis=1)
    return lambda b: np.array([estimator(x) for x in b])


def stratified_bootstrap(scores: np.ndarray, estimator, reps: int = 2000, seed: int = 0,
                         ci: float = 0.95) -> tuple[float, float, float]:
    """``(point, low, high)`` of ``estimator(scores)`` for a ``[runs, tasks]`` matrix: runs are resampled with
    replacement within each task (rliable's ``StratifiedBootstrap``), percentile interval."""
    scores = np.asarray(scores, dtype=np.float64)
    point = float(estimator(scores))
    n, m = scores.shape
    if n < 2:
        return point, math.nan, math.nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(reps, n, m))
    boot = _vectorised(estimator)(scores[idx, np.arange(m)[None, None, :]])
    lo, hi = np.percentile(boot, [100 * (1 - ci) / 2, 100 * (1 + ci) / 2])
    return point, float(lo), float(hi)


def _poi_batch(bx: np.ndarray, by: np.ndarray) -> np.ndarray:
    """rliable's ``probability_of_improvement`` for ``[reps, runs, tasks]`` batches: per task the Mann-Whitney
    U / (n_x n_y) = P(X > Y) + P(X = Y)/2, averaged over tasks."""
    gt = (bx[:, :, None, :] > by[:, None, :, :]).mean(axis=(1, 2))
    eq = (bx[:, :, None, :] == by[:, None, :, :]).mean(axis=(1, 2))
    return (gt + 0.5 * eq).mean(axis=1)


def poi_bootstrap(x: np.ndarray, y: np.ndarray, reps: int = 2000, seed: int = 0,
                  ci: float = 0.95) -> tuple[float, float, float]:
    """P(X > Y) (rliable's Mann-Whitney estimator, averaged over tasks) with an independent stratified
    bootstrap: the runs of X and of Y are resampled separately within each task."""
    point = float(_rly().probability_of_improvement(x, y))
    if len(x) < 2 or len(y) < 2:
        return point, math.nan, math.nan
    rng = np.random.default_rng(seed)
    m = x.shape[1]
    bx = x[rng.integers(0, len(x), size=(reps, len(x), m)), np.arange(m)[None, None, :]]
    by = y[rng.integers(0, len(y), size=(reps, len(y), m)), np.arange(m)[None, None, :]]
    lo, hi = np.percentile(_poi_batch(bx, by), [100 * (1 - ci) / 2, 100 * (1 + ci) / 2])
    return point, float(lo), float(hi)


def curve_band(y: np.ndarray, reps: int = 2000, seed: int = 0, ci: float = 0.95):
    """Mean over seeds and a percentile-bootstrap band (seeds resampled) for ``y [points, seeds]``."""
    import warnings

    y = np.asarray(y, dtype=np.float64)
    mean = _nanmean(y, axis=1)
    k = y.shape[1]
    if k < 2:
        return mean, np.full_like(mean, np.nan), np.full_like(mean, np.nan)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, k, size=(reps, k))
    boot = _nanmean(y[:, idx], axis=2)  # [points, reps]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # points where no seed has a value: NaN band
        lo, hi = np.nanpercentile(boot, [100 * (1 - ci) / 2, 100 * (1 + ci) / 2], axis=1)
    return mean, lo, hi


def group_curve(group: Group, base: str, points: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """``(env_steps [P], values [P, seeds])`` of a group: each run's updates binned into at most ``points``
    NaN-aware means (smoothing), runs aligned on the shortest one's steps by interpolation."""
    series = [r.series(base, measured_only=is_eval_metric(base)) for r in group.runs]
    series = [(x, y) for x, y, _ in series if len(x)]
    if not series:
        return np.zeros(0), np.zeros((0, 0))
    binned = [_bin(x, y, points) for x, y in series]
    ref = min(binned, key=lambda b: b[0][-1] if len(b[0]) else 0)[0]
    cols = []
    for x, y in binned:
        for k in range(y.shape[1]):
            if len(x) == len(ref) and np.allclose(x, ref):
                cols.append(y[:, k])
            else:
                ok = np.isfinite(y[:, k])
                cols.append(np.interp(ref, x[ok], y[ok, k]) if ok.sum() >= 2 else np.full(len(ref), np.nan))
    return ref, np.stack(cols, axis=1)


def _bin(x: np.ndarray, y: np.ndarray, points: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(x)
    if n <= points:
        return x, y
    edges = np.linspace(0, n, points + 1).round().astype(int)
    xs = np.array([x[e - 1] for e in edges[1:]])
    ys = np.stack([_nanmean(y[a:b], axis=0) for a, b in zip(edges[:-1], edges[1:])])
    return xs, ys


# ---- the analysis --------------------------------------------------------------------------------

def analyse(runs: Sequence[RunData], metric: str | None = None, reps: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Every number of a report: per task and configuration the per-seed final scores, mean and IQM with
    95% CIs, probability of improvement between configurations, and an aggregate over tasks."""
    metrics = _rly()
    base, reason = choose_metric(runs, metric)
    groups = group_runs(runs)
    tasks = list(dict.fromkeys(g.task for g in groups))
    configs = list(dict.fromkeys(g.config for g in groups))
    table = []
    scores: dict[tuple[str, str], np.ndarray] = {}
    notes: list[str] = []
    for g in groups:
        per_seed = np.concatenate([final_scores(r, base) for r in g.runs])
        per_seed = per_seed[np.isfinite(per_seed)]
        scores[(g.task, g.config)] = per_seed
        pooled = any(not r.series(base)[2] for r in g.runs)
        if pooled:
            notes.append(f"{g.config} on {g.task}: runs without per-seed columns count as one sample each")
        row: dict[str, Any] = {"task": g.task, "config": g.config, "seeds": int(len(per_seed)),
                               "runs": [str(r.path) for r in g.runs], "final_per_seed": per_seed.tolist()}
        if len(per_seed):
            m = per_seed[:, None]
            row["mean"], row["mean_ci"] = _pack(stratified_bootstrap(m, metrics.aggregate_mean, reps, seed))
            row["iqm"], row["iqm_ci"] = _pack(stratified_bootstrap(m, metrics.aggregate_iqm, reps, seed))
            row["median"] = float(np.median(per_seed))
            row["std"] = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else math.nan
        row["intervals_reliable"] = bool(len(per_seed) >= MIN_SEEDS["interval"])
        row["status"] = sorted({(r.summary or {}).get("status", "running or killed") for r in g.runs})
        table.append(row)
    poi = []
    for task in tasks:
        present = [c for c in configs if len(scores.get((task, c), [])) > 0]
        pairs = [(a, b) for i, a in enumerate(present) for b in present[i + 1:]]
        if len(present) > 6:  # keep the table readable: everything against the best
            best = max(present, key=lambda c: float(np.mean(scores[(task, c)])))
            pairs = [(best, c) for c in present if c != best]
        for a, b in pairs:
            x, y = scores[(task, a)], scores[(task, b)]
            p, lo, hi = poi_bootstrap(x[:, None], y[:, None], reps, seed)
            enough = min(len(x), len(y)) >= MIN_SEEDS["poi_interval"]
            poi.append({"task": task, "x": a, "y": b, "p": p, "ci": [lo, hi] if enough else [math.nan, math.nan],
                        "seeds": [int(len(x)), int(len(y))]})
    aggregate = _aggregate(tasks, configs, scores, reps, seed, notes)
    few = [r for r in table if r["seeds"] < MIN_SEEDS["interval"]]
    return {"few_seeds": [f"{r['config']} on {r['task']} ({r['seeds']})" for r in few],
            "min_seeds": dict(MIN_SEEDS), "metric": base, "metric_name": METRIC_NAMES.get(base, base), "metric_reason": reason,
            "tasks": tasks, "configs": configs, "table": table, "poi": poi, "aggregate": aggregate,
            "notes": notes, "reps": reps, "groups": groups}


def _pack(t: tuple[float, float, float]) -> tuple[float, list[float]]:
    return t[0], [t[1], t[2]]


def _aggregate(tasks, configs, scores, reps, seed, notes) -> list[dict[str, Any]]:
    """IQM and mean over tasks of min-max normalised scores (marl-eval's normalisation: per task, over every
    compared run), for configurations that ran every task with the same number of seeds."""
    if len(tasks) < 2:
        return []
    metrics = _rly()
    full = [c for c in configs if all(len(scores.get((t, c), [])) for t in tasks)]
    out = []
    for c in full:
        ns = {len(scores[(t, c)]) for t in tasks}
        if len(ns) != 1:
            notes.append(f"{c}: different numbers of seeds per task, left out of the aggregate")
            continue
        cols = []
        for t in tasks:
            everything = np.concatenate([scores[(t, cc)] for cc in configs if (t, cc) in scores])
            lo, hi = float(everything.min()), float(everything.max())
            cols.append((scores[(t, c)] - lo) / (hi - lo) if hi > lo else np.zeros_like(scores[(t, c)]))
        m = np.stack(cols, axis=1)
        row = {"config": c, "tasks": len(tasks), "seeds_per_task": ns.pop()}
        row["iqm"], row["iqm_ci"] = _pack(stratified_bootstrap(m, metrics.aggregate_iqm, reps, seed))
        row["mean"], row["mean_ci"] = _pack(stratified_bootstrap(m, metrics.aggregate_mean, reps, seed))
        out.append(row)
    return out


# ---- figures -------------------------------------------------------------------------------------

def _plt():
    try:
        import warnings

        import matplotlib

        warnings.filterwarnings("ignore", message="Tight layout not applied")

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ReportError("reports need matplotlib: pip install 'trustmarl[report]'") from None
    return plt


def _colors(configs: Sequence[str]) -> dict[str, Any]:
    plt = _plt()
    cmap = plt.get_cmap("tab10" if len(configs) <= 10 else "tab20")
    return {c: cmap(i % cmap.N) for i, c in enumerate(configs)}


def _grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = min(n, max_cols)
    return int(math.ceil(n / cols)), cols


def plot_curves(analysis: dict[str, Any], base: str | None = None, reps: int = 2000, ylabel: str | None = None):
    """One panel per task: mean over seeds and the 95% bootstrap band (seeds resampled) against env steps."""
    plt = _plt()
    base = base or analysis["metric"]
    tasks, colors = analysis["tasks"], _colors(analysis["configs"])
    rows, cols = _grid(len(tasks))
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.6 * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        for g in [g for g in analysis["groups"] if g.task == task]:
            x, y = group_curve(g, base)
            if not len(x):
                continue
            mean, lo, hi = curve_band(y, reps)
            ax.plot(x, mean, color=colors[g.config], label=f"{g.config} ({y.shape[1]})", lw=1.6)
            if np.isfinite(lo).any():
                ax.fill_between(x, lo, hi, color=colors[g.config], alpha=0.2, lw=0)
        ax.set_title(task, fontsize=10)
        ax.set_xlabel("environment steps (per seed)")
        ax.set_ylabel(ylabel or METRIC_NAMES.get(base, base), fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best", title="config (seeds)", title_fontsize=7)
    for ax in list(axes.flat)[len(tasks):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def plot_final(analysis: dict[str, Any]):
    """Per task: mean and IQM of the final scores with their 95% stratified-bootstrap intervals."""
    plt = _plt()
    tasks, configs, colors = analysis["tasks"], analysis["configs"], _colors(analysis["configs"])
    rows, cols = _grid(len(tasks))
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 0.5 * len(configs) * rows + 1.8 * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        entries = [r for r in analysis["table"] if r["task"] == task and r["seeds"]]
        for i, r in enumerate(entries):
            for j, (key, marker) in enumerate((("mean", "o"), ("iqm", "D"))):
                yv = i + (j - 0.5) * 0.3
                lo, hi = r[f"{key}_ci"]
                if np.isfinite(lo):
                    ax.plot([lo, hi], [yv, yv], color=colors[r["config"]], lw=3, alpha=0.5)
                ax.plot([r[key]], [yv], marker=marker, color=colors[r["config"]], ms=5,
                        label=key.upper() if i == 0 else None, mfc="white" if key == "iqm" else None)
            ax.plot(r["final_per_seed"], [i] * len(r["final_per_seed"]), "|", color="k", alpha=0.5, ms=8)
        ax.set_yticks(range(len(entries)))
        ax.set_yticklabels([r["config"] for r in entries], fontsize=8)
        ax.set_title(f"{task}: final {analysis['metric_name']}", fontsize=9)
        ax.grid(alpha=0.3, axis="x")
        if entries:
            ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[len(tasks):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def plot_poi(analysis: dict[str, Any]):
    plt = _plt()
    poi = analysis["poi"]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(poi) + 1.2))
    for i, p in enumerate(poi):
        if np.isfinite(p["ci"][0]):
            ax.plot(p["ci"], [i, i], color="tab:blue", lw=4, alpha=0.5, solid_capstyle="butt")
        ax.plot([p["p"]], [i], "o", color="tab:blue", clip_on=False, zorder=3)
    ax.axvline(0.5, color="k", ls="--", lw=0.8)
    ax.set_yticks(range(len(poi)))
    ax.set_yticklabels([f"P({p['x']} > {p['y']})" + (f"  [{p['task']}]" if len(analysis["tasks"]) > 1 else "") for p in poi], fontsize=8)
    ax.set_xlim(-0.04, 1.04)  # a dot at 0 or 1 is drawn whole
    ax.set_ylim(-0.6, len(poi) - 0.4)
    enough = all(np.isfinite(p["ci"][0]) for p in poi)
    ax.set_xlabel("probability of improvement" + (" (95% CI)" if enough else
                  f" (95% CI only where both have at least {MIN_SEEDS['poi_interval']} seeds)"))
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig


def per_agent_bases(runs: Sequence[RunData]) -> list[str]:
    """The per-agent return columns (``episode_return_per_agent/agent_i``), if they differ between agents."""
    cols = set().union(*(r.columns() for r in runs))
    bases = sorted({m.group(0) for c in cols for m in [re.match(r"(eval/return|episode_return)_per_agent/agent_\d+", c)] if m},
                   key=lambda s: (s.split("/agent_")[0], int(s.rsplit("_", 1)[1])))
    if len(bases) < 2:
        return []
    for r in runs:
        ys = [r.series(b)[1] for b in bases if b.startswith("episode_return")]
        if len(ys) >= 2 and any(np.nanmax(np.abs(ys[0] - y)) > 1e-6 for y in ys[1:] if y.shape == ys[0].shape and np.isfinite(y).any()):
            return bases
    return []  # identical rewards (fully cooperative): the team curve says it all


def plot_per_agent(analysis: dict[str, Any], bases: list[str], reps: int = 2000):
    plt = _plt()
    groups = analysis["groups"]
    rows, cols = _grid(len(groups))
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.4 * rows), squeeze=False)
    cmap = plt.get_cmap("tab10")
    train_bases = [b for b in bases if b.startswith("episode_return")] or bases
    for ax, g in zip(axes.flat, groups):
        for i, b in enumerate(train_bases):
            x, y = group_curve(g, b)
            if not len(x):
                continue
            mean, lo, hi = curve_band(y, reps)
            ax.plot(x, mean, color=cmap(i % 10), lw=1.4, label=b.rsplit("/", 1)[1])
            if np.isfinite(lo).any():
                ax.fill_between(x, lo, hi, color=cmap(i % 10), alpha=0.2, lw=0)
        ax.set_title(f"{g.config} on {g.task}", fontsize=9)
        ax.set_xlabel("environment steps (per seed)")
        ax.set_ylabel("return of each agent", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(groups):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def diagnostic_panels(runs: Sequence[RunData]) -> list[tuple[str, tuple[str, ...]]]:
    cols = set().union(*(r.columns() for r in runs))
    return [(title, tuple(c for c in names if c in cols)) for title, names in DIAGNOSTICS if any(c in cols for c in names)]


def plot_diagnostics(analysis: dict[str, Any], panels, reps: int = 2000):
    """Trust-region diagnostics over training: rows = diagnostics, columns = tasks; lines per configuration
    (mean over seeds; dashed = the second column of a pair, e.g. the minimum of a range)."""
    plt = _plt()
    tasks, colors = analysis["tasks"], _colors(analysis["configs"])
    fig, axes = plt.subplots(len(panels), len(tasks), figsize=(5.2 * len(tasks), 2.8 * len(panels)), squeeze=False)
    for i, (title, names) in enumerate(panels):
        for j, task in enumerate(tasks):
            ax = axes[i, j]
            for g in [g for g in analysis["groups"] if g.task == task]:
                for n, name in enumerate(names):
                    x, y = group_curve(g, name)
                    if not len(x) or not np.isfinite(y).any():
                        continue
                    mean, lo, hi = curve_band(y, reps)
                    ax.plot(x, mean, color=colors[g.config], ls="-" if n == 0 else "--", lw=1.3,
                            label=g.config if n == 0 else None)
                    if np.isfinite(lo).any():
                        ax.fill_between(x, lo, hi, color=colors[g.config], alpha=0.15, lw=0)
            ax.set_title(f"{title}\n{task}" if len(tasks) > 1 else title, fontsize=9)
            ax.grid(alpha=0.3)
            if not ax.lines:
                ax.text(0.5, 0.5, "not logged by these runs", ha="center", va="center", transform=ax.transAxes,
                        color="0.5", fontsize=8)
            if i == len(panels) - 1:
                ax.set_xlabel("environment steps (per seed)")
    from matplotlib.lines import Line2D

    present = [c for c in analysis["configs"] if any(line.get_label() == c for ax in axes.flat for line in ax.lines)]
    handles = [Line2D([], [], color=colors[c], lw=1.6, label=c) for c in present]
    if any(len(names) > 1 for _, names in panels):
        handles += [Line2D([], [], color="0.3", lw=1.3, label="solid: maximum (or the value)"),
                    Line2D([], [], color="0.3", lw=1.3, ls="--", label="dashed: minimum")]
    if handles:  # one legend for every panel (each column, each row), above them
        ncol = min(len(handles), 2 * len(tasks))
        fig.legend(handles=handles, loc="upper center", ncol=ncol, fontsize=8, frameon=False, bbox_to_anchor=(0.5, 1.0))
        rows_of_legend = math.ceil(len(handles) / ncol)
        fig.tight_layout(rect=(0, 0, 1, 1 - min(0.25, 0.3 * rows_of_legend / fig.get_size_inches()[1])))
    else:
        fig.tight_layout()
    return fig


# ---- marl-eval export ----------------------------------------------------------------------------

def marl_eval_json(analysis: dict[str, Any], points: int = 20) -> dict[str, Any]:
    """The runs in marl-eval's raw-data layout (the format Mava and BenchMARL write)::

        {env: {task: {algorithm: {"seed_<i>": {"step_<k>": {"step_count": int, "<metric>": [float]},
                                              ..., "absolute_metrics": {"<metric>": [float]}}}}}}

    ``env``/``task`` split the environment name at its first ``/`` (``mpe``/``simple_spread``; the task
    gets the differing ``env.*`` values); the algorithm is the configuration label with commas replaced
    (marl-eval splits on them). Each seed is one "run"; every run has the same ``points`` logging steps
    (binned training/evaluation values, one value each: the per-episode values are not kept by
    trustmarl); ``absolute_metrics`` holds the final score (mean over the last 10% of updates), not
    marl-eval's re-evaluation of the best policy. Metrics: ``return`` (the compared metric) and
    ``win_rate`` where the runs log one.
    """
    base = analysis["metric"]
    runs = [r for g in analysis["groups"] for r in g.runs]
    every = lambda col: all(f"{col}/seed_0" in r.columns() for r in runs)  # noqa: E731
    ret = base if "win_rate" not in base else ("eval/return" if every("eval/return") else "episode_return")
    metrics_map = {"return": ret}
    win = base if "win_rate" in base else next((w for w in ("eval/win_rate", "episode_win_rate") if every(w)), None)
    if win:
        metrics_map["win_rate"] = win
    out: dict[str, Any] = {}
    for g in analysis["groups"]:
        env_name, _, task = g.task.partition("/")
        task = task or env_name
        algo = g.config.replace(",", ";")
        runs_out = out.setdefault(env_name, {}).setdefault(task, {}).setdefault(algo, {})
        curves = {}
        for name, col in metrics_map.items():
            x, y = group_curve(g, col, points=points)
            curves[name] = (x, _ffill(y))
        x_ref = curves[next(iter(curves))][0]
        finals = {name: np.concatenate([final_scores(r, col) for r in g.runs]) for name, col in metrics_map.items()}
        n_seeds = curves[next(iter(curves))][1].shape[1]
        for k in range(n_seeds):
            run: dict[str, Any] = {}
            for i, step in enumerate(x_ref):
                entry: dict[str, Any] = {"step_count": int(step)}
                for name, (x, y) in curves.items():
                    entry[name] = [float(y[min(i, len(y) - 1), k])]
                run[f"step_{i}"] = entry
            run["absolute_metrics"] = {name: [float(v[k]) if k < len(v) and np.isfinite(v[k]) else 0.0]
                                       for name, v in finals.items()}
            runs_out[f"seed_{k}"] = run
    return out


MARL_EVAL_SCHEMA = Path(__file__).with_name("marl_eval.schema.json")


def validate_marl_eval(data: dict[str, Any]) -> list[str]:
    """Problems of a marl-eval document (empty when valid): the JSON schema of its README layout
    (``marl_eval.schema.json``, checked with ``jsonschema`` when installed) and the rules marl-eval's
    ``DiagnoseData`` checks across the tree: per environment the same algorithms on every task, the same
    number of runs per algorithm, the same number of steps per run, the same metrics at every step
    (``absolute_metrics`` included, as the last key of each run), and increasing ``step_count``."""
    problems: list[str] = []
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - jsonschema is a test dependency
        jsonschema = None
    if jsonschema is not None:
        schema = json.loads(MARL_EVAL_SCHEMA.read_text())
        for err in jsonschema.Draft202012Validator(schema).iter_errors(data):
            problems.append(f"schema: {'/'.join(map(str, err.absolute_path))}: {err.message}")
        if problems:
            return problems
    for env, tasks in data.items():
        algos = {task: sorted(a) for task, a in tasks.items()}
        if len({tuple(v) for v in algos.values()}) > 1:
            problems.append(f"{env}: the tasks have different algorithms: {algos}")
        runs = {(t, a): len(r) for t, al in tasks.items() for a, r in al.items()}
        if len(set(runs.values())) > 1:
            problems.append(f"{env}: different numbers of runs: {runs}")
        steps, metric_sets = set(), set()
        for t, al in tasks.items():
            for a, rs in al.items():
                for name, run in rs.items():
                    keys = list(run)
                    if keys[-1] != "absolute_metrics":
                        problems.append(f"{env}/{t}/{a}/{name}: absolute_metrics is not the last key")
                    step_keys = [k for k in keys if k != "absolute_metrics"]
                    steps.add(len(step_keys))
                    counts = [run[k]["step_count"] for k in step_keys]
                    if any(b <= c for c, b in zip(counts, counts[1:])):
                        problems.append(f"{env}/{t}/{a}/{name}: step_count does not increase")
                    for k in keys:
                        metric_sets.add(tuple(sorted(m for m in run[k] if m != "step_count")))
        if len(steps) > 1:
            problems.append(f"{env}: runs have different numbers of steps: {sorted(steps)}")
        if len(metric_sets) > 1:
            problems.append(f"{env}: steps have different metrics: {sorted(metric_sets)}")
    return problems


def _ffill(y: np.ndarray) -> np.ndarray:
    """Fill non-finite values with the previous finite value of the same column (first: the next one; none: 0)."""
    y = np.array(y, dtype=np.float64)
    for k in range(y.shape[1]):
        col = y[:, k]
        ok = np.isfinite(col)
        if not ok.any():
            y[:, k] = 0.0
            continue
        idx = np.where(ok, np.arange(len(col)), -1)
        idx = np.maximum.accumulate(idx)
        first = int(np.argmax(ok))
        idx[idx < 0] = first
        y[:, k] = col[idx]
    return y


# ---- writing -------------------------------------------------------------------------------------

@dataclasses.dataclass
class Section:
    """Extra content of a report (e.g. a reproduction's paper-vs-ours table): a title, paragraphs and
    an optional table (``header`` + ``rows``), rendered to Markdown and HTML."""

    title: str
    paragraphs: list[str] = dataclasses.field(default_factory=list)
    header: list[str] | None = None
    rows: list[list[Any]] | None = None


def _fmt(v: Any, spec: str = ".4g") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return "n/a" if not math.isfinite(v) else format(v, spec)
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, float) for x in v):
        return "n/a" if not all(math.isfinite(x) for x in v) else f"[{format(v[0], spec)}, {format(v[1], spec)}]"
    return str(v)


def _sections(analysis: dict[str, Any], figures: list[tuple[str, str]], runs: Sequence[RunData],
              extra: Sequence[Section]) -> list[Section]:
    a = analysis
    secs: list[Section] = list(extra)
    k = MIN_SEEDS["interval"]
    secs.append(Section("Compared metric", [
        f"**{a['metric_name']}** (`{a['metric']}`), {a['metric_reason']}. The final score of a seed is its mean over "
        f"the last 10% of the updates where the metric was measured. Intervals are 95% percentile bootstraps over "
        f"seeds ({a['reps']} resamples; runs resampled within each task), never over episodes. IQM = interquartile "
        "mean (rliable).",
        f"Seeds each statistic needs: a 95% interval is computed from 2 seeds and reliable from {k} (marked * below "
        f"that); the IQM differs from the mean from {MIN_SEEDS['iqm']} seeds; the interval of P(X > Y) is shown "
        f"when X and Y both have {MIN_SEEDS['poi_interval']}.",
    ]))
    warn = []
    if a.get("few_seeds"):
        warn = [f"**Fewer than {k} seeds per configuration: the intervals are unreliable** (too few distinct "
                f"resamples; run more seeds before drawing conclusions): {', '.join(a['few_seeds'])}."]
    header = ["task", "configuration", "seeds", "mean", "95% CI", "IQM", "IQM 95% CI", "per seed"]
    star = lambda r, ci: _fmt(ci) + ("*" if not r.get("intervals_reliable", True) and ci is not None  # noqa: E731
                                     and all(math.isfinite(x) for x in ci) else "")
    rows = [[r["task"], r["config"], r["seeds"], _fmt(r.get("mean")), star(r, r.get("mean_ci")), _fmt(r.get("iqm")),
             star(r, r.get("iqm_ci")), ", ".join(_fmt(v, ".3g") for v in r["final_per_seed"])] for r in a["table"]]
    secs.append(Section("Final performance", warn, header, rows))
    if a["aggregate"]:
        secs.append(Section("Aggregate over tasks", [
            "Scores min-max normalised per task over every compared run (marl-eval's convention, so relative to "
            "this set of configurations); stratified bootstrap over seeds within tasks."],
            ["configuration", "tasks", "seeds/task", "IQM", "IQM 95% CI", "mean", "95% CI"],
            [[r["config"], r["tasks"], r["seeds_per_task"], _fmt(r["iqm"]), _fmt(r["iqm_ci"]), _fmt(r["mean"]),
              _fmt(r["mean_ci"])] for r in a["aggregate"]]))
    if a["poi"]:
        kp = MIN_SEEDS["poi_interval"]
        secs.append(Section("Probability of improvement", [
            "P(X > Y): the probability that a seed of X ends above a seed of Y (Mann-Whitney, rliable), averaged "
            f"over tasks; 95% CI from resampling the seeds of X and Y independently, shown when both have at least "
            f"{kp} seeds."],
            ["task", "X", "Y", "seeds (X, Y)", "P(X > Y)", "95% CI"],
            [[p["task"], p["x"], p["y"], ", ".join(map(str, p.get("seeds", []))), _fmt(p["p"], ".3f"),
              _fmt(p["ci"], ".3f") if math.isfinite(p["ci"][0]) else f"n/a (fewer than {kp} seeds)"]
             for p in a["poi"]]))
    secs.append(Section("Figures", [f"![{cap}]({name}.png)" for name, cap in figures]))
    run_rows = []
    for r in runs:
        s = r.summary or {}
        run_rows.append([str(r.path), r.algo, r.env, r.num_seeds, s.get("status", "running or killed"),
                         s.get("env_steps", r.rows[-1].get("env_steps") if r.rows else None),
                         _fmt(s.get("final_return"))])
    secs.append(Section("Runs", [], ["directory", "algorithm", "environment", "seeds", "status", "env steps/seed",
                                     "final_return (summary)"], run_rows))
    if a["notes"]:
        secs.append(Section("Notes", [f"- {n}" for n in a["notes"]]))
    return secs


def _markdown(title: str, sections: Sequence[Section], stamp: str) -> str:
    lines = [f"# {title}", "", stamp, ""]
    for s in sections:
        lines += [f"## {s.title}", ""]
        for p in s.paragraphs:
            lines += [p, ""]
        if s.header:
            lines.append("| " + " | ".join(s.header) + " |")
            lines.append("|" + "---|" * len(s.header))
            for row in s.rows or []:
                lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |")
            lines.append("")
    return "\n".join(lines)


_INLINE = [(re.compile(r"\*\*(.+?)\*\*"), r"<strong>\1</strong>"), (re.compile(r"`(.+?)`"), r"<code>\1</code>")]


def _inline_html(text: str) -> str:
    out = html.escape(text)
    for pat, rep in _INLINE:
        out = pat.sub(rep, out)
    return out


def _html(title: str, sections: Sequence[Section], stamp: str, images: dict[str, bytes]) -> str:
    """One self-contained page: figures embedded as base64 PNG, no scripts, no external files."""
    parts = [
        "<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;"
        "padding:0 1em;color:#222}table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
        "th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}th{background:#f0f0f0}"
        "tr:nth-child(even){background:#fafafa}img{max-width:100%;border:1px solid #eee;margin:0.5em 0}"
        "code{background:#f4f4f4;padding:1px 4px;border-radius:3px}h1{border-bottom:2px solid #444}"
        "figcaption{color:#555;font-size:0.9em}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p>{_inline_html(stamp)}</p>",
    ]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        for p in s.paragraphs:
            m = re.fullmatch(r"!\[(.*)\]\((.+)\.png\)", p)
            if m and m.group(2) in images:
                data = base64.b64encode(images[m.group(2)]).decode()
                parts.append(f"<figure><img alt='{html.escape(m.group(1))}' src='data:image/png;base64,{data}'>"
                             f"<figcaption>{html.escape(m.group(1))}</figcaption></figure>")
            elif p.startswith("- "):
                parts.append(f"<ul><li>{_inline_html(p[2:])}</li></ul>")
            else:
                parts.append(f"<p>{_inline_html(p)}</p>")
        if s.header:
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in s.header) + "</tr>")
            for row in s.rows or []:
                parts.append("<tr>" + "".join(f"<td>{_inline_html(str(c))}</td>" for c in row) + "</tr>")
            parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    runs: Sequence[RunData] | Sequence[str | Path],
    out_dir: str | Path,
    metric: str | None = None,
    title: str | None = None,
    reps: int = 2000,
    extra_sections: Sequence[Section] = (),
    seed: int = 0,
) -> dict[str, Any]:
    """Write the report of ``runs`` into ``out_dir``; returns ``{"files", "metric", "metric_reason", "analysis"}``.

    Files: ``curves``, ``final``, ``poi`` (two or more configurations), ``per_agent`` (general-sum runs),
    ``diagnostics`` as PNG and SVG; ``report.md``; ``report.html`` (self-contained); ``results.json``
    (every number); ``marl_eval.json`` (marl-eval's layout).
    """
    if runs and not isinstance(runs[0], RunData):
        runs = load_runs(runs)  # type: ignore[arg-type]
    runs = list(runs)  # type: ignore[assignment]
    plt = _plt()
    analysis = analyse(runs, metric, reps, seed)  # type: ignore[arg-type]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures: list[tuple[str, str, Any]] = [
        ("curves", f"Learning curves: {analysis['metric_name']}, mean over seeds and 95% bootstrap band",
         plot_curves(analysis, reps=reps)),
        ("final", "Final scores: mean (filled) and IQM (open) with 95% CIs; ticks are the seeds", plot_final(analysis)),
    ]
    if analysis["poi"]:
        figures.append(("poi", "Probability of improvement between configurations", plot_poi(analysis)))
    bases = per_agent_bases(runs)  # type: ignore[arg-type]
    if bases:
        figures.append(("per_agent", "Per-agent returns (shown because the agents' rewards differ)",
                        plot_per_agent(analysis, bases, reps)))
    panels = diagnostic_panels(runs)  # type: ignore[arg-type]
    if panels:
        figures.append(("diagnostics", "Trust-region diagnostics over training (mean over seeds; dashed: minimum)",
                        plot_diagnostics(analysis, panels, reps)))
    files, images = [], {}
    for name, _, fig in figures:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        images[name] = buf.getvalue()
        (out / f"{name}.png").write_bytes(images[name])
        fig.savefig(out / f"{name}.svg")
        plt.close(fig)
        files += [str(out / f"{name}.png"), str(out / f"{name}.svg")]
    title = title or f"trustmarl report: {', '.join(analysis['tasks'])}"
    stamp = f"{_count(len(runs), 'run')}, {_count(len(analysis['configs']), 'configuration')}, " \
            f"{_count(len(analysis['tasks']), 'task')}; written {time.strftime('%Y-%m-%d %H:%M:%S')} by `trustmarl report`."
    sections = _sections(analysis, [(n, c) for n, c, _ in figures], runs, extra_sections)  # type: ignore[arg-type]
    (out / "report.md").write_text(_markdown(title, sections, stamp))
    (out / "report.html").write_text(_html(title, sections, stamp, images))
    results = {k: v for k, v in analysis.items() if k != "groups"}
    (out / "results.json").write_text(json.dumps(_json_safe(results), indent=2) + "\n")
    (out / "marl_eval.json").write_text(json.dumps(marl_eval_json(analysis), indent=1) + "\n")
    files += [str(out / n) for n in ("report.md", "report.html", "results.json", "marl_eval.json")]
    return {"files": files, "metric": analysis["metric"], "metric_reason": analysis["metric_reason"],
            "analysis": analysis, "out_dir": str(out)}


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        return _json_safe(obj.item())
    return obj


__all__ = [
    "METRIC_RULE", "ReportError", "RunData", "Section", "analyse", "choose_metric", "curve_band", "final_scores",
    "group_runs", "load_runs", "marl_eval_json", "poi_bootstrap", "stratified_bootstrap", "validate_marl_eval",
    "write_report",
]
