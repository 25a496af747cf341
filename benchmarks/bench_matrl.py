"""The cost of MATRL against independent PPO (IL) per env step (Wen et al. 2021, Figure 7: 1.1-1.2x slower).

Both variants are the ``matrl`` algorithm with the presets of the environment; IL is
``algo.independent=true`` (the same PPO step, none of the meta-game, Nash, mixture or best response).
For each environment the two runs are built and warmed up (compilation, one update each), then timed
updates alternate MATRL, IL, MATRL, IL, ... so both see the same machine load; the script reports the
median wall time per update, env steps per second and the MATRL / IL ratio, plus the main process's
CPU time per update (host envs step in worker processes, which that number leaves out) and the share of
an IL update spent learning (host: the jitted learning call timed apart; JAX-native: one minus the
share of a separately jitted rollout), which is what MATRL makes more expensive (5 best-response
steps on top of 10 candidate steps, the meta-game and the Nash solve).

- ``grid/checkers`` (JAX-native): rollout and learning are one jitted program; a separately jitted
  rollout gives the share of the update that is env stepping.
- ``mamujoco/hopper_3x1`` (host env in worker processes, Table 5 settings: 4000 env steps per update):
  every env step is a Python round trip, which MATRL does not change.
- ``pettingzoo/pong`` (host env, Table 6 settings: 8 x 500 env steps per update, RAM observations; needs
  ``pip install 'trustmarl[atari]'``, so it is not in the default list): ``--envs pettingzoo/pong``.

Run from the repository root::

    .venv/bin/python benchmarks/bench_matrl.py                         # both envs, 7 timed rounds each
    .venv/bin/python benchmarks/bench_matrl.py --envs grid/checkers --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from trustmarl.experiment.backends import build_algorithm, make_backend  # noqa: E402
from trustmarl.experiment.config import build_config  # noqa: E402

VARIANTS = {"MATRL": {}, "IL": {"algo.independent": True}}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--envs", nargs="+", default=["grid/checkers", "mamujoco/hopper_3x1"])
    p.add_argument("--rounds", type=int, default=7, help="timed updates per variant (alternating)")
    p.add_argument("--num-seeds", type=int, default=1)
    p.add_argument("--out", default="benchmarks/results/bench_matrl.json")
    return p.parse_args(argv)


def block(tree):
    jax.block_until_ready(jax.tree.leaves(tree))
    return tree


def timed(fn, *args):
    w, c = time.perf_counter(), time.process_time()
    out = block(fn(*args))
    return out, time.perf_counter() - w, time.process_time() - c


def bench_env(env: str, rounds: int, num_seeds: int) -> dict:
    runs = {}
    for name, ov in VARIANTS.items():
        cfg = build_config("matrl", env, {**ov, "num_seeds": num_seeds, "chunk_updates": 1})
        algo = build_algorithm(cfg, updates=rounds + 1)
        backend = make_backend(cfg, algo)
        state, w_init, _ = timed(backend.init)
        learn: list[float] = []
        if backend.kind == "host":  # time the jitted learning call apart from the env loop
            finish = backend.trainer._finish

            def timed_finish(*a, finish=finish, learn=learn):
                out, w, _ = timed(finish, *a)
                learn.append(w)
                return out

            backend.trainer._finish = timed_finish
        (state, _), w_first, _ = timed(backend.run, state, 1)  # compilation + the first update
        runs[name] = {"cfg": cfg, "algo": algo, "backend": backend, "state": state, "wall": [], "cpu": [],
                      "first_update_s": w_first + w_init, "learn": learn}
    try:
        for _ in range(rounds):
            for r in runs.values():
                (r["state"], _), w, c = timed(r["backend"].run, r["state"], 1)
                r["wall"].append(w)
                r["cpu"].append(c)
    finally:
        for r in runs.values():
            r["backend"].close()
    out = {"env": env, "num_seeds": num_seeds, "rounds": rounds, "load_1min": os.getloadavg()[0]}
    for name, r in runs.items():
        steps = r["algo"].steps_per_update * num_seeds
        med = statistics.median(r["wall"])
        out[name] = {"wall_per_update_s": med, "env_steps_per_s": steps / med, "cpu_per_update_s": statistics.median(r["cpu"]),
                     "wall_s": r["wall"], "first_update_s": r["first_update_s"], "env_steps_per_update": steps}
        if r["learn"]:
            out[name]["learn_per_update_s"] = statistics.median(r["learn"][1:])  # the first one compiled
    out["ratio_wall"] = out["MATRL"]["wall_per_update_s"] / out["IL"]["wall_per_update_s"]
    out["ratio_cpu_main_process"] = out["MATRL"]["cpu_per_update_s"] / out["IL"]["cpu_per_update_s"]
    if runs["MATRL"]["learn"]:
        out["ratio_learn"] = out["MATRL"]["learn_per_update_s"] / out["IL"]["learn_per_update_s"]
        out["learn_share_of_il_update"] = out["IL"]["learn_per_update_s"] / out["IL"]["wall_per_update_s"]
    if runs["MATRL"]["backend"].kind == "jax":  # the env-stepping share of a JAX-native update
        algo = runs["IL"]["algo"]
        rollout = jax.jit(jax.vmap(algo.rollout))
        state = runs["IL"]["state"]
        block(rollout(state))
        times = [timed(rollout, state)[1] for _ in range(rounds)]
        out["rollout_per_update_s"] = statistics.median(times)
        out["rollout_share_of_il_update"] = out["rollout_per_update_s"] / out["IL"]["wall_per_update_s"]
        out["ratio_learn"] = ((out["MATRL"]["wall_per_update_s"] - out["rollout_per_update_s"])
                              / (out["IL"]["wall_per_update_s"] - out["rollout_per_update_s"]))  # the update minus its rollout
    out["config"] = runs["MATRL"]["cfg"].to_dict()
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    results = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "jax": jax.__version__}, "envs": []}
    print(f"{'env':22s} {'MATRL s/update':>15s} {'IL s/update':>12s} {'MATRL steps/s':>14s} {'IL steps/s':>11s} "
          f"{'ratio (wall)':>12s} {'ratio (CPU)':>11s} {'learn share':>11s} {'learn ratio':>11s} {'load':>5s}")
    for env in args.envs:
        r = bench_env(env, args.rounds, args.num_seeds)
        results["envs"].append(r)
        share = r.get("learn_share_of_il_update", 1.0 - r.get("rollout_share_of_il_update", float("nan")))
        print(f"{env:22s} {r['MATRL']['wall_per_update_s']:15.2f} {r['IL']['wall_per_update_s']:12.2f} "
              f"{r['MATRL']['env_steps_per_s']:14.0f} {r['IL']['env_steps_per_s']:11.0f} {r['ratio_wall']:12.2f} "
              f"{r['ratio_cpu_main_process']:11.2f} {share:11.2f} {r.get('ratio_learn', float('nan')):11.2f} {r['load_1min']:5.1f}",
              flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
