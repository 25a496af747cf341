"""Aggregate training speed against device count (run key ``devices``): the seed axis sharded over a mesh,
or with ``--env-blocks B`` (run key ``env_blocks``) one seed's env copies in B blocks sharded over the devices.

For each device count D (``--devices``, default every count dividing ``--seeds`` up to the devices JAX
sees), the script builds the run's algorithm as ``trustmarl train`` does, initialises ``--seeds`` seeds
on D devices, compiles the chunk program, and times ``--chunks`` chunks of ``--chunk`` updates after a
first (compiling) one. It reports aggregate env steps/s (all seeds), the ratio to D = 1 measured in the
same invocation, and the scaling efficiency ratio / D (target >= 0.9 on GPUs). With ``--env-blocks B`` every
D divides B (default: every such count up to the devices JAX sees); each device rolls out B/D blocks of
``num_envs/B`` env copies and the gradients are all-reduced every minibatch, so the figure includes that
communication.

On CPU, ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` gives four host devices that share the
machine's cores: the figures then say nothing about scaling (the tests use them for correctness only).
Run from the repository root::

    .venv/bin/python benchmarks/bench_devices.py --algo maddpg --seeds 8            # on a multi-GPU host
    XLA_FLAGS=--xla_force_host_platform_device_count=4 .venv/bin/python benchmarks/bench_devices.py --quick
    .venv/bin/python benchmarks/bench_devices.py --algo mappo --seeds 1 --env-blocks 8 --num-envs 1024  # env blocks
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from trustmarl.algos.base import init_seeds  # noqa: E402
from trustmarl.experiment.backends import (  # noqa: E402
    _Chunks, build_algorithm, env_axes, env_mesh, has_bulk, init_sharded, seed_keys, seed_mesh, shard_blocks,
)
from trustmarl.experiment.config import build_config  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_env import machine_info  # noqa: E402

QUICK = {"algo.num_envs": 2, "algo.hidden_sizes": [16]}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algo", default="mappo")
    p.add_argument("--env", default="mpe/simple_spread")
    p.add_argument("--seeds", type=int, default=8, help="seeds of the run (every D must divide it)")
    p.add_argument("--devices", nargs="+", type=int,
                   help="device counts to time (default: all dividing --seeds, or --env-blocks when given)")
    p.add_argument("--env-blocks", type=int, default=1, help="env blocks per seed sharded over the devices (run key env_blocks)")
    p.add_argument("--num-envs", type=int, help="algo.num_envs (default: the algorithm's; a multiple of --env-blocks)")
    p.add_argument("--chunk", type=int, default=10, help="updates per chunk")
    p.add_argument("--chunks", type=int, default=3, help="timed chunks after the compiling one")
    p.add_argument("--quick", action="store_true", help="tiny networks and 2 env copies: a check that it runs")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_devices.json"))
    return p.parse_args(argv)


def time_one(args, d: int) -> dict:
    keys = {"num_seeds": args.seeds, "devices": d, "env_blocks": args.env_blocks, **(QUICK if args.quick else {})}
    if args.num_envs:
        keys["algo.num_envs"] = args.num_envs
    cfg = build_config(args.algo, args.env, keys)
    algo = build_algorithm(cfg, updates=args.chunk * (args.chunks + 1))
    blocks = args.env_blocks
    mesh = env_mesh(d) if blocks > 1 else seed_mesh(d)
    chunks = _Chunks(algo, args.chunk, donate=has_bulk(algo), mesh=mesh, blocks=blocks)
    if blocks > 1:
        state = shard_blocks(init_seeds(algo, seed_keys(cfg)), mesh, env_axes(algo, blocks))
    else:
        state = init_sharded(algo, seed_keys(cfg), mesh)
    t0 = time.perf_counter()
    state, m = chunks(state, args.chunk)
    jax.block_until_ready(state)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(args.chunks):
        state, m = chunks(state, args.chunk)
    jax.block_until_ready(state)
    steady = time.perf_counter() - t0
    steps = args.seeds * args.chunks * args.chunk * int(algo.steps_per_update)
    return {"devices": d, "first_chunk_s": first, "steady_s": steady, "env_steps_per_s": steps / steady}


def main(argv=None) -> None:
    args = parse_args(argv)
    available = jax.device_count()
    split = args.env_blocks if args.env_blocks > 1 else args.seeds
    counts = args.devices or [d for d in range(1, min(available, split) + 1) if split % d == 0]
    rows = []
    what = f", {args.env_blocks} env blocks per seed" if args.env_blocks > 1 else ""
    print(f"{args.algo} on {args.env}, {args.seeds} seeds{what}, {available} {jax.default_backend()} device(s)")
    print(f"{'devices':>7} {'env steps/s':>12} {'x D=1':>7} {'efficiency':>10}")
    for d in counts:
        r = time_one(args, d)
        base = rows[0]["env_steps_per_s"] if rows and rows[0]["devices"] == 1 else None
        r["ratio_to_one"] = r["env_steps_per_s"] / base if base else (1.0 if d == 1 else None)
        r["efficiency"] = r["ratio_to_one"] / d if r["ratio_to_one"] else None
        rows.append(r)
        fmt = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
        print(f"{d:>7} {r['env_steps_per_s']:>12,.0f} {fmt(r['ratio_to_one']):>7} {fmt(r['efficiency']):>10}")
    if jax.default_backend() == "cpu" and available > 1:
        print("host-platform CPU devices share this machine's cores: these figures do not measure scaling")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine_info(), "args": {k: str(v) for k, v in vars(args).items()},
                                    "results": rows}, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
