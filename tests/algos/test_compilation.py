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
    fns, outs, hlos = {}, {}, {}
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
