"""``trustmarl.trust.tsallis``: the per-sample pieces of the MAMD/MAMT actor loss against NumPy, under
jit and vmap. The paper's numbers (q-log limit, penalties, the mirror-descent fixed point and the
surrogate's gradient) are tested in ``tests/theory/test_mamt_claims.py``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trustmarl.trust.tsallis import (
    log_q, log_q_of_log, mirror_descent_surrogate, tsallis_penalty, tsallis_penalty_sample,
)


def ln_q_np(x, q):
    x = np.maximum(np.asarray(x, np.float64), 1e-6)
    return np.log(x) if q == 1.0 else (x ** (1.0 - q) - 1.0) / (1.0 - q)


@pytest.mark.parametrize("q", [0.2, 0.5, 1.0, 1.5])
def test_surrogate_value_and_gradients(q):
    rng = np.random.default_rng(0)
    logp = np.log(rng.uniform(1e-8, 1.0, size=32))  # includes probabilities below the clamp
    logp_old = np.log(rng.uniform(1e-3, 1.0, size=32))
    adv = rng.normal(size=32)
    coef = 0.37
    with jax.enable_x64(True):
        val = np.asarray(mirror_descent_surrogate(logp, logp_old, adv, coef, q))
        weight = (ln_q_np(np.exp(logp), q) - ln_q_np(np.exp(logp_old), q)) / coef - adv
        np.testing.assert_allclose(val, logp * weight, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(np.asarray(tsallis_penalty_sample(logp, logp_old, q)),
                                   ln_q_np(np.exp(logp), q) - ln_q_np(np.exp(logp_old), q), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(np.asarray(log_q_of_log(logp, q)), np.asarray(log_q(np.exp(logp), q)), rtol=1e-12,
                                   atol=1e-12)
        # the bracket is stopped: d/d logp is the weight itself, nothing reaches logp_old, adv or coef
        grads = jax.grad(lambda *a: mirror_descent_surrogate(*a, q).sum(), argnums=(0, 1, 2, 3))(
            jnp.asarray(logp), jnp.asarray(logp_old), jnp.asarray(adv), jnp.asarray(coef))
    np.testing.assert_allclose(np.asarray(grads[0]), weight, rtol=1e-10, atol=1e-12)
    assert all(np.abs(np.asarray(g)).max() == 0.0 for g in grads[1:])


def test_jit_vmap_and_broadcasting():
    rng = np.random.default_rng(1)
    p, po = rng.dirichlet(np.ones(4), size=(3, 5)), rng.dirichlet(np.ones(4), size=(3, 5))
    f = jax.jit(tsallis_penalty, static_argnums=2)
    full = np.asarray(f(jnp.asarray(p), jnp.asarray(po), 0.5))
    per = np.asarray(jax.vmap(lambda a, b: tsallis_penalty(a, b, 0.5))(jnp.asarray(p), jnp.asarray(po)))
    assert full.shape == (3, 5)
    np.testing.assert_allclose(full, per, rtol=1e-6)
    np.testing.assert_allclose(full, np.sum(p * (ln_q_np(p, 0.5) - ln_q_np(po, 0.5)), axis=-1), rtol=1e-5, atol=1e-7)
    # per-agent trust regions broadcast against [batch, agents]
    coef = jnp.array([0.01, 1.0, 100.0])
    out = mirror_descent_surrogate(jnp.log(jnp.asarray(p[..., 0])).T, jnp.log(jnp.asarray(po[..., 0])).T,
                                   jnp.zeros((5, 3)), coef, 0.2)
    assert out.shape == (5, 3)
    with pytest.raises(TypeError, match="q must be a Python float"):
        log_q(0.5, jnp.asarray(0.5))
