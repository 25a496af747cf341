"""Unit tests for trustmarl.trust.divergence (KL/TV and diagnostics)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from trustmarl.trust.divergence import (
    approx_kl,
    categorical_kl,
    categorical_tv,
    explained_variance,
    gaussian_kl,
    joint_tv_estimate,
    ratio_range,
    tv_from_ratio,
)


def _random_dists(rng, shape, n_actions):
    p = rng.dirichlet(np.ones(n_actions), size=shape)
    return p


def test_categorical_kl_and_tv_match_numpy_random():
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        for _ in range(20):
            k = int(rng.integers(2, 7))
            p = _random_dists(rng, (5, 3), k)
            q = _random_dists(rng, (5, 3), k)
            kl = np.asarray(categorical_kl(np.log(p), np.log(q)))
            tv = np.asarray(categorical_tv(np.log(p), np.log(q)))
            np.testing.assert_allclose(kl, (p * np.log(p / q)).sum(-1), rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(tv, 0.5 * np.abs(p - q).sum(-1), rtol=1e-12, atol=1e-14)


def test_categorical_divergences_exclude_unavailable_actions():
    # available: actions 0, 2; unavailable action 1 carries -inf (or a huge negative number).
    p = np.array([0.3, 0.0, 0.7])
    q = np.array([0.5, 0.0, 0.5])
    avail = np.array([1, 0, 1])
    exp_kl = 0.3 * np.log(0.3 / 0.5) + 0.7 * np.log(0.7 / 0.5)
    with jax.enable_x64(True):
        for unavail_logp in (-np.inf, -1e10):
            lp = np.log(np.where(avail == 1, p, 1.0)) + np.where(avail == 1, 0.0, unavail_logp)
            lq = np.log(np.where(avail == 1, q, 1.0)) + np.where(avail == 1, 0.0, unavail_logp)
            assert abs(float(categorical_kl(lp, lq, avail)) - exp_kl) < 1e-14
            assert abs(float(categorical_tv(lp, lq, avail)) - 0.2) < 1e-14
            assert abs(float(categorical_kl(lp, lq)) - exp_kl) < 1e-14  # -inf/-1e10 also excluded w/o avail
            assert abs(float(categorical_tv(lp, lq)) - 0.2) < 1e-14
            g_kl = jax.grad(lambda x: categorical_kl(lp, x, avail))(jnp.asarray(lq))
            g_tv = jax.grad(lambda x: categorical_tv(lp, x, avail))(jnp.asarray(lq))
            assert np.all(np.isfinite(np.asarray(g_kl))) and np.all(np.isfinite(np.asarray(g_tv)))
        # garbage in an unavailable slot is ignored when avail is given
        lp_bad = np.array([np.log(0.3), 5.0, np.log(0.7)])
        assert abs(float(categorical_tv(lp_bad, np.log(np.array([0.5, 1, 0.5])), avail)) - 0.2) < 1e-14


def test_gaussian_kl_matches_closed_form_and_is_zero_at_equality():
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        mo, mn = rng.normal(size=(2, 4, 3))
        so, sn = rng.normal(scale=0.5, size=(2, 4, 3))
        got = np.asarray(gaussian_kl(mo, so, mn, sn))
        vo, vn = np.exp(2 * so), np.exp(2 * sn)
        expected = (0.5 * (np.log(vn / vo) + (vo + (mo - mn) ** 2) / vn - 1.0)).sum(-1)
        np.testing.assert_allclose(got, expected, rtol=1e-12)
        assert np.all(np.asarray(gaussian_kl(mo, so, mo, so)) == 0.0)
        # known value: N(0,1) || N(1, 2^2) in 1-D = log 2 + (1 + 1)/8 - 1/2
        assert abs(float(gaussian_kl([0.0], [0.0], [1.0], [np.log(2.0)])) - (np.log(2) + 0.25 - 0.5)) < 1e-14


def test_sample_estimators_are_unbiased_for_kl_and_tv():
    p = np.array([0.1, 0.2, 0.3, 0.4])
    q = np.array([0.25, 0.25, 0.25, 0.25])
    lr = np.log(q / p)
    with jax.enable_x64(True):
        # exact expectation under the old policy p
        e_kl = float((p * np.asarray(approx_kl(lr))).sum())
        e_tv = float((p * np.asarray(tv_from_ratio(lr))).sum())
        assert abs(e_kl - float(categorical_kl(np.log(p), np.log(q)))) < 1e-14
        assert abs(e_tv - float(categorical_tv(np.log(p), np.log(q)))) < 1e-14
        assert np.all(np.asarray(approx_kl(np.linspace(-3, 3, 101))) >= 0.0)
    assert float(approx_kl(0.0)) == 0.0 and float(tv_from_ratio(0.0)) == 0.0


def test_joint_tv_estimate_sum_of_per_agent_max_with_mask():
    tv = np.array([[0.1, 0.3, 0.9], [0.2, 0.05, 0.4], [0.15, 0.1, 0.0]])
    assert abs(float(joint_tv_estimate(tv)) - (0.2 + 0.3 + 0.9)) < 1e-6
    mask = np.array([[1, 1, 0], [0, 1, 1], [1, 1, 0]])
    assert abs(float(joint_tv_estimate(tv, mask)) - (0.15 + 0.3 + 0.4)) < 1e-6
    # several leading axes are all maximised over
    tv3 = np.stack([tv, tv * 0.5])  # [2, 3, 3]
    assert abs(float(joint_tv_estimate(tv3)) - 1.4) < 1e-6


def test_ratio_range_per_agent_masked_and_empty():
    lr = np.log(np.array([[1.1, 0.5, 2.0], [0.9, 1.3, 3.0], [1.0, 1.0, 1.0]]))
    lo, hi = ratio_range(lr)
    np.testing.assert_allclose(np.asarray(lo), [0.9, 0.5, 1.0], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(hi), [1.1, 1.3, 3.0], rtol=1e-6)
    mask = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]])
    lo, hi = ratio_range(lr, mask)
    np.testing.assert_allclose(np.asarray(lo), [1.0, 1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(hi), [1.1, 1.3, 1.0], rtol=1e-6)  # agent 3 fully masked -> 1
    lo, hi = ratio_range(lr, mask, axis=None)
    assert abs(float(lo) - 1.0) < 1e-6 and abs(float(hi) - 1.3) < 1e-6


def test_explained_variance_known_values():
    target = np.array([1.0, 2.0, 3.0, 4.0])
    assert float(explained_variance(target, target)) == 1.0
    assert abs(float(explained_variance(np.full(4, 2.5), target))) < 1e-7  # constant = mean
    # residual = target - pred = [1, -1, 1, -1] -> Var 1; Var(target) = 1.25 -> 1 - 0.8 = 0.2
    pred = target - np.array([1.0, -1.0, 1.0, -1.0])
    assert abs(float(explained_variance(pred, target)) - 0.2) < 1e-6
    assert abs(float(explained_variance(-target, target)) - (1 - 4.0)) < 1e-6  # Var(2t)/Var(t) = 4
    assert float(explained_variance(np.arange(3.0), np.ones(3))) == 0.0  # Var(target) == 0 -> 0
    # mask: the last entry (garbage) is ignored
    t2 = np.array([1.0, 2.0, 3.0, 4.0, 100.0])
    p2 = np.array([2.0, 1.0, 4.0, 3.0, np.nan])
    assert abs(float(explained_variance(p2, t2, np.array([1, 1, 1, 1, 0]))) - 0.2) < 1e-6
