"""MATRL against independent PPO (IL) in two-player Pong: cross-play of kept checkpoints (Wen et al. 2021, Figure 6).

Two self-play runs on ``pettingzoo/pong`` (both players learn), one MATRL and one IL (``algo.independent=true``,
the same PPO settings), each keeping ``K`` checkpoints; then three cross-play matrices
(:mod:`trustmarl.studies.crossplay`): MATRL (player 0) vs IL (player 1), MATRL vs MATRL and IL vs IL. The
paper's claims: MATRL beats IL for most checkpoint pairs, and the MATRL-vs-MATRL matrix is more transitive
(later checkpoints beat earlier ones) than IL-vs-IL. ``reproduce_matrl_pong(out_dir, tier)`` writes
``matrl_pong.md``, ``matrl_pong.json`` and one folder per matrix (JSON, CSV, heat map).

Observations are the console's RAM (``env.obs_type=ram``) with an MLP, not the paper's 84x84x3 images with a
small CNN; ``env.frame_skip=4`` in the ``smoke`` and ``cpu`` tiers.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from trustmarl.studies.matrl_grid import train_or_reuse

ENV = "pettingzoo/pong"
RUNS = {"MATRL": {}, "IL": {"algo.independent": True}}
PAIRS = (("MATRL", "IL"), ("MATRL", "MATRL"), ("IL", "IL"))
TIERS = {
    # updates of the packaged preset (8 x 500 env steps), kept every `keep` updates, games per checkpoint pair
    "smoke": {"updates": 2, "keep": 1, "episodes": 1,
              "overrides": {"algo.num_envs": 2, "algo.rollout_len": 50, "algo.hidden_sizes": [16], "env.frame_skip": 4,
                            "env.max_cycles": 200, "env.num_workers": 0}},
    "cpu": {"updates": 100, "keep": 20, "episodes": 4, "overrides": {"env.frame_skip": 4}},  # 5 x 5 checkpoints
    "full": {"updates": 200, "keep": 20, "episodes": 20, "overrides": {}},  # the paper: 200 epochs, 10 x 10, 20 games
}


def share_won(m) -> float:
    """The share of checkpoint pairs in which player 0's mean return is above 0 (it won more points)."""
    m = np.asarray(m, np.float64)
    return float(np.mean(m > 0))


def reproduce_matrl_pong(out_dir: Path, tier: str = "smoke") -> dict:
    from trustmarl.experiment.config import build_config
    from trustmarl.studies.crossplay import crossplay

    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}; expected one of {tuple(TIERS)}")
    t = TIERS[tier]
    out_dir = Path(out_dir)
    start = time.perf_counter()
    runs, commands = {}, []
    for name, ov in RUNS.items():
        ov = {**t["overrides"], **ov, "num_seeds": 1, "checkpoint_keep": t["keep"]}
        ov["total_steps"] = t["updates"] * build_config("matrl", ENV, ov).algo.steps_per_update()
        runs[name] = out_dir / "runs" / name.lower()
        train_or_reuse("matrl", ENV, ov, runs[name])
        commands.append(f"trustmarl train matrl {ENV} " + " ".join(f"{k}={v}" for k, v in ov.items()) + f" --out {runs[name]}")
    matrices = {}
    for a, b in PAIRS:
        res = crossplay(runs[a], runs[b], t["episodes"], out_dir / "crossplay" / f"{a.lower()}_vs_{b.lower()}")
        shutil.copyfile(res["files"][-1], out_dir / f"crossplay_{a.lower()}_vs_{b.lower()}.png")  # the report's figures
        matrices[f"{a} vs {b}"] = {"player0_return": res["player0_return"], "transitivity": res["transitivity"],
                                   "share_player0_won": share_won(res["player0_return"]), "files": res["files"]}
    numbers = {"tier": tier, "matrices": matrices, "commands": commands, "seconds": time.perf_counter() - start}
    lines = [f"### Cross-play in two-player Pong ({tier} tier)", "",
             "| Matrix (player 0 vs player 1) | Checkpoints | Player 0 won (share of pairs) | Transitivity |",
             "|---|---|---|---|"]
    for name, m in matrices.items():
        shape = np.asarray(m["player0_return"]).shape
        lines.append(f"| {name} | {shape[0]} x {shape[1]} | {m['share_player0_won']:.2f} | {m['transitivity']['mean']:.2f} |")
    (out_dir / "matrl_pong.md").write_text("\n".join(lines) + "\n")
    (out_dir / "matrl_pong.json").write_text(json.dumps(numbers, indent=2))
    return numbers


def comparisons(numbers: dict) -> list[dict]:
    m = numbers["matrices"]
    check = numbers["tier"] != "smoke"
    out = [{"claim": "MATRL (player 0) beats IL (player 1) for most checkpoint pairs", "paper": "most pairs",
            "ours": f"{m['MATRL vs IL']['share_player0_won']:.2f} of the pairs",
            "holds": bool(m["MATRL vs IL"]["share_player0_won"] > 0.5) if check else None}]
    tm, ti = m["MATRL vs MATRL"]["transitivity"]["mean"], m["IL vs IL"]["transitivity"]["mean"]
    out.append({"claim": "MATRL vs MATRL is more transitive than IL vs IL", "paper": "more transitive",
                "ours": f"{tm:.2f} vs {ti:.2f}", "holds": bool(tm > ti) if check and np.isfinite([tm, ti]).all() else None,
                "note": "share of pairs where the later checkpoint does better against the same opponent"})
    return out
