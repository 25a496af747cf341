"""MATRL's meta-game pieces (Wen et al. 2021, eq. 3, 5, 25-31): spec T1 (one-state part) and T7.

The payoff tensor is checked against an independent numpy computation of ``V_k(pi^x) - V_k(pi)``; the
Markov-game part of T1 (``g(pi_bar)`` of the distribution mixture) is in ``tests/games/test_tabular.py``.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trustmarl.trust.metagame import (
    deviation_gains,
    expected_payoffs,
    metagame_payoffs,
    mixture_probs,
    mixture_ratio,
    mixture_tv,
    n_players,
    nash_conv,
    regrets,
    restricted_hessian_2p,
)


_payoffs = jax.jit(metagame_payoffs, static_argnames=("clip",))
_expected = jax.jit(expected_payoffs)


def _value(payoff: np.ndarray, policies: list[np.ndarray]) -> np.ndarray:
    """``[n]`` expected payoffs of independent policies in a one-state game (numpy, the oracle)."""
    out = payoff
    for p in reversed(policies):
        out = out @ p
    return out


def _random_one_state(rng, counts):
    n = len(counts)
    payoff = rng.normal(size=(n,) + tuple(counts))
    pi = [rng.dirichlet(np.ones(c)) for c in counts]
    pi_hat = [rng.dirichlet(np.ones(c)) for c in counts]
    return payoff, pi, pi_hat


def _all_samples(payoff, pi, pi_hat):
    """Every joint action as a 'sample', weighted by pi(a): the exact expectation of the estimator."""
    counts = payoff.shape[1:]
    joints = np.array(list(itertools.product(*[range(c) for c in counts])))
    weight = np.prod([pi[j][joints[:, j]] for j in range(len(counts))], axis=0)
    ratios = np.stack([pi_hat[j][joints[:, j]] / pi[j][joints[:, j]] for j in range(len(counts))], axis=1)
    v = _value(payoff, pi)
    adv = np.stack([payoff[(k,) + tuple(joints.T)] - v[k] for k in range(len(counts))], axis=1)  # A_k = P_k - V_k
    return ratios, adv, weight


@pytest.mark.parametrize("counts", [(2, 2), (3, 2), (2, 3, 2), (2, 2, 2, 2)])
def test_one_state_metagame_is_the_value_difference(counts):
    """T1: in a one-state game ``G_k[x] = V_k(pi^x) - V_k(pi)`` exactly, and ``G[0...0] = 0``."""
    rng = np.random.default_rng(len(counts) * 10 + sum(counts))
    n = len(counts)
    with jax.enable_x64(True):
        for _ in range(5):
            payoff, pi, pi_hat = _random_one_state(rng, counts)
            ratios, adv, weight = _all_samples(payoff, pi, pi_hat)
            g = np.asarray(_payoffs(ratios, adv, clip=None, mask=weight))
            assert g.shape == (n,) + (2,) * n
            for x in itertools.product((0, 1), repeat=n):
                pols = [pi_hat[j] if x[j] else pi[j] for j in range(n)]
                expected = _value(payoff, pols) - _value(payoff, pi)
                np.testing.assert_allclose(g[(slice(None),) + x], expected, rtol=1e-12, atol=1e-12)
            assert np.all(g[(slice(None),) + (0,) * n] == 0.0)
            # the mixed payoff is g(pi_bar) of the distribution mixture (multilinearity)
            rho = rng.random(n)
            pi_bar = [rho[j] * pi[j] + (1 - rho[j]) * pi_hat[j] for j in range(n)]
            np.testing.assert_allclose(
                np.asarray(_expected(g, rho)), _value(payoff, pi_bar) - _value(payoff, pi), rtol=1e-10, atol=1e-12
            )


def test_estimator_converges_at_root_n_and_clip_is_inactive_when_wide():
    """T7: the sampled, unclipped estimate converges to the exact meta-game with error ~ N^-1/2."""
    rng = np.random.default_rng(7)
    counts = (3, 2)
    with jax.enable_x64(True):
        payoff, pi, pi_hat = _random_one_state(rng, counts)
        ratios_all, adv_all, weight = _all_samples(payoff, pi, pi_hat)
        exact = np.asarray(metagame_payoffs(ratios_all, adv_all, clip=None, mask=weight))
        joints = np.array(list(itertools.product(*[range(c) for c in counts])))
        estimate = jax.jit(lambda r, a: metagame_payoffs(r, a, clip=None))
        errors = {}
        for n_samples in (400, 40_000):
            errs = []
            for rep in range(20):
                idx = np.random.default_rng(rep).choice(len(joints), size=n_samples, p=weight)
                g = np.asarray(estimate(ratios_all[idx], adv_all[idx]))
                errs.append(np.sqrt(np.mean((g - exact) ** 2)))
                assert np.all(g[:, 0, 0] == 0.0)
            errors[n_samples] = np.mean(errs)
        ratio = errors[400] / errors[40_000]  # 100x the samples: ~10x smaller error
        assert 6.0 < ratio < 16.0, errors
        assert errors[40_000] < 0.02
        # c_meta -> infinity: clipping is inactive; a tight clip changes the estimate
        r, a = ratios_all, adv_all
        np.testing.assert_array_equal(
            np.asarray(metagame_payoffs(r, a, clip=1e9, mask=weight)), np.asarray(metagame_payoffs(r, a, clip=None, mask=weight))
        )
        assert np.max(np.abs(np.asarray(metagame_payoffs(r, a, clip=0.1, mask=weight)) - exact)) > 1e-3


def test_estimator_formula_by_hand_with_clip_and_mask():
    """Two agents, three samples: the entries are the spec's formula mean_t prod_{x_j=1} clip(r_j) A_k."""
    r = np.array([[0.5, 1.05], [1.3, 0.95], [np.inf, np.nan]], np.float64)  # padding may hold garbage
    a = np.array([[1.0, -2.0], [0.5, 3.0], [np.nan, 1.0]], np.float64)
    m = np.array([1.0, 1.0, 0.0])  # the third sample is padding
    with jax.enable_x64(True):
        g = np.asarray(metagame_payoffs(r, a, clip=0.1, mask=m))
    c = np.clip(r[:2], 0.9, 1.1)
    m, a = m[:2], a[:2]
    for k in range(2):
        assert g[k, 0, 0] == 0.0
        np.testing.assert_allclose(g[k, 1, 0], np.sum(m * c[:, 0] * a[:, k]) / 2, rtol=1e-14)
        np.testing.assert_allclose(g[k, 0, 1], np.sum(m * c[:, 1] * a[:, k]) / 2, rtol=1e-14)
        np.testing.assert_allclose(g[k, 1, 1], np.sum(m * c[:, 0] * c[:, 1] * a[:, k]) / 2, rtol=1e-14)
    with pytest.raises(ValueError, match="shape"):
        metagame_payoffs(r[:, :1], a)


def test_mixture_probabilities_ratio_and_tv():
    """pi_bar = rho pi + (1-rho) pi_hat; its ratio to pi from the candidate's ratio; TV(pi, pi_bar) = (1-rho) TV(pi, pi_hat)."""
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(5), size=(4, 3))
    q = rng.dirichlet(np.ones(5), size=(4, 3))
    rho = rng.random((4, 3, 1))
    with jax.enable_x64(True):
        mix = np.asarray(mixture_probs(p, q, rho))
        np.testing.assert_allclose(mix.sum(-1), 1.0, rtol=1e-14)
        np.testing.assert_allclose(np.asarray(mixture_ratio(q / p, rho)), mix / p, rtol=1e-12)
        tv_direct = 0.5 * np.abs(mix - p).sum(-1)
        np.testing.assert_allclose(np.asarray(mixture_tv(p, q, rho[..., 0])), tv_direct, rtol=1e-12, atol=1e-15)
        # rho = 1 keeps pi, rho = 0 is the candidate, bit for bit
        np.testing.assert_array_equal(np.asarray(mixture_probs(p, q, 1.0)), p)
        np.testing.assert_array_equal(np.asarray(mixture_probs(p, q, 0.0)), q)


def test_deviation_gains_regrets_and_nash_conv_brute_force():
    """Contractions against explicit sums over the 2^n profiles (n = 1, 3, 5)."""
    rng = np.random.default_rng(11)

    @jax.jit
    def library(g, rho):
        return expected_payoffs(g, rho), deviation_gains(g, rho), regrets(g, rho), nash_conv(g, rho)

    with jax.enable_x64(True):
        for n in (1, 3, 5):
            g = rng.normal(size=(n,) + (2,) * n)
            rho = rng.random(n)
            assert n_players(g) == n
            w = np.stack([rho, 1 - rho], -1)
            u = np.zeros(n)
            u0, u1 = np.zeros(n), np.zeros(n)
            for x in itertools.product((0, 1), repeat=n):
                prob = np.prod([w[j, x[j]] for j in range(n)])
                u += prob * g[(slice(None),) + x]
                for i in range(n):
                    p_others = prob / w[i, x[i]]
                    (u0 if x[i] == 0 else u1)[i] += p_others * g[(i,) + x]
            got_u, got_d, got_reg, got_conv = (np.asarray(v) for v in library(g, rho))
            np.testing.assert_allclose(got_u, u, rtol=1e-12)
            np.testing.assert_allclose(got_d, u0 - u1, rtol=1e-10, atol=1e-12)
            reg = np.maximum(u0, u1) - u
            np.testing.assert_allclose(got_reg, reg, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(float(got_conv), reg.sum(), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match=r"\[n, 2, ..., 2\]"):
        n_players(np.zeros((3, 2, 2)))


def test_restricted_game_gradient_and_hessian_match_eq26_eq29():
    """Eq. 26 (dg_i/drho_i) and eq. 29 (H = [[0, gbar_1], [gbar_2, 0]], trace 0) by autodiff and by hand."""
    rng = np.random.default_rng(5)

    def own_gradient(g, rho):  # dg_i / drho_i by autodiff of the mixed payoffs
        return jnp.stack([jax.grad(lambda r: expected_payoffs(g, r)[i])(rho)[i] for i in range(2)])

    @jax.jit
    @jax.vmap
    def library(g, rho):
        return deviation_gains(g, rho), jax.jacfwd(lambda r: own_gradient(g, r))(rho), restricted_hessian_2p(g)

    with jax.enable_x64(True):
        g = rng.normal(size=(200, 2, 2, 2))
        g[:, :, 0, 0] = 0.0
        rho = rng.random((200, 2))
        gains, jac, h = (np.asarray(v) for v in library(g, rho))
        g1, g2 = g[:, 0], np.swapaxes(g[:, 1], 1, 2)  # [own, other]
        for i, m in enumerate((g1, g2)):
            o = rho[:, 1 - i]
            eq26 = (1 - o) * m[:, 0, 1] - o * m[:, 1, 0] - (1 - o) * m[:, 1, 1]
            np.testing.assert_allclose(gains[:, i], eq26, rtol=1e-10, atol=1e-12)
            gbar = m[:, 1, 1] - m[:, 0, 1] - m[:, 1, 0]
            np.testing.assert_allclose(h[:, i, 1 - i], gbar, rtol=1e-12)
        np.testing.assert_allclose(jac, h, rtol=1e-10, atol=1e-12)
        assert np.all(h[:, 0, 0] == 0.0) and np.all(h[:, 1, 1] == 0.0)  # trace 0: never negative definite
