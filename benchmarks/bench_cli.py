"""Start-up time of the command line: ``--help``, ``list`` and one-line errors, what a user waits for before
anything trains.

Each command runs as a fresh ``python -m trustmarl ...`` process from the repository root (so the
checkout's ``trustmarl`` is the one imported), ``--repeats`` times; the median wall time is reported with
the 1-minute load average. ``--baseline-rev REV`` also times the same commands on git revision ``REV``
(exported to a temporary directory), alternating with today's, so both see the same machine load::

    .venv/bin/python benchmarks/bench_cli.py                          # today's code, 7 runs of each command
    .venv/bin/python benchmarks/bench_cli.py --baseline-rev 03e19cd   # ... and the code before the fast CLI

Writes ``benchmarks/results/bench_cli.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "--help": ["--help"],
    "train --help": ["train", "--help"],
    "list": ["list"],
    "list --keys happo": ["list", "--keys", "happo"],
    "error: unknown algorithm": ["train", "nope", "mpe/simple_spread"],
    "error: unknown run key": ["train", "mappo", "mpe/simple_spread", "bogus=1"],
    "error: MAPPO value": ["train", "mappo", "mpe/simple_spread", "algo.clip_eps=-1"],
    "error: HAPPO value (imports JAX)": ["train", "happo", "mpe/simple_spread", "algo.clip_eps=-1"],
}


def time_command(root: Path, argv: list[str]) -> tuple[float, int]:
    env = {**os.environ, "PYTHONPATH": str(root), "JAX_PLATFORMS": "cpu"}
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "trustmarl", *argv], cwd=root, env=env, capture_output=True)
    return time.perf_counter() - t0, res.returncode


def export(rev: str, target: Path) -> Path:
    archive = target / "src.tar"
    subprocess.run(["git", "archive", "--format=tar", "-o", str(archive), rev], cwd=ROOT, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(target / "src", filter="data")
    return target / "src"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--baseline-rev", default=None, help="also time this git revision, alternating with today's")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_cli.json")
    args = ap.parse_args()
    roots = {"now": ROOT}
    with tempfile.TemporaryDirectory() as tmp:
        if args.baseline_rev:
            roots[f"rev {args.baseline_rev}"] = export(args.baseline_rev, Path(tmp))
        results = []
        for name, argv in COMMANDS.items():
            times: dict[str, list[float]] = {k: [] for k in roots}
            codes: dict[str, int] = {}
            loads = []
            for _ in range(args.repeats):
                for label, root in roots.items():  # alternate: both versions see the same load
                    loads.append(os.getloadavg()[0])
                    t, code = time_command(root, argv)
                    times[label].append(t)
                    codes[label] = code
            row = {"command": f"trustmarl {' '.join(argv)}", "name": name, "load_1min": statistics.median(loads),
                   **{f"{label} median s": statistics.median(ts) for label, ts in times.items()},
                   **{f"{label} min s": min(ts) for label, ts in times.items()},
                   **{f"{label} exit": c for label, c in codes.items()}}
            results.append(row)
            cols = "  ".join(f"{label}: {row[f'{label} median s']:.2f} s (min {row[f'{label} min s']:.2f})" for label in roots)
            print(f"{name:44s} {cols}  load {row['load_1min']:.1f}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"repeats": args.repeats, "cpu_count": os.cpu_count(), "python": sys.version.split()[0],
                                    "results": results}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
