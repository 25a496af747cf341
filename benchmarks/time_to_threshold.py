"""Wall-clock from process start until MPE simple_spread's return first reaches -60 (sum over agents).

Every contender runs in a fresh Python process, one after the other in one run of this script, so
imports and compilation count and all share the machine's conditions; one seed each. A contender stops
as soon as the running mean of its last 5 logged returns reaches the threshold (or at ``--max-steps``).

- ours: ``trustmarl train <algo> mpe/simple_spread`` with the packaged preset (``total_steps`` = the
  budget, as the README demo), trained in jitted chunks of ``--chunk`` updates; the return is the sum
  over agents of each update's finished episodes (``episode_return_sum``).
- JaxMARL's IPPO-FF and MAPPO-RNN MPE baselines, imported **unchanged** from a JaxMARL checkout
  (``--jaxmarl-repo``, its ``baselines/`` folder) with their own YAML configs (one seed; their
  ``TOTAL_TIMESTEPS`` of 1e7 sets the learning-rate schedule), run as ``jax.jit(make_train(config))``
  on ``PRNGKey(0)`` (no vmap). Only the logging and config libraries they import are replaced by the
  stubs of ``jaxmarl_baseline.py`` (their one home, shared with bench_mpe.py): ``wandb.log`` (called
  every update through ``io_callback``) records the time and return and stops the run at the
  threshold; ``hydra`` and ``omegaconf`` are not used; ``distrax.Categorical`` is a 10-line logits
  categorical because distrax is not installed. Their logged return is MPELogWrapper's
  ``returned_episode_returns`` (reward times the number of agents, i.e. the sum over agents): IPPO-FF
  averages it over the rollout, MAPPO-RNN takes the rollout's last step.

    .venv/bin/python benchmarks/time_to_threshold.py --jaxmarl-repo /path/to/JaxMARL
    .venv/bin/python benchmarks/time_to_threshold.py --contenders mappo ippo --max-steps 1000000

Prints one table; writes ``--out`` (JSON). Compare the seconds only within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import jaxmarl_baseline  # noqa: E402
from jaxmarl_baseline import BASELINES, add_repo_argument, fresh_process, run_fresh  # noqa: E402

THRESHOLD, WINDOW = -60.0, 5
ROOT = Path(__file__).resolve().parent.parent

_OURS = r'''
import json, sys, time
import jax, jax.numpy as jnp, numpy as np
sys.path.insert(0, "{root}")
from trustmarl.algos import make_algorithm
from trustmarl.algos.base import init_seeds
from trustmarl.experiment.config import build_config
START, THRESHOLD, WINDOW, MAX_STEPS, CHUNK = {start}, {threshold}, {window}, {max_steps}, {chunk}
cfg = build_config("{algo}", "mpe/simple_spread", {{"total_steps": MAX_STEPS}})
spu = cfg.algo.steps_per_update(); updates = max(1, MAX_STEPS // spu)
algo = make_algorithm(cfg, total_updates=updates)
state = init_seeds(algo, jax.random.PRNGKey(0)[None])
run = jax.jit(jax.vmap(lambda s: jax.lax.scan(lambda c, _: algo.update(c), s, None, length=CHUNK)))
LOG = {{"t": [], "steps": [], "ret": []}}
done = False
while not done and len(LOG["ret"]) < updates:
    state, m = run(state)
    r = np.asarray(jax.device_get(m["episode_return_sum"]))[0]
    now = time.time() - START
    for x in r:  # every update of the chunk ends when the chunk does
        LOG["t"].append(now); LOG["ret"].append(float(x)); LOG["steps"].append(len(LOG["ret"]) * spu)
        recent = LOG["ret"][-WINDOW:]
        if sum(recent) / len(recent) >= THRESHOLD:
            done = True
            break
print("RESULT " + json.dumps(LOG))
'''


def run_contender(name: str, args) -> dict:
    load = os.getloadavg()[0]
    if name in BASELINES:  # one seed, no vmap, PRNGKey(0); the recorder stops it at the threshold
        res = run_fresh(jaxmarl_baseline.__file__, "run_baseline", args.timeout, repo=str(args.jaxmarl_repo),
                        name=name, seed=0, stop_return=THRESHOLD, window=WINDOW, max_steps=args.max_steps)
        log = res if "error" in res else {
            "t": [t - res["t_start"] for t in res["update_times"]],
            "steps": [(i + 1) * res["steps_per_update"] for i in range(len(res["returns"]))],
            "ret": res["returns"],
        }
    else:
        code = _OURS.format(start="_T0", root=ROOT, algo=name, chunk=args.chunk, threshold=THRESHOLD, window=WINDOW,
                            max_steps=args.max_steps)
        log = fresh_process(code, args.timeout)
    if "error" in log:
        return {"name": name, "error": log["error"]}
    out = {"name": name, "load_before": load, "updates_logged": len(log["ret"]), "log": log}
    hit = None
    for i in range(len(log["ret"])):
        recent = log["ret"][max(0, i - WINDOW + 1) : i + 1]
        if sum(recent) / len(recent) >= THRESHOLD:
            hit = i
            break
    out["steps_to_threshold"] = None if hit is None else log["steps"][hit]
    out["seconds_to_threshold"] = None if hit is None else log["t"][hit]
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--contenders", nargs="+", default=["mappo", "ippo", "happo", "jaxmarl-ippo-ff", "jaxmarl-mappo-rnn"])
    add_repo_argument(p)  # needed for jaxmarl-*
    p.add_argument("--max-steps", type=int, default=1_000_000)
    p.add_argument("--chunk", type=int, default=5, help="updates per jitted chunk of ours (the stop is checked between chunks)")
    p.add_argument("--timeout", type=int, default=3600)
    p.add_argument("--out", default="benchmarks/results/time_to_threshold.json")
    args = p.parse_args(argv)
    results = []
    print("| contender | env steps to -60 | seconds from process start | updates logged | load before |\n|---|---:|---:|---:|---:|")
    for name in args.contenders:
        if name in BASELINES and not args.jaxmarl_repo:
            print(f"| {name} | skipped: --jaxmarl-repo not given | | | |")
            continue
        r = run_contender(name, args)
        results.append(r)
        if "error" in r:
            print(f"| {name} | error: {r['error'].strip().splitlines()[-1] if r['error'].strip() else '?'} | | | |")
        else:
            steps = "never" if r["steps_to_threshold"] is None else f"{r['steps_to_threshold']:,}"
            secs = "-" if r["seconds_to_threshold"] is None else f"{r['seconds_to_threshold']:.0f}"
            print(f"| {name} | {steps} | {secs} | {r['updates_logged']} | {r['load_before']:.1f} |", flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))


if __name__ == "__main__":
    main()
