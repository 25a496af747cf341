"""Tsallis q-logarithm and the mirror-descent penalties of MAMD/MAMT (Li et al. 2022).

MAMD and MAMT (Li, Wang, Jin, Sheng & Zha 2022, "Dealing with Non-Stationarity in MARL via
Trust-Region Decomposition") update each actor by an off-policy mirror-descent step in the style of
MDPO (Tomar et al. 2020): maximise ``E_{a~pi}[A(o, a)]`` minus ``1/delta`` times a divergence from a
lagged *old* policy, where the divergence is built from the Tsallis q-logarithm

    ln_q(x) = (x^(1-q) - 1) / (1 - q)     (q != 1),        ln_1(x) = ln(x),

with ``x`` clamped to ``>= 1e-6`` first (as in the authors' code). We evaluate it as
``expm1((1 - q) ln x) / (1 - q)``, which equals the formula above and stays accurate as ``q -> 1``.

Two penalties are offered, and they differ for ``q != 1``:

* :func:`tsallis_penalty` -- the authors' form (Li et al. 2022, eq. 10 as released):
  ``D_q(pi || pi_old) = E_{a~pi}[ln_q pi(a) - ln_q pi_old(a)]``. For ``q = 1`` it is exactly
  ``KL(pi || pi_old)``. For ``q < 1`` it is **not** a divergence: it can be negative, e.g.
  ``pi = (0.9, 0.1)``, ``pi_old ~ pi^(1/q)`` gives -0.0711 at ``q = 0.2``.
* :func:`tsallis_relative_entropy` -- the Tsallis relative entropy
  ``(1 - sum_a pi(a)^q pi_old(a)^(1-q)) / (1 - q)`` (Tsallis 1998), ``>= 0``, zero iff the policies agree,
  and ``KL(pi || pi_old)`` at ``q = 1`` (+0.0260 on the same pair).

The actor loss of the released code is the score-function surrogate :func:`mirror_descent_surrogate`
``log pi(a) * sg((ln_q pi(a) - ln_q pi_old(a)) / delta - A)`` with ``a ~ pi``. Its expected gradient is
the gradient of ``E_pi[(ln_q pi - ln_q pi_old) / delta - A]`` *minus* the term
``(1/delta) sum_a pi(a)^(1-q) grad pi(a)`` that comes from differentiating ``ln_q pi`` itself; that term
vanishes at ``q = 1`` (``sum_a grad pi(a) = 0``) and not otherwise.

``q`` is a Python float in every function (static under ``jit``); arrays may have any leading axes and
the action axis is the last one. Probabilities of unavailable actions are 0 and contribute nothing.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

LOG_Q_MIN = 1e-6  # ln_q's input is clamped to >= this (Li et al. 2022, authors' code)
_LOG_MIN = float(jnp.log(LOG_Q_MIN))


def _check_q(q: float) -> float:
    if isinstance(q, bool) or not isinstance(q, (int, float)):
        raise TypeError(f"q must be a Python float (static under jit), got {type(q).__name__}")
    return float(q)


def log_q_of_log(log_x: ArrayLike, q: float) -> Array:
    """``ln_q(exp(log_x))`` with ``exp(log_x)`` clamped to ``>= 1e-6``: the q-logarithm of a
    probability given as a log-probability (what the actor losses have at hand)."""
    q = _check_q(q)
    lx = jnp.maximum(jnp.asarray(log_x), _LOG_MIN)
    if q == 1.0:
        return lx
    return jnp.expm1((1.0 - q) * lx) / (1.0 - q)


def log_q(x: ArrayLike, q: float) -> Array:
    """Tsallis q-logarithm ``ln_q(x) = (x^(1-q) - 1) / (1 - q)``, ``ln x`` at ``q = 1``; ``x`` is
    clamped to ``>= 1e-6`` first (Li et al. 2022, the mirror-descent penalty of eq. 10)."""
    return log_q_of_log(jnp.log(jnp.maximum(jnp.asarray(x), LOG_Q_MIN)), q)


def tsallis_penalty(probs: ArrayLike, probs_old: ArrayLike, q: float) -> Array:
    """Exact ``E_{a~pi}[ln_q pi(a) - ln_q pi_old(a)] = sum_a pi(a) (ln_q pi(a) - ln_q pi_old(a))`` over
    the last axis: the mirror-descent penalty of MAMD/MAMT in the authors' form (Li et al. 2022, eq. 10).

    ``KL(pi || pi_old)`` at ``q = 1``; may be negative for ``q < 1`` (see the module docstring).
    """
    p = jnp.asarray(probs)
    p_old = jnp.asarray(probs_old)
    return jnp.sum(p * (log_q(p, q) - log_q(p_old, q)), axis=-1)


def tsallis_penalty_sample(logp: ArrayLike, logp_old: ArrayLike, q: float) -> Array:
    """Per-sample penalty term ``ln_q pi(a) - ln_q pi_old(a)`` from the log-probabilities of a taken
    action; its mean over ``a ~ pi`` estimates :func:`tsallis_penalty` (Li et al. 2022, eq. 10)."""
    return log_q_of_log(logp, q) - log_q_of_log(logp_old, q)


def tsallis_relative_entropy(probs: ArrayLike, probs_old: ArrayLike, q: float) -> Array:
    """Tsallis relative entropy ``(1 - sum_a pi(a)^q pi_old(a)^(1-q)) / (1 - q)`` over the last axis
    (Tsallis 1998); ``KL(pi || pi_old) = sum_a pi (ln pi - ln pi_old)`` at ``q = 1``.

    Actions with ``pi(a) = 0`` contribute nothing (NaN-free values and gradients); an action with
    ``pi_old(a) = 0 < pi(a)`` makes it ``+inf`` for ``q >= 1``.
    """
    q = _check_q(q)
    p = jnp.asarray(probs)
    p_old = jnp.asarray(probs_old)
    live = p > 0
    p_safe = jnp.where(live, p, 1.0)
    if q == 1.0:
        terms = jnp.where(live, p * (jnp.log(p_safe) - jnp.log(jnp.where(live, p_old, 1.0))), 0.0)
        return jnp.sum(terms, axis=-1)
    po_safe = jnp.where(live, p_old, 1.0)
    mixed = jnp.where(live, jnp.exp(q * jnp.log(p_safe) + (1.0 - q) * jnp.log(po_safe)), 0.0)
    return (1.0 - jnp.sum(mixed, axis=-1)) / (1.0 - q)


def mirror_descent_surrogate(logp: ArrayLike, logp_old: ArrayLike, advantage: ArrayLike,
                             coef: ArrayLike, q: float) -> Array:
    """Per-sample actor loss of MAMD/MAMT, to be minimised (Li et al. 2022, eq. 10, authors' form):

        log pi(a) * sg( (ln_q pi(a) - ln_q pi_old(a)) / coef - A )       with a ~ pi (the current policy),

    ``coef`` the trust-region size (MAMD: one constant for every agent; MAMT: the agent's own ``delta_i``).
    Gradients reach ``logp`` only (the bracket is stopped, so none reach ``coef``). For ``q = 1`` its
    expected gradient is that of ``KL(pi || pi_old) / coef - E_pi[A]``; for ``q != 1`` it misses
    ``(1/coef) sum_a pi^(1-q) grad pi`` (module docstring).
    """
    lp = jnp.asarray(logp)
    weight = tsallis_penalty_sample(lp, logp_old, q) / jnp.asarray(coef) - jnp.asarray(advantage)
    return lp * jax.lax.stop_gradient(weight)
