"""MATRL's per-agent losses (Wen et al. 2021, Algorithm 2 lines 6-8 with the reference code's terms) against
a plain NumPy/loop reference on a hand-built batch of three agents: the PPO clipped surrogate of each
candidate weighted per sample (Schulman et al. 2017, eq. 7), the sample KL estimate ``mean(log pi_old - log pi)``
and its sign, the exact entropy as a *bonus*, PPO2 value clipping around ``V_old`` and the masks of
inactive agents; the total ``sum_i pi_coef L_clip + vf_coef L_V + kl_coef KL - ent_coef H`` and its gradient
(central differences of the reference along random directions, float64)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _util import build, fresh_batch
from refnets import directional, dot, log_softmax, mlp, random_direction, tiny_env, to_numpy

import trustmarl.algos.on_policy.matrl as matrl_mod
from trustmarl.algos import make_algorithm
from trustmarl.algos.on_policy.common import Batch
from trustmarl.algos.on_policy.matrl import StepData
from trustmarl.envs.base import Discrete
from trustmarl.experiment.config import build_config

B, N, A, OBS = 6, 3, 3, 4
CLIP, ENT, KL, VF, PI, VCLIP = 0.15, 0.3, 0.5, 0.7, 1.3, 0.2
CFG = {"algo.hidden_sizes": [8], "algo.num_envs": 2, "algo.rollout_len": 3, "algo.clip_eps": CLIP,
       "algo.ent_coef": ENT, "algo.kl_coef": KL, "algo.vf_coef": VF, "algo.pi_coef": PI, "algo.vf_clip": VCLIP}


@pytest.fixture(scope="module")
def case():
    algo = make_algorithm(build_config("matrl", "matrix/custom", CFG), total_updates=1, env=tiny_env(N, OBS, Discrete(A)))
    actor, critic = jax.jit(algo.init_params)(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    noisy = lambda tree, s: jax.tree.map(lambda x: x + s * jnp.asarray(rng.standard_normal(x.shape), x.dtype), tree)  # noqa: E731
    actor, critic = noisy(actor, 0.8), noisy(critic, 0.5)  # policies far from uniform
    avail = np.ones((B, N, A), bool)
    avail[0, 2, 1] = avail[3, 0, 2] = False
    actions = rng.integers(0, A, (B, N))
    actions[0, 2], actions[3, 0] = 0, 1  # available
    active = np.ones((B, N), np.float32)
    active[1, 0] = active[4, 2] = active[5, 2] = 0.0  # inactive agents: out of every mean
    obs = rng.standard_normal((B, N, OBS))
    # behaviour log-probabilities away from the current policy: ratios on both sides of the clip range
    _, logp_now = policy(to_numpy(actor[0]), obs, avail)
    blogp = np.take_along_axis(logp_now, actions[..., None], -1)[..., 0] + rng.uniform(-0.5, 0.5, (B, N))
    target, v_old = rng.normal(0, 1, (B, N)), rng.normal(0, 1, (B, N))
    batch = Batch(obs=(jnp.asarray(obs, jnp.float32),), avail=(jnp.asarray(avail),), actions=(jnp.asarray(actions, jnp.int32),),
                  dist=(jnp.zeros((B, N, A)),), logp=jnp.asarray(blogp, jnp.float32), state=jnp.zeros((B, 1)),
                  active=jnp.asarray(active), value=jnp.zeros((B, N)), adv=jnp.zeros((B, N)), returns=jnp.zeros((B, N)),
                  target=jnp.asarray(target, jnp.float32))
    data = StepData(adv=jnp.asarray(rng.normal(0, 1, (B, N)), jnp.float32),
                    weight=jnp.asarray(rng.uniform(0.8, 1.2, (B, N)), jnp.float32), v_old=jnp.asarray(v_old, jnp.float32))
    (total, aux), grads = jax.jit(jax.value_and_grad(algo.losses, has_aux=True))((actor, critic), batch, data)
    ref_in = {"obs": obs, "avail": avail, "actions": actions, "active": active, "blogp": np.asarray(batch.logp, np.float64),
              "target": np.asarray(batch.target, np.float64), "adv": np.asarray(data.adv, np.float64),
              "weight": np.asarray(data.weight, np.float64), "v_old": np.asarray(data.v_old, np.float64)}
    return {"params": to_numpy((actor, critic)), "total": float(total), "aux": jax.tree.map(np.asarray, aux),
            "grads": to_numpy(grads), "ref": ref_in}


def policy(actor, obs, avail):
    """Raw logits and masked log-probabilities ``[B, N, A]`` of the stacked per-agent actors."""
    logits = np.stack([np.stack([mlp(jax.tree.map(lambda x, i=i: x[i], actor["params"]), obs[b, i], 1) for i in range(N)])
                       for b in range(len(obs))])
    return logits, log_softmax(np.where(avail, logits, -1e9))


def reference(params, r):
    """``(total, per-agent terms)`` of MATRL's loss, written per agent and per sample."""
    actor, critic = params[0][0], params[1][0]
    _, logp = policy(actor, r["obs"], r["avail"])
    terms = {k: np.zeros(N) for k in ("policy", "value", "entropy", "kl")}
    for i in range(N):
        m = r["active"][:, i]
        mean = lambda x, m=m: np.sum(x * m) / max(np.sum(m), 1.0)  # noqa: E731
        lp = np.array([logp[b, i, r["actions"][b, i]] for b in range(B)])
        ratio = np.exp(lp - r["blogp"][:, i])
        adv = r["adv"][:, i]
        surrogate = np.minimum(ratio * adv, np.clip(ratio, 1 - CLIP, 1 + CLIP) * adv)  # Schulman et al. 2017, eq. 7
        terms["policy"][i] = -mean(r["weight"][:, i] * surrogate)
        terms["kl"][i] = mean(r["blogp"][:, i] - lp)  # sample estimate of KL(pi_old || pi)
        p = np.exp(logp[:, i])
        terms["entropy"][i] = mean(-np.sum(np.where(p > 0, p * logp[:, i], 0.0), -1))
        v = np.array([mlp(jax.tree.map(lambda x, i=i: x[i], critic["params"]), r["obs"][b, i], 1)[0] for b in range(B)])
        v_old, target = r["v_old"][:, i], r["target"][:, i]
        clipped = v_old + np.clip(v - v_old, -VCLIP, VCLIP)  # PPO2: value clipped around the behaviour critic
        terms["value"][i] = mean(np.maximum((v - target) ** 2, (clipped - target) ** 2))
    total = np.sum(PI * terms["policy"] + VF * terms["value"] + KL * terms["kl"] - ENT * terms["entropy"])
    return total, terms


def test_per_agent_terms_and_total(case):
    total, terms = reference(case["params"], case["ref"])
    for k, v in terms.items():
        np.testing.assert_allclose(case["aux"][k], v, rtol=1e-4, atol=1e-6, err_msg=k)
    np.testing.assert_allclose(case["total"], total, rtol=1e-4)
    # the batch exercises both clip boundaries and value clipping
    r = case["ref"]
    _, logp = policy(case["params"][0][0], r["obs"], r["avail"])
    ratio = np.exp(np.take_along_axis(logp, r["actions"][..., None], -1)[..., 0] - r["blogp"])
    assert (ratio > 1 + CLIP).any() and (ratio < 1 - CLIP).any()


def test_gradient(case):
    rng = np.random.default_rng(1)
    params = case["params"]
    for part in (0, 1):  # actors, critics
        d = random_direction(params, rng, lambda name, part=part: name.startswith(str(part)))
        expect = directional(lambda p: reference(p, case["ref"])[0], params, d)
        np.testing.assert_allclose(dot(case["grads"], d), expect, rtol=1e-3)


# ---- three agents through the whole update at an interior rho ---------------------------------------

def jordan_game(scale: float) -> np.ndarray:
    """``[3, 2, 2, 2]``: Jordan's three-player matching pennies (agent 0 matches 1, 1 matches 2, 2 mismatches
    0), shifted so that every agent's all-keep entry is 0. Its only equilibrium is fully mixed, (1/2, 1/2, 1/2)."""
    g = np.zeros((3, 2, 2, 2))
    for x in np.ndindex(2, 2, 2):
        g[(slice(None),) + x] = [1 if x[0] == x[1] else -1, 1 if x[1] == x[2] else -1, 1 if x[2] != x[0] else -1]
    return scale * (g - g[:, 0, 0, 0][:, None, None, None])


JORDAN = jordan_game(10.0)
PAYOFF3 = [[[3.0, 0.0], [0.0, 2.0]], [[0.0, 2.0], [4.0, 0.0]]]  # the team reward of a 2x2x2 matrix game


@pytest.fixture(scope="module")
def three():
    """One MATRL update of 3 agents on a 2x2x2 game, the Nash solver run inside it on the estimated meta-game
    plus Jordan's game (so that the equilibrium is interior); the meta-step's inputs and both PPO phases'
    starting points recorded."""
    a = build("matrl", "matrix/custom", **{"env.payoff": PAYOFF3, "algo.num_envs": 32, "algo.rollout_len": 2,
                                           "algo.hidden_sizes": [8], "algo.actor_head_gain": 1.0, "algo.nash_starts": 8,
                                           "algo.actor_lr": 0.02, "algo.tpr_iters": 3, "algo.br_iters": 2})
    state, batch = fresh_batch(a)
    rec = {}

    def record(name, tree):
        jax.debug.callback(lambda t: rec.__setitem__(name, to_numpy(t)), tree)

    meta_step, ppo_steps, calls = a.meta_step, a.ppo_steps, []

    def recording_meta_step(state, batch, data, meta_adv, adv_std, current, candidate, ratio_hat, *rest):
        record("meta_adv", meta_adv)
        record("ratio_hat", ratio_hat)
        return meta_step(state, batch, data, meta_adv, adv_std, current, candidate, ratio_hat, *rest)

    def recording_ppo_steps(params, *args, **kw):
        calls.append(params)
        record(f"start_{len(calls)}", params)
        out = ppo_steps(params, *args, **kw)
        record(f"end_{len(calls)}", out[0])
        return out

    a.meta_step, a.ppo_steps = recording_meta_step, recording_ppo_steps
    real = matrl_mod.metagame_payoffs
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(matrl_mod, "metagame_payoffs", lambda *args, **kw: real(*args, **kw) + JORDAN)
        _, metrics = jax.jit(a.learn_batch)(state, batch)
        metrics = jax.tree.map(np.asarray, metrics)
    assert len(calls) == 2  # the candidates' PPO steps, then the best response
    return {"algo": a, "state": state, "batch": batch, "m": metrics, "rec": rec}


def logged_payoffs(m) -> np.ndarray:
    g = np.zeros((3, 2, 2, 2))
    for x in np.ndindex(2, 2, 2):
        if any(x):
            g[(slice(None),) + x] = m["diag/meta_payoff_" + "".join(map(str, x)) + "_per_agent"]
    return g


def test_three_agent_meta_game_is_the_clipped_importance_sampled_estimator(three):
    """Wen et al. 2021, eq. 3 and eq. 5: ``G_k[x] = mean_t prod_{j: x_j = 1} clip(r_j, 1 +- c) A_k`` for all 2^3
    profiles (``G_k[0, 0, 0] = 0``), recomputed by a loop over profiles and samples."""
    r, adv, c = three["rec"]["ratio_hat"], three["rec"]["meta_adv"], three["algo"].cfg.meta_clip
    want = np.zeros((3, 2, 2, 2))
    for x in np.ndindex(2, 2, 2):
        if any(x):
            w = np.prod([np.clip(r[:, j], 1 - c, 1 + c) if x[j] else np.ones(len(r)) for j in range(3)], axis=0)
            want[(slice(None),) + x] = (w[:, None] * adv).mean(0)
    np.testing.assert_allclose(logged_payoffs(three["m"]) - JORDAN, want, rtol=1e-4, atol=1e-5)
    assert np.abs(want).max() > 1e-3


def test_three_agent_rho_is_an_interior_nash_equilibrium(three):
    """rho_i = P(agent i keeps its policy) is a Nash equilibrium of the logged meta-game: every agent with an
    interior rho_i is indifferent between keeping and switching, and nobody gains by deviating."""
    g, rho = logged_payoffs(three["m"]), three["m"]["diag/rho_per_agent"].astype(np.float64)
    assert np.all((rho > 0.05) & (rho < 0.95)), rho  # interior for every agent
    p = [np.array([rho[j], 1 - rho[j]]) for j in range(3)]
    for k in range(3):
        pure = []
        for s in (0, 1):  # agent k keeps (0) or switches (1), the others play rho
            pure.append(sum(g[(k,) + x] * np.prod([p[j][x[j]] for j in range(3) if j != k])
                            for x in np.ndindex(2, 2, 2) if x[k] == s))
        assert abs(pure[0] - pure[1]) <= 1e-3 * np.abs(g).max(), (k, pure)
    assert three["m"]["diag/nash_fallback"] == 0.0


def test_three_agent_mixture_and_best_response_weights(three):
    """The best response starts from ``rho_i theta_i + (1 - rho_i) theta_hat_i`` per agent (actor and critic), and
    its per-sample weights are ``W_i = prod_{j != i} clip(rho_j + (1 - rho_j) r_j, 1 +- br_clip)`` (Wen et al. 2021,
    eq. 6 with the exact mixture ratio)."""
    rec, m, cfg = three["rec"], three["m"], three["algo"].cfg
    rho = m["diag/rho_per_agent"].astype(np.float64)
    current, candidate, start = rec["start_1"], rec["end_1"], rec["start_2"]
    for cur, cand, st in zip(jax.tree.leaves(current), jax.tree.leaves(candidate), jax.tree.leaves(start)):
        r = rho.reshape((3,) + (1,) * (cur.ndim - 1))  # stacked per agent on the leading axis
        np.testing.assert_allclose(st, r * cur + (1 - r) * cand, rtol=1e-5, atol=1e-6)
    assert max(np.abs(c - s).max() for c, s in zip(jax.tree.leaves(current), jax.tree.leaves(candidate))) > 1e-3
    ratio = rec["ratio_hat"]
    mix = np.clip(rho + (1 - rho) * ratio, 1 - cfg.br_clip, 1 + cfg.br_clip)
    w = np.stack([np.prod([mix[:, j] for j in range(3) if j != i], axis=0) for i in range(3)], -1)
    np.testing.assert_allclose(m["diag/br_weight_mean_per_agent"], w.mean(0), rtol=1e-5)
    np.testing.assert_allclose(m["diag/br_weight_min_per_agent"], w.min(0), rtol=1e-5)
    np.testing.assert_allclose(m["diag/br_weight_max_per_agent"], w.max(0), rtol=1e-5)
