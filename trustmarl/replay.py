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
    t, e = _draw(buf, key, batch_size)
    return jax.tree.map(lambda d: d[t, e], buf.data)


def _window_indices(buf: Replay, key: jax.Array, batch_size: int, length: int) -> tuple[jax.Array, jax.Array]:
    """The indices :func:`sample_windows` draws: times ``[B, L]`` and copies ``[B, 1]``."""
    k_t, k_e = jax.random.split(key)
    c = capacity(buf)
    oldest = (buf.pos - buf.size) % c
    n_starts = jnp.maximum(buf.size - length + 1, 1)
    start = oldest + jax.random.randint(k_t, (batch_size,), 0, n_starts)
    t = (start[:, None] + jnp.arange(length)[None, :]) % c  # [B, L]
    e = jax.random.randint(k_e, (batch_size,), 0, num_envs(buf))[:, None]
    return t, e


def sample_windows(buf: Replay, key: jax.Array, batch_size: int, length: int) -> Any:
    """``batch_size`` windows of ``length`` consecutive steps of one copy each: ``[B, L, ...]``.

    Start times are uniform over the windows that lie in the filled part without crossing the write
    position (``size - length + 1`` of them per copy); needs ``size >= length``."""
    t, e = _window_indices(buf, key, batch_size, length)
    return jax.tree.map(lambda d: d[t, e], buf.data)


def filled_mask(buf: Replay) -> jax.Array:
    """``[C]`` bool: the time indices that hold data."""
    c = capacity(buf)
    age = (buf.pos - 1 - jnp.arange(c)) % c  # 0 = newest
    return age < buf.size


def field_mean_std(buf: Replay, field: jax.Array, eps: float = 1e-8, combine=None) -> tuple[jax.Array, jax.Array]:
    """Mean and standard deviation over the filled entries of ``field`` ``[C, E, *rest]`` (per ``rest``).
    ``combine`` adds the sums of several buffers (env blocks: a ``psum``); default: this buffer alone."""
    combine = (lambda x: x) if combine is None else combine  # noqa: E731
    mask = filled_mask(buf).astype(field.dtype).reshape((-1,) + (1,) * (field.ndim - 1))
    n = jnp.maximum(combine(jnp.sum(mask) * field.shape[1]), 1.0)
    mean = combine(jnp.sum(field * mask, axis=(0, 1))) / n
    var = combine(jnp.sum(jnp.square(field - mean) * mask, axis=(0, 1))) / n
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


# ---- transitions that store each observation once ------------------------------------------------

class Transitions(NamedTuple):
    """A replay buffer of transitions whose successor fields (the next observation and available actions)
    are stored once per step, not twice.

    A transition's ``next`` fields are the next step's own fields, except at an episode's end (the env
    reset: the true final observation differs from the next step's) and for each copy's newest step.
    *Sparse* layout (episodes of at least ``L`` steps, ``L`` declared by the env): ``steps`` holds the
    per-step fields plus ``final_slot`` (``-1``, or where the step's successor lives in ``finals``);
    ``finals`` ``[F, E, ...]`` holds the successors of the steps that ended an episode (a ring of
    ``F = C // L + 2`` slots per copy: no final is overwritten while its step is stored), ``tail``
    ``[E, ...]`` the newest step's successor. *Dense* layout (any episode length): ``steps`` stores every
    step's successor under ``"next"`` and ``finals``/``tail`` are empty. Either way :func:`sample_transitions`
    returns the same values, drawn with the same indices as :func:`sample`.
    """

    steps: Replay
    finals: Any  # sparse: pytree of [F, E, ...]; dense: ()
    final_pos: Any  # sparse: [E] int32, the finals slot each copy writes next; dense: ()
    tail: Any  # sparse: pytree of [E, ...]; dense: ()


def _dense(buf: Transitions) -> bool:
    return isinstance(buf.final_pos, tuple)


def final_capacity(capacity: int, min_episode_steps: int) -> int | None:
    """Slots of the sparse layout's finals ring, or ``None`` for the dense layout (short or unknown episodes)."""
    if min_episode_steps < 4:
        return None
    return capacity // min_episode_steps + 2


def init_transitions(step: Any, nxt: Any, capacity: int, num_envs: int, finals: int | None) -> Transitions:
    """An empty buffer for per-step fields shaped like ``step`` and successor fields like ``nxt``
    (one copy's, no leading axes); ``finals``: :func:`final_capacity`."""
    zeros = lambda lead: lambda x: jnp.zeros(lead + jnp.shape(x), jnp.result_type(x))  # noqa: E731
    if finals is None:
        return Transitions(init({**step, "next": nxt}, capacity, num_envs), (), (), ())
    steps = init({**step, "final_slot": jnp.zeros((), jnp.int32)}, capacity, num_envs)
    return Transitions(steps, jax.tree.map(zeros((finals, num_envs)), nxt), jnp.zeros((num_envs,), jnp.int32),
                       jax.tree.map(zeros((num_envs,)), nxt))


def insert_transitions(buf: Transitions, step: Any, nxt: Any, done: jax.Array) -> Transitions:
    """Append a time-major trajectory: per-step fields ``step`` and successors ``nxt`` ``[T, E, ...]``,
    ``done`` ``[T, E]``: the steps after which the env reset."""
    if _dense(buf):
        return buf._replace(steps=insert(buf.steps, {**step, "next": nxt}))
    f = jax.tree.leaves(buf.finals)[0].shape[0]
    e = jnp.arange(done.shape[1])[None, :]
    slot = (buf.final_pos[None, :] + jnp.cumsum(done, axis=0, dtype=jnp.int32) - 1) % f  # [T, E]
    target = jnp.where(done, slot, f)  # the others fall outside the ring: dropped
    finals = jax.tree.map(lambda d, x: d.at[target, e].set(x.astype(d.dtype), mode="drop"), buf.finals, nxt)
    steps = insert(buf.steps, {**step, "final_slot": jnp.where(done, slot, -1)})
    tail = jax.tree.map(lambda x: x[-1], nxt)
    return Transitions(steps, finals, (buf.final_pos + jnp.sum(done, 0, dtype=jnp.int32)) % f, tail)


def _draw(buf: Replay, key: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """The indices :func:`sample` draws (time among the filled ones, copy), with replacement."""
    k_t, k_e = jax.random.split(key)
    c = capacity(buf)
    oldest = (buf.pos - buf.size) % c
    t = (oldest + jax.random.randint(k_t, (batch_size,), 0, jnp.maximum(buf.size, 1))) % c
    e = jax.random.randint(k_e, (batch_size,), 0, num_envs(buf))
    return t, e


def sample_transitions(buf: Transitions, key: jax.Array, batch_size: int) -> tuple[Any, Any]:
    """``(step fields, successor fields)`` of ``batch_size`` transitions drawn as :func:`sample` draws them."""
    return gather_transitions(buf, *_draw(buf.steps, key, batch_size))


def sample_transition_windows(buf: Transitions, key: jax.Array, batch_size: int, length: int) -> tuple[Any, Any]:
    """``(step fields, successor fields)`` ``[B, L, ...]`` of windows drawn as :func:`sample_windows` draws them."""
    t, e = _window_indices(buf.steps, key, batch_size, length)
    e = jnp.broadcast_to(e, t.shape)
    got = gather_transitions(buf, t.reshape(-1), e.reshape(-1))
    return jax.tree.map(lambda x: x.reshape(t.shape + x.shape[1:]), got)


def gather_transitions(buf: Transitions, t: jax.Array, e: jax.Array) -> tuple[Any, Any]:
    """``(step fields, successor fields)`` of the transitions at time indices ``t`` of copies ``e`` ``[B]``."""
    got = jax.tree.map(lambda d: d[t, e], buf.steps.data)
    if _dense(buf):
        nxt = got.pop("next")
        return got, nxt
    slot = got.pop("final_slot")
    c = capacity(buf.steps)
    succ = {k: jax.tree.map(lambda d: d[(t + 1) % c, e], buf.steps.data[k]) for k in buf.tail}
    final = jax.tree.map(lambda d: d[jnp.maximum(slot, 0), e], buf.finals)
    tail = jax.tree.map(lambda d: d[e], buf.tail)
    newest = t == (buf.steps.pos - 1) % c

    def pick(f, tl, s):
        shape = (-1,) + (1,) * (f.ndim - 1)
        return jnp.where((slot >= 0).reshape(shape), f, jnp.where(newest.reshape(shape), tl, s))

    return got, jax.tree.map(pick, final, tail, succ)


def transitions_nbytes(buf: Transitions) -> int:
    """Memory of the stored arrays (one seed)."""
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves((buf.steps.data, buf.finals, buf.tail)))


def filled_transitions(buf: Transitions) -> Transitions:
    """:func:`filled_part` of the per-step fields (seed-batched numpy); the finals ring is small and kept whole."""
    return buf._replace(steps=filled_part(buf.steps), finals=jax.tree.map(np.asarray, buf.finals),
                        final_pos=jax.tree.map(np.asarray, buf.final_pos), tail=jax.tree.map(np.asarray, buf.tail))


def refill_transitions(saved: Transitions, capacity: int, finals: int | None) -> Transitions:
    """:func:`refill` for :class:`Transitions` (``finals``: the new ring's size). With the saved capacity,
    bit for bit; with another, the kept steps' finals are rewritten, oldest first, into the new ring."""
    n = jax.tree.leaves(saved.steps.data)[0].shape[1]
    same = n == capacity or (n < capacity and (np.asarray(saved.steps.pos) == np.asarray(saved.steps.size)).all())
    if _dense(saved) or (same and jax.tree.leaves(saved.finals)[0].shape[1] == finals):
        return saved._replace(steps=refill(saved.steps, capacity))
    # another capacity: chronological order per seed (as refill), then the finals of the kept steps
    pos, size = np.asarray(saved.steps.pos), np.asarray(saved.steps.size)
    steps = refill(saved.steps, capacity)
    slot_old = np.asarray(saved.steps.data["final_slot"])
    slot_new = np.full_like(np.asarray(steps.data["final_slot"]), -1)
    ring = jax.tree.map(lambda d: np.zeros((d.shape[0], finals) + d.shape[2:], d.dtype), saved.finals)
    final_pos = np.zeros_like(np.asarray(saved.final_pos))
    for s in range(pos.shape[0]):
        order = ((pos[s] - size[s] + np.arange(size[s])) % max(n, 1))[max(0, size[s] - capacity):]
        for e in range(slot_old.shape[2]):
            k = 0
            for i, t in enumerate(order):
                if slot_old[s, t, e] >= 0:
                    for new, old in zip(jax.tree.leaves(ring), jax.tree.leaves(saved.finals)):
                        new[s, k, e] = old[s, slot_old[s, t, e], e]
                    slot_new[s, i, e] = k
                    k += 1
            final_pos[s, e] = k % finals
    data = {**steps.data, "final_slot": slot_new}
    return Transitions(steps._replace(data=data), ring, final_pos, saved.tail)
