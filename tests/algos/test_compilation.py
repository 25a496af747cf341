"""The straight-line Threefry lowering (trustmarl.compilation): same random numbers, no loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trustmarl.compilation import straight_line_threefry


def _draws(key):
    k1, k2, k3 = jax.random.split(key, 3)
    logits = jnp.log(jnp.array([0.1, 0.2, 0.3, 0.4]))
    return {
        "split": jax.random.split(k1, 7),
        "uniform": jax.random.uniform(k2, (5, 3)),
        "normal": jax.random.normal(k3, (1001,)),  # an odd count: the counter padding path
        "categorical": jax.random.categorical(k1, logits, shape=(64,)),
        "bits": jax.random.bits(k2, (4, 2), jnp.uint32),
        "fold_in": jax.random.fold_in(k3, 12345),
    }


@pytest.fixture
def rolled_then_straight():
    """Compile the draws with JAX's rolled lowering, then with the straight-line one; restore after."""
    keys = jax.random.split(jax.random.PRNGKey(2024), 4)
    outs, hlos = {}, {}
    for mode in (False, True):
        straight_line_threefry(mode)
        f = jax.jit(jax.vmap(_draws))  # a fresh jit object: lowered under the current rule
        lowered = f.lower(keys)
        hlos[mode] = lowered.compile().as_text()
        outs[mode] = jax.device_get(f(keys))
    straight_line_threefry(True)
    return outs, hlos


def test_straight_line_threefry_draws_the_same_bits(rolled_then_straight):
    outs, _ = rolled_then_straight
    for name in outs[False]:
        np.testing.assert_array_equal(np.asarray(outs[True][name]), np.asarray(outs[False][name]), err_msg=name)


def test_straight_line_threefry_compiles_without_a_loop(rolled_then_straight):
    _, hlos = rolled_then_straight
    assert " while(" in hlos[False]  # JAX's rolled CPU lowering: a loop per hash
    assert " while(" not in hlos[True]


def test_algorithms_install_the_straight_line_lowering():
    from trustmarl import algos

    algos.algo_names()
    from trustmarl import compilation

    assert compilation._installed.get("enabled") is True


def test_rolled_threefry_block_compiles_with_the_loop_and_restores():
    from trustmarl.compilation import rolled_threefry

    straight_line_threefry(True)
    key = jax.random.PRNGKey(3)
    with rolled_threefry():
        inside = jax.jit(lambda k: jax.random.normal(k, (9,))).lower(key).compile().as_text()
    after = jax.jit(lambda k: jax.random.normal(k, (9,))).lower(key).compile().as_text()
    assert " while(" in inside and " while(" not in after


# ---- a JAX whose internals differ: JAX's own lowering, one warning, a complete registry ----------------

_MISSING_INTERNALS = r"""
import json, warnings
import jax
from jax.interpreters import mlir

real = mlir.register_lowering
def register_lowering(prim, rule, platform=None):  # JAX before 0.7: no inline argument
    return real(prim, rule, platform=platform)
mlir.register_lowering = register_lowering

import trustmarl.compilation as compilation
calls = []
real_install = compilation.install_default
def failing_once():
    calls.append(1)
    if len(calls) == 1:
        raise RuntimeError("a module failed to import")
    real_install()
compilation.install_default = failing_once

from trustmarl import algos, catalog
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        algos.registered_names()
        first = "loaded"
    except RuntimeError as e:
        first = str(e)
    names = algos.registered_names()  # retried: not marked loaded after the failure
    compilation.install_default()  # a second attempt: no second warning
hlo = jax.jit(lambda k: jax.random.normal(k, (9,))).lower(jax.random.PRNGKey(0)).compile().as_text()
print(json.dumps({"first": first, "names": names, "catalog": sorted(catalog.algorithms()),
                  "warnings": [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)],
                  "enabled": compilation._installed.get("enabled"), "loop": " while(" in hlo}))
"""


def test_missing_jax_internals_fall_back_with_one_warning_and_a_complete_registry():
    """A ``register_lowering`` without ``inline`` (JAX before 0.7), and a first registry load that fails:
    the failed load is retried, every built-in algorithm is registered, JAX's own (looped) lowering stays,
    and exactly one warning names the reason."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "TRUSTMARL_ROLLED_THREEFRY"}
    out = subprocess.run([sys.executable, "-c", _MISSING_INTERNALS], cwd=root, env={**env, "JAX_PLATFORMS": "cpu"},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["first"] == "a module failed to import"
    assert res["names"] == res["catalog"] and "matrl" in res["names"] and "maac" in res["names"]
    assert len(res["warnings"]) == 1 and "inline" in res["warnings"][0] and "own Threefry lowering" in res["warnings"][0]
    assert res["enabled"] is None and res["loop"]


def test_plain_dense_opt_out(monkeypatch):
    """``TRUSTMARL_PLAIN_DENSE=1``: Dense traces JAX's own product (no custom rule), with the same values."""
    from trustmarl.networks import Dense

    layer = Dense(3)
    x = jnp.arange(8.0).reshape(2, 4)
    params = layer.init(jax.random.PRNGKey(0), x)
    custom = jax.make_jaxpr(lambda p: layer.apply(p, x))(params)
    monkeypatch.setenv("TRUSTMARL_PLAIN_DENSE", "1")
    plain = jax.make_jaxpr(lambda p: layer.apply(p, x))(params)
    assert "custom_jvp_call" in str(custom) and "custom_jvp_call" not in str(plain)
    np.testing.assert_allclose(jax.jit(lambda p: layer.apply(p, x))(params), np.asarray(x) @ np.asarray(params["params"]["kernel"]),
                               rtol=1e-6)
