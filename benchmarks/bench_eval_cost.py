"""What periodic deterministic evaluation costs an off-policy run, as a share of its time.

For an off-policy algorithm (default MAAC and MADDPG) on MPE simple_spread at the defaults (12 env
copies, 96 env steps and 4 gradient steps of batch 1024 per update), the script measures the steady
training time per env step (jitted chunks of ``chunk_updates`` updates after a first, compiling one),
the first evaluation (``eval_episodes`` episodes per seed: compilation plus the episodes) and a
repeated one, then prints the share of a run's time that evaluating every ``eval_every`` env steps
would take for runs of ``--total-steps``: ``(first + (k - 1) * repeat) / (train + first + (k - 1) * repeat)``
with ``k = total_steps / eval_every`` evaluations. Run from the repository root::

    nice -n 10 .venv/bin/python benchmarks/bench_eval_cost.py
    nice -n 10 .venv/bin/python benchmarks/bench_eval_cost.py --algos maddpg --every 10000 25000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from trustmarl.experiment.backends import build_algorithm, make_backend
from trustmarl.experiment.config import build_config


def measure(algo: str, episodes: int, chunks: int) -> dict:
    cfg = build_config(algo, "mpe/simple_spread", {"total_steps": 10**6, "eval_every": 0, "eval_episodes": episodes})
    algorithm = build_algorithm(cfg)
    backend = make_backend(cfg, algorithm)
    state = backend.init()
    n = cfg.chunk_updates
    state, _ = backend.run(state, n)  # compiles
    jax.block_until_ready(state)
    t0 = time.perf_counter()
    for _ in range(chunks):
        state, m = backend.run(state, n)
    jax.block_until_ready(m)
    per_step = (time.perf_counter() - t0) / (chunks * n * algorithm.steps_per_update)
    t0 = time.perf_counter()
    backend.evaluate(state, episodes)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    backend.evaluate(state, episodes)
    repeat = time.perf_counter() - t0
    return {"algo": algo, "train_seconds_per_env_step": per_step, "first_eval_seconds": first,
            "repeat_eval_seconds": repeat, "eval_episodes": episodes}


def share(m: dict, total: int, every: int) -> float:
    k = max(1, total // every)
    evals = m["first_eval_seconds"] + (k - 1) * m["repeat_eval_seconds"]
    return evals / (m["train_seconds_per_env_step"] * total + evals)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algos", nargs="+", default=["maac", "maddpg"])
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--chunks", type=int, default=3, help="steady chunks timed")
    p.add_argument("--total-steps", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--every", type=int, nargs="+", default=[5_000, 10_000, 25_000, 50_000])
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    results = []
    for algo in args.algos:
        m = measure(algo, args.episodes, args.chunks)
        m["share"] = {f"{t}/{e}": share(m, t, e) for t in args.total_steps for e in args.every}
        results.append(m)
        print(f"{algo}: training {1e3 * m['train_seconds_per_env_step']:.2f} ms/env step; evaluation of "
              f"{args.episodes} episodes: first {m['first_eval_seconds']:.1f} s (compiles), then {m['repeat_eval_seconds']:.3f} s")
        for t in args.total_steps:
            print(f"  {t:>9,} env steps: " + ", ".join(f"every {e:,}: {100 * share(m, t, e):.1f}%" for e in args.every))
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
