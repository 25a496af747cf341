"""Matrix games on exact payoffs: IGA, IGA-PP, WoLF-IGA and IGA-based MATRL (Wen et al. 2021).

``reproduce_matrix_games(out_dir, tier)`` writes Table 1 and Figures 4 and 9; ``python -m trustmarl.games``
runs it. (The PPO-based ``matrl`` algorithm's grid-world study, Figure 5, is ``trustmarl.studies.matrl_grid``:
studies build on training runs, this package does not.) The learners are pure JAX steps (vmapped over games); the random game families are drawn
exactly as the reference code draws them.
"""

from trustmarl.games.learners import (
    METHODS,
    LearnerConfig,
    MatrlInfo,
    iga_pp_step,
    iga_step,
    learner_step,
    matrix_metagame,
    matrl_step,
    run_learner,
    wolf_step,
)
from trustmarl.games.random_games import FAMILIES, random_game, random_games
from trustmarl.games.reproduce import reproduce_matrix_games
from trustmarl.games.table1 import convergence_steps, table1, table1_markdown
from trustmarl.games.two_by_two import clip01, gradients, nash_equilibria, values

__all__ = [
    "FAMILIES",
    "METHODS",
    "LearnerConfig",
    "MatrlInfo",
    "clip01",
    "convergence_steps",
    "gradients",
    "iga_pp_step",
    "iga_step",
    "learner_step",
    "matrix_metagame",
    "matrl_step",
    "nash_equilibria",
    "random_game",
    "random_games",
    "reproduce_matrix_games",
    "run_learner",
    "table1",
    "table1_markdown",
    "values",
    "wolf_step",
]
