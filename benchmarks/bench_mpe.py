"""Training speed and learning curves on MPE simple_spread, for each algorithm and number of seeds.

For every algorithm and seed count K the script builds the algorithm at JaxMARL's IPPO-FF MPE
settings (16 envs x 128 steps per update, 4 epochs x 4 minibatches, 64-unit tanh MLPs, lr 2.5e-4
annealed, clip 0.2, entropy 0.01, grad norm 0.5), runs ``state = jit(vmap(init))(keys[K])`` and then
jitted chunks ``jit(vmap(lambda s: lax.scan(update, s, length=C)))`` until the step budget is spent,
and measures

- end-to-end rate: K * env steps / wall time from before ``init`` to the last chunk (compilation included);
- steady rate: K * env steps of the chunks after the first / their wall time (``block_until_ready``);
- the learning curve: mean episode return (nan-aware mean over seeds) against env steps per seed.

Env steps are steps of one (multi-agent) environment, as in JaxMARL's ``TOTAL_TIMESTEPS``. Run from
the repository root::

    .venv/bin/python benchmarks/bench_mpe.py --quick
    .venv/bin/python benchmarks/bench_mpe.py --algos mappo happo --seeds 1 8 --total-steps 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from trustmarl.algos import make_algorithm
from trustmarl.algos.base import init_seeds  # noqa: E402
from trustmarl.experiment.config import build_config, drop_unused  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_env import machine_info  # noqa: E402

ENV = "mpe/simple_spread"
ALGOS = ("mappo", "ippo", "jrppo", "happo", "hatrpo")

# JaxMARL IPPO-FF MPE settings. mappo/ippo/jrppo get them from trustmarl/configs/<algo>/mpe_simple_spread.yaml;
# happo/hatrpo (no MPE preset) get them as overrides, with separate per-agent parameters (seed 001 §3.10).
JAXMARL_MPE = {
    "algo.num_envs": 16,
    "algo.rollout_len": 128,
    "algo.epochs": 4,
    "algo.minibatches": 4,
    "algo.actor_lr": 2.5e-4,
    "algo.critic_lr": 2.5e-4,
    "algo.anneal_lr": True,
    "algo.max_grad_norm": 0.5,
    "algo.hidden_sizes": [64, 64],
    "algo.activation": "tanh",
    "algo.clip_eps": 0.2,
    "algo.ent_coef": 0.01,
}
SEQUENTIAL_EXTRA = {
    "algo.share_params": False,  # the paper's setting (heterogeneous agents)
    "algo.critic_epochs": 4,  # the critic does the same work as in the PPO family
    "algo.critic_minibatches": 4,
}

# Reference figures quoted in the issue text (NOT measured by this script; other machines/conditions):
# steady env steps/s on a comparable 2-core CPU machine, MPE simple_spread, same settings.
REFERENCE = {
    "JaxMARL IPPO-FF (1 seed)": 55_000,
    "JaxMARL IPPO-FF (8 seeds)": 61_000,
    "HARL MAPPO (PyTorch)": 1_800,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algos", nargs="+", default=list(ALGOS), choices=ALGOS)
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 8], help="seed counts K (vmapped)")
    p.add_argument("--total-steps", type=int, default=None, help="env steps per seed (default 1M, --quick 200k)")
    p.add_argument("--chunk", type=int, default=10, help="updates per jitted chunk C")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="200k env steps per seed unless --total-steps is given")
    p.add_argument("--out", type=str, default="benchmarks/results/bench_mpe.json")
    args = p.parse_args(argv)
    if args.total_steps is None:
        args.total_steps = 200_000 if args.quick else 1_000_000
    return args


def overrides_for(algo: str) -> dict[str, Any]:
    """Overrides that put ``algo`` at the JaxMARL MPE settings (identical to the preset for the PPO family)."""
    out = dict(JAXMARL_MPE)
    if algo in ("happo", "hatrpo"):
        out.update(SEQUENTIAL_EXTRA)
    return drop_unused(algo, out)  # HATRPO: no clip, no entropy bonus, no actor SGD (seed 001 §7 #19)


def nanmean(x: np.ndarray, axis=None) -> np.ndarray:
    """Mean ignoring NaN (updates in which no episode ended), NaN when all are NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return np.nanmean(x, axis=axis)


def run_one(algo_name: str, num_seeds: int, total_steps: int, chunk: int, seed: int) -> dict[str, Any]:
    """Train ``num_seeds`` vmapped seeds of ``algo_name`` for ~``total_steps`` env steps each; time it."""
    load_before = os.getloadavg()[0]
    cfg = build_config(algo_name, ENV, overrides_for(algo_name), preset="jaxmarl")  # the JaxMARL-settings variant
    spu = cfg.algo.num_envs * cfg.algo.rollout_len
    n_chunks = max(2, round(total_steps / (spu * chunk)))  # >= 2 so that a steady-state chunk exists
    total_updates = n_chunks * chunk
    algo = make_algorithm(cfg, total_updates=total_updates)
    assert algo.steps_per_update == spu, (algo.steps_per_update, spu)

    def chunk_fn(state):
        return jax.lax.scan(lambda c, _: algo.update(c), state, None, length=chunk)

    t_start = time.perf_counter()
    keys = jax.random.split(jax.random.PRNGKey(seed), num_seeds)
    state = init_seeds(algo, keys)
    run_chunk = jax.jit(jax.vmap(chunk_fn))
    returns, chunk_ends = [], []
    next_print = 0.1
    for i in range(n_chunks):
        state, metrics = run_chunk(state)
        ret = np.asarray(jax.device_get(metrics["episode_return"]))  # [K, C]; device_get waits for the chunk
        jax.block_until_ready(state)
        chunk_ends.append(time.perf_counter())
        returns.append(ret)
        done = (i + 1) / n_chunks
        if done >= next_print - 1e-9 or i == n_chunks - 1:
            steps = (i + 1) * chunk * spu
            print(f"  {algo_name:>6} K={num_seeds}  {steps:>9,d} steps/seed  return {nanmean(ret):8.2f}"
                  f"  ({chunk_ends[-1] - t_start:6.1f} s)", flush=True)
            next_print = np.floor(done * 10 + 1e-9) / 10 + 0.1
    per_seed = np.concatenate(returns, axis=1)  # [K, U]
    curve = nanmean(per_seed, axis=0)  # [U]
    steps_per_seed = total_updates * spu
    e2e_s = chunk_ends[-1] - t_start
    first_chunk_s = chunk_ends[0] - t_start
    steady_s = chunk_ends[-1] - chunk_ends[0]
    last = max(1, total_updates // 10)
    return {
        "algo": algo_name,
        "num_seeds": num_seeds,
        "updates": total_updates,
        "chunk_updates": chunk,
        "steps_per_update": spu,
        "env_steps_per_seed": steps_per_seed,
        "wall_s": e2e_s,
        "first_chunk_s_incl_compile": first_chunk_s,
        "steady_s": steady_s,
        "e2e_steps_per_s": num_seeds * steps_per_seed / e2e_s,
        "steady_steps_per_s": num_seeds * (n_chunks - 1) * chunk * spu / steady_s,
        "initial_return": float(curve[0]),
        "final_return": float(nanmean(curve[-last:])),
        "final_return_per_seed": [float(x) for x in nanmean(per_seed[:, -last:], axis=1)],
        "curve_env_steps": [(u + 1) * spu for u in range(total_updates)],
        "curve_mean_return": [float(x) for x in curve],
        "loadavg_1min_before": load_before,
        "loadavg_1min_after": os.getloadavg()[0],
        "config": cfg.to_dict(),
    }


def add_ratios(results: list[dict[str, Any]]) -> None:
    """Each run's steady rate over MAPPO's with the same seed count, measured in this run."""
    mappo = {r["num_seeds"]: r["steady_steps_per_s"] for r in results if r["algo"] == "mappo"}
    for r in results:
        base = mappo.get(r["num_seeds"])
        r["steady_ratio_to_mappo"] = r["steady_steps_per_s"] / base if base else None


def format_table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| algo | seeds | e2e steps/s | steady steps/s | steady / MAPPO | wall s | initial return | final return (last 10%) | load 1 min |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ratio = f"{r['steady_ratio_to_mappo']:.2f}" if r.get("steady_ratio_to_mappo") is not None else "n/a"
        lines.append(
            f"| {r['algo']} | {r['num_seeds']} | {r['e2e_steps_per_s']:,.0f} | {r['steady_steps_per_s']:,.0f} | {ratio}"
            f" | {r['wall_s']:.1f} | {r['initial_return']:.1f} | {r['final_return']:.1f}"
            f" | {r['loadavg_1min_before']:.2f} |"
        )
    lines.append("")
    lines.append("Reference figures quoted in the issue text (NOT measured here; steady env steps/s, 2-core CPU):")
    for name, v in REFERENCE.items():
        lines.append(f"  {name}: ~{v:,}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    info = machine_info()
    print(f"# bench_mpe  backend={info['backend']}  cpus={info['cpu_count']}  total steps/seed={args.total_steps:,}"
          f"  load avg (1/5/15 min)={' '.join(f'{x:.2f}' for x in info['loadavg_1_5_15'])}")
    results: list[dict[str, Any]] = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"machine": info, "args": vars(args), "reference_not_measured": REFERENCE, "results": results}
    for k in args.seeds:  # every algorithm at one seed count, then the next count
        for algo in args.algos:
            results.append(run_one(algo, k, args.total_steps, args.chunk, args.seed))
            add_ratios(results)
            out.write_text(json.dumps(report, indent=2))  # after every row: an interrupted run keeps its results
    print()
    print(format_table(results))
    print(f"\nwrote {out}")
    return report


if __name__ == "__main__":
    main()
