"""Wall-clock from process start until MPE simple_spread's return first reaches -60 (sum over agents).

Every contender runs in a fresh Python process, one after the other in one run of this script, so
imports and compilation count and all share the machine's conditions; one seed each. A contender stops
as soon as the running mean of its last 5 logged returns reaches the threshold (or at ``--max-steps``).

- ours: ``trustmarl train <algo> mpe/simple_spread`` with the packaged preset (``total_steps`` = the
  budget, as the README demo), trained in jitted chunks of ``--chunk`` updates; the return is the sum
  over agents of each update's finished episodes (``episode_return_sum``).
- JaxMARL's IPPO-FF and MAPPO-RNN MPE baselines, imported **unchanged** from a JaxMARL checkout
  (``--jaxmarl-repo``, its ``baselines/`` folder) with their own YAML configs (one seed; their
  ``TOTAL_TIMESTEPS`` of 1e7 sets the learning-rate schedule). Only the logging and config libraries
  they import are replaced by stubs here: ``wandb.log`` (called every update through
  ``io_callback``) records the time and return and stops the run at the threshold; ``hydra`` and
  ``omegaconf`` are not used; ``distrax.Categorical`` is a 10-line logits categorical (sample,
  log_prob, entropy) because distrax is not installed. Their logged return is MPELogWrapper's
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
import subprocess
import sys
import time
from pathlib import Path

THRESHOLD, WINDOW = -60.0, 5
ROOT = Path(__file__).resolve().parent.parent

_STUBS = r'''
import sys, time, types
import jax, jax.numpy as jnp
START, THRESHOLD, WINDOW, MAX_STEPS, STEPS_PER_UPDATE = {start}, {threshold}, {window}, {max_steps}, {spu}
LOG = {{"t": [], "steps": [], "ret": []}}
class Stop(Exception):
    pass
def log(metric, *a, **k):
    if "returned_episode_returns" not in metric and "returns" not in metric:
        return
    r = metric.get("returns", metric.get("returned_episode_returns"))
    LOG["t"].append(time.time() - START); LOG["ret"].append(float(jnp.mean(jnp.asarray(r))))
    LOG["steps"].append(len(LOG["ret"]) * STEPS_PER_UPDATE)
    recent = LOG["ret"][-WINDOW:]
    if sum(recent) / len(recent) >= THRESHOLD or LOG["steps"][-1] >= MAX_STEPS:
        raise Stop()
wandb = types.ModuleType("wandb"); wandb.log = log; wandb.init = lambda *a, **k: None
hydra = types.ModuleType("hydra"); hydra.main = lambda *a, **k: (lambda f: f)
omegaconf = types.ModuleType("omegaconf"); omegaconf.OmegaConf = type("OmegaConf", (), {{"to_container": staticmethod(lambda c: c)}})
distrax = types.ModuleType("distrax")
class Categorical:
    def __init__(self, logits): self.logits = jax.nn.log_softmax(logits, axis=-1)
    def sample(self, seed): return jax.random.categorical(seed, self.logits, axis=-1)
    def log_prob(self, x): return jnp.take_along_axis(self.logits, x[..., None].astype(jnp.int32), axis=-1)[..., 0]
    def entropy(self): return -jnp.sum(jnp.exp(self.logits) * self.logits, axis=-1)
distrax.Categorical = Categorical
sys.modules.update(wandb=wandb, hydra=hydra, omegaconf=omegaconf, distrax=distrax)
'''

_JAXMARL = _STUBS + r'''
import importlib.util, json, yaml
sys.path.insert(0, "{folder}")
spec = importlib.util.spec_from_file_location("baseline", "{script}")
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
def num(v):  # OmegaConf reads 1e7 and 2.5e-4 as numbers, YAML 1.1 as strings
    try:
        return float(v) if isinstance(v, str) else v
    except ValueError:
        return v
config = {{k: num(v) for k, v in yaml.safe_load(open("{config}")).items()}}
config["NUM_SEEDS"] = 1
try:
    jax.block_until_ready(jax.jit(mod.make_train(config))(jax.random.PRNGKey(0)))
except Exception as e:  # the Stop raised inside the io_callback surfaces as a runtime error
    if not LOG["ret"]:
        raise
print("RESULT " + json.dumps(LOG))
'''

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

JAXMARL = {
    "jaxmarl-ippo-ff": ("baselines/IPPO/ippo_ff_mpe.py", "baselines/IPPO/config/ippo_ff_mpe.yaml"),
    "jaxmarl-mappo-rnn": ("baselines/MAPPO/mappo_rnn_mpe.py", "baselines/MAPPO/config/mappo_homogenous_rnn_mpe.yaml"),
}


def run_contender(name: str, args) -> dict:
    common = dict(threshold=THRESHOLD, window=WINDOW, max_steps=args.max_steps)
    if name in JAXMARL:
        script, config = (Path(args.jaxmarl_repo) / p for p in JAXMARL[name])
        code = _JAXMARL.format(start="_T0", spu=16 * 128, folder=script.parent, script=script, config=config, **common)
    else:
        code = _OURS.format(start="_T0", root=ROOT, algo=name, chunk=args.chunk, **common)
    code = "import time\n_T0 = time.time()  # process start (before any import)\n" + code
    load = os.getloadavg()[0]
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=args.timeout)
    line = [x for x in res.stdout.splitlines() if x.startswith("RESULT ")]
    if not line:
        return {"name": name, "error": res.stderr[-2000:]}
    log = json.loads(line[-1][7:])
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
    p.add_argument("--jaxmarl-repo", default=None, help="a JaxMARL checkout (its baselines/ folder); needed for jaxmarl-*")
    p.add_argument("--max-steps", type=int, default=1_000_000)
    p.add_argument("--chunk", type=int, default=5, help="updates per jitted chunk of ours (the stop is checked between chunks)")
    p.add_argument("--timeout", type=int, default=3600)
    p.add_argument("--out", default="benchmarks/results/time_to_threshold.json")
    args = p.parse_args(argv)
    results = []
    print("| contender | env steps to -60 | seconds from process start | updates logged | load before |\n|---|---:|---:|---:|---:|")
    for name in args.contenders:
        if name in JAXMARL and not args.jaxmarl_repo:
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
