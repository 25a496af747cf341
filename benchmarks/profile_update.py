"""Where the time of one on-policy update goes, and what the speed work changed.

For an algorithm at JaxMARL's IPPO-FF MPE settings (the ``--preset jaxmarl`` variant, as
``bench_mpe.py``), each part of one update is jitted on its own and timed (median of ``--repeats``
calls, the parts' calls interleaved so all see the same machine load), with K = 1 seed and with K
vmapped seeds:

- ``rollout``: 128 steps of 16 envs (acting, env step, automatic reset, episode statistics);
- ``gae + batch``: value normalisation, GAE, advantage normalisation, flattening (``make_batch``);
- ``shuffle``: the per-epoch permutation and minibatch gathers alone;
- ``grad steps``: the policy and critic update without the trust-region diagnostics;
- ``diagnostics``: ``trust_region_diagnostics`` on the whole batch after the update;
- ``update``: the whole update as the training loop runs it (one jitted call; host callbacks: none,
  metrics leave the device once per chunk of updates).

For each part: milliseconds per update, share of the update, the matrix-product FLOPs (counted
from the network sizes) and the achieved GFLOP/s, next to the rate of a plain ``[1536, 64] x [64, 64]``
matrix product on this machine (the ceiling the gradient steps can approach). K seeds do K times the
FLOPs; on a 2-core CPU the parts that already run near that ceiling cannot go faster per seed.

``--ab`` instead races whole updates (jitted chunks of ``--chunk`` updates, interleaved, medians) of
the library as it is against versions with each speed change undone: JAX's rolled Threefry loop on
the CPU (``trustmarl.compilation``), JAX's own Dense weight gradient (``trustmarl.networks.dense``)
and unrolled epoch loops (``sgd_unroll``), and prints the ratios and compile times::

    .venv/bin/python benchmarks/profile_update.py                    # ippo, K = 1 and 8
    .venv/bin/python benchmarks/profile_update.py --algo mappo --seeds 1
    .venv/bin/python benchmarks/profile_update.py --ab --algo ippo --seeds 1 8
    .venv/bin/python benchmarks/profile_update.py --sequential --seeds 1   # HAPPO, HATRPO / MAPPO, non-shared

``--sequential`` races HAPPO and HATRPO against MAPPO, all three with separate per-agent parameters
(bench_mpe.py's settings for the sequential family: the critic trained 4 epochs x 4 minibatches).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_mpe import ENV, overrides_for  # noqa: E402

import trustmarl.networks as networks  # noqa: E402
from trustmarl.algos import algo_names, make_algorithm  # noqa: E402
from trustmarl.algos.on_policy.diagnostics import trust_region_diagnostics  # noqa: E402
from trustmarl.compilation import straight_line_threefry  # noqa: E402
from trustmarl.experiment.config import build_config  # noqa: E402

ON_POLICY = ("mappo", "ippo", "jrppo", "happo", "hatrpo")


def build(algo_name: str, extra: dict | None = None):
    overrides = {**overrides_for(algo_name), **(extra or {})}
    cfg = build_config(algo_name, ENV, overrides, preset="jaxmarl")
    return cfg, make_algorithm(cfg, total_updates=1000)


def matmul_gflop(algo, state) -> dict[str, float]:
    """Matrix-product GFLOP of each part for one seed, counted from the Dense kernels (XLA's own
    count sees a loop body once). A kernel ``[in, out]`` costs ``2 in out`` per row; a shared actor
    or per-agent critic sees ``n_agents`` rows per sample, a stacked one its own agent's row; the
    backward pass costs twice the forward pass."""
    one = jax.tree.map(lambda x: x[0], state)  # the first seed

    def per_sample(params, rows: int) -> float:
        kernels = [x for path, x in jax.tree_util.tree_flatten_with_path(params)[0] if "kernel" in jax.tree_util.keystr(path)]
        return sum(2.0 * k.size * rows for k in kernels)

    actor = sum(per_sample(p, 1 if algo.stacked(g) else algo.groups[g].n) for g, p in enumerate(one.actor_params))
    if algo.cfg.critic == "state":
        critic = per_sample(one.critic_params, 1)
    else:
        critic = sum(per_sample(p, 1 if algo.stacked(g) else algo.groups[g].n) for g, p in enumerate(one.critic_params))
    samples = algo.cfg.num_envs * algo.cfg.rollout_len
    epochs = algo.cfg.epochs
    critic_epochs = getattr(algo.cfg, "critic_epochs", None) or epochs
    grad = samples * 3 * (actor * epochs + critic * critic_epochs)
    critic_calls = 2 if algo.cfg.bootstrap_truncation else 1  # V(final obs) at time limits
    return {"rollout": samples * (actor + critic * critic_calls) / 1e9, "grad steps": grad / 1e9,
            "diagnostics": samples * actor / 1e9, "gae + batch": algo.cfg.num_envs * critic / 1e9, "shuffle": 0.0}


def race(fns: dict, args: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each jitted ``fns[k](*args[k])``, calls interleaved across ``fns``."""
    for k, f in fns.items():
        jax.block_until_ready(f(*args[k]))
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t = time.perf_counter()
            jax.block_until_ready(f(*args[k]))
            times[k].append(time.perf_counter() - t)
    return {k: float(np.median(v)) for k, v in times.items()}


def dot_ceiling(repeats: int = 20) -> float:
    """GFLOP/s of a chain of ``[1536, 64] x [64, 64]`` products (the gradient steps' largest kind)."""
    r = 64
    x, w = jnp.ones((1536, 64)) * 0.01, jnp.eye(64)
    f = jax.jit(lambda x, w: jax.lax.fori_loop(0, r, lambda i, a: jnp.tanh(a @ w), x))
    t = race({"dot": f}, {"dot": (x, w)}, repeats)["dot"]
    return 2 * 1536 * 64 * 64 * r / t / 1e9


def breakdown(algo_name: str, num_seeds: int, repeats: int) -> list[dict]:
    _, algo = build(algo_name)
    keys = jax.random.split(jax.random.PRNGKey(0), num_seeds)
    v = jax.vmap
    state = jax.jit(v(algo.init))(keys)
    state, traj, _ = jax.jit(v(algo.rollout))(state)
    state, batch = jax.jit(v(algo.make_batch))(state, traj)
    cfg = algo.cfg

    def grad_steps(s, bt):  # learn_batch without the diagnostics
        import trustmarl.algos.on_policy.diagnostics as diag

        saved = diag.trust_region_diagnostics
        mods = [sys.modules[type(algo).__module__]]
        for m in mods:
            if hasattr(m, "trust_region_diagnostics"):
                m.trust_region_diagnostics = lambda *a, **k: {}
        try:
            return algo.learn_batch(s, bt)  # state and metrics: nothing is dead code
        finally:
            for m in mods:
                if hasattr(m, "trust_region_diagnostics"):
                    m.trust_region_diagnostics = saved

    def shuffle(s, bt):
        n = jax.tree.leaves(bt)[0].shape[0]
        outs = []
        for k in jax.random.split(s.key, cfg.epochs):
            perm = jnp.argsort(jax.random.uniform(k, (n,)))
            outs.append(jax.tree.map(lambda x: x[perm].reshape((cfg.minibatches, n // cfg.minibatches) + x.shape[1:]), bt))
        return outs

    parts = {
        "rollout": (v(algo.rollout), (state,)),
        "gae + batch": (v(algo.make_batch), (state, traj)),
        "shuffle": (v(shuffle), (state, batch)),
        "grad steps": (v(grad_steps), (state, batch)),
        "diagnostics": (v(lambda s, bt: trust_region_diagnostics(algo, s.actor_params, bt)), (state, batch)),
        "update": (v(lambda s: algo.update(s)), (state,)),
    }
    fns = {k: jax.jit(f) for k, (f, _) in parts.items()}
    times = race(fns, {k: a for k, (_, a) in parts.items()}, repeats)
    gflop = matmul_gflop(algo, state)
    gflop["update"] = sum(gflop.values())
    rows = []
    for k in parts:
        fl = gflop[k] * 1e9 * num_seeds
        rows.append({"part": k, "seeds": num_seeds, "ms": times[k] * 1e3, "share": times[k] / times["update"],
                     "gflop": fl / 1e9, "gflops": fl / times[k] / 1e9})
    return rows


def ab(algo_name: str, num_seeds: int, chunk: int, repeats: int) -> list[dict]:
    """Whole updates: the library as it is against each speed change undone (interleaved chunks)."""
    fast_dense = networks.dense
    plain_dense = lambda x, kernel, bias: x @ kernel + bias  # noqa: E731  JAX's own gradient rule
    variants = [  # name, straight-line threefry, dense, extra overrides
        ("as it is", True, fast_dense, {}),
        ("rolled Threefry loop", False, fast_dense, {}),
        ("JAX's Dense gradient", True, plain_dense, {}),
        ("both undone", False, plain_dense, {}),
        ("both undone + sgd_unroll", False, plain_dense, {"algo.sgd_unroll": True}),
    ]
    keys = jax.random.split(jax.random.PRNGKey(0), num_seeds)
    fns, args, compile_s, spu = {}, {}, {}, 0
    try:
        for name, straight, dense_fn, extra in variants:
            straight_line_threefry(straight)
            networks.dense = dense_fn
            cfg, algo = build(algo_name, extra)
            spu = num_seeds * cfg.algo.num_envs * cfg.algo.rollout_len * chunk
            state = jax.jit(jax.vmap(algo.init))(keys)
            run = jax.jit(jax.vmap(lambda s, algo=algo: jax.lax.scan(lambda c, _: algo.update(c), s, None, length=chunk)))  # metrics kept: no dead code
            t = time.perf_counter()
            fns[name] = run.lower(state).compile()
            compile_s[name] = time.perf_counter() - t
            args[name] = (state,)
    finally:
        straight_line_threefry(True)
        networks.dense = fast_dense
    times = race(fns, args, repeats)
    base = spu / times["as it is"]
    return [{"variant": k, "seeds": num_seeds, "steps_per_s": spu / t, "vs_as_it_is": spu / t / base,
             "compile_s": compile_s[k]} for k, t in times.items()]


def sequential(num_seeds: int, chunk: int, repeats: int) -> list[dict]:
    """HAPPO and HATRPO against MAPPO, all with separate per-agent parameters (interleaved chunks)."""
    from bench_mpe import SEQUENTIAL_EXTRA

    keys = jax.random.split(jax.random.PRNGKey(0), num_seeds)
    fns, args, spu = {}, {}, 0
    for name in ("mappo", "happo", "hatrpo"):
        cfg, algo = build(name, SEQUENTIAL_EXTRA if name != "mappo" else {"algo.share_params": False})
        spu = num_seeds * cfg.algo.num_envs * cfg.algo.rollout_len * chunk
        state = jax.jit(jax.vmap(algo.init))(keys)
        fns[name] = jax.jit(jax.vmap(lambda s, algo=algo: jax.lax.scan(lambda c, _: algo.update(c), s, None, length=chunk)))  # metrics kept: no dead code
        args[name] = (state,)
    times = race(fns, args, repeats)
    return [{"variant": f"{k}, non-shared", "seeds": num_seeds, "steps_per_s": spu / t,
             "vs_mappo": times["mappo"] / t} for k, t in times.items()]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algo", default="ippo", choices=ON_POLICY)
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 8])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--chunk", type=int, default=5, help="updates per timed call with --ab")
    p.add_argument("--ab", action="store_true", help="race whole updates against the speed changes undone")
    p.add_argument("--sequential", action="store_true", help="race HAPPO and HATRPO against MAPPO, non-shared")
    p.add_argument("--out", default=None, help="JSON file (default benchmarks/results/profile_update[_ab].json)")
    args = p.parse_args(argv)
    if any(k < 1 for k in args.seeds):
        p.error(f"--seeds {args.seeds}: seed counts must be >= 1")
    algo_names()  # registers the algorithms (and trustmarl's CPU lowering)
    out = {"algo": args.algo, "load_before": os.getloadavg()[0], "jax": jax.__version__}
    if args.sequential:
        rows = [r for k in args.seeds for r in sequential(k, args.chunk, args.repeats)]
        print("| algorithm | seeds | steps/s | vs non-shared MAPPO |\n|---|---:|---:|---:|")
        for r in rows:
            print(f"| {r['variant']} | {r['seeds']} | {r['steps_per_s']:,.0f} | {r['vs_mappo']:.2f}x |")
    elif args.ab:
        rows = [r for k in args.seeds for r in ab(args.algo, k, args.chunk, args.repeats)]
        print(f"| {args.algo}: variant | seeds | steps/s | vs as it is | compile s |\n|---|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['variant']} | {r['seeds']} | {r['steps_per_s']:,.0f} | {r['vs_as_it_is']:.2f}x | {r['compile_s']:.1f} |")
    else:
        ceiling = dot_ceiling()
        rows = [r for k in args.seeds for r in breakdown(args.algo, k, args.repeats)]
        print(f"| {args.algo}: part | seeds | ms / update | share | matmul GFLOP | GFLOP/s |\n|---|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['part']} | {r['seeds']} | {r['ms']:.1f} | {r['share']:.0%} | {r['gflop']:.3f} | {r['gflops']:.0f} |")
        print(f"\n[1536, 64] x [64, 64] matrix products on this machine: {ceiling:.0f} GFLOP/s")
        out["dot_ceiling_gflops"] = ceiling
    out["rows"] = rows
    path = Path(args.out or ROOT / "benchmarks" / "results" / f"profile_update{'_ab' if args.ab else '_sequential' if args.sequential else ''}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()
