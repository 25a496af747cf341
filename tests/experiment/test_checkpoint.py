"""Checkpoints: exact round trips without pickle, strict template checks, atomic writes."""

from __future__ import annotations

import json
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trustmarl.experiment import checkpoint as ck
from trustmarl.experiment.checkpoint import CheckpointError, load_checkpoint, read_meta, save_checkpoint


class Pair(NamedTuple):
    a: jax.Array
    b: jax.Array


def _state(seed: int = 0):
    rng = np.random.default_rng(seed)
    return {
        "params": {"dense/kernel": jnp.asarray(rng.normal(size=(3, 5)), jnp.float32), "bias": jnp.zeros(5)},
        "opt": (Pair(jnp.asarray(rng.normal(size=4), jnp.float32), jnp.int32(7)), [jnp.arange(3, dtype=jnp.int32)]),
        "mask": jnp.asarray(rng.random(6) > 0.5),
        "half": jnp.asarray(rng.normal(size=(2, 2)), jnp.bfloat16),
        "raw_key": jax.random.PRNGKey(seed),
        "typed_key": jax.random.split(jax.random.key(seed), 2),
        "steps": jnp.uint32(123456789),
    }


def _leaves_equal(x, y) -> bool:
    def raw(v):
        return np.asarray(jax.random.key_data(v)) if jnp.issubdtype(v.dtype, jax.dtypes.prng_key) else np.asarray(v)

    lx, tx = jax.tree_util.tree_flatten(x)
    ly, ty = jax.tree_util.tree_flatten(y)
    return tx == ty and all(
        a.dtype == b.dtype and a.shape == b.shape and raw(a).tobytes() == raw(b).tobytes() for a, b in zip(lx, ly)
    )


def test_round_trip_is_bitwise_exact(tmp_path):
    state = _state(1)
    path = tmp_path / "ckpt" / "last.npz"
    save_checkpoint(path, state, {"update": 12, "env_steps": 3072})
    loaded, counters = load_checkpoint(path, _state(2))  # a template with other values, same structure
    assert counters == {"update": 12, "env_steps": 3072}
    assert _leaves_equal(loaded, state)
    assert not _leaves_equal(_state(2), state)  # the comparison can fail


def test_template_may_be_shapes_only(tmp_path):
    state = _state(3)
    save_checkpoint(tmp_path / "c.npz", state, {"update": 1})
    loaded, _ = load_checkpoint(tmp_path / "c.npz", jax.eval_shape(lambda: _state(3)))
    assert _leaves_equal(loaded, state)


def test_file_is_plain_npz_without_pickle(tmp_path):
    save_checkpoint(tmp_path / "c.npz", _state(), {"update": 5})
    with np.load(tmp_path / "c.npz", allow_pickle=False) as data:  # would raise on object arrays
        assert all(data[k].dtype.kind != "O" for k in data.files)
        assert len(data.files) == len(jax.tree_util.tree_leaves(_state())) + 1  # leaves + metadata
    paths = [leaf["path"] for leaf in read_meta(tmp_path / "c.npz")["leaves"]]
    assert "['params']['dense/kernel']" in paths and "['opt'][0].a" in paths
    sidecar = json.loads((tmp_path / "c.json").read_text())
    assert sidecar["update"] == 5 and sidecar["format"] == ck.FORMAT_VERSION


@pytest.mark.parametrize(
    "change, needle",
    [
        (lambda s: {**s, "mask": jnp.zeros(7, bool)}, "['mask'] has shape (6,), expected (7,)"),
        (lambda s: {**s, "steps": jnp.int32(0)}, "['steps'] has dtype uint32, expected int32"),
        (lambda s: {**s, "extra": jnp.zeros(1)}, "missing [\"['extra']\"]"),
        (lambda s: {k: v for k, v in s.items() if k != "bias" and k != "half"}, "unexpected [\"['half']\"]"),
        (lambda s: {**s, "typed_key": jnp.zeros((2, 2), jnp.uint32)}, "['typed_key'] is a typed PRNG key"),
    ],
)
def test_mismatching_template_is_a_clear_error(tmp_path, change, needle):
    save_checkpoint(tmp_path / "c.npz", _state(), {"update": 1})
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "c.npz", change(_state()))
    assert needle in str(err.value)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.npz", _state())
    (tmp_path / "bad.npz").write_bytes(b"not a zip file")
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(tmp_path / "bad.npz", _state())
    np.savez(tmp_path / "foreign.npz", x=np.zeros(2))
    with pytest.raises(CheckpointError, match="not a trustmarl checkpoint"):
        load_checkpoint(tmp_path / "foreign.npz", _state())


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.npz"
    save_checkpoint(path, _state(1), {"update": 1})
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(ck.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, _state(2), {"update": 2})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["last.json", "last.npz"]  # no temporary files left
    loaded, counters = load_checkpoint(path, _state())
    assert counters["update"] == 1 and _leaves_equal(loaded, _state(1))
