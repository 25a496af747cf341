"""What the persistent compilation cache saves a user: a ``trustmarl train`` (and ``trustmarl eval`` of its run)
started again with the same settings, against the same command without the cache.

For each algorithm, fresh ``python -m trustmarl`` processes from the repository root, in this order: ``train``
with ``TRUSTMARL_COMPILATION_CACHE=off``; ``train`` with an empty cache folder (it compiles and stores); ``train``
again on the filled cache (another run directory: it loads); then ``eval`` of the run without the cache, and
twice with it (the second one loads).
Reported: each command's wall time (process start to exit, imports included), the ratio warm / off, the cache's
size, and whether the three runs' metrics are identical (they must be: the cache holds the same executables).
``--repeats`` rounds alternate the order off/warm. Ratios hold within one invocation; absolute times depend on
the machine's load (recorded)::

    .venv/bin/python benchmarks/bench_compile_cache.py                      # mappo maddpg maac qmix
    .venv/bin/python benchmarks/bench_compile_cache.py --algos happo --repeats 2

Writes ``benchmarks/results/bench_compile_cache.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = {"mappo": 20_000, "happo": 20_000, "maddpg": 2_000, "maac": 2_000, "qmix": 2_000}


def run(argv: list[str], cache: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "TRUSTMARL_COMPILATION_CACHE": cache}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "trustmarl", *argv], cwd=ROOT, env=env, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr[-2000:]}")
    return time.perf_counter() - t0


def metrics(run_dir: Path) -> str:
    return "".join(json.dumps({k: v for k, v in json.loads(line).items() if "time" not in k and "per_s" not in k
                               and "seconds" not in k}, sort_keys=True)
                   for line in (run_dir / "metrics.jsonl").read_text().splitlines())


def size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--algos", nargs="+", default=["mappo", "maddpg", "maac", "qmix"])
    ap.add_argument("--env", default="mpe/simple_spread")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_compile_cache.json")
    args = ap.parse_args()
    rows = []
    for algo in args.algos:
        for rep in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                tmp = Path(tmp)
                cache = tmp / "cache"
                train = ["train", algo, args.env, f"total_steps={STEPS.get(algo, 2_000)}", "--no-progress"]
                load = os.getloadavg()[0]
                t_off = run([*train, "--out", str(tmp / "off")], "off")
                t_fill = run([*train, "--out", str(tmp / "fill")], str(cache))
                t_warm = run([*train, "--out", str(tmp / "warm")], str(cache))
                e_off = run(["eval", str(tmp / "off"), "--episodes", "4"], "off")
                run(["eval", str(tmp / "off"), "--episodes", "4"], str(cache))  # stores the evaluation's programs
                e_warm = run(["eval", str(tmp / "off"), "--episodes", "4"], str(cache))
                same = metrics(tmp / "off") == metrics(tmp / "fill") == metrics(tmp / "warm")
                row = {"algo": algo, "env": args.env, "repeat": rep, "load_1min": load,
                       "train_off_s": t_off, "train_fill_s": t_fill, "train_warm_s": t_warm,
                       "train_warm_over_off": t_warm / t_off, "eval_off_s": e_off, "eval_warm_s": e_warm,
                       "eval_warm_over_off": e_warm / e_off, "cache_mb": size_mb(cache), "metrics_identical": same}
                rows.append(row)
                print(f"{algo:7s} train off {t_off:6.1f}s fill {t_fill:6.1f}s warm {t_warm:6.1f}s "
                      f"({t_warm / t_off:.2f}x)  eval off {e_off:5.1f}s warm {e_warm:5.1f}s ({e_warm / e_off:.2f}x)  "
                      f"cache {row['cache_mb']:.1f} MB  identical {same}  load {load:.1f}", flush=True)
    args.out.write_text(json.dumps({"cpu_count": os.cpu_count(), "python": sys.version.split()[0],
                                    "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
