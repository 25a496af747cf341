"""Cost of decentralisation: F2A2-SAC vs MAAC and F2A2-COMA vs COMA per update on Rover-Tower (1 seed).

For each pair at the packaged Rover-Tower settings (MAAC's: 12 env copies, 4 gradient steps of batch
1024 per update; COMA's: 1024 env steps per update), the script compiles one update, fills the buffer
past ``learning_starts`` (off-policy), then times ``--updates`` updates and prints seconds per update
and the ratio decentralised / centralised, measured in one run. Expected (our estimate): F2A2-SAC with
one critic and no teammate model costs about n = 8 times MAAC's update (every copy evaluates the whole
attention critic), twin critics about twice that; F2A2-COMA about 1x COMA (a copy reads only its
agent's samples). Run from the repository root::

    .venv/bin/python benchmarks/bench_f2a2.py --updates 5
    .venv/bin/python benchmarks/bench_f2a2.py --pairs coma --updates 3 --hidden 64
    .venv/bin/python benchmarks/bench_f2a2.py --pairs moa --env mpe/simple_spread --updates 5

``--pairs moa``: F2A2-SAC (one critic) with the paper's teammate models (``moa_model=paper``: character and
mental GRUs, natural and impromptu heads, their own batches) against the simple one-layer model and
against the true policies (``moa=false``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from trustmarl.algos import make_algorithm  # noqa: E402
from trustmarl.experiment.config import build_config  # noqa: E402

PAIRS = {"sac": ("maac", "f2a2_sac", {"algo.n_critics": 1}), "coma": ("coma", "f2a2_coma", {}), "moa": ("f2a2_sac", "f2a2_sac", {})}
MOA = {"algo.n_critics": 1, "algo.moa": True}  # --pairs moa: the settings compared (paper vs simple vs none)


def seconds_per_update(algo: str, env: str, overrides: dict, updates: int) -> float:
    a = make_algorithm(build_config(algo, env, overrides), total_updates=updates + 20)
    state = jax.jit(a.init)(jax.random.PRNGKey(0))
    update = jax.jit(a.update)
    fill = 1
    if hasattr(a.cfg, "learning_starts"):
        fill = max(1, -(-a.cfg.learning_starts // a.steps_per_update)) + 1
    for _ in range(fill):  # compilation and (off-policy) a buffer past learning_starts
        state, m = update(state)
    jax.block_until_ready(state)
    t = time.perf_counter()
    for _ in range(updates):
        state, m = update(state)
    jax.block_until_ready(state)
    return (time.perf_counter() - t) / updates


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    p.add_argument("--env", default="mpe/rover_tower")
    p.add_argument("--updates", type=int, default=5)
    p.add_argument("--hidden", type=int, default=0, help="network width (0: the presets')")
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    rows = []
    for name in args.pairs:
        central, dec, extra = PAIRS[name]
        over = {"algo.hidden_sizes": [args.hidden, args.hidden]} if args.hidden else {}
        if name == "moa":
            t = {}
            for m, extra in (("paper", {"algo.moa_model": "paper"}), ("simple", {}), ("none", {"algo.moa": False})):
                t[m] = seconds_per_update("f2a2_sac", args.env, {**over, **MOA, **extra}, args.updates)
                print(f"f2a2_sac moa {m}: {t[m]:.3f} s/update", flush=True)
            rows.append({"pair": "f2a2_sac moa paper / simple / none", **{f"{k}_s": v for k, v in t.items()},
                         "paper_over_simple": t["paper"] / t["simple"], "paper_over_none": t["paper"] / t["none"]})
            print(f"f2a2_sac moa paper {t['paper']:.3f}, simple {t['simple']:.3f}, none {t['none']:.3f} s/update: "
                  f"paper/simple {t['paper'] / t['simple']:.2f}, paper/none {t['paper'] / t['none']:.2f}", flush=True)
            continue
        tc = seconds_per_update(central, args.env, over, args.updates)
        td = seconds_per_update(dec, args.env, {**over, **extra}, args.updates)
        rows.append({"pair": f"{dec} / {central}", "central_s": tc, "decentralised_s": td, "ratio": td / tc})
        print(f"{dec} {td:.3f} s/update, {central} {tc:.3f} s/update: ratio {td / tc:.2f}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
