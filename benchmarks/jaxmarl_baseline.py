"""JaxMARL's MPE baselines, imported unchanged from a JaxMARL checkout and timed in a fresh process.

The one home of this code for ``bench_mpe.py`` (training speed against JaxMARL's IPPO-FF) and
``time_to_threshold.py`` (wall-clock to a return). A user gets the baselines with
``git clone https://github.com/FLAIROx/JaxMARL`` and passes the checkout as ``--jaxmarl-repo PATH``
(or sets ``JAXMARL_REPO``); the ``jaxmarl`` pip package (0.2.0 here) provides the environments. The
scripts and their YAML configs are used as they are: only the libraries they import for logging and
configuration are replaced by stubs in ``sys.modules`` before the script is imported:

- ``wandb.log``, which every update calls through ``jax.experimental.io_callback``, goes to a
  :class:`Recorder` (the wall time and the logged return of each update and, for
  time_to_threshold.py, a stop at a return threshold or a step budget); ``wandb.init`` does nothing;
- ``hydra.main`` and ``omegaconf.OmegaConf.to_container`` are identities (only the scripts' ``main``
  uses them; :func:`run_baseline` calls ``make_train`` the way ``main`` does);
- ``distrax.Categorical`` is a 10-line logits categorical (sample, log_prob, entropy): distrax is not
  installed.

The logged return is MPELogWrapper's ``returned_episode_returns`` (reward times the number of agents,
i.e. the sum over agents): IPPO-FF averages it over the rollout, MAPPO-RNN (key ``returns``) takes the
rollout's last step.

**io_callback under vmap.** JAX batches an (unordered) ``io_callback`` into a ``lax.map`` over the
batch axis, so with K vmapped seeds ``wandb.log`` is called K times per update, once per seed, in seed
order, each time with that seed's unbatched metrics. The recorder groups every K consecutive calls
into one update: the update's time is that of its last call, its return the mean over the K seeds.

**six.** ``jaxmarl.wrappers.baselines`` (imported by the scripts for ``MPELogWrapper``) imports
``gymnax``, whose ``gymnax/utils/load_mnist.py`` does ``from six.moves.urllib.request import
urlretrieve`` (gymnax 1.0.1), and neither declares ``six`` as a dependency: ``pip install six``.

**Fresh processes.** :func:`run_fresh` calls a function of a module file in a new Python process whose
first statement, before any import, is ``_T0 = time.time()`` (the process start), and returns the dict
the child printed on its ``RESULT {json}`` line (:func:`print_result`), or ``{"error": ...}``.
``JAX_COMPILATION_CACHE_DIR`` is removed from the child's environment, so compilation is always paid.
The result of :func:`run_baseline` (and of bench_mpe.py's own contenders) has the keys
``t_start`` (process start), ``t_imports`` (imports done), ``update_times`` (``time.time()`` at the end
of each completed update), ``t_end``, ``steps_per_update`` (env steps of one environment copy per
seed), ``num_seeds``, ``chunk`` (updates per timestamp; 1 here), ``returns`` (mean over seeds per
update) and ``stopped``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np

# name -> (script, YAML config[, base YAML config]), relative to the checkout. The Q-learning scripts read
# Hydra's config.yaml with an algorithm file ``+alg=...`` merged over it (``{**config, **config["alg"]}``).
QL_BASE = "baselines/QLearning/config/config.yaml"
BASELINES = {
    "jaxmarl-ippo-ff": ("baselines/IPPO/ippo_ff_mpe.py", "baselines/IPPO/config/ippo_ff_mpe.yaml"),
    "jaxmarl-mappo-rnn": ("baselines/MAPPO/mappo_rnn_mpe.py", "baselines/MAPPO/config/mappo_homogenous_rnn_mpe.yaml"),
    "jaxmarl-qmix-rnn-smax": ("baselines/QLearning/qmix_rnn.py", "baselines/QLearning/config/alg/ql_rnn_smax.yaml", QL_BASE),
    "jaxmarl-vdn-rnn-smax": ("baselines/QLearning/vdn_rnn.py", "baselines/QLearning/config/alg/ql_rnn_smax.yaml", QL_BASE),
    "jaxmarl-qmix-rnn-mpe": ("baselines/QLearning/qmix_rnn.py", "baselines/QLearning/config/alg/ql_rnn_mpe.yaml", QL_BASE),
    "jaxmarl-vdn-rnn-mpe": ("baselines/QLearning/vdn_rnn.py", "baselines/QLearning/config/alg/ql_rnn_mpe.yaml", QL_BASE),
}
RESULT = "RESULT "
URL = "https://github.com/FLAIROx/JaxMARL"
CLONE = f"git clone {URL}"


def add_repo_argument(parser: argparse.ArgumentParser) -> None:
    """``--jaxmarl-repo PATH``, defaulting to the ``JAXMARL_REPO`` environment variable."""
    parser.add_argument("--jaxmarl-repo", default=os.environ.get("JAXMARL_REPO") or None,
                        help=f"a JaxMARL checkout ({CLONE}), for its baselines/ folder; default $JAXMARL_REPO")


def missing_files(repo: str, name: str) -> list[str]:
    """The files of baseline ``name`` that the checkout ``repo`` lacks."""
    return [p for p in BASELINES[name] if not (Path(repo) / p).is_file()]


# ----------------------------------------------------------------------------- child side


class Stop(Exception):
    """Raised by the wandb.log stub to end a run early (it surfaces as a runtime error of the train call)."""


class Recorder:
    """Stand-in for ``wandb.log``: the end time and the mean return (over seeds) of every update.

    ``num_seeds`` consecutive calls make one update (one call per vmapped seed, see the module
    docstring). With ``stop_return`` it raises :class:`Stop` once the mean of the last ``window``
    updates' returns reaches it; with ``max_steps`` once ``updates * steps_per_update`` reaches it.
    """

    def __init__(self, num_seeds: int = 1, stop_return: float | None = None, window: int = 5,
                 max_steps: int | None = None, keys: tuple[str, ...] = ()):
        self.num_seeds, self.stop_return, self.window, self.max_steps = num_seeds, stop_return, window, max_steps
        self.steps_per_update = 0  # set once the config is read
        self.times: list[float] = []
        self.returns: list[float] = []
        self.keys = keys  # further logged metrics kept per update (mean over seeds), e.g. SMAX's win rate
        self.extra: dict[str, list[float]] = {k: [] for k in keys}
        self.returns_per_seed: list[list[float]] = []  # [update][seed]
        self.extra_per_seed: dict[str, list[list[float]]] = {k: [] for k in keys}
        self.stopped = False
        self._pending: list[float] = []
        self._pending_extra: list[dict[str, float]] = []

    def log(self, metric: dict, *args, **kwargs) -> None:
        r = metric.get("returns", metric.get("returned_episode_returns"))
        if r is None:  # not a per-update log
            return
        self._pending.append(float(np.mean(np.asarray(r))))
        self._pending_extra.append({k: float(np.mean(np.asarray(metric[k]))) for k in self.keys if k in metric})
        if len(self._pending) < self.num_seeds:
            return
        self.times.append(time.time())
        self.returns.append(sum(self._pending) / len(self._pending))
        self.returns_per_seed.append(list(self._pending))
        for k in self.keys:
            values = [e.get(k, np.nan) for e in self._pending_extra]
            self.extra_per_seed[k].append(values)
            self.extra[k].append(float(np.nanmean(values)))
        self._pending, self._pending_extra = [], []
        recent = self.returns[-self.window:]
        if (self.stop_return is not None and sum(recent) / len(recent) >= self.stop_return) or (
            self.max_steps is not None and len(self.returns) * self.steps_per_update >= self.max_steps
        ):
            self.stopped = True
            raise Stop()


def install_stubs(log) -> None:
    """Put stubs for wandb (``wandb.log = log``), hydra, omegaconf and distrax into ``sys.modules``."""
    import jax
    import jax.numpy as jnp

    wandb = types.ModuleType("wandb")
    wandb.log, wandb.init = log, lambda *a, **k: None
    hydra = types.ModuleType("hydra")
    hydra.main = lambda *a, **k: (lambda f: f)
    omegaconf = types.ModuleType("omegaconf")
    omegaconf.OmegaConf = type("OmegaConf", (), {"to_container": staticmethod(lambda c: c)})
    distrax = types.ModuleType("distrax")

    class Categorical:
        def __init__(self, logits):
            self.logits = jax.nn.log_softmax(logits, axis=-1)

        def sample(self, seed):
            return jax.random.categorical(seed, self.logits, axis=-1)

        def log_prob(self, x):
            return jnp.take_along_axis(self.logits, x[..., None].astype(jnp.int32), axis=-1)[..., 0]

        def entropy(self):
            return -jnp.sum(jnp.exp(self.logits) * self.logits, axis=-1)

    distrax.Categorical = Categorical
    sys.modules.update(wandb=wandb, hydra=hydra, omegaconf=omegaconf, distrax=distrax)


def load_baseline(repo: str, name: str, log) -> tuple[types.ModuleType, dict[str, Any]]:
    """Import baseline ``name``'s script from the checkout (stubs installed first) and read its YAML config."""
    script = Path(repo) / BASELINES[name][0]
    install_stubs(log)
    sys.path.insert(0, str(script.parent))
    spec = importlib.util.spec_from_file_location("jaxmarl_baseline_script", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, read_config(repo, name)


def read_config(repo: str, name: str) -> dict[str, Any]:
    """Baseline ``name``'s YAML config (the Q-learning scripts: ``{**config.yaml, **alg/<file>.yaml}``, as their
    ``main`` merges them), numbers as numbers."""
    import yaml

    _, config, *base = (Path(repo) / p for p in BASELINES[name])

    def num(v):  # OmegaConf reads 1e7 and 2.5e-4 as numbers, YAML 1.1 as strings
        try:
            return float(v) if isinstance(v, str) else v
        except ValueError:
            return v

    merged = {}
    for path in (*base, config):
        merged.update(yaml.safe_load(path.read_text()))
    return {k: num(v) for k, v in merged.items()}


def print_result(result: dict[str, Any]) -> None:
    print(RESULT + json.dumps(result), flush=True)


def run_baseline(t0: float, repo: str, name: str, num_seeds: int | None = None, seed: int | None = None,
                 total_timesteps: int | None = None, stop_return: float | None = None, window: int = 5,
                 max_steps: int | None = None, overrides: dict[str, Any] | None = None,
                 keys: tuple[str, ...] = ()) -> None:
    """Run baseline ``name`` in this (fresh) process and print its RESULT line; ``t0`` = process start.

    ``num_seeds=K`` runs it as the scripts' ``main`` does: ``NUM_SEEDS = K`` and
    ``jax.vmap(jax.jit(make_train(config)))(jax.random.split(PRNGKey(seed), K))`` (``seed`` defaults
    to the config's ``SEED``). ``num_seeds=None`` runs one seed without vmap,
    ``jax.jit(make_train(config))(PRNGKey(seed))`` (``NUM_SEEDS = 1``). ``total_timesteps`` replaces
    the config's ``TOTAL_TIMESTEPS`` (which sets ``NUM_UPDATES``: the length of its scan and of its
    learning-rate schedule). ``stop_return``, ``window`` and ``max_steps``: see :class:`Recorder`.
    ``overrides`` replace further config entries (e.g. ``MAP_NAME``), ``keys`` are metrics recorded
    besides the return (``extra`` of the result).

    The Q-learning scripts (``baselines/QLearning``: ``make_train(config, env)``) get their env from
    their own ``env_from_config(config)``, as their ``single_run`` does, and log through
    ``jax.debug.callback`` only when ``WANDB_MODE`` is not ``"disabled"`` (config.yaml's value): it is
    set to ``"online"``, which reaches the stubbed ``wandb.log`` and nothing else (``wandb.init`` is a
    no-op). Like ``io_callback``, ``debug.callback`` under vmap is called once per seed, in order.
    """
    import copy

    recorder = Recorder(num_seeds or 1, stop_return, window, max_steps, tuple(keys))
    module, config = load_baseline(repo, name, recorder.log)
    import jax

    t_imports = time.time()
    config.update(overrides or {})
    config["NUM_SEEDS"] = num_seeds or 1
    if total_timesteps is not None:
        config["TOTAL_TIMESTEPS"] = total_timesteps
    recorder.steps_per_update = int(config["NUM_ENVS"] * config["NUM_STEPS"])
    key = jax.random.PRNGKey(config["SEED"] if seed is None else seed)
    if hasattr(module, "env_from_config"):  # the Q-learning scripts
        config["WANDB_MODE"] = "online"  # their per-update log call, to the recorder
        env, _ = module.env_from_config(copy.deepcopy(config))
        train = module.make_train(config, env)
    else:
        train = module.make_train(config)
    try:
        if num_seeds is None:
            out = jax.jit(train)(key)
        else:
            out = jax.vmap(jax.jit(train))(jax.random.split(key, num_seeds))
        jax.block_until_ready(out)
    except Exception:  # the recorder's Stop surfaces as a runtime error of the train call
        if not recorder.stopped:
            raise
    print_result({
        "t_start": t0, "t_imports": t_imports, "update_times": recorder.times, "t_end": time.time(),
        "steps_per_update": recorder.steps_per_update, "num_seeds": num_seeds or 1, "chunk": 1,
        "returns": recorder.returns, "stopped": recorder.stopped, "extra": recorder.extra,
        "returns_per_seed": recorder.returns_per_seed, "extra_per_seed": recorder.extra_per_seed,
    })


# ----------------------------------------------------------------------------- parent side


def fresh_process(code: str, timeout: float) -> dict[str, Any]:
    """Run ``code`` in a new Python process after ``_T0 = time.time()``; return its RESULT dict or ``{"error"}``."""
    program = "import time\n_T0 = time.time()  # process start, before any other import\n" + code
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    try:
        res = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    lines = [x for x in res.stdout.splitlines() if x.startswith(RESULT)]
    if not lines:
        return {"error": (res.stderr.strip() or res.stdout.strip() or f"exit status {res.returncode}")[-2000:]}
    return json.loads(lines[-1][len(RESULT):])


def run_fresh(module_file: str | Path, function: str, timeout: float, **kwargs) -> dict[str, Any]:
    """Call ``function(_T0, **kwargs)`` of the module at ``module_file`` in a fresh process (:func:`fresh_process`)."""
    path = Path(module_file).resolve()
    code = (f"import sys\nsys.path.insert(0, {str(path.parent)!r})\n"
            f"from {path.stem} import {function}\n{function}(_T0, **{kwargs!r})\n")
    return fresh_process(code, timeout)
