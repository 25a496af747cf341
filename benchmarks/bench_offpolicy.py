"""Speed of the off-policy engine: env steps/s and gradient steps/s, and the engine's overhead.

For each algorithm (MADDPG, MATD3, MAAC; any off-policy one by ``--algos``, e.g. ``mamd mamt`` or ``vdn qmix``) and seed count K on MPE
simple_spread (``--env``, e.g. ``mpe/spread_2``, Li et al. 2022's Spread) at the papers'
update-to-data ratio (MAAC's: 12 env copies, an update every 96 env steps, 4 gradient steps of batch
1024, buffer 1e6, 128-unit networks; ``--buffer`` to change the buffer), the script

1. fills the buffer with ``--fill`` updates, then times ``--updates`` updates as jitted chunks
   (acting, env steps, buffer insertion, sampling, gradient steps, targets): the engine's rate;
2. times the same number of the same gradient steps alone (``train_step`` on batches sampled from the
   same filled buffer, one jitted ``lax.scan``): the learning's own cost;
3. reports env steps/s (all seeds), gradient steps/s (all seeds), the engine's overhead
   (1. / 2. - 1; target <= 0.3) and, for K > 1, the aggregate rate over K = 1's (target >= 1.5).

``--harl`` adds MADDPG at HARL's MPE settings (10 env copies, 0.1 gradient steps per env step, batch
1000, 128-128 MLPs; 10 x 10 env steps and 10 gradient steps per update), next to HARL's own rate
measured on this kind of machine (about 115 env steps/s; quoted from the issue, not measured here).
With MAAC among the algorithms, every other algorithm's time per gradient step is also given as a
ratio to MAAC's (MAMD and MAMT are MAAC plus their actor loss and trust-region networks; Li et al.
2022's target: MAMT at most 2x MAAC). It also prints the projected wall-clock of a paper-length run on Spread (50,000 episodes of 25
steps = 1.25M env steps) from the measured one-seed rate. Run from the repository root::

    .venv/bin/python benchmarks/bench_offpolicy.py                      # all algorithms, K = 1 and 8
    .venv/bin/python benchmarks/bench_offpolicy.py --algos maac --seeds 1 --updates 20
    .venv/bin/python benchmarks/bench_offpolicy.py --algos maac mamd mamt --seeds 1 --env mpe/spread_2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from trustmarl import replay  # noqa: E402
from trustmarl.algos import make_algorithm  # noqa: E402
from trustmarl.algos.base import init_seeds  # noqa: E402
from trustmarl.experiment.config import build_config  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_env import machine_info  # noqa: E402

ENV = "mpe/simple_spread"
HARL_MADDPG_STEPS_PER_S = 115.0  # HARL's MADDPG (PyTorch) on MPE spread, 2-core machine (issue 8; not measured here)
HARL = {"algo.num_envs": 10, "algo.rollout_len": 10, "algo.grad_steps": 10, "algo.batch_size": 1000,
        "algo.hidden_sizes": [128, 128]}
PAPER_MAAC_STEPS = 50_000 * 25


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algos", nargs="+", default=["maddpg", "matd3", "maac"])
    p.add_argument("--env", default=ENV, help="a JAX-native MPE environment (default %(default)s)")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 8])
    p.add_argument("--updates", type=int, default=20, help="timed updates (after compiling and filling)")
    p.add_argument("--fill", type=int, default=20, help="updates run before timing (fill the buffer)")
    p.add_argument("--buffer", type=int, default=1_000_000, help="buffer size (transitions per seed)")
    p.add_argument("--harl", action="store_true", help="also MADDPG at HARL's MPE settings")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_offpolicy.json"))
    return p.parse_args(argv)


CPU_SECONDS: dict[int, float] = {}  # id(fn) -> best CPU time (all threads) of its last timing


def _timed(fn, *args, repeats: int = 2):
    """Best wall time of ``repeats`` calls after one compiling call; returns (seconds, compile seconds, out).
    The best CPU time of the process (all threads) is kept in ``CPU_SECONDS[id(fn)]``: on a machine shared
    with other work it varies much less than the wall time."""
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    compile_s = time.perf_counter() - t0
    best = best_cpu = float("inf")
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    CPU_SECONDS[id(fn)] = best_cpu
    return best, compile_s, out


def measure(algo: str, k: int, overrides: dict, n_updates: int, n_fill: int, env: str = ENV) -> dict:
    cfg = build_config(algo, env, {"algo.learning_starts": 0, **overrides, "num_seeds": k})
    a = make_algorithm(cfg, total_updates=n_fill + n_updates)
    state = init_seeds(a, jax.random.split(jax.random.PRNGKey(0), k))

    def chunk(s, n):
        return jax.lax.scan(lambda c, _: a.update(c), s, None, length=n)[0]

    fill = jax.jit(jax.vmap(lambda s: chunk(s, n_fill)))
    run = jax.jit(jax.vmap(lambda s: chunk(s, n_updates)))
    state = jax.block_until_ready(fill(state))
    t_engine, c_engine, _ = _timed(run, state)
    cpu_engine = CPU_SECONDS[id(run)]

    n_grad = n_updates * a.cfg.grad_steps

    def grads_only(s):
        def step(st, key):
            k_batch, k_train = jax.random.split(key)
            stats = replay.field_mean_std(st.buffer.steps, st.buffer.steps.data["reward"]) if a.cfg.reward_norm else None
            batch = a.sample_batch(st.buffer, k_batch, stats)
            st, _ = a.train_step(st, batch, k_train)
            return st, None

        return jax.lax.scan(step, s, jax.random.split(s.key, n_grad))[0]

    grads_fn = jax.jit(jax.vmap(grads_only))
    t_grad, c_grad, _ = _timed(grads_fn, state)
    cpu_grad = CPU_SECONDS[id(grads_fn)]
    env_steps = n_updates * a.steps_per_update * k
    return {
        "algo": algo, "env": env, "seeds": k, "updates": n_updates, "grad_steps": n_grad * k,
        "buffer_per_seed_mb": replay.transitions_nbytes(jax.tree.map(lambda x: x[0], state.buffer)) / 2**20,
        "engine_seconds": t_engine, "grad_only_seconds": t_grad, "compile_seconds": c_engine,
        "env_steps_per_s": env_steps / t_engine, "grad_steps_per_s": n_grad * k / t_engine,
        "grad_only_steps_per_s": n_grad * k / t_grad, "overhead": t_engine / t_grad - 1.0,
        "engine_cpu_seconds_per_grad_step": cpu_engine / (n_grad * k), "grad_only_cpu_seconds_per_grad_step": cpu_grad / (n_grad * k),
        "config": cfg.to_dict()["algo"],
    }


def main(argv=None):
    args = parse_args(argv)
    info = machine_info()
    print(f"# bench_offpolicy  env={args.env}  backend={info['backend']}  cpus={info['cpu_count']}  "
          f"load avg={' '.join(f'{x:.2f}' for x in info['loadavg_1_5_15'])}")
    rows = []
    cases = [(a, k, {"algo.buffer_size": args.buffer}) for a in args.algos for k in args.seeds]
    if args.harl:
        cases += [("maddpg", 1, {"algo.buffer_size": args.buffer, **HARL})]
    print(f"{'algo':8s} {'K':>2s} {'env steps/s':>12s} {'grad steps/s':>13s} {'grads alone/s':>14s} "
          f"{'overhead':>9s} {'vs K=1':>7s} {'compile s':>9s} {'CPU ms/step':>12s}")
    for algo, k, ov in cases:
        r = measure(algo, k, ov, args.updates, args.fill, args.env)
        r["harl_settings"] = ov.get("algo.batch_size") == 1000
        base = next((x for x in rows if x["algo"] == algo and x["seeds"] == 1 and not x["harl_settings"]), None)
        r["aggregate_vs_one_seed"] = r["env_steps_per_s"] / base["env_steps_per_s"] if base and k > 1 else None
        rows.append(r)
        tag = algo + (" (HARL)" if r["harl_settings"] else "")
        vs = f"{r['aggregate_vs_one_seed']:.2f}x" if r["aggregate_vs_one_seed"] else "-"
        print(f"{tag:8s} {k:2d} {r['env_steps_per_s']:12.0f} {r['grad_steps_per_s']:13.1f} "
              f"{r['grad_only_steps_per_s']:14.1f} {r['overhead']:9.1%} {vs:>7s} {r['compile_seconds']:9.1f} "
              f"{1e3 * r['engine_cpu_seconds_per_grad_step']:12.1f}", flush=True)
        if r["harl_settings"]:
            print(f"#   MADDPG at HARL's settings: {r['env_steps_per_s'] / HARL_MADDPG_STEPS_PER_S:.1f}x HARL's "
                  f"{HARL_MADDPG_STEPS_PER_S:.0f} env steps/s (quoted, not measured here)")
        if k == 1 and algo in ("maac", "mamd", "mamt"):
            hours = PAPER_MAAC_STEPS / r["env_steps_per_s"] / 3600
            print(f"#   a paper-length {algo.upper()} run (50,000 x 25 env steps) would take {hours:.1f} h at this rate")
    maac = {x["seeds"]: x for x in rows if x["algo"] == "maac" and not x["harl_settings"]}
    for r in rows:
        if r["algo"] != "maac" and not r["harl_settings"] and r["seeds"] in maac:
            m = maac[r["seeds"]]
            r["time_per_grad_step_vs_maac"] = m["grad_steps_per_s"] / r["grad_steps_per_s"]
            r["time_per_grad_step_alone_vs_maac"] = m["grad_only_steps_per_s"] / r["grad_only_steps_per_s"]
            r["cpu_per_grad_step_vs_maac"] = r["engine_cpu_seconds_per_grad_step"] / m["engine_cpu_seconds_per_grad_step"]
            r["cpu_per_grad_step_alone_vs_maac"] = (r["grad_only_cpu_seconds_per_grad_step"]
                                                    / m["grad_only_cpu_seconds_per_grad_step"])
            print(f"#   {r['algo']} K={r['seeds']}: wall time per gradient step {r['time_per_grad_step_vs_maac']:.2f}x MAAC's "
                  f"(engine), {r['time_per_grad_step_alone_vs_maac']:.2f}x (gradient steps alone); CPU time "
                  f"{r['cpu_per_grad_step_vs_maac']:.2f}x (engine), {r['cpu_per_grad_step_alone_vs_maac']:.2f}x (alone)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": info, "results": rows}, indent=1, default=float) + "\n")
    print(f"# written to {args.out}")
    return rows


if __name__ == "__main__":
    main()
