"""Tests of the sequential-update primitives (seed 001 eq. 10-11, App. D; spec §6.8 e-g, §7 #4)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trustmarl.trust.sequential import (
    draw_order,
    factor_from_log,
    factor_stats,
    happo_objective,
    init_log_factor,
    update_factor,
)


def test_factor_is_product_of_earlier_agents_ratios():
    """spec §6.8f: after agent i_m the factor equals exp(sum over earlier agents of (new - old logp)),
    sample-wise, for a random order; Gaussian agents with several action dims use the joint density."""
    rng = np.random.default_rng(0)
    n_agents, t, dims = 4, 50, (1, 3, 2, 2)
    # per-agent, per-sample, per-dim log-probs before/after the agent's update
    old = [rng.normal(size=(t, d)) - 1.0 for d in dims]
    new = [o + 0.3 * rng.normal(size=(t, d)) for o, d in zip(old, dims)]
    order = np.asarray(draw_order(jax.random.PRNGKey(3), n_agents))
    log_f = init_log_factor((t,), jnp.float32)
    for m, agent in enumerate(order):
        # the factor seen by agent i_m: product over earlier agents of prod_dims pi_new / pi_old
        expected = np.ones(t)
        for earlier in order[:m]:
            expected *= np.prod(np.exp(new[earlier]) / np.exp(old[earlier]), axis=-1)
        np.testing.assert_allclose(np.asarray(factor_from_log(log_f)), expected, rtol=1e-5)
        log_f = update_factor(log_f, jnp.asarray(new[agent].sum(-1)), jnp.asarray(old[agent].sum(-1)))
    # n = 1 (TRPO/PPO special case, spec §6.8e): the first agent always sees factor 1
    assert np.all(np.asarray(factor_from_log(init_log_factor((t,)))) == 1.0)


def test_factor_mask_and_clip_and_log_space():
    log_f = jnp.zeros(4)
    new = jnp.array([0.5, -0.5, 100.0, -100.0])
    log_f = update_factor(log_f, new, jnp.zeros(4), mask=jnp.array([1.0, 0.0, 1.0, 1.0]))
    np.testing.assert_allclose(np.asarray(log_f), [0.5, 0.0, 100.0, -100.0])
    # log space: no underflow in the sum even when exp of a single step would under/overflow
    log_f2 = update_factor(log_f, jnp.array([0.0, 0.0, -100.0, 100.0]), jnp.zeros(4))
    np.testing.assert_allclose(np.asarray(factor_from_log(log_f2)), [np.exp(0.5), 1.0, 1.0, 1.0], rtol=1e-6)
    # optional clip range (off by default)
    f = factor_from_log(jnp.log(jnp.array([0.1, 1.0, 10.0])), clip=(0.5, 2.0))
    np.testing.assert_allclose(np.asarray(f), [0.5, 1.0, 2.0], rtol=1e-6)
    f = factor_from_log(jnp.log(jnp.array([0.1, 10.0])))
    np.testing.assert_allclose(np.asarray(f), [0.1, 10.0], rtol=1e-6)


def test_factor_stats():
    f = jnp.array([[0.5, 2.0], [1.0, 4.0]])
    s = factor_stats(f)
    assert float(s["mean"]) == pytest.approx(1.875) and float(s["min"]) == 0.5 and float(s["max"]) == 4.0
    s = factor_stats(f, mask=jnp.array([[1.0, 1.0], [1.0, 0.0]]))
    assert float(s["mean"]) == pytest.approx(3.5 / 3) and float(s["min"]) == 0.5 and float(s["max"]) == 2.0
    s = factor_stats(f, mask=jnp.zeros((2, 2)))
    assert all(np.isnan(float(v)) for v in s.values())
    s = jax.jit(factor_stats)(f)
    assert float(s["max"]) == 4.0


def test_draw_order_reproducible_and_uniform_first():
    """spec §6.8g: fixed key -> same permutation sequence; each agent first with frequency ~ 1/n."""
    n_agents, draws = 5, 10000
    draw_many = jax.jit(lambda key, n: jax.vmap(lambda k: draw_order(k, n_agents))(jax.random.split(key, n)),
                        static_argnums=1)
    orders = np.asarray(draw_many(jax.random.PRNGKey(42), draws))
    orders_again = np.asarray(draw_many(jax.random.PRNGKey(42), draws))
    np.testing.assert_array_equal(orders, orders_again)
    assert orders.dtype == np.int32
    np.testing.assert_array_equal(np.sort(orders, axis=1), np.tile(np.arange(n_agents), (draws, 1)))
    first = np.bincount(orders[:, 0], minlength=n_agents) / draws
    # binomial std = sqrt(0.2*0.8/10000) = 0.004: 5 sigma
    np.testing.assert_allclose(first, 1.0 / n_agents, atol=0.02)
    # every position is uniform, and many distinct permutations appear (5! = 120)
    last = np.bincount(orders[:, -1], minlength=n_agents) / draws
    np.testing.assert_allclose(last, 1.0 / n_agents, atol=0.02)
    assert len({tuple(o) for o in orders}) == 120
    # a different key gives a different sequence
    other = np.asarray(draw_many(jax.random.PRNGKey(7), draws))
    assert not np.array_equal(other[:50], orders[:50])


def test_draw_order_fixed():
    o = draw_order(jax.random.PRNGKey(0), 6, fixed=True)
    np.testing.assert_array_equal(np.asarray(o), np.arange(6))
    assert o.dtype == jnp.int32


def test_happo_objective_values_and_gradient():
    """seed 001 eq. 11: d/d ratio = M*A when unclipped, 0 when the clip is active; M not differentiated."""
    eps = 0.2
    ratio = jnp.array([1.0, 1.1, 1.3, 1.3, 0.7, 0.7, 0.9])
    adv = jnp.array([1.0, -2.0, 1.0, -1.0, 1.0, -1.0, 0.5])
    factor = jnp.array([0.5, 2.0, 1.5, 0.8, 1.2, 3.0, 0.0])
    val = happo_objective(ratio, adv, factor, eps)
    ref = np.asarray(factor) * np.minimum(
        np.asarray(ratio) * np.asarray(adv), np.clip(np.asarray(ratio), 1 - eps, 1 + eps) * np.asarray(adv)
    )
    np.testing.assert_allclose(np.asarray(val), ref, rtol=1e-6)
    g_ratio = jax.grad(lambda r: happo_objective(r, adv, factor, eps).sum())(ratio)
    # clipped: r=1.3 with A>0 (above 1+eps) and r=0.7 with A<0 (below 1-eps) -> zero gradient
    clipped = np.array([False, False, True, False, False, True, False])
    expected = np.where(clipped, 0.0, np.asarray(factor) * np.asarray(adv))
    np.testing.assert_allclose(np.asarray(g_ratio), expected, rtol=1e-6)
    # the factor is a constant of the agent's update
    g_factor = jax.grad(lambda f: happo_objective(ratio, adv, f, eps).sum())(factor)
    assert np.all(np.asarray(g_factor) == 0.0)
    # factor outside the min equals factor inside the min (M > 0, spec §3.2)
    r, fa = np.asarray(ratio), np.asarray(factor * adv)
    inside = np.minimum(r * fa, np.clip(r, 1 - eps, 1 + eps) * fa)
    np.testing.assert_allclose(np.asarray(val), inside, rtol=1e-6)
