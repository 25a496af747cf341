"""Natural-gradient trust-region step: Fisher-vector products, conjugate gradient, TRPO step and
backtracking line search (the per-agent HATRPO update).

References: Kuba et al. 2022 (ICLR), eq. 8 and App. D Algorithm 2; the implementation details
(damping, CG tolerance, acceptance rule of the line search) follow the authors' code.

Every function is pure ``jax.numpy``/``lax`` and can be traced inside ``jax.jit``. Parameters are a
pytree of one agent's actor network; the solver works on the flat vector from :func:`flatten`.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax import lax
from jax.flatten_util import ravel_pytree

Array = jax.Array
PyTree = Any


def flatten(params: PyTree) -> tuple[Array, Callable[[Array], PyTree]]:
    """Flatten a parameter pytree into one vector; returns ``(flat, unravel)``."""
    return ravel_pytree(params)


def fisher_vector_product(
    kl_fn: Callable[[PyTree], Array], params: PyTree, v: Array, damping: float = 0.1
) -> Array:
    """``(H + damping * I) v`` with ``H`` the Hessian of ``kl_fn`` at ``params``.

    ``kl_fn(params)`` must return the mean ``KL(pi_old || pi_params)`` over the batch with the old
    distribution held fixed: computing the old distribution (e.g. old logits, old mean/log-std) and
    wrapping it in ``jax.lax.stop_gradient`` is the caller's job. At ``params = old`` the Hessian equals
    the average Fisher information (Kuba et al. 2022, App. D; damping as in the authors' code, default 0.1).

    ``params`` may be a pytree or already a flat vector; ``v`` is flat (same layout as :func:`flatten`).
    The product uses forward-over-reverse differentiation (``jvp`` of ``grad``), never forming ``H``.
    """
    flat, unravel = ravel_pytree(params)

    def kl_flat(x: Array) -> Array:
        return kl_fn(unravel(x))

    _, hv = jax.jvp(jax.grad(kl_flat), (flat,), (v.astype(flat.dtype),))
    return hv + damping * v


def make_fvp(
    kl_fn: Callable[[PyTree], Array], params: PyTree, damping: float = 0.1
) -> Callable[[Array], Array]:
    """Bind :func:`fisher_vector_product` to ``(kl_fn, params, damping)``: a flat ``v -> (H+dI) v``."""
    return lambda v: fisher_vector_product(kl_fn, params, v, damping)


def fisher_outer_product(
    dist_fn: Callable[[Array], PyTree], params: Array, fisher: Callable[[PyTree], PyTree], damping: float = 0.1
) -> Callable[[Array], Array]:
    """``v -> (J^T F J + d I) v`` at flat ``params``, ``J`` the Jacobian of the distribution parameters
    ``dist_fn(params)`` and ``fisher`` the (weighted) Fisher metric applied in their space.

    At the behaviour parameters this equals the Hessian of the mean KL (the Fisher identity), so it
    can replace :func:`fisher_vector_product` there: one linearisation, then a JVP and its transpose
    per product instead of a second-order derivative through the loss (TRPO, Schulman et al. 2015,
    App. C; Kuba et al. 2022, eq. 8 uses the same matrix).
    """
    _, jvp = jax.linearize(dist_fn, params)
    vjp = jax.linear_transpose(jvp, params)

    def fvp(v: Array) -> Array:
        (g,) = vjp(fisher(jvp(v)))
        return g + damping * v

    return fvp


def conjugate_gradient(
    matvec: Callable[[Array], Array], b: Array, iters: int = 10, tol: float = 1e-10
) -> Array:
    """Approximate ``A^{-1} b`` for symmetric positive-definite ``A`` given as ``matvec``.

    Standard CG from ``x0 = 0`` (the TRPO/HATRPO choice, as in the authors' code: 10 iterations,
    residual tolerance 1e-10). Runs a fixed ``iters`` loop (``lax.fori_loop``) and freezes the iterate
    once the squared residual ``r.r`` drops below ``tol`` (the equivalent of an early ``break``), so
    ``matvec`` is still evaluated ``iters`` times but the result equals the early-stopped one.
    A non-positive curvature ``p.Ap`` also freezes the iterate (no division by zero).
    """
    x0 = jnp.zeros_like(b)
    rr0 = jnp.vdot(b, b)

    def body(_: int, state: tuple[Array, Array, Array, Array]) -> tuple[Array, Array, Array, Array]:
        x, r, p, rr = state
        ap = matvec(p)
        pap = jnp.vdot(p, ap)
        active = (rr >= tol) & (pap > 0)
        alpha = jnp.where(active, rr / jnp.where(active, pap, 1.0), 0.0)
        x_new = x + alpha * p
        r_new = r - alpha * ap
        rr_new = jnp.vdot(r_new, r_new)
        beta = rr_new / jnp.where(active, rr, 1.0)
        p_new = r_new + beta * p
        return (
            jnp.where(active, x_new, x),
            jnp.where(active, r_new, r),
            jnp.where(active, p_new, p),
            jnp.where(active, rr_new, rr),
        )

    x, _, _, _ = lax.fori_loop(0, iters, body, (x0, b, b, rr0))
    return x


def trpo_step(
    grad: Array,
    fvp: Callable[[Array], Array],
    max_kl: float,
    cg_iters: int = 10,
    cg_tol: float = 1e-10,
) -> tuple[Array, Array, Array]:
    """Full natural-gradient step of TRPO/HATRPO before backtracking.

    ``x = CG(H, g)``, ``step_size = sqrt(2 max_kl / x^T H x)``, ``full_step = step_size * x``
    (Kuba et al. 2022, eq. 8 with ``alpha^0``; ``H`` here is whatever ``fvp`` multiplies by, i.e. including the
    damping), so that the quadratic KL model ``0.5 full_step^T H full_step`` equals ``max_kl``.
    Returns ``(full_step, expected_improve, step_size)`` with ``expected_improve = g . full_step``
    (the linearised surrogate gain). If ``x^T H x`` is non-positive or any quantity is non-finite
    (e.g. ``g = 0``), the step is zero: ``(zeros, 0, 0)``.
    """
    x = conjugate_gradient(fvp, grad, iters=cg_iters, tol=cg_tol)
    xhx = jnp.vdot(x, fvp(x))
    ok = (xhx > 0) & jnp.isfinite(xhx) & jnp.all(jnp.isfinite(x))
    step_size = jnp.where(ok, jnp.sqrt(2.0 * max_kl / jnp.where(ok, xhx, 1.0)), 0.0)  # Kuba et al. 2022, eq. 8
    full_step = jnp.where(ok, step_size * x, jnp.zeros_like(x))
    expected_improve = jnp.where(ok, jnp.vdot(grad, full_step), 0.0)
    return full_step, expected_improve, step_size


def backtracking_line_search(
    surrogate_fn: Callable[[Array], Array],
    kl_fn: Callable[[Array], Array],
    params_flat: Array,
    full_step: Array,
    expected_improve: Array,
    surr_old: Array,
    max_kl: float,
    accept_ratio: float = 0.5,
    backtrack: float = 0.5,
    max_steps: int = 10,
) -> tuple[Array, Array, Array, Array, Array]:
    """Backtracking line search of HATRPO (Kuba et al. 2022, App. D Algorithm 2; the acceptance rule of the authors' code).

    ``surrogate_fn(flat)`` is the surrogate to *maximise* (e.g. mean of ratio * M); ``kl_fn(flat)`` is
    the mean ``KL(pi_old || pi_flat)``; ``surr_old = surrogate_fn(params_flat)``.
    Candidate ``j = 0..max_steps-1`` uses ``fraction = backtrack**j`` and
    ``new = params_flat + fraction * full_step``; it is accepted iff ``kl < max_kl`` and
    ``improvement > 0`` and ``improvement / (expected_improve * fraction) > accept_ratio`` (the paper's
    test ``improvement >= kappa alpha^j beta x.g`` plus the code's KL and sign checks). The first
    acceptable ``j`` wins; non-finite values reject a candidate.

    Implemented with ``lax.while_loop``, so only the candidates up to the accepted one are evaluated.

    Returns ``(new_params_flat, accepted, steps_taken, kl_reached, improvement_realised)`` where
    ``steps_taken`` is the number of candidates evaluated (1 = full step accepted; ``max_steps`` when
    none was accepted). When nothing is accepted the old parameters are returned and ``kl_reached``
    and ``improvement_realised`` are 0 (no update happened).
    """

    def evaluate(j: Array) -> tuple[Array, Array, Array, Array]:
        fraction = backtrack ** j.astype(full_step.dtype)
        candidate = params_flat + fraction * full_step
        improvement = surrogate_fn(candidate) - surr_old
        kl = kl_fn(candidate)
        ratio = improvement / (expected_improve * fraction)
        ok = (kl < max_kl) & (improvement > 0) & (ratio > accept_ratio)
        ok = ok & jnp.isfinite(kl) & jnp.isfinite(improvement)
        return candidate, ok, kl, improvement

    zero = jnp.zeros((), dtype=full_step.dtype)
    init = (jnp.int32(0), jnp.bool_(False), params_flat, zero, zero)

    def cond(state: tuple) -> Array:
        j, accepted, _, _, _ = state
        return (j < max_steps) & (~accepted)

    def body(state: tuple) -> tuple:
        j, _, _, _, _ = state
        candidate, ok, kl, improvement = evaluate(j)
        new = jnp.where(ok, candidate, params_flat)
        return (
            j + 1,
            ok,
            new,
            jnp.where(ok, kl, zero).astype(zero.dtype),
            jnp.where(ok, improvement, zero).astype(zero.dtype),
        )

    steps, accepted, new_params, kl_reached, improvement = lax.while_loop(cond, body, init)
    return new_params, accepted, steps, kl_reached, improvement
