"""Named, small-scale reproductions of the papers' headline experiments (``trustmarl reproduce``).

A reproduction is a function ``fn(out_dir, tier) -> dict`` registered with :func:`register_reproduction`
under a name, with the paper, the figure and the time each tier took on a given machine. ``tier`` is
``smoke`` (minutes; run by the tests), ``cpu`` (a 2-core machine, at most a few hours) or ``full`` (the
paper's scale, for a cluster or a GPU). The function may also accept ``jobs`` (runs at a time) and
``in_process`` (train in this process); :func:`reproduce` passes them when it does.

The returned dict may hold (all optional; anything else is kept in ``result.json``)::

    comparisons   [{"claim", "paper", "ours", "holds": bool | None, "note"}]: the paper's numbers beside ours
    run_dirs      run or sweep directories to report on (the report of ``trustmarl report``)
    environment   [str]: where our environment or setting differs from the paper's
    metric        the compared metric of the report (default: the documented rule)
    title         the report's title

:func:`reproduce` writes ``result.json`` and, when there are runs, a report (``report/report.html``, ...)
with a "Paper vs ours" section. Register your own::

    from trustmarl.studies.reproduce import register_reproduction
    register_reproduction("matrl-table1", reproduce_matrix_games, paper="Wen et al. 2021 (MATRL)",
                          figure="Table 1, Figure 4", tiers={"smoke": "1 min", "cpu": "20 min", "full": "2 h"})
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from trustmarl.experiment.config import ConfigError

TIERS = ("smoke", "cpu", "full")


class ReproduceError(ConfigError):
    """An unknown reproduction or tier, or an output directory holding another one (exit code 2)."""


@dataclasses.dataclass
class Reproduction:
    name: str
    fn: Callable[..., dict[str, Any]]
    paper: str
    figure: str
    tiers: dict[str, str]  # tier -> its time (measured, with the machine) or a description
    description: str = ""


_REGISTRY: dict[str, Reproduction] = {}


def register_reproduction(
    name: str,
    fn: Callable[..., dict[str, Any]],
    *,
    paper: str,
    figure: str,
    tiers: dict[str, str] | tuple[str, ...] | list[str],
    description: str = "",
    replace: bool = False,
) -> None:
    """Register ``fn(out_dir: Path, tier: str) -> dict`` as reproduction ``name``.

    ``tiers`` maps each supported tier (``smoke``, ``cpu``, ``full``) to its measured time and machine,
    e.g. ``{"smoke": "1.5 min (2 CPU cores)", ...}``; a list of tier names means "not measured yet".
    """
    if name in _REGISTRY and not replace:
        raise ValueError(f"reproduction {name!r} is already registered")
    if isinstance(tiers, (list, tuple)):
        tiers = {t: "not measured" for t in tiers}
    bad = [t for t in tiers if t not in TIERS]
    if bad:
        raise ValueError(f"unknown tier {bad[0]!r}; tiers are {', '.join(TIERS)}")
    _REGISTRY[name] = Reproduction(name, fn, paper, figure, dict(tiers), description)


def reproduction_names() -> list[str]:
    _load()
    return sorted(_REGISTRY)


def get_reproduction(name: str) -> Reproduction:
    _load()
    if name not in _REGISTRY:
        raise ReproduceError(f"unknown reproduction {name!r}; choose one of: {', '.join(sorted(_REGISTRY))} "
                             "(trustmarl reproduce --list)")
    return _REGISTRY[name]


def format_list() -> str:
    """The registry as text: name, paper, figure, what it shows and each tier's time."""
    _load()
    lines = []
    for name in sorted(_REGISTRY):
        r = _REGISTRY[name]
        lines.append(f"{name}\n  {r.paper}, {r.figure}")
        if r.description:
            lines.append(f"  {r.description}")
        for t in TIERS:
            if t in r.tiers:
                lines.append(f"  --tier {t:6s} {r.tiers[t]}")
    return "\n".join(lines)


def reproduce(name: str, tier: str = "smoke", out_dir: str | Path | None = None, jobs: int = 1,
              overwrite: bool = False, in_process: bool = False) -> dict[str, Any]:
    """Run reproduction ``name`` at ``tier`` into ``out_dir`` (default ``reproductions/<name>-<tier>``) and
    write its report; running it again continues (finished runs are kept, interrupted ones resumed)."""
    r = get_reproduction(name)
    if tier not in r.tiers:
        raise ReproduceError(f"reproduction {name!r} has no tier {tier!r}; choose one of: {', '.join(r.tiers)}")
    out = Path(out_dir) if out_dir is not None else Path("reproductions") / f"{name}-{tier}"
    marker = out / "reproduction.json"
    if out.exists() and any(out.iterdir()):
        old = json.loads(marker.read_text()) if marker.is_file() else None
        if old is None and not overwrite:
            raise ReproduceError(f"{str(out)!r} exists and is not a reproduction directory; choose another --out")
        if old is None:
            raise ReproduceError(f"{str(out)!r} is not a reproduction directory; refusing to delete it")
        if (old.get("name"), old.get("tier")) != (name, tier) and not overwrite:
            raise ReproduceError(f"{str(out)!r} already holds {old.get('name')} ({old.get('tier')}); "
                                 "use --overwrite or another --out")
        if overwrite:  # start afresh; without it the same reproduction continues where it stopped
            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"name": name, "tier": tier, "paper": r.paper, "figure": r.figure}, indent=2) + "\n")
    kwargs: dict[str, Any] = {}
    params = inspect.signature(r.fn).parameters
    if "jobs" in params:
        kwargs["jobs"] = jobs
    if "in_process" in params:
        kwargs["in_process"] = in_process
    t0 = time.time()
    result = dict(r.fn(out, tier, **kwargs) or {})
    wall = time.time() - t0
    result.update({"name": name, "tier": tier, "paper": r.paper, "figure": r.figure, "wall_seconds": wall,
                   "out_dir": str(out)})
    if result.get("run_dirs"):
        result["runs_wall_seconds"] = _runs_seconds(result["run_dirs"])
        result["report"] = str(write_reproduction_report(result, out / "report"))
    else:  # no training runs (exact computations): the paper-vs-ours page and the figures in out_dir
        result["report"] = str(write_paper_report(result, out / "report", sorted(out.glob("*.png"))))
    (out / "result.json").write_text(json.dumps(_json_safe(result), indent=2, default=str) + "\n")
    return result


def format_verdict(result: dict[str, Any]) -> str:
    """The paper-vs-ours comparison as console lines, ending with how many checked claims hold."""
    comps = result.get("comparisons") or []
    lines = [f"paper vs ours: {result['paper']}, {result['figure']} ({result['tier']} tier)"]
    for c in comps:
        mark = {True: "holds", False: "FAILS", None: "  -  "}.get(c.get("holds"), "  -  ")
        lines.append(f"  [{mark}] {c.get('claim', '')}: paper {_show(c.get('paper'))}; ours {_show(c.get('ours'))}")
    checked = [c for c in comps if c.get("holds") is not None]
    held = sum(1 for c in checked if c["holds"])
    if checked:
        lines.append(f"{held} of {len(checked)} checked claims hold at this tier"
                     + (f" ({len(comps) - len(checked)} numbers shown without a check)" if len(comps) > len(checked) else ""))
    else:
        lines.append("no claim is checked at this tier (the numbers are shown beside the paper's)")
    return "\n".join(lines)


def _comparison_sections(result: dict[str, Any]) -> list:
    from trustmarl.studies.report import Section

    sections = []
    comps = result.get("comparisons") or []
    if comps:
        time_note = (f" (training time of the runs {result['runs_wall_seconds'] / 60:.1f} min)"
                     if result.get("runs_wall_seconds") else f" ({result.get('wall_seconds', 0):.0f} s)")
        sections.append(Section(
            "Paper vs ours",
            [f"{result['paper']}, {result['figure']}; tier `{result['tier']}`{time_note}. 'holds' says whether our "
             "results show the paper's claim at this scale (n/a: nothing to check)."],
            ["claim", "paper", "ours", "holds", "note"],
            [[c.get("claim", ""), _show(c.get("paper")), _show(c.get("ours")),
              {True: "yes", False: "no", None: "n/a"}.get(c.get("holds")), c.get("note", "")] for c in comps],
        ))
    if result.get("environment"):
        sections.append(Section("Where our setting differs from the paper's", [f"- {e}" for e in result["environment"]]))
    return sections


def _title(result: dict[str, Any]) -> str:
    return result.get("title") or f"{result['paper']}, {result['figure']}: reproduction {result['name']} ({result['tier']})"


def write_paper_report(result: dict[str, Any], out_dir: Path, figures: list[Path] = ()) -> Path:
    """``report.md`` and a self-contained ``report.html`` for a reproduction without training runs: the
    paper-vs-ours table, the setting notes and ``figures`` (PNG files, embedded)."""
    from trustmarl.studies.report import Section, _html, _markdown

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = _comparison_sections(result)
    images = {}
    if figures:
        paras = []
        for f in figures:
            images[f.stem] = Path(f).read_bytes()
            shutil.copyfile(f, out_dir / f.name)
            paras.append(f"![{f.stem}]({f.stem}.png)")
        sections.append(Section("Figures", paras))
    stamp = f"written {time.strftime('%Y-%m-%d %H:%M:%S')} by `trustmarl reproduce {result['name']} --tier {result['tier']}`."
    (out_dir / "report.md").write_text(_markdown(_title(result), sections, stamp))
    (out_dir / "report.html").write_text(_html(_title(result), sections, stamp, images))
    return out_dir / "report.html"


def _runs_seconds(run_dirs) -> float:
    """Training time of every run (``wall_seconds_total`` of their summaries, resumed sessions included)."""
    from trustmarl.studies.report import load_runs

    try:
        return float(sum((r.summary or {}).get("wall_seconds_total") or 0.0 for r in load_runs(run_dirs)))
    except ConfigError:
        return 0.0


def write_reproduction_report(result: dict[str, Any], out_dir: Path) -> Path:
    """The report of ``result["run_dirs"]`` with the paper-vs-ours table and the environment notes first."""
    from trustmarl.studies.report import load_runs, write_report

    runs = load_runs(result["run_dirs"])
    write_report(runs, out_dir, metric=result.get("metric"), title=_title(result),
                 extra_sections=_comparison_sections(result), reps=1000 if result["tier"] == "smoke" else 2000)
    return out_dir / "report.html"


def write_docs_page(result_dir: str | Path, page: str | Path, figures: tuple[str, ...] = ("curves",)) -> Path:
    """A documentation page for a finished reproduction: the paper-vs-ours table, the setting notes, the
    final-performance table and ``figures`` (copied next to the page as ``<page stem>/<name>.png``)."""
    result_dir, page = Path(result_dir), Path(page)
    res = json.loads((result_dir / "result.json").read_text())
    md = (result_dir / "report" / "report.md").read_text()
    lines = [f"# {res['name']}: {res['paper']}, {res['figure']}", "",
             f"Tier `{res['tier']}`: {res.get('runs_wall_seconds', res['wall_seconds']) / 60:.1f} min of training, one run "
             f"at a time, on a 2-core machine shared with other work (`trustmarl reproduce {res['name']} --tier "
             f"{res['tier']}`).", ""]
    for title in ("Paper vs ours", "Where our setting differs from the paper's", "Final performance"):
        start = md.find(f"## {title}")
        if start >= 0:
            end = md.find("\n## ", start + 3)
            lines += [md[start:end if end >= 0 else None].strip(), ""]
    img_dir = page.parent / page.stem
    img_dir.mkdir(parents=True, exist_ok=True)
    for name in figures:
        src = result_dir / "report" / f"{name}.png"
        if src.is_file():
            shutil.copyfile(src, img_dir / f"{name}.png")
            lines += [f"![{name}]({page.stem}/{name}.png)", ""]
    page.write_text("\n".join(lines))
    return page


def _show(v: Any) -> str:
    if isinstance(v, float):
        return format(v, ".4g") if math.isfinite(v) else "n/a"
    return "n/a" if v is None else str(v)


def _json_safe(obj: Any) -> Any:
    from trustmarl.studies.report import _json_safe as safe  # one home: non-finite floats -> null

    return safe(obj)


# ---- helpers for the built-in reproductions ----------------------------------------------------------

def run_study(out_dir: Path, spec: dict[str, Any], jobs: int = 1, in_process: bool = False) -> Path:
    """Run a sweep mapping into ``out_dir/sweep`` (skipping finished runs); returns the sweep directory."""
    from trustmarl.studies import sweep as sweep_mod

    sw = sweep_mod.parse_sweep(spec)
    sweep_dir = Path(out_dir) / "sweep"
    res = sweep_mod.run_sweep(sw, sweep_dir, jobs=jobs, in_process=in_process)
    for f in res["failed"]:
        print(f"trustmarl: {f['name']} {f['status']}: {f['message']}", file=sys.stderr)
    return sweep_dir


def _runs_by_name(sweep_dir: Path) -> dict[str, Any]:
    from trustmarl.studies.report import load_run
    from trustmarl.studies.sweep import load_index

    index = load_index(sweep_dir)
    out = {}
    for r in index["runs"]:
        d = Path(sweep_dir) / r["dir"]
        if (d / "config.yaml").is_file():
            out[r["name"]] = (r, load_run(d, r.get("label")))
    return out


def _per_seed(run, base: str) -> np.ndarray:
    return run.series(base)[1]  # [updates, seeds]


def _mean_or_nan(a) -> float:
    a = np.asarray(a, dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else math.nan


def _fmt(x: float, spec: str = ".3g") -> str:
    return format(x, spec) if isinstance(x, float) and math.isfinite(x) else "n/a"


# ---- Kuba et al. 2022, Figure 1: the differential game ---------------------------------------------------------

FIG1_J0 = -0.0625  # mu0 = (-0.25, 0.25)
FIG1_SEQUENTIAL = 0.9375  # one exact HATRPO step, either order (Kuba et al. 2022, Figure 1)
FIG1_SIMULTANEOUS = -0.5625  # one exact independent step of each agent


def _figure1(out_dir: Path, tier: str, jobs: int = 1, in_process: bool = False) -> dict[str, Any]:
    envs, updates, seeds = {"smoke": (1000, 4, 2), "cpu": (20000, 20, 5), "full": (20000, 50, 20)}[tier]
    common = {"env.offset": [-0.25, 0.25], "algo.num_envs": envs, "algo.rollout_len": 1, "algo.minibatches": 1,
              "algo.log_std_init": 0.0, "algo.fixed_order": True, "algo.value_norm": False,
              "total_steps": envs * updates, "chunk_updates": updates}
    happo = {"algo.clip_eps": 2.0, "algo.epochs": 100, "algo.actor_lr": 0.02, "algo.ent_coef": 0.0}
    blocks = [{"algo": "hatrpo", "env": "matrix/differential", "overrides": {"algo.kl_threshold": 0.5},
               "grid": {"algo.use_factor": [True, False]}}]
    if tier != "smoke":  # the paper's figure is HATRPO's; HAPPO is our addition
        blocks.append({"algo": "happo", "env": "matrix/differential", "overrides": happo,
                       "grid": {"algo.use_factor": [True, False]}})
    spec = {"name": "figure1", "seeds": seeds, "overrides": common, "runs": blocks}
    sweep_dir = run_study(out_dir, spec, jobs, in_process)
    runs = _runs_by_name(sweep_dir)
    j: dict[tuple[str, bool], dict[str, float]] = {}
    j0 = []
    for name, (entry, run) in runs.items():
        y = _per_seed(run, "episode_return")
        key = (entry["algo"], bool(entry["overrides"]["algo.use_factor"]))
        j0.append(y[0])
        j[key] = {"after_one": _mean_or_nan(y[1]) if len(y) > 1 else math.nan, "final": _mean_or_nan(y[-1])}
    J0 = _mean_or_nan(np.concatenate(j0)) if j0 else math.nan
    comps = [
        {"claim": "J at the start, mu0 = (-0.25, 0.25)", "paper": FIG1_J0, "ours": J0,
         "holds": abs(J0 - FIG1_J0) < 0.1 if math.isfinite(J0) else None,
         "note": "mean return of the first rollout over all runs and seeds"},
    ]
    for algo in ("hatrpo", "happo"):
        w, wo = j.get((algo, True)), j.get((algo, False))
        if not w or not wo:
            continue
        comps.append({"claim": f"{algo.upper()} with the factor M: J after one update rises",
                      "paper": FIG1_SEQUENTIAL if algo == "hatrpo" else "rises (HAPPO not in Fig. 1)",
                      "ours": w["after_one"], "holds": w["after_one"] > FIG1_J0,
                      "note": "sequential step: agent 2 sees agent 1's new policy"})
        comps.append({"claim": f"{algo.upper()} without the factor (= simultaneous steps): J falls",
                      "paper": FIG1_SIMULTANEOUS if algo == "hatrpo" else "falls",
                      "ours": wo["after_one"], "holds": wo["after_one"] < FIG1_J0,
                      "note": "agent 2 ignores agent 1's move, as in independent trust-region steps"})
        comps.append({"claim": f"{algo.upper()}: J after {updates} updates, with vs without the factor",
                      "paper": "(no claim: the figure is one step)",
                      "ours": f"{_fmt(w['final'])} vs {_fmt(wo['final'])}", "holds": None,
                      "note": "J = mu1 mu2 keeps growing until the actions reach the box [-10, 10] (J <= 99.94); "
                              "how fast depends on the step sizes"})
    return {
        "comparisons": comps,
        "run_dirs": [str(sweep_dir)],
        "environment": [
            "Same game (r = a1 a2, one state). The actions are shifted by env.offset = (-0.25, 0.25) so that "
            "policies initialised at mean ~0 start at the paper's mu0.",
            "The paper's figure is one exact step with unit-variance Gaussians; ours are neural Gaussian policies "
            f"with a learned standard deviation (initial 1), estimated from {envs} samples per update; HATRPO uses "
            "10 CG iterations with damping 0.1 and a line search, so its first step moves the means less than the "
            "exact |delta mu| = 1.",
            "HAPPO (not in the paper's figure) uses the clip 2.0 / 100 epochs / lr 0.02 setting of the library's "
            "Figure 1 test so that one update moves the means as far as a trust-region step.",
        ],
        "metric": "episode_return",
    }


# ---- Kuba et al. 2022, Proposition 1 ----------------------------------------------------------------------

P1_SETTINGS = {"algo.num_envs": 32, "algo.rollout_len": 4, "algo.epochs": 5, "algo.minibatches": 1,
               "algo.actor_head_gain": 1.0, "algo.agent_id": False, "algo.ent_coef": 0.0, "algo.actor_lr": 3e-3,
               "algo.critic_lr": 3e-3}


def _proposition1(out_dir: Path, tier: str, jobs: int = 1, in_process: bool = False) -> dict[str, Any]:
    ns, updates, seeds = {"smoke": ([4], 60, 2), "cpu": ([4, 6], 150, 5), "full": ([2, 4, 6, 8], 300, 10)}[tier]
    common = {**P1_SETTINGS, "total_steps": 128 * updates, "chunk_updates": 10}
    spec = {
        "name": "proposition1", "seeds": seeds, "overrides": common,
        "runs": [
            {"algo": "mappo", "env": "matrix/proposition1", "overrides": {"algo.share_params": True},
             "grid": {"env.n_agents": ns}, "label": "mappo shared"},
            {"algos": ["mappo", "happo"], "env": "matrix/proposition1",
             "overrides": {"algo.share_params": False}, "grid": {"env.n_agents": ns}},
            {"algo": "hatrpo", "env": "matrix/proposition1",  # kl_threshold is HATRPO's own key
             "overrides": {"algo.share_params": False, "algo.kl_threshold": 0.05}, "grid": {"env.n_agents": ns}},
        ],
    }
    sweep_dir = run_study(out_dir, spec, jobs, in_process)
    runs = _runs_by_name(sweep_dir)
    from trustmarl.studies.report import final_scores

    comps = []
    for n in ns:
        cap = 2.0 / 2**n
        for name, (entry, run) in sorted(runs.items()):
            if entry["overrides"].get("env.n_agents") != n:
                continue
            final = final_scores(run, "episode_return")
            shared = bool(entry["overrides"].get("algo.share_params"))
            solved = int(np.sum(final > 0.9))
            if shared:
                comps.append({"claim": f"n={n}: a shared policy reaches at most 2/2^n", "paper": cap,
                              "ours": f"{_fmt(float(np.max(final)))} (max over {len(final)} seeds)",
                              "holds": bool(np.max(final) <= cap + 0.05), "note": entry["label"]})
            else:
                comps.append({"claim": f"n={n}: non-shared {entry['algo'].upper()} reaches the optimum J* = 1",
                              "paper": 1.0, "ours": f"{_fmt(float(np.mean(final)))} (mean; {solved}/{len(final)} seeds > 0.9)",
                              "holds": solved >= math.ceil(0.6 * len(final)), "note": entry["label"]})
    return {
        "comparisons": comps,
        "run_dirs": [str(sweep_dir)],
        "environment": [
            "The game is the paper's (one state, binary actions, reward 1 on the two half/half joint actions); "
            "the paper proves the bound and shows no training curve: ours are short training runs.",
            "The shared policy has no agent id in its input (algo.agent_id=false), as in the proposition; with an "
            "id, a shared network can tell the agents apart and escape the bound.",
        ],
        "metric": "episode_return",
    }


# ---- Kuba et al. 2022, Figure 3: HalfCheetah 2x3 ---------------------------------------------------------------

def _halfcheetah(out_dir: Path, tier: str, jobs: int = 1, in_process: bool = False) -> dict[str, Any]:
    if tier == "smoke":
        common = {"algo.num_envs": 2, "algo.rollout_len": 100, "env.max_episode_steps": 100, "total_steps": 400,
                  "algo.actor_lr": 5e-4, "chunk_updates": 2}
        seeds = 1
    elif tier == "cpu":
        common = {"total_steps": 1_000_000, "algo.actor_lr": 5e-4, "chunk_updates": 5}
        seeds = 3
    else:
        common = {"total_steps": 10_000_000, "chunk_updates": 10}
        seeds = 5
    spec = {"name": "halfcheetah", "seeds": seeds, "overrides": common,
            "algos": ["hatrpo", "happo", "mappo"], "env": "mamujoco/halfcheetah_2x3"}
    sweep_dir = run_study(out_dir, spec, jobs, in_process)
    runs = _runs_by_name(sweep_dir)
    from trustmarl.studies.report import final_scores

    final = {e["algo"]: float(np.mean(final_scores(r, "episode_return"))) for e, r in runs.values()}
    steps = {e["algo"]: (r.summary or {}).get("env_steps") for e, r in runs.values()}
    paper_final = {"hatrpo": 5100, "happo": 4400, "mappo": 3200}
    comps = [{"claim": f"{a.upper()} final return", "paper": f"~{paper_final[a]} at 1e7 steps",
              "ours": f"{_fmt(final.get(a, math.nan), '.4g')} at {steps.get(a)} steps", "holds": None,
              "note": "different MuJoCo/task versions: compare the ordering, not the values"} for a in paper_final]
    if all(a in final for a in paper_final):
        comps.append({"claim": "HATRPO and HAPPO above MAPPO", "paper": "HATRPO ~3500 vs MAPPO ~1700 at 2e6 steps; "
                      "5100/4400/3200 at 1e7", "ours": f"{_fmt(final['hatrpo'], '.4g')} / {_fmt(final['happo'], '.4g')} / "
                      f"{_fmt(final['mappo'], '.4g')}",
                      "holds": (final["hatrpo"] > final["mappo"] and final["happo"] > final["mappo"]) if tier != "smoke" else None,
                      "note": "smoke: a few hundred steps, no claim" if tier == "smoke" else ""})
    return {
        "comparisons": comps,
        "run_dirs": [str(sweep_dir)],
        "environment": [
            "MaMuJoCo from gymnasium-robotics (mamujoco_v1, HalfCheetah-v5 on MuJoCo >= 3) instead of the paper's "
            "HalfCheetah-v2 on mujoco-py/MuJoCo 2.0: returns are not comparable in absolute value.",
            "Full observability (each agent sees the whole observation plus its id), as the paper's code used it.",
            "cpu tier: the paper's batch (4 envs x 1000 steps) but HARL's actor learning rate 5e-4 (the paper's "
            "printed 5e-6 learns nothing in short runs) and 1e6 instead of 1e7 steps; smoke: 100-step episodes.",
            "full tier: the packaged presets (the paper's Table 3/4 settings) at 1e7 steps, 5 seeds.",
        ],
        "metric": "episode_return",
    }


# ---- Sun et al. 2023: the trust region grows with the number of agents ------------------------------------------

SMAX_AGENTS = {"smax/3m": 3, "smax/2s3z": 5, "smax/3s5z": 8, "smax/10m_vs_11m": 10, "smax/27m_vs_30m": 27}


def _decppo_agents(out_dir: Path, tier: str, jobs: int = 1, in_process: bool = False) -> dict[str, Any]:
    eps = 0.1
    # the MAPPO SMAC reference settings (Yu et al. 2021): 15 epochs on one minibatch, lr 5e-4
    ppo = {"algo.clip_eps": eps, "algo.epochs": 15, "algo.minibatches": 1, "algo.actor_lr": 5e-4,
           "algo.critic_lr": 5e-4, "algo.anneal_lr": False}
    if tier == "full":
        spec = {"name": "agents", "seeds": 5, "algo": "ippo", "envs": list(SMAX_AGENTS),
                "overrides": {**ppo, "total_steps": 10_000_000},
                "grid": {"algo.clip_rule": ["fixed", "per_agent"]}}
    else:
        ns, updates, seeds, envs, length = {"smoke": ([2, 4], 12, 2, 4, 32), "cpu": ([2, 4, 8], 150, 3, 16, 128)}[tier]
        spec = {"name": "agents", "seeds": seeds, "algo": "ippo", "env": "mpe/simple_spread",
                "overrides": {**ppo, "algo.num_envs": envs, "algo.rollout_len": length, "algo.sgd_unroll": False,
                              "total_steps": envs * length * updates, "chunk_updates": 6},
                "grid": {"env.n_agents": ns, "algo.clip_rule": ["fixed", "per_agent"]}}
    sweep_dir = run_study(out_dir, spec, jobs, in_process)
    runs = _runs_by_name(sweep_dir)
    tv: dict[str, dict[int, float]] = {"fixed": {}, "per_agent": {}}
    rmax: dict[str, dict[int, float]] = {"fixed": {}, "per_agent": {}}
    for entry, run in runs.values():
        n = int(entry["overrides"].get("env.n_agents") or SMAX_AGENTS.get(entry["env"], 0))
        rule = entry["overrides"]["algo.clip_rule"]
        t = _per_seed(run, "diag/tv_joint")[:, 0]
        w = max(1, int(math.ceil(0.1 * len(t))))
        tv[rule][n] = _mean_or_nan(t[:w])
        rmax[rule][n] = float(np.nanmax(_per_seed(run, "diag/ratio_max")[:, 0]))
    comps = []
    ns_sorted = sorted(tv["fixed"])
    if len(ns_sorted) >= 2:
        lo, hi = ns_sorted[0], ns_sorted[-1]
        g_fixed = tv["fixed"][hi] / tv["fixed"][lo]
        g_per = tv["per_agent"].get(hi, math.nan) / tv["per_agent"].get(lo, math.nan)
        comps.append({
            "claim": f"joint TV grows with N at fixed eps={eps} (Fig. 1c, 2)",
            "paper": f"about proportional to N: x{hi / lo:.3g} from N={lo} to N={hi}; early joint TV < 0.3 -> > 0.5 on SMAC",
            "ours": "; ".join(f"N={n}: {_fmt(tv['fixed'][n])}" for n in ns_sorted) + f" (x{_fmt(g_fixed)})",
            "holds": bool(g_fixed > 1.0), "note": "mean of diag/tv_joint over the first 10% of updates"})
        comps.append({
            "claim": "the eps/N rule (clip_rule=per_agent) keeps the joint TV from growing with N (Section 5, eq. 9)",
            "paper": "joint TV bounded by about eps, whatever N",
            "ours": "; ".join(f"N={n}: {_fmt(tv['per_agent'].get(n, math.nan))}" for n in ns_sorted) + f" (x{_fmt(g_per)})",
            "holds": bool(g_per < g_fixed), "note": "growth factor below the fixed rule's"})
    if ns_sorted:
        worst = max(rmax["fixed"].values())
        comps.append({
            "claim": "clipping does not bound the ratios (Fig. 1a: eps=0.1 gives ratios > 1.2)",
            "paper": "> 1.2", "ours": f"max ratio {_fmt(worst)} (fixed rule, over training and N)",
            "holds": bool(worst > 1 + eps), "note": "diag/ratio_max: max over agents and samples after each update"})
    return {
        "comparisons": comps,
        "run_dirs": [str(sweep_dir)],
        "environment": [
            "The paper measures on SMAC (StarCraft II), which cannot run here. smoke/cpu tiers use MPE simple_spread "
            "with N = 2, 4, 8 agents (the agent count is a free parameter there); the full tier uses SMAX maps with "
            "the SMAC names (3m, 2s3z, 3s5z, 10m_vs_11m, 27m_vs_30m: 3 to 27 agents), whose dynamics differ from SMAC.",
            "IPPO (decentralised critic), the paper's default; eps = 0.1, 15 epochs on one minibatch, lr 5e-4 (the "
            "MAPPO SMAC reference settings; the paper states none); the paper's first-update 100-epoch measurement "
            "is replaced by the diagnostics of ordinary training updates (after all epochs of each update).",
        ],
        "metric": "episode_return",
    }


_LOADED = False


def _load() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    register_reproduction(
        "hatrpo-figure1", _figure1, paper="Kuba et al. 2022 (HATRPO/HAPPO)", figure="Figure 1",
        description="differential game r = a1 a2: with the factor M the sequential update raises J, without it J falls",
        tiers={"smoke": "~1 min (2 CPU cores, measured)", "cpu": "~30 min (2 CPU cores, measured)",
               "full": "~5 h on 2 CPU cores (estimated; 20 seeds x 50 updates), minutes on a GPU"},
    )
    register_reproduction(
        "hatrpo-proposition1", _proposition1, paper="Kuba et al. 2022 (HATRPO/HAPPO)",
        figure="Proposition 1", description="parameter sharing caps J at 2/2^n; non-shared MAPPO/HAPPO/HATRPO reach 1",
        tiers={"smoke": "~2.5 min (2 CPU cores, measured)", "cpu": "~6 min (2 CPU cores, measured)",
               "full": "~40 min on 2 CPU cores (estimated; n = 2..8, 10 seeds)"},
    )
    register_reproduction(
        "hatrpo-halfcheetah", _halfcheetah, paper="Kuba et al. 2022 (HATRPO/HAPPO)",
        figure="Figure 3 (HalfCheetah 2x3)", description="HATRPO and HAPPO above MAPPO on MaMuJoCo HalfCheetah 2x3",
        tiers={"smoke": "~2.5 min (2 CPU cores, measured)",
               "cpu": "~2 h on 2 CPU cores (estimated from 1.4k steps/s measured with 3 seeds)",
               "full": "3 algorithms x 5 seeds x 1e7 steps: ~10 h per run on 2 cores; a cluster (sweep --ray)"},
    )
    register_reproduction(
        "decppo-agents", _decppo_agents, paper="Sun et al. 2023 (trust regions of decentralised PPO)",
        figure="Figures 1a, 1c, 2; Section 5, eq. 9",
        description="the joint TV and ratio range grow with the number of agents; the eps/N clip rule restores them",
        tiers={"smoke": "~2.5 min (2 CPU cores, measured)", "cpu": "~37 min (2 CPU cores, measured)",
               "full": "SMAX, 5 maps x 2 rules x 5 seeds x 1e7 steps: a GPU (not measured)"},
    )
    register_reproduction(
        "matrl-matrix-games", _matrix_games, paper="Wen et al. 2021 (MATRL)", figure="Table 1, Figures 4 and 9",
        description="convergence rate and steps of IGA, IGA-PP, WoLF-IGA and MATRL on random 2x2 games; matching-pennies trajectories",
        tiers={"smoke": "~15 s (2 CPU cores, measured)", "cpu": "~20 s (2 CPU cores under load, measured)",
               "full": "~30 s (2 CPU cores under load, measured; adds 1000 games per family)"},
    )

    from trustmarl.studies import f2a2_repro

    f2a2_repro.register()
    from trustmarl.studies import qmix_smax

    qmix_smax.register()
    register_reproduction(
        "matrl-grid", _matrl_grid, paper="Wen et al. 2021 (MATRL)", figure="Figure 5a-b (Checkers, Switch4)",
        description="PPO-based MATRL, MATRL w/o BR, IL-PP and IL (and the reference-code IL on Checkers), and the VDN, QMIX "
                    "and QTRAN baselines, on the MA-Gym grid worlds, returns summed over agents",
        tiers={"smoke": "~1.5 min for the MATRL variants (2 CPU cores, measured), a few more for the baselines' compiles",
               "cpu": "~2 h for the MATRL variants (2 CPU cores under load: 8 runs x 5 seeds x 400k env steps measured at "
                      "1.8 h, plus the reference-code IL on Checkers), plus the 6 baseline runs (not measured)",
               "full": "~3.2 h on 2 CPU cores for the MATRL variants (estimated from the cpu tier; Switch4 at the paper's "
                       "500 updates), plus the baselines"},
    )
    from trustmarl.studies import mamt_studies as li2022

    register_reproduction(
        "mamt-divergence", li2022.divergence, paper="Li et al. 2022 (MAMT)", figure="Figures 15-18",
        description="per-agent divergence between consecutive policies (kl_delta): MAMT and MAMD below MAAC on Spread-2",
        tiers=li2022.TIER_TIMES["mamt-divergence"],
    )
    register_reproduction(
        "mamt-dilemma", li2022.dilemma, paper="Li et al. 2022 (MAMT)", figure="Figure 8 (Appendix D)",
        description="the trust-region decomposition dilemma: MAAC, MAMD and MAMD-OP on Spread-3 Sep, Mix and Ful",
        tiers=li2022.TIER_TIMES["mamt-dilemma"],
    )
    register_reproduction(
        "mamt-compare", li2022.compare, paper="Li et al. 2022 (MAMT)", figure="main-text comparison (report only)",
        description="MAMT, MAMD, MAAC, MADDPG and MAPPO on Spread-2 and Rover-Tower, deterministic evaluation return",
        tiers=li2022.TIER_TIMES["mamt-compare"],
    )

    register_reproduction(
        "matrl-mujoco", _matrl_mujoco, paper="Wen et al. 2021 (MATRL)", figure="Figures 5c and 9c (Hopper 3x1, Ant 2x4)",
        description="PPO-based MATRL against independent PPO (IL) and MADDPG on Multi-Agent MuJoCo, team return",
        tiers={"smoke": "~1 min of CPU time (2 CPU cores; 4 min wall at a load of 16, measured)",
               "cpu": "~8.8 h on 2 CPU cores at a load of 20 (estimated from measured rates: MATRL and IL 44 min "
                      "each, MADDPG 7.3 h); an idle machine is several times faster",
               "full": "Hopper 3.2 M and Ant 4 M env steps x 5 seeds x 3 methods: days on 2 cores; a cluster"},
    )
    register_reproduction(
        "matrl-pong", _matrl_pong, paper="Wen et al. 2021 (MATRL)", figure="Figure 6 (two-player Pong cross-play)",
        description="MATRL and IL self-play runs on Pong, their kept checkpoints played against each other; needs trustmarl[atari]",
        tiers={"smoke": "~3 min (2 CPU cores at a load of 20, measured)",
               "cpu": "~1.8 h on 2 CPU cores at a load of 20 (estimated: 177 env steps/s measured, 2 runs x 400k "
                      "env steps, 3 x 25 pairs x 4 games)",
               "full": "2 runs x 800k env steps, 3 x 100 pairs x 20 games: about a day on 2 cores"},
    )


def _matrl_pong(out_dir: Path, tier: str) -> dict[str, Any]:
    """MATRL Figure 6 (:func:`trustmarl.studies.matrl_pong.reproduce_matrl_pong`)."""
    from trustmarl.studies.matrl_pong import comparisons, reproduce_matrl_pong

    numbers = reproduce_matrl_pong(Path(out_dir), tier)
    return {"comparisons": comparisons(numbers),
            "environment": ["PettingZoo pong_v3 with the 128-byte RAM as observations and a 2 x 128 MLP, not the "
                            "paper's 84x84x3 images with a small CNN; frame skip 4 in the smoke and cpu tiers",
                            "one seed per method; the cpu tier keeps 5 checkpoints per run and plays 4 games per pair "
                            "(the paper: 10 checkpoints, 20 games)"],
            "numbers": numbers}  # no run report: a zero-sum run's team return is always 0 (the heat maps are the result)


def _matrl_mujoco(out_dir: Path, tier: str) -> dict[str, Any]:
    """MATRL Figures 5c and 9c (:func:`trustmarl.studies.matrl_mujoco.reproduce_matrl_mujoco`)."""
    from trustmarl.studies.matrl_mujoco import comparisons, reproduce_matrl_mujoco

    numbers = reproduce_matrl_mujoco(Path(out_dir), tier)
    return {"comparisons": comparisons(numbers),
            "environment": ["Gymnasium-Robotics MaMuJoCo (MuJoCo >= 3, v5 models) instead of the paper's mujoco-py "
                            "Hopper-v2 / Ant-v2: returns are not comparable in absolute value",
                            "every agent observes the full observation (the authors' code leaves agent_obsk unset)",
                            "IL is MATRL's independent mode with the same PPO settings; MADDPG uses de Witt et al. "
                            "2020's settings and is scored on its training episodes, as the PPO methods are",
                            "the cpu tier runs Hopper 3x1 for 0.5 M of the paper's 3.2 M env steps, 3 seeds"],
            "run_dirs": [str(Path(out_dir) / "runs")], "metric": "episode_return", "numbers": numbers}


def _matrix_games(out_dir: Path, tier: str) -> dict[str, Any]:
    """MATRL Table 1 / Figures 4 and 9 on exact payoffs (:func:`trustmarl.games.reproduce_matrix_games`)."""
    from trustmarl.games.reproduce import reproduce_matrix_games
    from trustmarl.games.table1 import PAPER_TABLE1

    numbers = reproduce_matrix_games(Path(out_dir), tier)
    comparisons = []
    for family, paper_methods in PAPER_TABLE1.items():
        for method, (rate, steps) in paper_methods.items():
            ours = numbers["table1"][family][method]
            comparisons.append({
                "claim": f"{family} games, {method}: convergence rate / mean steps",
                "paper": f"{rate:.3g} / {steps:.1f}", "ours": f"{ours['rate']:.3g} / {ours['mean_steps']:.1f}",
                "holds": None,
            })
    for family in PAPER_TABLE1:  # the paper's ordering: MATRL converges at least as often as IGA, in fewer steps
        t = numbers["table1"][family]
        comparisons.append({
            "claim": f"{family}: MATRL's rate >= IGA's and its mean steps below IGA's",
            "paper": "holds", "ours": f"{t['matrl']['rate']:.3g} vs {t['iga']['rate']:.3g}; {t['matrl']['mean_steps']:.1f} vs {t['iga']['mean_steps']:.1f}",
            "holds": bool(t["matrl"]["rate"] >= t["iga"]["rate"] and t["matrl"]["mean_steps"] < t["iga"]["mean_steps"]),
        })
    return {"comparisons": comparisons,
            "environment": ["exact payoffs of random 2x2 games (the reference code's generators); no sampling"],
            "numbers": numbers}


def _matrl_grid(out_dir: Path, tier: str) -> dict[str, Any]:
    """MATRL Figure 5a-b on the grid worlds (:func:`trustmarl.studies.matrl_grid.reproduce_matrl`)."""
    from trustmarl.studies.matrl_grid import PAPER, reproduce_matrl

    numbers = reproduce_matrl(Path(out_dir), tier)
    res = numbers["results"]
    comparisons = []
    for env, paper in PAPER.items():
        for variant, value in paper.items():
            s = res.get(env, {}).get(variant)
            if s is not None:
                comparisons.append({"claim": f"{env}, {variant}: return summed over agents (last 10% of updates)",
                                    "paper": value, "ours": f"{s['final_return_sum_mean']:.2f} ± {s['final_return_sum_std']:.2f}",
                                    "holds": None})
    for env, by_variant in res.items():  # the paper's ordering: MATRL at least as good as IL and the CTDE baselines
        for other in ("IL", "VDN", "QMIX", "QTRAN"):
            if "MATRL" in by_variant and other in by_variant:
                m, o = by_variant["MATRL"], by_variant[other]
                comparisons.append({"claim": f"{env}: MATRL's return >= {other}'s", "paper": "holds",
                                    "ours": f"{m['final_return_sum_mean']:.2f} vs {o['final_return_sum_mean']:.2f}",
                                    "holds": bool(m["final_return_sum_mean"] >= o["final_return_sum_mean"])})
    return {"comparisons": comparisons,
            "environment": ["MA-Gym Checkers and Switch4 rebuilt in JAX (environments.md); "
                            "the cpu tier runs Switch4 for 200 of the paper's 500 updates"],
            "run_dirs": [str(Path(out_dir) / "runs")], "metric": "episode_return_sum", "numbers": numbers}


__all__ = ["Reproduction", "ReproduceError", "format_list", "get_reproduction", "register_reproduction",
           "reproduce", "reproduction_names", "run_study", "write_docs_page", "write_reproduction_report"]
