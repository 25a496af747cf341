"""Train and evaluate runs: jitted chunks of updates, metrics, checkpoints and resumption.

``train`` runs ``cfg.num_seeds`` independent seeds as one ``vmap`` and ``cfg.chunk_updates``
updates as one ``lax.scan`` (a jitted *chunk*); between chunks it writes metrics, shows progress,
checks the losses for NaN/inf and saves checkpoints. Because the training state holds everything
(parameters, optimiser, normalisers, environment states, RNG key, counters) and chunks always start
at multiples of ``chunk_updates``, a resumed run ends bitwise equal to an uninterrupted one.

Run directory::

    config.yaml              resolved config (RunConfig.to_dict())
    metrics.jsonl / .csv     one row per update (see ``logger.chunk_rows``)
    tb/                      TensorBoard events (aggregate scalars, step = env steps of one seed)
    checkpoints/last.npz     latest good state (+ last.json sidecar with the counters)
    summary.json             result and throughput; ``status`` is "completed", "diverged" or "env_error"

**Host (Python) environments** (``pettingzoo/...``, ``sisl/...``, ``mamujoco/...``,
``pettingzoo:module:attr``) train through :class:`trustmarl.rollout.host.HostTrainer` with the same
run directory, metrics, checkpoints and summary; the chunk is a Python loop over updates instead of a
``lax.scan``. Their env state lives in worker processes, so a resumed host run restores the learner
(parameters, optimisers, normalisers, RNG key, counters) exactly but starts fresh episodes: it is
*not* bitwise-equal to an uninterrupted run. An exception in an env copy (``HostEnvError``) stops the
run with ``status="env_error"`` and a message naming the worker and env; the checkpoint of the last
completed chunk is kept, so the run can be resumed.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import yaml

from trustmarl.envs.host import HostEnvError
from trustmarl.envs.host import registry as host_registry
from trustmarl.experiment.checkpoint import (
    CheckpointError,
    atomic_write_text,
    load_checkpoint,
    read_meta,
    save_checkpoint,
)
from trustmarl.experiment.config import ConfigError, RunConfig, config_from_dict
from trustmarl.experiment.logger import MetricsLogger, chunk_rows, nanmean, truncate_metrics

CONFIG_FILE = "config.yaml"
SUMMARY_FILE = "summary.json"
LAST_CHECKPOINT = Path("checkpoints") / "last.npz"
# Run keys that may differ when resuming; everything else must equal the saved config.
RESUMABLE_KEYS = ("total_steps", "env.num_workers")


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
    try:
        data = yaml.safe_load((run_dir / CONFIG_FILE).read_text())
    except yaml.YAMLError as e:
        raise RunDirError(f"{run_dir / CONFIG_FILE} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise RunDirError(f"{run_dir / CONFIG_FILE} does not hold a config mapping")
    return config_from_dict(data)


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


def _check_resume_compatible(saved: RunConfig, cfg: RunConfig, run_dir: Path) -> None:
    a, b = _flat(saved.to_dict()), _flat(cfg.to_dict())
    diff = [k for k in sorted(set(a) | set(b)) if k not in RESUMABLE_KEYS and a.get(k) != b.get(k)]
    if diff:
        raise ConfigError(
            f"config differs from the one saved in {str(run_dir)!r} in {', '.join(diff)}; "
            f"only {', '.join(RESUMABLE_KEYS)} may change when resuming"
        )


def _flat(d: dict[str, Any]) -> dict[str, Any]:
    """``{"algo": {"lr": 1}}`` -> ``{"algo.lr": 1}`` (one level, as in config files)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            out[k] = v
    return out


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


# ---- jitted pieces -----------------------------------------------------------------------------

def _init_fn(algo):
    from trustmarl.algos.base import init_seeds

    return lambda keys: init_seeds(algo, keys)


def _seed_keys(cfg: RunConfig) -> jax.Array:
    return jax.random.split(jax.random.PRNGKey(cfg.seed), cfg.num_seeds)


class _Chunks:
    """Jitted ``vmap``-over-seeds of ``lax.scan`` over ``length`` updates, compiled once per run.

    ``chunk(state, n)`` runs the first ``n <= length`` updates; the others are skipped by a ``lax.cond``
    on an unbatched flag, so the shorter last chunk of a run reuses the same program instead of
    compiling a second one (tens of seconds on CPU). Metrics come back ``[seeds, n, ...]``.
    """

    def __init__(self, algo, length: int):
        self.algo, self.length = algo, int(length)

        def one_seed(state, n):
            def body(s, i):
                skip = lambda s: (s, _zeros_like(jax.eval_shape(lambda x: self.algo.update(x)[1], s)))  # noqa: E731
                return jax.lax.cond(i < n, self.algo.update, skip, s)

            return jax.lax.scan(body, state, jnp.arange(self.length))

        self._fn = jax.jit(jax.vmap(one_seed, in_axes=(0, None)))

    def __call__(self, state, n: int):
        if not 1 <= n <= self.length:
            raise ValueError(f"a chunk runs 1..{self.length} updates, got {n}")
        state, metrics = self._fn(state, jnp.asarray(n, jnp.int32))
        return state, jax.tree.map(lambda m: m[:, :n], metrics)


def _zeros_like(shapes):
    return jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)


def _state_template(algo, cfg: RunConfig):
    if _is_host(cfg):
        from trustmarl.rollout.host import state_template

        return state_template(algo, cfg.num_seeds)
    return jax.eval_shape(jax.vmap(algo.init), _seed_keys(cfg))


# ---- host (Python) environments ----------------------------------------------------------------

def _is_host(cfg: RunConfig) -> bool:
    return host_registry.is_host_env(cfg.env.name)


def _host_env_info(cfg: RunConfig):
    """Groups/state width/episode limit of a host env, from one copy built in this process."""
    try:
        return host_registry.probe(cfg.env.name, cfg.env.params)
    except HostEnvError:
        raise
    except ImportError as e:
        raise ConfigError(f"{cfg.env.name}: {e}") from None
    except Exception as e:  # noqa: BLE001 - bad keyword arguments, broken env code: report in one line
        raise ConfigError(f"{cfg.env.name}: building the environment failed: {type(e).__name__}: {e}") from None


class _HostBackend:
    """The host-env counterpart of ``_init_fn``/``_Chunks``: a ``HostTrainer`` on a ``HostVecEnv``.

    The envs live in worker processes: ``close()`` must be called. Restored runs start fresh episodes
    (seeded from ``cfg.seed`` and the update), so a resumed host run is not bitwise-equal to an
    uninterrupted one; learner state and counters are restored exactly.
    """

    def __init__(self, cfg: RunConfig, algo, update: int):
        from trustmarl.rollout.host import HostTrainer, env_seed

        copies = cfg.num_seeds * cfg.algo.num_envs
        vec = host_registry.make_vec_env(cfg.env.name, cfg.env.params, copies, env_seed(cfg.seed, update))
        try:
            self.trainer = HostTrainer(algo, vec, cfg.num_seeds)
        except BaseException:
            vec.close()
            raise

    def init(self, cfg: RunConfig):
        return self.trainer.init(_seed_keys(cfg))

    def restart(self, state):
        return self.trainer.reset_envs(state)

    def run(self, state, n: int):
        return self.trainer.run(state, n)

    def close(self) -> None:
        self.trainer.close()


def _total_updates(cfg: RunConfig, steps_per_update: int) -> int:
    return max(1, cfg.total_steps // steps_per_update)


def _build_algorithm(cfg: RunConfig, total_updates: int | None = None):
    from trustmarl.algos import make_algorithm

    env = _host_env_info(cfg) if _is_host(cfg) else None
    probe = make_algorithm(cfg, total_updates=total_updates or 1, env=env)
    if total_updates is None:
        total_updates = _total_updates(cfg, probe.steps_per_update)
        return make_algorithm(cfg, total_updates=total_updates, env=env), total_updates
    return probe, total_updates


# ---- divergence --------------------------------------------------------------------------------

def find_divergence(metrics: dict[str, np.ndarray], first_update: int) -> str | None:
    """A message naming the first non-finite ``loss/...`` metric (update, seed), or ``None``."""
    worst: tuple[int, str, int] | None = None
    for name in sorted(metrics):
        if not name.startswith("loss/"):
            continue
        bad = ~np.isfinite(np.asarray(metrics[name], dtype=np.float64))
        if bad.any():
            bad = bad.reshape(bad.shape[0], bad.shape[1], -1).any(axis=-1)  # [seeds, updates]
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
    """NaN-aware mean return of the first or last 10% of updates (at least one), per seed and mean."""
    n = per_seed.shape[0]
    if n == 0:
        return float("nan"), []
    w = max(1, int(math.ceil(0.1 * n)))
    window = per_seed[:w] if first else per_seed[-w:]
    seeds = [nanmean(window[:, k]) for k in range(window.shape[1])]
    return nanmean(seeds), seeds


def _per_seed_returns(rows: list[dict[str, Any]], num_seeds: int, name: str = "episode_return") -> np.ndarray:
    return np.array(
        [[float(r.get(f"{name}/seed_{k}", float("nan"))) for k in range(num_seeds)] for r in rows],
        dtype=np.float64,
    ).reshape(len(rows), num_seeds)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _summary(cfg, run_dir, rows, status, updates, env_steps, session, wall_total, message=None) -> dict[str, Any]:
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
        "run_dir": str(run_dir),
    }
    outcomes = sorted({k for r in rows for k in r if k.startswith("episode_") and "/" not in k} - {"episode_return"})
    for name in outcomes:  # env outcomes such as SMAX's episode_win_rate, over the last 10% of updates
        out[f"final_{name[8:]}"], out[f"final_{name[8:]}_per_seed"] = _window_return(
            _per_seed_returns(rows, cfg.num_seeds, name), first=False
        )
    if message:
        out["message"] = message
    return out


def _fmt(x: Any, spec: str = ".4g") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def _print_result(summary: dict[str, Any], out=None) -> None:
    out = out or sys.stdout
    s = summary
    print(
        f"{s['algo']} on {s['env']} ({s['num_seeds']} seed{'s' if s['num_seeds'] != 1 else ''}, "
        f"{s['env_steps']} env steps each): return {_fmt(s['initial_return'])} -> {_fmt(s['final_return'])} "
        f"(first -> last 10% of updates); {_fmt(s['steps_per_second'], '.0f')} steps/s overall, "
        f"{_fmt(s['steady_steps_per_second'], '.0f')} steps/s after compilation"
        + ("; final win rate " + _fmt(s["final_win_rate"], ".3g") if "final_win_rate" in s else ""),
        file=out,
    )
    print(f"run saved to {s['run_dir']}", file=out)


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


def _restore(cfg: RunConfig, algo, total_updates: int, out_dir: Path):
    """Last checkpoint of a run: ``(state, update, wall_seconds, metrics rows, env_steps)``.

    Metrics rows written after the checkpoint (a killed run) are dropped from the files.
    """
    state, counters = load_checkpoint(out_dir / LAST_CHECKPOINT, _state_template(algo, cfg))
    update, wall_before = int(counters["update"]), float(counters["wall_seconds"])
    if update > total_updates:
        raise ConfigError(
            f"total_steps={cfg.total_steps} gives {total_updates} updates but the run is already at update {update}"
        )
    rows = truncate_metrics(out_dir, update)
    (out_dir / SUMMARY_FILE).unlink(missing_ok=True)  # written again when this session ends
    env_steps = int(counters["env_steps"])
    return state, update, wall_before, rows, env_steps


def train(
    cfg: RunConfig | None,
    out_dir: Path,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    stop_after_chunks: int | None = None,
    keep_checkpoints: bool = False,
    tensorboard: bool = True,
) -> dict[str, Any]:
    """Train ``cfg`` into ``out_dir`` and return the summary (also written to ``summary.json``).

    ``resume=True`` continues the run saved in ``out_dir`` from its last checkpoint (``cfg`` may be
    ``None`` to use the saved config; otherwise it must equal it except for ``total_steps``).
    ``stop_after_chunks`` stops after that many chunks of this call *as if the process were killed*
    (no extra checkpoint, no summary; returns ``{"status": "stopped", ...}``) - for tests.
    ``keep_checkpoints`` also keeps a numbered checkpoint at every save. Raises ``RunDirError`` or
    ``ConfigError`` for bad directories/configs before anything is compiled.
    """
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    cfg = _check_run_dir(cfg, out_dir, resume, overwrite)
    algo, total_updates = _build_algorithm(cfg)  # may raise ConfigError: nothing on disk is touched yet
    if not resume:
        _create_new_dir(out_dir)
    spu = int(algo.steps_per_update)
    if resume:
        state, update, wall_before, rows, env_steps = _restore(cfg, algo, total_updates, out_dir)
    else:
        update, wall_before, rows, env_steps = 0, 0.0, [], 0
    if _is_host(cfg):
        host = _HostBackend(cfg, algo, update)
        try:
            state = host.restart(state) if resume else host.init(cfg)
        except BaseException:
            host.close()
            raise
        run_chunk = host.run
    else:
        host, run_chunk = None, _Chunks(algo, cfg.chunk_updates)
        if not resume:
            state = _init_fn(algo)(_seed_keys(cfg))
    try:
        return _train_loop(
            cfg, out_dir, resume, progress, stop_after_chunks, keep_checkpoints, tensorboard, t_start,
            spu, total_updates, run_chunk, state, update, wall_before, rows, env_steps,
        )
    finally:
        if host is not None:
            host.close()


def _train_loop(
    cfg, out_dir, resume, progress, stop_after_chunks, keep_checkpoints, tensorboard, t_start,
    spu, total_updates, run_chunk, state, update, wall_before, rows, env_steps,
) -> dict[str, Any]:
    """The chunk loop of ``train``: metrics, progress, NaN checks, checkpoints and the summary."""
    atomic_write_text(out_dir / CONFIG_FILE, yaml.safe_dump(cfg.to_dict(), sort_keys=False))

    logger = MetricsLogger(out_dir, tensorboard=tensorboard, purge_step=env_steps + 1 if resume else None)
    session = {"steps": 0, "first_chunk_steps": 0, "first_chunk_end": 0.0, "wall": 0.0}
    bar = _progress_bar(progress, total_updates * spu, env_steps, cfg)
    status, message, chunk_i, last_saved = "completed", None, 0, (update if resume else -1)

    def counters_now() -> dict[str, Any]:
        return {
            "update": update,
            "env_steps": env_steps,
            "total_updates": total_updates,
            "steps_per_update": spu,
            "wall_seconds": wall_before + time.perf_counter() - t_start,
            "num_seeds": cfg.num_seeds,
            "algo": cfg.algo.name,
            "env": cfg.env.name,
        }

    def save() -> None:
        nonlocal last_saved
        ckpt = out_dir / LAST_CHECKPOINT
        save_checkpoint(ckpt, state, counters_now())
        if keep_checkpoints:
            shutil.copyfile(ckpt, ckpt.with_name(f"update_{update:07d}.npz"))
        last_saved = update

    if not resume:
        save()  # update 0: a run killed during its first chunk can still be resumed
    try:
        while update < total_updates:
            n = min(cfg.chunk_updates, total_updates - update)
            try:
                new_state, metrics = run_chunk(state, n)
            except HostEnvError as e:  # a host env copy raised (or its worker died): stop, stay resumable
                status = "env_error"
                message = (
                    f"a host environment failed during updates {update + 1}-{update + n}: {e}\n"
                    f"kept the last good checkpoint (update {update}); continue with: "
                    f"trustmarl train --resume {out_dir}"
                )
                if last_saved != update:
                    save()
                break
            metrics = jax.device_get(metrics)
            elapsed = time.perf_counter() - t_start
            new_rows = chunk_rows(metrics, update, wall_before + elapsed)
            logger.write(new_rows)
            rows.extend(new_rows)
            diverged = find_divergence(metrics, update)
            if diverged:
                status = "diverged"
                message = f"training diverged: {diverged}; kept the last good checkpoint (update {update})"
                if last_saved != update:
                    save()  # the state before this chunk is the last good one
                break
            state, update = new_state, update + n
            new_steps = new_rows[-1]["env_steps"] if new_rows[-1]["env_steps"] is not None else update * spu
            session["steps"] += new_steps - env_steps
            env_steps = new_steps
            chunk_i += 1
            if chunk_i == 1:
                session["first_chunk_steps"], session["first_chunk_end"] = session["steps"], elapsed
            if bar is not None:
                bar.update(n * spu)
                post = {"ret": _fmt(nanmean([r["episode_return"] for r in new_rows]))}
                if "episode_win_rate" in new_rows[-1]:  # SMAX
                    post["win"] = _fmt(nanmean([r["episode_win_rate"] for r in new_rows]), ".2f")
                bar.set_postfix(post, refresh=False)
            if chunk_i % cfg.checkpoint_every == 0 or update >= total_updates:
                save()
            if stop_after_chunks is not None and chunk_i >= stop_after_chunks and update < total_updates:
                return {"status": "stopped", "updates": update, "env_steps": env_steps, "run_dir": str(out_dir)}
        if update >= total_updates and last_saved != update:
            save()
    except KeyboardInterrupt:
        if last_saved != update:
            save()  # ``state`` is the last completed chunk (``update`` counts it)
        raise
    finally:
        if bar is not None:
            bar.close()
        logger.close()

    session["wall"] = time.perf_counter() - t_start
    summary = _summary(
        cfg, out_dir, [r for r in rows if r["update"] <= update], status, update, env_steps, session,
        wall_before + session["wall"], message,
    )
    atomic_write_text(out_dir / SUMMARY_FILE, json.dumps(_json_safe(summary), indent=2) + "\n")
    if status in ("diverged", "env_error"):
        print(f"trustmarl: {message}", file=sys.stderr)
    _print_result(summary)
    return summary


def _progress_bar(progress: bool, total: int, initial: int, cfg: RunConfig):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, unit="step", unit_scale=True, dynamic_ncols=True,
        desc=f"{cfg.algo.name} {cfg.env.name}", file=sys.stderr,
    )


# ---- evaluation --------------------------------------------------------------------------------

def load_run_state(run_dir: Path):
    """``(cfg, algo, state, counters)`` of the last checkpoint of a run."""
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    ckpt = run_dir / LAST_CHECKPOINT
    if not ckpt.is_file():
        raise RunDirError(f"{str(run_dir)!r} has no checkpoint ({LAST_CHECKPOINT})")
    total_updates = int(read_meta(ckpt)["counters"].get("total_updates", 1))
    algo, _ = _build_algorithm(cfg, total_updates)
    state, counters = load_checkpoint(ckpt, _state_template(algo, cfg))
    return cfg, algo, state, counters


def evaluate_run(
    run_dir: Path, episodes: int | None = None, deterministic: bool = True, seed: int | None = None
) -> dict[str, Any]:
    """Mean return of ``episodes`` fresh episodes (default ``cfg.eval_episodes``) per seed of a saved run,
    and the means of the env's outcomes (``mean_win_rate`` / ``per_seed_win_rate`` on SMAX)."""
    cfg, algo, state, counters = load_run_state(run_dir)
    episodes = cfg.eval_episodes if episodes is None else int(episodes)
    if episodes < 1:
        raise ConfigError(f"episodes={episodes} must be an integer >= 1")
    eval_seed = cfg.seed + 1 if seed is None else seed
    outcomes: dict[str, list[float]] = {}
    if _is_host(cfg):
        per_seed = _evaluate_host(cfg, algo, state, episodes, deterministic, eval_seed)
    else:
        keys = jax.random.split(jax.random.PRNGKey(eval_seed), cfg.num_seeds)
        if hasattr(algo, "evaluate_episodes"):  # return and env outcomes (SMAX: win rate)
            fn = jax.jit(jax.vmap(lambda s, k: algo.evaluate_episodes(s, k, episodes, deterministic)))
            res = {k: [float(x) for x in np.asarray(v, dtype=np.float64)] for k, v in jax.device_get(fn(state, keys)).items()}
            per_seed = res.pop("episode_return")
            outcomes = {k[len("episode_"):]: v for k, v in res.items()}
        else:
            fn = jax.jit(jax.vmap(lambda s, k: algo.evaluate(s, k, episodes, deterministic)))
            per_seed = [float(x) for x in np.asarray(jax.device_get(fn(state, keys)), dtype=np.float64)]
    extra = {}
    for name, values in outcomes.items():
        extra[f"mean_{name}"], extra[f"per_seed_{name}"] = nanmean(values), values
    return {
        "run_dir": str(run_dir),
        "algo": cfg.algo.name,
        "env": cfg.env.name,
        "update": int(counters["update"]),
        "env_steps": int(counters["env_steps"]),
        "episodes": episodes,
        "deterministic": deterministic,
        "mean_return": nanmean(per_seed),
        "per_seed_return": per_seed,
        **extra,
    }


def render_run(run_dir, path=None, deterministic: bool = True, seed: int = 0) -> dict[str, Any]:
    """Write a GIF of one episode of seed 0's policy (default ``RUN_DIR/episode.gif``).

    JAX-native envs render through their ``render(state)`` (MPE); host envs through their own
    ``render()`` in ``rgb_array`` mode (MaMuJoCo, SISL, PettingZoo envs that support it), headless.
    Raises :class:`RenderError` when the environment cannot render.
    """
    from trustmarl.experiment import render

    render.headless()  # before anything creates an OpenGL/SDL context
    cfg, algo, state, _ = load_run_state(run_dir)
    path = Path(run_dir) / "episode.gif" if path is None else Path(path)
    key = jax.random.PRNGKey(seed)
    if not _is_host(cfg):
        if not hasattr(algo.env, "render"):
            raise render.RenderError(f"rendering is not supported for environment {cfg.env.name!r} (it has no render())")
        return render.render_episode(algo, state, key, path, deterministic=deterministic)
    factory = host_registry.make_factory(cfg.env.name, cfg.env.params)
    if not callable(getattr(factory, "rendering", None)):
        raise render.RenderError(f"rendering is not supported for environment {cfg.env.name!r}")
    return render.render_host_episode(algo, factory.rendering(), state, key, path, deterministic, seed=seed)


def _evaluate_host(cfg: RunConfig, algo, state, episodes: int, deterministic: bool, eval_seed: int) -> list[float]:
    """Per-seed mean return of ``episodes`` fresh episodes on a new ``HostVecEnv`` (seeded ``eval_seed``)."""
    from trustmarl.rollout.host import evaluate_host

    vec = host_registry.make_vec_env(cfg.env.name, cfg.env.params, cfg.num_seeds * episodes, eval_seed)
    try:
        res = evaluate_host(algo, vec, state.actor_params, cfg.num_seeds, jax.random.PRNGKey(eval_seed), deterministic)
    finally:
        vec.close()
    return [float(x) for x in res]


__all__ = [
    "CheckpointError", "RunDirError", "evaluate_run", "find_divergence", "is_run_dir", "load_run_config",
    "load_run_state", "resume_config", "train",
]
