"""The action distribution objects against plain NumPy formulas (``trustmarl.distributions``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trustmarl.distributions import MASKED_LOGIT, Categorical, DiagGaussian, for_space
from trustmarl.envs.base import Box, Discrete

LOGITS = np.array([[0.3, -1.2, 2.0, 0.5], [1.0, 1.0, -0.5, 0.0]], np.float32)
AVAIL = np.array([[1, 1, 0, 1], [1, 0, 1, 1]], bool)


def np_logp(logits, avail):
    z = np.where(avail, logits, -np.inf)
    z = z - z.max(-1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    return p


def test_for_space():
    assert isinstance(for_space(Discrete(5)), Categorical) and for_space(Discrete(5)).width == 5
    g = for_space(Box(3, -2.0, 2.0))
    assert isinstance(g, DiagGaussian) and g.width == 3 and (g.low, g.high) == (-2.0, 2.0)


def test_categorical_log_prob_entropy_mode():
    c = Categorical(4)
    dist = c.from_logits(jnp.asarray(LOGITS), jnp.asarray(AVAIL))
    p = np_logp(LOGITS, AVAIL)
    np.testing.assert_allclose(np.exp(np.asarray(dist[0])), p, atol=1e-6)
    a = jnp.array([3, 2])
    np.testing.assert_allclose(np.asarray(c.log_prob(dist, a)), np.log(p[[0, 1], [3, 2]]), rtol=1e-6)
    ent = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0), -1)
    np.testing.assert_allclose(np.asarray(c.entropy(dist)), ent, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(c.mode(dist)), p.argmax(-1))


def test_categorical_sampling_respects_masks_and_frequencies():
    c = Categorical(4)
    dist = c.from_logits(jnp.asarray(LOGITS), jnp.asarray(AVAIL))
    keys = jax.random.split(jax.random.key(0), 20000)
    a = np.asarray(jax.vmap(lambda k: c.sample(dist, k))(keys))  # [K, 2]
    assert not np.any(~AVAIL[np.arange(2)[None], a])  # never an unavailable action
    freq = np.stack([np.bincount(a[:, b], minlength=4) / len(a) for b in range(2)])
    np.testing.assert_allclose(freq, np_logp(LOGITS, AVAIL), atol=0.015)
    r = np.asarray(jax.vmap(lambda k: c.random(k, jnp.asarray(AVAIL)))(keys))
    freq = np.stack([np.bincount(r[:, b], minlength=4) / len(r) for b in range(2)])
    np.testing.assert_allclose(freq, AVAIL / AVAIL.sum(-1, keepdims=True), atol=0.015)
    np.testing.assert_allclose(np.asarray(c.random_log_prob(jnp.asarray(AVAIL))), -np.log([3, 3]), rtol=1e-6)


@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
def test_epsilon_mixture(eps):
    c = Categorical(4)
    dist = c.from_logits(jnp.asarray(LOGITS), jnp.asarray(AVAIL))
    mixed = np.exp(np.asarray(c.epsilon_mixture(dist, eps, jnp.asarray(AVAIL))[0]))
    expect = (1 - eps) * np_logp(LOGITS, AVAIL) + eps * AVAIL / AVAIL.sum(-1, keepdims=True)
    np.testing.assert_allclose(mixed, expect, atol=1e-6)
    assert np.all(mixed[~AVAIL] == 0)


def test_gumbel_softmax_hard_sample_is_a_softmax_sample_whatever_the_temperature():
    c = Categorical(4)
    logits = c.masked_logits(jnp.asarray(LOGITS), jnp.asarray(AVAIL))
    key = jax.random.key(3)
    hot = [np.asarray(c.gumbel_softmax(key, logits, t)) for t in (0.3, 1.0, 5.0)]
    for h in hot[1:]:  # the forward value is argmax(logits + g): the same one-hot for every temperature
        np.testing.assert_allclose(h, hot[0], atol=1e-6)
    keys = jax.random.split(jax.random.key(1), 20000)
    draws = np.asarray(jax.vmap(lambda k: jnp.argmax(c.gumbel_softmax(k, logits, 0.5), -1))(keys))
    freq = np.stack([np.bincount(draws[:, b], minlength=4) / len(draws) for b in range(2)])
    np.testing.assert_allclose(freq, np_logp(LOGITS, AVAIL), atol=0.015)  # softmax(logits), not softmax(logits / 0.5)
    # the straight-through gradient is the soft sample's
    g_hard = jax.grad(lambda x: jnp.sum(c.gumbel_softmax(key, x, 0.5) * jnp.arange(4.0)))(logits)
    g_soft = jax.grad(lambda x: jnp.sum(c.gumbel_softmax(key, x, 0.5, hard=False) * jnp.arange(4.0)))(logits)
    np.testing.assert_allclose(np.asarray(g_hard), np.asarray(g_soft), atol=1e-6)
    assert MASKED_LOGIT < -1e8


def test_categorical_kl_and_tv():
    c = Categorical(4)
    old = c.from_logits(jnp.asarray(LOGITS), jnp.asarray(AVAIL))
    new = c.from_logits(jnp.asarray(LOGITS[::-1].copy()), jnp.asarray(AVAIL))
    po, pn = np_logp(LOGITS, AVAIL), np_logp(LOGITS[::-1], AVAIL)
    kl = np.sum(np.where(po > 0, po * (np.log(np.where(po > 0, po, 1)) - np.log(np.where(po > 0, pn, 1))), 0), -1)
    np.testing.assert_allclose(np.asarray(c.kl(old, new, jnp.asarray(AVAIL))), kl, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(c.tv(old, new, jnp.asarray(AVAIL))), 0.5 * np.abs(po - pn).sum(-1), rtol=1e-5)


def test_gaussian():
    g = DiagGaussian(2, -1.0, 1.0)
    mean, log_std = np.array([[0.2, -0.4]], np.float32), np.array([[-0.5, 0.1]], np.float32)
    dist = (jnp.asarray(mean), jnp.asarray(log_std))
    a = np.array([[0.0, 0.3]], np.float32)
    sd = np.exp(log_std)
    logp = np.sum(-0.5 * ((a - mean) / sd) ** 2 - np.log(sd) - 0.5 * np.log(2 * np.pi), -1)
    np.testing.assert_allclose(np.asarray(g.log_prob(dist, jnp.asarray(a))), logp, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(g.entropy(dist)), np.sum(log_std + 0.5 * np.log(2 * np.pi * np.e), -1), rtol=1e-6)
    new = (jnp.asarray(mean + 0.3), jnp.asarray(log_std - 0.2))
    s0, s1 = sd, np.exp(log_std - 0.2)
    kl = np.sum(np.log(s1 / s0) + (s0**2 + 0.09) / (2 * s1**2) - 0.5, -1)
    np.testing.assert_allclose(np.asarray(g.kl(dist, new)), kl, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(g.clip(jnp.array([2.0, -3.0]))), [1.0, -1.0])
    x = np.asarray(jax.vmap(lambda k: g.random(k, jnp.zeros((1, 0))))(jax.random.split(jax.random.key(0), 5000)))
    assert x.shape == (5000, 1, 2) and x.min() >= -1 and x.max() <= 1 and abs(x.mean()) < 0.03
    np.testing.assert_allclose(np.asarray(g.random_log_prob(jnp.zeros((1, 0)))), [-2 * np.log(2.0)], rtol=1e-6)
