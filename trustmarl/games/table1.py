"""Convergence of IGA, IGA-PP, WoLF-IGA and MATRL on random 2x2 games (Wen et al. 2021, Table 1).

Protocol (the reference code's ``run_stateless.py``): for each family, games with seeds
``0 .. n_games-1`` (:mod:`trustmarl.games.random_games`); games whose support enumeration gives 2 or 4
equilibria (degenerate) are skipped; every learner starts at (0.9, 0.2) and runs 1000 iterations; a run
has converged when both policies are within 0.05 of one equilibrium, and its *steps* are the number
of iterations until that first happens. The rate is over all kept games (the reference code divided
by the number of games on which WoLF converged); mean steps are over the converged games.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from trustmarl.games.learners import METHODS, LearnerConfig, run_learner
from trustmarl.games.random_games import FAMILIES, random_games
from trustmarl.games.two_by_two import near_equilibrium, nash_equilibria

INIT = (0.9, 0.2)  # Wen et al. 2021, Table 2: agent 1 [0.9, 0.1], agent 2 [0.2, 0.8]
METHOD_NAMES = {"iga": "IGA", "iga_pp": "IGA-PP", "wolf": "WoLF-IGA", "matrl": "MATRL"}
FAMILY_NAMES = {"coordination": "Coordination", "anticoordination": "Anti-coord.", "cyclic": "Cyclic"}

# Wen et al. 2021, Table 1: (convergence rate, average convergence step). WoLF-IGA is not in the table.
PAPER_TABLE1 = {
    "coordination": {"iga": (0.99, 140.67), "iga_pp": (0.99, 138.56), "matrl": (0.99, 86.54)},
    "anticoordination": {"iga": (0.975, 88.95), "iga_pp": (0.975, 83.11), "matrl": (0.9825, 75.52)},
    "cyclic": {"iga": (0.78, 452.92), "iga_pp": (0.809, 432.98), "matrl": (0.846, 369.40)},
}
# An earlier run of the reference code's protocol (200 games per family), kept to compare with.
SPEC_TABLE1 = {
    "coordination": {"iga": (0.990, 132.7), "iga_pp": (0.990, 130.5), "matrl": (0.990, 87.7)},
    "anticoordination": {"iga": (0.985, 80.5), "iga_pp": (0.985, 76.3), "matrl": (0.990, 57.4)},
    "cyclic": {"iga": (0.765, 431.0), "iga_pp": (0.805, 412.0), "matrl": (0.835, 324.6)},
}


def convergence_steps(
    method: str,
    games: jax.Array,
    n_iters: int = 1000,
    init: Sequence[float] = INIT,
    config: LearnerConfig = LearnerConfig(),
    key: jax.Array | None = None,
) -> np.ndarray:
    """``[G]`` iterations until each game's run is first within 0.05 of an equilibrium (``-1``: never).

    One jitted, vmapped call over the games ``[G, 2, 2, 2]``; ``key`` seeds MATRL's ``"random"`` selection.
    """
    games = jnp.asarray(games)
    keys = jax.random.split(jax.random.PRNGKey(0) if key is None else key, games.shape[0])

    @jax.jit
    @jax.vmap
    def one(payoffs, k):
        cands, valid = nash_equilibria(payoffs)
        traj, _ = run_learner(method, payoffs, jnp.asarray(init, payoffs.dtype), n_iters, k, config=config)
        near = jax.vmap(lambda p: near_equilibrium(p, cands, valid))(traj[1:])
        return jnp.where(jnp.any(near), jnp.argmax(near) + 1, -1)

    return np.asarray(one(games, keys))


def equilibrium_counts(games) -> np.ndarray:
    """``[G]`` number of equilibria support enumeration finds (pure + interior mixed)."""
    _, valid = jax.jit(jax.vmap(nash_equilibria))(jnp.asarray(games))
    return np.asarray(valid).sum(axis=1)


def table1(
    n_games: int = 200,
    n_iters: int = 1000,
    methods: Sequence[str] = METHODS,
    families: Sequence[str] = FAMILIES,
    config: LearnerConfig = LearnerConfig(),
    first_seed: int = 0,
) -> dict:
    """Convergence rate and mean steps per family and method (Wen et al. 2021, Table 1).

    Runs in float64 (as the reference code's Python floats). Returns
    ``{family: {"games": kept, "skipped": n, method: {"rate", "mean_steps", "converged"}}}``.
    """
    with jax.enable_x64(True):
        seeds = range(first_seed, first_seed + n_games)
        per_family = {f: random_games(f, seeds) for f in families}
        kept = {f: g[~np.isin(equilibrium_counts(g), (2, 4))] for f, g in per_family.items()}
        sizes = [len(kept[f]) for f in families]
        everything = jnp.asarray(np.concatenate([kept[f] for f in families]))
        steps = {m: convergence_steps(m, everything, n_iters, config=config) for m in methods}
    out: dict = {}
    start = 0
    for f, size in zip(families, sizes):
        row: dict = {"games": size, "skipped": n_games - size}
        for m in methods:
            s = steps[m][start : start + size]
            conv = s > 0
            row[m] = {
                "rate": float(conv.mean()) if size else float("nan"),
                "mean_steps": float(s[conv].mean()) if conv.any() else float("nan"),
                "converged": int(conv.sum()),
            }
        out[f] = row
        start += size
    return out


def _cell(rate: float, steps: float) -> str:
    return f"{rate:.3f} / {steps:.1f}" if np.isfinite(steps) else f"{rate:.3f} / -"


def table1_markdown(result: dict, title: str = "Table 1: convergence rate / mean steps on random 2x2 games") -> str:
    """A Markdown table of ``result`` (from :func:`table1`) beside the paper's and those of an earlier run of the reference code's protocol."""
    families = [f for f in FAMILIES if f in result]
    methods = [m for m in METHODS if m in result[families[0]]]
    lines = [f"### {title}", ""]
    header = "| Method | Source | " + " | ".join(FAMILY_NAMES[f] for f in families) + " |"
    lines += [header, "|" + "---|" * (2 + len(families))]
    for m in methods:
        ours = [_cell(result[f][m]["rate"], result[f][m]["mean_steps"]) for f in families]
        lines.append(f"| {METHOD_NAMES[m]} | trustmarl | " + " | ".join(ours) + " |")
        if m in PAPER_TABLE1[families[0]]:
            spec = [_cell(*SPEC_TABLE1[f][m]) for f in families]
            paper = [f"{PAPER_TABLE1[f][m][0]} / {PAPER_TABLE1[f][m][1]:.2f}" for f in families]
            lines.append(f"| {METHOD_NAMES[m]} | reference-code protocol, earlier run (200 games) | " + " | ".join(spec) + " |")
            lines.append(f"| {METHOD_NAMES[m]} | Wen et al. 2021 | " + " | ".join(paper) + " |")
    games = ", ".join(f"{FAMILY_NAMES[f]} {result[f]['games']} (skipped {result[f]['skipped']})" for f in families)
    lines += [
        "",
        f"Games kept per family: {games}.",
        "",
        "Start (0.9, 0.2), 1000 iterations, converged when both policies are",
        "within 0.05 of an equilibrium; steps = iterations until then (mean over converged games); rate over",
        "all kept games. IGA/TPR step 0.02, MATRL best-response step 0.03, IGA-PP prediction 0.01, WoLF-IGA",
        "steps 0.06/0.02 with the first equilibrium given (not in the paper's table). MATRL without the",
        "reference code's KL term. The paper's rates are over a different game count (its text says 1000 and",
        "3000 games; the code draws seeds 0-199 per family), so its numbers are comparable only in ordering",
        "and magnitude.",
    ]
    return "\n".join(lines) + "\n"
