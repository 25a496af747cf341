"""Per-update metrics of a run: ``metrics.jsonl``, ``metrics.csv`` and TensorBoard events.

A chunk of updates returns metrics with a leading ``[num_seeds, n_updates]`` shape;
:func:`chunk_rows` turns them into one flat row per update: ``episode_return`` is the NaN-aware
mean over seeds with per-seed columns ``episode_return/seed_k`` (so are the other scalar
``episode_*`` metrics: ``episode_return_sum``, ``episode_length`` and env outcomes such as SMAX's
``episode_win_rate``), ``episode_return_per_agent`` becomes NaN-aware ``/agent_i`` columns, every
other scalar metric is the mean over seeds and per-agent arrays become ``name/agent_i`` columns.
The runner adds ``eval/...`` columns to the row of an update after which it evaluated. Non-finite
values are written as ``null`` in JSON and ``nan`` in CSV; a column that first appears in a later row
extends the CSV header (the file is rewritten once).
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from trustmarl.experiment.checkpoint import atomic_write_text

FIRST_COLUMNS = ("update", "env_steps", "wall_time", "episode_return")


def chunk_rows(metrics: dict[str, np.ndarray], first_update: int, wall_time: float) -> list[dict[str, Any]]:
    """Rows for updates ``first_update + 1 ...`` from host metrics of shape ``[seeds, n, ...]``."""
    n_seeds, n = np.shape(metrics["episode_return"])[:2]
    rows = []
    for t in range(n):
        row: dict[str, Any] = {"update": first_update + t + 1}
        steps = metrics.get("env_steps")
        row["env_steps"] = int(np.asarray(steps)[0, t]) if steps is not None else None
        row["wall_time"] = float(wall_time)
        episode = ["episode_return"] + sorted(m for m in metrics if m.startswith("episode_") and m != "episode_return")
        for name in episode:  # NaN for a seed in which no episode ended: NaN-aware means
            per_seed = np.asarray(metrics[name], dtype=np.float64)[:, t]
            if per_seed.ndim == 2:  # per agent [seeds, n_agents]: one column per agent
                for i in range(per_seed.shape[1]):
                    row[f"{name}/agent_{i}"] = nanmean(per_seed[:, i])
                continue
            row[name] = nanmean(per_seed)
            for k in range(n_seeds):
                row[f"{name}/seed_{k}"] = float(per_seed[k])
        for name in sorted(metrics):
            if name == "env_steps" or name in episode:
                continue
            value = np.asarray(metrics[name], dtype=np.float64)[:, t]
            if value.ndim == 1:
                row[name] = float(value.mean())
            elif value.ndim == 2:  # per-agent array [seeds, n_agents]
                for i, v in enumerate(value.mean(axis=0)):
                    row[f"{name}/agent_{i}"] = float(v)
            # higher-rank metrics are not logged
        rows.append(row)
    return rows


def nanmean(x: Iterable[float]) -> float:
    """Mean over the finite entries (NaN when there are none), without numpy's warning."""
    a = np.asarray(list(x) if not isinstance(x, np.ndarray) else x, dtype=np.float64)
    a = a[~np.isnan(a)]
    return float(a.mean()) if a.size else float("nan")


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def row_to_json(row: dict[str, Any]) -> str:
    return json.dumps({k: _json_value(v) for k, v in row.items()}, allow_nan=False)


def row_from_json(line: str) -> dict[str, Any]:
    return {k: (float("nan") if v is None else v) for k, v in json.loads(line).items()}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a metrics file; a partly written last line (a killed run) is skipped."""
    rows = []
    if not Path(path).exists():
        return rows
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        try:
            rows.append(row_from_json(line))
        except json.JSONDecodeError:
            continue
    return rows


class MetricsLogger:
    """Appends rows to ``metrics.jsonl``/``metrics.csv`` and aggregate scalars to ``tb/``."""

    def __init__(self, run_dir: Path, tensorboard: bool = True, purge_step: int | None = None):
        self.run_dir = Path(run_dir)
        self.jsonl_path = self.run_dir / "metrics.jsonl"
        self.csv_path = self.run_dir / "metrics.csv"
        self._columns: list[str] | None = _csv_header(self.csv_path)
        self._tb = _tb_writer(self.run_dir / "tb", purge_step) if tensorboard else None

    def write(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        with open(self.jsonl_path, "a") as f:
            for row in rows:
                f.write(row_to_json(row) + "\n")
        new_file = self._columns is None
        if new_file:
            self._columns = _order_columns(rows[0])
        extra = [c for r in rows for c in r if c not in self._columns]
        if extra and not new_file:  # e.g. the first evaluation's eval/... columns: extend the header
            self._columns += list(dict.fromkeys(extra))
            self._rewrite_csv()
        elif extra:
            self._columns += list(dict.fromkeys(extra))
        with open(self.csv_path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self._columns, extrasaction="ignore", restval="nan")
            if new_file:
                writer.writeheader()
            writer.writerows(rows)
        if self._tb is not None:
            for row in rows:
                step = row["env_steps"] if row.get("env_steps") is not None else row["update"]
                for k, v in row.items():
                    if k in ("update", "env_steps", "wall_time") or "/seed_" in k or "/agent_" in k:
                        continue
                    if isinstance(v, (int, float)) and math.isfinite(v):
                        self._tb.add_scalar(k, v, global_step=step)
            self._tb.flush()

    def _rewrite_csv(self) -> None:
        with open(self.csv_path, newline="") as f:
            old = list(csv.DictReader(f))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self._columns, extrasaction="ignore", restval="nan")
        writer.writeheader()
        writer.writerows(old)
        atomic_write_text(self.csv_path, buf.getvalue())

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def truncate_metrics(run_dir: Path, last_update: int) -> list[dict[str, Any]]:
    """Drop rows after ``last_update`` from ``metrics.jsonl`` and ``metrics.csv``; return the kept rows."""
    run_dir = Path(run_dir)
    rows = [r for r in read_jsonl(run_dir / "metrics.jsonl") if int(r["update"]) <= last_update]
    atomic_write_text(run_dir / "metrics.jsonl", "".join(row_to_json(r) + "\n" for r in rows))
    csv_path = run_dir / "metrics.csv"
    if csv_path.exists():
        with open(csv_path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            kept = [line for line in reader if header and _csv_update(line, header) <= last_update]
        buf = io.StringIO()
        if header and rows:
            writer = csv.writer(buf)
            writer.writerow(header)
            writer.writerows(kept)
        atomic_write_text(csv_path, buf.getvalue())
    return rows


def _csv_update(line: list[str], header: list[str]) -> float:
    try:
        return int(line[header.index("update")])
    except (ValueError, IndexError):
        return math.inf  # a partly written line


def _csv_header(path: Path) -> list[str] | None:
    if not path.exists() or path.stat().st_size == 0:
        return None
    with open(path, newline="") as f:
        return next(csv.reader(f), None)


def _order_columns(row: dict[str, Any]) -> list[str]:
    """The CSV columns: the row's own order (``update``, ``env_steps``, ``wall_time``, episode metrics, ...)."""
    first = [c for c in FIRST_COLUMNS if c in row]
    return first + [c for c in row if c not in first]


def _tb_writer(path: Path, purge_step: int | None):
    try:
        from tensorboardX import SummaryWriter
    except ImportError:  # pragma: no cover - tensorboardX is a dependency
        warnings.warn("tensorboardX is not installed; no TensorBoard events are written", stacklevel=2)
        return None
    return SummaryWriter(logdir=str(path), purge_step=purge_step)
