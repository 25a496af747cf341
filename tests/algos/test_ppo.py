"""MAPPO / IPPO / JR-PPO losses at algorithm level (seed 004 eq. 3/4/6/9, testable claim T15).

Every check evaluates ``algo.loss`` on a real rollout batch at actor parameters moved away from the
behaviour parameters (so ratios differ from 1 and some are clipped), and compares against another
variant or a reference computed here from the batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from types import SimpleNamespace
from _util import synthetic_batch_eager, build, init_params, perturb

ONE_AGENT = {"env.payoff": [1.0, 0.0, 0.5], "algo.agent_id": False, "algo.actor_head_gain": 1.0,
             "algo.num_envs": 64, "algo.rollout_len": 2}
N4 = {"env.n_agents": 4, "algo.agent_id": False, "algo.share_params": False, "algo.actor_head_gain": 1.0,
      "algo.num_envs": 64, "algo.rollout_len": 2}


def policy_loss_and_grad(a, actor_params, critic_params, batch):
    """``(loss/policy, d loss/policy / d actor, d total / d actor, aux)`` of ``a.loss``."""
    pol = lambda ap: a.loss(ap, critic_params, batch)[1]["loss/policy"]  # noqa: E731
    tot = lambda ap: a.loss(ap, critic_params, batch)[0]  # noqa: E731
    return pol(actor_params), jax.grad(pol)(actor_params), jax.grad(tot)(actor_params), a.loss(actor_params, critic_params, batch)[1]


def _batch(a, seed: int = 0):
    """The synthetic batch of ``_util.synthetic_batch`` (bitwise), built eagerly: its jitted form compiles a
    program per algorithm (~5 s each on 2 cores), the eager ops are compiled once for every test."""
    key = jax.random.PRNGKey(seed)
    actor, critic, batch = synthetic_batch_eager(a, key, 256, *init_params(a, key))
    return SimpleNamespace(actor_params=actor, critic_params=critic), batch


# ---- T15: one agent -----------------------------------------------------------------------------

ONE_AGENT_VARIANTS = [
    ("ippo", {}),
    ("jrppo", {}),
    ("mappo", {"algo.clip_rule": "per_agent"}),
    ("mappo", {"algo.clip_rule": "nth_root"}),
    ("ippo", {"algo.clip_rule": "per_agent"}),
]


@pytest.fixture(scope="module")
def one_agent_reference():
    ref = build("mappo", "matrix/custom", **ONE_AGENT)
    actor, critic, batch = synthetic_batch_eager(ref, jax.random.PRNGKey(0), 256, *init_params(ref, jax.random.PRNGKey(0)))
    state = SimpleNamespace(actor_params=actor, critic_params=critic)
    params = perturb(state.actor_params, jax.random.PRNGKey(1), 0.02)
    head = params[0]["params"]["Dense_0"]  # the policy head: shift the logits so some ratios leave [0.8, 1.2]
    head["bias"] = head["bias"] + jnp.array([0.3, 0.0, -0.3])
    return ref, state, batch, params


def test_one_agent_reference_batch_is_informative(one_agent_reference):
    """The comparison batch has ratios both inside and outside the clip range, and non-zero grads."""
    ref, state, batch, params = one_agent_reference
    assert ref.n_agents == 1 and ref.eps == pytest.approx(0.2)
    loss, g_pol, _, aux = policy_loss_and_grad(ref, params, state.critic_params, batch)
    assert 0.05 < float(aux["diag/clip_frac"]) < 0.95
    assert float(jnp.linalg.norm(jax.flatten_util.ravel_pytree(g_pol)[0])) > 1e-3


@pytest.mark.parametrize("algo,extra", ONE_AGENT_VARIANTS, ids=lambda x: str(x))
def test_one_agent_variants_give_ppo_loss_and_gradient(one_agent_reference, algo, extra):
    """T15: with N = 1, MAPPO (V(s)) = IPPO = JR-PPO = eps/N = nth-root rules: same loss and actor grad."""
    ref, state, batch, params = one_agent_reference
    a = build(algo, "matrix/custom", **ONE_AGENT, **extra)
    assert a.eps == pytest.approx(0.2, abs=1e-12)  # every clip rule reduces to eps for N = 1
    critic = a.init_params(jax.random.PRNGKey(0))[1]  # own critic (V(s) or V(o)); irrelevant to the policy
    want = policy_loss_and_grad(ref, params, state.critic_params, batch)
    got = policy_loss_and_grad(a, params, critic, batch)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6, atol=1e-7)
    for g_got, g_want in ((got[1], want[1]), (got[2], want[2])):
        for x, y in zip(jax.tree.leaves(g_got), jax.tree.leaves(g_want)):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got[3]["diag/clip_frac"], want[3]["diag/clip_frac"], atol=1e-7)
    np.testing.assert_allclose(got[3]["loss/entropy"], want[3]["loss/entropy"], rtol=1e-6)


# ---- dead / masked agents ------------------------------------------------------------------------

@pytest.mark.parametrize("algo", ["mappo", "ippo", "jrppo"])
def test_masked_agent_log_probs_do_not_enter_the_loss(algo):
    """An inactive (agent, sample) entry contributes nothing: perturbing its behaviour log-prob or the
    dead agent's parameters leaves the loss bitwise unchanged; perturbing an active one changes it."""
    a = build(algo, "matrix/proposition1", **N4)
    state, batch = _batch(a)
    params = perturb(state.actor_params, jax.random.PRNGKey(1), 0.2)
    key_mask, key_noise = jax.random.split(jax.random.PRNGKey(2))
    active = (jax.random.uniform(key_mask, batch.active.shape) > 0.3).astype(jnp.float32)
    active = active.at[:, 2].set(0.0)  # agent 2 dead on every sample
    batch = batch._replace(active=active)
    noise = 3.0 * jax.random.normal(key_noise, batch.logp.shape)
    base, _, _, _ = policy_loss_and_grad(a, params, state.critic_params, batch)
    total = a.loss(params, state.critic_params, batch)[0]

    dead_logp = batch._replace(logp=batch.logp + noise * (1.0 - active))
    assert float(policy_loss_and_grad(a, params, state.critic_params, dead_logp)[0]) == float(base)
    assert float(a.loss(params, state.critic_params, dead_logp)[0]) == float(total)

    # the dead agent's own parameters (non-shared) do not matter either
    moved = jax.tree.map(lambda x: x.at[2].add(0.5), params[0])
    assert float(a.loss((moved,), state.critic_params, batch)[1]["loss/policy"]) == float(base)
    dead_grad = jax.grad(lambda ap: a.loss(ap, state.critic_params, batch)[0])(params)
    assert all(float(jnp.abs(x[2]).max()) == 0.0 for x in jax.tree.leaves(dead_grad))

    # control: the same perturbation on active entries changes the loss
    live_logp = batch._replace(logp=batch.logp + noise * active)
    assert abs(float(policy_loss_and_grad(a, params, state.critic_params, live_logp)[0]) - float(base)) > 1e-4


# ---- agent permutation invariance ---------------------------------------------------------------

def _permute_batch(batch, perm, per_agent_values: bool):
    take = lambda x: x[:, perm]  # noqa: E731
    out = batch._replace(
        obs=tuple(take(x) for x in batch.obs),
        avail=tuple(take(x) for x in batch.avail),
        actions=tuple(take(x) for x in batch.actions),
        dist=tuple(tuple(take(d) for d in ds) for ds in batch.dist),
        logp=take(batch.logp),
        active=take(batch.active),
    )
    if per_agent_values:
        out = out._replace(value=take(batch.value), adv=take(batch.adv), returns=take(batch.returns), target=take(batch.target))
    return out


@pytest.mark.parametrize("algo", ["mappo", pytest.param("ippo", marks=pytest.mark.slow), "jrppo"])
def test_loss_is_invariant_to_relabelling_agents(algo):
    """Non-shared agents on MPE (agent-specific observations): permuting the agents in the batch and in
    the stacked parameters gives the same loss (mean over agents / product of ratios are symmetric)."""
    a = build(algo, "mpe/simple_spread", **{"algo.share_params": False, "algo.critic_time": False})  # a loss on hand-made batches
    state, batch = _batch(a)
    params = perturb(state.actor_params, jax.random.PRNGKey(3), 0.1)
    perm = np.array([2, 0, 1])
    p_params = jax.tree.map(lambda x: x[perm], params)
    p_critic = jax.tree.map(lambda x: x[perm], state.critic_params) if a.n_values == a.n_agents else state.critic_params
    p_batch = _permute_batch(batch, perm, a.n_values == a.n_agents)
    want = a.loss(params, state.critic_params, batch)
    got = a.loss(p_params, p_critic, p_batch)
    for k in ("loss/policy", "loss/value", "loss/entropy"):
        np.testing.assert_allclose(got[1][k], want[1][k], rtol=1e-4, atol=1e-6, err_msg=k)
    # a ratio within float rounding of 1 ± eps may flip sides: allow one sample
    np.testing.assert_allclose(got[1]["diag/clip_frac"], want[1]["diag/clip_frac"], atol=1.01 / batch.logp.size)
    assert float(want[1]["diag/clip_frac"]) > 0.0  # the ratios are not all 1
    # control: permuting parameters alone (agents now act on others' observations) changes the loss
    other = a.loss(p_params, state.critic_params, batch)[1]["loss/policy"]
    assert abs(float(other) - float(want[1]["loss/policy"])) > 1e-5


# ---- the eps/N rule (seed 004 eq. 9) is applied ---------------------------------------------------

@pytest.mark.parametrize(
    "algo,rule,eps",
    [("mappo", "fixed", 0.2), ("mappo", "per_agent", 0.05), ("ippo", "per_agent", 0.05),
     ("mappo", "nth_root", 1.2 ** 0.25 - 1.0)],
)
def test_clip_rule_sets_eps_and_is_used_by_the_loss(algo, rule, eps):
    """algo.eps follows the rule (N = 4), and the loss and clip fraction are the PPO-clip ones at that eps."""
    a = build(algo, "matrix/proposition1", **N4, **{"algo.clip_rule": rule})
    assert a.eps == pytest.approx(eps, rel=1e-12)
    state, batch = _batch(a)
    params = perturb(state.actor_params, jax.random.PRNGKey(1), 0.1)
    _, aux = a.loss(params, state.critic_params, batch)
    dists = a.policy(params, batch.obs, batch.avail)
    ratio = np.asarray(jnp.exp(a.log_prob(dists, batch.actions) - batch.logp), np.float64)
    adv = np.broadcast_to(np.asarray(batch.adv, np.float64), ratio.shape)

    def ref(e):  # seed 004 eq. 3/4 with eps_i = e, mean over samples and agents
        obj = np.minimum(ratio * adv, np.clip(ratio, 1 - e, 1 + e) * adv)
        return -obj.mean(), np.mean(np.abs(ratio - 1) > e)

    want_loss, want_frac = ref(eps)
    np.testing.assert_allclose(aux["loss/policy"], want_loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(aux["diag/clip_frac"], want_frac, atol=1e-6)
    if rule != "fixed":  # the diagnostic and the loss respond to the smaller range
        fixed_loss, fixed_frac = ref(0.2)
        assert want_frac > fixed_frac + 0.05
        assert abs(want_loss - fixed_loss) > 1e-4


def test_jrppo_clips_the_joint_ratio_at_eps():
    """JR-PPO (seed 004 eq. 6): eps is not divided by N and the clip applies to Π_k λ_k."""
    a = build("jrppo", "matrix/proposition1", **N4)
    assert a.eps == pytest.approx(0.2)
    state, batch = _batch(a)
    params = perturb(state.actor_params, jax.random.PRNGKey(1), 0.1)
    _, aux = a.loss(params, state.critic_params, batch)
    dists = a.policy(params, batch.obs, batch.avail)
    joint = np.exp(np.asarray(jnp.sum(a.log_prob(dists, batch.actions) - batch.logp, -1), np.float64))
    adv = np.asarray(batch.adv[:, 0], np.float64)
    want = -np.minimum(joint * adv, np.clip(joint, 0.8, 1.2) * adv).mean()
    np.testing.assert_allclose(aux["loss/policy"], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(aux["diag/clip_frac"], np.mean(np.abs(joint - 1) > 0.2), atol=1e-6)
    assert 0.0 < float(aux["diag/clip_frac"]) < 1.0
