"""Learning dynamics of MATRL and IGA in named 2x2 games (Wen et al. 2021, Figure 4 and Figure 9).

Figure 4: matching pennies from (0.9, 0.2): MATRL converges to the mixed equilibrium (1/2, 1/2) while
IGA cycles out to the boundary. Figure 9: Chicken and the Prisoner's Dilemma (plus the Stag Hunt),
where both converge. Plots use matplotlib's object API with the Agg canvas (headless, no pyplot state).
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from trustmarl.envs.matrix import GENERAL_SUM_GAMES
from trustmarl.games.learners import LearnerConfig, run_learner
from trustmarl.games.table1 import INIT
from trustmarl.games.two_by_two import gradients, nash_equilibria

FIGURE9_GAMES = ("chicken", "prisoners_dilemma", "stag_hunt")
GAME_TITLES = {
    "matching_pennies": "Matching pennies",
    "chicken": "Chicken",
    "prisoners_dilemma": "Prisoner's dilemma",
    "stag_hunt": "Stag hunt",
}


def trajectories(games, methods=("matrl", "iga"), n_iters: int = 1000, config: LearnerConfig = LearnerConfig()) -> dict:
    """``{method: (trajectory [G, n_iters + 1, 2], rho [G, n_iters, 2])}`` from (0.9, 0.2) in float64,
    one vmapped run per method over the named ``games``."""
    with jax.enable_x64(True):
        payoffs = jnp.asarray([GENERAL_SUM_GAMES[g] for g in games], jnp.float64)
        init = jnp.asarray(INIT, jnp.float64)
        out = {}
        for m in methods:
            run = jax.jit(jax.vmap(lambda p, m=m: run_learner(m, p, init, n_iters, config=config)))
            traj, rho = run(payoffs)
            out[m] = (np.asarray(traj), np.asarray(rho))
    return out


def equilibria(game: str) -> np.ndarray:
    """``[k, 2]`` the game's equilibria as (alpha, beta)."""
    with jax.enable_x64(True):
        cands, valid = nash_equilibria(jnp.asarray(GENERAL_SUM_GAMES[game], jnp.float64))
        return np.asarray(cands)[np.asarray(valid)]


def _panel(fig, ax, game: str, traj: np.ndarray, title: str, arrows: int = 25) -> None:
    """One phase portrait: the trajectory coloured by iteration, gradient arrows, equilibria as stars."""
    colours = np.arange(len(traj))
    sc = ax.scatter(traj[:, 0], traj[:, 1], c=colours, s=2, cmap="viridis")
    payoffs = np.asarray(GENERAL_SUM_GAMES[game], np.float64)
    idx = np.linspace(0, len(traj) - 1, arrows).astype(int)
    g1, g2 = gradients(payoffs, traj[idx, 0], traj[idx, 1])
    ax.quiver(traj[idx, 0], traj[idx, 1], np.asarray(g1), np.asarray(g2), color="tab:blue", width=0.006,
              angles="xy", scale_units="xy", scale=12.0, zorder=3)
    eq = equilibria(game)
    ax.scatter(eq[:, 0], eq[:, 1], marker="*", s=160, c="red", zorder=4, label="Nash equilibria")
    ax.scatter([traj[0, 0]], [traj[0, 1]], marker="o", s=40, facecolors="none", edgecolors="k", zorder=4, label="start")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("policy of agent 1: P(action 0)")
    ax.set_ylabel("policy of agent 2: P(action 0)")
    ax.set_title(title)
    fig.colorbar(sc, ax=ax, label="iteration")


def _save(fig, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110)
    return path


def figure4(path: Path, n_iters: int = 3000) -> dict:
    """Write Figure 4 (matching pennies: MATRL vs IGA from (0.9, 0.2)); returns summary numbers."""
    from matplotlib.figure import Figure

    runs = trajectories(("matching_pennies",), ("matrl", "iga"), n_iters)
    fig = Figure(figsize=(11, 4.6), layout="constrained")
    for ax, m, name in zip(fig.subplots(1, 2), ("matrl", "iga"), ("MATRL", "IGA")):
        _panel(fig, ax, "matching_pennies", runs[m][0][0], f"{name}, matching pennies ({n_iters} iterations)")
    _save(fig, path)
    out = {}
    for m, (traj, rho) in runs.items():
        traj, rho = traj[0], rho[0]
        dev = np.abs(traj - 0.5).max(axis=1)
        close = np.flatnonzero(dev < 0.05)
        out[m] = {
            "final": traj[-1].tolist(),
            "final_max_deviation": float(dev[-1]),
            "min_max_deviation": float(dev.min()),
            "first_within_0.05": int(close[0]) if len(close) else None,
        }
        if m == "matrl":
            out[m]["rho_both_candidates_fraction"] = float(np.mean(np.all(rho == 0.0, axis=1)))
    return out


def figure9(path: Path, n_iters: int = 200, games=FIGURE9_GAMES) -> dict:
    """Write Figure 9 (MATRL and IGA in Chicken, Prisoner's Dilemma and Stag Hunt); returns final policies."""
    from matplotlib.figure import Figure

    runs = trajectories(games, ("matrl", "iga"), n_iters)
    fig = Figure(figsize=(5.2 * len(games), 9), layout="constrained")
    axes = fig.subplots(2, len(games), squeeze=False)
    out: dict = {game: {} for game in games}
    for col, game in enumerate(games):
        for row, (m, name) in enumerate((("matrl", "MATRL"), ("iga", "IGA"))):
            traj = runs[m][0][col]
            _panel(fig, axes[row, col], game, traj, f"{name}, {GAME_TITLES[game]} ({n_iters} iterations)")
            out[game][m] = traj[-1].tolist()
    _save(fig, path)
    return out
