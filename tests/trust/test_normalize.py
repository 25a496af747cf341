"""Unit tests for trustmarl.trust.normalize (ValueNorm running statistics, advantage normalisation)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from trustmarl.trust.normalize import (
    ValueNormState,
    normalize_advantages,
    value_norm_denormalize,
    value_norm_init,
    value_norm_normalize,
    value_norm_stats,
    value_norm_update,
)


def test_value_norm_initial_state_is_identity_up_to_var_clamp():
    s = value_norm_init()
    mean, var = value_norm_stats(s)
    assert float(mean) == 0.0 and abs(float(var) - 1e-2) < 1e-9
    assert isinstance(s, ValueNormState)


def test_value_norm_first_update_is_exact_batch_statistics():
    x = np.array([1.0, 3.0, 5.0, 7.0])
    with jax.enable_x64(True):
        s = value_norm_update(value_norm_init(), x)
        mean, var = value_norm_stats(s)
        assert abs(float(mean) - 4.0) < 1e-9  # debiasing removes the zero initialisation
        assert abs(float(var) - 5.0) < 1e-6
        # a second identical batch does not move the debiased statistics
        s = value_norm_update(s, x)
        mean, var = value_norm_stats(s)
        assert abs(float(mean) - 4.0) < 1e-9 and abs(float(var) - 5.0) < 1e-6


def test_value_norm_matches_numpy_ema_reference():
    rng = np.random.default_rng(0)
    beta = 0.9
    rm = rms = dt = 0.0
    with jax.enable_x64(True):
        s = value_norm_init(beta)
        for _ in range(25):
            x = rng.normal(3.0, 2.0, size=16)
            s = value_norm_update(s, x)
            rm = beta * rm + (1 - beta) * x.mean()
            rms = beta * rms + (1 - beta) * (x**2).mean()
            dt = beta * dt + (1 - beta)
        mean, var = value_norm_stats(s)
    np.testing.assert_allclose(float(mean), rm / dt, rtol=1e-12)
    np.testing.assert_allclose(float(var), max(rms / dt - (rm / dt) ** 2, 1e-2), rtol=1e-10)


def test_value_norm_converges_to_stream_statistics():
    rng = np.random.default_rng(1)
    s = value_norm_init(beta=0.99)
    update = jax.jit(value_norm_update)
    for _ in range(2000):
        s = update(s, rng.normal(-5.0, 3.0, size=64))
    mean, var = value_norm_stats(s)
    assert abs(float(mean) + 5.0) < 0.15
    assert abs(float(var) - 9.0) < 0.6


def test_value_norm_round_trip_and_normalised_moments():
    rng = np.random.default_rng(2)
    x = rng.normal(10.0, 4.0, size=512)
    s = value_norm_update(value_norm_init(), x)
    z = value_norm_normalize(s, x)
    assert abs(float(jnp.mean(z))) < 1e-4 and abs(float(jnp.std(z)) - 1.0) < 1e-4
    np.testing.assert_allclose(np.asarray(value_norm_denormalize(s, z)), x, rtol=1e-5, atol=1e-4)
    back = value_norm_normalize(s, value_norm_denormalize(s, x))
    np.testing.assert_allclose(np.asarray(back), x, rtol=1e-5, atol=1e-4)


def test_value_norm_variance_clamp_and_mask():
    s = value_norm_update(value_norm_init(), np.full(8, 2.0))  # zero variance -> clamp
    mean, var = value_norm_stats(s)
    assert abs(float(mean) - 2.0) < 1e-5 and abs(float(var) - 1e-2) < 1e-7
    x = np.array([1.0, 3.0, 1000.0, -1000.0])
    s = value_norm_update(value_norm_init(), x, mask=np.array([1, 1, 0, 0]))
    mean, var = value_norm_stats(s)
    assert abs(float(mean) - 2.0) < 1e-5 and abs(float(var) - 1.0) < 1e-4
    s2 = value_norm_update(s, x, mask=np.zeros(4))  # all masked -> unchanged
    for a, b in zip(s, s2):
        assert float(a) == float(b)


def test_normalize_advantages_plain_and_masked():
    adv = np.array([1.0, 2.0, 3.0, 4.0])
    out = np.asarray(normalize_advantages(adv))
    np.testing.assert_allclose(out, (adv - 2.5) / np.sqrt(1.25), rtol=1e-6)
    adv2 = np.array([[1.0, 50.0], [3.0, np.nan]])
    mask = np.array([[1, 0], [1, 0]])
    out2 = np.asarray(normalize_advantages(adv2, mask))
    np.testing.assert_allclose(out2, [[-1.0, 0.0], [1.0, 0.0]], atol=1e-6)
    rng = np.random.default_rng(3)
    a = rng.normal(5.0, 3.0, size=(30, 4))
    m = rng.random((30, 4)) < 0.6
    z = np.asarray(normalize_advantages(a, m))
    assert abs(z[m].mean()) < 1e-5 and abs(z[m].std() - 1.0) < 1e-5
    assert np.all(z[~m] == 0.0)
