"""Training speed and learning curves on MPE simple_spread, for each algorithm and number of seeds.

For every algorithm and seed count K the script builds the algorithm at JaxMARL's IPPO-FF MPE
settings (16 envs x 128 steps per update, 4 epochs x 4 minibatches, 64-unit tanh MLPs, lr 2.5e-4
annealed, clip 0.2, entropy 0.01, grad norm 0.5), runs ``state = jit(vmap(init))(keys[K])`` and then
jitted chunks ``jit(vmap(lambda s: lax.scan(update, s, length=C)))`` until the step budget is spent,
and measures

- end-to-end rate: K * env steps / wall time from before ``init`` to the last chunk (compilation included);
- steady rate: K * env steps of the chunks after the first / their wall time (``block_until_ready``);
- the learning curve: mean episode return (nan-aware mean over seeds) against env steps per seed.

Env steps are steps of one (multi-agent) environment, as in JaxMARL's ``TOTAL_TIMESTEPS``.

**Against JaxMARL** (``--jaxmarl-repo PATH`` or ``JAXMARL_REPO``: a checkout of
https://github.com/FLAIROx/JaxMARL; without it this part is skipped with one printed line). In the same
invocation, after the per-algorithm table (``--compare-only`` skips that), JaxMARL's own IPPO-FF MPE
baseline runs **unchanged** (``baselines/IPPO/ippo_ff_mpe.py`` with its YAML config; the stubs for the
logging and config libraries it imports are in ``jaxmarl_baseline.py``), next to our ``ippo`` and
``mappo`` built as above. Every run is a fresh Python process (imports and compilation paid each
time) that reports the process start (before any import), the time its imports were done, a
timestamp per completed update, its end, env steps per update, K and the mean return per update:

- JaxMARL: ``NUM_SEEDS = K`` and ``TOTAL_TIMESTEPS`` = ``--total-steps`` (so that ``NUM_UPDATES``, the
  length of its single scan and of its learning-rate schedule, is right), run as its ``main`` does:
  ``jax.vmap(jax.jit(make_train(config)))(jax.random.split(PRNGKey(SEED), K))``. Its ``wandb.log``,
  called through ``io_callback`` every update, is called K times per update under vmap (once per
  seed, in order); every K calls make one update, timestamped at the last.
- ours: ``jit(vmap(lambda s: lax.scan(update, s, length=C)))`` chunks as above; every update of a chunk
  gets the chunk's end time. The return is ``episode_return_sum`` (the sum over agents, JaxMARL's scale).

From these: ``compile s`` = first update's timestamp - imports done (ours: the first chunk, so it
includes C updates; ``compile s, 1 update`` removes C - 1 updates at the steady rate), ``steady
steps/s`` = K x env steps per update x the updates after the first chunk (first update) / the time
between them, ``e2e s`` = end - process start (imports and compilation included). The contenders
alternate, so that adjacent runs see the same machine load: for each K in ``--seeds`` and each of
``--repeats`` rounds, ours-ippo, JaxMARL, ours-mappo; the ratios ours/JaxMARL are taken within a round.

Run from the repository root::

    .venv/bin/python benchmarks/bench_mpe.py --quick
    .venv/bin/python benchmarks/bench_mpe.py --algos mappo happo --seeds 1 8 --total-steps 1000000
    .venv/bin/python benchmarks/bench_mpe.py --jaxmarl-repo ../JaxMARL --compare-only   # 1M steps, K = 1, 8, 2 rounds
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from trustmarl.algos import make_algorithm
from trustmarl.algos.base import SEED_AXIS, init_seeds  # noqa: E402
from trustmarl.experiment.config import build_config, drop_unused  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import jaxmarl_baseline  # noqa: E402
from bench_env import machine_info  # noqa: E402
from jaxmarl_baseline import add_repo_argument, missing_files, print_result, run_fresh  # noqa: E402

ENV = "mpe/simple_spread"
ALGOS = ("mappo", "ippo", "jrppo", "happo", "hatrpo")
JAXMARL = "jaxmarl-ippo-ff"
ROUND = ("ours-ippo", JAXMARL, "ours-mappo")  # one round of the comparison: JaxMARL next to each of ours

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
JAXMARL_SPU = JAXMARL_MPE["algo.num_envs"] * JAXMARL_MPE["algo.rollout_len"]  # env steps per update
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
    add_repo_argument(p)  # enables the comparison with JaxMARL's IPPO-FF
    p.add_argument("--compare-only", action="store_true", help="only the JaxMARL comparison, no per-algorithm table")
    p.add_argument("--repeats", type=int, default=2, help="rounds (ours-ippo, JaxMARL, ours-mappo) per K")
    p.add_argument("--timeout", type=int, default=3600, help="seconds allowed to one process of the comparison")
    args = p.parse_args(argv)
    if args.total_steps is None:
        args.total_steps = 200_000 if args.quick else 1_000_000
    for name in ("chunk", "repeats", "timeout"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if min(args.seeds) < 1:
        p.error("--seeds: every seed count must be at least 1")
    if args.total_steps < 1:
        p.error("--total-steps must be at least 1")
    if args.compare_only and not args.jaxmarl_repo:
        p.error("--compare-only needs --jaxmarl-repo (or JAXMARL_REPO)")
    if args.jaxmarl_repo:
        if missing_files(args.jaxmarl_repo, JAXMARL):
            p.error(f"--jaxmarl-repo {args.jaxmarl_repo}: no {', '.join(missing_files(args.jaxmarl_repo, JAXMARL))}"
                    f" (expected a checkout of {jaxmarl_baseline.URL})")
        if args.total_steps < 2 * JAXMARL_SPU:  # JaxMARL needs 2 updates for a steady rate (ours: >= 2 chunks)
            p.error(f"--total-steps must be at least {2 * JAXMARL_SPU} with --jaxmarl-repo"
                    f" (two of JaxMARL's updates of {JAXMARL_SPU} env steps)")
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


def setup(algo_name: str, total_steps: int, chunk: int) -> tuple[Any, Any, int]:
    """The config, the algorithm and the number of chunks for ~``total_steps`` env steps per seed."""
    cfg = build_config(algo_name, ENV, overrides_for(algo_name), preset="jaxmarl")  # the JaxMARL-settings variant
    spu = cfg.algo.num_envs * cfg.algo.rollout_len
    n_chunks = max(2, round(total_steps / (spu * chunk)))  # >= 2 so that a steady-state chunk exists
    algo = make_algorithm(cfg, total_updates=n_chunks * chunk)
    assert algo.steps_per_update == spu, (algo.steps_per_update, spu)
    return cfg, algo, n_chunks


def train_chunks(algo, num_seeds: int, seed: int, chunk: int, n_chunks: int,
                 metric: str | tuple[str, ...], keep_state: bool = False) -> Iterator[Any]:
    """Init ``num_seeds`` vmapped seeds, then yield metric ``metric`` [K, C] of each chunk once it has finished
    (a tuple of names: a dict of them, with the training state under ``"state"`` if ``keep_state``)."""
    keys = jax.random.split(jax.random.PRNGKey(seed), num_seeds)
    state = init_seeds(algo, keys)
    # the seed vmap named as the library's training loops name it (uniform_over_seeds: shared branches stay branches)
    run_chunk = jax.jit(jax.vmap(lambda s: jax.lax.scan(lambda c, _: algo.update(c), s, None, length=chunk),
                                 axis_name=SEED_AXIS))
    for _ in range(n_chunks):
        state, metrics = run_chunk(state)
        if isinstance(metric, str):
            values = np.asarray(jax.device_get(metrics[metric]))  # device_get waits for the chunk
        else:
            values = {k: np.asarray(v) for k, v in jax.device_get({k: metrics[k] for k in metric}).items()}
            if keep_state:
                values["state"] = state
        jax.block_until_ready(state)
        yield values


def run_one(algo_name: str, num_seeds: int, total_steps: int, chunk: int, seed: int) -> dict[str, Any]:
    """Train ``num_seeds`` vmapped seeds of ``algo_name`` for ~``total_steps`` env steps each; time it."""
    load_before = os.getloadavg()[0]
    cfg, algo, n_chunks = setup(algo_name, total_steps, chunk)
    spu, total_updates = algo.steps_per_update, n_chunks * chunk
    t_start = time.perf_counter()
    returns, chunk_ends = [], []
    next_print = 0.1
    for i, ret in enumerate(train_chunks(algo, num_seeds, seed, chunk, n_chunks, "episode_return")):  # ret: [K, C]
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


# ----------------------------------------------------------------------------- ours vs JaxMARL


def train_fresh(t0: float, algo_name: str, num_seeds: int, total_steps: int, chunk: int, seed: int) -> None:
    """One of our contenders, in a fresh process started at ``t0`` (its imports are this module's); prints RESULT."""
    t_imports = time.time()
    _, algo, n_chunks = setup(algo_name, total_steps, chunk)
    update_times, returns = [], []
    for ret in train_chunks(algo, num_seeds, seed, chunk, n_chunks, "episode_return_sum"):  # sum over agents
        update_times += [time.time()] * chunk  # every update of the chunk ends when the chunk does
        returns += [float(x) for x in nanmean(ret, axis=0)]
    print_result({
        "t_start": t0, "t_imports": t_imports, "update_times": update_times, "t_end": time.time(),
        "steps_per_update": algo.steps_per_update, "num_seeds": num_seeds, "chunk": chunk, "returns": returns,
    })


def summarize(res: dict[str, Any]) -> dict[str, Any]:
    """Compile, steady and end-to-end figures of one fresh-process result (see the module docstring)."""
    k, spu, c, t = res["num_seeds"], res["steps_per_update"], res["chunk"], res["update_times"]
    steady_updates = len(t) - c  # after the first chunk (JaxMARL: c = 1, after the first update)
    steady_s = t[-1] - t[c - 1]
    compile_s = t[c - 1] - res["t_imports"]
    curve = np.asarray(res["returns"], dtype=float)
    return {
        "updates": len(t),
        "chunk": c,
        "steps_per_update": spu,
        "env_steps_per_seed": len(t) * spu,
        "imports_s": res["t_imports"] - res["t_start"],
        "compile_s": compile_s,
        "compile_s_1_update": compile_s - (c - 1) * steady_s / steady_updates,
        "steady_s": steady_s,
        "steady_steps_per_s": k * spu * steady_updates / steady_s,
        "e2e_s": res["t_end"] - res["t_start"],
        "final_return": float(nanmean(curve[-max(1, len(curve) // 10):])),
        "update_times_s": [x - res["t_start"] for x in t],
        "curve_mean_return": [float(x) for x in curve],
    }


def run_contender(name: str, num_seeds: int, repeat: int, args: argparse.Namespace) -> dict[str, Any]:
    """One fresh process of contender ``name`` (``ours-<algo>`` or JaxMARL) with K = ``num_seeds``; a table row."""
    load = os.getloadavg()[0]
    if name == JAXMARL:
        res = run_fresh(jaxmarl_baseline.__file__, "run_baseline", args.timeout, repo=str(args.jaxmarl_repo),
                        name=JAXMARL, num_seeds=num_seeds, total_timesteps=args.total_steps)
    else:
        res = run_fresh(__file__, "train_fresh", args.timeout, algo_name=name.removeprefix("ours-"),
                        num_seeds=num_seeds, total_steps=args.total_steps, chunk=args.chunk, seed=args.seed)
    row = {"contender": name, "num_seeds": num_seeds, "repeat": repeat, "load_before": load}
    return {**row, "error": res["error"]} if "error" in res else {**row, **summarize(res)}


RATIOS = (  # (key, label): ours / JaxMARL of these; steady > 1 and seconds < 1 mean ours is faster
    ("steady_steps_per_s", "steady steps/s"),
    ("compile_s", "compile s"),
    ("compile_s_1_update", "compile s, 1 update"),
    ("e2e_s", "e2e s"),
)


def comparison_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ours / JaxMARL within each round (K, repeat), i.e. between runs adjacent in time."""
    out = []
    for r in rows:
        if r["contender"] == JAXMARL or "error" in r:
            continue
        j = next((x for x in rows if x["contender"] == JAXMARL and x["num_seeds"] == r["num_seeds"]
                  and x["repeat"] == r["repeat"] and "error" not in x), None)
        if j is not None:
            out.append({"contender": r["contender"], "num_seeds": r["num_seeds"], "repeat": r["repeat"],
                         **{key: r[key] / j[key] for key, _ in RATIOS}})
    return out


def format_comparison(rows: list[dict[str, Any]], ratios: list[dict[str, Any]]) -> str:
    lines = [
        "| contender | K | repeat | env steps/seed | steady steps/s | compile s | compile s, 1 update | imports s"
        " | e2e s | final return (sum over agents) | load before |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            last = r["error"].strip().splitlines()[-1] if r["error"].strip() else "?"
            lines.append(f"| {r['contender']} | {r['num_seeds']} | {r['repeat']} | error: {last} | | | | | | | |")
            continue
        lines.append(
            f"| {r['contender']} | {r['num_seeds']} | {r['repeat']} | {r['env_steps_per_seed']:,}"
            f" | {r['steady_steps_per_s']:,.0f} | {r['compile_s']:.1f} | {r['compile_s_1_update']:.1f}"
            f" | {r['imports_s']:.1f} | {r['e2e_s']:.1f} | {r['final_return']:.1f} | {r['load_before']:.2f} |"
        )
    lines += ["", "ours/JaxMARL within each round (steady: > 1 = ours faster; seconds: < 1 = ours faster):"]
    for k in dict.fromkeys(x["num_seeds"] for x in ratios):
        for name in dict.fromkeys(x["contender"] for x in ratios):
            mine = [x for x in ratios if x["num_seeds"] == k and x["contender"] == name]
            for key, label in RATIOS:
                values = ", ".join(f"{x[key]:.2f} (repeat {x['repeat']})" for x in mine)
                lines.append(f"  {name}/JaxMARL {label} (K={k}): {values}")
    return "\n".join(lines)


def run_comparison(args: argparse.Namespace, report: dict[str, Any], write) -> None:
    """For each K and repeat, ours-ippo, JaxMARL, ours-mappo in fresh processes; fills ``report["comparison"]``."""
    rows: list[dict[str, Any]] = []
    report["comparison"] = {"round": list(ROUND), "rows": rows, "ratios": []}
    print(f"\n# ours vs JaxMARL IPPO-FF ({args.jaxmarl_repo}): {args.total_steps:,} env steps per seed, rounds of"
          f" {', '.join(ROUND)}, {args.repeats} per K, a fresh process each")
    for k in args.seeds:
        for rep in range(1, args.repeats + 1):
            for name in ROUND:
                row = run_contender(name, k, rep, args)
                rows.append(row)
                report["comparison"]["ratios"] = comparison_ratios(rows)
                write()  # after every row: an interrupted run keeps its results
                if "error" in row:
                    print(f"  K={k} repeat {rep} {name:>15}: error (see the JSON)", flush=True)
                else:
                    print(f"  K={k} repeat {rep} {name:>15}: steady {row['steady_steps_per_s']:9,.0f} steps/s"
                          f"  compile {row['compile_s']:5.1f} s  e2e {row['e2e_s']:6.1f} s"
                          f"  final return {row['final_return']:7.1f}", flush=True)
    print()
    print(format_comparison(rows, report["comparison"]["ratios"]))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    info = machine_info()
    print(f"# bench_mpe  backend={info['backend']}  cpus={info['cpu_count']}  total steps/seed={args.total_steps:,}"
          f"  load avg (1/5/15 min)={' '.join(f'{x:.2f}' for x in info['loadavg_1_5_15'])}")
    results: list[dict[str, Any]] = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"machine": info, "args": vars(args), "reference_not_measured": REFERENCE, "results": results}

    def write() -> None:
        out.write_text(json.dumps(report, indent=2))

    if not args.compare_only:
        for k in args.seeds:  # every algorithm at one seed count, then the next count
            for algo in args.algos:
                results.append(run_one(algo, k, args.total_steps, args.chunk, args.seed))
                add_ratios(results)
                write()  # after every row: an interrupted run keeps its results
        print()
        print(format_table(results))
    if args.jaxmarl_repo:
        run_comparison(args, report, write)
    else:
        print(f"\nJaxMARL comparison skipped: pass --jaxmarl-repo PATH (or set JAXMARL_REPO) to a checkout"
              f" ({jaxmarl_baseline.CLONE}) to also run its IPPO-FF MPE baseline.")
    write()
    print(f"\nwrote {out}")
    return report


if __name__ == "__main__":
    main()
