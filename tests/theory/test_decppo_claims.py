"""Seed 004 (decentralised PPO under non-stationarity) testable claims T1-T16 (seed-004 spec section 6).

Claims about the library (ratios, clip objectives, TV/KL, joint TV estimate, gradients) go through
``trustmarl.trust``; theory identities (T10-T14) use an exact NumPy float64 tabular Dec-MDP defined
below. T17 (behavioural smoke test) belongs to the algorithm tests.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trustmarl.trust import (
    categorical_kl,
    categorical_tv,
    joint_clip_objective,
    joint_log_ratio,
    joint_ratio,
    joint_tv_estimate,
    log_ratio,
    per_agent_clip,
    ppo_clip_objective,
    ratio_range,
)


# ----------------------------------------------------------------------------------------------
# helpers: product distributions and an exact tabular 2-agent Dec-MDP (NumPy float64)
# ----------------------------------------------------------------------------------------------
def product(dists: list[np.ndarray]) -> np.ndarray:
    """Flattened product distribution ``p_1 (x) p_2 (x) ...`` (agent 1 most significant)."""
    out = np.array([1.0])
    for p in dists:
        out = np.multiply.outer(out, p).reshape(-1)
    return out


_tv_jit = jax.jit(categorical_tv)
_kl_jit = jax.jit(categorical_kl)


def _bucket(n: int, least: int) -> int:
    return max(least, 1 << (n - 1).bit_length())


def _library_x64(fn, p: np.ndarray, q: np.ndarray) -> np.ndarray | float:
    """Apply a jitted library divergence in float64 over the last axis of (batches of) distributions.

    Inputs are flattened and padded to power-of-two shapes (padding actions have probability 0, i.e.
    log-probability -inf, which the library excludes) so that few shapes get compiled.
    """
    lead, n_act = p.shape[:-1], p.shape[-1]
    rows = int(np.prod(lead, dtype=int))
    shape = (_bucket(rows, 64), _bucket(n_act, 8))
    lp, lq = np.full(shape, -np.inf), np.full(shape, -np.inf)
    with np.errstate(divide="ignore"):
        lp[:rows, :n_act] = np.log(p.reshape(rows, n_act))
        lq[:rows, :n_act] = np.log(q.reshape(rows, n_act))
    lp[rows:, 0] = lq[rows:, 0] = 0.0  # padding rows: a point mass
    with jax.enable_x64(True):
        out = np.asarray(fn(lp, lq))[:rows].reshape(lead)
    return float(out) if out.ndim == 0 else out


def tv_x64(p: np.ndarray, q: np.ndarray) -> np.ndarray | float:
    """Exact TV through the library (float64), over the last axis."""
    return _library_x64(_tv_jit, np.asarray(p, float), np.asarray(q, float))


def kl_x64(p: np.ndarray, q: np.ndarray) -> np.ndarray | float:
    """Exact KL(p || q) through the library (float64), over the last axis."""
    return _library_x64(_kl_jit, np.asarray(p, float), np.asarray(q, float))


def product_batch(dists: np.ndarray) -> np.ndarray:
    """Batched product distribution: ``dists`` [B, N, A] -> [B, A**N]."""
    out = np.ones((dists.shape[0], 1))
    for k in range(dists.shape[1]):
        out = (out[:, :, None] * dists[:, k, None, :]).reshape(dists.shape[0], -1)
    return out


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    z = np.exp(x - x.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


class DecMDP:
    """2-agent Dec-MDP with factored state s = (s1, s2), |S^k| = 3, |A^k| = 2 (seed-004 spec T11).

    Joint state index ``s = s1 * 3 + s2``; joint action index ``a = a1 * 2 + a2``.
    """

    n_local_states, n_local_actions = 3, 2

    def __init__(self, seed: int = 0, gamma: float = 0.9):
        rng = np.random.default_rng(seed)
        ns, na = self.n_local_states**2, self.n_local_actions**2
        self.gamma = gamma
        self.P = rng.dirichlet(np.ones(ns), size=(ns, na))  # [s, a, s']
        self.R = rng.normal(size=(ns, na))  # [s, a]
        self.rho0 = rng.dirichlet(np.ones(ns))
        self.local = np.array([[s // 3, s % 3] for s in range(ns)])  # s -> (s1, s2)
        self.act = np.array([[a // 2, a % 2] for a in range(na)])  # a -> (a1, a2)

    def joint_policy(self, pis: list[np.ndarray]) -> np.ndarray:
        """``pi(a|s) = pi_1(a1|s1) pi_2(a2|s2)`` as a [9, 4] table; ``pis[k]`` is [3, 2]."""
        return pis[0][self.local[:, 0]][:, self.act[:, 0]] * pis[1][self.local[:, 1]][:, self.act[:, 1]]

    def evaluate(self, pi: np.ndarray) -> dict[str, np.ndarray]:
        """Exact V, Q, A, eta and the unnormalised discounted visitation rho of a joint policy."""
        p_pi = np.einsum("sa,sax->sx", pi, self.P)
        r_pi = (pi * self.R).sum(1)
        m = np.eye(len(r_pi)) - self.gamma * p_pi
        v = np.linalg.solve(m, r_pi)
        q = self.R + self.gamma * self.P @ v
        rho = np.linalg.solve(m.T, self.rho0)  # rho^T = rho0^T (I - gamma P_pi)^-1
        return {"V": v, "Q": q, "A": q - v[:, None], "eta": float(self.rho0 @ v), "rho": rho}

    def surrogate_gain(self, ev: dict, pi_new: np.ndarray) -> float:
        """``L_pi(pi_new) - eta(pi) = sum_s rho(s) sum_a pi_new(a|s) A_pi(s, a)``."""
        return float((ev["rho"][:, None] * pi_new * ev["A"]).sum())


def random_local_policies(rng: np.random.Generator, scale: float = 1.0) -> list[np.ndarray]:
    return [softmax(scale * rng.normal(size=(3, 2))) for _ in range(2)]


# ----------------------------------------------------------------------------------------------
# T1 - joint ratio is the product of independent ratios [seed 004 section 4.1]
# ----------------------------------------------------------------------------------------------
def test_t1_joint_ratio_exact_example():
    with jax.enable_x64(True):
        new = np.log(np.array([0.6, 0.2]))
        old = np.log(np.array([0.5, 0.25]))
        lam = np.exp(np.asarray(log_ratio(new, old)))
        np.testing.assert_allclose(lam, [1.2, 0.8], atol=1e-15)
        jr = float(joint_ratio(new, old))
        assert abs(jr - 0.96) < 1e-14
        assert abs(jr - (0.6 * 0.2) / (0.5 * 0.25)) < 1e-14
        assert abs(jr - 1.2 * 0.8) < 1e-14


def test_t1_joint_ratio_batched_random():
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        for n in (1, 2, 3, 7, 27):
            old = np.log(rng.uniform(0.05, 1.0, size=(64, n)))
            new = old + rng.normal(scale=0.05, size=(64, n))
            got = np.asarray(joint_ratio(new, old))
            np.testing.assert_allclose(got, np.prod(np.exp(new) / np.exp(old), axis=-1), rtol=1e-12)
            np.testing.assert_allclose(
                got, np.exp(new.sum(-1) - old.sum(-1)), rtol=1e-12
            )  # log pi_joint = sum_k log pi_k


# ----------------------------------------------------------------------------------------------
# T2 - per-agent clipping at eps/N does not contain the joint ratio [rec]
# ----------------------------------------------------------------------------------------------
def test_t2_eps_over_n_does_not_contain_joint_ratio_but_nth_root_does():
    eps, n = 0.2, 2
    d = per_agent_clip(eps, n, "per_agent")
    assert (1 + d) ** n == pytest.approx(1.21, abs=1e-15) and (1 + d) ** n > 1 + eps  # violates
    assert (1 - d) ** n == pytest.approx(0.81, abs=1e-15) and (1 - d) ** n >= 1 - eps  # lower side OK
    ds = per_agent_clip(eps, n, "nth_root")
    assert abs(ds - 0.0954451) < 5e-8
    assert abs((1 + ds) ** 2 - 1.2) < 1e-15
    assert abs((1 - ds) ** 2 - 0.818220) < 5e-7 and (1 - ds) ** 2 >= 0.8


@pytest.mark.parametrize(
    "eps,n,expected",
    [
        (0.2, 2, 0.095445),
        (0.2, 3, 0.062659),
        (0.2, 5, 0.037137),
        (0.2, 10, 0.018399),
        (0.2, 27, 0.006776),
        (0.1, 10, 0.009577),
    ],
)
def test_t2_delta_star_table(eps, n, expected):
    assert abs(per_agent_clip(eps, n, "nth_root") - expected) < 5e-7


def test_t2_property_over_n_and_eps():
    for n in range(1, 31):
        for eps in np.linspace(0.01, 0.99, 25):
            d = per_agent_clip(float(eps), n, "per_agent")
            ds = per_agent_clip(float(eps), n, "nth_root")
            if n >= 2:
                assert (1 + d) ** n > 1 + eps
                assert ds < d  # delta* is strictly tighter than eps/N
            assert abs((1 + ds) ** n - (1 + eps)) < 1e-12
            assert (1 - d) ** n >= 1 - eps - 1e-15  # Bernoulli
            assert (1 - ds) ** n >= 1 - eps - 1e-15  # lower side contained too


# ----------------------------------------------------------------------------------------------
# T3 - Prop. 2: TV(product) <= sum of per-agent TVs [seed 004 section 5]
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "q1,n,expected",
    # spec T3 prints 0.09312688 for N = 5, the 8-digit rounding of the exact 0.093126875
    [
        (0.55, 2, 0.0525),
        (0.55, 3, 0.07475),
        (0.55, 5, 0.093126875),
        (0.6, 2, 0.11),
        (0.6, 3, 0.148),
        (0.6, 5, 0.18256),
    ],
)
def test_t3_prop2_exact_examples(q1, n, expected):
    p, q = np.array([0.5, 0.5]), np.array([q1, 1 - q1])
    joint = tv_x64(product([p] * n), product([q] * n))
    assert abs(joint - expected) < 1e-12
    assert joint <= n * tv_x64(p, q)


def test_t3_prop2_random_property():
    rng = np.random.default_rng(3)
    for n, k in itertools.product(range(2, 5), range(2, 6)):
        ps = rng.dirichlet(np.ones(k), size=(40, n))
        qs = rng.dirichlet(np.ones(k), size=(40, n))
        joint = tv_x64(product_batch(ps), product_batch(qs))
        per_agent_sum = tv_x64(ps, qs).sum(-1)
        assert np.all(joint <= per_agent_sum + 1e-12)
        # cross-check the batched product helper against the plain one
        assert abs(joint[0] - tv_x64(product(list(ps[0])), product(list(qs[0])))) < 1e-15


# ----------------------------------------------------------------------------------------------
# T4 - Theorem 3: ratio bounds imply TV bound, with the tighter constant min(P, 1-P) [seed + rec]
# ----------------------------------------------------------------------------------------------
def test_t4_exact_examples():
    assert abs(tv_x64(np.array([0.5, 0.5]), np.array([0.55, 0.45])) - 0.05) < 1e-15  # = eps/2, tight
    p, q = np.array([0.2, 0.3, 0.5]), np.array([0.22, 0.33, 0.45])
    np.testing.assert_allclose(q / p, [1.1, 1.1, 0.9], atol=1e-15)
    assert abs(tv_x64(p, q) - 0.05) < 1e-15
    assert abs(p[q > p].sum() - 0.5) < 1e-15


def test_t4_random_property():
    rng = np.random.default_rng(4)
    kept = 0
    for k in range(2, 7):
        eps = rng.uniform(0.01, 1.0, size=(600, 1))
        p = rng.dirichlet(np.ones(k), size=600)
        r = rng.uniform(1 - eps, 1 + eps, size=(600, k))
        q = p * r / (p * r).sum(-1, keepdims=True)
        ok = np.all((q / p >= 1 - eps) & (q / p <= 1 + eps), axis=-1)  # keep draws still in range
        kept += ok.sum()
        tv = tv_x64(p, q)[ok]
        big = (p * (q > p)).sum(-1)[ok]  # P = p({q > p})
        e = eps[ok, 0]
        assert np.all(tv <= e * np.minimum(big, 1 - big) + 1e-12)
        assert np.all(tv <= e / 2 + 1e-12) and np.all(tv < e)
    assert kept > 1000


# ----------------------------------------------------------------------------------------------
# T5 - agent-count rule keeps the centralised trust region [seed 004 eq. 9 + Prop. 2]
# ----------------------------------------------------------------------------------------------
def test_t5_per_agent_clip_values():
    for n, expected in [(1, 0.2), (2, 0.1), (5, 0.04), (10, 0.02)]:
        assert per_agent_clip(0.2, n) == pytest.approx(expected, abs=1e-15)
    for eps in (0.05, 0.1, 0.3, 1.0):
        assert per_agent_clip(eps, 1) == eps


def test_t5_random_product_policies_within_eps_over_n():
    rng = np.random.default_rng(5)
    checked = 0
    for n, k in itertools.product(range(1, 5), range(2, 5)):
        eps = rng.uniform(0.05, 1.0, size=50)
        d = np.array([per_agent_clip(float(e), n) for e in eps])[:, None, None]
        p = rng.dirichlet(np.ones(k), size=(50, n))
        q = p * rng.uniform(1 - d, 1 + d, size=(50, n, k))
        q /= q.sum(-1, keepdims=True)
        ok = np.all(np.abs(q / p - 1) <= d, axis=(1, 2))  # every agent's every-action ratio in range
        checked += ok.sum()
        joint = tv_x64(product_batch(p), product_batch(q))
        assert np.all(joint[ok] <= eps[ok] / 2 + 1e-12)
    assert checked > 300


# ----------------------------------------------------------------------------------------------
# T6 - KL relations: additivity over independent agents and Pinsker [rec]
# ----------------------------------------------------------------------------------------------
def test_t6_kl_additivity_and_pinsker():
    p, q = np.array([0.5, 0.5]), np.array([0.6, 0.4])
    with jax.enable_x64(True):
        kl = float(categorical_kl(np.log(p), np.log(q)))
        kl_joint = float(categorical_kl(np.log(product([p, p])), np.log(product([q, q]))))
    assert abs(kl - 0.02041100) < 5e-9
    assert abs(kl_joint - 0.04082199) < 5e-9
    assert abs(kl_joint - 2 * kl) < 1e-15
    tv_joint = tv_x64(product([p, p]), product([q, q]))
    assert abs(tv_joint - 0.11) < 1e-15
    assert abs(math.sqrt(kl_joint / 2) - 0.142867) < 5e-7 and tv_joint <= math.sqrt(kl_joint / 2)


def test_t6_kl_additivity_random():
    rng = np.random.default_rng(6)
    for n, k in itertools.product(range(2, 4), range(2, 5)):
        ps = rng.dirichlet(np.ones(k), size=(30, n))
        qs = rng.dirichlet(np.ones(k), size=(30, n))
        joint = kl_x64(product_batch(ps), product_batch(qs))
        np.testing.assert_allclose(joint, kl_x64(ps, qs).sum(-1), rtol=1e-12, atol=1e-14)
        assert np.all(tv_x64(product_batch(ps), product_batch(qs)) <= np.sqrt(joint / 2) + 1e-12)


# ----------------------------------------------------------------------------------------------
# T7 - PPO clipped term [seed 004 eq. 2]
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "lam,adv,value,grad",
    [
        (1.3, 1.0, 1.2, 0.0),  # clipped above, zero gradient
        (0.7, -1.0, -0.8, 0.0),  # clipped below, zero gradient
        (1.3, -1.0, -1.3, -1.0),  # unclipped (pessimistic branch)
        (0.7, 1.0, 0.7, 1.0),  # unclipped
        (1.0, 1.0, 1.0, 1.0),
        (1.0, -1.0, -1.0, -1.0),
    ],
)
def test_t7_ppo_clip_term(lam, adv, value, grad):
    with jax.enable_x64(True):
        f = lambda r: ppo_clip_objective(r, adv, 0.2)  # noqa: E731
        assert abs(float(f(lam)) - value) < 1e-15
        assert abs(float(jax.grad(f)(lam)) - grad) < 1e-15


# ----------------------------------------------------------------------------------------------
# T8 - JR-PPO clips the joint ratio [seed 004 eq. 6]
# ----------------------------------------------------------------------------------------------
def test_t8_joint_clipping_vs_independent_clipping():
    with jax.enable_x64(True):
        old = jnp.log(jnp.array([0.5, 0.5]))
        new_up = old + jnp.log(jnp.array([1.1, 1.1]))
        joint = lambda n: joint_clip_objective(n, old, 1.0, 0.2)  # noqa: E731
        indep = lambda n: jnp.sum(ppo_clip_objective(jnp.exp(log_ratio(n, old)), 1.0, 0.2))  # noqa: E731
        assert abs(float(joint(new_up)) - 1.2) < 1e-14  # min(1.21, 1.2)
        np.testing.assert_array_equal(np.asarray(jax.grad(joint)(new_up)), [0.0, 0.0])
        assert abs(float(indep(new_up)) - 2.2) < 1e-14  # 1.1 + 1.1, each unclipped
        np.testing.assert_allclose(np.asarray(jax.grad(indep)(new_up)), [1.1, 1.1], atol=1e-14)
        new_mix = old + jnp.log(jnp.array([1.1, 0.9]))
        assert abs(float(joint(new_mix)) - 0.99) < 1e-14
        # d/d logp_k of lambda_joint * A = lambda_joint for each agent (unclipped)
        np.testing.assert_allclose(np.asarray(jax.grad(joint)(new_mix)), [0.99, 0.99], atol=1e-14)


def test_t8_many_agents_joint_ratio_is_finite():
    """seed-004 spec 7 #15: N = 27 with lambda_k = 1.1 each (joint ~ 13.1), and extreme ratios."""
    old = jnp.zeros((4, 27))
    adv = jnp.array([1.0, -1.0, 1.0, -1.0])
    new = old + jnp.log(1.1)
    np.testing.assert_allclose(np.asarray(joint_ratio(new, old))[0], 1.1**27, rtol=1e-4)
    for shift in (jnp.log(1.1), 5.0, -5.0):
        n = old + shift
        loss = lambda x: -jnp.mean(joint_clip_objective(x, old, adv, 0.2))  # noqa: E731
        assert np.isfinite(float(loss(n)))
        assert np.all(np.isfinite(np.asarray(jax.grad(loss)(n))))


# ----------------------------------------------------------------------------------------------
# T9 - first-step gradient equivalence: joint vs SUMMED independent [rec]
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "theta_old,expected",
    [((0.0, 0.0, 0.0), (0.0, 1.0, -1.0)), ((1.0, 0.0, -1.0), (-0.995723, 1.265815, -0.270092))],
)
def test_t9_first_step_gradient_equivalence(theta_old, expected):
    actions = jnp.array([0, 1, 1])  # N = 3 agents, one local state, shared softmax policy
    adv = 1.0
    with jax.enable_x64(True):
        th_old = jnp.asarray(theta_old, jnp.float64)
        logp_old = jax.nn.log_softmax(th_old)[actions]
        logp = lambda th: jax.nn.log_softmax(th)[actions]  # noqa: E731
        lam = lambda th: jnp.exp(log_ratio(logp(th), logp_old))  # noqa: E731
        pi = jax.nn.softmax(th_old)
        analytic = jax.nn.one_hot(actions, 3).sum(0) - 3 * pi  # sum_k (e_{a_k} - pi)
        grads = {
            "prod": jax.grad(lambda th: jnp.prod(lam(th)) * adv)(th_old),
            "sum": jax.grad(lambda th: jnp.sum(lam(th)) * adv)(th_old),
            "joint_clip": jax.grad(lambda th: joint_clip_objective(logp(th), logp_old, adv, 0.2))(th_old),
            "indep_clip_sum": jax.grad(lambda th: jnp.sum(ppo_clip_objective(lam(th), adv, 0.2)))(th_old),
        }
        mean_grad = jax.grad(lambda th: jnp.mean(ppo_clip_objective(lam(th), adv, 0.2)))(th_old)
    np.testing.assert_allclose(np.asarray(analytic), expected, atol=1e-6)
    for name, g in grads.items():
        np.testing.assert_allclose(np.asarray(g), np.asarray(analytic), atol=1e-12, err_msg=name)
    if np.any(np.asarray(analytic) != 0):
        # a MEAN over agents scales the independent gradient by 1/N: not equal to JR-PPO's
        np.testing.assert_allclose(np.asarray(mean_grad), np.asarray(analytic) / 3, atol=1e-12)
        assert np.max(np.abs(np.asarray(mean_grad) - np.asarray(grads["joint_clip"]))) > 0.1


# ----------------------------------------------------------------------------------------------
# T10 - one-step games: joint surrogate exact, independent surrogates miss a 2nd-order term [rec]
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "payoff,eta_old,eta_new,indep_gain",
    [([[1.0, 0.0], [0.0, 1.0]], 0.5, 0.52, 0.0), ([[2.0, 0.0], [0.0, 1.0]], 0.75, 0.88, 0.10)],
)
def test_t10_matrix_game_surrogates(payoff, eta_old, eta_new, indep_gain):
    R = np.asarray(payoff).reshape(-1)  # joint action a = a1 * 2 + a2
    pi_k, new_k = np.array([0.5, 0.5]), np.array([0.6, 0.4])
    acts = np.array(list(itertools.product(range(2), range(2))))  # [4, 2]
    pi = product([pi_k, pi_k])
    eta, eta_t = float(pi @ R), float(product([new_k, new_k]) @ R)
    adv = R - eta
    assert abs(eta - eta_old) < 1e-15 and abs(eta_t - eta_new) < 1e-15
    with jax.enable_x64(True):
        logp_old = np.log(pi_k)[acts]  # [4 joint actions, 2 agents]
        logp_new = np.log(new_k)[acts]
        lam_joint = np.asarray(joint_ratio(logp_new, logp_old))
        lam_k = np.exp(np.asarray(log_ratio(logp_new, logp_old)))
    joint_gain = float((pi * (lam_joint - 1.0) * adv).sum())
    indep = float(sum((pi * (lam_k[:, k] - 1.0) * adv).sum() for k in range(2)))
    assert abs(joint_gain - (eta_new - eta_old)) < 1e-14  # exact for one-step games
    assert abs(indep - indep_gain) < 1e-14


# ----------------------------------------------------------------------------------------------
# T11 - telescoping identity (Prop. 1 / eq. T) on a random tabular Dec-MDP [seed, exact]
# ----------------------------------------------------------------------------------------------
def _mixed(mdp: DecMDP, new: list[np.ndarray], old: list[np.ndarray], j: int) -> np.ndarray:
    """Joint policy with agents < j updated and agents >= j old."""
    return mdp.joint_policy([new[k] if k < j else old[k] for k in range(2)])


def test_t11_telescoping_identity():
    rng = np.random.default_rng(11)
    for seed in range(5):
        mdp = DecMDP(seed)
        old = random_local_policies(rng)
        new = [softmax(np.log(p) + rng.normal(scale=0.5, size=p.shape)) for p in old]
        pi, pi_t = mdp.joint_policy(old), mdp.joint_policy(new)
        # (T) on policy tables: prod pi~ - prod pi = sum_j (prod_{k<=j} pi~)(prod_{k>j} pi) - (...)
        tele = sum(_mixed(mdp, new, old, j + 1) - _mixed(mdp, new, old, j) for j in range(2))
        np.testing.assert_allclose(pi_t - pi, tele, atol=1e-15)
        explicit = (  # j = 1 and j = 2 terms written out with per-agent differences
            mdp.joint_policy([new[0] - old[0], old[1]]) + mdp.joint_policy([new[0], new[1] - old[1]])
        )
        np.testing.assert_allclose(pi_t - pi, explicit, atol=1e-15)
        ev = mdp.evaluate(pi)
        lhs = mdp.surrogate_gain(ev, pi_t - pi)
        rhs = sum(
            mdp.surrogate_gain(ev, _mixed(mdp, new, old, j + 1) - _mixed(mdp, new, old, j)) for j in range(2)
        )
        assert abs(lhs - rhs) < 1e-12
        assert abs(lhs) > 1e-4  # non-trivial


# ----------------------------------------------------------------------------------------------
# T12 - the joint-vs-independent surrogate gap is second order in the step size [rec]
# ----------------------------------------------------------------------------------------------
def test_t12_second_order_gap():
    rng = np.random.default_rng(12)
    mdp = DecMDP(0)
    old = random_local_policies(rng)
    ev = mdp.evaluate(mdp.joint_policy(old))
    direction = [rng.normal(size=(3, 2)) for _ in range(2)]

    def gap(t: float) -> float:
        new = [softmax(np.log(old[k]) + t * direction[k]) for k in range(2)]
        joint = mdp.surrogate_gain(ev, mdp.joint_policy(new))  # L_joint(pi~) - eta
        indep = sum(  # sum_k L_k^indep(pi~_k) - eta: only agent k updated
            mdp.surrogate_gain(ev, mdp.joint_policy([new[i] if i == k else old[i] for i in range(2)])) for k in range(2)
        )
        return joint - indep

    ratios = [gap(t) / gap(t / 2) for t in (0.1, 0.05, 0.025)]
    for r in ratios:
        assert 3.0 <= r <= 5.0
    assert abs(ratios[-1] - 4.0) < abs(ratios[0] - 4.0) + 1e-9  # converges towards 4
    assert abs(gap(0.1)) > 1e-6


# ----------------------------------------------------------------------------------------------
# T13 - TRPO Theorem 1 for the joint policy, also with the Prop. 2 upper bound [seed]
# ----------------------------------------------------------------------------------------------
def test_t13_trpo_bound_joint_policy():
    rng = np.random.default_rng(13)
    mdp = DecMDP(0)
    g = mdp.gamma
    old = random_local_policies(rng)
    pi = mdp.joint_policy(old)
    ev = mdp.evaluate(pi)
    eps_a = float(np.abs(ev["A"]).max())
    c = 4.0 * eps_a * g / (1.0 - g) ** 2
    tightest = np.inf
    for _ in range(2000):
        scale = rng.uniform(0.0, 2.0)
        new = [softmax(np.log(p) + scale * rng.normal(size=p.shape)) for p in old]
        pi_t = mdp.joint_policy(new)
        eta_t = mdp.evaluate(pi_t)["eta"]
        surrogate = ev["eta"] + mdp.surrogate_gain(ev, pi_t)
        alpha = 0.5 * np.abs(pi_t - pi).sum(1).max()  # D_TV^max over joint policies
        alpha_sum = sum(0.5 * np.abs(new[k] - old[k]).sum(1).max() for k in range(2))  # Prop. 2 bound
        assert alpha <= alpha_sum + 1e-12
        assert eta_t >= surrogate - c * alpha**2 - 1e-12
        assert eta_t >= surrogate - c * alpha_sum**2 - 1e-12
        tightest = min(tightest, eta_t - (surrogate - c * alpha**2))
    assert tightest >= 0.0


def test_t13_bound_is_not_vacuous_without_penalty():
    """Negative control: without the penalty term the surrogate sometimes overestimates eta."""
    rng = np.random.default_rng(130)
    mdp = DecMDP(0)
    old = random_local_policies(rng)
    ev = mdp.evaluate(mdp.joint_policy(old))
    violations = 0
    for _ in range(200):
        new = [softmax(np.log(p) + rng.uniform(0, 2) * rng.normal(size=p.shape)) for p in old]
        pi_t = mdp.joint_policy(new)
        violations += mdp.evaluate(pi_t)["eta"] < ev["eta"] + mdp.surrogate_gain(ev, pi_t) - 1e-9
    assert violations > 0


# ----------------------------------------------------------------------------------------------
# T14 - IPPO == MAPPO expected surrogate at critic fixed points (Prop. 4) [seed, exact check rec]
# ----------------------------------------------------------------------------------------------
def test_t14_ippo_equals_mappo_expected_surrogate():
    rng = np.random.default_rng(14)
    mdp = DecMDP(0)
    for _ in range(5):
        old = random_local_policies(rng)
        pi = mdp.joint_policy(old)
        ev = mdp.evaluate(pi)
        rho, V, Q = ev["rho"], ev["V"], ev["Q"]
        s1, a1 = mdp.local[:, 0], mdp.act[:, 0]  # agent k = 1's local state and action
        w = rho[:, None] * pi  # rho(s) pi(a|s)
        v_loc = np.array([(rho * V)[s1 == x].sum() / rho[s1 == x].sum() for x in range(3)])
        q_loc = np.zeros((3, 2))
        for x, u in itertools.product(range(3), range(2)):
            sel = (s1[:, None] == x) & (a1[None, :] == u)
            q_loc[x, u] = (w * Q)[sel].sum() / w[sel].sum()
        adv_mappo = Q - V[:, None]  # centralised critic
        adv_ippo = q_loc[s1][:, a1] - v_loc[s1][:, None]  # decentralised critic at its fixed point
        for _ in range(10):
            new1 = softmax(np.log(old[0]) + rng.normal(size=(3, 2)))
            lam1 = (new1 / old[0])[s1][:, a1]  # lambda_1(a^1 | s^1) on the joint table
            lhs = float((w * lam1 * adv_mappo).sum())
            rhs = float((w * lam1 * adv_ippo).sum())
            assert abs(lhs - rhs) < 1e-10
            assert abs(lhs) > 1e-6
        # negative control: the per-sample advantages differ
        assert np.abs(adv_mappo - adv_ippo).max() > 1e-3


# ----------------------------------------------------------------------------------------------
# T15 - degenerate cases (function level) [rec]
# ----------------------------------------------------------------------------------------------
def test_t15_single_agent_joint_equals_independent_equals_ppo_bitwise():
    rng = np.random.default_rng(15)
    logp_old = jnp.asarray(np.log(rng.uniform(0.05, 1.0, size=(256, 1))), jnp.float32)
    logp_new = logp_old + jnp.asarray(rng.normal(scale=0.3, size=(256, 1)), jnp.float32)
    adv = jnp.asarray(rng.normal(size=256), jnp.float32)
    eps = per_agent_clip(0.2, 1)
    assert eps == per_agent_clip(0.2, 1, "fixed") == per_agent_clip(0.2, 1, "nth_root") == 0.2
    ppo = ppo_clip_objective(jnp.exp(logp_new[:, 0] - logp_old[:, 0]), adv, eps)  # single-agent PPO
    indep = ppo_clip_objective(jnp.exp(log_ratio(logp_new, logp_old))[:, 0], adv, eps)
    joint = joint_clip_objective(logp_new, logp_old, adv, eps)
    joint_masked = joint_clip_objective(logp_new, logp_old, adv, eps, mask=jnp.ones((256, 1)))
    for x in (indep, joint, joint_masked):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(ppo))
    assert np.any(np.asarray(ppo) != np.asarray(adv))  # some ratios moved (non-trivial batch)


def test_t15_dead_or_masked_agent_contributes_nothing():
    rng = np.random.default_rng(16)
    with jax.enable_x64(True):
        old = np.log(rng.uniform(0.05, 1.0, size=(32, 3)))
        new = old + rng.normal(scale=0.1, size=(32, 3))
        adv = rng.normal(size=32)
        base_lr = np.asarray(joint_log_ratio(new[:, :2], old[:, :2]))
        # (a) dead agent whose only action is the no-op: log-probs 0 -> log-ratio exactly 0
        dead_new, dead_old = new.copy(), old.copy()
        dead_new[:, 2] = dead_old[:, 2] = 0.0
        np.testing.assert_array_equal(np.asarray(joint_log_ratio(dead_new, dead_old)), base_lr)
        # (b) masked agent with arbitrary (even non-finite) log-probs
        garbage_new, garbage_old = new.copy(), old.copy()
        garbage_new[:, 2], garbage_old[:, 2] = np.nan, -np.inf
        mask = np.array([1.0, 1.0, 0.0])[None].repeat(32, 0)
        np.testing.assert_array_equal(np.asarray(joint_log_ratio(garbage_new, garbage_old, mask)), base_lr)
        np.testing.assert_array_equal(
            np.asarray(joint_clip_objective(garbage_new, garbage_old, adv, 0.2, mask)),
            np.asarray(joint_clip_objective(new[:, :2], old[:, :2], adv, 0.2)),
        )
        # independent loss and TV diagnostics ignore the masked agent too
        lr = np.asarray(log_ratio(new, old))
        indep = np.asarray(ppo_clip_objective(np.exp(lr), adv[:, None], 0.2))
        assert abs((indep * mask).sum() - indep[:, :2].sum()) < 1e-12
        tv = np.abs(np.expm1(lr)) * 0.5
        tv_garbage = tv.copy()
        tv_garbage[:, 2] = 7.0
        assert float(joint_tv_estimate(tv_garbage, mask)) == float(joint_tv_estimate(tv[:, :2]))
        lo, hi = ratio_range(np.where(mask > 0, lr, 50.0), mask)
        assert float(lo[2]) == 1.0 and float(hi[2]) == 1.0


def test_t15_agent_permutation_invariance():
    rng = np.random.default_rng(17)
    with jax.enable_x64(True):
        for n in (2, 3, 5):
            old = np.log(rng.uniform(0.05, 1.0, size=(64, n)))
            new = old + rng.normal(scale=0.2, size=(64, n))
            adv_t = rng.normal(size=64)
            adv_k = rng.normal(size=(64, n))
            mask = (rng.random((64, n)) > 0.2).astype(float)
            perm = rng.permutation(n)
            np.testing.assert_allclose(
                np.asarray(joint_ratio(new, old, mask)),
                np.asarray(joint_ratio(new[:, perm], old[:, perm], mask[:, perm])),
                rtol=1e-12,
            )
            np.testing.assert_allclose(
                np.asarray(joint_clip_objective(new, old, adv_t, 0.2, mask)),
                np.asarray(joint_clip_objective(new[:, perm], old[:, perm], adv_t, 0.2, mask[:, perm])),
                rtol=1e-12,
            )

            def summed(nw, od, a, m):
                return float(jnp.sum(m * ppo_clip_objective(jnp.exp(log_ratio(nw, od)), a, 0.2 / n)))

            permuted = summed(new[:, perm], old[:, perm], adv_k[:, perm], mask[:, perm])
            assert abs(summed(new, old, adv_k, mask) - permuted) < 1e-12


# ----------------------------------------------------------------------------------------------
# T16 - diagnostics [seed 004 section 7]
# ----------------------------------------------------------------------------------------------
def test_t16_joint_tv_estimate_upper_bounds_exact_joint_tv():
    rng = np.random.default_rng(18)
    for n, k in itertools.product(range(2, 5), range(2, 5)):
        t_len = 16
        old = rng.dirichlet(np.ones(k), size=(t_len, n))  # [T, N, A]
        new = softmax(np.log(old) + rng.normal(scale=0.5, size=old.shape))
        tv = tv_x64(old, new)  # [T, N] exact per-state per-agent TV
        with jax.enable_x64(True):
            est = float(joint_tv_estimate(tv))
        exact = tv_x64(product_batch(old), product_batch(new))  # [T] exact per-state joint TV
        assert np.all(est >= exact - 1e-12)
        assert np.all(tv.sum(-1) >= exact - 1e-12)  # Prop. 2 at each state
        assert abs(est - tv.max(0).sum()) < 1e-12


def test_t16_per_state_tv_over_available_actions_only():
    # 4 actions, action 3 unavailable (no mass under either policy, -inf log-prob)
    avail = np.array([1, 1, 1, 0])
    old = np.array([0.2, 0.3, 0.5, 0.0])
    new = np.array([0.25, 0.25, 0.5, 0.0])
    with jax.enable_x64(True):
        lo, ln = np.log(np.where(avail > 0, old, 1.0)), np.log(np.where(avail > 0, new, 1.0))
        lo[3] = ln[3] = -np.inf
        assert abs(float(categorical_tv(lo, ln, avail)) - 0.05) < 1e-15
        # an unavailable slot holding stale non-zero mass is ignored when avail is given
        ln_stale = ln.copy()
        ln_stale[3] = np.log(0.4)
        assert abs(float(categorical_tv(lo, ln_stale, avail)) - 0.05) < 1e-15


def test_t16_ratio_range_before_first_step_and_nonnegative():
    rng = np.random.default_rng(19)
    logp = np.log(rng.uniform(0.01, 1.0, size=(50, 4)))
    lo, hi = ratio_range(log_ratio(logp, logp))  # before the first gradient step: new == old
    np.testing.assert_array_equal(np.asarray(lo), np.ones(4))
    np.testing.assert_array_equal(np.asarray(hi), np.ones(4))
    lo, hi = ratio_range(rng.normal(scale=3.0, size=(50, 4)), axis=None)
    assert 0.0 <= float(lo) <= float(hi)
