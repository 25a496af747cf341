"""TRD-Net (``trustmarl.trust.radii.TRDNet``) against a NumPy forward pass written from its parameters,
on a heterogeneous team, and the other radii helpers under jit/vmap. The paper's claims about the
coefficients, the graph, the GCN layer, D_ns and the clamp are in ``tests/theory/test_mamt_claims.py``."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trustmarl.trust.radii import (
    AgentDense, TRDNet, coordination_coefficients, coordination_graph, gcn_aggregate, nonstationarity, pad_log_probs,
    tightest_teammate,
)

GROUPS = (2, 3)  # e.g. 2 "rovers" and 3 "towers"
OBS = (5, 4)
ACTS = (3, 5)
B, H = 6, 8


def leaky_np(x):
    return np.where(x >= 0, x, 0.01 * x)


def layer_np(p, x, sign):
    """One per-agent layer: x [B, n, d] with params stacked on the agent axis."""
    w = sign * np.exp(p["log_kernel"]) if "log_kernel" in p else p["kernel"]
    y = np.einsum("bnd,ndh->bnh", x, w)
    return y + p["bias"][None] if "bias" in p else y


def trdnet_np(params, obs, act, delta, coef, thr, loop):
    """The forward pass of Li et al. 2022's TRD-Net, written out: per-agent encoders, explicit messages."""
    p = {k: jax.tree.map(np.asarray, v) for k, v in params["params"].items()}
    n_all = sum(GROUPS)
    z, lam, start = [], [], 0
    for g, n in enumerate(GROUPS):
        sa = np.concatenate([obs[g], act[g]], axis=-1)
        d = np.broadcast_to(delta[start:start + n], (B, n))[..., None]

        def branch(prefix, sign):
            u = leaky_np(layer_np(p[f"{prefix}_sa_{g}"], sa, 1.0))
            t = leaky_np(layer_np(p[f"{prefix}_tr1_{g}"], d, sign))
            t = leaky_np(layer_np(p[f"{prefix}_tr2_{g}"], t, sign))
            return np.concatenate([u, t], axis=-1)

        z.append(leaky_np(layer_np(p[f"k_merge_{g}"], branch("k", -1.0), -1.0)))
        hid = leaky_np(layer_np(p[f"lambda_out1_{g}"], branch("lambda", 1.0), 1.0))
        lam.append(leaky_np(layer_np(p[f"lambda_out2_{g}"], hid, 1.0))[..., 0])
        start += n
    z = np.concatenate(z, axis=1)
    msg = z @ p["gcn"]["kernel"] + p["gcn"]["bias"]
    z_new = np.zeros_like(msg)
    for b in range(B):
        edges = [(i, j, coef[b, i, j]) for i in range(n_all) for j in range(n_all) if i != j and coef[b, i, j] >= thr]
        edges += [(j, j, loop) for j in range(n_all)]
        deg = np.bincount([j for _, j, _ in edges], minlength=n_all)
        for i, j, w in edges:
            z_new[b, j] += w / math.sqrt(deg[i] * deg[j]) * msg[b, i]
    k, start = [], 0
    for g, n in enumerate(GROUPS):
        hid = leaky_np(layer_np(p[f"k_dec1_{g}"], z_new[:, start:start + n], -1.0))
        k.append(leaky_np(layer_np(p[f"k_dec2_{g}"], hid, -1.0))[..., 0])
        start += n
    return np.concatenate(lam, axis=1) * np.concatenate(k, axis=1)


def inputs(seed=0):
    rng = np.random.default_rng(seed)
    obs = tuple(rng.normal(size=(B, n, d)) for n, d in zip(GROUPS, OBS))
    act = tuple(np.eye(a)[rng.integers(0, a, size=(B, n))] for n, a in zip(GROUPS, ACTS))
    delta = rng.uniform(0.01, 2.0, size=sum(GROUPS))
    coef = np.asarray(coordination_coefficients(jnp.asarray(rng.normal(size=(B, 5)) * 2),
                                                jnp.asarray(rng.normal(size=(B, 5)) * 2)), np.float64)
    return obs, act, delta, coef


@functools.lru_cache(maxsize=None)
def init_params(monotone: bool):
    """Random parameters of the right structure (from ``eval_shape``, nothing compiled), with nonzero
    biases so that a dropped bias shows; kernels ~ N(0, 0.5^2), log-kernels ~ N(-1.5, 0.3^2)."""
    obs, act, delta, coef = inputs()
    shapes = jax.eval_shape(TRDNet(GROUPS, hidden=H, monotone=monotone).init, jax.random.PRNGKey(0),
                            obs, act, delta, coef)
    rng = np.random.default_rng(7)
    leaves, tree = jax.tree_util.tree_flatten_with_path(shapes)
    values = []
    for path, leaf in leaves:
        name = path[-1].key
        loc, scale = {"kernel": (0.0, 0.5), "log_kernel": (-1.5, 0.3), "bias": (0.0, 0.1)}[name]
        values.append(jnp.asarray(rng.normal(loc, scale, size=leaf.shape), jnp.float32))
    return jax.tree_util.tree_unflatten(tree, values)


@pytest.mark.parametrize("monotone, loop, thr", [(False, 0.0, 0.2), (True, 0.0, 0.2), (False, 1.0, 0.3)])
def test_trdnet_matches_numpy_forward_pass(monotone, loop, thr):
    obs, act, delta, coef = inputs()
    net = TRDNet(GROUPS, hidden=H, cc_threshold=thr, self_loop_weight=loop, monotone=monotone)
    params = init_params(monotone)
    with jax.enable_x64(True):
        out = np.asarray(jax.jit(net.apply)(params, obs, act, delta, coef))
        expected = trdnet_np(params, obs, act, delta, coef, thr, loop)
    assert out.shape == (B, 5)
    # float64 throughout, except exp(log_kernel), which the module takes of its float32 parameters
    np.testing.assert_allclose(out, expected, rtol=1e-6 if monotone else 1e-10, atol=1e-12)
    assert np.abs(expected).max() > 0  # not trivially zero
    # per-agent encoders are unshared: the agents of a group have their own weights
    assert params["params"]["k_sa_1"]["kernel"].shape == (3, OBS[1] + ACTS[1], H)
    assert not np.allclose(params["params"]["k_sa_1"]["kernel"][0], params["params"]["k_sa_1"]["kernel"][1])
    kinds = {k: set(v) for k, v in params["params"].items()}
    assert ("log_kernel" in kinds["lambda_tr1_0"]) == monotone and ("log_kernel" in kinds["k_dec2_1"]) == monotone
    assert "kernel" in kinds["k_sa_0"] and "kernel" in kinds["gcn"]  # never monotone


def test_trdnet_batch_shapes_vmap_and_delta_gradient():
    obs, act, delta, coef = inputs(1)
    net = TRDNet(GROUPS, hidden=H)
    params = init_params(False)
    f = jax.jit(net.apply)
    full = f(params, obs, act, delta, coef)
    # per-sample delta [B, N] equals a broadcast [N] (up to float32 rounding: a [N] delta goes through the
    # trust-region encoders once per agent, a [B, N] one once per sample, and the merge layers add the halves)
    np.testing.assert_allclose(f(params, obs, act, np.broadcast_to(delta, (B, 5)), coef), full, rtol=1e-5, atol=1e-10)
    # vmap over samples equals the batched call
    per = jax.vmap(lambda o0, o1, a0, a1, c: net.apply(params, (o0, o1), (a0, a1), delta, c))(
        obs[0], obs[1], act[0], act[1], coef)
    np.testing.assert_allclose(per, full, rtol=1e-5, atol=1e-7)
    # the slow update needs d KL^ / d delta: finite, and nonzero for some agent
    g = jax.grad(lambda d: f(params, obs, act, d, coef).mean())(jnp.asarray(delta, jnp.float32))
    assert g.shape == (5,) and np.all(np.isfinite(np.asarray(g))) and np.abs(np.asarray(g)).max() > 0


def test_agent_dense_per_agent_weights_and_monotone_signs():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(7, 3, 4)))  # [batch, agents, features]
    for sign in (None, 1.0, -1.0):
        layer = AgentDense(5, sign=sign)
        p = jax.jit(layer.init)(jax.random.PRNGKey(0), x)["params"]
        w = np.asarray(p["kernel"]) if sign is None else sign * np.exp(np.asarray(p["log_kernel"]))
        assert w.shape == (3, 4, 5) and p["bias"].shape == (3, 5)
        expected = np.stack([np.asarray(x)[:, i] @ w[i] for i in range(3)], axis=1) + np.asarray(p["bias"])
        np.testing.assert_allclose(np.asarray(layer.apply({"params": p}, x)), expected, rtol=1e-5, atol=1e-6)
        assert not np.allclose(w[0], w[1])  # unshared
        if sign is not None:  # monotone in every input
            assert np.all(sign * w > 0)
            y = np.asarray(layer.apply({"params": p}, jnp.linspace(-2, 2, 41)[:, None, None] * jnp.ones((1, 3, 4))))
            assert np.all(sign * np.diff(y, axis=0) > 0)


def test_agent_dense_parts_and_agent_major_layout_equal_the_plain_layer():
    """TRD-Net's speed-ups keep the layer: inputs given in parts (one without the batch axis, computed once per
    agent) equal their concatenation, and the agent-major layout ``[n, batch, d]`` equals ``[batch, n, d]``."""
    rng = np.random.default_rng(1)
    u = jnp.asarray(rng.normal(size=(7, 3, 4)), jnp.float32)  # [batch, agents, features]
    t = jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)  # one encoding per agent
    layer = AgentDense(5)
    p = jax.jit(layer.init)(jax.random.PRNGKey(0), jnp.concatenate([u, jnp.broadcast_to(t, (7, 3, 2))], -1))
    full = layer.apply(p, jnp.concatenate([u, jnp.broadcast_to(t, (7, 3, 2))], -1))
    np.testing.assert_allclose(layer.apply(p, u, t), full, rtol=1e-6, atol=1e-6)
    major = AgentDense(5, agent_major=True).apply(p, jnp.swapaxes(u, 0, 1), t)
    np.testing.assert_allclose(jnp.swapaxes(major, 0, 1), full, rtol=1e-6, atol=1e-6)
    # the dense GCN aggregation likewise
    x = jnp.asarray(rng.normal(size=(7, 3, 4)), jnp.float32)
    w, e = coordination_graph(coordination_coefficients(jnp.asarray(rng.normal(size=(7, 3))), jnp.asarray(rng.normal(size=(7, 3)))), 0.2)
    np.testing.assert_allclose(jnp.swapaxes(gcn_aggregate(jnp.swapaxes(x, 0, 1), w, e, agent_major=True), 0, 1),
                               gcn_aggregate(x, w, e), rtol=1e-6, atol=1e-6)


def test_monotone_lambda_increases_with_delta():
    """With monotone layers lambda (the branch without message passing) never decreases as delta grows."""
    obs, act, _, coef = inputs(2)
    net = TRDNet(GROUPS, hidden=H, monotone=True)
    params = init_params(True)

    @jax.jit
    def parts(d):
        out, inter = net.apply(params, obs, act, d, coef, mutable=["intermediates"])
        lam, k = inter["intermediates"]["lambda"][0], inter["intermediates"]["k"][0]
        return out, lam, k

    grid = [parts(np.full(5, d)) for d in np.linspace(0.01, 5.0, 12)]
    for out, lam, k in grid:
        np.testing.assert_allclose(out, lam * k, rtol=1e-6)
    lams = np.stack([np.asarray(lam) for _, lam, _ in grid])
    assert np.all(np.diff(lams, axis=0) >= -1e-6) and np.any(np.diff(lams, axis=0) > 0)


def test_radii_helpers_under_jit_and_vmap():
    rng = np.random.default_rng(0)
    q, b = jnp.asarray(rng.normal(size=(3, 16, 4))), jnp.asarray(rng.normal(size=(3, 16, 4)))
    c = jax.jit(jax.vmap(coordination_coefficients))(q, b)
    np.testing.assert_allclose(c, coordination_coefficients(q, b), rtol=1e-6)
    js = jax.jit(jax.vmap(tightest_teammate))(c)
    assert js.shape == (3, 4) and js.dtype == jnp.int32
    lp, valid = pad_log_probs([jnp.log(jnp.full((16, 2, 3), 1 / 3)), jnp.log(jnp.full((16, 2, 2), 0.5))])
    assert np.isneginf(np.asarray(lp)[:, 2:, 2]).all() and not np.asarray(valid)[2:, 2].any()
    d = jax.jit(nonstationarity)(lp[:, js[0]], lp[:, js[0]], valid[js[0]])
    assert d.shape == (16, 4) and np.all(np.asarray(d) == 0.0)
