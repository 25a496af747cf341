"""trustmarl.networks.dense: JAX's values and derivatives, a matrix-product weight gradient under vmap."""

import jax
import jax.numpy as jnp
import numpy as np

from trustmarl.networks import dense


def _losses():
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 6, 5))
    b = jnp.linspace(-0.1, 0.1, 3)
    ours = lambda k, x=x: jnp.sum(jnp.tanh(dense(x, k, b)) ** 2)  # noqa: E731
    plain = lambda k, x=x: jnp.sum(jnp.tanh(x @ k + b) ** 2)  # noqa: E731
    return x, ours, plain


def test_dense_gradients_match_jax_unbatched_and_vmapped():
    _, ours, plain = _losses()
    k = jax.random.normal(jax.random.PRNGKey(1), (5, 3))
    ks = jnp.stack([k, 0.5 * k, -k])
    np.testing.assert_allclose(jax.grad(ours)(k), jax.grad(plain)(k), rtol=1e-5, atol=1e-6)
    for batch in (ks[:1], ks):  # a vmap of one (XLA drops it) and of three (materialised x^T)
        np.testing.assert_allclose(jax.vmap(jax.grad(ours))(batch), jax.vmap(jax.grad(plain))(batch), rtol=1e-5, atol=1e-6)
    # forward over reverse (HATRPO's Fisher-vector products) and forward mode
    hvp = lambda f: jax.jvp(jax.grad(f), (k,), (ks[1],))[1]  # noqa: E731
    np.testing.assert_allclose(hvp(ours), hvp(plain), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jax.linearize(ours, k)[1](ks[1]), jax.linearize(plain, k)[1](ks[1]), rtol=1e-5)
    x = jax.random.normal(jax.random.PRNGKey(2), (7, 5))  # all three arguments
    g_ours = jax.grad(lambda x, k, b: jnp.sum(jnp.sin(dense(x, k, b))), argnums=(0, 1, 2))(x, k, ks[1, 0])
    g_plain = jax.grad(lambda x, k, b: jnp.sum(jnp.sin(x @ k + b)), argnums=(0, 1, 2))(x, k, ks[1, 0])
    for a, b_ in zip(g_ours, g_plain):
        np.testing.assert_allclose(a, b_, rtol=1e-5, atol=1e-6)


def test_dense_materialises_x_transpose_only_under_a_vmap_of_several():
    x, _, _ = _losses()
    k = jnp.ones((5, 3))
    grad_k = lambda xx: jax.grad(lambda kk: jnp.sum(dense(xx, kk, jnp.zeros(3))))(k)  # noqa: E731
    hlo = lambda f, a: jax.jit(f).lower(a).as_text()  # noqa: E731
    assert "optimization_barrier" not in hlo(grad_k, x)
    assert "optimization_barrier" not in hlo(jax.vmap(grad_k), x[None])
    assert "optimization_barrier" in hlo(jax.vmap(grad_k), jnp.stack([x, x]))


def test_dense_under_vmap_of_forward_over_reverse():
    """HATRPO's Fisher-vector products inside vmaps that map the input, the kernel, or both."""
    x = jax.random.normal(jax.random.PRNGKey(0), (6, 5))
    k, b = jnp.ones((5, 3)), jnp.zeros(3)
    ours = lambda k, x: jnp.sum(jnp.tanh(dense(x, k, b)) ** 2)  # noqa: E731
    plain = lambda k, x: jnp.sum(jnp.tanh(x @ k + b) ** 2)  # noqa: E731
    ks, xs = jnp.stack([k, 2 * k]), jnp.stack([x, 2 * x])
    cases = (
        lambda f: jax.vmap(lambda kk: jax.jvp(jax.grad(f), (kk, x), (kk, x))[1])(ks),
        lambda f: jax.vmap(lambda xx: jax.jvp(lambda kk: jax.grad(f)(kk, xx), (k,), (k,))[1])(xs),
        lambda f: jax.vmap(lambda kk, xx: jax.linearize(lambda q: jax.grad(f)(q, xx), kk)[1](kk))(ks, xs),
    )
    for case in cases:
        np.testing.assert_allclose(case(ours), case(plain), rtol=1e-5, atol=1e-6)


def test_dense_hessian():
    """jax.hessian (forward over reverse, vmapped over basis tangents) as HATRPO's tests use it."""
    x = jax.random.normal(jax.random.PRNGKey(0), (6, 5))
    k, b = jax.random.normal(jax.random.PRNGKey(1), (5, 3)), jnp.zeros(3)
    h_ours = jax.hessian(lambda k: jnp.sum(jnp.tanh(dense(x, k, b)) ** 2))(k)
    h_plain = jax.hessian(lambda k: jnp.sum(jnp.tanh(x @ k + b) ** 2))(k)
    np.testing.assert_allclose(h_ours, h_plain, rtol=1e-4, atol=1e-5)
