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
    .venv/bin/python benchmarks/bench_offpolicy.py --parts --algos maac mamt --env mpe/spread_2

``--parts`` instead times the parts of one gradient iteration, each jitted on its own, one seed, on one
batch from a filled buffer: the critic step, the actor step, the steps after the actors and the whole
``train_step``; for MAMT also its modelling-policy step, TRD-Net's fast step and the slow (delta) step. The
calls of all algorithms' parts are interleaved round by round (``--repeats`` rounds, medians), so every
part sees the same machine load; it prints wall and CPU milliseconds, XLA's FLOP count
(``cost_analysis``), the achieved GFLOP/s as a fraction of a plain chain of ``[batch, 128] x [128, 128]``
products on this machine (the ceiling the networks' layers can approach), and each algorithm's time per
iteration over MAAC's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

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
    p.add_argument("--parts", action="store_true", help="time the parts of one gradient iteration instead")
    p.add_argument("--repeats", type=int, default=30, help="--parts: interleaved rounds (medians)")
    p.add_argument("--train-only", action="store_true", help="--parts: the whole train_step only (compiles faster)")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON output (default benchmarks/results/bench_offpolicy.json, with --parts ..._parts.json)")
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


def dot_ceiling(rows: int, width: int = 128, repeats: int = 20) -> tuple[float, float]:
    """(wall, CPU) GFLOP/s of a chain of ``[rows, width] x [width, width]`` products with a LeakyReLU between
    (the kind of layer every network here is made of): the ceiling the gradient iteration can approach."""
    depth = 64
    x, w = jnp.ones((rows, width)) * 0.01, jnp.eye(width)
    f = jax.jit(lambda x, w: jax.lax.fori_loop(0, depth, lambda i, a: jax.nn.leaky_relu(a @ w, 0.01), x))
    wall, cpu = race({"dot": (f, (x, w))}, repeats)
    flop = 2.0 * rows * width * width * depth / 1e9
    return flop / wall["dot"], flop / cpu["dot"]


def race(fns: dict, repeats: int) -> tuple[dict, dict]:
    """Median wall and CPU seconds (all threads) of each jitted ``fn(*args)`` in ``fns[name] = (fn, args)``,
    the calls interleaved round by round, after one compiling call each."""
    for f, a in fns.values():
        jax.block_until_ready(f(*a))
    wall, cpu = {k: [] for k in fns}, {k: [] for k in fns}
    for _ in range(repeats):
        for k, (f, a) in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            jax.block_until_ready(f(*a))
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    return ({k: float(np.median(v)) for k, v in wall.items()}, {k: float(np.median(v)) for k, v in cpu.items()})


def part_fns(algo: str, env: str, buffer: int, train_only: bool = False) -> dict:
    """``{part: (jitted fn, args)}`` for one seed of ``algo``, on a batch from a buffer filled by a few updates."""
    cfg = build_config(algo, env, {"algo.learning_starts": 0, "algo.buffer_size": buffer})
    a = make_algorithm(cfg, total_updates=100)
    state = jax.jit(a.init)(jax.random.PRNGKey(0))
    update = jax.jit(a.update)
    for _ in range(3):
        state, _ = update(state)
    stats = replay.field_mean_std(state.buffer.steps, state.buffer.steps.data["reward"]) if a.cfg.reward_norm else None
    batch = jax.jit(a.sample_batch)(state.buffer, jax.random.PRNGKey(1), stats)
    key = jax.random.PRNGKey(2)
    after_critic, _ = jax.jit(a.critic_step)(state, batch, key)
    after_actor, terms, _ = jax.jit(a.actor_step)(after_critic, batch, key)
    if train_only:
        return {"train step": (jax.jit(a.train_step), (state, batch, key))}, a
    fns = {
        "critic step": (jax.jit(a.critic_step), (state, batch, key)),
        "actor step": (jax.jit(a.actor_step), (after_critic, batch, key)),
        "after actors": (jax.jit(a.after_actors), (after_actor, batch, terms, after_critic.actor_params, key)),
    }
    if hasattr(a, "fast_step"):  # MAMT's parts (Li et al. 2022, Algorithm 1's steps 5-10)
        from trustmarl.trust import radii

        coef = radii.coordination_coefficients(terms.q, terms.baseline)
        act = a.onehot(terms.actions)
        jstar = radii.tightest_teammate(coef)
        extra = after_actor.extra
        _, d_ns, _ = jax.jit(a.model_step)(extra, batch, terms, jstar)
        d_q = a.penalty_terms(terms).mean(0)
        fns["  modelling policies"] = (jax.jit(a.model_step), (extra, batch, terms, jstar))
        fns["  TRD-Net fast step"] = (jax.jit(a.fast_step), (extra, batch, act, coef, d_ns))
        fns["  delta slow step"] = (jax.jit(a.slow_step), (extra, batch, act, coef, d_q, True))
    fns["train step"] = (jax.jit(a.train_step), (state, batch, key))
    return fns, a


def parts(args) -> list[dict]:
    fns, flops, batch_size = {}, {}, None
    for algo in args.algos:
        f, a = part_fns(algo, args.env, args.buffer, args.train_only)
        batch_size = a.cfg.batch_size
        for name, (fn, fargs) in f.items():
            fns[(algo, name)] = (fn, fargs)
            cost = fn.lower(*fargs).compile().cost_analysis()
            cost = cost[0] if isinstance(cost, (list, tuple)) else cost
            flops[(algo, name)] = float(cost.get("flops", float("nan"))) / 1e9
    ceil_wall, ceil_cpu = dot_ceiling(batch_size)
    wall, cpu = race(fns, args.repeats)
    info = machine_info()
    print(f"# matrix-product ceiling ([{batch_size}, 128] x [128, 128] chain): {ceil_wall:.1f} GFLOP/s wall, "
          f"{ceil_cpu:.1f} GFLOP/s of CPU time; 1-min load after: {info['loadavg_1_5_15'][0]:.2f}")
    print(f"{'algo':6s} {'part':22s} {'wall ms':>8s} {'CPU ms':>8s} {'GFLOP':>7s} {'GFLOP/s':>8s} {'of ceiling':>10s}")
    rows = []
    for (algo, name) in fns:
        w, c, g = wall[(algo, name)], cpu[(algo, name)], flops[(algo, name)]
        rows.append({"algo": algo, "part": name.strip(), "wall_ms": 1e3 * w, "cpu_ms": 1e3 * c, "gflop": g,
                     "gflop_per_s": g / w, "fraction_of_ceiling": g / w / ceil_wall})
        print(f"{algo:6s} {name:22s} {1e3 * w:8.1f} {1e3 * c:8.1f} {g:7.3f} {g / w:8.1f} {g / w / ceil_wall:10.0%}")
    base = next((r for r in rows if r["algo"] == "maac" and r["part"] == "train step"), None)
    for r in rows:
        if base and r["part"] == "train step" and r["algo"] != "maac":
            r["vs_maac"] = {k: r[k] / base[k] for k in ("wall_ms", "cpu_ms", "gflop")}
            print(f"#   {r['algo']} train step / MAAC's: wall {r['vs_maac']['wall_ms']:.2f}x, CPU "
                  f"{r['vs_maac']['cpu_ms']:.2f}x, FLOPs {r['vs_maac']['gflop']:.2f}x")
    out = args.out or Path("benchmarks/results/bench_offpolicy_parts.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": info, "env": args.env, "repeats": args.repeats,
                               "ceiling_gflop_per_s": {"wall": ceil_wall, "cpu": ceil_cpu}, "results": rows},
                              indent=1, default=float) + "\n")
    print(f"# written to {out}")
    return rows


def main(argv=None):
    args = parse_args(argv)
    if args.parts:
        return parts(args)
    args.out = args.out or Path("benchmarks/results/bench_offpolicy.json")
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
