"""Orthogonal weight initialisation without LAPACK.

``flax.linen.initializers.orthogonal`` takes the Q factor of a QR decomposition, a LAPACK custom
call on CPU. Under ``jit(vmap(...))`` over seeds, two such calls scheduled concurrently can
deadlock XLA:CPU's thread pool on a 2-core machine (seen with jax 0.10.2), hanging a run forever.
This initializer computes the same matrix (Q with the signs that make diag(R) positive, which is
exactly what Gram-Schmidt produces) with re-orthogonalised modified Gram-Schmidt in plain
``jax.numpy``, so it compiles to ordinary fused loops.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def gram_schmidt_q(a: jax.Array) -> jax.Array:
    """Orthonormal columns spanning ``a`` [m, n] (m >= n), in order; equals QR's Q with diag(R) > 0."""
    m, n = a.shape

    def column(j, q):
        v = a[:, j]
        for _ in range(2):  # "twice is enough": re-orthogonalise against the columns so far
            v = v - q @ (q.T @ v)  # columns >= j of q are still zero
        return q.at[:, j].set(v / jnp.linalg.norm(v))

    return jax.lax.fori_loop(0, n, column, jnp.zeros((m, n), a.dtype))


def orthogonal(scale: float = 1.0, column_axis: int = -1):
    """Drop-in for ``flax.linen.initializers.orthogonal`` (same distribution and shape conventions)."""

    def init(key, shape, dtype=jnp.float32):
        n_cols = shape[column_axis]
        n_rows = math.prod(shape) // n_cols
        transpose = n_rows < n_cols
        a = jax.random.normal(key, (n_cols, n_rows) if transpose else (n_rows, n_cols), jnp.float32)
        q = gram_schmidt_q(a)
        if transpose:
            q = q.T
        q = jnp.moveaxis(q.reshape(tuple(s for i, s in enumerate(shape) if i != column_axis % len(shape)) + (n_cols,)), -1, column_axis)
        return (scale * q).astype(dtype)

    return init
