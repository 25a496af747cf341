"""Unit tests for trustmarl.trust.gae: scanned GAE vs the NumPy loop, and the lambda=1 identity."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from trustmarl.trust.gae import gae, gae_reference


@pytest.mark.parametrize("shape", [(17,), (9, 4), (12, 3, 5), (1, 2)])
@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 1.0), (0.5, 0.0)])
def test_gae_matches_reference_random(shape, gamma, lam):
    rng = np.random.default_rng(hash((shape, gamma, lam)) % 2**32)
    rewards = rng.normal(size=shape)
    values = rng.normal(size=shape)
    dones = rng.random(shape) < 0.2
    last_value = rng.normal(size=shape[1:])
    with jax.enable_x64(True):
        adv, ret = gae(rewards, values, dones, last_value, gamma, lam)
    adv_ref, ret_ref = gae_reference(rewards, values, dones, last_value, gamma, lam)
    assert adv.shape == shape and ret.shape == shape
    np.testing.assert_allclose(np.asarray(adv), adv_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(ret), ret_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ret_ref - values, adv_ref, atol=1e-12)


def test_gae_float32_jit_and_broadcast_team_reward():
    rng = np.random.default_rng(3)
    t_len, envs, agents = 20, 3, 4
    rewards = rng.normal(size=(t_len, envs, 1)).astype(np.float32)  # team reward
    values = rng.normal(size=(t_len, envs, agents)).astype(np.float32)  # per-agent critic
    dones = (rng.random((t_len, envs, 1)) < 0.1).astype(np.float32)
    last_value = rng.normal(size=(envs, agents)).astype(np.float32)
    f = jax.jit(gae, static_argnums=(4, 5))
    adv, ret = f(rewards, values, dones, last_value, 0.99, 0.95)
    adv_ref, ret_ref = gae_reference(rewards, values, dones, last_value, 0.99, 0.95)
    assert adv.dtype == np.float32 and adv.shape == (t_len, envs, agents)
    np.testing.assert_allclose(np.asarray(adv), adv_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(ret), ret_ref, rtol=1e-4, atol=1e-4)


def test_gae_hand_computed():
    # T = 3, one episode end at t = 1; gamma = 0.5, lam = 0.5
    r = np.array([1.0, 2.0, 3.0])
    v = np.array([0.5, 1.0, 2.0])
    d = np.array([0.0, 1.0, 0.0])
    lv = 4.0
    d2 = 3.0 + 0.5 * 4.0 - 2.0  # 3
    d1 = 2.0 - 1.0  # 1 (episode ends: no bootstrap)
    d0 = 1.0 + 0.5 * 1.0 - 0.5  # 1
    a2, a1 = d2, d1
    a0 = d0 + 0.25 * a1
    with jax.enable_x64(True):
        adv, _ = gae(r, v, d, lv, 0.5, 0.5)
    np.testing.assert_allclose(np.asarray(adv), [a0, a1, a2], atol=1e-15)


def test_gae_lambda_one_is_discounted_mc_return_minus_value():
    """seed-004 spec 7 #11: with lambda = 1, A_t = sum_l gamma^l r_{t+l} (+ bootstrap) - V_t."""
    rng = np.random.default_rng(4)
    gamma = 0.97
    for _ in range(5):
        t_len = 40
        rewards = rng.normal(size=t_len)
        values = rng.normal(size=t_len)
        dones = rng.random(t_len) < 0.1
        last_value = float(rng.normal())
        mc = np.zeros(t_len)
        for t in range(t_len):  # direct forward sum until the episode ends or the rollout ends
            g, disc = 0.0, 1.0
            for u in range(t, t_len):
                g += disc * rewards[u]
                disc *= gamma
                if dones[u]:
                    break
            else:
                g += disc * last_value
            mc[t] = g
        with jax.enable_x64(True):
            adv, ret = gae(rewards, values, dones, last_value, gamma, 1.0)
        np.testing.assert_allclose(np.asarray(adv), mc - values, atol=1e-12)
        np.testing.assert_allclose(np.asarray(ret), mc, atol=1e-12)
