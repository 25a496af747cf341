"""Pickle-free checkpoints of a training-state pytree.

A checkpoint is one ``.npz`` file (``np.savez``; read back with ``allow_pickle=False``) holding
every leaf of the state as ``leaf_00000, leaf_00001, ...`` plus a ``__meta__`` entry: a JSON text
(stored as bytes) with the key path, shape and dtype of every leaf and the run counters. A JSON
sidecar next to it repeats the counters for people and scripts. Files are written to a temporary
name and moved into place with ``os.replace``, so a run killed while saving keeps the previous
checkpoint intact. Loading needs a *template* state (e.g. ``jax.eval_shape`` of ``init``) to
rebuild the pytree; every key path, shape and dtype must match it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import jax
import numpy as np

FORMAT_VERSION = 1
_META = "__meta__"


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or does not fit the expected state."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write(path: Path, write) -> None:
    """Call ``write(file)`` on a temporary file in ``path``'s folder, then ``fsync`` and ``os.replace`` it
    onto ``path``: a process killed meanwhile leaves the previous ``path`` intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # as open() would create it (mkstemp's 0600 would hide run files)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _is_prng_key(x: Any) -> bool:
    dtype = getattr(x, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _leaf_to_numpy(x: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """A leaf as a plain numpy array plus what is needed to restore its exact dtype."""
    info: dict[str, Any] = {}
    if _is_prng_key(x):  # typed PRNG keys (jax.random.key) are stored as their raw key data
        info["prng_impl"] = str(jax.random.key_impl(x))
        x = jax.random.key_data(x)
    arr = np.asarray(jax.device_get(x))
    info["dtype"] = str(arr.dtype)
    info["shape"] = list(arr.shape)
    if arr.dtype.kind == "V" or arr.dtype.name not in np.sctypeDict:  # e.g. bfloat16: store the bits
        arr = arr.view(np.dtype(f"u{arr.dtype.itemsize}"))
        info["bits"] = True
    return arr, info


def save_checkpoint(path: Path, state: Any, counters: dict[str, Any], sidecar: bool = True) -> None:
    """Save the pytree ``state`` with JSON-serialisable ``counters`` to ``path`` (atomic), and the counters
    to a JSON ``sidecar`` beside it."""
    path = Path(path)
    leaves_with_paths, _ = jax.tree_util.tree_flatten_with_path(state)
    arrays: dict[str, np.ndarray] = {}
    leaves_meta = []
    for i, (key_path, leaf) in enumerate(leaves_with_paths):
        arr, info = _leaf_to_numpy(leaf)
        arrays[f"leaf_{i:05d}"] = arr
        leaves_meta.append({"path": jax.tree_util.keystr(key_path), **info})
    meta = {"format": FORMAT_VERSION, "counters": counters, "leaves": leaves_meta}
    arrays[_META] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    atomic_write(path, lambda f: np.savez(f, **arrays))  # streamed to the file: no second copy in memory
    if sidecar:
        atomic_write_text(path.with_suffix(".json"), json.dumps({"format": FORMAT_VERSION, **counters}, indent=2) + "\n")


def read_meta(path: Path) -> dict[str, Any]:
    """The metadata (``counters`` and ``leaves``) stored inside a checkpoint."""
    with _open(path) as data:
        return _meta(data, path)


def load_checkpoint(path: Path, template: Any, flexible_axis: int | None = None,
                    ignore: tuple[str, ...] = ()) -> tuple[Any, dict[str, Any]]:
    """Load a checkpoint into the structure of ``template``; returns ``(state, counters)``.

    ``template`` may hold arrays or ``jax.ShapeDtypeStruct`` leaves. Raises ``CheckpointError``
    naming the first key path whose presence, shape or dtype does not match. ``flexible_axis``: a stored
    leaf may differ from the template in the length of this axis (a replay buffer saved trimmed to its
    filled part); the caller fits it. ``ignore``: stored leaves whose key path starts with one of these
    are skipped (the replay buffer inside a single-file checkpoint, when only the policy is wanted).
    """
    path = Path(path)
    expected, treedef = jax.tree_util.tree_flatten_with_path(template)
    with _open(path) as data:
        meta = _meta(data, path)
        stored = [(i, leaf) for i, leaf in enumerate(meta["leaves"]) if not leaf["path"].startswith(ignore or "\0")]
        want_paths = [jax.tree_util.keystr(p) for p, _ in expected]
        have_paths = [leaf["path"] for _, leaf in stored]
        if want_paths != have_paths:
            missing = sorted(set(want_paths) - set(have_paths))
            extra = sorted(set(have_paths) - set(want_paths))
            raise CheckpointError(
                f"checkpoint {path} does not fit this algorithm's state: "
                f"missing {missing[:5] or 'nothing'}, unexpected {extra[:5] or 'nothing'}"
                + ("" if missing or extra else " (leaf order differs)")
            )
        leaves = []
        for (_, want), (i, info) in zip(expected, stored):
            arr = data[f"leaf_{i:05d}"]
            leaves.append(_restore_leaf(arr, info, want, path, flexible_axis))
    return jax.tree_util.tree_unflatten(treedef, leaves), meta["counters"]


def _restore_leaf(arr: np.ndarray, info: dict[str, Any], want: Any, path: Path, flexible_axis: int | None = None) -> Any:
    name = info["path"]
    if info.get("bits"):
        arr = arr.view(np.dtype(jax.numpy.dtype(info["dtype"])))
    if "prng_impl" in info:
        if not _is_prng_key(want):
            raise CheckpointError(f"checkpoint {path}: {name} is a typed PRNG key but the state expects {want.dtype}")
        key = jax.random.wrap_key_data(arr, impl=info["prng_impl"])
        if tuple(key.shape) != tuple(want.shape):
            raise CheckpointError(f"checkpoint {path}: {name} has shape {key.shape}, expected {tuple(want.shape)}")
        return key
    if _is_prng_key(want):
        raise CheckpointError(f"checkpoint {path}: {name} is stored as {arr.dtype} but the state expects a PRNG key")
    have, shape = list(arr.shape), list(want.shape)
    if flexible_axis is not None and len(have) == len(shape) > flexible_axis:
        have[flexible_axis] = shape[flexible_axis]
    if have != shape:
        raise CheckpointError(f"checkpoint {path}: {name} has shape {tuple(arr.shape)}, expected {tuple(want.shape)}")
    if flexible_axis is not None:
        if np.dtype(arr.dtype) != np.dtype(want.dtype):
            raise CheckpointError(f"checkpoint {path}: {name} has dtype {arr.dtype}, expected {want.dtype}")
        return arr  # numpy: the caller fits it to the template and moves it to the device once
    if np.dtype(arr.dtype) != np.dtype(want.dtype):
        raise CheckpointError(f"checkpoint {path}: {name} has dtype {arr.dtype}, expected {want.dtype}")
    return jax.numpy.asarray(arr)


def _open(path: Path):
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001  (zip or format errors)
        raise CheckpointError(f"checkpoint {path} is unreadable: {e}") from None


def _meta(data, path: Path) -> dict[str, Any]:
    if _META not in data.files:
        raise CheckpointError(f"checkpoint {path} has no metadata (not a trustmarl checkpoint)")
    meta = json.loads(bytes(data[_META]).decode("utf-8"))
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format {meta.get('format')}, expected {FORMAT_VERSION}")
    return meta
