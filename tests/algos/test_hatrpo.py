"""HATRPO in the full algorithm (seed 001 eq. 8, App. D Algorithm 2).

One-agent HATRPO is TRPO (recomputed here from the trust-region pieces and from a dense Fisher
solve); line-search diagnostics; Figure 1 (seed 001 §4.3) through the library.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _util import build
from test_happo import fig1_update, learn_on

from trustmarl.distributions import Categorical
from trustmarl.trust.divergence import categorical_kl
from trustmarl.trust.natural import backtracking_line_search, flatten, make_fvp, trpo_step

ONE_AGENT = {"env.payoff": [1.0, 0.0, 0.5], "algo.agent_id": False, "algo.share_params": False,
             "algo.actor_head_gain": 1.0, "algo.num_envs": 64, "algo.rollout_len": 4,
             "algo.hidden_sizes": [8], "algo.cg_iters": 60, "algo.kl_threshold": 0.01}
N4 = {"env.n_agents": 4, "algo.actor_head_gain": 1.0, "algo.num_envs": 64, "algo.rollout_len": 4,
      "algo.share_params": False, "algo.kl_threshold": 0.02}


def test_one_agent_hatrpo_is_trpo():
    """N = 1: HATRPO's update = a TRPO step on E[r Â] with exact KL (natural pieces), and its direction
    is the damped natural gradient (H + 0.1 I)^{-1} g from a dense Hessian of the KL."""
    a = build("hatrpo", "matrix/custom", **ONE_AGENT)
    state, batch, new, m = learn_on(a)
    old = jax.tree.map(lambda x: x[0], state.actor_params[0])
    flat, unravel = flatten(old)
    obs, avail, act = batch.obs[0][:, 0], batch.avail[0][:, 0], batch.actions[0][:, 0]
    old_logp = batch.dist[0][0][:, 0]
    adv, logp_old = batch.adv[:, 0], batch.logp[:, 0]

    def logp_all(x):
        return a.actors[0].apply(unravel(x), obs, avail)[0]

    def surrogate(x):  # TRPO surrogate E[π_θ(a|o)/π_old(a|o) Â]
        return jnp.mean(jnp.exp(Categorical(logp_all(x).shape[-1]).log_prob((logp_all(x),), act) - logp_old) * adv)

    def mean_kl(x):  # exact mean KL(π_old || π_θ)
        return jnp.mean(categorical_kl(old_logp, logp_all(x), avail))

    surr0, g = jax.value_and_grad(surrogate)(flat)
    step, expected, _ = trpo_step(g, make_fvp(mean_kl, flat, 0.1), 0.01, 60)
    want, accepted, _, kl, _ = backtracking_line_search(surrogate, mean_kl, flat, step, expected, surr0, 0.01, 0.5, 0.5, 10)
    got = flatten(jax.tree.map(lambda x: x[0], new.actor_params[0]))[0]
    assert bool(accepted) and m["diag/accepted_per_agent"].tolist() == [1.0]
    np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_allclose(m["diag/kl_reached_per_agent"][0], kl, rtol=1e-4)
    # independent of CG: dense damped Fisher solve gives the same direction
    h = np.asarray(jax.hessian(mean_kl)(flat), np.float64) + 0.1 * np.eye(flat.size)
    x = np.linalg.solve(h, np.asarray(g, np.float64))
    d = np.asarray(got - flat, np.float64)
    assert d @ x / (np.linalg.norm(d) * np.linalg.norm(x)) > 0.999
    # the full step has quadratic KL = δ (eq. 8); the accepted one is a fraction 0.5^j of it
    frac = np.linalg.norm(d) / np.linalg.norm(np.sqrt(2 * 0.01 / (x @ h @ x)) * x)
    assert np.isclose(np.log2(frac), np.round(np.log2(frac)), atol=1e-3)
    assert float(surrogate(got)) > float(surr0) and float(mean_kl(got)) < 0.01


def test_line_search_diagnostics_and_rejection():
    a = build("hatrpo", "matrix/proposition1", **N4)
    state, _, new, m = learn_on(a)
    acc = m["diag/accepted_per_agent"]
    assert set(acc.tolist()) <= {0.0, 1.0} and acc.sum() >= 1
    kl = m["diag/kl_reached_per_agent"]
    assert np.all(kl[acc == 1] < 0.02) and np.all(kl[acc == 1] > 0)
    assert np.all((m["diag/ls_steps_per_agent"] >= 1) & (m["diag/ls_steps_per_agent"] <= 10))
    # the updated policies stay in the trust region (diagnostics recomputed on the batch)
    assert np.all(m["diag/kl_per_agent"] < 0.02 + 1e-6)

    # zero advantage: no direction improves the surrogate -> every search rejects, params unchanged
    state0, _, new0, m0 = learn_on(a, zero_adv=True)
    assert m0["diag/accepted_per_agent"].tolist() == [0.0] * 4
    assert m0["diag/kl_reached_per_agent"].tolist() == [0.0] * 4
    for x, y in zip(jax.tree.leaves(state0.actor_params), jax.tree.leaves(new0.actor_params)):
        assert np.array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow  # a learning claim, like HAPPO's
def test_figure1_hatrpo_with_and_without_factor():
    """seed 001 Figure 1 / §4.3: from μ = (-0.25, 0.25) (J = -0.0625), δ = 0.5, fixed order: with the
    factor agent 2 sees agent 1's move and J rises (lead: μ ≈ (0.74, 1.24), J ≈ +0.92); without it the
    second agent moves the wrong way and J falls (lead: J ≈ -0.18)."""
    mu_f, m = fig1_update("hatrpo", True, **{"algo.kl_threshold": 0.5})
    mu_n, _ = fig1_update("hatrpo", False, **{"algo.kl_threshold": 0.5})
    assert m["diag/accepted_per_agent"].tolist() == [1.0, 1.0]
    assert mu_f[0] == pytest.approx(0.74, abs=0.1) and mu_f[1] == pytest.approx(1.24, abs=0.15)
    assert mu_f[0] * mu_f[1] > 0.6
    assert mu_n[0] * mu_n[1] < -0.0625


def test_shared_parameters_trust_region_is_centred_on_the_policy_before_the_step():
    """share_params=true: the agent updated second sees a network its predecessor already moved. Its
    step must stay within KL(π_pre || π_new) < δ of *that* policy, along the natural gradient with the
    Fisher at the moved parameters (Kuba et al. 2022, eq. 7-8). Measuring the region from the
    behaviour policy instead would reject every candidate here (KL(π_behaviour || π_pre) > δ already)."""
    from _util import synthetic_batch_eager, perturb

    delta = 0.01
    a = build("hatrpo", "matrix/proposition1", **{**N4, "algo.share_params": True, "algo.agent_id": True,
                                                  "algo.kl_threshold": delta, "algo.hidden_sizes": [8], "algo.cg_iters": 60})
    state = a.init_state(jax.random.PRNGKey(0), None)
    _, _, batch = synthetic_batch_eager(a, jax.random.PRNGKey(1), 256, state.actor_params, state.critic_params)  # eager: no per-algorithm compile
    i = jnp.asarray(1)
    data = a._agent_data(batch, 0, i, jnp.zeros(batch.logp.shape[:-1]))
    moved = perturb(state.actor_params[0], jax.random.PRNGKey(2), 0.3)  # "agent 0 already took its step"
    flat_m, unravel = flatten(moved)

    def dist(x):
        return a.agent_dist(0, unravel(x), i, data.obs, data.avail)

    pre = jax.tree.map(jax.lax.stop_gradient, dist(flat_m))
    kl_from = lambda ref: jax.jit(lambda x: jnp.mean(categorical_kl(ref[0], dist(x)[0], data.avail)))  # noqa: E731
    assert float(kl_from(data.dist)(flat_m)) > 2 * delta  # the behaviour policy is outside the region already

    new, _, m = jax.jit(lambda p: a.agent_update(0, p, (), i, data, jax.random.PRNGKey(3)))(moved)
    flat_n = flatten(new)[0]
    assert float(m["accepted"]) == 1.0
    kl_pre = float(kl_from(pre)(flat_n))
    assert 0.0 < kl_pre < delta and abs(kl_pre - float(m["kl_reached"])) < 1e-5
    # the direction is the damped natural gradient at the moved parameters (dense KL Hessian there)
    g = jax.grad(lambda x: jnp.mean(jnp.exp(Categorical(dist(x)[0].shape[-1]).log_prob(dist(x), data.action) - data.logp_old) * data.adv))(flat_m)
    h = np.asarray(jax.hessian(kl_from(pre))(flat_m), np.float64) + 0.1 * np.eye(flat_m.size)
    x = np.linalg.solve(h, np.asarray(g, np.float64))
    d = np.asarray(flat_n - flat_m, np.float64)
    assert d @ x / (np.linalg.norm(d) * np.linalg.norm(x)) > 0.99
