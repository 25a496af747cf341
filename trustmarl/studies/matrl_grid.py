"""PPO-based MATRL on the MA-Gym grid worlds against its ablations (Wen et al. 2021, Figure 5a-b).

Four variants of the ``matrl`` algorithm with one PPO configuration (the paper's protocol: "the only
difference is whether to use best response and the meta-game or not"):

=================  ================================  =============================================
variant            overrides                         what the next policy is
=================  ================================  =============================================
MATRL              (none)                            best response to the Nash mixture
MATRL w/o BR       ``algo.best_response=false``      the Nash mixture itself
IL-PP              ``algo.rho=0``                    best response to the other agents' candidates
IL                 ``algo.independent=true``         the independent PPO candidate
=================  ================================  =============================================

and, on Checkers, **IL (reference code)**: ``algo.independent=true --preset reference``, the authors' IL
trainer with the defects of their code (5 policy iterations, the sample entropy estimate, the hidden
activation on the output layers), to test whether those make the paper's IL collapse.

Beside them, the off-policy CTDE baselines of Figure 5 -- VDN, QMIX and QTRAN (``vdn``, ``qmix``, ``qtran`` with
their grid-world presets, Wen et al. 2021's Table 4) -- train for the same env steps per tier.

Each (environment, variant) pair is one ``trustmarl train`` run with ``num_seeds`` seeds vmapped, in
``out_dir/runs/<env>_<variant>``; a finished run is reused and an interrupted one resumed. Returns are
compared as the paper reports them: the episode return summed over agents (``episode_return_sum``).
``reproduce_matrl(out_dir, tier)`` writes ``matrl_grid.md`` (the table), ``matrl_grid.json`` (all
numbers) and ``matrl_grid.png`` (learning curves); ``python -m trustmarl.studies.matrl_grid`` runs it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

VARIANTS: dict[str, dict] = {
    "MATRL": {},
    "MATRL w/o BR": {"algo.best_response": False},
    "IL-PP": {"algo.rho": 0.0},
    "IL": {"algo.independent": True},
    # the authors' code's IL trainer with its loss and network defects (``--preset reference``, docs/matrl.md)
    "IL (reference code)": {"algo.independent": True, "preset": "reference"},
}
# the value-decomposition baselines of Figure 5a-b: variant -> algorithm (their presets hold Table 4's settings)
BASELINES: dict[str, str] = {"VDN": "vdn", "QMIX": "qmix", "QTRAN": "qtran"}
ENVS = ("grid/checkers", "grid/switch4")
#: the variants run on each world: the reference-code IL only where the paper's IL is reported (Checkers)
ENV_VARIANTS = {"grid/checkers": tuple(VARIANTS), "grid/switch4": ("MATRL", "MATRL w/o BR", "IL-PP", "IL")}
PAPER_UPDATES = {"grid/checkers": 200, "grid/switch4": 500}  # reference code: epochs x 2000 env steps
# the paper's reported returns (sums over agents, read off Figure 5 / stated in section 4)
PAPER = {
    "grid/checkers": {"MATRL": "about 18", "IL": "about -2", "IL (reference code)": "about -2 (the paper's IL)"},
    "grid/switch4": {"MATRL": "about 6.5"},
}
OPTIMUM = {"grid/switch4": 14.4}  # all four agents arrive by step 15 (environments.md)
TIERS = {
    # updates per env (2000 env steps each), seeds, extra overrides
    "smoke": {"updates": {"grid/checkers": 2, "grid/switch4": 2}, "num_seeds": 2,
              "overrides": {"algo.num_envs": 2, "algo.hidden_sizes": [16, 16]}},
    "cpu": {"updates": {"grid/checkers": 200, "grid/switch4": 200}, "num_seeds": 5, "overrides": {}},
    "full": {"updates": dict(PAPER_UPDATES), "num_seeds": 5, "overrides": {}},
}


def run_name(env: str, variant: str) -> str:
    name = variant.lower().replace(" ", "_").replace("/", "").replace("(", "").replace(")", "")
    return f"{env.split('/')[-1]}_{name}"


def _cli_value(v) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    return "[" + ",".join(map(str, v)) + "]" if isinstance(v, (list, tuple)) else str(v)


def algo_of(variant: str, overrides: dict | None = None) -> tuple[str, dict, str | None]:
    """The algorithm of a variant, its overrides and its preset (a baseline takes the tier's overrides only)."""
    if variant in BASELINES:
        return BASELINES[variant], dict(overrides or {}), None
    ov = {**(overrides or {}), **VARIANTS[variant]}
    preset = ov.pop("preset", None)
    return "matrl", ov, preset


def env_steps(env: str, variant: str, updates: int, overrides: dict | None = None) -> int:
    """Env steps per seed of ``updates`` MATRL updates of a variant (every baseline trains as long as MATRL)."""
    from trustmarl.experiment.config import build_config

    algo, ov, preset = algo_of(variant, overrides)
    if algo != "matrl":
        ov, preset = dict(overrides or {}), None  # a baseline trains as long as MATRL with the tier's settings
    return updates * build_config("matrl", env, ov, preset=preset).algo.steps_per_update()


def train_command(env: str, variant: str, updates: int, num_seeds: int, out: str = "runs", overrides: dict | None = None) -> str:
    """The ``trustmarl train`` command of one run (what :func:`reproduce_matrl` executes)."""
    algo, ov, preset = algo_of(variant, overrides)
    return command_line(algo, env, {"num_seeds": num_seeds, "total_steps": env_steps(env, variant, updates, overrides), **ov},
                        f"{out}/{run_name(env, variant)}", preset)


def command_line(algo: str, env: str, overrides: dict, out: str, preset: str | None = None) -> str:
    """``trustmarl train ALGO ENV key=value ... [--preset NAME] --out OUT``."""
    keys = " ".join(f"{k}={_cli_value(v)}" for k, v in overrides.items())
    flag = f" --preset {preset}" if preset else ""
    return f"trustmarl train {algo} {env} {keys}{flag} --out {out}".replace("  ", " ")


def run_variant(env: str, variant: str, updates: int, num_seeds: int, run_dir: Path, overrides: dict | None = None) -> list[dict]:
    """Train (or resume, or reuse) one run and return its metrics rows."""
    algo, ov, preset = algo_of(variant, overrides)
    steps = env_steps(env, variant, updates, overrides)
    return train_or_reuse(algo, env, {**ov, "num_seeds": num_seeds, "total_steps": steps}, Path(run_dir), preset)


def train_or_reuse(algo: str, env: str, overrides: dict, run_dir: Path, preset: str | None = None) -> list[dict]:
    """Train ``algo`` on ``env`` into ``run_dir`` (a finished run is reused, an interrupted one resumed) and
    return its metrics rows."""
    from trustmarl.experiment.config import build_config
    from trustmarl.experiment.logger import read_jsonl
    from trustmarl.experiment.runner import LAST_CHECKPOINT, train

    cfg = build_config(algo, env, {**overrides, "checkpoint_every": 1}, preset=preset)
    run_dir = Path(run_dir)
    summary = run_dir / "summary.json"
    done = summary.is_file() and json.loads(summary.read_text()).get("status") == "completed"
    if not done:
        resume = (run_dir / LAST_CHECKPOINT).is_file()
        train(cfg if not resume else None, run_dir, resume=resume, overwrite=not resume, progress=False, tensorboard=False)
    return read_jsonl(run_dir / "metrics.jsonl")


def curves(rows: list[dict], num_seeds: int, name: str = "episode_return_sum") -> tuple[np.ndarray, np.ndarray]:
    """``(env_steps [U], per-seed values [S, U])`` of a metric from a run's rows."""
    steps = np.asarray([r["env_steps"] for r in rows], np.float64)
    vals = np.asarray([[np.nan if r.get(f"{name}/seed_{k}") is None else r[f"{name}/seed_{k}"] for r in rows]
                       for k in range(num_seeds)], np.float64)
    return steps, vals


def final_window(values: np.ndarray, frac: float = 0.1) -> np.ndarray:
    """Per-seed NaN-aware mean over the last ``frac`` of the updates."""
    k = max(1, int(round(values.shape[1] * frac)))
    win = values[:, -k:]
    return np.asarray([np.nanmean(w) if np.isfinite(w).any() else np.nan for w in win])


def summarise(rows: list[dict], num_seeds: int) -> dict:
    steps, vals = curves(rows, num_seeds)
    final = final_window(vals)
    out = {
        "updates": len(rows), "env_steps": int(steps[-1]) if len(steps) else 0,
        "final_return_sum_per_seed": final.tolist(),
        "final_return_sum_mean": float(np.nanmean(final)), "final_return_sum_std": float(np.nanstd(final)),
        "initial_return_sum_mean": float(np.nanmean(final_window(vals[:, ::-1]))),
        "wall_time": float(rows[-1]["wall_time"]) if rows else 0.0,
    }
    n_agents = len([k for k in rows[0] if k.startswith("diag/rho_per_agent/")]) if rows else 0
    if n_agents:
        rho = np.asarray([[r[f"diag/rho_per_agent/agent_{i}"] for i in range(n_agents)] for r in rows])
        out["mean_rho"] = float(rho.mean())
        out["mean_rho_per_agent"] = rho.mean(0).tolist()
        # updates on which every agent took its candidate in every seed (rho = 0: the update is IL-PP's exactly);
        # rows hold means over seeds and rho >= 0, so a mean of 0 means 0 in every seed
        out["all_candidates_fraction"] = float(np.mean(np.all(rho < 1e-6, axis=1)))
        out["nash_fallbacks"] = float(rows[-1].get("diag/nash_fallbacks_total", 0.0)) * num_seeds  # over all seeds
    return out


def table_markdown(results: dict, title: str) -> str:
    lines = [f"### {title}", "",
             "Episode return summed over agents: mean ± std over seeds of each seed's mean over the last 10% of updates.", "",
             "ρ_i: agent i's probability of keeping its current policy in the meta-game's Nash equilibrium (mean over "
             "updates and seeds); 'ρ = 0': the share of updates on which every agent took its candidate in every seed, "
             "where MATRL's update is IL-PP's exactly; fallbacks: meta-games without an equilibrium found (ρ = 1), "
             "summed over seeds.", "",
             "| Environment | Variant | Env steps | Return (sum over agents) | First 10% | ρ per agent | ρ = 0 | Nash fallbacks | Paper |",
             "|---|---|---|---|---|---|---|---|---|"]
    for env, by_variant in results.items():
        for variant, s in by_variant.items():
            paper = PAPER.get(env, {}).get(variant, "")
            rho = " / ".join(f"{r:.2f}" for r in s["mean_rho_per_agent"]) if "mean_rho_per_agent" in s else "-"
            zero = f"{s['all_candidates_fraction']:.0%}" if "all_candidates_fraction" in s else "-"
            fb = f"{s['nash_fallbacks']:.0f}" if "nash_fallbacks" in s else "-"
            lines.append(f"| {env} | {variant} | {s['env_steps']:,} | {s['final_return_sum_mean']:.2f} ± {s['final_return_sum_std']:.2f} "
                         f"| {s['initial_return_sum_mean']:.2f} | {rho} | {zero} | {fb} | {paper} |")
        if "MATRL" in by_variant and "IL-PP" in by_variant:
            m, pp = by_variant["MATRL"], by_variant["IL-PP"]
            lines.append(f"| {env} | MATRL - IL-PP | | {m['final_return_sum_mean'] - pp['final_return_sum_mean']:+.2f} | | "
                         f"| {1 - m.get('all_candidates_fraction', 0.0):.0%} of MATRL's updates have some ρ > 0 | | |")
    return "\n".join(lines) + "\n"


def plot(curve_data: dict, path: Path, num_seeds: int, ylabel: str = "episode return, sum over agents") -> Path:
    """Learning curves: mean over seeds with a ± standard-error band, one panel per environment."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    envs = list(curve_data)
    fig = Figure(figsize=(6.2 * len(envs), 4.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(envs)))
    colours = {"MATRL": "tab:red", "MATRL w/o BR": "tab:orange", "IL-PP": "tab:green", "IL": "tab:blue", "MADDPG": "tab:purple",
               "IL (reference code)": "tab:cyan", "VDN": "tab:pink", "QMIX": "tab:brown", "QTRAN": "tab:gray"}
    for ax, env in zip(axes, envs):
        for variant, (steps, vals) in curve_data[env].items():
            mean = np.nanmean(vals, axis=0)
            se = np.nanstd(vals, axis=0) / np.sqrt(max(1, vals.shape[0]))
            ax.plot(steps, mean, color=colours.get(variant), label=variant, lw=1.4)
            ax.fill_between(steps, mean - se, mean + se, color=colours.get(variant), alpha=0.2, lw=0)
        if env in OPTIMUM:
            ax.axhline(OPTIMUM[env], color="k", ls=":", lw=1, label="optimum")
        ax.set_title(f"{env} ({num_seeds} seeds, mean ± s.e.)")
        ax.set_xlabel("env steps")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    path = Path(path)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110)
    return path


def reproduce_matrl(out_dir: Path, tier: str = "smoke", envs=ENVS, variants=None) -> dict:
    """MATRL vs MATRL w/o BR vs IL-PP vs IL (and the reference-code IL on Checkers), and VDN, QMIX, QTRAN, on
    Checkers and Switch4 (Wen et al. 2021, Figure 5a-b); ``variants`` picks some (default: each world's
    ``ENV_VARIANTS`` and the baselines).

    Tiers: ``smoke`` (2 updates, 2 seeds, small networks: checks the pipeline), ``cpu`` (5 seeds,
    0.4 M env steps on both worlds: the paper's length for Checkers, 40% of it for Switch4),
    ``full`` (5 seeds at the paper's lengths: 0.4 M Checkers, 1 M Switch4). Writes ``matrl_grid.md``,
    ``matrl_grid.json`` and ``matrl_grid.png`` into ``out_dir`` and returns the numbers.
    """
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}; expected one of {tuple(TIERS)}")
    settings = TIERS[tier]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = settings["num_seeds"]
    results: dict = {}
    curve_data: dict = {}
    commands = []
    start = time.perf_counter()
    for env in envs:
        results[env], curve_data[env] = {}, {}
        updates = settings["updates"][env]
        for variant in variants or ENV_VARIANTS[env] + tuple(BASELINES):
            rows = run_variant(env, variant, updates, seeds, out_dir / "runs" / run_name(env, variant), settings["overrides"])
            results[env][variant] = summarise(rows, seeds)
            curve_data[env][variant] = curves(rows, seeds)
            commands.append(train_command(env, variant, updates, seeds, str(out_dir / "runs"), settings["overrides"]))
    title = f"MATRL, its ablations and the value-decomposition baselines on the grid worlds ({tier} tier, {seeds} seeds)"
    markdown = table_markdown(results, title)
    (out_dir / "matrl_grid.md").write_text(markdown)
    plot(curve_data, out_dir / "matrl_grid.png", seeds)
    numbers = {
        "tier": tier, "num_seeds": seeds, "results": results, "paper": PAPER, "commands": commands,
        "full_length_commands": [train_command(e, v, PAPER_UPDATES[e], 5) for e in envs for v in variants or ENV_VARIANTS[e] + tuple(BASELINES)],
        "seconds": time.perf_counter() - start,
        "files": [str(out_dir / n) for n in ("matrl_grid.md", "matrl_grid.json", "matrl_grid.png")],
    }
    (out_dir / "matrl_grid.json").write_text(json.dumps(numbers, indent=2, sort_keys=True))
    return numbers


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trustmarl.studies.matrl_grid", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tier", choices=tuple(TIERS), default="cpu")
    parser.add_argument("--out", type=Path, default=Path("runs/matrl_grid"))
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=ENVS)
    args = parser.parse_args(argv)
    numbers = reproduce_matrl(args.out, args.tier, tuple(args.envs))
    print((args.out / "matrl_grid.md").read_text())
    print(f"wrote {', '.join(numbers['files'])} in {numbers['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
