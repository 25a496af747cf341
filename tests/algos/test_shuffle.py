"""Minibatch shuffling (common.shuffle_order): a permutation, and a uniform one."""

import jax
import numpy as np
import pytest

from trustmarl.algos.on_policy.common import shuffle_order


@pytest.mark.parametrize("n", [1, 2, 5, 512, 2048, 3000, 4096, 5000])
def test_shuffle_order_is_a_permutation(n):
    for seed in range(3):
        order = np.asarray(shuffle_order(jax.random.PRNGKey(seed), n))
        assert order.dtype == np.int32
        np.testing.assert_array_equal(np.sort(order), np.arange(n))


def test_shuffle_order_is_uniform():
    """Where each element lands, over 4000 shuffles of 8 and of 2048: every (element, position
    bucket) count within 5 standard deviations of its expectation, and different keys differ."""
    keys = jax.random.split(jax.random.PRNGKey(7), 4000)
    small = np.asarray(jax.vmap(lambda k: shuffle_order(k, 8))(keys))  # [4000, 8]
    counts = np.stack([(small == i).sum(0) for i in range(8)])  # element i at position j
    expected, sd = 4000 / 8, np.sqrt(4000 * (1 / 8) * (7 / 8))
    assert np.abs(counts - expected).max() < 5 * sd, counts
    big = np.asarray(jax.vmap(lambda k: shuffle_order(k, 2048))(keys[:500]))  # [500, 2048]
    buckets = np.argsort(big, axis=1) // 256  # the position bucket (of 8) of every element
    for element in (0, 1, 1024, 2047):
        c = np.bincount(buckets[:, element], minlength=8)
        assert np.abs(c - 500 / 8).max() < 5 * np.sqrt(500 / 8 * 7 / 8), (element, c)
    assert len({tuple(row[:16]) for row in big}) == 500
