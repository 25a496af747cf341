"""Cross-play of two runs' kept checkpoints on a two-player game (Wen et al. 2021, Figure 6).

``trustmarl crossplay RUN_A RUN_B --episodes N`` plays player 0 (agent 0) from every kept checkpoint of
RUN_A (``checkpoints/update_NNNNNNN.npz``, written with the run key ``checkpoint_keep=K``) against player 1
(agent 1) from every kept checkpoint of RUN_B, ``N`` fresh episodes per pair, and writes into ``--out``:

- ``crossplay.json``: the matrix ``M[i][j]`` of player 0's mean return (A's checkpoint ``i`` against B's
  checkpoint ``j``), player 1's, the checkpoints' updates, the settings and the transitivity summary;
- ``crossplay.csv``: the matrix with the updates as row and column labels;
- ``crossplay.png``: the heat map.

In a zero-sum game player 1's return is ``-M``. **Transitivity** (the paper's reading of its heat maps:
later checkpoints should beat earlier ones): the share of comparable pairs in which A's later checkpoint
scores more against the same opponent (down every column) and the share in which B's later checkpoint
holds player 0 to less (along every row), and their mean.

Each run's policy is the one of seed ``--seed-a`` / ``--seed-b`` of that run (runs train several seeds
vmapped). JAX-native games play all pairs in one batch; host games (``pettingzoo/pong``) one row of pairs at
a time. Both runs must be on the same environment (name and settings), with two agents; the two
algorithms may differ (MATRL against IL). The frozen policies are loaded by
:class:`trustmarl.experiment.policy.FrozenRun`, the loader behind ``trustmarl.load_policy`` and the run keys
``fixed_agents`` / ``fixed_policy``.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from trustmarl.validation import ConfigError

KEPT_GLOB = "update_*.npz"


class CrossplayError(ConfigError):
    """Runs that cannot be played against each other (one line, exit code 2)."""


# ---- frozen policies from checkpoints ------------------------------------------------------------------

def kept_checkpoints(run_dir: Path) -> list[Path]:
    """The numbered checkpoints of a run, oldest first."""
    return sorted((Path(run_dir) / "checkpoints").glob(KEPT_GLOB))


class PairedPolicy:
    """Agent 0 acts with algorithm ``a``'s policy, every other agent with ``b``'s, each on the env's observations
    of the agents its run was trained for (matched by name, as for fixed agents:
    :class:`trustmarl.experiment.fixed.FrozenActor`), so a run that itself trained against a fixed opponent
    plays too. The ``algo`` interface that :func:`trustmarl.algos.evaluation.run_episodes` drives (views and
    carries are pairs); ``env``: the game with both players."""

    def __init__(self, env, a, b):
        from trustmarl.experiment.fixed import FrozenActor, Layout

        self.env, self.n_agents = env, env.n_agents
        self.layout = Layout(env.groups, env.agents[:1])  # agent 0 "fixed" by a, the others by b
        self.a = FrozenActor(self.layout, a)
        self.b = FrozenActor(Layout(env.groups, env.agents[1:]), b)

    def init_carry(self, batch_shape):
        return (self.a.init_carry(batch_shape), self.b.init_carry(batch_shape))

    def eval_actions(self, view, carry, obs, avail, done, key, deterministic=True):
        import jax

        ka, kb = jax.random.split(key)
        act_a, ca = self.a(carry[0], obs, avail, done, ka, view[0], deterministic)
        act_b, cb = self.b(carry[1], obs, avail, done, kb, view[1], deterministic)
        others = tuple(x for x, lg in zip(act_b, self.layout.learner_of) if lg is not None)
        return self.layout.actions(others, act_a, 1), (ca, cb)


# ---- the matrix ----------------------------------------------------------------------------------------

def _load(run_dir: Path, label: str):
    from trustmarl.experiment.fixed import check_fits, unwrapped
    from trustmarl.experiment.policy import FrozenRun

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CrossplayError(f"{label}: run directory {str(run_dir)!r} does not exist")
    kept = kept_checkpoints(run_dir)
    frozen = FrozenRun(run_dir)
    if not kept:
        raise CrossplayError(f"{label}: {str(run_dir)!r} has no kept checkpoints (checkpoints/{KEPT_GLOB}); "
                             "train it with checkpoint_keep=K")
    env = unwrapped(frozen.algo.env)  # the whole game, also for a run that trained against fixed agents
    if env.n_agents != 2:
        raise CrossplayError(f"{label}: {frozen.cfg.env.name} has {env.n_agents} agents; crossplay plays "
                             "two-player games")
    seat = env.agents[:1] if label == "RUN_A" else env.agents[1:]
    try:
        check_fits(frozen.algo.env.groups, env.groups, seat, f"{label} {str(run_dir)!r}", frozen.cfg.env.name)
    except ConfigError as e:
        raise CrossplayError(str(e)) from None
    return frozen, kept


def _views(frozen, kept: list[Path], seed: int, label: str) -> list[tuple[Any, int]]:
    """``(view, update)`` of seed ``seed`` in every kept checkpoint (views with a leading axis of 1)."""
    try:
        return [(v, int(c["update"])) for v, c in (frozen.view(seed, p) for p in kept)]
    except ConfigError as e:
        raise CrossplayError(f"{label}: {e}") from None


def transitivity(m: np.ndarray) -> dict[str, float]:
    """Shares of checkpoint pairs where the later one does better against the same opponent: player 0 down
    each column (``M[i', j] > M[i, j]`` for ``i' > i``), player 1 along each row (``M[i, j'] < M[i, j]``)."""
    m = np.asarray(m, np.float64)

    def share(x):  # rows = later/earlier pairs along axis 0, columns = opponents
        wins = total = 0
        for i in range(x.shape[0]):
            for k in range(i + 1, x.shape[0]):
                diff = x[k] - x[i]
                wins += int(np.sum(diff > 0))
                total += int(np.sum(diff != 0))
        return wins / total if total else float("nan")

    p0, p1 = share(m), share(-m.T)
    both = [p for p in (p0, p1) if not np.isnan(p)]
    return {"player0_later_better": p0, "player1_later_better": p1, "mean": float(np.mean(both)) if both else float("nan")}


def crossplay(run_a: Path, run_b: Path, episodes: int, out_dir: Path | None = None, seed_a: int = 0, seed_b: int = 0,
              deterministic: bool = False, seed: int = 0) -> dict[str, Any]:
    """Play every kept checkpoint of ``run_a`` (player 0) against every one of ``run_b`` (player 1), ``episodes``
    episodes per pair; write the files into ``out_dir`` (when given) and return the result."""
    import jax

    from trustmarl.algos.evaluation import JaxStepper, run_episodes
    from trustmarl.experiment.config import env_kind

    if not isinstance(episodes, int) or episodes < 1:
        raise CrossplayError(f"--episodes {episodes!r} must be an integer >= 1")
    run_a_, kept_a = _load(run_a, "RUN_A")
    run_b_, kept_b = _load(run_b, "RUN_B")
    (cfg_a, algo_a), (cfg_b, algo_b) = (run_a_.cfg, run_a_.algo), (run_b_.cfg, run_b_.algo)
    if (cfg_a.env.name, cfg_a.env.params) != (cfg_b.env.name, cfg_b.env.params):
        raise CrossplayError(f"the runs are on different environments: {cfg_a.env.name} {cfg_a.env.params} "
                             f"vs {cfg_b.env.name} {cfg_b.env.params}")
    t0 = time.perf_counter()
    views_a, views_b = _views(run_a_, kept_a, seed_a, "RUN_A"), _views(run_b_, kept_b, seed_b, "RUN_B")
    na, nb = len(views_a), len(views_b)
    from trustmarl.experiment.fixed import unwrapped

    pair = PairedPolicy(unwrapped(algo_a.env), algo_a, algo_b)
    k_env, k_act = jax.random.split(jax.random.PRNGKey(seed))
    stack = lambda views, idx: jax.tree.map(lambda *x: np.concatenate(x)[idx], *[v for v, _ in views])  # noqa: E731
    if env_kind(cfg_a.env.name) == "jax":  # every pair is one "seed" of one batched evaluation
        va, vb = stack(views_a, np.repeat(np.arange(na), nb)), stack(views_b, np.tile(np.arange(nb), na))
        res = run_episodes(pair, (va, vb), JaxStepper(pair.env, na * nb, episodes, k_env), k_act, deterministic)
        per_agent = np.asarray(res["return_per_agent"]).reshape(na, nb, 2)
    else:  # host env: one row of pairs at a time on nb x episodes env copies
        from trustmarl.algos.evaluation import HostStepper
        from trustmarl.envs.host import registry as host_registry

        vec = host_registry.make_vec_env(cfg_a.env.name, cfg_a.env.params, nb * episodes, seed)
        try:
            vb, rows = stack(views_b, np.arange(nb)), []
            for i in range(na):
                va = stack(views_a, np.full(nb, i))
                res = run_episodes(pair, (va, vb), HostStepper(vec, nb, seed=seed + i), jax.random.fold_in(k_act, i),
                                   deterministic)
                rows.append(np.asarray(res["return_per_agent"]))
        finally:
            vec.close()
        per_agent = np.stack(rows)
    m0, m1 = per_agent[..., 0], per_agent[..., 1]
    zero_sum = bool(np.allclose(m0 + m1, 0.0, atol=1e-5 * (1 + np.abs(m0).max())))
    result = {
        "run_a": str(run_a), "run_b": str(run_b), "algo_a": cfg_a.algo.name, "algo_b": cfg_b.algo.name,
        "env": cfg_a.env.name, "seed_a": seed_a, "seed_b": seed_b, "episodes": episodes, "deterministic": deterministic,
        "updates_a": [u for _, u in views_a], "updates_b": [u for _, u in views_b],
        "player0_return": m0.tolist(), "player1_return": m1.tolist(), "zero_sum": zero_sum,
        "transitivity": transitivity(m0), "seconds": time.perf_counter() - t0,
    }
    if out_dir is not None:
        result["files"] = [str(p) for p in write_files(result, Path(out_dir))]
    return result


def write_files(result: dict[str, Any], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "crossplay.json").write_text(json.dumps(result, indent=2) + "\n")
    with open(out_dir / "crossplay.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["A update \\ B update"] + result["updates_b"])
        for u, row in zip(result["updates_a"], result["player0_return"]):
            w.writerow([u] + [f"{x:.6g}" for x in row])
    return [out_dir / "crossplay.json", out_dir / "crossplay.csv", heat_map(result, out_dir / "crossplay.png")]


def heat_map(result: dict[str, Any], path: Path) -> Path:
    """Player 0's mean return per checkpoint pair (rows: RUN_A's checkpoints, columns: RUN_B's)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    m = np.asarray(result["player0_return"])
    lim = float(np.abs(m).max()) or 1.0
    fig = Figure(figsize=(1.6 + 0.55 * m.shape[1], 1.4 + 0.5 * m.shape[0]), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(m, cmap="RdBu", vmin=-lim, vmax=lim)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{m[i, j]:.2g}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(m.shape[1]), [str(u) for u in result["updates_b"]], rotation=90, fontsize=7)
    ax.set_yticks(range(m.shape[0]), [str(u) for u in result["updates_a"]], fontsize=7)
    ax.set_xlabel(f"player 1: {result['algo_b']} update ({Path(result['run_b']).name})", fontsize=8)
    ax.set_ylabel(f"player 0: {result['algo_a']} update ({Path(result['run_a']).name})", fontsize=8)
    t = result["transitivity"]["mean"]
    ax.set_title(f"{result['env']}: player 0's return, {result['episodes']} episodes per pair\n"
                 f"transitivity {t:.2f}", fontsize=8)
    fig.colorbar(im, ax=ax, shrink=0.8)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110)
    return path


def format_result(result: dict[str, Any]) -> str:
    t = result["transitivity"]
    m = np.asarray(result["player0_return"])
    return (f"crossplay {result['algo_a']} ({len(result['updates_a'])} checkpoints) as player 0 vs {result['algo_b']} "
            f"({len(result['updates_b'])} checkpoints) as player 1 on {result['env']}, {result['episodes']} episodes per "
            f"pair: player 0's mean return {m.mean():.4g} (min {m.min():.4g}, max {m.max():.4g})"
            + ("; zero-sum" if result["zero_sum"] else "")
            + f"; transitivity {t['mean']:.2f} (player 0 {t['player0_later_better']:.2f}, player 1 "
              f"{t['player1_later_better']:.2f})")
