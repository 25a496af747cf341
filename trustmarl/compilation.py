"""How trustmarl's programs are compiled on the CPU: a straight-line Threefry lowering.

JAX's default random numbers come from the Threefry-2x32 hash (Salmon et al. 2011, "Parallel random
numbers: as easy as 1, 2, 3", 20 rounds). On the CPU, JAX lowers each hash to a 5-iteration
``while`` loop to keep programs small. Inside a training loop that draws random numbers at every
environment step (action sampling, key splits, automatic resets), every such loop costs dozens of
small runtime operations per step: on MPE simple_spread at JaxMARL's settings, a profiled update
had 107k trace events, 29k of them these loops' copies; written out, 30k (``benchmarks/README.md``).

:func:`straight_line_threefry` registers a CPU lowering of the same hash written out round by
round, as JAX already does on accelerators. The random numbers are **bit for bit** the same
(``tests/algos/test_compilation.py`` compares both lowerings); only the compiled program changes:
fewer runtime operations, and small loops (epochs, minibatches) no longer need unrolling to be fast,
so compilation is shorter too. It is installed when :mod:`trustmarl.algos` is imported (building
any algorithm does), affects programs lowered after that (in this process, also code that is not trustmarl's; results are unchanged), and
can be turned off with the environment variable ``TRUSTMARL_ROLLED_THREEFRY=1`` or
``straight_line_threefry(False)``.

The lowering goes through JAX internals (``jax.interpreters.mlir._platform_specific_lowerings`` and
``register_lowering(..., inline=False)``, JAX 0.7 and later). They are looked for before use; where a JAX
lacks them or has them in another form, :func:`install_default` keeps JAX's own lowering (the same
random numbers, slower CPU programs) and says so in one warning.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import warnings

import numpy as np

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))  # Salmon et al. 2011, Table 4 (Threefry-2x32)
_PARITY = np.uint32(0x1BD11BDA)  # key-schedule parity constant (Threefish, Ferguson et al. 2010)
_installed: dict[str, object] = {}


def threefry2x32_straight(key1, key2, x1, x2):
    """Threefry-2x32 with 20 rounds, written out: ``(key1, key2)`` hash the counters ``(x1, x2)``.

    Every round is ``x0 += x1; x1 = rotl(x1, r) ^ x0``; a key is injected every 4 rounds.
    """
    import jax.numpy as jnp
    from jax import lax

    def rotl(v, r):
        return lax.shift_left(v, np.uint32(r)) | lax.shift_right_logical(v, np.uint32(32 - r))

    ks = (key1, key2, key1 ^ key2 ^ _PARITY)
    x0, x1 = x1 + ks[0], x2 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = rotl(x1, r) ^ x0
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + jnp.asarray(i + 1, np.uint32)
    return x0, x1


class UnsupportedJax(RuntimeError):
    """This JAX lacks the internals the straight-line lowering registers itself through (or has them in
    another form)."""


def _hooks():
    """``(threefry2x32_p, mlir, lowering table)``, after checking the internals have the form used here."""
    try:
        from jax.extend.random import threefry2x32_p
        from jax.interpreters import mlir
    except ImportError as e:
        raise UnsupportedJax(f"cannot import the Threefry primitive or the MLIR lowering module ({e})") from None
    table = getattr(mlir, "_platform_specific_lowerings", None)
    if not hasattr(table, "get"):
        raise UnsupportedJax("jax.interpreters.mlir._platform_specific_lowerings is missing")
    for name in ("register_lowering", "lower_fun"):
        if not callable(getattr(mlir, name, None)):
            raise UnsupportedJax(f"jax.interpreters.mlir.{name} is missing")
    try:
        params = inspect.signature(mlir.register_lowering).parameters
    except (TypeError, ValueError):
        params = {}
    if "inline" not in params:
        raise UnsupportedJax("jax.interpreters.mlir.register_lowering takes no inline argument (JAX before 0.7)")
    entry = table.get("cpu", {}).get(threefry2x32_p)
    if entry is not None and not hasattr(entry, "rule"):
        raise UnsupportedJax("the CPU lowering table holds rules in an unknown form")
    return threefry2x32_p, mlir, table


def straight_line_threefry(enable: bool = True) -> bool:
    """Lower Threefry on the CPU round by round (``enable``) or restore JAX's rolled loop.

    Returns whether the straight-line lowering is now in place. Programs already compiled keep the
    lowering they were compiled with. Raises :class:`UnsupportedJax` (changing nothing) where JAX's
    internals differ from what this module uses.
    """
    threefry2x32_p, mlir, table = _hooks()
    if "rolled" not in _installed:  # JAX's own CPU rule, to restore it
        _installed["rolled"] = table.get("cpu", {}).get(threefry2x32_p)
    if enable:
        mlir.register_lowering(threefry2x32_p, mlir.lower_fun(threefry2x32_straight, multiple_results=True), platform="cpu",
                               inline=False)
    elif _installed["rolled"] is not None:
        entry = _installed["rolled"]
        mlir.register_lowering(threefry2x32_p, entry.rule, platform="cpu", inline=getattr(entry, "inline", True))
    _installed["enabled"] = enable
    return enable


@contextlib.contextmanager
def rolled_threefry():
    """Lower (and so compile) inside the block with JAX's rolled Threefry loop, then restore.

    For programs that run once, such as initialisation, where the loop's smaller program compiles
    faster and its runtime cost does not matter. Call the jitted function inside the block (lowering
    happens at the first call); the compiled program keeps its lowering afterwards.
    """
    enabled = bool(_installed.get("enabled"))
    if enabled:
        straight_line_threefry(False)
    try:
        yield
    finally:
        if enabled:
            straight_line_threefry(True)


def install_default() -> None:
    """What ``import trustmarl.algos`` does: the straight-line lowering unless ``TRUSTMARL_ROLLED_THREEFRY=1``;
    JAX's own lowering, with one warning, where JAX's internals differ from what this module uses."""
    if os.environ.get("TRUSTMARL_ROLLED_THREEFRY", "") not in ("", "0"):
        return
    try:
        straight_line_threefry(True)
    except (UnsupportedJax, ImportError, AttributeError, TypeError) as e:
        if not _installed.get("warned"):
            _installed["warned"] = True
            import jax

            warnings.warn(
                f"trustmarl: JAX {jax.__version__} differs from what trustmarl.compilation expects ({e}); keeping "
                "JAX's own Threefry lowering: the same random numbers, slower CPU programs "
                "(TRUSTMARL_ROLLED_THREEFRY=1 chooses it without this warning)",
                RuntimeWarning, stacklevel=2,
            )


# ---- a persistent compilation cache for the command line ---------------------------------------------------------

CACHE_ENV = "TRUSTMARL_COMPILATION_CACHE"
CACHE_MAX_BYTES = 2 * 1024**3  # least recently used programs are deleted beyond this (JAX's jax_compilation_cache_max_size)


def default_cache_dir() -> str:
    """``$XDG_CACHE_HOME/trustmarl/jax`` (``~/.cache/trustmarl/jax`` without it)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "trustmarl", "jax")


def enable_compilation_cache() -> str | None:
    """Point JAX's persistent compilation cache at a folder, as every ``trustmarl`` command does before its work.

    A command run again with the same settings (another seed, a resume, a sweep's next run) then loads its programs
    instead of compiling them: the same executables, so the same numbers, and a start in seconds.
    ``TRUSTMARL_COMPILATION_CACHE``: unset = :func:`default_cache_dir`, ``off`` (or ``0``, empty) = no cache, else the
    folder. A cache JAX already has (``JAX_COMPILATION_CACHE_DIR``, ``jax.config``) is kept. Programs that compile in
    under a second are not stored (JAX's default); beyond 2 GiB the least recently used ones are deleted. JAX is not
    imported here: the settings go through JAX's environment variables (read when JAX is imported, and inherited by
    processes started from this one, such as a sweep's workers), and through ``jax.config`` if JAX is imported. Returns the folder in use (``None``: none). Raises
    ``ConfigError`` for a folder that cannot be created or written.
    """
    import sys

    from trustmarl.validation import ConfigError

    jax = sys.modules.get("jax")
    current = jax.config.jax_compilation_cache_dir if jax is not None else os.environ.get("JAX_COMPILATION_CACHE_DIR")
    if current:
        return current
    value = os.environ.get(CACHE_ENV)
    if value is not None and value.strip().lower() in ("", "0", "off", "false", "no"):
        return None
    folder = os.path.expanduser(value) if value is not None else default_cache_dir()
    try:
        os.makedirs(folder, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PermissionError("not writable")
    except OSError as e:
        raise ConfigError(f"{CACHE_ENV}={folder}: the compilation cache folder cannot be created or written "
                          f"({getattr(e, 'strerror', None) or e}); set {CACHE_ENV} to a writable folder, or to 'off'") from None
    os.environ["JAX_COMPILATION_CACHE_DIR"] = folder  # this process's JAX if not yet imported; its worker processes
    os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"] = str(CACHE_MAX_BYTES)
    if jax is not None:
        jax.config.update("jax_compilation_cache_dir", folder)
        jax.config.update("jax_compilation_cache_max_size", CACHE_MAX_BYTES)
    return folder
