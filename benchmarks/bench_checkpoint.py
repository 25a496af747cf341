"""Checkpoint size and write time of an off-policy run, and the time to read its policy back.

For MADDPG on MPE simple_spread (the defaults: 12 env copies, 96 env steps per update) and each
``--total-steps`` N the script builds the run's state as ``trustmarl train`` would (``backend.init()``:
the replay buffer is allocated at its configured size), marks the buffer as filled to what the run
stores by its end (``min(capacity, N)`` transitions; no training: the stored values do not change the
size of an uncompressed ``.npz``), then writes the run's final checkpoint the way the runner does and
reads the policy back the way ``trustmarl eval`` does. It prints and writes (``--out``) per case: the
buffer's capacity and bytes, the allocation time, the checkpoint's bytes on disk and write time, and
the policy's read time. Works on older checkouts too (one ``.npz`` holding everything), so
before/after figures come from the same script::

    nice -n 10 .venv/bin/python benchmarks/bench_checkpoint.py                    # 30k and 1M steps
    nice -n 10 .venv/bin/python benchmarks/bench_checkpoint.py --total-steps 30000 --seeds 4
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from trustmarl import replay  # noqa: E402
from trustmarl.experiment import runner  # noqa: E402
from trustmarl.experiment.backends import build_algorithm, make_backend, total_updates  # noqa: E402
from trustmarl.experiment.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from trustmarl.experiment.config import build_config  # noqa: E402


def case(total_steps: int, seeds: int, folder: Path) -> dict:
    cfg = build_config("maddpg", "mpe/simple_spread", {"total_steps": total_steps, "num_seeds": seeds})
    algo = build_algorithm(cfg)
    backend = make_backend(cfg, algo)
    t0 = time.perf_counter()
    state = jax.block_until_ready(backend.init())
    alloc = time.perf_counter() - t0
    cap = replay.capacity(jax.tree.map(lambda x: x[0], state.buffer))
    fill = min(cap, total_updates(cfg) * algo.rollout_len)  # steps per copy stored by the run's end
    buf = state.buffer._replace(pos=jnp.full((seeds,), fill % cap, jnp.int32), size=jnp.full((seeds,), fill, jnp.int32))
    state = state._replace(buffer=buf)
    counters = {"update": total_updates(cfg), "env_steps": total_steps, "total_updates": total_updates(cfg)}
    ckpt = folder / "checkpoints" / "last.npz"
    t0 = time.perf_counter()
    if hasattr(runner, "write_checkpoint"):
        runner.write_checkpoint(ckpt, algo, state, counters)
    else:  # a checkout from before the buffer had a file of its own
        save_checkpoint(ckpt, state, counters)
    write = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in ckpt.parent.glob("*.npz"))
    template = backend.template()
    del state, buf
    t0 = time.perf_counter()
    if hasattr(runner, "read_checkpoint"):
        runner.read_checkpoint(ckpt, algo, template, policy_only=True)
    else:
        load_checkpoint(ckpt, template)
    read = time.perf_counter() - t0
    return {
        "total_steps": total_steps, "seeds": seeds, "capacity_transitions": cap * algo.num_envs,
        "buffer_bytes_per_seed": sum(x.size // seeds * x.dtype.itemsize for x in jax.tree.leaves(template.buffer.data)),
        "alloc_seconds": alloc, "checkpoint_bytes": size, "write_seconds": write, "policy_read_seconds": read,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--total-steps", type=int, nargs="+", default=[30_000, 1_000_000])
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="JSON file for the results")
    args = p.parse_args()
    rows = []
    for n in args.total_steps:
        folder = Path(tempfile.mkdtemp(prefix="bench_ckpt_"))
        try:
            row = case(n, args.seeds, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        rows.append(row)
        print(f"total_steps={n:>9,} seeds={args.seeds}: buffer {row['capacity_transitions']:>9,} transitions "
              f"({row['buffer_bytes_per_seed'] / 2**20:.0f} MB/seed, allocated in {row['alloc_seconds']:.1f} s); "
              f"checkpoint {row['checkpoint_bytes'] / 2**20:.1f} MB written in {row['write_seconds']:.2f} s; "
              f"policy read in {row['policy_read_seconds']:.2f} s", flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
