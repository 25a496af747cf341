"""Host-environment throughput: training steps/s next to the raw vectorised env step rate.

Default: Multi-Agent MuJoCo HalfCheetah 2x3 with HAPPO, the same env copies and worker processes for
both measurements, alternated ``--repeats`` times; the median ratio is the figure to report (the
issue's target: training at least 50% of the raw env rate).

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
from trustmarl.experiment.config import build_config, drop_unused  # noqa: E402
from trustmarl.rollout.host import HostTrainer  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_env import machine_info  # noqa: E402


def random_actions(groups, avail, copies: int, rng: np.random.Generator) -> tuple:
    """Uniformly random valid actions for every group (discrete: among the available ones)."""
    actions = []
    for g, av in zip(groups, avail):
        sp = g.action_space
        if hasattr(sp, "n"):
            actions.append(np.where(av, rng.random(av.shape), -1.0).argmax(-1).astype(np.int32))
        else:
            actions.append(rng.uniform(sp.low, sp.high, size=(copies, g.n, sp.dim)).astype(np.float32))
    return tuple(actions)


def measure(algo_name: str, name: str, params: dict, copies: int, workers: int, rollout: int, updates: int,
            repeats: int) -> list[tuple[float, float]]:
    """``repeats`` pairs (raw env steps/s, training steps/s) measured back to back on the same workers.

    Raw: ``rollout * updates`` steps of every copy with random actions. Training: ``updates`` updates
    after one compiling update. Alternating the two on one set of worker processes makes each pair's
    ratio insensitive to slow drifts in the machine's load.
    """
    overrides = {"algo.num_envs": copies, "algo.rollout_len": rollout, "algo.minibatches": 1,
                 **{f"env.{k}": v for k, v in params.items()}}
    cfg = build_config(algo_name, name, drop_unused(algo_name, overrides))
    algo = make_algorithm(cfg, total_updates=(repeats + 1) * updates + 1, env=host_registry.probe(name, params))
    vec = host_registry.make_vec_env(name, params, copies, seed=0, num_workers_override=workers)
    trainer = HostTrainer(algo, vec)
    rng = np.random.default_rng(0)
    pairs = []
    try:
        state = trainer.init(jax.random.split(jax.random.PRNGKey(0), 1))
        state, _ = trainer.run(state, 1)  # compile
        for _ in range(repeats):
            ts = vec.reset()
            t0 = time.perf_counter()
            for _ in range(rollout * updates):
                ts = vec.step(random_actions(vec.groups, ts.avail, copies, rng))
            raw = copies * rollout * updates / (time.perf_counter() - t0)
            state = trainer.reset_envs(state)
            t0 = time.perf_counter()
            state, metrics = trainer.run(state, updates)
            jax.block_until_ready(state)
            pairs.append((raw, copies * rollout * updates / (time.perf_counter() - t0)))
    finally:
        trainer.close()
    return pairs


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="mamujoco/halfcheetah_2x3")
    p.add_argument("--algo", default="happo")
    p.add_argument("--copies", type=int, default=8)
    p.add_argument("--workers", type=int, default=2, help="worker processes (0 = in-process)")
    p.add_argument("--rollout", type=int, default=100)
    p.add_argument("--updates", type=int, default=3, help="updates per training measurement")
    p.add_argument("--repeats", type=int, default=5, help="raw/training measurement pairs")
    p.add_argument("--max-episode-steps", type=int, default=100)
    args = p.parse_args(argv)
    params = {"max_episode_steps": args.max_episode_steps} if args.env.startswith("mamujoco/") else {}
    info = machine_info()
    print(f"# bench_host  {args.env}  {args.algo}  copies={args.copies} workers={args.workers}  load={info['loadavg_1_5_15']}")
    pairs = measure(args.algo, args.env, params, args.copies, args.workers, args.rollout, args.updates, args.repeats)
    for raw, train in pairs:
        print(f"raw env: {raw:,.0f} steps/s   training: {train:,.0f} steps/s   training/raw = {train / raw:.2f}")
    ratios = sorted(t / r for r, t in pairs)
    raw_med, train_med = (float(np.median([p[i] for p in pairs])) for i in (0, 1))
    print(f"median of {len(pairs)}: raw {raw_med:,.0f} steps/s, training {train_med:,.0f} steps/s, "
          f"training/raw = {float(np.median(ratios)):.2f} (range {ratios[0]:.2f}-{ratios[-1]:.2f})")

if __name__ == "__main__":
    main()
