"""The meta-game Nash solver (Wen et al. 2021, section 3.2; spec T4) against independent oracles.

Two agents: the equilibria equal those of ``nashpy``'s support enumeration on random games. Three and
four agents: pure equilibria equal a brute-force numpy enumeration, and every answer is a true
equilibrium by a numpy NashConv. Random games are solved in one vmapped call.
"""

from __future__ import annotations

import itertools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trustmarl.trust.metagame import deviation_gains
from trustmarl.trust.nash import (
    SELECTIONS,
    equilibrium_candidates,
    mixed_equilibria_search,
    pure_equilibria,
    pure_profiles,
    solve_metagame,
)

nashpy = pytest.importorskip("nashpy")


def _solve_batch(g, keys, **kw):
    return jax.jit(jax.vmap(lambda a, k: solve_metagame(a, k, **kw)))(jnp.asarray(g), keys)


def _numpy_nash_conv(g: np.ndarray, rho: np.ndarray) -> float:
    """NashConv by explicit enumeration of the 2^n profiles (independent of the library)."""
    n = len(rho)

    def value(i: int, r: np.ndarray) -> float:
        w = np.stack([r, 1 - r], -1)
        return sum(np.prod([w[j, x[j]] for j in range(n)]) * g[(i,) + x] for x in itertools.product((0, 1), repeat=n))

    total = 0.0
    for i in range(n):
        best = max(value(i, np.where(np.arange(n) == i, 1.0 - k, rho)) for k in (0, 1))
        total += best - value(i, rho)
    return float(total)


def _numpy_pure_equilibria(g: np.ndarray) -> set[tuple[int, ...]]:
    n = g.shape[0]
    out = set()
    for x in itertools.product((0, 1), repeat=n):
        if all(g[(i,) + x] >= g[(i,) + x[:i] + (1 - x[i],) + x[i + 1 :]] for i in range(n)):
            out.add(x)
    return out


def test_two_agents_match_nashpy_support_enumeration():
    """Every equilibrium of 1500 random 2x2 games (half with G[0,0] = 0, as meta-games; 100 with ties)
    equals nashpy's, in nashpy's order; selection 'last' returns nashpy's last one (the reference code's choice)."""
    rng = np.random.default_rng(0)
    games = rng.normal(size=(1500, 2, 2, 2))
    games[::2, :, 0, 0] = 0.0
    games[1:300:3, 0, 1, :] = games[1:300:3, 0, 0, :]  # degenerate: agent 1's candidate = its current policy
    games[1:300:3, 1, 1, :] = games[1:300:3, 1, 0, :]  # (ties: weakly best pure responses count)
    with jax.enable_x64(True):
        cands, valid = jax.jit(jax.vmap(lambda g: equilibrium_candidates(g, tol=0.0)))(jnp.asarray(games))
        last = _solve_batch(games, jax.random.split(jax.random.PRNGKey(0), len(games)), selection="last", tol=0.0)
    cands, valid = np.asarray(cands), np.asarray(valid)
    counts = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nashpy warns on an even number of equilibria
        for g, c, v, rho in zip(games, cands, valid, np.asarray(last.rho)):
            ref = [np.array([eq[0][0], eq[1][0]]) for eq in nashpy.Game(g[0], g[1]).support_enumeration()]
            ours = c[v]
            assert len(ours) == len(ref), (g, ours, ref)
            for a, b in zip(ours, ref):
                np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(rho, ref[-1], rtol=1e-9, atol=1e-12)
            counts.append(len(ref))
    assert set(counts) >= {1, 2, 3}  # both unique and multiple equilibria were exercised
    assert np.all(np.asarray(last.found)) and np.all(np.asarray(last.n_equilibria) == np.array(counts))


def test_two_agent_equilibria_are_projected_fixed_points():
    """T4 / Theorem 2's provable part: at every NE of a 2x2 meta-game (G_i[0,0] = 0), interior
    coordinates have dg_i/drho_i = 0 (eq. 26), rho_i = 1 has dg_i/drho_i >= 0, rho_i = 0 has <= 0."""
    rng = np.random.default_rng(1)
    g = rng.normal(size=(3000, 2, 2, 2))
    g[:, :, 0, 0] = 0.0
    with jax.enable_x64(True):
        cands, valid = jax.jit(jax.vmap(lambda a: equilibrium_candidates(a, tol=0.0)))(jnp.asarray(g))
        gains = jax.jit(jax.vmap(jax.vmap(deviation_gains, in_axes=(None, 0))))(jnp.asarray(g), cands)
    cands, valid, gains = np.asarray(cands), np.asarray(valid), np.asarray(gains)
    assert valid.sum() > 3000
    rho, d = cands[valid], gains[valid]
    interior = (rho > 0) & (rho < 1)
    assert interior.any() and (rho == 1).any() and (rho == 0).any()
    assert np.all(np.abs(d[interior]) < 1e-9)
    assert np.all(d[rho == 1] >= -1e-12)
    assert np.all(d[rho == 0] <= 1e-12)


@pytest.mark.parametrize("n, n_games", [(3, 200), (4, 80)])
def test_many_agents_pure_enumeration_and_nash_conv(n, n_games):
    """T4 for n = 3, 4: pure equilibria equal brute force; every answer has NashConv < 1e-6 max|G|
    (numpy oracle); the fallback is (almost) never needed on random games. For n = 3 the batch also
    holds Jordan's game, whose only equilibrium is fully mixed: (1/2, 1/2, 1/2)."""
    rng = np.random.default_rng(n)
    g = rng.normal(size=(n_games, n) + (2,) * n)
    if n == 3:
        g[0] = _jordan_game()
    with jax.enable_x64(True):
        _, pure_ok = jax.jit(jax.vmap(lambda a: pure_equilibria(a, 0.0)))(jnp.asarray(g))
        out = _solve_batch(g, jax.random.split(jax.random.PRNGKey(n), n_games), selection="random", tol=1e-6)
    profiles = [tuple(int(v) for v in x) for x in pure_profiles(n)]
    for a, ok in zip(g, np.asarray(pure_ok)):
        assert {p for p, o in zip(profiles, ok) if o} == _numpy_pure_equilibria(a)
    found = np.asarray(out.found)
    assert found.mean() >= 0.99
    rho = np.asarray(out.rho)
    scale = np.abs(g).reshape(n_games, -1).max(axis=1)
    for a, r, s in zip(g[found][:25], rho[found][:25], scale[found][:25]):
        assert _numpy_nash_conv(a, r) < 1e-6 * s
    np.testing.assert_array_less(np.asarray(out.nash_conv)[found], 1e-6 * scale[found])
    np.testing.assert_array_equal(rho[~found], 1.0)  # fallback: keep the current policies
    if n == 3:
        np.testing.assert_allclose(rho[0], 0.5, atol=1e-9)
        assert bool(found[0]) and int(out.n_equilibria[0]) == 1


def _jordan_game() -> np.ndarray:
    """Three agents: 1 wants to match 2, 2 to match 3, 3 to mismatch 1; the unique NE is (1/2, 1/2, 1/2)."""
    g = np.zeros((3, 2, 2, 2))
    for x in itertools.product((0, 1), repeat=3):
        g[(0,) + x] = 1.0 if x[0] == x[1] else -1.0
        g[(1,) + x] = 1.0 if x[1] == x[2] else -1.0
        g[(2,) + x] = 1.0 if x[2] != x[0] else -1.0
    return g


def test_search_agrees_with_the_closed_form_in_two_agent_games():
    """The regret search finds the closed-form mixed NE of 2x2 games that have no pure equilibrium."""
    rng = np.random.default_rng(2)
    g = rng.normal(size=(800, 2, 2, 2))
    with jax.enable_x64(True):
        exact = jax.jit(jax.vmap(lambda a: equilibrium_candidates(a, tol=0.0)))(jnp.asarray(g))
        keys = jax.random.split(jax.random.PRNGKey(1), 800)
        search = jax.jit(jax.vmap(lambda a, k: mixed_equilibria_search(a, k, 8, 50, 1e-9)))(jnp.asarray(g), keys)
    cands, valid = np.asarray(exact[0]), np.asarray(exact[1])
    only_mixed = valid[:, 4] & ~valid[:, :4].any(axis=1)
    assert only_mixed.sum() > 50
    rho_s, ok_s = np.asarray(search[0]), np.asarray(search[1])
    for i in np.flatnonzero(only_mixed):
        assert ok_s[i].any()
        np.testing.assert_allclose(rho_s[i][ok_s[i]], np.broadcast_to(cands[i, 4], rho_s[i][ok_s[i]].shape), atol=1e-7)


def test_selection_rules_and_seeded_random_choice():
    """A coordination meta-game with three equilibria: pure (current, current), pure (candidate,
    candidate) and a mixed one. 'random' picks each about a third of the time, reproducibly per key."""
    g = np.zeros((2, 2, 2))
    g[0] = g[1] = [[0.0, -1.0], [-1.0, 2.0]]
    key = jax.random.PRNGKey(0)
    solve = jax.jit(solve_metagame, static_argnames=("selection",))
    first = solve(g, key, selection="first")
    last = solve(g, key, selection="last")
    welfare = solve(g, key, selection="max_welfare")
    np.testing.assert_array_equal(np.asarray(first.rho), [1.0, 1.0])
    np.testing.assert_allclose(np.asarray(last.rho), [0.75, 0.75], rtol=1e-6)  # -(1-p) = -p + 2(1-p) gives p = 3/4
    np.testing.assert_array_equal(np.asarray(welfare.rho), [0.0, 0.0])
    assert int(first.n_equilibria) == 3
    keys = jax.random.split(jax.random.PRNGKey(42), 3000)
    pick = jax.jit(jax.vmap(lambda k: solve_metagame(g, k, selection="random").rho))
    rho = np.asarray(pick(keys))
    kinds = np.where(rho[:, 0] == 1.0, 0, np.where(rho[:, 0] == 0.0, 1, 2))
    freq = np.bincount(kinds, minlength=3) / len(kinds)
    np.testing.assert_allclose(freq, 1 / 3, atol=0.04)
    again = np.asarray(pick(keys))
    np.testing.assert_array_equal(rho, again)
    with pytest.raises(ValueError, match="selection"):
        solve_metagame(g, key, selection="best")
    assert "random" in SELECTIONS


def test_fallback_is_rho_one_and_flagged():
    """Nothing found (NaN payoffs, as from a diverged estimate; or no search budget): rho = 1, found = False."""
    solve = jax.jit(solve_metagame, static_argnames=("n_starts", "n_iters"))
    out = solve(np.full((2, 2, 2), np.nan), jax.random.PRNGKey(0))
    np.testing.assert_array_equal(np.asarray(out.rho), np.ones(2))
    assert not bool(out.found) and int(out.n_equilibria) == 0
    out = solve(_off_centre_jordan_game(), jax.random.PRNGKey(0), n_starts=1, n_iters=0)
    assert not bool(out.found)
    np.testing.assert_array_equal(np.asarray(out.rho), np.ones(3))
    assert float(out.nash_conv) > 0.0


def _off_centre_jordan_game() -> np.ndarray:
    """No pure NE and a unique mixed one away from the centre start: agent 2 mixes 1/3."""
    g = _jordan_game()
    g[0, 0, 0, :] = 3.0  # agent 1 now gets 3 for matching on action 0
    return g


def test_float32_under_jit_and_vmap():
    """The default (float32) path, vmapped over games and keys, tolerance relative to max|G|; the
    batch holds a NaN game (fallback, flagged) and a game whose only NE is mixed off the centre."""
    rng = np.random.default_rng(9)
    g = rng.normal(size=(200, 3, 2, 2, 2)).astype(np.float32)
    g[0] = np.nan
    g[1] = _off_centre_jordan_game()
    out = _solve_batch(g, jax.random.split(jax.random.PRNGKey(9), 200))
    assert out.rho.dtype == jnp.float32 and out.rho.shape == (200, 3)
    found = np.asarray(out.found)
    assert not found[0] and int(out.n_equilibria[0]) == 0
    np.testing.assert_array_equal(np.asarray(out.rho[0]), np.ones(3))
    assert found[1] and abs(float(out.rho[1, 1]) - 1 / 3) < 1e-5
    assert found[1:].mean() >= 0.99
    scale = np.abs(g[1:]).reshape(199, -1).max(axis=1)
    assert np.all(np.asarray(out.nash_conv)[1:][found[1:]] <= 1e-5 * scale[found[1:]])
