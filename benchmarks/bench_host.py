"""Host-environment throughput: training steps/s next to the raw vectorised env step rate.

Default: Multi-Agent MuJoCo HalfCheetah 2x3 with HAPPO, the same number of env copies and worker
processes for both measurements (the issue's target: training at least 50% of the raw env rate).

    .venv/bin/python benchmarks/bench_host.py                       # halfcheetah_2x3, happo, 8 copies
    .venv/bin/python benchmarks/bench_host.py --env mamujoco/walker2d_2x3 --algo mappo --workers 0
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from trustmarl.algos import make_algorithm  # noqa: E402
from trustmarl.envs.host import registry as host_registry  # noqa: E402
from trustmarl.experiment.config import build_config  # noqa: E402
from trustmarl.rollout.host import HostTrainer  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_env import machine_info  # noqa: E402


def raw_rate(name: str, params: dict, copies: int, workers: int, steps: int) -> float:
    """Env steps per second of ``copies`` copies stepped with uniformly random valid actions."""
    vec = host_registry.make_vec_env(name, params, copies, seed=0, num_workers_override=workers)
    rng = np.random.default_rng(0)
    try:
        ts = vec.reset(0)
        t0 = time.perf_counter()
        for _ in range(steps):
            actions = []
            for g, av in zip(vec.groups, ts.avail):
                sp = g.action_space
                if hasattr(sp, "n"):
                    logits = np.where(av, rng.random(av.shape), -1.0)
                    actions.append(logits.argmax(-1).astype(np.int32))
                else:
                    actions.append(rng.uniform(sp.low, sp.high, size=(copies, g.n, sp.dim)).astype(np.float32))
            ts = vec.step(tuple(actions))
        return copies * steps / (time.perf_counter() - t0)
    finally:
        vec.close()


def train_rate(algo_name: str, name: str, params: dict, copies: int, workers: int, rollout: int, updates: int) -> tuple[float, float]:
    """Steady training steps/s (after one compiling update) and the mean return of the last update."""
    overrides = {"algo.num_envs": copies, "algo.rollout_len": rollout, "algo.minibatches": 1,
                 **{f"env.{k}": v for k, v in params.items()}}
    cfg = build_config(algo_name, name, overrides)
    algo = make_algorithm(cfg, total_updates=updates + 1, env=host_registry.probe(name, params))
    vec = host_registry.make_vec_env(name, params, copies, seed=0, num_workers_override=workers)
    trainer = HostTrainer(algo, vec)
    try:
        state = trainer.init(jax.random.split(jax.random.PRNGKey(0), 1))
        state, _ = trainer.run(state, 1)  # compile
        t0 = time.perf_counter()
        state, metrics = trainer.run(state, updates)
        jax.block_until_ready(state)
        rate = copies * rollout * updates / (time.perf_counter() - t0)
        return rate, float(np.nanmean(np.asarray(metrics["episode_return"])[:, -1]))
    finally:
        trainer.close()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="mamujoco/halfcheetah_2x3")
    p.add_argument("--algo", default="happo")
    p.add_argument("--copies", type=int, default=8)
    p.add_argument("--workers", type=int, default=2, help="worker processes (0 = in-process)")
    p.add_argument("--rollout", type=int, default=100)
    p.add_argument("--updates", type=int, default=5)
    p.add_argument("--max-episode-steps", type=int, default=100)
    args = p.parse_args(argv)
    params = {"max_episode_steps": args.max_episode_steps} if args.env.startswith("mamujoco/") else {}
    info = machine_info()
    print(f"# bench_host  {args.env}  {args.algo}  copies={args.copies} workers={args.workers}  load={info['loadavg_1_5_15']}")
    raw = raw_rate(args.env, params, args.copies, args.workers, steps=args.rollout * 2)
    train, ret = train_rate(args.algo, args.env, params, args.copies, args.workers, args.rollout, args.updates)
    print(f"raw env: {raw:,.0f} steps/s   training: {train:,.0f} steps/s   training/raw = {train / raw:.2f}   "
          f"(last update's mean return {ret:.2f})")


if __name__ == "__main__":
    main()
