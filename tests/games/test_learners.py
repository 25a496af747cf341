"""Matrix-game learners on exact payoffs (spec T5 Figure 4 part, T6): IGA, IGA-PP, WoLF-IGA, MATRL."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trustmarl.envs.matrix import GENERAL_SUM_GAMES
from trustmarl.games.learners import LearnerConfig, matrix_metagame, matrl_step, run_learner
from trustmarl.games.random_games import FAMILIES, random_games
from trustmarl.games.two_by_two import gradients, values

INIT = (0.9, 0.2)


def _runs(method, games, n_iters, config=LearnerConfig()):
    """Trajectories [G, n_iters + 1, 2] and rho [G, n_iters, 2], vmapped over games, float64."""
    init = jnp.asarray(INIT, jnp.float64)
    run = jax.jit(jax.vmap(lambda p: run_learner(method, p, init, n_iters, config=config)))
    traj, rho = run(jnp.asarray(games, jnp.float64))
    return np.asarray(traj), np.asarray(rho)


def test_values_and_gradients_are_the_bilinear_formulas():
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        p = rng.normal(size=(2, 2, 2))
        a, b = 0.3, 0.8
        pi1, pi2 = np.array([a, 1 - a]), np.array([b, 1 - b])
        np.testing.assert_allclose(np.asarray(values(p, a, b)), [pi1 @ p[0] @ pi2, pi1 @ p[1] @ pi2], rtol=1e-14)
        g = jax.grad(lambda x: values(p, x, b)[0])(a), jax.grad(lambda y: values(p, a, y)[1])(b)
        np.testing.assert_allclose(np.asarray(gradients(p, a, b)), np.asarray(g), rtol=1e-13)


def test_matching_pennies_matrl_converges_and_iga_cycles():
    """T5 (Figure 4): from (0.9, 0.2), lr 0.02, br_lr 0.03. MATRL first gets within 0.05 of (1/2, 1/2) after
    835 iterations and is within 4e-4 after 3000; rho = (0, 0) on ~95% of iterations, else (0, 1) or (1, 0).
    IGA never comes within 0.36 (its last 200 iterations stay > 0.3 away), IGA-PP never within 0.35,
    "MATRL w/o BR" behaves like IGA; the selection rule does not matter."""
    mp = np.asarray(GENERAL_SUM_GAMES["matching_pennies"])[None]
    with jax.enable_x64(True):
        traj, rho = _runs("matrl", mp, 3000)
        dev = np.abs(traj[0] - 0.5).max(axis=1)
        assert np.argmax(dev < 0.05) == 835
        assert dev[-1] < 4e-4 and dev[-1] < 0.01
        both_candidates = np.all(rho[0] == 0.0, axis=1).mean()
        assert 0.94 < both_candidates < 0.97
        others = rho[0][~np.all(rho[0] == 0.0, axis=1)]
        assert {tuple(r) for r in others} <= {(0.0, 1.0), (1.0, 0.0)}
        first, _ = _runs("matrl", mp, 3000, LearnerConfig(selection="first"))
        np.testing.assert_array_equal(first, traj)
        iga, _ = _runs("iga", mp, 3000)
        iga_dev = np.abs(iga[0] - 0.5).max(axis=1)
        assert iga_dev.min() > 0.36 and iga_dev[-200:].min() > 0.3
        assert iga[0, -1, 0] == 1.0 or iga[0, -1, 1] in (0.0, 1.0)  # on the boundary
        pp, _ = _runs("iga_pp", mp, 3000)
        assert np.abs(pp[0] - 0.5).max(axis=1).min() > 0.35
        no_br, _ = _runs("matrl", mp, 3000, LearnerConfig(best_response=False))
        assert np.abs(no_br[0] - 0.5).max(axis=1).min() > 0.36


def test_named_games_converge_to_the_expected_equilibrium():
    """T5 (Figure 9): Prisoner's dilemma -> (0, 0), Chicken -> (1, 0), Stag hunt -> (1, 1); MATRL and IGA agree."""
    expected = {"prisoners_dilemma": (0.0, 0.0), "chicken": (1.0, 0.0), "stag_hunt": (1.0, 1.0)}
    games = np.stack([np.asarray(GENERAL_SUM_GAMES[g]) for g in expected])
    with jax.enable_x64(True):
        for method in ("matrl", "iga"):
            traj, _ = _runs(method, games, 1000)
            np.testing.assert_allclose(traj[:, -1], np.array(list(expected.values())), atol=1e-12)


def test_degenerate_meta_strategies_bit_for_bit():
    """T6 on 600 random games x 300 iterations: rho = 1 is independent learning (IGA with the BR step size),
    rho = 0 is IL-PP (IGA-PP predicting one TPR step ahead, clipped), w/o BR with rho = 0 is one IGA step
    and w/o BR with rho = 1 never moves."""
    games = np.concatenate([random_games(f, range(200)) for f in FAMILIES])
    c = LearnerConfig()
    with jax.enable_x64(True):
        forced_one, rho_one = _runs("matrl", games, 300, LearnerConfig(rho=1.0))
        np.testing.assert_array_equal(forced_one, _runs("iga", games, 300, LearnerConfig(lr=c.br_lr))[0])
        assert np.all(rho_one == 1.0)
        forced_zero, _ = _runs("matrl", games, 300, LearnerConfig(rho=0.0))
        il_pp = _runs("iga_pp", games, 300, LearnerConfig(lr=c.br_lr, pp_gamma=c.lr, clip_prediction=True))[0]
        np.testing.assert_array_equal(forced_zero, il_pp)
        no_br_zero, _ = _runs("matrl", games, 300, LearnerConfig(rho=0.0, best_response=False))
        np.testing.assert_array_equal(no_br_zero, _runs("iga", games, 300)[0])
        no_br_one, _ = _runs("matrl", games, 300, LearnerConfig(rho=1.0, best_response=False))
        np.testing.assert_array_equal(no_br_one, np.broadcast_to(np.asarray(INIT), no_br_one.shape))
        # and the real thing differs from all of them
        assert not np.array_equal(_runs("matrl", games, 300)[0], forced_one)


def test_matrl_step_meta_game_and_mixture():
    """One step by hand: the exact meta-game G_k[x, y] = V_k(pi^x, pi^y) - V_k(pi), G[0,0] = 0, its NE,
    the mixture and the best response against the other's mixture."""
    p = np.asarray(GENERAL_SUM_GAMES["matching_pennies"], np.float64)

    @jax.jit
    def library(pol):
        new, info = matrl_step(p, pol, jax.random.PRNGKey(0))
        return new, info, matrix_metagame(p, pol, info.candidate)

    with jax.enable_x64(True):
        new, info, g = library(jnp.asarray([0.9, 0.2]))
    new, g, rho, cand = np.asarray(new), np.asarray(g), np.asarray(info.rho), np.asarray(info.candidate)

    def v(a, b):  # numpy values
        return np.array([[a, 1 - a] @ p[k] @ [b, 1 - b] for k in range(2)])

    g1 = 0.2 * 4 - 2.0  # dV_1/dalpha = beta u_1 + P_1[0,1] - P_1[1,1], u_1 = 4
    g2 = 0.9 * -4 + 2.0
    np.testing.assert_allclose(cand, np.clip([0.9 + 0.02 * g1, 0.2 + 0.02 * g2], 0, 1), rtol=1e-14)
    pols = ([0.9, cand[0]], [0.2, cand[1]])
    for x in (0, 1):
        for y in (0, 1):
            np.testing.assert_allclose(g[:, x, y], v(pols[0][x], pols[1][y]) - v(0.9, 0.2), atol=1e-15)
    assert np.all(g[:, 0, 0] == 0.0) and bool(info.found)
    mixed = rho * np.array([0.9, 0.2]) + (1 - rho) * cand
    h1 = mixed[1] * 4 - 2.0
    h2 = mixed[0] * -4 + 2.0
    np.testing.assert_allclose(new, np.clip([0.9 + 0.03 * h1, 0.2 + 0.03 * h2], 0, 1), rtol=1e-14)


def test_wolf_uses_the_small_step_when_winning():
    """Agent 1 (wants to match) is losing against beta = 0.2: large step; agent 2 is winning: small step."""
    from trustmarl.games.learners import wolf_step

    p = np.asarray(GENERAL_SUM_GAMES["matching_pennies"], np.float64)
    with jax.enable_x64(True):
        new = np.asarray(jax.jit(wolf_step, static_argnums=(3, 4))(p, jnp.asarray([0.9, 0.2]), jnp.asarray([0.5, 0.5]), 0.02, 0.06))
    g1, g2 = 0.2 * 4 - 2.0, 0.9 * -4 + 2.0
    np.testing.assert_allclose(new, [0.9 + 0.06 * g1, 0.2 + 0.02 * g2], rtol=1e-14)


def test_config_validation():
    with pytest.raises(ValueError, match="selection"):
        LearnerConfig(selection="best")
    with pytest.raises(ValueError, match="rho"):
        LearnerConfig(rho=1.5)
    with pytest.raises(ValueError, match="learner"):
        run_learner("lola", GENERAL_SUM_GAMES["chicken"], INIT, 10)
