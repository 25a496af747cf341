"""Sweeps: a grid (and explicit lists) of algorithms x environments x overrides x seeds from one YAML file.

A sweep file (see ``docs/sweeps.md``)::

    name: clip-vs-agents              # optional; default: the file name
    algos: [mappo, happo]             # or  algo: mappo
    envs: [mpe/simple_spread]         # or  env: mpe/simple_spread
    seeds: 3                          # seeds per configuration, trained as one vmapped run
    seed: 0                           # first seed (optional)
    seeds_per_run: 3                  # optional: split the seeds of a configuration into several runs
    overrides:                        # every run (same keys as `trustmarl train`)
      total_steps: 200000
      algo.num_envs: 8
    grid:                             # cartesian product of the value lists
      algo.clip_eps: [0.1, 0.2]
      env.n_agents: [2, 4]
    runs:                             # explicit blocks, each expanded like the top level
      - {algo: mappo, env: mpe/simple_spread, overrides: {algo.clip_rule: per_agent}, label: MAPPO-eps/N}
    imports: [my_package.envs]        # modules imported first (register your algorithms/environments)
    resources: {cpu: 1, gpu: 0}       # per run (Ray)

The sweep directory holds ``sweep.yaml`` (the file as given), ``sweep.json`` (the index: every run with
its algorithm, environment, overrides, seeds and directory), ``status.json`` (done/running/failed per
run), ``logs/<run>.log`` and ``runs/<run>/`` (ordinary run directories). Every configuration is
validated with :func:`trustmarl.experiment.config.build_config` before anything starts.

Running a sweep again skips completed runs, resumes interrupted ones from their last checkpoint and
retries runs that failed without a result; diverged runs are reported and left alone (a deterministic
run diverges again). Locally, ``jobs`` runs go at a time, each in its own process
(``python -m trustmarl.studies.sweep worker SWEEP_DIR RUN``); with Ray, each run is a Ray task with
its CPU/GPU request, writing into the same sweep directory (on a cluster it must be on a shared
filesystem).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable


from trustmarl.experiment.config import ConfigError, build_config, drop_unused, flat_config, read_yaml_mapping

INDEX_FILE = "sweep.json"
SPEC_FILE = "sweep.yaml"
STATUS_FILE = "status.json"
RUNS_DIR = "runs"
LOGS_DIR = "logs"

TOP_KEYS = {
    "name", "description", "algos", "algo", "envs", "env", "seeds", "seed", "seeds_per_run", "overrides",
    "grid", "runs", "imports", "resources",
}
BLOCK_KEYS = {"algos", "algo", "envs", "env", "overrides", "grid", "label"}
SEED_KEYS = ("seed", "num_seeds")  # set through ``seeds``/``seed``/``seeds_per_run``, not overrides


class SweepError(ConfigError):
    """A bad sweep file or sweep directory (reported as one line, exit code 2)."""


# ---- the sweep file ---------------------------------------------------------------------------------

@dataclasses.dataclass
class RunSpec:
    """One run of a sweep: a configuration and a contiguous block of its seeds (vmapped in one process)."""

    name: str
    algo: str
    env: str
    overrides: dict[str, Any]  # without seed/num_seeds
    seed: int
    num_seeds: int
    label: str
    config_id: str  # same for every run of one configuration (different seed blocks)

    @property
    def dir(self) -> str:
        return f"{RUNS_DIR}/{self.name}"

    def train_overrides(self) -> dict[str, Any]:
        return {**self.overrides, "seed": self.seed, "num_seeds": self.num_seeds}

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "dir": self.dir}


@dataclasses.dataclass
class Sweep:
    """A parsed, validated sweep: its name, runs, imports and per-run resources."""

    name: str
    runs: list[RunSpec]
    imports: list[str]
    resources: dict[str, float]
    spec: dict[str, Any]  # the file's mapping, as given

    def index(self) -> dict[str, Any]:
        return {
            "format": 1,
            "name": self.name,
            "imports": self.imports,
            "resources": self.resources,
            "spec": self.spec,
            "runs": [r.to_dict() for r in self.runs],
        }


def load_sweep(path: str | Path) -> Sweep:
    """Read and validate a sweep file; raises :class:`SweepError` (one line) on any bad input."""
    path = Path(path)
    data = read_yaml_mapping(path, "sweep file", SweepError, hint=f" (keys: {', '.join(sorted(TOP_KEYS))})")
    data.setdefault("name", path.stem)
    return parse_sweep(data)


def parse_sweep(data: dict[str, Any]) -> Sweep:
    """Validate a sweep mapping and expand it into runs (every config is built once to check it)."""
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise SweepError(f"unknown sweep key {unknown[0]!r}; allowed: {', '.join(sorted(TOP_KEYS))}")
    name = data.get("name") or "sweep"
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9._=+-]+", name):
        raise SweepError(f"sweep name {name!r} must be a non-empty string of letters, digits and ._=+-")
    imports = _str_list(data.get("imports", []), "imports")
    _import_all(imports)
    seeds = _int(data.get("seeds", 1), "seeds", 1)
    base_seed = _int(data.get("seed", 0), "seed", 0)
    per_run = _int(data.get("seeds_per_run", seeds), "seeds_per_run", 1)
    resources = _resources(data.get("resources", {}))
    common = _mapping(data.get("overrides", {}), "overrides")
    _check_no_seed_keys(common, "overrides")

    blocks: list[tuple[str, dict[str, Any]]] = []
    if any(k in data for k in ("algos", "algo", "envs", "env", "grid")):
        blocks.append(("the sweep", {k: data[k] for k in ("algos", "algo", "envs", "env", "grid") if k in data}))
    runs_list = data.get("runs", [])
    if not isinstance(runs_list, list):
        raise SweepError("'runs' must be a list of blocks, e.g. [{algo: mappo, env: mpe/simple_spread}]")
    for i, block in enumerate(runs_list):
        if not isinstance(block, dict):
            raise SweepError(f"runs[{i}] must be a mapping with algo/algos, env/envs and optional overrides, grid, label")
        bad = sorted(set(block) - BLOCK_KEYS)
        if bad:
            raise SweepError(f"unknown key {bad[0]!r} in runs[{i}]; allowed: {', '.join(sorted(BLOCK_KEYS))}")
        blocks.append((f"runs[{i}]", block))
    if not blocks:
        raise SweepError("the sweep has no runs: give algos and envs (and optionally grid), or a runs list")

    configs: list[tuple[str, str, dict[str, Any], dict[str, Any], str | None]] = []
    for where, block in blocks:
        algos = _names(block, "algos", "algo", where)
        envs = _names(block, "envs", "env", where)
        grid = _mapping(block.get("grid", {}), f"grid of {where}")
        _check_no_seed_keys(grid, f"grid of {where}")
        for k, v in grid.items():
            if not isinstance(v, list):
                raise SweepError(f"grid key {k!r} of {where} must map to a list of values, got {v!r}")
            if not v:
                raise SweepError(f"grid key {k!r} of {where} has an empty list: the grid is empty")
        own = _mapping(block.get("overrides", {}), f"overrides of {where}")
        _check_no_seed_keys(own, f"overrides of {where}")
        label = block.get("label")
        keys = list(grid)
        for algo, env in itertools.product(algos, envs):
            for values in itertools.product(*(grid[k] for k in keys)) if keys else [()]:
                point = dict(zip(keys, values))
                overrides = {**common, **own, **point}
                distinguishing = {**own, **point}  # what names this configuration beyond algo and env
                configs.append((algo, env, overrides, distinguishing, label))

    runs: list[RunSpec] = []
    seen: dict[str, str] = {}
    names: set[str] = set()
    from trustmarl.algos import algo_names
    from trustmarl.experiment.config import all_env_names, is_known_env

    for algo, env, overrides, distinguishing, label in configs:
        if algo not in algo_names():
            raise SweepError(f"unknown algorithm {algo!r} in the sweep; choose one of: {', '.join(algo_names())}")
        if not is_known_env(env):
            raise SweepError(
                f"unknown environment {env!r} in the sweep; choose one of: {', '.join(all_env_names())}, "
                "or pettingzoo:module.path:attr"
            )
        effective = drop_unused(algo, overrides)  # a key shared by the sweep that this algorithm ignores
        distinguishing = {k: v for k, v in distinguishing.items() if k in effective}
        try:
            cfg = build_config(algo, env, {**effective, "seed": base_seed, "num_seeds": min(per_run, seeds)})
        except ConfigError as e:
            raise SweepError(f"{algo} on {env} with {_show_overrides(effective) or 'no overrides'}: {e}") from None
        resolved = {k: v for k, v in _flat(cfg.to_dict()).items() if k not in SEED_KEYS}
        config_id = _digest(resolved)
        if config_id in seen:
            continue  # the same configuration twice (e.g. a grid over a key the algorithm does not use)
        seen[config_id] = algo
        base = _run_name(algo, env, distinguishing)
        label = label or _label(algo, distinguishing)
        for start in range(0, seeds, per_run):
            n = min(per_run, seeds - start)
            name = base if per_run >= seeds else f"{base}_seeds{base_seed + start}-{base_seed + start + n - 1}"
            if name in names:
                name = f"{name}_{config_id[:8]}"
            names.add(name)
            runs.append(RunSpec(name, algo, env, effective, base_seed + start, n, label, config_id))
    spec = {k: v for k, v in data.items()}
    return Sweep(name=name_of(data), runs=runs, imports=imports, resources=resources, spec=spec)


def name_of(data: dict[str, Any]) -> str:
    return str(data.get("name") or "sweep")


def _names(block: dict[str, Any], plural: str, singular: str, where: str) -> list[str]:
    if plural in block and singular in block:
        raise SweepError(f"give either {plural!r} or {singular!r} in {where}, not both")
    value = block.get(plural, block.get(singular))
    if value is None:
        raise SweepError(f"{where} needs {plural!r} (a list) or {singular!r} (one name)")
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise SweepError(f"{plural!r} in {where} must be a name or a list of names, got {value!r}")
    if not values:
        raise SweepError(f"{plural!r} in {where} is an empty list: the grid is empty")
    return values


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SweepError(f"{what} must be a mapping of key: value, got {value!r}")
    out: dict[str, Any] = {}
    for k, v in value.items():
        if isinstance(v, dict) and k in ("algo", "env"):  # nested form, as in config files
            out.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            out[str(k)] = v
    return out


def _check_no_seed_keys(d: dict[str, Any], what: str) -> None:
    for k in SEED_KEYS:
        if k in d:
            raise SweepError(f"{k!r} in {what}: set seeds with the sweep keys 'seeds' (how many), 'seed' (first) "
                             "and 'seeds_per_run'")


def _int(value: Any, key: str, least: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise SweepError(f"sweep key {key!r}={value!r} must be an integer >= {least}")
    return value


def _str_list(value: Any, key: str) -> list[str]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise SweepError(f"sweep key {key!r} must be a list of module names, got {value!r}")
    return list(values)


def _resources(value: Any) -> dict[str, float]:
    value = _mapping(value, "resources")
    bad = sorted(set(value) - {"cpu", "gpu"})
    if bad:
        raise SweepError(f"unknown resource {bad[0]!r}; allowed: cpu, gpu (per run, for Ray)")
    out = {"cpu": 1.0, "gpu": 0.0}
    for k, v in value.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise SweepError(f"resources.{k}={v!r} must be a number >= 0")
        out[k] = float(v)
    return out


def _import_all(modules: Iterable[str]) -> None:
    for m in modules:
        try:
            importlib.import_module(m)
        except ImportError as e:
            raise SweepError(f"cannot import {m!r} (listed in 'imports'): {e}") from None


_flat = flat_config  # one level: {"algo": {"lr": 1}} -> {"algo.lr": 1}


def _digest(d: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


def _short(v: Any) -> str:
    if isinstance(v, float):
        return format(v, "g")
    if isinstance(v, (list, tuple)):
        return "-".join(_short(x) for x in v)
    return str(v)


def _show_overrides(d: dict[str, Any]) -> str:
    return " ".join(f"{k}={_short(v)}" for k, v in d.items())


def _label(algo: str, distinguishing: dict[str, Any]) -> str:
    """The configuration's name in reports: the algorithm and its own overrides (``env.*`` values name the task)."""
    parts = [f"{k.split('.', 1)[-1]}={_short(v)}" for k, v in distinguishing.items() if not k.startswith("env.")]
    return algo + (f" ({', '.join(parts)})" if parts else "")


def _run_name(algo: str, env: str, distinguishing: dict[str, Any]) -> str:
    parts = [algo, env.replace("/", "-").replace(":", "-")]
    parts += [f"{k.split('.', 1)[-1]}={_short(v)}" for k, v in distinguishing.items()]
    name = re.sub(r"[^A-Za-z0-9._=+-]", "", "_".join(parts))
    if len(name) > 100:
        name = name[:90] + "_" + _digest(distinguishing)[:8]
    return name


# ---- the sweep directory -------------------------------------------------------------------------

def is_sweep_dir(path: str | Path) -> bool:
    return (Path(path) / INDEX_FILE).is_file()


def load_index(sweep_dir: str | Path) -> dict[str, Any]:
    path = Path(sweep_dir) / INDEX_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SweepError(f"{str(sweep_dir)!r} is not a sweep directory (no {INDEX_FILE})") from None
    except json.JSONDecodeError as e:
        raise SweepError(f"{path} is not valid JSON: {e}") from None


def prepare_dir(sweep: Sweep, sweep_dir: Path, spec_text: str | None, overwrite: bool) -> None:
    """Create the sweep directory, or check that an existing one holds the same sweep.

    An existing directory is only replaced with ``overwrite=True`` (and only if it is a sweep or empty).
    Changes nothing on disk when it raises.
    """
    sweep_dir = Path(sweep_dir)
    index = sweep.index()
    if sweep_dir.exists() and (not sweep_dir.is_dir() or any(sweep_dir.iterdir())):
        if not sweep_dir.is_dir():
            raise SweepError(f"{str(sweep_dir)!r} exists and is not a directory")
        if not is_sweep_dir(sweep_dir):
            raise SweepError(f"{str(sweep_dir)!r} exists, is not empty and is not a sweep directory; choose another --out")
        old = load_index(sweep_dir)
        same = _comparable(old) == _comparable(index)
        if not same and not overwrite:
            raise SweepError(
                f"sweep directory {str(sweep_dir)!r} holds a different sweep ({old.get('name')!r}, "
                f"{len(old.get('runs', []))} runs); use --overwrite to replace it or --out for a new directory"
            )
        if overwrite:  # start afresh (also for the same sweep)
            shutil.rmtree(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / RUNS_DIR).mkdir(exist_ok=True)
    (sweep_dir / LOGS_DIR).mkdir(exist_ok=True)
    _atomic_write(sweep_dir / INDEX_FILE, json.dumps(index, indent=2, default=str) + "\n")
    if spec_text is not None:
        _atomic_write(sweep_dir / SPEC_FILE, spec_text)


def _comparable(index: dict[str, Any]) -> Any:
    return [(r["name"], r["algo"], r["env"], json.dumps(r["overrides"], sort_keys=True, default=str), r["seed"],
             r["num_seeds"]) for r in index.get("runs", [])]


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def run_state(sweep_dir: Path, run: dict[str, Any]) -> tuple[str, str | None]:
    """What is on disk for one run: ``(state, message)``.

    ``completed``/``diverged``/``env_error`` (from ``summary.json``), ``interrupted`` (a config and a
    checkpoint but no summary: resumable) or ``pending`` (nothing usable yet).
    """
    from trustmarl.experiment import runner

    run_dir = Path(sweep_dir) / run["dir"]
    summary = run_dir / runner.SUMMARY_FILE
    if summary.is_file():
        try:
            s = json.loads(summary.read_text())
        except json.JSONDecodeError:
            s = {}
        status = s.get("status")
        if status in ("completed", "diverged", "env_error"):
            return status, s.get("message")
    if runner.is_run_dir(run_dir) and (run_dir / runner.LAST_CHECKPOINT).is_file():
        return "interrupted", None
    return "pending", None


def read_status(sweep_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(sweep_dir) / STATUS_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


# ---- one run (worker side) -----------------------------------------------------------------------

def run_one(sweep_dir: str | Path, name: str, progress: bool = False) -> dict[str, Any]:
    """Train (or resume) the run ``name`` of the sweep in ``sweep_dir``; returns a small result dict.

    Used by the local worker processes and by Ray tasks. A completed run is not trained again.
    Raises ``ConfigError`` for a run that cannot start; training problems come back as the summary's status.
    """
    from trustmarl.experiment import runner

    sweep_dir = Path(sweep_dir)
    index = load_index(sweep_dir)
    _import_all(index.get("imports", []))
    run = next((r for r in index["runs"] if r["name"] == name), None)
    if run is None:
        raise SweepError(f"sweep {str(sweep_dir)!r} has no run named {name!r}")
    run_dir = sweep_dir / run["dir"]
    state, message = run_state(sweep_dir, run)
    if state in ("completed", "diverged"):
        s = json.loads((run_dir / runner.SUMMARY_FILE).read_text())
        return _result(name, s, skipped=True)
    overrides = {**run["overrides"], "seed": run["seed"], "num_seeds": run["num_seeds"]}
    cfg = build_config(run["algo"], run["env"], overrides)
    if state in ("interrupted", "env_error"):
        summary = runner.train(cfg, run_dir, resume=True, progress=progress)
    else:
        if run_dir.exists() and not runner.is_run_dir(run_dir):
            shutil.rmtree(run_dir)  # a start that failed before writing a config: ours to clear
        summary = runner.train(cfg, run_dir, resume=False, overwrite=True, progress=progress)
    return _result(name, summary)


def _result(name: str, summary: dict[str, Any], skipped: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "status": summary.get("status", "failed"),
        "final_return": summary.get("final_return"),
        "wall_seconds": summary.get("wall_seconds"),
        "message": summary.get("message"),
        "skipped": skipped,
    }


def worker_main(argv: list[str]) -> int:
    """``python -m trustmarl.studies.sweep worker SWEEP_DIR RUN``: exit 0 completed, 3 diverged,
    4 env error, 2 could not start (the message is the last line of the log)."""
    if len(argv) != 2:
        print("usage: python -m trustmarl.studies.sweep worker SWEEP_DIR RUN", file=sys.stderr)
        return 2
    try:
        res = run_one(argv[0], argv[1])
    except ConfigError as e:
        print(f"trustmarl: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    print("SWEEP_RESULT " + json.dumps(res, default=str))
    return {"completed": 0, "diverged": 3, "env_error": 4}.get(res["status"], 1)


# ---- the driver ----------------------------------------------------------------------------------

class Progress:
    """Done/running/failed counts as one line per event (stderr), and ``status.json`` in the sweep dir."""

    def __init__(self, sweep_dir: Path, runs: list[dict[str, Any]], out=None):
        self.sweep_dir, self.out = Path(sweep_dir), out or sys.stderr
        self.runs = {r["name"]: r for r in runs}
        self.status: dict[str, dict[str, Any]] = {}
        old = read_status(sweep_dir)
        for r in runs:
            state, message = run_state(sweep_dir, r)
            entry = {"status": state, "message": message}
            if state == "pending" and old.get(r["name"], {}).get("status") == "failed":
                entry = {"status": "pending", "message": "failed before: " + str(old[r["name"]].get("message"))}
            self.status[r["name"]] = entry
        self.t0 = time.time()
        self._write()

    def counts(self) -> dict[str, int]:
        c = {"done": 0, "running": 0, "failed": 0, "waiting": 0}
        for s in self.status.values():
            st = s["status"]
            c["done" if st == "completed" else "running" if st in ("running", "submitted") else
              "failed" if st in ("failed", "diverged", "env_error") else "waiting"] += 1
        return c

    def line(self) -> str:
        c = self.counts()
        return (f"[sweep {c['done']}/{len(self.status)} done, {c['running']} running, {c['failed']} failed, "
                f"{c['waiting']} waiting, {time.time() - self.t0:.0f}s]")

    def event(self, name: str, status: str, message: str | None = None, **extra: Any) -> None:
        self.status[name] = {"status": status, "message": message, **extra}
        self._write()
        detail = ""
        if status in ("running", "submitted"):
            r = self.runs[name]
            verb = "started" if status == "running" else "submitted to Ray:"
            detail = f"{verb} {name} ({r['algo']} on {r['env']}, seeds {r['seed']}..{r['seed'] + r['num_seeds'] - 1})"
        elif status == "completed":
            fr = extra.get("final_return")
            detail = f"finished {name}: final return {fr:.4g}" if isinstance(fr, (int, float)) else f"finished {name}"
            if extra.get("wall_seconds"):
                detail += f" in {extra['wall_seconds']:.0f}s"
        else:
            detail = f"{status.upper()} {name}: {message or ''}".rstrip(": ")
        print(f"{self.line()} {detail}", file=self.out, flush=True)

    def _write(self) -> None:
        _atomic_write(self.sweep_dir / STATUS_FILE, json.dumps(self.status, indent=2, default=str) + "\n")


def todo(sweep_dir: Path, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs to start now: everything but completed and diverged ones."""
    return [r for r in runs if run_state(sweep_dir, r)[0] not in ("completed", "diverged")]


def run_local(sweep_dir: Path, runs: list[dict[str, Any]], progress: Progress, jobs: int,
              poll: float = 0.2, python: str | None = None) -> None:
    """Run ``runs`` in at most ``jobs`` worker processes at a time; each writes ``logs/<run>.log``."""
    sweep_dir = Path(sweep_dir)
    queue = list(runs)
    active: dict[str, tuple[subprocess.Popen, Any, float]] = {}
    env = _worker_env(jobs, sweep_dir)
    try:
        while queue or active:
            while queue and len(active) < jobs:
                r = queue.pop(0)
                log = open(sweep_dir / LOGS_DIR / f"{r['name']}.log", "a")
                log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {r['algo']} on {r['env']} ===\n")
                log.flush()
                proc = subprocess.Popen(
                    [python or sys.executable, "-m", "trustmarl.studies.sweep", "worker", str(sweep_dir), r["name"]],
                    stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                )
                active[r["name"]] = (proc, log, time.time())
                progress.event(r["name"], "running")
            time.sleep(poll)
            for name in [n for n, (p, _, _) in active.items() if p.poll() is not None]:
                proc, log, t0 = active.pop(name)
                log.close()
                _finish_local(sweep_dir, name, proc.returncode, time.time() - t0, progress)
    except KeyboardInterrupt:
        for name, (proc, log, _) in active.items():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # the runner saves a checkpoint of the last chunk
        deadline = time.time() + 60
        for name, (proc, log, _) in active.items():
            try:
                proc.wait(timeout=max(1.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
        raise


def _finish_local(sweep_dir: Path, name: str, code: int, seconds: float, progress: Progress) -> None:
    log_text = (sweep_dir / LOGS_DIR / f"{name}.log").read_text(errors="replace")
    result = None
    for line in log_text.splitlines()[::-1]:
        if line.startswith("SWEEP_RESULT "):
            result = json.loads(line[len("SWEEP_RESULT "):])
            break
    if result is not None and result["status"] == "completed":
        progress.event(name, "completed", None, final_return=result.get("final_return"), wall_seconds=seconds)
        return
    if result is not None:
        progress.event(name, result["status"], result.get("message"), wall_seconds=seconds)
        return
    last = [ln for ln in log_text.splitlines() if ln.strip()]
    message = last[-1] if last else f"worker exited with code {code}"
    message = message if code != -signal.SIGKILL else "worker was killed"
    progress.event(name, "failed", f"{message} (exit code {code}; log: {LOGS_DIR}/{name}.log)", wall_seconds=seconds)


def _worker_env(jobs: int, sweep_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    if jobs > 1:  # several JAX processes on one GPU must not each grab 75% of its memory
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    # runs of one sweep compile the same programs (seeds, resumes): share a persistent compilation cache
    env.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path(sweep_dir).resolve() / ".jax_cache"))
    return env


# ---- Ray -----------------------------------------------------------------------------------------

def check_ray_address(address: str | None, timeout: float = 5.0) -> None:
    """Raise :class:`SweepError` if Ray is not installed or ``address`` (host:port) cannot be reached."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise SweepError("--ray needs Ray: pip install 'trustmarl[ray]'") from None
    if address in (None, "", "local", "auto"):
        return
    hostport = re.sub(r"^[a-z]+://", "", address)
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise SweepError(f"Ray address {address!r} must look like HOST:PORT (or ray://HOST:PORT, auto, local)")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as e:
        raise SweepError(f"cannot reach the Ray cluster at {address!r}: {e}") from None


def _ray_task(sweep_dir: str, name: str) -> dict[str, Any]:
    """The body of one Ray task: :func:`run_one`, with failures returned instead of raised."""
    import traceback

    try:
        return run_one(sweep_dir, name)
    except ConfigError as e:
        return {"name": name, "status": "failed", "message": " ".join(str(e).split())}
    except Exception as e:  # noqa: BLE001 - reported with the run, the other runs go on
        tb = traceback.format_exc().strip().splitlines()
        return {"name": name, "status": "failed", "message": f"{type(e).__name__}: {e} ({tb[-2].strip() if len(tb) > 1 else ''})"}


def run_ray(sweep_dir: Path, runs: list[dict[str, Any]], progress: Progress, address: str | None,
            resources: dict[str, float], ray_module=None) -> None:
    """Run every run as a Ray task (``num_cpus``/``num_gpus`` from ``resources``); results land in ``sweep_dir``.

    ``address``: ``None``/``local`` starts a local Ray; ``auto`` joins the running cluster; ``HOST:PORT``
    or ``ray://HOST:PORT`` connects to that one. The sweep directory must be visible to every node.
    """
    ray = ray_module
    if ray is None:
        import ray  # type: ignore[no-redef]
    started_here = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": False,
                                  "runtime_env": {"env_vars": {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}}}
        if address not in (None, "", "local"):
            kwargs["address"] = address
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise SweepError(f"cannot connect to Ray at {address or 'a new local cluster'!r}: {' '.join(str(e).split())}") from None
        started_here = True
    task = ray.remote(num_cpus=resources.get("cpu", 1.0), num_gpus=resources.get("gpu", 0.0), max_calls=1)(_ray_task)
    pending = {}
    for r in runs:
        pending[task.remote(str(Path(sweep_dir).resolve()), r["name"])] = r["name"]
        progress.event(r["name"], "submitted")  # Ray starts it when its resources are free
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=5.0)
            for ref in done:
                name = pending.pop(ref)
                try:
                    res = ray.get(ref)
                except Exception as e:  # noqa: BLE001 - a worker that died
                    res = {"status": "failed", "message": f"Ray task failed: {type(e).__name__}: {e}"}
                if res["status"] == "completed":
                    progress.event(name, "completed", None, final_return=res.get("final_return"),
                                   wall_seconds=res.get("wall_seconds"))
                else:
                    progress.event(name, res["status"], res.get("message"))
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref)
        raise
    finally:
        if started_here:
            ray.shutdown()


# ---- entry point ---------------------------------------------------------------------------------

def run_sweep(
    sweep: Sweep,
    sweep_dir: str | Path,
    jobs: int = 1,
    ray_address: str | None = None,
    use_ray: bool = False,
    overwrite: bool = False,
    spec_text: str | None = None,
    out=None,
    ray_module=None,
    in_process: bool = False,
) -> dict[str, Any]:
    """Run (or continue) a sweep in ``sweep_dir``; returns ``{"runs": {name: status}, "failed": [...], ...}``.

    Checks everything that can be checked (the directory, Ray's address) before starting any run.
    ``in_process=True`` trains the runs one after another in this process (for tests and debugging).
    """
    sweep_dir = Path(sweep_dir)
    if jobs < 1:
        raise SweepError(f"--jobs {jobs} must be >= 1")
    if use_ray and ray_module is None:
        check_ray_address(ray_address)
    prepare_dir(sweep, sweep_dir, spec_text, overwrite)
    index = load_index(sweep_dir)
    runs = index["runs"]
    progress = Progress(sweep_dir, runs, out=out)
    waiting = todo(sweep_dir, runs)
    states = [run_state(sweep_dir, r)[0] for r in runs]
    kept = f", {states.count('diverged')} diverged (kept)" if "diverged" in states else ""
    where = " on Ray" if use_ray else ", in this process" if in_process else f", {jobs} at a time"
    print(f"sweep {sweep.name!r}: {len(runs)} runs in {sweep_dir} ({states.count('completed')} already completed{kept}, "
          f"{len(waiting)} to run{where})", file=out or sys.stderr, flush=True)
    if use_ray:
        run_ray(sweep_dir, waiting, progress, ray_address, index.get("resources") or {"cpu": 1, "gpu": 0}, ray_module)
    elif in_process:
        for r in waiting:
            progress.event(r["name"], "running")
            res = _ray_task(str(sweep_dir), r["name"])
            if res["status"] == "completed":
                progress.event(r["name"], "completed", None, final_return=res.get("final_return"),
                               wall_seconds=res.get("wall_seconds"))
            else:
                progress.event(r["name"], res["status"], res.get("message"))
    else:
        run_local(sweep_dir, waiting, progress, jobs)
    failed = {n: s for n, s in progress.status.items() if s["status"] != "completed"}
    return {
        "sweep_dir": str(sweep_dir),
        "runs": {n: s["status"] for n, s in progress.status.items()},
        "failed": [
            {"name": n, "status": s["status"], "message": s.get("message"), "config": _run_config(index, n)}
            for n, s in failed.items()
        ],
    }


def _run_config(index: dict[str, Any], name: str) -> dict[str, Any]:
    r = next(r for r in index["runs"] if r["name"] == name)
    return {"algo": r["algo"], "env": r["env"], **r["overrides"], "seed": r["seed"], "num_seeds": r["num_seeds"]}


def format_overrides(config: dict[str, Any]) -> str:
    """``algo env key=value ...``: the failing run's config as a ``trustmarl train`` command line."""
    c = dict(config)
    algo, env = c.pop("algo"), c.pop("env")
    return f"trustmarl train {algo} {env} " + " ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in c.items())


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:
        return worker_main(argv[1:])
    print("usage: python -m trustmarl.studies.sweep worker SWEEP_DIR RUN  (use `trustmarl sweep` instead)",
          file=sys.stderr)
    return 2


__all__ = [
    "RunSpec", "Sweep", "SweepError", "check_ray_address", "is_sweep_dir", "load_index", "load_sweep",
    "parse_sweep", "run_one", "run_state", "run_sweep",
]

if __name__ == "__main__":
    sys.exit(main())
