"""Generalised advantage estimation (Schulman et al. 2016), time-major.

Convention: ``dones[t] = 1`` means the episode ended AT step t (after reward ``r_t``), so nothing is
bootstrapped across it:

    delta_t = r_t + gamma (1 - done_t) V_{t+1} - V_t,          V_T = last_value
    A_t     = delta_t + gamma lambda (1 - done_t) A_{t+1},      A_T = 0
    R_t     = A_t + V_t                                         (critic targets)

(Sun et al. 2023, Section 3.2; with lambda = 1, A_t is the discounted Monte-Carlo
return minus V_t.) Time-limit truncation is treated as termination unless the caller folds the
bootstrap value into ``rewards``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike


def gae(
    rewards: ArrayLike,
    values: ArrayLike,
    dones: ArrayLike,
    last_value: ArrayLike,
    gamma: float,
    lam: float,
) -> tuple[Array, Array]:
    """GAE with ``jax.lax.scan(reverse=True)``; returns ``(advantages, returns)`` of shape ``[T, ...]``.

    ``rewards``, ``values``, ``dones`` have shape ``[T, ...]`` and ``last_value`` shape ``[...]``
    (the value of the state after the last step); they broadcast against each other (e.g. a team
    reward ``[T, E, 1]`` with per-agent values ``[T, E, N]``).
    """
    values = jnp.asarray(values)
    dtype = jnp.result_type(values.dtype, jnp.asarray(rewards).dtype, jnp.float32)
    values = values.astype(dtype)
    last_value = jnp.asarray(last_value, dtype)
    t_len = values.shape[0]
    shape = jnp.broadcast_shapes(
        jnp.shape(rewards), values.shape, jnp.shape(dones), (t_len,) + last_value.shape
    )
    rewards = jnp.broadcast_to(jnp.asarray(rewards, dtype), shape)
    not_done = jnp.broadcast_to(1.0 - jnp.asarray(dones).astype(dtype), shape)
    values = jnp.broadcast_to(values, shape)
    next_values = jnp.concatenate([values[1:], jnp.broadcast_to(last_value, shape[1:])[None]], axis=0)

    def step(adv_next: Array, xs: tuple[Array, Array, Array, Array]) -> tuple[Array, Array]:
        r, v, v_next, nd = xs
        delta = r + gamma * nd * v_next - v  # TD error
        adv = delta + gamma * lam * nd * adv_next  # GAE recursion
        return adv, adv

    init = jnp.zeros(shape[1:], dtype)
    _, advantages = jax.lax.scan(step, init, (rewards, values, next_values, not_done), reverse=True)
    return advantages, advantages + values


def gae_reference(
    rewards: ArrayLike,
    values: ArrayLike,
    dones: ArrayLike,
    last_value: ArrayLike,
    gamma: float,
    lam: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Plain NumPy float64 loop implementing the same recursion (cross-check for :func:`gae`)."""
    values = np.asarray(values, np.float64)
    t_len = values.shape[0]
    last_value = np.asarray(last_value, np.float64)
    shape = np.broadcast_shapes(
        np.shape(rewards), values.shape, np.shape(dones), (t_len,) + last_value.shape
    )
    rewards = np.broadcast_to(np.asarray(rewards, np.float64), shape)
    dones = np.broadcast_to(np.asarray(dones, np.float64), shape)
    values = np.broadcast_to(values, shape)
    advantages = np.zeros(shape, np.float64)
    adv_next = np.zeros(shape[1:], np.float64)
    v_next = np.broadcast_to(last_value, shape[1:])
    for t in reversed(range(t_len)):
        not_done = 1.0 - dones[t]
        delta = rewards[t] + gamma * not_done * v_next - values[t]
        adv_next = delta + gamma * lam * not_done * adv_next
        advantages[t] = adv_next
        v_next = values[t]
    return advantages, advantages + values
