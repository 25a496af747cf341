"""Raw environment step rate: trustmarl's ``mpe/simple_spread`` against JaxMARL's ``MPE_simple_spread_v3``.

For each batch size E, ``jit(lax.scan(vmap(step), length=L))`` runs L steps of E environments with
uniformly random discrete actions (both environments auto-reset at the end of an episode, 25 steps
by default). The first call compiles and is not timed; the rate is ``E * L / best of R timed calls``.
The same action draws (``randint(0, 5)`` per agent) feed both environments, so the ratio compares
only the environment code. Run from the repository root::

    .venv/bin/python benchmarks/bench_env.py                      # E = 16, 1024, 8192
    .venv/bin/python benchmarks/bench_env.py --num-envs 16 1024 --out benchmarks/results/env.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

N_ACTIONS = 5  # simple_spread's discrete actions: no-op, left, right, down, up


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num-envs", type=int, nargs="+", default=[16, 1024, 8192], help="batch sizes E")
    p.add_argument("--scan-len", type=int, default=100, help="steps L per jitted call")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per batch size (the best is reported)")
    p.add_argument("--n-agents", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-jaxmarl", action="store_true", help="measure only trustmarl's environment")
    p.add_argument("--out", type=str, default="benchmarks/results/bench_env.json")
    return p.parse_args(argv)


# ---- step loops --------------------------------------------------------------------------------

def ours_runner(n_agents: int, num_envs: int, scan_len: int) -> tuple[Callable, Any]:
    """A jitted L-step rollout of trustmarl's simple_spread and its initial carry."""
    from trustmarl.envs.registry import make
    import trustmarl.envs.mpe  # noqa: F401  (registers mpe/simple_spread)

    env = make("mpe/simple_spread", n_agents=n_agents)
    step = jax.vmap(env.step)

    def body(carry, _):
        key, state = carry
        key, k_act, k_step = jax.random.split(key, 3)
        acts = jax.random.randint(k_act, (num_envs, env.n_agents), 0, N_ACTIONS, dtype=jnp.int32)
        state, ts = step(jax.random.split(k_step, num_envs), state, (acts,))
        return (key, state), ts.reward.sum()

    @jax.jit
    def run(carry):
        carry, rewards = jax.lax.scan(body, carry, None, length=scan_len)
        return carry, rewards.sum()

    key = jax.random.PRNGKey(0)
    state, _ = jax.vmap(env.reset)(jax.random.split(key, num_envs))
    return run, (key, state)


def theirs_runner(n_agents: int, num_envs: int, scan_len: int) -> tuple[Callable, Any]:
    """A jitted L-step rollout of JaxMARL's MPE_simple_spread_v3 (raises ImportError without jaxmarl)."""
    import jaxmarl

    env = jaxmarl.make("MPE_simple_spread_v3", num_agents=n_agents)
    agents = list(env.agents)
    step = jax.vmap(env.step)

    def body(carry, _):
        key, state = carry
        key, k_act, k_step = jax.random.split(key, 3)
        acts = jax.random.randint(k_act, (num_envs, len(agents)), 0, N_ACTIONS, dtype=jnp.int32)
        actions = {a: acts[:, i] for i, a in enumerate(agents)}
        _, state, reward, _, _ = step(jax.random.split(k_step, num_envs), state, actions)
        return (key, state), sum(r.sum() for r in reward.values())

    @jax.jit
    def run(carry):
        carry, rewards = jax.lax.scan(body, carry, None, length=scan_len)
        return carry, rewards.sum()

    key = jax.random.PRNGKey(0)
    _, state = jax.vmap(env.reset)(jax.random.split(key, num_envs))
    return run, (key, state)


# ---- timing ------------------------------------------------------------------------------------

def time_runner(run: Callable, carry: Any, steps_per_call: int, repeats: int) -> dict[str, float]:
    """Compile (untimed for the rate), then the best of ``repeats`` calls in env steps per second."""
    t0 = time.perf_counter()
    carry, out = run(carry)
    jax.block_until_ready(out)
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        carry, out = run(carry)
        jax.block_until_ready((carry, out))
        times.append(time.perf_counter() - t0)
    best = min(times)
    return {
        "compile_and_first_call_s": compile_s,
        "best_call_s": best,
        "median_call_s": sorted(times)[len(times) // 2],
        "steps_per_s": steps_per_call / best,
        "steps_per_s_median": steps_per_call / sorted(times)[len(times) // 2],
    }


def machine_info() -> dict[str, Any]:
    return {
        "loadavg_1_5_15": list(os.getloadavg()),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "python": platform.python_version(),
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    info = machine_info()
    print(f"# bench_env  backend={info['backend']}  cpus={info['cpu_count']}  "
          f"load avg (1/5/15 min)={' '.join(f'{x:.2f}' for x in info['loadavg_1_5_15'])}")
    have_jaxmarl = False
    if not args.skip_jaxmarl:
        try:
            import jaxmarl  # noqa: F401

            have_jaxmarl = True
        except Exception as e:  # ImportError, or a broken install
            print(f"# jaxmarl is not importable ({type(e).__name__}: {e}); measuring trustmarl only")
    results = []
    for num_envs in args.num_envs:
        steps = num_envs * args.scan_len
        row: dict[str, Any] = {"num_envs": num_envs, "scan_len": args.scan_len, "loadavg_1min": os.getloadavg()[0]}
        row["ours"] = time_runner(*ours_runner(args.n_agents, num_envs, args.scan_len), steps, args.repeats)
        if have_jaxmarl:
            row["jaxmarl"] = time_runner(*theirs_runner(args.n_agents, num_envs, args.scan_len), steps, args.repeats)
            row["ratio_ours_over_jaxmarl"] = row["ours"]["steps_per_s"] / row["jaxmarl"]["steps_per_s"]
        results.append(row)
        print(format_row(row), flush=True)
    print()
    print(format_table(results))
    report = {"machine": info, "args": vars(args), "results": results}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out}")
    return report


def format_row(row: dict[str, Any]) -> str:
    s = f"E={row['num_envs']:>6}  ours {row['ours']['steps_per_s']:>12,.0f} steps/s"
    if "jaxmarl" in row:
        s += f"  jaxmarl {row['jaxmarl']['steps_per_s']:>12,.0f} steps/s  ratio {row['ratio_ours_over_jaxmarl']:.2f}"
    return s + f"  (load {row['loadavg_1min']:.2f})"


def format_table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| envs | trustmarl steps/s | JaxMARL steps/s | ours / JaxMARL | load avg (1 min) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        theirs = f"{r['jaxmarl']['steps_per_s']:,.0f}" if "jaxmarl" in r else "n/a"
        ratio = f"{r['ratio_ours_over_jaxmarl']:.2f}" if "jaxmarl" in r else "n/a"
        lines.append(f"| {r['num_envs']} | {r['ours']['steps_per_s']:,.0f} | {theirs} | {ratio} | {r['loadavg_1min']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
