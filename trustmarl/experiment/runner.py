"""Train and evaluate runs: jitted chunks of updates, metrics, checkpoints and resumption.

``train`` runs ``cfg.num_seeds`` independent seeds as one ``vmap`` and ``cfg.chunk_updates``
updates as one ``lax.scan`` (a jitted *chunk*); between chunks it writes metrics, shows progress,
checks the losses for NaN/inf, evaluates the deterministic policy every ``eval_every`` env steps
(logged as ``eval/...`` columns and ``final_eval_*`` in the summary) and saves checkpoints. Because the
training state holds everything (parameters, optimiser, normalisers, replay buffers, environment
states, RNG key, counters) and the evaluations use keys of their own, a resumed run ends bitwise equal
to an uninterrupted one. The environment kind decides the backend once
(:mod:`trustmarl.experiment.backends`); the runner never looks inside the algorithm's state.

Run directory::

    config.yaml              resolved config (RunConfig.to_dict())
    metrics.jsonl / .csv     one row per update (see ``logger.chunk_rows``)
    tb/                      TensorBoard events (aggregate scalars, step = env steps of one seed)
    checkpoints/last.npz     latest good state but its bulky data (+ last.json sidecar with the counters):
                             policy, optimisers, normalisers, counters; all that eval/render/load_policy read
    checkpoints/resume_<update>.npz  the bulky data (replay buffers: their filled part only), read to resume
    checkpoints/update_NNNNNNN.npz   with ``checkpoint_keep=K``: the state after every K-th update, kept
    summary.json             result and throughput; ``status`` is "completed", "diverged" or "env_error"

**Host (Python) environments** (``pettingzoo/...``, ``sisl/...``, ``mamujoco/...``,
``pettingzoo:module:attr`` or ``module:attr``) train through :class:`trustmarl.rollout.host.HostTrainer` with the same
run directory, metrics, checkpoints and summary; the chunk is a Python loop over updates instead of a
``lax.scan``. Their env state lives in worker processes, so a resumed host run restores the learner
(parameters, optimisers, normalisers, RNG key, counters) exactly but starts fresh episodes: it is
*not* bitwise-equal to an uninterrupted run. An exception in an env copy (``HostEnvError``) stops the
run with ``status="env_error"`` and a message naming the worker and env; the checkpoint of the last
completed chunk is kept, so the run can be resumed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import yaml

from trustmarl.envs.host import HostEnvError
from trustmarl.envs.host import registry as host_registry
from trustmarl.experiment.backends import as_lists, build_algorithm, make_backend, resolve_devices, total_updates
from trustmarl.experiment.checkpoint import (
    CheckpointError,
    atomic_write_text,
    load_checkpoint,
    read_meta,
    save_checkpoint,
)
from trustmarl.experiment.config import ConfigError, RunConfig, config_from_dict, env_kind, flat_config, read_yaml_mapping
from trustmarl.experiment.logger import MetricsLogger, chunk_rows, nanmean, truncate_metrics

CONFIG_FILE = "config.yaml"
SUMMARY_FILE = "summary.json"
LAST_CHECKPOINT = Path("checkpoints") / "last.npz"
# Run keys that may differ when resuming; everything else must equal the saved config.
RESUMABLE_KEYS = ("total_steps", "env.num_workers", "devices")
LARGE_CHECKPOINT = 100 * 2**20  # bytes: checkpoints this large are reported when written
WRITE_SHARE = 0.05  # at most this share of a run's time goes into writing periodic checkpoints ...
THROTTLE_ABOVE = 0.5  # ... that take longer than this many seconds to write (smaller ones follow checkpoint_every)
RESUME_PREFIX = "resume_"


class RunDirError(ConfigError):
    """A run directory that exists when it should not, or is not a run when it should be."""


# ---- run directories ---------------------------------------------------------------------------

def is_run_dir(path: Path) -> bool:
    return (Path(path) / CONFIG_FILE).is_file()


def load_run_config(run_dir: Path) -> RunConfig:
    """The resolved config saved in a run directory (validated like a new one)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"run directory {str(run_dir)!r} does not exist")
    if not is_run_dir(run_dir):
        raise RunDirError(f"{str(run_dir)!r} is not a trustmarl run directory (no {CONFIG_FILE})")
    return config_from_dict(read_yaml_mapping(run_dir / CONFIG_FILE, "run config", RunDirError))


def resume_config(run_dir: Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """The saved config of ``run_dir`` with the allowed ``overrides`` (only ``total_steps``) applied."""
    cfg = load_run_config(run_dir)
    overrides = dict(overrides or {})
    bad = [k for k in overrides if k not in RESUMABLE_KEYS]
    if bad:
        raise ConfigError(
            f"cannot change {', '.join(bad)} when resuming {str(run_dir)!r}; only {', '.join(RESUMABLE_KEYS)} "
            "may be changed (start a new run for other settings)"
        )
    data = cfg.to_dict()
    data.update(overrides)
    return config_from_dict(data)


def annealed_keys(algo_cfg) -> list[str]:
    """The ``algo.*`` switches that are on and make a schedule depend on the run's length (``total_steps``):
    ``HORIZON_KEYS`` of the hyperparameter class (default ``("anneal_lr",)``). Exploration schedules are
    counted in env steps (``noise_decay_steps``, ...) and never depend on it."""
    return [k for k in getattr(algo_cfg, "HORIZON_KEYS", ("anneal_lr",)) if getattr(algo_cfg, k, False)]


def _check_schedule(cfg: RunConfig, run_dir: Path, rescale: bool) -> None:
    """A new ``total_steps`` on resume continues every schedule counted in env steps as it was. A schedule
    annealed over the run's length (``algo.anneal_lr``) has no single continuation: refuse, naming the option,
    unless ``rescale`` (``--rescale-schedule``) asks for the schedule of a run of the new length."""
    keys = annealed_keys(cfg.algo)
    if not keys or rescale:
        return
    counters = read_meta(run_dir / LAST_CHECKPOINT)["counters"]
    saved, new = int(counters.get("total_updates", 0)), total_updates(cfg)
    if new == saved:
        return
    update = int(counters.get("update", 0))
    switches = ", ".join(f"algo.{k}=true" for k in keys)
    raise ConfigError(
        f"{str(run_dir)!r} anneals over {saved} updates ({switches}) and is at update {update}, where its learning "
        f"rate is {max(0.0, 1 - update / saved):.3g} x the initial one; total_steps={cfg.total_steps} ({new} updates) "
        f"would change that schedule: add --rescale-schedule to continue on the schedule of a {new}-update run "
        f"({max(0.0, 1 - update / new):.3g} x now, falling to 0 at update {new}), or start a new run"
    )


def _check_resume_compatible(saved: RunConfig, cfg: RunConfig, run_dir: Path) -> None:
    a, b = _flat(saved.to_dict()), _flat(cfg.to_dict())
    diff = [k for k in sorted(set(a) | set(b)) if k not in RESUMABLE_KEYS and a.get(k) != b.get(k)]
    if diff:
        raise ConfigError(
            f"config differs from the one saved in {str(run_dir)!r} in {', '.join(diff)}; "
            f"only {', '.join(RESUMABLE_KEYS)} may change when resuming"
        )


_flat = flat_config  # one level: {"algo": {"lr": 1}} -> {"algo.lr": 1}


def _check_new_dir(out_dir: Path, overwrite: bool) -> None:
    """Raise if ``out_dir`` may not become a new run; changes nothing on disk."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise RunDirError(f"{str(out_dir)!r} exists and is not a directory")
        if any(out_dir.iterdir()):
            if not overwrite:
                raise RunDirError(
                    f"run directory {str(out_dir)!r} already exists; use --overwrite to replace it "
                    "or --resume to continue it"
                )
            if not is_run_dir(out_dir):
                raise RunDirError(
                    f"{str(out_dir)!r} is not empty and not a trustmarl run; refusing to delete it"
                )


def _create_new_dir(out_dir: Path) -> None:
    """Replace a checked, overwritable run directory by an empty one (only after all validation)."""
    if out_dir.exists() and any(out_dir.iterdir()):
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)


# ---- divergence --------------------------------------------------------------------------------

def find_divergence(metrics: dict[str, np.ndarray], first_update: int) -> str | None:
    """A message naming the first non-finite ``loss/...`` metric (update, seed), or ``None``.

    Updates that did no learning (``diag/learning == 0``, e.g. an off-policy warm-up) have no losses
    (NaN) and are not checked."""
    learned = metrics.get("diag/learning")
    worst: tuple[int, str, int] | None = None
    for name in sorted(metrics):
        if not name.startswith("loss/"):
            continue
        bad = ~np.isfinite(np.asarray(metrics[name], dtype=np.float64))
        if bad.any():
            bad = bad.reshape(bad.shape[0], bad.shape[1], -1).any(axis=-1)  # [seeds, updates]
            if learned is not None:
                bad &= np.asarray(learned) > 0
            if not bad.any():
                continue
            seeds, steps = np.nonzero(bad)
            t = int(steps.min())
            seed = int(seeds[steps == t].min())
            if worst is None or t < worst[0]:
                worst = (t, name, seed)
    if worst is None:
        return None
    t, name, seed = worst
    value = np.asarray(metrics[name], dtype=np.float64)[seed, t]
    return f"{name} is {np.ravel(value)[~np.isfinite(np.ravel(value))][0]} at update {first_update + t + 1} (seed {seed})"


# ---- summary -----------------------------------------------------------------------------------

def _window_return(per_seed: np.ndarray, first: bool) -> tuple[float, list[float]]:
    """NaN-aware mean return of the first or last 10% of updates (at least one), per seed and mean.

    A seed with no finished episode in that window (long episodes, e.g. 1000-step MaMuJoCo ones with
    few steps per update) uses its first / last ``w`` updates that have one instead."""
    n = per_seed.shape[0]
    if n == 0:
        return float("nan"), []
    w = max(1, int(math.ceil(0.1 * n)))
    window = per_seed[:w] if first else per_seed[-w:]
    seeds = []
    for k in range(window.shape[1]):
        value = nanmean(window[:, k])
        if math.isnan(value):
            finite = per_seed[:, k][np.isfinite(per_seed[:, k])]
            value = nanmean(finite[:w] if first else finite[-w:])
        seeds.append(value)
    return nanmean(seeds), seeds


def _per_seed_returns(rows: list[dict[str, Any]], num_seeds: int, name: str = "episode_return") -> np.ndarray:
    return np.array(
        [[float(r.get(f"{name}/seed_{k}", float("nan"))) for k in range(num_seeds)] for r in rows],
        dtype=np.float64,
    ).reshape(len(rows), num_seeds)


def _per_agent_window(rows: list[dict[str, Any]], name: str, first: bool = False) -> list[float]:
    """NaN-aware mean over the last (or first) 10% of updates of the per-agent columns ``name/agent_i`` (seed mean)."""
    agents = sorted({int(k.rsplit("_", 1)[1]) for r in rows for k in r if k.startswith(f"{name}/agent_")})
    if not rows or not agents:
        return []
    w = max(1, int(math.ceil(0.1 * len(rows))))
    window = rows[:w] if first else rows[-w:]
    return [nanmean([float(r.get(f"{name}/agent_{i}", float("nan"))) for r in window]) for i in agents]


def is_zero_sum(rows: list[dict[str, Any]]) -> bool:
    """Whether the run's episodes are zero-sum: the returns summed over agents are 0 in every logged update
    while some agent's return is not (matching pennies, Pong). There the team mean is always 0 and says
    nothing, so the progress bar and the summary show each agent's return instead."""
    sums = np.array([r.get("episode_return_sum") for r in rows], dtype=np.float64)
    agents = np.array([[v for k, v in r.items() if k.startswith("episode_return_per_agent/agent_")] for r in rows],
                      dtype=np.float64)
    sums, agents = sums[np.isfinite(sums)], agents[np.isfinite(agents)]
    if not sums.size or not agents.size or np.abs(agents).max() == 0:
        return False
    return bool(np.abs(sums).max() <= 1e-5 * (1.0 + np.abs(agents).max()))


def _action_probabilities(rows: list[dict[str, Any]]) -> list[list[float]]:
    """``[agent][action]`` means over the last 10% of updates of ``diag/action_prob_<a>_per_agent/agent_<i>``."""
    names = sorted({k.split("/")[1] for r in rows[-1:] for k in r if k.startswith("diag/action_prob_")},
                   key=lambda n: int(n[len("action_prob_"):-len("_per_agent")]))
    if not names:
        return []
    actions = [f"diag/{n}" for n in names]
    agents = _per_agent_window(rows, actions[0])
    return [[_per_agent_window(rows, a)[i] for a in actions] for i in range(len(agents))]


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _summary(cfg, run_dir, rows, status, updates, env_steps, session, wall_total, message=None,
             last_eval: dict[str, Any] | None = None) -> dict[str, Any]:
    per_seed = _per_seed_returns(rows, cfg.num_seeds)
    final, final_seeds = _window_return(per_seed, first=False)
    initial, initial_seeds = _window_return(per_seed, first=True)
    steps_all = session["steps"] * cfg.num_seeds
    steady_steps = (session["steps"] - session["first_chunk_steps"]) * cfg.num_seeds
    steady_time = session["wall"] - session["first_chunk_end"]
    out = {
        "status": status,
        "algo": cfg.algo.name,
        "env": cfg.env.name,
        "num_seeds": cfg.num_seeds,
        "seed": cfg.seed,
        "updates": updates,
        "env_steps": env_steps,
        "env_steps_all_seeds": env_steps * cfg.num_seeds,
        "wall_seconds": session["wall"],
        "wall_seconds_total": wall_total,
        "steps_per_second": steps_all / session["wall"] if session["wall"] > 0 and steps_all else None,
        "steady_steps_per_second": steady_steps / steady_time if steady_steps > 0 and steady_time > 0 else None,
        "initial_return": initial,
        "initial_return_per_seed": initial_seeds,
        "final_return": final,
        "final_return_per_seed": final_seeds,
    }
    if rows and any("episode_return_sum/seed_0" in r for r in rows):  # general-sum games: the sum over agents
        out["initial_return_sum"] = _window_return(_per_seed_returns(rows, cfg.num_seeds, "episode_return_sum"), True)[0]
        out["final_return_sum"], out["final_return_sum_per_seed"] = _window_return(
            _per_seed_returns(rows, cfg.num_seeds, "episode_return_sum"), first=False
        )
        out["final_return_per_agent"] = _per_agent_window(rows, "episode_return_per_agent")
        if is_zero_sum(rows):  # the team return is always 0: each agent's return is the result
            out["zero_sum"] = True
            out["initial_return_per_agent"] = _per_agent_window(rows, "episode_return_per_agent", first=True)
    probs = _action_probabilities(rows)
    if probs:  # what the policies do (MATRL on small discrete games): a flat zero-sum return says nothing
        out["final_action_probs_per_agent"] = probs
    outcomes = sorted({k for r in rows for k in r if k.startswith("episode_") and "/" not in k}
                      - {"episode_return", "episode_return_sum", "episode_length"})
    if outcomes:
        out["outcomes"] = [name[8:] for name in outcomes]
    for name in outcomes:  # env outcomes such as SMAX's episode_win_rate, over the last 10% of updates
        out[f"final_{name[8:]}"], out[f"final_{name[8:]}_per_seed"] = _window_return(
            _per_seed_returns(rows, cfg.num_seeds, name), first=False
        )
    for k, v in (rows[-1] if rows else {}).items():  # communication totals so far (decentralised training; 0 if centralised)
        if k.startswith("comm/") and k.endswith("_total") and "/seed_" not in k:
            out[k] = v
    if last_eval:  # the last periodic evaluation (deterministic policy)
        out["final_eval_update"] = last_eval["update"]
        out["final_eval_env_steps"] = last_eval["env_steps"]
        for k, v in last_eval["result"].items():
            arr = np.asarray(v, np.float64)
            out[f"final_eval_{k}"] = nanmean(arr) if arr.ndim == 1 else [nanmean(arr[:, i]) for i in range(arr.shape[1])]
            if arr.ndim == 1:
                out[f"final_eval_{k}_per_seed"] = arr.tolist()
    out["run_dir"] = str(run_dir)
    if message:
        out["message"] = message
    return out


def _fmt(x: Any, spec: str = ".4g") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def _print_result(summary: dict[str, Any], out=None) -> None:
    out = out or sys.stdout
    s = summary
    extra = ""
    if "final_return_sum" in s:
        extra += f"; sum over agents {_fmt(s.get('initial_return_sum'))} -> {_fmt(s['final_return_sum'])}"
    if "final_eval_return" in s:
        extra += f"; evaluation return {_fmt(s['final_eval_return'])} (deterministic, update {s['final_eval_update']})"
    for name in s.get("outcomes", []):  # env outcomes, e.g. SMAX's win rate
        extra += f"; final {name.replace('_', ' ')} " + _fmt(s[f"final_{name}"], ".3g")
    if s.get("final_action_probs_per_agent"):
        extra += "; action probabilities per agent " + ", ".join(
            "[" + " ".join(_fmt(p, ".2f") for p in agent) + "]" for agent in s["final_action_probs_per_agent"])
    result = f"return {_fmt(s['initial_return'])} -> {_fmt(s['final_return'])} (first -> last 10% of updates){extra}"
    if s.get("zero_sum"):  # never the team mean (always 0): each agent's return
        agents = lambda v: "[" + ", ".join(_fmt(x) for x in v) + "]"  # noqa: E731
        result = (f"returns per agent {agents(s['initial_return_per_agent'])} -> {agents(s['final_return_per_agent'])} "
                  f"(first -> last 10% of updates; zero-sum: they sum to 0)")
        if s.get("final_action_probs_per_agent"):
            result += "; action probabilities per agent " + ", ".join(
                "[" + " ".join(_fmt(p, ".2f") for p in agent) + "]" for agent in s["final_action_probs_per_agent"])
    print(
        f"{s['algo']} on {s['env']} ({s['num_seeds']} seed{'s' if s['num_seeds'] != 1 else ''}, "
        f"{s['env_steps']} env steps each): {result}; {_fmt(s['steps_per_second'], '.0f')} steps/s overall, "
        f"{_fmt(s['steady_steps_per_second'], '.0f')} steps/s after compilation",
        file=out,
    )
    print(f"run saved to {s['run_dir']}", file=out)


# ---- checkpoints ---------------------------------------------------------------------------------

def write_checkpoint(ckpt: Path, algo, state, counters: dict[str, Any], keep_old: bool = False) -> int:
    """Save ``state`` as ``ckpt`` plus, for an algorithm with bulky data (:meth:`Algorithm.split_bulk`:
    replay buffers), ``resume_<update>.npz`` beside it holding that data's filled part. The bulk is
    written first and ``ckpt`` names it, so a process killed in between leaves a consistent pair; older
    bulk files are then removed (unless ``keep_old``). Returns the bytes written."""
    ckpt = Path(ckpt)
    core, bulk = algo.split_bulk(state)
    written = 0
    if bulk is not None:
        name = f"{RESUME_PREFIX}{int(counters['update']):07d}.npz"
        save_checkpoint(ckpt.with_name(name), algo.trim_bulk(bulk), {"update": counters["update"]}, sidecar=False)
        counters = {**counters, "resume_file": name}
        written += ckpt.with_name(name).stat().st_size
    save_checkpoint(ckpt, core, counters)
    written += ckpt.stat().st_size
    if bulk is not None and not keep_old:
        for old in ckpt.parent.glob(f"{RESUME_PREFIX}*.npz"):
            if old.name != counters["resume_file"]:
                old.unlink(missing_ok=True)
    return written


def read_checkpoint(ckpt: Path, algo, template, policy_only: bool = False):
    """``(state, counters)`` of a checkpoint written by :func:`write_checkpoint` (``template``: the full
    state's shapes). ``policy_only``: without the bulky data (the state's bulk field is ``None``), which is
    then never read: what evaluation and rendering need. Also reads checkpoints holding everything in one file."""
    ckpt = Path(ckpt)
    core_t, bulk_t = algo.split_bulk(template)
    if bulk_t is None:
        return load_checkpoint(ckpt, template)
    counters = read_meta(ckpt)["counters"]
    if "resume_file" not in counters:  # one file with everything (written before the bulk had a file of its own)
        if not policy_only:
            return load_checkpoint(ckpt, template)
        core_paths = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(core_t)[0]}
        bulk = {jax.tree_util.keystr(p[:1]) for p, _ in jax.tree_util.tree_flatten_with_path(template)[0]
                if jax.tree_util.keystr(p) not in core_paths}  # the bulk's fields, in whatever layout it was saved
        return load_checkpoint(ckpt, core_t, ignore=tuple(sorted(bulk)))
    core, counters = load_checkpoint(ckpt, core_t)
    if policy_only:
        return core, counters
    bulk_file = ckpt.with_name(counters["resume_file"])
    if not bulk_file.is_file():
        raise CheckpointError(f"checkpoint {ckpt} needs {bulk_file.name} beside it to resume, which is missing")
    bulk, _ = load_checkpoint(bulk_file, bulk_t, flexible_axis=1)  # [seeds, time, ...]: time is the filled part
    return algo.join_bulk(core, bulk, template), counters


# ---- training ----------------------------------------------------------------------------------

def _check_run_dir(cfg: RunConfig | None, out_dir: Path, resume: bool, overwrite: bool) -> RunConfig:
    """Validate (resume) or prepare (new run) ``out_dir``; returns the config to run."""
    if not resume:
        if cfg is None:
            raise ValueError("train() needs a config unless resume=True")
        _check_new_dir(out_dir, overwrite)
        return cfg
    saved = load_run_config(out_dir)
    if not (out_dir / LAST_CHECKPOINT).is_file():
        raise RunDirError(f"{str(out_dir)!r} has no checkpoint ({LAST_CHECKPOINT}); nothing to resume")
    if cfg is None:
        return saved
    _check_resume_compatible(saved, cfg, out_dir)
    return cfg


def _restore(backend, total: int, out_dir: Path):
    """Last checkpoint of a run: ``(state, counters, metrics rows)``; rows written after the
    checkpoint (a killed run) are dropped from the files."""
    state, counters = read_checkpoint(out_dir / LAST_CHECKPOINT, backend.algo, backend.template())
    update = int(counters["update"])
    if update > total:
        raise ConfigError(
            f"total_steps={backend.cfg.total_steps} gives {total} updates but the run is already at update {update}"
        )
    rows = truncate_metrics(out_dir, update)
    (out_dir / SUMMARY_FILE).unlink(missing_ok=True)  # written again when this session ends
    return state, counters, rows


def train(
    cfg: RunConfig | None,
    out_dir: Path,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    stop_after_chunks: int | None = None,
    keep_checkpoints: bool = False,
    tensorboard: bool = True,
    rescale_schedule: bool = False,
) -> dict[str, Any]:
    """Train ``cfg`` into ``out_dir`` and return the summary (also written to ``summary.json``).

    ``resume=True`` continues the run saved in ``out_dir`` from its last checkpoint (``cfg`` may be
    ``None`` to use the saved config; otherwise it must equal it except for ``total_steps``). Schedules
    counted in env steps (exploration) continue as they were; a learning rate annealed over the run's
    length (``algo.anneal_lr``) refuses a new ``total_steps`` unless ``rescale_schedule``, which continues
    on the schedule of a run of the new length (``lr * (1 - update / new_updates)``).
    ``stop_after_chunks`` stops after that many chunks of this call *as if the process were killed*
    (no extra checkpoint, no summary; returns ``{"status": "stopped", ...}``) - for tests.
    ``keep_checkpoints`` also keeps a numbered checkpoint at every save. Raises ``RunDirError`` or
    ``ConfigError`` for bad directories/configs before anything is compiled.
    """
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    cfg = _check_run_dir(cfg, out_dir, resume, overwrite)
    if not resume and cfg.fixed_policy not in (None, "random"):  # saved absolute: a resume from another
        cfg = dataclasses.replace(cfg, fixed_policy=str(Path(cfg.fixed_policy).resolve()))  # directory finds it
    resolve_devices(cfg)  # more devices than this machine has: one line before anything is built
    if resume:
        _check_schedule(cfg, out_dir, rescale_schedule)
    algo = build_algorithm(cfg)  # may raise ConfigError: nothing on disk is touched yet
    backend = make_backend(cfg, algo)
    try:
        run = _Run(cfg, out_dir, backend, t_start, progress, keep_checkpoints, tensorboard)
        if resume:
            state, counters, rows = _restore(backend, run.total, out_dir)
            run.restore(counters, rows)
            state = backend.resume(state, run.update)
        else:
            _create_new_dir(out_dir)
            state = backend.init()
        return run.loop(state, stop_after_chunks)
    finally:
        backend.close()


class _Run:
    """The chunk loop of ``train``: metrics, progress, evaluation, NaN checks, checkpoints, summary."""

    def __init__(self, cfg, out_dir, backend, t_start, progress, keep_checkpoints, tensorboard):
        self.cfg, self.out_dir, self.backend, self.t_start = cfg, out_dir, backend, t_start
        self.progress, self.keep_checkpoints, self.tensorboard = progress, keep_checkpoints, tensorboard
        self.spu = int(backend.algo.steps_per_update)
        self.total = total_updates(cfg)
        self.update, self.env_steps, self.wall_before, self.rows = 0, 0, 0.0, []
        self.resumed, self.last_saved, self.last_eval = False, -1, None
        self.last_save_time, self.last_size, self.write_seconds, self.bar = -math.inf, 0, 0.0, None
        self.last_return = math.nan  # the progress bar's training return, kept while no episode ends

    def restore(self, counters: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        self.update, self.env_steps = int(counters["update"]), int(counters["env_steps"])
        self.wall_before, self.rows = float(counters["wall_seconds"]), rows
        self.resumed, self.last_saved = True, self.update
        self.last_eval = counters.get("last_eval")

    def counters(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "update": self.update, "env_steps": self.env_steps, "total_updates": self.total,
            "steps_per_update": self.spu, "wall_seconds": self.wall_before + time.perf_counter() - self.t_start,
            "num_seeds": cfg.num_seeds, "algo": cfg.algo.name, "env": cfg.env.name, "last_eval": self.last_eval,
        }

    def keep_due(self) -> bool:
        """Whether the state after ``self.update`` is a numbered checkpoint to keep (run key ``checkpoint_keep``)."""
        k = self.cfg.checkpoint_keep
        return bool(k) and self.update > 0 and self.update % k == 0

    def save(self, state) -> None:
        ckpt = self.out_dir / LAST_CHECKPOINT
        t0 = time.perf_counter()
        size = self.last_size = write_checkpoint(ckpt, self.backend.algo, state, self.counters(), self.keep_checkpoints)
        if self.keep_checkpoints or self.keep_due():
            shutil.copyfile(ckpt, ckpt.with_name(f"update_{self.update:07d}.npz"))
        self.last_saved, self.last_save_time = self.update, time.perf_counter()
        self.write_seconds = self.last_save_time - t0
        if size >= LARGE_CHECKPOINT:  # replay buffers: say what is being written
            message = f"checkpoint at update {self.update}: {size / 2**20:.0f} MB in {self.write_seconds:.1f} s ({ckpt.parent})"
            (self.bar.write if self.bar is not None else lambda m: print(m, file=sys.stderr))(message)

    def periodic_save_due(self, chunk_i: int) -> bool:
        """Every ``checkpoint_every`` chunks or ``checkpoint_seconds`` after the last checkpoint, whichever
        comes first, but never sooner than ``1 / WRITE_SHARE`` (20) times the last write's duration after it
        when that took over ``THROTTLE_ABOVE`` seconds: writing checkpoints (replay buffers: hundreds of MB)
        takes at most ~5% of the run's time."""
        since = time.perf_counter() - self.last_save_time
        if self.write_seconds > THROTTLE_ABOVE and since < self.write_seconds / WRITE_SHARE:
            return False
        return chunk_i % self.cfg.checkpoint_every == 0 or since >= self.cfg.checkpoint_seconds

    def chunk_length(self) -> int:
        """Updates in the next chunk: ``chunk_updates``, cut at the end of training and at the next evaluation.
        A run that fits in one chunk goes in tenths (the same compiled program), so its progress bar moves."""
        n = min(self.cfg.chunk_updates, self.total - self.update)
        if self.total <= self.cfg.chunk_updates:
            n = min(n, max(1, -(-self.total // 10)))
        every = self.cfg.eval_every
        if every:
            next_eval = (self.env_steps // every + 1) * every  # env steps of the next evaluation
            n = min(n, max(1, -(-(next_eval - self.env_steps) // self.spu)))
        keep = self.cfg.checkpoint_keep
        if keep:  # end the chunk at the next kept checkpoint
            n = min(n, keep - self.update % keep)
        return n

    def evaluate(self, state, update: int, env_steps: int) -> dict[str, Any] | None:
        """A deterministic evaluation of ``state`` (after ``update``) when the chunk that produced it crossed a
        multiple of ``eval_every`` env steps or ended training."""
        every = self.cfg.eval_every
        if not every or (env_steps // every == self.env_steps // every and update < self.total):
            return None
        result = self.backend.evaluate(state, self.cfg.eval_episodes)
        self.last_eval = {"update": update, "env_steps": env_steps, "result": as_lists(result)}
        return result

    def loop(self, state, stop_after_chunks: int | None) -> dict[str, Any]:
        cfg, out_dir = self.cfg, self.out_dir
        atomic_write_text(out_dir / CONFIG_FILE, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        logger = MetricsLogger(out_dir, tensorboard=self.tensorboard, purge_step=self.env_steps + 1 if self.resumed else None)
        session = {"steps": 0, "first_chunk_steps": 0, "first_chunk_end": 0.0, "wall": 0.0}
        bar = self.bar = _progress_bar(self.progress, self.total * self.spu, self.env_steps, cfg)
        status, message, chunk_i = "completed", None, 0
        if not self.resumed:
            self.save(state)  # update 0: a run killed during its first chunk can still be resumed
        try:
            while self.update < self.total:
                n = self.chunk_length()
                if bar is not None and chunk_i == 0:  # the first chunk compiles first (seconds to minutes)
                    bar.set_postfix_str("compiling the first chunk", refresh=True)
                try:
                    new_state, metrics = self.backend.run(state, n)
                except HostEnvError as e:  # a host env copy raised (or its worker died): stop, stay resumable
                    status = "env_error"
                    message = (
                        f"a host environment failed during updates {self.update + 1}-{self.update + n}: {e}\n"
                        f"kept the last good checkpoint (update {self.update}); continue with: "
                        f"trustmarl train --resume {out_dir}"
                    )
                    if self.last_saved != self.update:
                        self.save(state)
                    break
                metrics = jax.device_get(metrics)
                elapsed = time.perf_counter() - self.t_start
                new_rows = chunk_rows(metrics, self.update, self.wall_before + elapsed)
                diverged = find_divergence(metrics, self.update)
                if diverged:
                    logger.write(new_rows)
                    self.rows.extend(new_rows)
                    status = "diverged"
                    if self.last_saved != self.update and _alive(state):
                        self.save(state)  # the state before this chunk is the last good one
                    message = f"training diverged: {diverged}; kept the last good checkpoint (update {self.last_saved})"
                    break
                new_update = self.update + n
                new_steps = new_rows[-1]["env_steps"] if new_rows[-1]["env_steps"] is not None else new_update * self.spu
                evaluation = self.evaluate(new_state, new_update, new_steps)
                if evaluation is not None:
                    new_rows[-1].update(eval_columns(evaluation))
                logger.write(new_rows)  # the rows before the state: a run interrupted here resumes from the last chunk
                self.rows.extend(new_rows)
                session["steps"] += new_steps - self.env_steps
                state, self.update, self.env_steps = new_state, new_update, new_steps
                chunk_i += 1
                if chunk_i == 1:
                    session["first_chunk_steps"], session["first_chunk_end"] = session["steps"], elapsed
                value = nanmean([r.get(self.backend.algo.PROGRESS_METRIC, math.nan) for r in new_rows])
                self.last_return = self.last_return if math.isnan(value) else value
                if bar is not None:
                    bar.set_postfix(_postfix(self.backend.algo, new_rows, self.last_eval, self.last_return), refresh=False)
                    bar.update(n * self.spu)
                if self.periodic_save_due(chunk_i) or self.update >= self.total or self.keep_due():
                    self.save(state)
                if stop_after_chunks is not None and chunk_i >= stop_after_chunks and self.update < self.total:
                    return {"status": "stopped", "updates": self.update, "env_steps": self.env_steps, "run_dir": str(out_dir)}
            if self.update >= self.total and self.last_saved != self.update:
                self.save(state)
        except KeyboardInterrupt:
            if self.last_saved != self.update and _alive(state):
                self.save(state)  # ``state`` is the last completed chunk (``update`` counts it)
            elif self.last_saved != self.update:  # the interrupted chunk had been handed the state (donated)
                print(f"trustmarl: interrupted during a chunk that updates the state in place; the last checkpoint is "
                      f"at update {self.last_saved}", file=sys.stderr)
            raise
        finally:
            if bar is not None:
                bar.close()
            logger.close()

        session["wall"] = time.perf_counter() - self.t_start
        summary = _summary(
            cfg, out_dir, [r for r in self.rows if r["update"] <= self.update], status, self.update, self.env_steps,
            session, self.wall_before + session["wall"], message, self.last_eval,
        )
        atomic_write_text(out_dir / SUMMARY_FILE, json.dumps(_json_safe(summary), indent=2) + "\n")
        if status in ("diverged", "env_error"):
            print(f"trustmarl: {message}", file=sys.stderr)
        _print_result(summary)
        return summary


def _alive(state) -> bool:
    """Whether ``state`` still holds its arrays (a chunk that was donated the state deletes them)."""
    return not any(getattr(x, "is_deleted", lambda: False)() for x in jax.tree.leaves(state))


def eval_columns(result: dict[str, np.ndarray]) -> dict[str, float]:
    """A metrics-row view of a per-seed evaluation: ``eval/<name>`` (seed mean), ``eval/<name>/seed_k``
    and, for per-agent results, ``eval/<name>/agent_i``."""
    row: dict[str, float] = {}
    for name, v in result.items():
        v = np.asarray(v, np.float64)
        if v.ndim == 1:
            row[f"eval/{name}"] = nanmean(v)
            row.update({f"eval/{name}/seed_{k}": float(x) for k, x in enumerate(v)})
        else:
            row.update({f"eval/{name}/agent_{i}": nanmean(v[:, i]) for i in range(v.shape[1])})
    return row


def _postfix(algo, rows: list[dict[str, Any]], last_eval: dict[str, Any] | None, last_return: float) -> dict[str, str]:
    """The progress bar's fields after a chunk: ``ret``, the mean of the algorithm's ``PROGRESS_METRIC`` over
    the chunk's updates (``last_return`` when no episode ended in it), the last evaluation's return, per-agent
    returns, the env's outcomes (``episode_<key>`` from ``TimeStep.info``, e.g. SMAX's win rate) and the
    algorithm's own fields (:meth:`Algorithm.progress_postfix`)."""
    value = nanmean([r.get(algo.PROGRESS_METRIC, math.nan) for r in rows])
    post = {"ret": _fmt(last_return if math.isnan(value) else value)}
    agents = sorted(k for k in rows[-1] if k.startswith("episode_return_per_agent/agent_"))
    if is_zero_sum(rows):  # zero-sum: the team mean is always 0; each agent's return instead
        post = {"agents": "[" + ",".join(_fmt(nanmean([r.get(k, math.nan) for r in rows]), ".3g") for k in agents) + "]"}
    elif 1 < len(agents) <= 4:  # per-agent returns (general-sum games), and their sum
        post["agents"] = "[" + ",".join(_fmt(nanmean([r.get(k, math.nan) for r in rows]), ".3g") for k in agents) + "]"
        post["sum"] = _fmt(nanmean([r.get("episode_return_sum", math.nan) for r in rows]))
    for k in sorted(k for k in rows[-1] if k.startswith("episode_") and "/" not in k and k not in _EPISODE_STATS):
        post[k[len("episode_"):]] = _fmt(nanmean([r.get(k, math.nan) for r in rows]), ".2f")  # env outcomes
    if last_eval is not None:
        post["eval"] = _fmt(nanmean(last_eval["result"]["return"]))
    post.update(algo.progress_postfix(rows[-1]))
    return post


_EPISODE_STATS = ("episode_return", "episode_return_sum", "episode_length")


def _progress_bar(progress: bool, total: int, initial: int, cfg: RunConfig):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, unit="step", unit_scale=True, dynamic_ncols=True, mininterval=0,  # once a chunk
        desc=f"{cfg.algo.name} {cfg.env.name}", file=sys.stderr,
    )


# ---- evaluation --------------------------------------------------------------------------------

def with_env_params(cfg: RunConfig, env_params: dict[str, Any] | None) -> RunConfig:
    """``cfg`` with some env keys replaced (the same env at another size, e.g. MAgent2 battle's ``map_size``)."""
    if not env_params:
        return cfg
    return dataclasses.replace(cfg, env=dataclasses.replace(cfg.env, params={**cfg.env.params, **env_params}))


def load_run_state(run_dir: Path, policy_only: bool = False, env_params: dict[str, Any] | None = None):
    """``(cfg, algo, state, counters)`` of the last checkpoint of a run (``state`` has a leading seed axis).
    ``policy_only``: without the bulky data only training needs (replay buffers; their field is ``None``).
    ``env_params``: load the policy for the same env with these keys changed (transfer, e.g. a larger map);
    ``ConfigError`` when its parameters do not fit there (e.g. one network per agent and more agents)."""
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    ckpt = run_dir / LAST_CHECKPOINT
    if not ckpt.is_file():
        raise RunDirError(f"{str(run_dir)!r} has no checkpoint ({LAST_CHECKPOINT})")
    algo = build_algorithm(cfg, int(read_meta(ckpt)["counters"].get("total_updates", 1)))
    template = make_backend(cfg, algo).template()  # shapes only: no env is started, nothing allocated
    state, counters = read_checkpoint(ckpt, algo, template, policy_only or bool(env_params))
    if env_params:
        cfg = with_env_params(cfg, env_params)
        new = build_algorithm(cfg, int(counters.get("total_updates", 1)))
        state = transfer_state(algo, state, new, make_backend(cfg, new).template(), f"the policy of {str(run_dir)!r}",
                               f"{cfg.env.name} with {env_params}")
        algo = new
    return cfg, algo, state, counters


def transfer_state(algo, state, new_algo, new_template, what: str, where: str):
    """``state`` (policy only, leading seed axis) of ``algo`` as a state of ``new_algo`` (the same algorithm on the
    env with other keys): every leaf whose shape is unchanged is kept, the others (e.g. the last observations of
    more agents) start from zeros; ``ConfigError`` unless the policy itself (``policy_view``) is unchanged, e.g.
    a network per agent or an agent id cannot act for more agents."""
    core_t, _ = new_algo.split_bulk(new_template)
    old = {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_flatten_with_path(state)[0]}
    paths, treedef = jax.tree_util.tree_flatten_with_path(core_t)
    leaves = []
    for p, t in paths:
        x = old.get(jax.tree_util.keystr(p))
        same = x is not None and tuple(np.shape(x)) == tuple(t.shape)
        leaves.append(jax.numpy.asarray(x, t.dtype) if same else jax.numpy.zeros(t.shape, t.dtype))
    new_state = jax.tree_util.tree_unflatten(treedef, leaves)
    want = jax.vmap(algo.policy_view)(state)
    got = jax.vmap(new_algo.policy_view)(new_state)
    wl, gl = jax.tree_util.tree_flatten_with_path(want)[0], jax.tree_util.tree_flatten_with_path(got)[0]
    for (p, w), (_, g) in zip(wl, gl):
        if np.shape(w) != np.shape(g) or not np.array_equal(np.asarray(w), np.asarray(g)):
            raise ConfigError(f"{what} does not fit {where}: its {jax.tree_util.keystr(p)} has shape {tuple(np.shape(w))}, "
                              f"there {tuple(np.shape(g))}")
    if len(wl) != len(gl):
        raise ConfigError(f"{what} does not fit {where}: its policy has {len(wl)} arrays, there {len(gl)}")
    return new_state


def evaluate_run(
    run_dir: Path, episodes: int | None = None, deterministic: bool = True, seed: int | None = None,
    env_params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate the last checkpoint of a run on ``episodes`` fresh episodes per seed (default
    ``cfg.eval_episodes``): per seed and as means, the team return, the sum over agents, each agent's
    return, the episode length and the env's outcomes (``mean_win_rate`` / ``per_seed_win_rate`` on SMAX).
    ``env_params``: on the same env with these keys changed, no training (transfer; see :func:`load_run_state`)."""
    cfg, algo, state, counters = load_run_state(run_dir, policy_only=True, env_params=env_params)
    episodes = cfg.eval_episodes if episodes is None else int(episodes)
    if episodes < 1:
        raise ConfigError(f"episodes={episodes} must be an integer >= 1")
    backend = make_backend(cfg, algo)
    try:
        res = as_lists(backend.evaluate(state, episodes, seed, deterministic))
    finally:
        backend.close()
    out = {
        "run_dir": str(run_dir), "algo": cfg.algo.name, "env": cfg.env.name, "env_params": dict(env_params or {}),
        "update": int(counters["update"]), "env_steps": int(counters["env_steps"]),
        "episodes": episodes, "deterministic": deterministic,
        "mean_return": nanmean(res["return"]), "per_seed_return": res["return"],
        "mean_return_sum": nanmean(res["return_sum"]), "per_seed_return_sum": res["return_sum"],
        "mean_return_per_agent": [nanmean(np.asarray(res["return_per_agent"])[:, i]) for i in range(algo.n_agents)],
        "mean_length": nanmean(res["length"]),
    }
    for name in sorted(set(res) - {"return", "return_sum", "return_per_agent", "length"}):  # env outcomes
        out[f"mean_{name}"], out[f"per_seed_{name}"] = nanmean(res[name]), res[name]
    return out


def render_run(run_dir, path=None, deterministic: bool = True, seed: int = 0) -> dict[str, Any]:
    """Write a GIF of one episode of seed 0's policy (default ``RUN_DIR/episode.gif``).

    JAX-native envs render through their ``render(state)`` (MPE); host envs through their own
    ``render()`` in ``rgb_array`` mode (MaMuJoCo, SISL, PettingZoo envs that support it), headless.
    Raises :class:`RenderError` when the environment cannot render.
    """
    from trustmarl.experiment import render

    render.headless()  # before anything creates an OpenGL/SDL context
    cfg, algo, state, _ = load_run_state(run_dir, policy_only=True)
    path = Path(run_dir) / "episode.gif" if path is None else Path(path)
    view = jax.tree.map(lambda x: x[:1], jax.vmap(algo.policy_view)(state))  # seed 0
    if env_kind(cfg.env.name) == "jax":
        if not hasattr(algo.env, "render"):
            raise render.RenderError(f"rendering is not supported for environment {cfg.env.name!r} (it has no render())")
        return render.render_jax_episode(algo, view, jax.random.PRNGKey(seed), path, deterministic)
    if cfg.fixed_agents is not None:  # one raw PettingZoo env: nothing would act for the fixed agents
        raise render.RenderError(f"rendering a host env run with fixed_agents is not supported ({cfg.env.name})")
    factory = host_registry.make_factory(cfg.env.name, cfg.env.params)
    if not callable(getattr(factory, "rendering", None)):
        raise render.RenderError(f"rendering is not supported for environment {cfg.env.name!r}")
    return render.render_host_episode(algo, factory.rendering(), view, jax.random.PRNGKey(seed), path, deterministic, seed=seed)


__all__ = [
    "CheckpointError", "RunDirError", "annealed_keys", "evaluate_run", "find_divergence", "is_run_dir", "load_run_config",
    "load_run_state", "resume_config", "train",
]
