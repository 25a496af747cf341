"""Nash equilibria of MATRL's n-agent, two-strategy meta-game, in pure JAX (Wen et al. 2021, section 3.2).

Wen et al. solve the meta-game with an off-the-shelf solver (CMA-ES on a squared-regret Lyapunov
function in the deep experiments, support enumeration in the matrix games) and pick a random
equilibrium when there are several. Here, with fixed shapes so it runs inside a jitted, vmapped update:

* ``n = 2``: exact. The four pure profiles are checked, plus the interior mixed equilibrium in closed
  form (each agent's mix makes the other indifferent). In a 2x2 game this always finds an equilibrium:
  an equilibrium that is pure for one agent and mixed for the other implies a pure one.
* ``n >= 3``: the ``2^n`` pure profiles are enumerated, plus a fixed-budget multi-start search for
  mixed equilibria: projected Levenberg-Marquardt on the regrets (``sum_i regret_i^2`` is the
  Lyapunov function of the reference solver, ``rho`` in ``[0, 1]^n``), accepted when
  NashConv <= ``tol * max|G|``.
* Candidates within ``dedupe_tol`` of an earlier one are dropped; one of the rest is chosen by
  ``selection`` (``SELECTIONS``); if none is left, ``rho = 1`` (keep every current policy, i.e. MATRL
  degenerates to independent learning) and ``found = False``, so fallbacks can be counted and logged.

``rho_j`` is agent ``j``'s probability of keeping its CURRENT policy (meta-strategy 0); payoff tensors
have shape ``[n, 2, ..., 2]`` as in :mod:`trustmarl.trust.metagame`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

from trustmarl.trust.metagame import expected_payoffs, n_players, nash_conv

SELECTIONS = ("random", "first", "last", "max_welfare")
"""Equilibrium-selection rules. ``random``: uniform over the distinct equilibria found (Wen et al.
2021, section 3.2; seeded by the key). ``first`` / ``last``: the first / last in candidate order (pure
profiles in lexicographic order of ``x``, then mixed ones; for two agents ``last`` is what the
reference code's ``nashpy`` support enumeration returned last). ``max_welfare``: the largest
``sum_i u_i(rho)`` (first on ties)."""


class MetaNash(NamedTuple):
    """The solver's answer. All fields are arrays (vmappable)."""

    rho: Array  # [n] probability of keeping the current policy
    nash_conv: Array  # scalar NashConv of rho on the given payoffs (0 at an exact NE)
    found: Array  # bool; False: no equilibrium was found and rho is the fallback (all ones)
    n_equilibria: Array  # int32: distinct equilibria found (pure and mixed)


def pure_profiles(n: int) -> np.ndarray:
    """``[2^n, n]`` meta-strategy profiles ``x`` in lexicographic (row-major) order."""
    idx = np.arange(2**n)
    return ((idx[:, None] >> np.arange(n - 1, -1, -1)[None, :]) & 1).astype(np.int32)


def pure_equilibria(payoffs: ArrayLike, tol: float = 0.0) -> tuple[Array, Array]:
    """All pure profiles as ``rho`` (``[2^n, n]``, ``rho = 1 - x``) and which are equilibria (``[2^n]``).

    ``x`` is an equilibrium when no agent gains more than ``tol * max|G|`` by switching its own
    meta-strategy: ``G_i[x] >= G_i[x with x_i flipped] - tol * max|G|`` for every ``i`` (weak
    inequalities: ties count, as in support enumeration).
    """
    g = jnp.asarray(payoffs)
    n = n_players(g)
    slack = tol * jnp.max(jnp.abs(g))
    ok = jnp.ones((2,) * n, bool)
    for i in range(n):
        ok = ok & (g[i] >= jnp.flip(g[i], axis=i) - slack)
    rho = 1.0 - jnp.asarray(pure_profiles(n), g.dtype)
    return rho, ok.reshape(-1)


def bimatrix_mixed_equilibrium(payoffs: ArrayLike) -> tuple[Array, Array]:
    """The interior mixed equilibrium of a two-agent, two-strategy game, in closed form.

    Agent 1's mix makes agent 2 indifferent and vice versa:
    ``rho_1 = (G_2[1,1] - G_2[1,0]) / (G_2[0,0] - G_2[0,1] - G_2[1,0] + G_2[1,1])`` and symmetrically.
    Returns ``(rho [2], valid)``; ``valid`` needs both in the open interval ``(0, 1)`` (an interior
    solution makes both agents indifferent, so it is an equilibrium).
    """
    g = jnp.asarray(payoffs)
    if g.shape != (2, 2, 2):
        raise ValueError(f"bimatrix_mixed_equilibrium needs a payoff tensor [2, 2, 2], got {g.shape}")
    g1, g2 = g[0], g[1]
    den1 = g2[0, 0] - g2[0, 1] - g2[1, 0] + g2[1, 1]
    den2 = g1[0, 0] - g1[1, 0] - g1[0, 1] + g1[1, 1]
    safe = lambda d: jnp.where(d == 0, 1.0, d)  # noqa: E731
    rho = jnp.stack([(g2[1, 1] - g2[1, 0]) / safe(den1), (g1[1, 1] - g1[0, 1]) / safe(den2)])
    valid = (den1 != 0) & (den2 != 0) & jnp.all((rho > 0) & (rho < 1)) & jnp.all(jnp.isfinite(rho))
    return rho, valid


def _full_contraction(tensor: Array, weights: Array) -> Array:
    """``sum_x prod_j weights[j, x_j] tensor[x]`` for ``tensor`` of shape ``[2] * n``."""
    out = tensor
    for j in reversed(range(weights.shape[0])):
        out = out @ weights[j]
    return out


def _regrets_and_jacobian(payoffs: Array, rho: Array) -> tuple[Array, Array]:
    """Regrets ``[n]`` and their Jacobian ``[n, n]`` in ``rho``, without automatic differentiation.

    ``u_i`` is multilinear, so ``d_i = du_i/drho_i`` and ``dd_i/drho_j = d^2 u_i / (drho_i drho_j)`` are
    contractions of ``G_i`` with the weight vector of the differentiated agents replaced by ``(1, -1)``.
    With ``regret_i = (1 - rho_i) max(d_i, 0) + rho_i max(-d_i, 0)``:
    ``dregret_i/drho_j = s_i dd_i/drho_j - [i = j] d_i``, ``s_i = 1 - rho_i`` if ``d_i > 0``, ``-rho_i`` if
    ``d_i < 0``, else 0.
    """
    n = rho.shape[0]
    w = jnp.stack([rho, 1.0 - rho], axis=-1)  # [n, 2]
    diff = jnp.asarray([1.0, -1.0], rho.dtype)
    eye = jnp.eye(n, dtype=bool)
    # weights for every (i, j): agents i and j differentiated (only i when j == i)
    sel = eye[:, None, :] | eye[None, :, :]  # [i, j, k]
    weights = jnp.where(sel[..., None], diff, w[None, None])  # [n, n, n, 2]
    second = jax.vmap(lambda gi, wi: jax.vmap(lambda wij: _full_contraction(gi, wij))(wi))(payoffs, weights)
    d = jnp.diagonal(second)  # [n]
    dd = jnp.where(eye, 0.0, second)  # dd_i / drho_i = 0 (u_i is linear in rho_i)
    reg = (1.0 - rho) * jnp.maximum(d, 0.0) + rho * jnp.maximum(-d, 0.0)
    s = jnp.where(d > 0, 1.0 - rho, jnp.where(d < 0, -rho, 0.0))
    jac = s[:, None] * dd - jnp.diag(d)
    return reg, jac


def _lm_descent(payoffs_scaled: Array, rho0: Array, n_iters: int) -> Array:
    """Projected Levenberg-Marquardt on the regrets, from ``rho0``; returns the final ``rho``.

    Minimises ``L(rho) = sum_i regret_i(rho)^2`` over ``[0, 1]^n`` (the Lyapunov function of the
    reference solver, restricted to two strategies per agent); a step is kept only if it lowers ``L``,
    and the damping shrinks after a kept step and grows after a rejected one.
    """
    n = rho0.shape[0]
    eye = jnp.eye(n, dtype=rho0.dtype)

    def body(carry, _):
        rho, lam, r, jac = carry
        jtj = jac.T @ jac
        step = -jnp.linalg.solve(jtj + lam * (eye + jnp.diag(jnp.diag(jtj))), jac.T @ r)
        cand = jnp.clip(rho + step, 0.0, 1.0)
        r_c, jac_c = _regrets_and_jacobian(payoffs_scaled, cand)
        better = jnp.sum(r_c**2) < jnp.sum(r**2)
        keep = lambda a, b: jnp.where(better, a, b)  # noqa: E731
        lam = jnp.clip(keep(lam * 0.3, lam * 5.0), 1e-12, 1e8)
        return (keep(cand, rho), lam, keep(r_c, r), keep(jac_c, jac)), None

    r0, jac0 = _regrets_and_jacobian(payoffs_scaled, rho0)
    init = (rho0, jnp.asarray(1e-2, rho0.dtype), r0, jac0)
    (rho, _, _, _), _ = jax.lax.scan(body, init, None, length=n_iters)
    return rho


def mixed_equilibria_search(
    payoffs: ArrayLike, key: Array, n_starts: int = 32, n_iters: int = 50, tol: float = 1e-6
) -> tuple[Array, Array]:
    """Multi-start regret minimisation: ``(rho [n_starts, n], valid [n_starts])``.

    The first start is the centre ``(1/2, ..., 1/2)``, the others uniform in ``[0, 1]^n`` from ``key``.
    A result is valid when its NashConv is at most ``tol * max|G|``.
    """
    g = jnp.asarray(payoffs)
    n = n_players(g)
    scale = jnp.max(jnp.abs(g))
    g_scaled = g / jnp.where(scale > 0, scale, 1.0)
    starts = jax.random.uniform(key, (n_starts, n), dtype=g.dtype)
    starts = starts.at[0].set(0.5)
    rho = jax.vmap(lambda r0: _lm_descent(g_scaled, r0, n_iters))(starts)
    conv = jax.vmap(lambda r: nash_conv(g_scaled, r))(rho)
    return rho, (conv <= tol) & jnp.all(jnp.isfinite(rho), axis=-1)


def equilibrium_candidates(
    payoffs: ArrayLike,
    key: Array | None = None,
    tol: float = 1e-6,
    n_starts: int = 32,
    n_iters: int = 50,
) -> tuple[Array, Array]:
    """Candidate profiles ``[M, n]`` and which are equilibria ``[M]``: pure ones first (lexicographic),
    then the mixed one(s): closed form for two agents (``M = 5``), multi-start search otherwise
    (``M = 2^n + n_starts``)."""
    g = jnp.asarray(payoffs)
    n = n_players(g)
    pure, pure_ok = pure_equilibria(g, tol)
    if n == 2:
        mixed, mixed_ok = bimatrix_mixed_equilibrium(g)
        mixed, mixed_ok = mixed[None], mixed_ok[None]
    else:
        key = jax.random.PRNGKey(0) if key is None else key
        mixed, mixed_ok = mixed_equilibria_search(g, key, n_starts, n_iters, tol)
    return jnp.concatenate([pure, mixed.astype(pure.dtype)]), jnp.concatenate([pure_ok, mixed_ok])


def distinct(candidates: Array, valid: Array, dedupe_tol: float = 1e-3) -> Array:
    """``valid`` with every candidate within ``dedupe_tol`` (max-norm) of an earlier valid one dropped."""
    close = jnp.max(jnp.abs(candidates[:, None, :] - candidates[None, :, :]), axis=-1) <= dedupe_tol
    earlier = jnp.tril(jnp.ones(close.shape, bool), k=-1)  # [j, k]: k < j
    duplicate = jnp.any(close & earlier & valid[None, :], axis=1)
    return valid & ~duplicate


def select_equilibrium(
    payoffs: ArrayLike, candidates: Array, valid: Array, key: Array | None = None, selection: str = "random"
) -> tuple[Array, Array]:
    """Index of the chosen candidate among the ``valid`` ones (see ``SELECTIONS``) and whether any is valid."""
    if selection not in SELECTIONS:
        raise ValueError(f"unknown equilibrium selection {selection!r}; expected one of {SELECTIONS}")
    m = valid.shape[0]
    if selection == "first":
        idx = jnp.argmax(valid)
    elif selection == "last":
        idx = m - 1 - jnp.argmax(valid[::-1])
    elif selection == "random":
        key = jax.random.PRNGKey(0) if key is None else key
        score = jnp.where(valid, jax.random.uniform(key, (m,)), -1.0)
        idx = jnp.argmax(score)  # uniform over the valid candidates
    else:  # max_welfare
        welfare = jax.vmap(lambda r: jnp.sum(expected_payoffs(payoffs, r)))(candidates)
        idx = jnp.argmax(jnp.where(valid, welfare, -jnp.inf))
    return idx, jnp.any(valid)


def solve_metagame(
    payoffs: ArrayLike,
    key: Array | None = None,
    selection: str = "random",
    tol: float = 1e-5,
    n_starts: int = 32,
    n_iters: int = 50,
    dedupe_tol: float = 1e-3,
) -> MetaNash:
    """A Nash equilibrium ``rho`` of the meta-game ``payoffs`` ``[n, 2, ..., 2]`` (Wen et al. 2021,
    section 3.2, "NashSolver"), with ``rho = 1`` as the fallback when none is found.

    ``key`` seeds the random starts (``n >= 3``) and the ``"random"`` selection; ``tol`` is relative to
    ``max|G|`` (the default suits float32; use ``tol=0`` with two agents to reproduce exact support
    enumeration, and about ``1e-9`` in float64). Jittable with
    ``selection``, ``n_starts`` and ``n_iters`` static; vmap over games and keys.
    """
    g = jnp.asarray(payoffs)
    n = n_players(g)
    if not jnp.issubdtype(g.dtype, jnp.floating):
        g = g.astype(jnp.float32)
    needs_search, needs_select = n >= 3, selection == "random"
    k_search = k_select = key  # split only when both are used (no random bits at all for n = 2 + "last")
    if key is not None and needs_search and needs_select:
        k_search, k_select = jax.random.split(key)
    candidates, valid = equilibrium_candidates(g, k_search, tol, n_starts, n_iters)
    unique = distinct(candidates, valid, dedupe_tol)
    idx, found = select_equilibrium(g, candidates, unique, k_select, selection)
    rho = jnp.where(found, candidates[idx], jnp.ones((n,), g.dtype))
    return MetaNash(rho=rho, nash_conv=nash_conv(g, rho), found=found, n_equilibria=jnp.sum(unique).astype(jnp.int32))
