"""A replay buffer that is a pytree of the training state: fixed capacity, time-major per env copy.

Transitions from ``E`` env copies are stored as one array per field with leading axes ``[C, E]``
(``C`` = capacity per copy, ``E * C`` transitions in all): step ``t`` of copy ``e`` lives at
``[t mod C, e]``. Because it is a pytree of arrays, a buffer ``vmap``s over seeds, lives in the
``lax.scan`` carry of a training chunk and is saved in checkpoints with everything else, so
off-policy runs resume bit for bit. Insertion writes a whole trajectory ``[T, E, ...]`` at the write
position (wrapping around: FIFO, the oldest steps are overwritten); sampling draws

- uniform transitions: a time index among the filled ones and a copy, independently, with replacement;
- windows of ``L`` consecutive steps of one copy (for recurrent actors and teammate models): the
  window never crosses the write position (no mix of the newest and the oldest data) and never mixes
  copies; episode boundaries inside a window are visible from the stored ``terminated``/``truncated``.

Written here rather than taken from a library: ``flashbax`` (the well-kept JAX option) pulls in
its own dependencies and a trajectory-buffer API built around one add per step; what trustmarl
needs (insert a rollout, two samplers, buffer-wide reward statistics) is a few lines of
``jnp`` indexing, tested in ``tests/test_replay.py``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Replay(NamedTuple):
    data: Any  # pytree of [C, E, ...] arrays
    pos: jax.Array  # int32: the time index the next step is written to
    size: jax.Array  # int32: filled time indices (<= C)


def init(example: Any, capacity: int, num_envs: int) -> Replay:
    """An empty buffer for transitions shaped like ``example`` (one env copy's transition, no leading axes)."""
    data = jax.tree.map(lambda x: jnp.zeros((capacity, num_envs) + jnp.shape(x), jnp.result_type(x)), example)
    return Replay(data, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def capacity(buf: Replay) -> int:
    return jax.tree.leaves(buf.data)[0].shape[0]


def num_envs(buf: Replay) -> int:
    return jax.tree.leaves(buf.data)[0].shape[1]


def insert(buf: Replay, traj: Any) -> Replay:
    """Append a time-major trajectory ``[T, E, ...]`` (``T <= C``) at the write position."""
    c = capacity(buf)
    t = jax.tree.leaves(traj)[0].shape[0]
    if t > c:
        raise ValueError(f"a trajectory of {t} steps does not fit a buffer of {c} steps per env copy")
    idx = (buf.pos + jnp.arange(t)) % c
    data = jax.tree.map(lambda d, x: d.at[idx].set(x.astype(d.dtype)), buf.data, traj)
    return Replay(data, (buf.pos + t) % c, jnp.minimum(buf.size + t, c))


def sample(buf: Replay, key: jax.Array, batch_size: int) -> Any:
    """``batch_size`` transitions drawn uniformly with replacement from the filled part: ``[B, ...]``."""
    k_t, k_e = jax.random.split(key)
    c = capacity(buf)
    oldest = (buf.pos - buf.size) % c
    t = (oldest + jax.random.randint(k_t, (batch_size,), 0, jnp.maximum(buf.size, 1))) % c
    e = jax.random.randint(k_e, (batch_size,), 0, num_envs(buf))
    return jax.tree.map(lambda d: d[t, e], buf.data)


def sample_windows(buf: Replay, key: jax.Array, batch_size: int, length: int) -> Any:
    """``batch_size`` windows of ``length`` consecutive steps of one copy each: ``[B, L, ...]``.

    Start times are uniform over the windows that lie in the filled part without crossing the write
    position (``size - length + 1`` of them per copy); needs ``size >= length``."""
    k_t, k_e = jax.random.split(key)
    c = capacity(buf)
    oldest = (buf.pos - buf.size) % c
    n_starts = jnp.maximum(buf.size - length + 1, 1)
    start = oldest + jax.random.randint(k_t, (batch_size,), 0, n_starts)
    t = (start[:, None] + jnp.arange(length)[None, :]) % c  # [B, L]
    e = jax.random.randint(k_e, (batch_size,), 0, num_envs(buf))[:, None]
    return jax.tree.map(lambda d: d[t, e], buf.data)


def filled_mask(buf: Replay) -> jax.Array:
    """``[C]`` bool: the time indices that hold data."""
    c = capacity(buf)
    age = (buf.pos - 1 - jnp.arange(c)) % c  # 0 = newest
    return age < buf.size


def field_mean_std(buf: Replay, field: jax.Array, eps: float = 1e-8) -> tuple[jax.Array, jax.Array]:
    """Mean and standard deviation over the filled entries of ``field`` ``[C, E, *rest]`` (per ``rest``)."""
    mask = filled_mask(buf).astype(field.dtype).reshape((-1,) + (1,) * (field.ndim - 1))
    n = jnp.maximum(jnp.sum(mask) * field.shape[1], 1.0)
    mean = jnp.sum(field * mask, axis=(0, 1)) / n
    var = jnp.sum(jnp.square(field - mean) * mask, axis=(0, 1)) / n
    return mean, jnp.sqrt(var + eps)


def nbytes(buf: Replay) -> int:
    """Memory of the stored arrays (one seed)."""
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(buf.data))


# ---- checkpoints (numpy, outside jit; leaves with a leading seed axis: data [S, C, E, ...], pos/size [S]) ----

def filled_part(buf: Replay) -> Replay:
    """The time indices that hold data, for a checkpoint: ``[:size]`` while no seed's buffer has wrapped
    around (the write position is then ``size``, the data a prefix), everything after. Seeds share the
    cut (their largest fill); :func:`refill` restores the buffer bit for bit."""
    size = np.asarray(buf.size)
    n = int(size.max(initial=0))
    data = jax.tree.map(lambda d: np.asarray(d)[:, :n], buf.data)
    return Replay(data, np.asarray(buf.pos), size)


def refill(saved: Replay, capacity: int) -> Replay:
    """A buffer of ``capacity`` steps per copy from :func:`filled_part`'s ``saved`` (seed-batched numpy).

    With the capacity it was saved with: zeros after the saved part (as an empty buffer holds), so a
    resumed run continues bitwise. With another capacity (a resumed run of another length whose buffer is
    sized to the run): the stored steps in time order, the newest ``capacity`` of them if fewer fit."""
    n = jax.tree.leaves(saved.data)[0].shape[1]
    pos, size = np.asarray(saved.pos, np.int32), np.asarray(saved.size, np.int32)
    if n < capacity and (pos == size).all():  # a prefix: pad
        pad = lambda d: np.concatenate([d, np.zeros((d.shape[0], capacity - n) + d.shape[2:], d.dtype)], 1)  # noqa: E731
        return Replay(jax.tree.map(pad, saved.data), pos, size)
    if n == capacity:
        return Replay(saved.data, pos % capacity, size)
    # another capacity: time order (oldest first) per seed, then keep the newest ``capacity`` steps
    seeds = []
    for s in range(pos.shape[0]):
        order = (pos[s] - size[s] + np.arange(size[s])) % max(n, 1)
        order = order[max(0, size[s] - capacity):]
        seeds.append(order)
    keep = np.minimum(size, capacity).astype(np.int32)

    def fit(d):
        out = np.zeros((d.shape[0], capacity) + d.shape[2:], d.dtype)
        for s, order in enumerate(seeds):
            out[s, : len(order)] = d[s, order]
        return out

    return Replay(jax.tree.map(fit, saved.data), keep % capacity, keep)
