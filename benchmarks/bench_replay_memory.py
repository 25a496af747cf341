"""Replay memory of the off-policy engine: bytes per transition, buffer bytes and peak RSS of a run.

Each case runs in a fresh process: build the run's state for ``--seeds`` seeds with a buffer of
``--buffer`` transitions per seed (``backend.init()``, as ``trustmarl train`` does), train one chunk
of ``--updates`` updates (acting, inserting, sampling and gradient steps: the jitted chunk program),
write a checkpoint, and report the buffer's bytes per transition and in all, and the process's peak
resident memory (``ru_maxrss``). The buffer layout is the same for every off-policy algorithm (one
engine); MADDPG compiles fastest. Works on older checkouts too, for before/after figures::

    nice -n 10 .venv/bin/python benchmarks/bench_replay_memory.py                          # 8 seeds x 1e5, spread_2
    nice -n 10 .venv/bin/python benchmarks/bench_replay_memory.py --seeds 1 --buffer 1000000

``--preset-sizes ALGO:ENV ...`` instead reports the buffer bytes of one seed under the packaged presets from the
state's shapes alone (``jax.eval_shape``: nothing allocated, nothing compiled), the figures the SMAX presets state::

    .venv/bin/python benchmarks/bench_replay_memory.py --preset-sizes maddpg:smax/3m maddpg:smax/8m maddpg:smax/2s3z
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing


def case(env: str, algo: str, seeds: int, buffer: int, updates: int) -> dict:
    import jax

    from trustmarl import replay
    from trustmarl.experiment import runner
    from trustmarl.experiment.backends import build_algorithm, make_backend
    from trustmarl.experiment.config import build_config

    cfg = build_config(algo, env, {"num_seeds": seeds, "algo.buffer_size": buffer, "total_steps": 10**7,
                                   "chunk_updates": updates, "eval_every": 0})
    a = build_algorithm(cfg)
    backend = make_backend(cfg, a)
    t0 = time.perf_counter()
    state = jax.block_until_ready(backend.init())
    init_s = time.perf_counter() - t0
    buf = state.buffer
    total = replay.transitions_nbytes(buf) if hasattr(replay, "transitions_nbytes") else replay.nbytes(buf)
    transitions = a.capacity * a.num_envs
    rss_init = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    state, metrics = backend.run(state, updates)
    jax.block_until_ready(metrics)
    chunk_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        ckpt = Path(d) / "checkpoints" / "last.npz"
        counters = {"update": updates, "env_steps": updates * a.steps_per_update, "total_updates": 1}
        if hasattr(runner, "write_checkpoint"):
            runner.write_checkpoint(ckpt, a, state, counters)
        else:
            from trustmarl.experiment.checkpoint import save_checkpoint

            save_checkpoint(ckpt, state, counters)
    return {"env": env, "algo": algo, "seeds": seeds, "buffer_transitions_per_seed": transitions,
            "bytes_per_transition": total / seeds / transitions, "buffer_bytes_all_seeds": total,
            "peak_rss_after_init": rss_init, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "init_seconds": init_s, "chunk_seconds": chunk_s,
            "learned": float(metrics["diag/learning"][:, -1].mean())}


def preset_size(spec: str) -> dict:
    """Buffer bytes of one seed of ``algo:env`` under its packaged presets, from the state's shapes alone."""
    import jax
    import numpy as np

    from trustmarl.algos import make_algorithm
    from trustmarl.experiment.config import build_config

    algo, env = spec.split(":", 1)
    cfg = build_config(algo, env, {})
    shapes = jax.eval_shape(make_algorithm(cfg).init, jax.random.PRNGKey(0)).buffer
    total = sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(shapes))
    return {"algo": algo, "env": env, "buffer_size": cfg.algo.buffer_size, "buffer_bytes_per_seed": total,
            "bytes_per_transition": total / cfg.algo.buffer_size}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="mpe/spread_2")
    p.add_argument("--algo", default="maddpg")
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--buffer", type=int, default=100_000)
    p.add_argument("--updates", type=int, default=12, help="updates in the chunk (12 x 96 steps: learning starts)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--preset-sizes", nargs="+", metavar="ALGO:ENV", help="buffer bytes per seed under the presets (shapes only)")
    args = p.parse_args()
    if args.preset_sizes:
        rows = [preset_size(s) for s in args.preset_sizes]
        for r in rows:
            print(f"{r['algo']} {r['env']}: {r['buffer_size']:,} transitions, {r['bytes_per_transition']:.0f} B/transition, "
                  f"{r['buffer_bytes_per_seed'] / 2**30:.2f} GiB per seed")
        if args.out is not None:
            args.out.write_text(json.dumps(rows, indent=2) + "\n")
        return
    if args.child:
        print(json.dumps(case(args.env, args.algo, args.seeds, args.buffer, args.updates)))
        return
    argv = [sys.executable, __file__, "--child", "--env", args.env, "--algo", args.algo, "--seeds", str(args.seeds),
            "--buffer", str(args.buffer), "--updates", str(args.updates)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    row = json.loads(out)
    gb = 2**30
    print(f"{row['algo']} {row['env']} {row['seeds']} seeds x {row['buffer_transitions_per_seed']:,} transitions: "
          f"{row['bytes_per_transition']:.1f} B/transition, buffers {row['buffer_bytes_all_seeds'] / gb:.3f} GiB, "
          f"peak RSS {row['peak_rss_after_init'] / gb:.2f} GiB after init, {row['peak_rss'] / gb:.2f} GiB after a chunk "
          f"and a checkpoint (learning: {row['learned']:.0f})")
    if args.out is not None:
        args.out.write_text(json.dumps(row, indent=2) + "\n")


if __name__ == "__main__":
    main()
