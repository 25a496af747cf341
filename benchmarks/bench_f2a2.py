"""Cost of decentralisation: F2A2-SAC vs MAAC and F2A2-COMA vs COMA per update on Rover-Tower (1 seed).

For each pair at the packaged Rover-Tower settings (MAAC's: 12 env copies, 4 gradient steps of batch
1024 per update; COMA's: 1024 env steps per update), the script compiles one update, fills the buffer
past ``learning_starts`` (off-policy), then times ``--updates`` updates and prints seconds per update
and the ratio decentralised / centralised, measured in one run: the two alternate in ``--rounds`` rounds
and the median CPU seconds per update of each is reported. Expected (our estimate): F2A2-SAC with
one critic and no teammate model costs about n = 8 times MAAC's update (every copy evaluates the whole
attention critic), twin critics about twice that; F2A2-COMA about 1x COMA (a copy reads only its
agent's samples). Run from the repository root::

    .venv/bin/python benchmarks/bench_f2a2.py --updates 5
    .venv/bin/python benchmarks/bench_f2a2.py --pairs coma --updates 3 --hidden 64
    .venv/bin/python benchmarks/bench_f2a2.py --pairs moa --env mpe/simple_spread --updates 5
    .venv/bin/python benchmarks/bench_f2a2.py --pairs batch --updates 2 --rounds 3

``--pairs batch``: F2A2-SAC (one critic) with every agent sampling its own minibatch (``batch_per_agent=true``,
the default) against one batch for all (the ratio printed is own batches / one batch).

``--pairs moa``: F2A2-SAC (one critic) with the paper's teammate models (``moa_model=paper``: character and
mental GRUs, natural and impromptu heads, their own batches) against the simple one-layer model and
against the true policies (``moa=false``).

``--pairs isac_copies``: F2A2-ISAC's gradient iteration (``train_step``: critic and actor steps, the consensus
event) against team size on MAgent2 battle (``--maps``; the host env's spaces only, nothing is played: the batch
is drawn from the unfilled buffer with every agent marked alive) at the packaged preset, for ``copies=one``,
``copies=per_agent`` (PDHG consensus, the default) and ``copies=per_agent consensus=mean``; reports CPU seconds
per iteration, the ratio per_agent / one (Li et al. 2023's per-agent copies take n gradients on 128 samples
where one network takes one on 128 n: the same FLOPs) and the learner state's bytes (parameters, Adam moments,
targets, consensus views and duals; the buffer left out)::

    .venv/bin/python benchmarks/bench_f2a2.py --pairs isac_copies --maps 12 20 24 30 --updates 3
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from trustmarl.algos import make_algorithm  # noqa: E402
from trustmarl.experiment.config import build_config  # noqa: E402

PAIRS = {"sac": ("maac", "f2a2_sac", {"algo.n_critics": 1}), "coma": ("coma", "f2a2_coma", {}), "moa": ("f2a2_sac", "f2a2_sac", {}),
         "isac_copies": ("f2a2_isac", "f2a2_isac", {}),
         "batch": ("f2a2_sac", "f2a2_sac", {"algo.n_critics": 1})}
ISAC_MODES = {"one": {"algo.copies": "one"}, "per_agent": {"algo.copies": "per_agent"},
              "per_agent_mean": {"algo.copies": "per_agent", "algo.consensus": "mean"}}
ONE_BATCH = {"algo.batch_per_agent": False}  # --pairs batch: one batch for all (the "centralised" side) vs each agent its own
MOA = {"algo.n_critics": 1, "algo.moa": True}  # --pairs moa: the settings compared (paper vs simple vs none)


class Timed:
    """One algorithm compiled, its buffer filled past ``learning_starts`` (off-policy), ready to time updates."""

    def __init__(self, algo: str, env: str, overrides: dict, updates: int):
        self.algo = make_algorithm(build_config(algo, env, overrides), total_updates=10 * updates + 40)
        self.state = jax.jit(self.algo.init)(jax.random.PRNGKey(0))
        self.update = jax.jit(self.algo.update)
        fill = 1
        if hasattr(self.algo.cfg, "learning_starts"):
            fill = max(1, -(-self.algo.cfg.learning_starts // self.algo.steps_per_update)) + 1
        for _ in range(fill):  # compilation and (off-policy) a buffer past learning_starts
            self.state, _ = self.update(self.state)
        jax.block_until_ready(self.state)

    def round(self, updates: int) -> float:
        """CPU seconds per update over ``updates`` updates (process CPU time: other load on the machine
        slows it less than wall time)."""
        t = time.process_time()
        for _ in range(updates):
            self.state, _ = self.update(self.state)
        jax.block_until_ready(self.state)
        return (time.process_time() - t) / updates


class TimedIteration:
    """F2A2-ISAC's ``train_step`` compiled on a host env's spaces, on one batch from its unfilled buffer with every
    agent alive (the cost of an iteration does not depend on the values)."""

    def __init__(self, env: str, map_size: int, overrides: dict):
        from trustmarl.experiment.backends import build_algorithm
        from trustmarl.rollout.host import placeholder_timestep

        cfg = build_config("f2a2_isac", env, {"env.map_size": map_size, "algo.num_envs": 1, "algo.buffer_size": 256,
                                              "algo.learning_starts": 128, **overrides})
        a = build_algorithm(cfg, 100)
        self.algo, self.n_agents = a, a.n_agents
        state = jax.jit(lambda k: a.init_state(k, placeholder_timestep(a.env, (a.num_envs,)), None))(jax.random.PRNGKey(0))
        batch = jax.jit(lambda b, k: a.sample_batch(b, k, None))(state.buffer, jax.random.PRNGKey(1))
        self.batch = dict(batch, active=np.ones(batch["active"].shape, bool))
        self.state = state._replace(buffer=None)
        self.state_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(self.state))
        self.step = jax.jit(a.train_step)
        self.state, _ = self.step(self.state, self.batch, jax.random.PRNGKey(2))  # compilation
        jax.block_until_ready(self.state)

    def round(self, iterations: int) -> tuple[float, float]:
        """(CPU seconds, wall seconds) per iteration."""
        t, w = time.process_time(), time.perf_counter()
        for i in range(iterations):
            self.state, _ = self.step(self.state, self.batch, jax.random.PRNGKey(3 + i))
        jax.block_until_ready(self.state)
        return (time.process_time() - t) / iterations, (time.perf_counter() - w) / iterations


def isac_copies(args) -> list[dict]:
    """Per map: CPU and wall seconds per gradient iteration of each ``copies`` mode (interleaved rounds, medians)."""
    rows = []
    for m in args.maps:
        runs = {k: TimedIteration("magent2/battle", m, v) for k, v in ISAC_MODES.items()}
        times = {k: [] for k in runs}
        for _ in range(args.rounds):
            for k, r in runs.items():
                times[k].append(r.round(args.updates))
        t = {k: float(np.median([c for c, _ in v])) for k, v in times.items()}
        wall = {k: float(np.median([w for _, w in v])) for k, v in times.items()}
        n = runs["one"].n_agents
        row = {"pair": "f2a2_isac copies", "env": "magent2/battle", "map_size": m, "agents": n,
               **{f"{k}_cpu_s": v for k, v in t.items()}, **{f"{k}_wall_s": v for k, v in wall.items()},
               **{f"{k}_state_bytes": r.state_bytes for k, r in runs.items()},
               "per_agent_over_one": t["per_agent"] / t["one"], "per_agent_mean_over_one": t["per_agent_mean"] / t["one"],
               "per_agent_over_one_wall": wall["per_agent"] / wall["one"],
               "rounds": args.rounds, "iterations_per_round": args.updates}
        rows.append(row)
        print(f"map {m} ({n} agents): one {t['one']:.3f}, per_agent {t['per_agent']:.3f}, per_agent mean "
              f"{t['per_agent_mean']:.3f} CPU s/iteration: per_agent/one {row['per_agent_over_one']:.2f}, "
              f"per_agent mean/one {row['per_agent_mean_over_one']:.2f} (wall: one {wall['one']:.3f}, per_agent "
              f"{wall['per_agent']:.3f} s, ratio {row['per_agent_over_one_wall']:.2f}); learner state "
              + ", ".join(f"{k} {r.state_bytes / 2**20:.1f} MiB" for k, r in runs.items()), flush=True)
        del runs
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    p.add_argument("--env", default="mpe/rover_tower")
    p.add_argument("--updates", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (the median is reported)")
    p.add_argument("--hidden", type=int, default=0, help="network width (0: the presets')")
    p.add_argument("--maps", type=int, nargs="+", default=[12, 20, 24], help="isac_copies: MAgent2 battle map sizes")
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    rows = []
    for name in args.pairs:
        if name == "isac_copies":
            rows += isac_copies(args)
            continue
        central, dec, extra = PAIRS[name]
        over = {"algo.hidden_sizes": [args.hidden, args.hidden]} if args.hidden else {}
        if name == "moa":  # the teammate models: paper vs simple vs none (true policies), interleaved
            runs = {m: Timed("f2a2_sac", args.env, {**over, **MOA, **extra}, args.updates) for m, extra in
                    (("paper", {"algo.moa_model": "paper"}), ("simple", {}), ("none", {"algo.moa": False}))}
            times = {m: [] for m in runs}
            for _ in range(args.rounds):
                for m, r in runs.items():
                    times[m].append(r.round(args.updates))
            t = {m: float(np.median(v)) for m, v in times.items()}
            rows.append({"pair": "f2a2_sac moa paper / simple / none", "env": args.env, **{f"{k}_cpu_s": v for k, v in t.items()},
                         "paper_over_simple": t["paper"] / t["simple"], "paper_over_none": t["paper"] / t["none"],
                         "rounds": args.rounds, "updates_per_round": args.updates})
            print(f"f2a2_sac moa paper {t['paper']:.3f}, simple {t['simple']:.3f}, none {t['none']:.3f} CPU s/update: "
                  f"paper/simple {t['paper'] / t['simple']:.2f}, paper/none {t['paper'] / t['none']:.2f}", flush=True)
            continue
        one = {**extra, **ONE_BATCH} if name == "batch" else {}
        c, d = Timed(central, args.env, {**over, **one}, args.updates), Timed(dec, args.env, {**over, **extra}, args.updates)
        tcs, tds = [], []
        for _ in range(args.rounds):  # interleaved: both see the same load on a shared machine
            tcs.append(c.round(args.updates))
            tds.append(d.round(args.updates))
        tc, td = float(np.median(tcs)), float(np.median(tds))
        rows.append({"pair": f"{dec} / {central}", "env": args.env, "central_cpu_s": tc, "decentralised_cpu_s": td,
                     "ratio": td / tc, "rounds": args.rounds, "updates_per_round": args.updates,
                     "ratio_per_round": [b / a for a, b in zip(tcs, tds)]})
        print(f"{dec} {td:.3f} CPU s/update, {central} {tc:.3f} CPU s/update: ratio {td / tc:.2f} "
              f"(median of {args.rounds} interleaved rounds; per round "
              f"{', '.join(f'{b / a:.2f}' for a, b in zip(tcs, tds))})", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
