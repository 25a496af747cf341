"""``matrix/differential``'s ``env.offset``: the same game in shifted coordinates, so that policies
initialised at mean 0 start at the paper's mu0 (used by ``trustmarl reproduce hatrpo-figure1``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from trustmarl.envs import make


def test_offset_shifts_the_actions_in_the_reward():
    key = jax.random.PRNGKey(0)
    for offset, actions, expected in [((0.0, 0.0), (0.5, -2.0), -1.0), ((-0.25, 0.25), (0.0, 0.0), -0.0625),
                                      ((-0.25, 0.25), (1.0, 1.0), 0.9375)]:
        env = make("matrix/differential", offset=offset)
        state, _ = env.reset(key)
        _, ts = env.step(key, state, (jnp.array([[actions[0]], [actions[1]]]),))
        assert float(ts.reward[0]) == pytest.approx(expected) and float(ts.reward[1]) == pytest.approx(expected)


def test_bad_offset_is_rejected():
    with pytest.raises(ValueError, match="offset must be two numbers"):
        make("matrix/differential", offset=(1.0,))
