"""Trust-region diagnostics at algorithm level (seed 004 §3.8 / T16, seed 001 §7)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from _util import build, fresh_batch

from trustmarl.algos.on_policy.diagnostics import trust_region_diagnostics

N4 = {"env.n_agents": 4, "algo.share_params": False, "algo.agent_id": False, "algo.actor_head_gain": 1.0,
      "algo.num_envs": 32, "algo.rollout_len": 4}


@pytest.fixture(scope="module")
def rollout():
    a = build("mappo", "matrix/proposition1", **N4)
    state, batch = fresh_batch(a)  # the collect leaves the actor (behaviour) params unchanged
    return a, state, batch


def diag(a, params, batch):
    return jax.tree.map(np.asarray, jax.jit(lambda p, b: trust_region_diagnostics(a, p, b))(params, batch))


def test_behaviour_policy_has_unit_ratios_and_zero_divergence(rollout):
    """Before any gradient step (behaviour params, fresh rollout batch): ratios 1, KL 0, TV 0."""
    a, state, batch = rollout
    d = diag(a, state.actor_params, batch)
    for k in ("diag/ratio_min_per_agent", "diag/ratio_max_per_agent"):
        assert d[k].shape == (4,)
        np.testing.assert_allclose(d[k], 1.0, atol=1e-6)
    np.testing.assert_allclose([d["diag/joint_ratio_min"], d["diag/joint_ratio_max"]], 1.0, atol=1e-6)
    for k in ("diag/kl_per_agent", "diag/tv_per_agent", "diag/tv_max_per_agent"):
        np.testing.assert_allclose(d[k], 0.0, atol=1e-6)
    assert abs(float(d["diag/tv_joint"])) < 1e-6 and abs(float(d["diag/kl"])) < 1e-6


@pytest.mark.parametrize("agent", [0, 3])
def test_per_agent_arrays_are_in_agent_order(rollout, agent):
    """Moving only agent ``agent``'s (non-shared) parameters shows up only at that index; the joint TV
    estimate is Σ_k max_t TV_t^k, hence ≥ every agent's max TV."""
    a, state, batch = rollout
    moved = jax.tree.map(lambda x: x.at[agent].add(1.0 * jax.random.normal(jax.random.PRNGKey(1), x[agent].shape)), state.actor_params[0])
    d = diag(a, (moved,), batch)
    others = [k for k in range(4) if k != agent]
    for k in ("diag/kl_per_agent", "diag/tv_per_agent", "diag/tv_max_per_agent"):
        assert d[k][agent] > 1e-4, k
        np.testing.assert_allclose(d[k][others], 0.0, atol=1e-6, err_msg=k)
    assert d["diag/ratio_max_per_agent"][agent] > 1.0 + 1e-3 and d["diag/ratio_min_per_agent"][agent] < 1.0 - 1e-3
    np.testing.assert_allclose(d["diag/tv_joint"], d["diag/tv_max_per_agent"].sum(), rtol=1e-6)


def test_joint_tv_estimate_bounds_after_moving_all_agents(rollout):
    a, state, batch = rollout
    moved = jax.tree.map(lambda x: x + 0.2 * jax.random.normal(jax.random.PRNGKey(2), x.shape), state.actor_params)
    d = diag(a, moved, batch)
    tv_max = d["diag/tv_max_per_agent"]
    assert tv_max.shape == (4,) and np.all(tv_max > 0)
    np.testing.assert_allclose(d["diag/tv_joint"], tv_max.sum(), rtol=1e-6)
    assert np.all(d["diag/tv_joint"] >= tv_max) and np.all(tv_max >= d["diag/tv_per_agent"] - 1e-6)
    np.testing.assert_allclose(d["diag/kl"], d["diag/kl_per_agent"].sum(), rtol=1e-6)
    # the joint ratio range covers the product of independent ratios
    assert d["diag/joint_ratio_max"] >= d["diag/ratio_max_per_agent"].min()
