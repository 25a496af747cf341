"""Tests of the natural-gradient trust-region pieces (seed 001 eq. 8, App. D; spec §6.8 a-d)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trustmarl.trust.natural import (
    backtracking_line_search,
    conjugate_gradient,
    fisher_vector_product,
    flatten,
    make_fvp,
    trpo_step,
)


# --------------------------------------------------------------------------------------------
# small policies
# --------------------------------------------------------------------------------------------
def _categorical_kl_fn(params_old, obs):
    """Mean KL(pi_old || pi_params) of a linear-softmax policy, old distribution held fixed."""
    old_logp = jax.lax.stop_gradient(jax.nn.log_softmax(obs @ params_old["w"] + params_old["b"]))

    def kl_fn(params):
        logp = jax.nn.log_softmax(obs @ params["w"] + params["b"])
        return jnp.mean(jnp.sum(jnp.exp(old_logp) * (old_logp - logp), axis=-1))

    return kl_fn


def _gaussian_kl(mu_old, log_std_old, mu, log_std):
    """KL(N(mu_old, s_old) || N(mu, s)) summed over action dims (diagonal Gaussian)."""
    var_old, var = jnp.exp(2 * log_std_old), jnp.exp(2 * log_std)
    return jnp.sum(log_std - log_std_old + (var_old + (mu_old - mu) ** 2) / (2 * var) - 0.5, axis=-1)


def _gaussian_mlp_kl_fn(params_old, obs):
    """Mean KL of a tanh-MLP Gaussian policy with state-independent log-std."""

    def mean(p):
        return jnp.tanh(obs @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

    mu_old = jax.lax.stop_gradient(mean(params_old))
    ls_old = jax.lax.stop_gradient(params_old["log_std"])

    def kl_fn(params):
        return jnp.mean(_gaussian_kl(mu_old, ls_old, mean(params), params["log_std"]))

    return kl_fn


def _perturb(params, key, scale):
    flat, unravel = flatten(params)
    return unravel(flat + scale * jax.random.normal(key, flat.shape, flat.dtype))


def _random_spd(rng, dim, lo=0.1, hi=10.0):
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    return (q * rng.uniform(lo, hi, size=dim)) @ q.T


# --------------------------------------------------------------------------------------------
# Fisher-vector product
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["categorical", "gaussian_mlp"])
def test_fvp_matches_explicit_kl_hessian(policy):
    """FVP == jax.hessian(KL) v + damping v, at params = old (Fisher) and at perturbed params."""
    with jax.enable_x64(True):
        k = jax.random.split(jax.random.PRNGKey(0), 6)
        obs = jax.random.normal(k[0], (16, 3), jnp.float64)
        if policy == "categorical":
            params_old = {"w": jax.random.normal(k[1], (3, 4), jnp.float64), "b": jnp.zeros(4)}
            kl_fn = _categorical_kl_fn(params_old, obs)
        else:
            params_old = {
                "w1": jax.random.normal(k[1], (3, 5), jnp.float64),
                "b1": jnp.zeros(5),
                "w2": jax.random.normal(k[2], (5, 2), jnp.float64),
                "b2": jnp.zeros(2),
                "log_std": jnp.array([-0.3, 0.2]),
            }
            kl_fn = _gaussian_mlp_kl_fn(params_old, obs)
        _, unravel = flatten(params_old)
        hess_fn = jax.jit(jax.hessian(lambda x: kl_fn(unravel(x))))
        fvp_fn = jax.jit(jax.vmap(lambda p, v, d: fisher_vector_product(kl_fn, p, v, d), (None, 0, None)))
        for at_old in (True, False):
            params = params_old if at_old else _perturb(params_old, k[3], 0.3)
            flat, _ = flatten(params)
            hessian = np.asarray(hess_fn(flat))
            v = jax.random.normal(k[4], (3,) + flat.shape, jnp.float64)
            for damping in (0.0, 0.1):
                fvp = np.asarray(fvp_fn(params, v, damping))
                expected = np.asarray(v) @ hessian.T + damping * np.asarray(v)
                np.testing.assert_allclose(fvp, expected, rtol=1e-9, atol=1e-11)
            if at_old:  # the Hessian of the KL at params = old is the (PSD) Fisher information
                assert np.linalg.eigvalsh(hessian).min() > -1e-10
            else:  # away from old it is a different matrix: the test would notice a wrong linearisation point
                assert not np.allclose(hessian, np.asarray(hess_fn(flatten(params_old)[0])), atol=1e-3)


@pytest.mark.parametrize("policy", ["masked_categorical", "gaussian_mlp"])
def test_fisher_outer_product_equals_kl_hessian_at_old(policy):
    """HATRPO's J^T F J product (HATRPO.fisher in the space of the distribution parameters) equals the
    explicit Hessian of the masked mean KL at the behaviour parameters, for masked log-softmax and
    (mean, log-std) Gaussian policies with inactive samples left out of the mean."""
    from types import SimpleNamespace

    from trustmarl.algos.on_policy.hatrpo import HATRPO
    from trustmarl.trust.divergence import categorical_kl, gaussian_kl
    from trustmarl.trust.natural import fisher_outer_product

    with jax.enable_x64(True):
        k = jax.random.split(jax.random.PRNGKey(1), 6)
        obs = jax.random.normal(k[0], (16, 3), jnp.float64)
        active = (jnp.arange(16) % 5 != 0).astype(jnp.float64)  # some samples are masked out
        w = active / active.sum()
        if policy == "masked_categorical":
            avail = jax.random.uniform(k[2], (16, 4)) > 0.3
            avail = avail.at[:, 0].set(True)
            params_old = {"w": jax.random.normal(k[1], (3, 4), jnp.float64), "b": jnp.zeros(4)}

            def dist_fn(p):
                logits = jnp.where(avail, obs @ p["w"] + p["b"], -1e9)
                return (jax.nn.log_softmax(logits),)

            kl = lambda old, new: categorical_kl(old[0], new[0], avail)  # noqa: E731
            kind = "discrete"
        else:
            params_old = {"w1": jax.random.normal(k[1], (3, 5), jnp.float64), "b1": jnp.zeros(5),
                          "w2": jax.random.normal(k[2], (5, 2), jnp.float64), "b2": jnp.zeros(2),
                          "log_std": jnp.array([-0.3, 0.2])}

            def dist_fn(p):
                mean = jnp.tanh(obs @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
                return mean, jnp.broadcast_to(p["log_std"], mean.shape)

            kl = lambda old, new: gaussian_kl(old[0], old[1], new[0], new[1])  # noqa: E731
            kind = "continuous"
        flat, unravel = flatten(params_old)
        old = dist_fn(params_old)
        hessian = np.asarray(jax.hessian(lambda x: jnp.sum(kl(old, dist_fn(unravel(x))) * w))(flat))
        from trustmarl.distributions import Categorical, DiagGaussian

        algo = SimpleNamespace(dists=(Categorical(4) if kind == "discrete" else DiagGaussian(2),))
        fvp = fisher_outer_product(lambda x: dist_fn(unravel(x)), flat, lambda d: HATRPO.fisher(algo, 0, old, d, w), 0.1)
        v = np.asarray(jax.random.normal(k[3], (3,) + flat.shape, jnp.float64))
        got = np.stack([np.asarray(fvp(jnp.asarray(x))) for x in v])
        np.testing.assert_allclose(got, v @ hessian.T + 0.1 * v, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("damping", [0.0, 0.1])
def test_gaussian_fvp_equals_analytic_fisher(damping):
    """spec §6.8a: state-independent diagonal Gaussian, Fisher = diag(1/sigma^2 for means, 2 for log-std)."""
    with jax.enable_x64(True):
        mu_old = jnp.array([0.3, -1.0, 2.0])
        log_std_old = jnp.array([-0.5, 0.0, 0.7])
        params_old = {"mu": mu_old, "log_std": log_std_old}

        def kl_fn(p):
            return _gaussian_kl(jax.lax.stop_gradient(mu_old), jax.lax.stop_gradient(log_std_old),
                                p["mu"], p["log_std"])

        flat, _ = flatten(params_old)  # layout: log_std, mu (ravel_pytree sorts dict keys)
        fisher = jnp.concatenate([jnp.full(3, 2.0), jnp.exp(-2 * log_std_old)])
        v = jnp.asarray(np.random.default_rng(1).normal(size=(5,) + flat.shape))
        fvp = jax.vmap(lambda v: fisher_vector_product(kl_fn, params_old, v, damping))(v)
        np.testing.assert_allclose(np.asarray(fvp), np.asarray(fisher * v + damping * v), rtol=1e-12)


def test_gaussian_linear_policy_fvp_analytic():
    """Mean = obs @ W: Fisher block of W is E[x x^T] / sigma_j^2 per action dim; log-std block 2 I."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(2)
        obs = jnp.asarray(rng.normal(size=(32, 3)))
        log_std = jnp.array([-0.2, 0.4])
        params_old = {"log_std": log_std, "w": jnp.asarray(rng.normal(size=(3, 2)))}

        def kl_fn(p):
            mu_old = jax.lax.stop_gradient(obs @ params_old["w"])
            return jnp.mean(_gaussian_kl(mu_old, jax.lax.stop_gradient(log_std), obs @ p["w"], p["log_std"]))

        v_ls = jnp.asarray(rng.normal(size=2))
        v_w = jnp.asarray(rng.normal(size=(3, 2)))
        v, _ = flatten({"log_std": v_ls, "w": v_w})
        fvp = fisher_vector_product(kl_fn, params_old, v, 0.0)
        xx = obs.T @ obs / obs.shape[0]
        expected = jnp.concatenate([2.0 * v_ls, ((xx @ v_w) / jnp.exp(2 * log_std)).ravel()])
        np.testing.assert_allclose(np.asarray(fvp), np.asarray(expected), rtol=1e-10)


# --------------------------------------------------------------------------------------------
# conjugate gradient
# --------------------------------------------------------------------------------------------
def test_cg_matches_linear_solve_on_random_spd():
    """spec §6.8b: CG solves A x = b to 1e-6 within dim iterations for random SPD A, dim 5..30.

    Each system is zero-padded to 30 (block-diagonal with I, b = 0 there: the padded block never enters
    the Krylov space), and the iteration budget is exactly ``dim``; all are solved in one vmapped call."""
    rng = np.random.default_rng(3)
    dims = np.arange(5, 31)
    a_pad = np.stack([np.eye(30) for _ in dims])
    b_pad = np.zeros((len(dims), 30))
    for k, dim in enumerate(dims):
        a_pad[k, :dim, :dim] = _random_spd(rng, dim)
        b_pad[k, :dim] = rng.normal(size=dim)
    with jax.enable_x64(True):
        solve = jax.jit(jax.vmap(lambda a, b, it: conjugate_gradient(lambda v: a @ v, b, iters=it, tol=1e-24)))
        x = np.asarray(solve(jnp.asarray(a_pad), jnp.asarray(b_pad), jnp.asarray(dims)))
    for k, dim in enumerate(dims):
        np.testing.assert_allclose(x[k, :dim], np.linalg.solve(a_pad[k, :dim, :dim], b_pad[k, :dim]), atol=1e-6)
        assert np.all(x[k, dim:] == 0)


def test_cg_jit_float32_and_early_stop():
    a = jnp.diag(jnp.array([1.0, 2.0, 4.0, 8.0]))
    b = jnp.array([1.0, -1.0, 2.0, 0.5])
    x = jax.jit(lambda b: conjugate_gradient(lambda v: a @ v, b, iters=10))(b)
    np.testing.assert_allclose(np.asarray(x), np.asarray(b / jnp.diag(a)), rtol=1e-5)
    # identity: exact after one iteration; the frozen iterate stays finite for all later iterations
    x = conjugate_gradient(lambda v: v, b, iters=25, tol=1e-10)
    np.testing.assert_allclose(np.asarray(x), np.asarray(b), rtol=1e-6)
    # b = 0: no update at all, no NaN
    x = conjugate_gradient(lambda v: a @ v, jnp.zeros(4), iters=10)
    assert np.all(np.asarray(x) == 0.0)
    # a fixed budget smaller than needed gives a partial (different) solution: iteration count matters
    x1 = conjugate_gradient(lambda v: a @ v, b, iters=1, tol=0.0)
    alpha = (b @ b) / (b @ (a @ b))
    np.testing.assert_allclose(np.asarray(x1), np.asarray(alpha * b), rtol=1e-6)


def test_cg_tolerance_freezes_iterate():
    """Once r.r < tol the iterate does not move: a huge tol gives x = 0 (r0.r0 < tol)."""
    a = jnp.diag(jnp.array([1.0, 3.0]))
    b = jnp.array([1e-3, 1e-3])
    x = conjugate_gradient(lambda v: a @ v, b, iters=10, tol=1e-5)  # |b|^2 = 2e-6 < tol
    assert np.all(np.asarray(x) == 0.0)


# --------------------------------------------------------------------------------------------
# TRPO step
# --------------------------------------------------------------------------------------------
def test_trpo_step_hits_kl_boundary():
    """spec §6.8c: 0.5 s^T H s = max_kl for the full step s; eq. 8 direction = H^{-1} g."""
    rng = np.random.default_rng(4)
    n, dim = 20, 8
    h = np.stack([_random_spd(rng, dim) for _ in range(n)])
    g = rng.normal(size=(n, dim))
    max_kl = rng.uniform(1e-4, 0.5, size=n)
    with jax.enable_x64(True):
        step_fn = jax.jit(jax.vmap(lambda h, g, m: trpo_step(g, lambda v: h @ v, m, cg_iters=dim + 2, cg_tol=1e-24)))
        step, expected_improve, step_size = map(np.asarray, step_fn(jnp.asarray(h), jnp.asarray(g), jnp.asarray(max_kl)))
    for i in range(n):
        assert 0.5 * step[i] @ h[i] @ step[i] == pytest.approx(max_kl[i], rel=1e-8)
        nat = np.linalg.solve(h[i], g[i])
        np.testing.assert_allclose(step[i], np.sqrt(2 * max_kl[i] / (g[i] @ nat)) * nat, rtol=1e-7)
        assert expected_improve[i] == pytest.approx(g[i] @ step[i], rel=1e-10)
        assert expected_improve[i] > 0
        assert step_size[i] == pytest.approx(np.sqrt(2 * max_kl[i] / (nat @ h[i] @ nat)), rel=1e-8)


def test_trpo_step_guards():
    h = jnp.eye(3)
    # zero gradient -> zero step (no NaN)
    step, imp, size = trpo_step(jnp.zeros(3), lambda v: h @ v, 0.01)
    assert np.all(np.asarray(step) == 0) and float(imp) == 0 and float(size) == 0
    # negative curvature -> no step
    step, imp, size = trpo_step(jnp.ones(3), lambda v: -(h @ v), 0.01)
    assert np.all(np.asarray(step) == 0) and float(imp) == 0
    # non-finite gradient -> no step
    step, imp, size = trpo_step(jnp.array([jnp.nan, 1.0, 0.0]), lambda v: h @ v, 0.01)
    assert np.all(np.asarray(step) == 0) and float(imp) == 0
    # jit-compatible
    out = jax.jit(lambda g: trpo_step(g, lambda v: 2.0 * v, 0.02))(jnp.ones(3))
    np.testing.assert_allclose(0.5 * np.asarray(out[0]) @ (2 * np.asarray(out[0])), 0.02, rtol=1e-5)


# --------------------------------------------------------------------------------------------
# line search
# --------------------------------------------------------------------------------------------
def _reference_line_search(surr, kl, x0, full_step, expected, surr_old, max_kl, accept_ratio, backtrack, n):
    """Plain-Python reference of the code's acceptance rule (spec §3.5)."""
    for j in range(n):
        frac = backtrack**j
        cand = x0 + frac * full_step
        imp = surr(cand) - surr_old
        k = kl(cand)
        if k < max_kl and imp > 0 and imp / (expected * frac) > accept_ratio:
            return cand, True, j + 1
    return x0, False, n


def _ls_problem_fns(h, c3, g, curv, x0):
    """A random non-quadratic trust-region problem (works for jnp and np inputs)."""
    xp = jnp if isinstance(h, jax.Array) else np

    def kl_fn(x):
        d = x - x0
        return 0.5 * d @ h @ d + 0.3 * xp.abs(c3 @ d) ** 3

    def surr_fn(x):
        d = x - x0
        return g @ d - curv * (d @ d) + 0.2 * xp.sin(3 * d).sum()

    return surr_fn, kl_fn


def test_line_search_property_random_problems():
    """Over many random non-quadratic problems (vmapped): never accepts KL >= max_kl and agrees
    exactly with a plain-Python reference of the acceptance rule (first acceptable fraction)."""
    rng = np.random.default_rng(5)
    n, dim = 80, 4
    h = np.stack([_random_spd(rng, dim, 0.5, 3.0) for _ in range(n)])
    c3, g, x0 = rng.normal(size=(3, n, dim))
    curv = rng.uniform(0.0, 4.0, size=n)
    max_kl = rng.uniform(0.005, 0.2, size=n)
    backtrack = rng.choice([0.5, 0.8], size=n)
    flip = np.where(rng.uniform(size=n) < 0.3, -1.0, 1.0)  # a wrong-sign gradient must be rejected

    def solve(h, c3, g, curv, x0, max_kl, backtrack, flip):
        surr_fn, kl_fn = _ls_problem_fns(h, c3, g, curv, x0)
        grad = flip * jax.grad(surr_fn)(x0)
        step, expected, _ = trpo_step(grad, lambda v: h @ v, max_kl, cg_iters=dim, cg_tol=1e-24)
        out = backtracking_line_search(surr_fn, kl_fn, x0, step, expected, surr_fn(x0), max_kl, 0.5, backtrack, 10)
        return (step, expected) + out

    with jax.enable_x64(True):
        args = [jnp.asarray(a) for a in (h, c3, g, curv, x0, max_kl, backtrack, flip)]
        res = [np.asarray(r) for r in jax.jit(jax.vmap(solve))(*args)]
    step, expected, new, accepted, steps, kl_reached, imp = res
    for i in range(n):
        surr_np, kl_np = _ls_problem_fns(h[i], c3[i], g[i], curv[i], x0[i])
        ref_new, ref_acc, ref_steps = _reference_line_search(
            surr_np, kl_np, x0[i], step[i], expected[i], surr_np(x0[i]), max_kl[i], 0.5, backtrack[i], 10
        )
        assert bool(accepted[i]) == ref_acc and int(steps[i]) == ref_steps, i
        np.testing.assert_allclose(new[i], ref_new, rtol=1e-12)
        if accepted[i]:
            assert kl_np(new[i]) < max_kl[i]
            assert kl_reached[i] == pytest.approx(kl_np(new[i]), rel=1e-10)
            assert imp[i] == pytest.approx(surr_np(new[i]) - surr_np(x0[i]), rel=1e-8)
            assert imp[i] > 0
        else:
            np.testing.assert_array_equal(new[i], x0[i])
            assert kl_reached[i] == 0 and imp[i] == 0
    # the random family exercises acceptance at several step counts and rejection
    assert accepted.sum() >= 30 and (~accepted).sum() >= 10, accepted.sum()
    assert len(set(steps[accepted].tolist())) >= 3
    assert not np.any(accepted & (flip < 0))


def test_line_search_step_count_semantics():
    """KL = |d|^2/2 with |full step|^2/2 = 5 max_kl: j = 0 gives 5 max_kl, j = 1 gives 1.25 max_kl
    (both rejected), j = 2 gives 0.3125 max_kl: accepted after 3 evaluated candidates (fraction 0.25)."""
    max_kl = 0.02
    full = jnp.array([np.sqrt(10 * max_kl), 0.0])  # 0.5 |full|^2 = 5 max_kl
    x0 = jnp.array([1.0, -1.0])
    g = jnp.array([1.0, 0.5])
    kl_fn = lambda x: 0.5 * jnp.sum((x - x0) ** 2)
    surr_fn = lambda x: g @ (x - x0)
    new, acc, steps, kl, imp = backtracking_line_search(
        surr_fn, kl_fn, x0, full, g @ full, surr_fn(x0), max_kl
    )
    assert bool(acc) and int(steps) == 3
    np.testing.assert_allclose(np.asarray(new), np.asarray(x0 + 0.25 * full), rtol=1e-6)
    assert float(kl) == pytest.approx(5 * max_kl / 16, rel=1e-5)
    # full step already inside the ball: accepted at the first candidate
    new, acc, steps, _, _ = backtracking_line_search(
        surr_fn, kl_fn, x0, 0.1 * full, g @ (0.1 * full), surr_fn(x0), max_kl
    )
    assert bool(acc) and int(steps) == 1
    # max_steps too small to reach the ball: rejected, old params, steps = max_steps
    new, acc, steps, kl, imp = backtracking_line_search(
        surr_fn, kl_fn, x0, full, g @ full, surr_fn(x0), max_kl, max_steps=2
    )
    assert not bool(acc) and int(steps) == 2
    np.testing.assert_array_equal(np.asarray(new), np.asarray(x0))
    # a surrogate that improves much less than predicted (ratio <= accept_ratio) is rejected
    new, acc, steps, _, _ = backtracking_line_search(
        surr_fn, kl_fn, x0, 0.1 * full, 10.0 * (g @ (0.1 * full)), surr_fn(x0), max_kl, max_steps=4
    )
    assert not bool(acc) and int(steps) == 4


def test_line_search_returns_old_params_when_no_improvement():
    """spec §6.8d: with zero advantage (M = 0) the surrogate cannot improve: no update."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(6)
        obs = jnp.asarray(rng.normal(size=(64, 3)))
        actions = jnp.asarray(rng.integers(0, 4, size=64))
        params_old = {"w": jnp.asarray(rng.normal(size=(3, 4))), "b": jnp.zeros(4)}
        flat_old, unravel = flatten(params_old)
        logp_old = jax.nn.log_softmax(obs @ params_old["w"] + params_old["b"])
        logp_a_old = jnp.take_along_axis(logp_old, actions[:, None], 1)[:, 0]
        kl_tree = _categorical_kl_fn(params_old, obs)

        def surrogate(flat, factor_adv):
            p = unravel(flat)
            logp = jax.nn.log_softmax(obs @ p["w"] + p["b"])
            ratio = jnp.exp(jnp.take_along_axis(logp, actions[:, None], 1)[:, 0] - logp_a_old)
            return jnp.mean(ratio * factor_adv)  # seed 001 eq. 10: ratio * M

        kl_flat = lambda f: kl_tree(unravel(f))

        @jax.jit
        def hatrpo_update(factor_adv):
            surr = lambda f: surrogate(f, factor_adv)
            grad = jax.grad(surr)(flat_old)
            step, expected, _ = trpo_step(grad, make_fvp(kl_tree, params_old, 0.1), 0.01)
            new, acc, steps, kl, imp = backtracking_line_search(
                surr, kl_flat, flat_old, step, expected, surr(flat_old), 0.01
            )
            return new, acc, steps, surr(new) - surr(flat_old), kl_flat(new)

        # M = 0: the surrogate is constant -> zero step, every candidate rejected, old params kept
        new, acc, steps, gain, kl = hatrpo_update(jnp.zeros(64))
        assert not bool(acc) and int(steps) == 10
        np.testing.assert_array_equal(np.asarray(new), np.asarray(flat_old))
        # a real advantage: the natural step is accepted, improves, and stays in the KL ball
        new, acc, steps, gain, kl = hatrpo_update(jnp.asarray(rng.normal(size=64)))
        assert bool(acc) and float(gain) > 0 and float(kl) < 0.01

        # a surrogate that decreases along the step is never accepted
        surr_down = lambda f: -jnp.sum((f - flat_old) ** 2)
        step = jnp.ones_like(flat_old) * 1e-3
        new, acc, steps, _, _ = backtracking_line_search(
            surr_down, kl_flat, flat_old, step, jnp.asarray(1e-3), surr_down(flat_old), 0.01
        )
        assert not bool(acc)
        np.testing.assert_array_equal(np.asarray(new), np.asarray(flat_old))
