"""Testable claims of Kuba et al. 2022: "Trust Region Policy Optimisation in MARL", ICLR 2022.

Exact checks in numpy float64 (Lemma 1, Proposition 3 /
eq. 9, Proposition 1, eq. 6, Lemma 8, Algorithm 1 / Theorem 2), and the Figure 1 differential game
reproduced with the library's own trust-region pieces (trustmarl.trust.natural / sequential).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trustmarl.trust.natural import backtracking_line_search, fisher_vector_product, trpo_step
from trustmarl.trust.sequential import factor_from_log, update_factor


# --------------------------------------------------------------------------------------------
# helpers: tabular games. Arrays carry a leading batch axis (games); agent j's action is axis j+1.
# --------------------------------------------------------------------------------------------
def _axis_shape(n: int, j: int, batch: int) -> list[int]:
    shape = [batch] + [1] * n
    shape[j + 1] = -1
    return shape


def marginal_q(q: np.ndarray, pols: list[np.ndarray], keep) -> np.ndarray:
    """Q^{keep} (Definition 1): expectation of q over the agents not in ``keep`` (keepdims)."""
    n, b = len(pols), q.shape[0]
    for j, p in enumerate(pols):
        if j not in keep:
            q = np.sum(q * p.reshape(_axis_shape(n, j, b)), axis=j + 1, keepdims=True)
    return q


def joint_prob(pols: list[np.ndarray], agents) -> np.ndarray:
    """prod_{j in agents} pi^j(a^j) as a broadcastable array (singleton axes for the others)."""
    n, b = len(pols), pols[0].shape[0]
    out = np.ones([b] + [1] * n)
    for j in agents:
        out = out * pols[j].reshape(_axis_shape(n, j, b))
    return out


def agent_advantage(q: np.ndarray, pols: list[np.ndarray], prev, agent) -> np.ndarray:
    """A^{i_m}(a^{prev}, a^{i_m}) = Q^{prev, i_m} - Q^{prev} (eq. 1)."""
    return marginal_q(q, pols, set(prev) | {agent}) - marginal_q(q, pols, set(prev))


def kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return np.sum(p * (np.log(p) - np.log(q)), axis=-1)


def random_policies(rng, counts, batch=1):
    return [rng.dirichlet(np.ones(c), size=batch) for c in counts]


def q_subset_bruteforce(q: np.ndarray, pols: list[np.ndarray], subset, a_sub: dict) -> float:
    """Definition 1 by explicit enumeration (unbatched q and pols): E_{a^{-S} ~ pi^{-S}} Q(a^S, a^{-S})."""
    counts = [len(p) for p in pols]
    others = [j for j in range(len(pols)) if j not in subset]
    total = 0.0
    for a_oth in itertools.product(*[range(counts[j]) for j in others]):
        a = dict(a_sub)
        a.update(zip(others, a_oth))
        w = np.prod([pols[j][a[j]] for j in others])
        total += w * q[tuple(a[j] for j in range(len(pols)))]
    return total


# --------------------------------------------------------------------------------------------
# §6.1 Lemma 1 (multi-agent advantage decomposition)
# --------------------------------------------------------------------------------------------
def _check_decomposition(q: np.ndarray, v: float, pols: list[np.ndarray]) -> float:
    """max over permutations, prefixes and joint actions of |A^{i_{1:m}} - sum_j A^{i_j}| (Lemma 1)."""
    counts = [len(p) for p in pols]
    n = len(pols)
    err = 0.0
    for perm in itertools.permutations(range(n)):
        for a in itertools.product(*[range(c) for c in counts]):
            total = 0.0
            for m in range(1, n + 1):
                agent, prev = perm[m - 1], perm[: m - 1]
                q_with = q_subset_bruteforce(q, pols, prev + (agent,), {j: a[j] for j in prev + (agent,)})
                q_without = q_subset_bruteforce(q, pols, prev, {j: a[j] for j in prev}) if prev else v
                total += q_with - q_without  # A^{i_m}(s, a^{i_{1:m-1}}, a^{i_m}), eq. 1
                lhs = (q[a] if m == n else q_with) - v  # A^{i_{1:m}} (for m = n: Q(s,a) - V(s))
                err = max(err, abs(lhs - total))
    return err


def test_lemma1_one_step_game():
    rng = np.random.default_rng(0)
    counts = (2, 3, 2)
    r = rng.normal(size=counts)
    pols = [p[0] for p in random_policies(rng, counts)]
    v = float(np.einsum("abc,a,b,c->", r, *pols))  # gamma = 0: Q = R, V = E_pi R
    assert _check_decomposition(r, v, pols) < 1e-13


def test_lemma1_multi_state_game():
    """|S| = 3, gamma = 0.9, exact Q_pi from the Bellman linear system; identity per state."""
    rng = np.random.default_rng(1)
    counts, n_s, gamma = (2, 3, 2), 3, 0.9
    r = rng.normal(size=(n_s,) + counts)
    p = rng.dirichlet(np.ones(n_s), size=(n_s,) + counts)  # P(s' | s, a)
    pols = [rng.dirichlet(np.ones(c), size=n_s) for c in counts]  # pi^i(a^i | s)
    pi_joint = np.einsum("sa,sb,sc->sabc", *pols)
    r_pi = np.einsum("sabc,sabc->s", pi_joint, r)
    p_pi = np.einsum("sabc,sabct->st", pi_joint, p)
    v = np.linalg.solve(np.eye(n_s) - gamma * p_pi, r_pi)
    q = r + gamma * np.einsum("sabct,t->sabc", p, v)
    # consistency of the exact solution: V(s) = E_pi Q(s, .)
    np.testing.assert_allclose(np.einsum("sabc,sabc->s", pi_joint, q), v, rtol=1e-12)
    for s in range(n_s):
        assert _check_decomposition(q[s], v[s], [pol[s] for pol in pols]) < 1e-12


# --------------------------------------------------------------------------------------------
# §6.2 Proposition 3 / eq. 9, §6.6 eq. 6
# --------------------------------------------------------------------------------------------
def test_proposition3_eq9_and_library_factor():
    """E_{pibar, pihat}[A^{i_m}] = E_{a~pi}[(pihat/pi - 1) prod_prev(pibar/pi) A] for every order and m;
    the prod_prev(pibar/pi) weight equals the library's log-space compound factor (eq. 10)."""
    rng = np.random.default_rng(2)
    counts = (2, 3, 2)
    r = rng.normal(size=(1,) + counts)
    pi = random_policies(rng, counts)
    pibar = random_policies(rng, counts)  # new policies of earlier agents
    pihat = random_policies(rng, counts)  # candidate policy of agent i_m
    adv = r - marginal_q(r, pi, ())
    pi_joint = joint_prob(pi, range(3))
    grid = np.stack(np.meshgrid(*[np.arange(c) for c in counts], indexing="ij"), -1).reshape(-1, 3)
    with jax.enable_x64(True):
        for perm in itertools.permutations(range(3)):
            log_f = jnp.zeros(len(grid), jnp.float64)
            for m in range(3):
                agent, prev = perm[m], perm[:m]
                a_m = agent_advantage(r, pi, prev, agent)
                lhs = np.sum(joint_prob(pibar, prev) * joint_prob(pihat, [agent]) * a_m)
                weight = joint_prob(pibar, prev) / joint_prob(pi, prev)
                ratio_m = joint_prob(pihat, [agent]) / joint_prob(pi, [agent])
                rhs = np.sum(pi_joint * (ratio_m - 1.0) * weight * adv)
                assert lhs == pytest.approx(rhs, abs=1e-14)
                # eq. 6: the agent that does not move contributes 0, whatever the earlier agents did
                assert np.sum(joint_prob(pibar, prev) * joint_prob(pi, [agent]) * a_m) == pytest.approx(0, abs=1e-14)
                # library factor on the enumerated joint actions vs the exact product of ratios
                np.testing.assert_allclose(
                    np.asarray(factor_from_log(log_f)),
                    np.broadcast_to(weight, (1,) + counts).reshape(-1), rtol=1e-12,
                )
                logp = lambda pols: np.log(pols[agent][0][grid[:, agent]])
                log_f = update_factor(log_f, jnp.asarray(logp(pibar)), jnp.asarray(logp(pi)))


def test_proposition3_sample_estimator():
    """The per-sample estimator (ratio - 1) * M with M from update_factor, sampled from pi, matches eq. 9."""
    rng = np.random.default_rng(3)
    counts, n = (2, 3, 2), 400_000
    r = rng.normal(size=(1,) + counts)
    pi, pibar, pihat = (random_policies(rng, counts) for _ in range(3))
    adv = (r - marginal_q(r, pi, ()))[0]
    acts = np.stack([rng.choice(c, size=n, p=p[0]) for c, p in zip(counts, pi)], -1)
    order = (2, 0, 1)
    with jax.enable_x64(True):
        log_f = jnp.zeros(n)
        for agent in order[:2]:
            log_f = update_factor(
                log_f, jnp.log(pibar[agent][0][acts[:, agent]]), jnp.log(pi[agent][0][acts[:, agent]])
            )
        agent = order[2]
        m_factor = np.asarray(factor_from_log(log_f)) * adv[tuple(acts.T)]  # M^{i_{1:3}}, eq. 10
    est_samples = (pihat[agent][0][acts[:, agent]] / pi[agent][0][acts[:, agent]] - 1.0) * m_factor
    exact = np.sum(joint_prob(pibar, order[:2]) * joint_prob(pihat, [agent]) * agent_advantage(r, pi, order[:2], agent))
    se = est_samples.std() / np.sqrt(n)
    assert abs(est_samples.mean() - exact) < 4 * se


# --------------------------------------------------------------------------------------------
# §6.7 Lemma 8
# --------------------------------------------------------------------------------------------
def test_lemma8_kl_of_product_policies():
    rng = np.random.default_rng(4)
    counts, n_s = (2, 3, 4), 5
    p = [rng.dirichlet(np.ones(c), size=n_s) for c in counts]
    q = [rng.dirichlet(np.ones(c), size=n_s) for c in counts]
    pj = np.einsum("sa,sb,sc->sabc", *p).reshape(n_s, -1)
    qj = np.einsum("sa,sb,sc->sabc", *q).reshape(n_s, -1)
    per_state_joint = kl(pj, qj)
    per_state_sum = sum(kl(pi, qi) for pi, qi in zip(p, q))
    np.testing.assert_allclose(per_state_joint, per_state_sum, rtol=1e-12)  # exact equality per state
    assert per_state_joint.max() <= sum(kl(pi, qi).max() for pi, qi in zip(p, q)) + 1e-15  # D^max sub-additive


# --------------------------------------------------------------------------------------------
# §6.5 exact Algorithm 1 (Theorem 2) and §6.3 Proposition 1
# --------------------------------------------------------------------------------------------
def solve_kl_penalised(q: np.ndarray, pi_k: np.ndarray, c: np.ndarray, iters: int = 100) -> np.ndarray:
    """argmax_pi sum_a pi(a) q(a) - C KL(pi_k || pi) (batched rows): pi = C pi_k / (lambda - q), with
    lambda in (max q, max q + C] found by bisection so that sum pi = 1 (spec §6.5)."""
    c = c[:, None]
    lo = q.max(-1, keepdims=True)
    hi = lo + c
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        too_big = np.sum(c * pi_k / (mid - q), -1, keepdims=True) > 1.0  # sum decreasing in lambda
        lo = np.where(too_big, mid, lo)
        hi = np.where(too_big, hi, mid)
    pi = c * pi_k / (hi - q)
    return pi / pi.sum(-1, keepdims=True)


def algorithm1_iteration(r, pols, gamma, perm, c_scale: float = 1.0, simultaneous: bool = False):
    """One iteration of seed 001 Algorithm 1 in a one-state game with reward tensor r (batched).

    Q_pi(a) = R(a) + gamma V, so A_pi = R - E_pi R and every A^{i_m} is computed from R under pi_k;
    rho_pi = 1/(1-gamma); C = 4 gamma max|A| / (1-gamma)^2 (eq. 2), times ``c_scale``; D^max = KL (one
    state). ``simultaneous``: every agent treats the others as fixed at pi_k (no earlier agents), the
    independent update Algorithm 1 improves on."""
    adv = r - marginal_q(r, pols, ())
    c = c_scale * 4 * gamma * np.abs(adv).reshape(len(r), -1).max(-1) / (1 - gamma) ** 2
    new = list(pols)
    n = len(pols)
    for m, agent in enumerate(perm):
        prev = () if simultaneous else perm[:m]
        a_m = agent_advantage(r, pols, prev, agent)  # under pi_k
        weighted = joint_prob(new, prev) * a_m  # earlier agents at pi_{k+1}
        axes = tuple(j + 1 for j in range(n) if j != agent)
        q_agent = weighted.sum(axis=axes) / (1 - gamma)
        new[agent] = solve_kl_penalised(q_agent, pols[agent], c)
    return new


def expected_reward(r, pols):
    return marginal_q(r, pols, ()).reshape(len(r))


def test_algorithm1_monotonic_improvement():
    """Theorem 2: 20 random 3-agent, 3-action games, gamma = 0.5, 100 iterations: J never decreases."""
    rng = np.random.default_rng(5)
    batch, gamma, counts = 20, 0.5, (3, 3, 3)
    r = rng.normal(size=(batch,) + counts)
    pols = random_policies(rng, counts, batch)
    j_hist = [expected_reward(r, pols) / (1 - gamma)]
    for _ in range(100):
        pols = algorithm1_iteration(r, pols, gamma, tuple(rng.permutation(3)))
        j_hist.append(expected_reward(r, pols) / (1 - gamma))
    diffs = np.diff(np.stack(j_hist), axis=0)
    assert diffs.min() >= -1e-12, diffs.min()
    assert np.all(j_hist[-1] - j_hist[0] > 0)  # and it actually improves every game
    for p in pols:
        np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-12)


def best_response_gap(r, pols) -> np.ndarray:
    """max over agents i of max_{a^i} E_{a^-i ~ pi^-i} R(a^i, a^-i) - E_pi R: 0 exactly at a Nash equilibrium (Def. 3)."""
    j = expected_reward(r, pols)
    gaps = []
    for i in range(len(pols)):
        q_i = marginal_q(r, pols, {i}).reshape(len(r), -1)  # E over the others of R, per own action
        gaps.append(q_i.max(-1) - j)
    return np.max(gaps, axis=0)


def test_algorithm1_converges_to_a_nash_equilibrium():
    """Proposition 2 in a one-state game: exact Algorithm 1 (random order every iteration, gamma = 0.5)
    on random 3-agent, 3-action games ends at a Nash equilibrium: no agent gains by deviating alone.
    (seed 001 spec §6.5: game seed 1 reaches a best-response gap of 0 within 3000 iterations.)"""
    rng = np.random.default_rng(1)
    batch, gamma = 6, 0.5
    r = rng.normal(size=(batch, 3, 3, 3))
    pols = random_policies(rng, (3, 3, 3), batch)
    gap0 = best_response_gap(r, pols)
    for _ in range(1200):  # measured largest gap: 0.0016 after 800 iterations, 0.0006 after 1000
        pols = algorithm1_iteration(r, pols, gamma, tuple(rng.permutation(3)))
    gap = best_response_gap(r, pols)
    assert np.all(gap0 > 0.1), gap0
    assert np.all(gap < 1e-3), gap


def test_reduced_penalty_simultaneous_updates_lose_monotonicity_sequential_keep_it():
    """seed 001 spec §6.5: with C scaled by 0.01 (no longer the bound's constant), the simultaneous
    variant (every agent best-responds to pi_k) makes J decrease in many iterations, the sequential
    Algorithm 1 in none (empirical: the theory guarantees nothing at reduced C). 50 games x 100 iterations."""
    rng = np.random.default_rng(5)
    batch, gamma = 50, 0.5
    r = rng.normal(size=(batch, 3, 3, 3))
    start = random_policies(rng, (3, 3, 3), batch)
    decreases = {}
    for simultaneous in (False, True):
        pols, j_prev, n_dec = list(start), expected_reward(r, start), 0
        order = np.random.default_rng(7)
        for _ in range(100):
            pols = algorithm1_iteration(r, pols, gamma, tuple(order.permutation(3)), c_scale=0.01, simultaneous=simultaneous)
            j = expected_reward(r, pols)
            n_dec += int(np.sum(j < j_prev - 1e-12))
            j_prev = j
        decreases[simultaneous] = n_dec
    assert decreases[False] == 0, decreases
    assert decreases[True] >= 100, decreases  # measured 395 of 5000 (game, iteration) pairs


def _prop1_reward(n: int) -> np.ndarray:
    r = np.zeros((2,) * n)
    half = n // 2
    r[(0,) * half + (1,) * half] = 1.0
    r[(1,) * half + (0,) * half] = 1.0
    return r


@pytest.mark.parametrize("n, expected", [(2, 0.5), (4, 0.125), (6, 0.03125), (8, 0.0078125)])
def test_proposition1_parameter_sharing_bound(n, expected):
    r = _prop1_reward(n)[None]
    thetas = np.linspace(0.0, 1.0, 2001)
    # J(theta) by enumeration of the joint action space for the shared policy P(a^i = 0) = theta
    j = np.array([expected_reward(r, [np.array([[t, 1 - t]])] * n)[0] for t in thetas])
    np.testing.assert_allclose(j, 2 * thetas ** (n / 2) * (1 - thetas) ** (n / 2), atol=1e-15)
    assert thetas[np.argmax(j)] == 0.5
    assert j.max() == pytest.approx(expected, rel=1e-12) and expected == 2 / 2**n
    # J* = 1 with non-shared deterministic policies (0..0, 1..1)
    det = [np.array([[1.0, 0.0]])] * (n // 2) + [np.array([[0.0, 1.0]])] * (n // 2)
    assert expected_reward(r, det)[0] == 1.0


def test_proposition1_algorithm1_escapes_sharing_cap():
    """Exact Algorithm 1 with independent policies (n = 4, gamma = 0.5) from random Dirichlet inits reaches
    J = 1, far above the shared-policy cap 0.125; monotone along the way."""
    rng = np.random.default_rng(6)
    n, batch, gamma = 4, 8, 0.5
    r = np.broadcast_to(_prop1_reward(n), (batch,) + (2,) * n)
    pols = random_policies(rng, (2,) * n, batch)
    j_prev = expected_reward(r, pols)
    for _ in range(1500):
        pols = algorithm1_iteration(r, pols, gamma, tuple(rng.permutation(n)))
        j = expected_reward(r, pols)
        assert np.all(j - j_prev >= -1e-12)
        j_prev = j
        if j.min() > 0.999:
            break
    assert j.min() > 0.999, j


# --------------------------------------------------------------------------------------------
# §6.4 Figure 1 differential game with the library's trust-region step
# --------------------------------------------------------------------------------------------
MU0 = (-0.25, 0.25)
DELTA = 0.5


def _gauss_kl_fn(mu_old):
    """KL(N(mu_old, 1) || N(mu, 1)) = (mu_old - mu)^2 / 2, old held fixed."""
    mu_old = jax.lax.stop_gradient(mu_old)
    return lambda mu: 0.5 * jnp.sum((mu_old - mu) ** 2)


def _exact_hatrpo(sequential: bool, order=(0, 1)) -> np.ndarray:
    """Exact surrogates: agent i's L(mu') = m_other (mu' - mu_i), m_other = the other's mean under its
    new policy if it moved earlier (sequential) else its old mean (Prop. 3 with r = a^1 a^2)."""
    mu_old = jnp.array(MU0)
    mu = mu_old
    for agent in order:
        other = 1 - agent
        m_other = mu[other] if sequential else mu_old[other]
        p_old = mu_old[agent : agent + 1]
        surrogate = lambda p: m_other * (p[0] - p_old[0])
        g = jax.grad(surrogate)(p_old)
        fvp = lambda v: fisher_vector_product(_gauss_kl_fn(p_old), p_old, v, 0.0)
        step, _, _ = trpo_step(g, fvp, DELTA)  # seed 001 eq. 8, alpha^0
        mu = mu.at[agent].add(step[0])
    return np.asarray(mu)


def test_differential_game_exact_figure1():
    with jax.enable_x64(True):
        g = jax.grad(lambda p: MU0[1] * (p[0] - MU0[0]))(jnp.array([MU0[0]]))
        assert float(g[0]) == 0.25
        assert MU0[0] * MU0[1] == -0.0625
        simultaneous = _exact_hatrpo(sequential=False)
        np.testing.assert_allclose(simultaneous, [0.75, -0.75], atol=1e-12)
        assert simultaneous.prod() == pytest.approx(-0.5625, abs=1e-12)
        seq12 = _exact_hatrpo(sequential=True, order=(0, 1))
        np.testing.assert_allclose(seq12, [0.75, 1.25], atol=1e-12)
        seq21 = _exact_hatrpo(sequential=True, order=(1, 0))
        np.testing.assert_allclose(seq21, [-1.25, -0.75], atol=1e-12)
        assert seq12.prod() == pytest.approx(0.9375, abs=1e-12) and seq21.prod() == pytest.approx(0.9375, abs=1e-12)


def _sample_hatrpo(use_factor: bool, n: int = 200_000, seed: int = 0):
    """Sample-based HATRPO on the differential game (spec §6.4): Ahat = a1 a2 - mu1 mu2, damping 0.1,
    accept ratio 0.5, backtrack 0.5, order (1, 2)."""
    mu_old = jnp.array(MU0)
    acts = mu_old + jax.random.normal(jax.random.PRNGKey(seed), (n, 2), jnp.float64)
    adv = acts[:, 0] * acts[:, 1] - mu_old[0] * mu_old[1]
    logp = lambda a, m: -0.5 * (a - m) ** 2  # constants cancel in ratios
    log_factor = jnp.zeros(n)
    mu = mu_old
    steps = []
    for agent in (0, 1):
        a_i, p_old = acts[:, agent], mu_old[agent : agent + 1]
        m_adv = (factor_from_log(log_factor) if use_factor else 1.0) * adv  # eq. 10
        surrogate = lambda p: jnp.mean(jnp.exp(logp(a_i, p[0]) - logp(a_i, p_old[0])) * m_adv)
        kl_fn = _gauss_kl_fn(p_old)
        g = jax.grad(surrogate)(p_old)
        step, expected, _ = trpo_step(g, lambda v: fisher_vector_product(kl_fn, p_old, v, 0.1), DELTA)
        new, accepted, _, _, _ = backtracking_line_search(
            surrogate, kl_fn, p_old, step, expected, surrogate(p_old), DELTA, 0.5, 0.5, 10
        )
        assert bool(accepted)
        steps.append(float(step[0]))
        mu = mu.at[agent].set(new[0])
        log_factor = update_factor(log_factor, logp(a_i, new[0]), logp(a_i, p_old[0]))
    return np.asarray(mu), np.asarray(steps)


def test_differential_game_sample_based_factor_matters():
    with jax.enable_x64(True):
        mu_f, steps_f = _sample_hatrpo(use_factor=True)
        mu_n, steps_n = _sample_hatrpo(use_factor=False)
    full = np.sqrt(2 * DELTA / 1.1)  # 0.9535: step shrunk by the 0.1 damping
    np.testing.assert_allclose(np.abs(steps_f), full, rtol=1e-6)
    np.testing.assert_allclose(np.abs(steps_n), full, rtol=1e-6)
    np.testing.assert_allclose(mu_f, [0.703, 1.203], atol=0.02)
    np.testing.assert_allclose(mu_n, [0.703, -0.703], atol=0.02)
    j0 = MU0[0] * MU0[1]
    assert mu_f.prod() == pytest.approx(0.85, abs=0.03) and mu_f.prod() > j0  # J rises with the factor
    assert mu_n.prod() == pytest.approx(-0.49, abs=0.03) and mu_n.prod() < j0  # and falls without it
