"""Raw environment step rate of trustmarl's particle scenarios (``mpe/*``) next to JaxMARL's versions.

For each scenario and batch size E, ``jit(lax.scan(vmap(step), length=L))`` runs L steps of E
environments with uniformly random actions (both libraries auto-reset at the end of an episode). The
first call compiles and is not timed; then the two libraries' calls **alternate** (R timed calls each),
so both see the same machine load, and the rate is ``E * L / best call``. Actions are drawn the same
way for both (uniform integers per agent in the agent's action count; uniform in [0, 1] for continuous
actions), so the ratio compares only the environment code.

Scenarios and their JaxMARL counterparts (same defaults; ``--envs`` picks some):

    simple_spread (MPE_simple_spread_v3), simple (MPE_simple_v3), simple_reference, simple_speaker_listener
    (v4), simple_push, simple_adversary, simple_tag, simple_crypto, simple_world_comm (continuous actions
    on both sides: JaxMARL implements only those for it), rover_tower and treasure_collection (no
    JaxMARL version).

``--baseline-rev REV`` also times ``mpe/simple_spread`` as it was at git revision ``REV`` (before the
particle core, ``trustmarl/envs/mpe.py``), alternating with today's, to show the core costs nothing.
Run from the repository root::

    .venv/bin/python benchmarks/bench_env.py                                   # everything, E = 16, 1024, 8192
    .venv/bin/python benchmarks/bench_env.py --envs simple_spread simple_tag --num-envs 1024 --repeats 3
    .venv/bin/python benchmarks/bench_env.py --envs simple_spread --baseline-rev 59abe61
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

# our scenario -> (our hyperparameters, JaxMARL name or None, JaxMARL kwargs)
SCENARIOS: dict[str, tuple[dict, str | None, dict]] = {
    "simple_spread": ({}, "MPE_simple_spread_v3", {}),
    "simple": ({}, "MPE_simple_v3", {}),
    "simple_reference": ({}, "MPE_simple_reference_v3", {}),
    "simple_speaker_listener": ({}, "MPE_simple_speaker_listener_v4", {}),
    "simple_push": ({}, "MPE_simple_push_v3", {}),
    "simple_adversary": ({}, "MPE_simple_adversary_v3", {}),
    "simple_tag": ({}, "MPE_simple_tag_v3", {}),
    "simple_crypto": ({}, "MPE_simple_crypto_v3", {}),
    "simple_world_comm": ({"continuous_actions": True}, "MPE_simple_world_comm_v3", {}),
    "rover_tower": ({}, None, {}),
    "treasure_collection": ({}, None, {}),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--envs", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    p.add_argument("--num-envs", type=int, nargs="+", default=[16, 1024, 8192], help="batch sizes E")
    p.add_argument("--scan-len", type=int, default=100, help="steps L per jitted call")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per batch size and library (best is reported)")
    p.add_argument("--skip-jaxmarl", action="store_true", help="measure only trustmarl's environments")
    p.add_argument("--baseline-rev", default=None, help="also time mpe/simple_spread at this git revision")
    p.add_argument("--out", type=str, default="benchmarks/results/bench_env.json")
    return p.parse_args(argv)


# ---- environments -------------------------------------------------------------------------------

def _uniform_actions(key, specs: list[tuple[int, int | None, int | None]], num_envs: int) -> list:
    """Random actions per entry ``(count, n_discrete or None, box_dim or None)``: ``[E, count]`` int32 or
    ``[E, count, dim]`` float32 in [0, 1]."""
    out = []
    for k, (count, n, dim) in zip(jax.random.split(key, len(specs)), specs):
        if n is not None:
            out.append(jax.random.randint(k, (num_envs, count), 0, n, dtype=jnp.int32))
        else:
            out.append(jax.random.uniform(k, (num_envs, count, dim)))
    return out


def _scan_runner(reset: Callable, step_fn: Callable, num_envs: int, scan_len: int) -> tuple[Callable, Any]:
    """A jitted L-step rollout ``run(carry) -> (carry, reward sum)`` and its initial carry."""

    def body(carry, _):
        key, state = carry
        key, k_act, k_step = jax.random.split(key, 3)
        state, reward = step_fn(k_act, jax.random.split(k_step, num_envs), state)
        return (key, state), reward

    @jax.jit
    def run(carry):
        carry, rewards = jax.lax.scan(body, carry, None, length=scan_len)
        return carry, rewards.sum()

    key = jax.random.PRNGKey(0)
    state = jax.jit(jax.vmap(reset))(jax.random.split(key, num_envs))
    return run, (key, state)


def ours_runner(env, num_envs: int, scan_len: int) -> tuple[Callable, Any]:
    """trustmarl: ``vmap(env.step)`` with random actions per group."""
    from trustmarl.envs.base import Discrete

    specs = [(g.n, g.action_space.n, None) if isinstance(g.action_space, Discrete) else (g.n, None, g.action_space.dim)
             for g in env.groups]
    step = jax.vmap(env.step)

    def step_fn(k_act, keys, state):
        state, ts = step(keys, state, tuple(_uniform_actions(k_act, specs, num_envs)))
        return state, ts.reward.sum()

    return _scan_runner(lambda k: env.reset(k)[0], step_fn, num_envs, scan_len)


def theirs_runner(name: str, kwargs: dict, num_envs: int, scan_len: int) -> tuple[Callable, Any]:
    """JaxMARL: ``vmap(env.step)`` (with its auto-reset) with random actions per agent."""
    import jaxmarl

    env = jaxmarl.make(name, **kwargs)
    agents = list(env.agents)
    specs = []
    for a in agents:
        sp = env.action_space(a)
        specs.append((1, int(sp.n), None) if hasattr(sp, "n") else (1, None, int(sp.shape[0])))
    step = jax.vmap(env.step)

    def step_fn(k_act, keys, state):
        acts = _uniform_actions(k_act, specs, num_envs)
        actions = {a: x[:, 0] for a, x in zip(agents, acts)}
        _, state, reward, _, _ = step(keys, state, actions)
        return state, sum(r.sum() for r in reward.values())

    return _scan_runner(lambda k: env.reset(k)[1], step_fn, num_envs, scan_len)


def baseline_spread(rev: str):
    """``SimpleSpread()`` as it was at git revision ``rev`` (its single-file ``trustmarl/envs/mpe.py``)."""
    import trustmarl.envs.registry as registry

    try:
        source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:trustmarl/envs/mpe.py"], check=True,
                                capture_output=True, text=True).stdout
    except subprocess.CalledProcessError as err:
        raise SystemExit(f"--baseline-rev {rev}: no trustmarl/envs/mpe.py there ({err.stderr.strip()})") from err
    path = Path(tempfile.mkdtemp()) / "baseline_mpe.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_mpe", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_mpe"] = module
    register, registry.register = registry.register, lambda *a, **k: None  # the name is taken by today's
    try:
        spec.loader.exec_module(module)
    finally:
        registry.register = register
    return module.SimpleSpread()


# ---- timing ------------------------------------------------------------------------------------

def time_alternating(runners: dict[str, tuple[Callable, Any]], steps_per_call: int, repeats: int) -> dict[str, dict]:
    """Compile every runner (untimed), then time them in turns, ``repeats`` calls each; best call wins."""
    out, carries = {}, {}
    for name, (run, carry) in runners.items():
        t0 = time.perf_counter()
        carry, r = run(carry)
        jax.block_until_ready(r)
        carries[name] = carry
        out[name] = {"compile_and_first_call_s": time.perf_counter() - t0, "times": []}
    for _ in range(repeats):
        for name, (run, _) in runners.items():
            t0 = time.perf_counter()
            carries[name], r = run(carries[name])
            jax.block_until_ready((carries[name], r))
            out[name]["times"].append(time.perf_counter() - t0)
    for res in out.values():
        res["best_call_s"] = min(res["times"])
        res["steps_per_s"] = steps_per_call / res["best_call_s"]
    return out


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
    from trustmarl.envs.registry import make
    import trustmarl.envs  # noqa: F401  (registers the mpe/* scenarios)

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
    baseline = baseline_spread(args.baseline_rev) if args.baseline_rev else None
    results = []
    for scenario in args.envs:
        ours_kwargs, their_name, their_kwargs = SCENARIOS[scenario]
        env = make(f"mpe/{scenario}", **ours_kwargs)
        for num_envs in args.num_envs:
            steps = num_envs * args.scan_len
            runners = {"ours": ours_runner(env, num_envs, args.scan_len)}
            if have_jaxmarl and their_name:
                runners["jaxmarl"] = theirs_runner(their_name, their_kwargs, num_envs, args.scan_len)
            if baseline is not None and scenario == "simple_spread":
                runners["baseline"] = ours_runner(baseline, num_envs, args.scan_len)
            load = os.getloadavg()[0]
            timed = time_alternating(runners, steps, args.repeats)
            row: dict[str, Any] = {"env": scenario, "num_envs": num_envs, "scan_len": args.scan_len,
                                   "loadavg_1min": load, **timed}
            if "jaxmarl" in timed:
                row["ratio_ours_over_jaxmarl"] = timed["ours"]["steps_per_s"] / timed["jaxmarl"]["steps_per_s"]
            if "baseline" in timed:
                row["ratio_ours_over_baseline"] = timed["ours"]["steps_per_s"] / timed["baseline"]["steps_per_s"]
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
    s = f"{row['env']:<24} E={row['num_envs']:>5}  ours {row['ours']['steps_per_s']:>11,.0f}/s"
    if "jaxmarl" in row:
        s += f"  jaxmarl {row['jaxmarl']['steps_per_s']:>11,.0f}/s  ratio {row['ratio_ours_over_jaxmarl']:.2f}"
    if "baseline" in row:
        s += f"  baseline {row['baseline']['steps_per_s']:>11,.0f}/s  ours/baseline {row['ratio_ours_over_baseline']:.2f}"
    return s + f"  (load {row['loadavg_1min']:.2f})"


def format_table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| scenario | envs | trustmarl steps/s | JaxMARL steps/s | ours / JaxMARL | load avg (1 min) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        theirs = f"{r['jaxmarl']['steps_per_s']:,.0f}" if "jaxmarl" in r else "n/a"
        ratio = f"{r['ratio_ours_over_jaxmarl']:.2f}" if "jaxmarl" in r else "n/a"
        lines.append(f"| {r['env']} | {r['num_envs']} | {r['ours']['steps_per_s']:,.0f} | {theirs} | {ratio} | "
                     f"{r['loadavg_1min']:.2f} |")
    if any("baseline" in r for r in results):
        lines += ["", "| simple_spread | envs | today steps/s | baseline steps/s | today / baseline |",
                  "|---|---:|---:|---:|---:|"]
        for r in results:
            if "baseline" in r:
                lines.append(f"| {r['env']} | {r['num_envs']} | {r['ours']['steps_per_s']:,.0f} | "
                             f"{r['baseline']['steps_per_s']:,.0f} | {r['ratio_ours_over_baseline']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
