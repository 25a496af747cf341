"""The replay buffer: FIFO overwrite, uniform sampling, windows within one env copy, buffer statistics."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trustmarl import replay


def _traj(t0: int, steps: int, envs: int):
    """Step ``t`` of copy ``e`` holds the value ``1000 * e + t`` (identifies where a sample came from)."""
    t = jnp.arange(t0, t0 + steps)[:, None]
    e = jnp.arange(envs)[None, :]
    return {"id": (1000 * e + t).astype(jnp.int32), "obs": (jnp.stack([t + 0 * e] * 2, -1).astype(jnp.float32),)}


def _example():
    return {"id": jnp.zeros((), jnp.int32), "obs": (jnp.zeros((2,)),)}


def test_insert_wraps_fifo_and_keeps_the_newest():
    buf = replay.init(_example(), capacity=5, num_envs=3)
    buf = replay.insert(buf, _traj(0, 3, 3))
    assert int(buf.pos) == 3 and int(buf.size) == 3
    buf = replay.insert(buf, _traj(3, 4, 3))  # steps 3..6: 5 and 6 overwrite 0 and 1
    assert int(buf.pos) == 2 and int(buf.size) == 5
    ids = np.asarray(buf.data["id"])
    assert sorted(ids[:, 1] - 1000) == [2, 3, 4, 5, 6]  # the newest 5 steps of copy 1
    assert ids[0, 2] == 2005 and ids[1, 2] == 2006 and ids[2, 2] == 2002
    assert np.asarray(replay.filled_mask(buf)).all()
    with pytest.raises(ValueError, match="does not fit"):
        replay.insert(buf, _traj(0, 6, 3))


def test_uniform_sampling_frequencies():
    """Every stored transition (and only those) is drawn with probability 1/(size * E): chi-square test."""
    buf = replay.init(_example(), capacity=8, num_envs=2)
    buf = replay.insert(buf, _traj(0, 6, 2))  # 12 stored of 16 slots
    ids = np.asarray(jax.jit(lambda k: replay.sample(buf, k, 60_000)["id"])(jax.random.PRNGKey(0)))
    stored = {1000 * e + t for e in range(2) for t in range(6)}
    assert set(np.unique(ids)) == stored
    counts = np.array([np.sum(ids == i) for i in sorted(stored)])
    expected = 60_000 / 12
    chi2 = np.sum((counts - expected) ** 2 / expected)
    assert chi2 < 31.3, chi2  # 99.9% quantile of chi-square with 11 degrees of freedom
    batch = replay.sample(buf, jax.random.PRNGKey(1), 16)
    assert batch["obs"][0].shape == (16, 2) and batch["id"].shape == (16,)


def test_windows_are_consecutive_within_one_copy_and_never_cross_the_write_position():
    buf = replay.init(_example(), capacity=7, num_envs=3)
    buf = replay.insert(buf, _traj(0, 5, 3))
    buf = replay.insert(buf, _traj(5, 5, 3))  # 10 steps in 7 slots: steps 3..9 stored, write position 3
    w = np.asarray(jax.jit(lambda k: replay.sample_windows(buf, k, 4000, 4)["id"])(jax.random.PRNGKey(2)))
    assert w.shape == (4000, 4)
    copies, steps = w // 1000, w % 1000
    assert (copies == copies[:, :1]).all()  # one env copy per window
    assert (np.diff(steps, axis=1) == 1).all()  # consecutive steps, oldest first
    assert steps.min() == 3 and steps.max() == 9  # only stored steps; starts 3..6 all drawn
    assert set(steps[:, 0]) == {3, 4, 5, 6}
    assert set(copies[:, 0]) == {0, 1, 2}


def test_reward_statistics_cover_the_filled_part_only():
    buf = replay.init({"r": jnp.zeros((2,))}, capacity=6, num_envs=2)
    r = jnp.stack([jnp.arange(8.0).reshape(4, 2), 10 + jnp.arange(8.0).reshape(4, 2)], axis=1)  # [4, 2 envs, 2 agents]
    buf = replay.insert(buf, {"r": r})
    mean, std = replay.field_mean_std(buf, buf.data["r"])
    ref = np.asarray(r).reshape(-1, 2)
    np.testing.assert_allclose(mean, ref.mean(0), rtol=1e-6)
    np.testing.assert_allclose(std, ref.std(0), rtol=1e-4)
    assert replay.nbytes(buf) == 6 * 2 * 2 * 4


# ---- checkpoints: the filled part, restored bit for bit or resized in time order ------------------

def _seeds(buf, n=2):
    return jax.tree.map(lambda x: np.stack([np.asarray(x)] * n), buf)


def test_filled_part_is_the_prefix_until_the_buffer_wraps_and_refill_restores_it_bitwise():
    buf = replay.insert(replay.init(_example(), capacity=8, num_envs=3), _traj(0, 3, 3))
    saved = replay.filled_part(_seeds(buf))
    assert saved.data["id"].shape == (2, 3, 3)  # 3 of 8 steps stored: only those are saved
    back = replay.refill(saved, 8)
    assert all(np.asarray(a).tobytes() == np.asarray(b).tobytes() and np.asarray(a).dtype == np.asarray(b).dtype
               for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(_seeds(buf))))
    full = replay.insert(buf, _traj(3, 7, 3))  # 10 steps in 8: wrapped, write position 2
    saved = replay.filled_part(_seeds(full))
    assert saved.data["id"].shape == (2, 8, 3)
    back = replay.refill(saved, 8)
    assert all(np.asarray(a).tobytes() == np.asarray(b).tobytes()
               for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(_seeds(full))))


def test_refill_to_another_capacity_keeps_time_order_and_the_newest_steps():
    """A resumed run of another length (buffer sized to the run): the stored steps oldest first, the
    newest that fit; sampling and insertion then behave as for a buffer filled in that order."""
    full = replay.insert(replay.insert(replay.init(_example(), capacity=5, num_envs=2), _traj(0, 4, 2)), _traj(4, 3, 2))
    saved = replay.filled_part(_seeds(full))  # steps 2..6 of each copy, wrapped at position 2
    bigger = replay.refill(saved, 9)
    assert bigger.data["id"][0, :5, 1].tolist() == [1002, 1003, 1004, 1005, 1006] and (bigger.data["id"][0, 5:] == 0).all()
    assert bigger.pos.tolist() == [5, 5] and bigger.size.tolist() == [5, 5]
    smaller = replay.refill(saved, 3)
    assert smaller.data["id"][1, :, 0].tolist() == [4, 5, 6]
    assert smaller.pos.tolist() == [0, 0] and smaller.size.tolist() == [3, 3]
    one = jax.tree.map(lambda x: jnp.asarray(x[0]), bigger)
    one = replay.insert(one, _traj(7, 2, 2))
    assert np.asarray(one.data["id"])[:7, 0].tolist() == [2, 3, 4, 5, 6, 7, 8]
