"""Unit tests for trustmarl.trust.ratios (clip rules, ratios, PPO/JR-PPO objectives)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trustmarl.trust.ratios import (
    joint_clip_objective,
    joint_log_ratio,
    joint_ratio,
    log_ratio,
    per_agent_clip,
    ppo_clip_objective,
)


def test_per_agent_clip_rules():
    assert per_agent_clip(0.2, 4, "fixed") == 0.2
    assert per_agent_clip(0.2, 4) == pytest.approx(0.05, abs=1e-15)
    assert per_agent_clip(0.2, 2, "nth_root") == pytest.approx(math.sqrt(1.2) - 1.0, abs=1e-15)
    assert isinstance(per_agent_clip(0.2, 3), float)
    for rule in ("fixed", "per_agent", "nth_root"):
        assert per_agent_clip(0.3, 1, rule) == pytest.approx(0.3, abs=1e-15)


@pytest.mark.parametrize(
    "eps,n,rule",
    [(0.0, 2, "per_agent"), (-0.1, 2, "fixed"), (0.2, 0, "per_agent"), (0.2, 2, "bogus"), (0.2, 1.5, "fixed")],
)
def test_per_agent_clip_rejects_bad_input(eps, n, rule):
    with pytest.raises(ValueError):
        per_agent_clip(eps, n, rule)


def test_log_ratio_and_ppo_objective_match_numpy():
    rng = np.random.default_rng(0)
    new, old = rng.normal(size=(2, 7, 3)).astype(np.float32)
    adv = rng.normal(size=(7, 3)).astype(np.float32)
    lr = np.asarray(log_ratio(new, old))
    np.testing.assert_allclose(lr, new - old, rtol=0, atol=0)
    r = np.exp(lr)
    expected = np.minimum(r * adv, np.clip(r, 0.8, 1.2) * adv)
    np.testing.assert_allclose(np.asarray(ppo_clip_objective(r, adv, 0.2)), expected, rtol=1e-6)


def test_joint_log_ratio_sums_last_axis_with_mask():
    rng = np.random.default_rng(1)
    new, old = rng.normal(size=(2, 4, 5, 3))
    mask = rng.random((4, 5, 3)) > 0.3
    got = np.asarray(joint_log_ratio(new, old, mask))
    np.testing.assert_allclose(got, ((new - old) * mask).sum(-1), rtol=1e-5, atol=1e-6)
    assert got.shape == (4, 5)


def test_joint_log_ratio_masked_nonfinite_logps_give_finite_values_and_grads():
    new = jnp.array([[-0.5, -jnp.inf], [-0.2, jnp.nan]])
    old = jnp.array([[-0.7, -jnp.inf], [-0.1, -3.0]])
    mask = jnp.array([[1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(np.asarray(joint_log_ratio(new, old, mask)), [0.2, -0.1], rtol=1e-6)
    g = jax.grad(lambda x: joint_ratio(x, old, mask).sum())(new)
    assert np.all(np.isfinite(np.asarray(g)))
    assert float(g[0, 1]) == 0.0 and float(g[1, 1]) == 0.0


def test_joint_ratio_clamps_log_ratio():
    new = jnp.full((1, 30), 5.0)
    old = jnp.zeros((1, 30))
    r = joint_ratio(new, old)
    np.testing.assert_allclose(np.asarray(r), np.exp(20.0), rtol=1e-6)
    r_lo = joint_ratio(old, new, max_log_ratio=3.0)
    np.testing.assert_allclose(np.asarray(r_lo), np.exp(-3.0), rtol=1e-6)


def test_joint_clip_objective_shapes_and_values():
    rng = np.random.default_rng(2)
    new, old = (0.1 * rng.normal(size=(2, 6, 4, 3))).astype(np.float32)
    adv = rng.normal(size=(6, 4)).astype(np.float32)
    got = np.asarray(joint_clip_objective(new, old, adv, 0.1))
    r = np.exp((new - old).sum(-1))
    expected = np.minimum(r * adv, np.clip(r, 0.9, 1.1) * adv)
    assert got.shape == (6, 4)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_objectives_jit_and_vmap():
    f = jax.jit(jax.vmap(lambda n, o, a: joint_clip_objective(n, o, a, 0.2)))
    n = jnp.zeros((3, 5, 2))
    a = jnp.arange(15.0).reshape(3, 5)
    np.testing.assert_allclose(np.asarray(f(n, n, a)), np.asarray(a), rtol=0, atol=0)
