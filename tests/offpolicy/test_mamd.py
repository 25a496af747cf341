"""MAMD and MAMD-OP (Li et al. 2022): the mirror-descent actor coefficient against a plain formula,
the lagged old policy's refresh iterations, the reductions MAMD-OP(none) = MAAC and MAMD-OP(all) =
MAMD bit for bit, the exact Tsallis penalty, and bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trustmarl.algos import make_algorithm
from trustmarl.experiment.config import build_config
from trustmarl.validation import ConfigError

TINY = {"algo.hidden_sizes": [16], "algo.num_envs": 2, "algo.rollout_len": 4, "algo.buffer_size": 64,
        "algo.batch_size": 8, "algo.learning_starts": 8, "algo.grad_steps": 2, "algo.critic_hidden": 8,
        "algo.attention_heads": 2, "env.n_agents": 2}


def build(algo: str, **overrides):
    cfg = build_config(algo, "mpe/simple_spread", {**TINY, **overrides})
    return make_algorithm(cfg, total_updates=10)


# states are initialised eagerly: bitwise what jax.jit(algo.init) gives, and ~0.7 s instead of a ~7 s compile per
# algorithm once the eager ops are warm


def run(algo, updates: int, seed: int = 0):
    state = algo.init(jax.random.PRNGKey(seed))
    update = jax.jit(algo.update)
    metrics = None
    for _ in range(updates):
        state, metrics = update(state)
    return state, metrics


def leaves_equal(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.slow  # five algorithms compiled whole; test_mamd_op_coefficient_per_agent is the default suite's check
def test_mamd_op_reduces_to_maac_and_mamd_bit_for_bit():
    """No agent constrained: MAAC's update exactly; every agent constrained: MAMD's exactly."""
    s_maac, _ = run(build("maac"), 4)
    s_none, _ = run(build("mamd_op", **{"algo.constrained": [False, False]}), 4)
    s_mamd, _ = run(build("mamd"), 4)
    s_all, _ = run(build("mamd_op", **{"algo.constrained": [True, True]}), 4)
    assert leaves_equal(s_maac.actor_params, s_none.actor_params)
    assert leaves_equal(s_maac.critic_params, s_none.critic_params)
    assert leaves_equal(s_mamd.actor_params, s_all.actor_params)
    assert not leaves_equal(s_maac.actor_params, s_mamd.actor_params)  # the two losses do differ
    # a mixed mask moves agent 0 as MAMD would and agent 1 as MAAC would on the first learning step
    s_mix, _ = run(build("mamd_op", **{"algo.constrained": [True, False]}), 4)
    assert not leaves_equal(s_mix.actor_params, s_maac.actor_params)
    assert not leaves_equal(s_mix.actor_params, s_mamd.actor_params)


def hand_batch(algo, key):
    """A random batch ``[B, ...]`` of the env's shapes (the actor step only reads obs and avail)."""
    g = algo.groups[0]
    b = 16
    obs = (jax.random.normal(key, (b, g.n, g.obs_dim)),)
    avail = (jnp.ones((b, g.n, g.action_space.n), bool).at[:, 0, 4].set(False),)  # a masked action
    return {"obs": obs, "avail": avail}


@pytest.mark.parametrize("q", [0.2, 1.0])
def test_mirror_descent_coefficient_matches_the_formula(q):
    """Li et al. 2022, eq. 10: f_i = (ln_q pi_i(a~) - ln_q pi_i^old(a~)) / c - A_i, ln_q(x) = (x^(1-q) - 1)/(1-q)
    with x clamped at 1e-6 (q = 1: ln); MAAC's f_i = log pi_i(a~) / soft_reward_scale - A_i."""
    algo = build("mamd", **{"algo.tsallis_q": q, "algo.md_coef": 7.0})
    state = algo.init(jax.random.PRNGKey(1))
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(2), 3)
    # an old policy different from the current one
    old = jax.tree.map(lambda x: x + 0.3 * jax.random.normal(k1, x.shape), state.actor_params)
    state = state._replace(extra={**state.extra, "old_actor": old})
    batch = hand_batch(algo, k2)
    terms = algo.policy_terms(state.actor_params, state.critic_params, batch, k3, old)
    coef, _ = algo.actor_coefficient(state, terms)
    p = np.maximum(np.exp(np.asarray(terms.logp_a, np.float64)), 1e-6)
    p_old = np.maximum(np.exp(np.asarray(terms.old_logp_a, np.float64)), 1e-6)
    lnq = (lambda x: np.log(x)) if q == 1.0 else (lambda x: (x ** (1 - q) - 1) / (1 - q))
    expect = (lnq(p) - lnq(p_old)) / 7.0 - np.asarray(terms.adv, np.float64)
    np.testing.assert_allclose(np.asarray(coef), expect, rtol=2e-4, atol=1e-6)
    # the old policy's log-probabilities are the old actor's own, at the same sampled actions
    _, old_logp = algo.log_policies(old, batch["obs"], batch["avail"])
    np.testing.assert_array_equal(np.asarray(algo.gather(old_logp, terms.actions)), np.asarray(terms.old_logp_a))
    maac = build("maac")
    coef_maac, _ = maac.actor_coefficient(state, terms)
    np.testing.assert_allclose(np.asarray(coef_maac), np.asarray(terms.logp_a) / 100.0 - np.asarray(terms.adv), rtol=1e-6)


def test_mamd_op_coefficient_per_agent():
    """MAMD-OP (Li et al. 2022, App. D): a constrained agent's actor coefficient is MAMD's, the others' MAAC's,
    on the same terms; no mask at all is MAAC's, a full one MAMD's (bit for bit)."""
    mamd = build("mamd")
    state = mamd.init(jax.random.PRNGKey(1))
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(2), 3)
    old = jax.tree.map(lambda x: x + 0.3 * jax.random.normal(k1, x.shape), state.actor_params)
    state = state._replace(extra={**state.extra, "old_actor": old})
    terms = mamd.policy_terms(state.actor_params, state.critic_params, hand_batch(mamd, k2), k3, old)
    coef = lambda mask: np.asarray(build("mamd_op", **{"algo.constrained": mask}).actor_coefficient(state, terms)[0])  # noqa: E731
    c_mamd, c_maac = np.asarray(mamd.actor_coefficient(state, terms)[0]), np.asarray(build("maac").actor_coefficient(state, terms)[0])
    assert not np.allclose(c_mamd, c_maac)
    np.testing.assert_array_equal(coef([False, False]), c_maac)
    np.testing.assert_array_equal(coef([True, True]), c_mamd)
    mixed = coef([True, False])
    np.testing.assert_array_equal(mixed[:, 0], c_mamd[:, 0])
    np.testing.assert_array_equal(mixed[:, 1], c_maac[:, 1])


def test_exact_tsallis_penalty_enters_the_actor_loss():
    """penalty=tsallis_relative_entropy: the score-function factor is -A_i and the loss gains
    mean_b D_q(pi_i || pi_i^old) / c, D_q = (1 - sum_a pi^q pi_old^(1-q)) / (1 - q)."""
    algo = build("mamd", **{"algo.penalty": "tsallis_relative_entropy", "algo.tsallis_q": 0.5, "algo.md_coef": 3.0})
    state = algo.init(jax.random.PRNGKey(1))
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(4), 3)
    old = jax.tree.map(lambda x: x + 0.3 * jax.random.normal(k1, x.shape), state.actor_params)
    state = state._replace(extra={**state.extra, "old_actor": old})
    terms = algo.policy_terms(state.actor_params, state.critic_params, hand_batch(algo, k2), k3, old)
    coef, _ = algo.actor_coefficient(state, terms)
    np.testing.assert_allclose(np.asarray(coef), -np.asarray(terms.adv), rtol=1e-6)
    p = np.exp(np.asarray(terms.logp[0], np.float64))
    p_old = np.exp(np.asarray(terms.old_logp[0], np.float64))
    d = (1 - np.sum(p ** 0.5 * p_old ** 0.5, -1)) / 0.5  # [B, n]
    np.testing.assert_allclose(np.asarray(algo.actor_penalty(state, terms)), d.mean(0) / 3.0, rtol=1e-4)
    assert np.all(d >= 0)


def test_old_policy_refresh_iterations():
    """pi^old becomes a copy of the actors from before the iteration's step exactly when
    (niter + 1) % m == 0, niter counting critic steps including this one (the authors' code); in
    between it does not move."""
    m = 3
    algo = build("mamd", **{"algo.old_policy_lag": m, "algo.grad_steps": 1, "algo.learning_starts": 8})
    state = algo.init(jax.random.PRNGKey(0))
    update = jax.jit(algo.update)
    refreshed = []
    for _ in range(12):
        before = state
        state, metrics = update(state)
        if int(state.grad_steps) == int(before.grad_steps):
            assert leaves_equal(state.extra["old_actor"], before.extra["old_actor"])
            continue
        niter = int(state.grad_steps)  # critic steps so far, this one included
        if (niter + 1) % m == 0:
            assert leaves_equal(state.extra["old_actor"], before.actor_params)  # the pre-step actors
            assert not leaves_equal(state.extra["old_actor"], state.actor_params)
            refreshed.append(niter)
        else:
            assert leaves_equal(state.extra["old_actor"], before.extra["old_actor"])
    assert refreshed and all((n + 1) % m == 0 for n in refreshed)
    kl = np.asarray(metrics["diag/kl_delta_per_agent"])
    assert kl.shape == (2,) and np.all(np.isfinite(kl))


@pytest.mark.parametrize("override, needle", [
    ({"algo.tsallis_q": 0.0}, "algo.tsallis_q"),
    ({"algo.md_coef": -1.0}, "algo.md_coef"),
    ({"algo.old_policy_lag": 0}, "algo.old_policy_lag"),
    ({"algo.penalty": "kl"}, "algo.penalty"),
])
def test_bad_input(override, needle):
    with pytest.raises(ConfigError, match=needle):
        build_config("mamd", "mpe/simple_spread", {**TINY, **override})


def test_mask_must_fit_the_agents():
    with pytest.raises(ConfigError, match="algo.constrained has 3 flags but the env has 2 agents"):
        build("mamd_op", **{"algo.constrained": [True, False, True]})

    a = make_algorithm(build_config("mamd_op", "mpe/simple_spread", TINY), total_updates=1)
    assert a.constrained.tolist() == [True, False]  # default: all but the last (on Spread-3, the paper's Mix)
