"""Small preset sweep on MPE simple_spread: several configurations, K seeds each, one process.

Every configuration is ``(name, algorithm, overrides)`` on top of the packaged presets. Each one
trains ``--seeds`` seeds as one ``vmap`` for ``--total-steps`` env steps per seed (the learning-rate
schedule anneals over that budget, as ``trustmarl train ... total_steps=N`` would), in jitted chunks,
and reports, on the **sum over agents** of the episode return (JaxMARL's and HARL's quantity; our
team return times 3 on simple_spread):

- ``final``: mean over seeds of each seed's mean return over the last 10% of updates (what
  ``summary.json``'s ``final_return_sum`` reports for the same command);
- ``at 300k``: the seed-mean return averaged over the 5 updates ending at 300k env steps;
- ``steps to -60``: env steps at which the 5-update running mean of the seed-mean return first
  reaches -60 (``-`` if never);
- the wall time of the configuration (compilation included). Compare wall times only within a run.

Configurations run in the order given, so their wall times share the machine's conditions. Usage::

    .venv/bin/python benchmarks/sweep_mpe.py --configs mappo_default ippo_default --seeds 3 --total-steps 300000
    .venv/bin/python benchmarks/sweep_mpe.py --list            # the named configurations

Results (curves included) go to ``--out`` as JSON, rewritten after every configuration.
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

PROCESS_START = time.time()

import jax  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from trustmarl.algos import make_algorithm  # noqa: E402
from trustmarl.algos.base import init_seeds  # noqa: E402
from trustmarl.experiment.config import build_config, drop_unused  # noqa: E402

ENV = "mpe/simple_spread"
THRESHOLD = -60.0  # sum over agents
WINDOW = 5  # running mean of the threshold test, in updates

# name -> (algorithm, overrides on top of the packaged presets)
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    # the presets as they are
    "mappo_default": ("mappo", {}),
    "ippo_default": ("ippo", {}),
    "happo_default": ("happo", {}),
    # the JaxMARL IPPO-FF settings (the speed-comparison preset)
    "mappo_jaxmarl": ("mappo", {"algo.actor_lr": 2.5e-4, "algo.critic_lr": 2.5e-4, "algo.epochs": 4, "algo.minibatches": 4}),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", nargs="*", default=["mappo_default", "ippo_default"])
    p.add_argument("--extra", action="append", default=[], metavar="NAME:ALGO:JSON",
                   help='an ad-hoc configuration, e.g. \'m_lr1e-3:mappo:{"algo.actor_lr": 1e-3}\'')
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--total-steps", type=int, default=300_000)
    p.add_argument("--chunk", type=int, default=10, help="updates per jitted chunk")
    p.add_argument("--out", default="benchmarks/results/sweep_mpe.json")
    p.add_argument("--list", action="store_true")
    return p.parse_args(argv)


def nanmean(x, axis=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return np.nanmean(x, axis=axis)


def running_mean(x: np.ndarray, w: int) -> np.ndarray:
    """Mean of the last ``w`` values (fewer at the start), NaN-aware."""
    return np.array([nanmean(x[max(0, i - w + 1) : i + 1]) for i in range(len(x))])


def steps_to(curve: np.ndarray, steps: np.ndarray, threshold: float, w: int = WINDOW) -> int | None:
    rm = running_mean(curve, w)
    hit = np.nonzero(rm >= threshold)[0]
    return int(steps[hit[0]]) if hit.size else None


def run_config(name: str, algo_name: str, overrides: dict[str, Any], seeds: int, seed: int, total_steps: int,
               chunk: int) -> dict[str, Any]:
    t0 = time.time()
    cfg = build_config(algo_name, ENV, drop_unused(algo_name, {**overrides, "total_steps": total_steps}))
    spu = cfg.algo.steps_per_update()
    updates = max(1, total_steps // spu)
    algo = make_algorithm(cfg, total_updates=updates)
    keys = jax.random.split(jax.random.PRNGKey(seed), seeds)
    state = init_seeds(algo, keys)
    n_chunks = -(-updates // chunk)

    def body(s, i, n):
        skip = lambda s: (s, jax.tree.map(lambda a: jax.numpy.zeros(a.shape, a.dtype),  # noqa: E731
                                          jax.eval_shape(lambda x: algo.update(x)[1], s)))
        return jax.lax.cond(i < n, algo.update, skip, s)

    run = jax.jit(jax.vmap(lambda s, n: jax.lax.scan(lambda c, i: body(c, i, n), s, jax.numpy.arange(chunk)),
                           in_axes=(0, None)))
    rets, ev, times = [], [], []
    done = 0
    for _ in range(n_chunks):
        n = min(chunk, updates - done)
        state, m = run(state, jax.numpy.asarray(n, jax.numpy.int32))
        m = jax.device_get({k: m[k][:, :n] for k in ("episode_return_sum", "diag/explained_variance")})
        rets.append(np.asarray(m["episode_return_sum"]))
        ev.append(np.asarray(m["diag/explained_variance"]))
        done += n
        times.extend([time.time() - PROCESS_START] * n)
    per_seed = np.concatenate(rets, axis=1)  # [K, U]
    curve = nanmean(per_seed, axis=0)
    steps = (np.arange(updates) + 1) * spu
    last = max(1, int(np.ceil(0.1 * updates)))
    final_per_seed = [float(nanmean(per_seed[k, -last:])) for k in range(seeds)]
    i300 = int(np.searchsorted(steps, 300_000, side="right"))
    at300 = float(nanmean(curve[max(0, i300 - WINDOW) : i300])) if i300 > 0 else float("nan")
    hit = steps_to(curve, steps, THRESHOLD)
    t_hit = None if hit is None else float(times[int(np.nonzero(steps == hit)[0][0])])
    return {
        "name": name, "algo": algo_name, "overrides": overrides, "seeds": seeds, "total_steps": int(updates * spu),
        "final_sum": float(np.mean(final_per_seed)), "final_sum_per_seed": final_per_seed, "at_300k_sum": at300,
        "steps_to_threshold": hit, "wall_to_threshold_from_process_start": t_hit,
        "wall_s": time.time() - t0, "loadavg_1min": os.getloadavg()[0],
        "final_explained_variance": float(nanmean(np.concatenate(ev, axis=1)[:, -last:])),
        "curve_env_steps": steps.tolist(), "curve_sum": [float(x) for x in curve],
        "curve_sum_per_seed": per_seed.tolist(), "config": cfg.to_dict(),
    }


def fmt(r: dict[str, Any]) -> str:
    hit = "-" if r["steps_to_threshold"] is None else f"{r['steps_to_threshold'] / 1000:.0f}k"
    seeds = ", ".join(f"{x:.1f}" for x in r["final_sum_per_seed"])
    return (f"| {r['name']} | {r['algo']} | {r['total_steps'] / 1000:.0f}k | {r['final_sum']:.1f} ({seeds}) | "
            f"{r['at_300k_sum']:.1f} | {hit} | {r['wall_s']:.0f} | {r['loadavg_1min']:.1f} |")


HEADER = ("| config | algo | steps | final, sum over agents (per seed) | at 300k | steps to -60 | wall s | load |\n"
          "|---|---|---:|---|---:|---:|---:|---:|")


def main(argv=None):
    args = parse_args(argv)
    configs = dict(CONFIGS)
    for spec in args.extra:
        name, algo, js = spec.split(":", 2)
        configs[name] = (algo, json.loads(js))
    if args.list:
        for k, (a, o) in configs.items():
            print(f"{k:24s} {a:6s} {o}")
        return
    names = args.configs + [s.split(":", 1)[0] for s in args.extra]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results = []
    print(HEADER, flush=True)
    for name in names:
        algo, ov = configs[name]
        r = run_config(name, algo, ov, args.seeds, args.seed, args.total_steps, args.chunk)
        results.append(r)
        print(fmt(r), flush=True)
        out.write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    return results


if __name__ == "__main__":
    main()
