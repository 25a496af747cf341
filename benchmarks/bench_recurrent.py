"""Recurrent vs feed-forward MAAC per update on SMAX 3m (the cost of GRU actors and sequence replay).

Both run the MAAC SMAX preset's schedule (``configs/maac/smax.yaml`` and ``smax_3m.yaml``: 8 env copies x 60 steps
per update, SMAC's 60-step episode limit, one gradient step per update): the recurrent one on batches of 32 whole
episodes padded to 60 steps (1,920 steps, GRU actors and target actors unrolled over them), the feed-forward one
(``recurrent=false``, 64-unit ReLU actors, no epsilon) on batches of the same 1,920 transitions drawn uniformly. The
buffer is cut to 38,400 transitions (640 episodes) for the measurement (sampling cost does not depend on its size).
After filling the buffer past ``learning_starts``, the script times, interleaved round by round in one process
(medians of ``--repeats`` rounds; :func:`bench_offpolicy.race`), one whole update (acting, env steps, storing, one
gradient step) and one gradient step alone (``train_step`` on a sampled batch), and reports recurrent / feed-forward.
Run from the repository root::

    .venv/bin/python benchmarks/bench_recurrent.py            # writes benchmarks/results/bench_recurrent.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_env import machine_info  # noqa: E402
from bench_offpolicy import race  # noqa: E402

from trustmarl import replay  # noqa: E402
from trustmarl.algos import make_algorithm  # noqa: E402
from trustmarl.experiment.config import build_config  # noqa: E402

ENV = "smax/3m"
COMMON = {"algo.buffer_size": 38_400}
VARIANTS = {
    "recurrent": {},  # the preset: GRU actors, 32 padded episodes per batch
    "feed_forward": {"algo.recurrent": False, "algo.sequences": "windows", "algo.batch_size": 32 * 60,
                     "algo.epsilon_start": 0.0, "algo.epsilon_end": 0.0},
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_recurrent.json"))
    args = p.parse_args(argv)
    fns, info = {}, {}
    for name, ov in VARIANTS.items():
        cfg = build_config("maac", ENV, {**COMMON, **ov})
        a = make_algorithm(cfg)
        update = jax.jit(a.update)
        state = a.init(jax.random.PRNGKey(0))
        while int(state.env_steps) < cfg.algo.learning_starts + a.steps_per_update:  # learning from the next update on
            state, metrics = update(state)
        stats = replay.field_mean_std(state.buffer.steps, state.buffer.steps.data["reward"]) if cfg.algo.reward_norm else None
        batch = jax.jit(lambda s, k, a=a: a.sample_batch(s.buffer, k, stats))(state, jax.random.PRNGKey(1))
        fns[f"{name}/update"] = (update, (state,))
        fns[f"{name}/train_step"] = (jax.jit(a.train_step), (state, batch, jax.random.PRNGKey(2)))
        samples = cfg.algo.batch_size * (cfg.algo.seq_len if cfg.algo.recurrent else 1)
        info[name] = {"batch_samples": samples, "steps_per_update": a.steps_per_update,
                      "learning": float(metrics["diag/learning"])}
    wall, cpu = race(fns, args.repeats)
    out = {"machine": machine_info(), "env": ENV, "repeats": args.repeats, "variants": info,
           "wall_s": wall, "cpu_s": cpu,
           "ratio_update": wall["recurrent/update"] / wall["feed_forward/update"],
           "ratio_train_step": wall["recurrent/train_step"] / wall["feed_forward/train_step"]}
    for k in wall:
        print(f"{k:28s} wall {1e3 * wall[k]:9.1f} ms   cpu {1e3 * cpu[k]:9.1f} ms")
    print(f"recurrent / feed-forward: {out['ratio_update']:.2f}x per update, {out['ratio_train_step']:.2f}x per gradient step")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
