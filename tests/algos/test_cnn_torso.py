"""The small CNN torso for image observations (Wen et al. 2021: 8, 4 and 3 filters of 3x3, strides 4, 2, 1,
VALID): recomputed by hand in NumPy, the same under ``vmap`` over agents and seeds as applied one by one, and
refused with one line where the observations are not images of that size."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trustmarl.experiment.config import ConfigError, build_config
from trustmarl.networks import CNNTorso, CategoricalActor

SHAPE = (27, 27, 2)  # 27 -> 7 -> 3 -> 1 per side


def conv_by_hand(x, kernel, bias, stride):
    h = (x.shape[0] - 3) // stride + 1
    w = (x.shape[1] - 3) // stride + 1
    out = np.zeros((h, w, kernel.shape[-1]))
    for i in range(h):
        for j in range(w):
            patch = x[i * stride:i * stride + 3, j * stride:j * stride + 3, :]
            out[i, j] = np.einsum("abc,abcf->f", patch, kernel) + bias
    return out


def test_torso_is_three_valid_strided_convolutions_and_keeps_extra_inputs():
    size = int(np.prod(SHAPE))
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (size + 2,)))  # an image and a 2-input agent id
    torso = CNNTorso(SHAPE)
    p = jax.jit(torso.init)(jax.random.PRNGKey(1), x)
    y = np.asarray(jax.jit(torso.apply)(p, x))
    h = x[:size].reshape(SHAPE).astype(np.float64)
    for k, stride in zip(range(3), (4, 2, 1)):
        c = jax.tree.map(lambda v: np.asarray(v, np.float64), p["params"][f"Conv_{k}"])
        h = conv_by_hand(h, c["kernel"], c["bias"], stride)
    assert h.shape == (1, 1, 3)
    np.testing.assert_allclose(y, np.concatenate([h.reshape(-1), x[size:]]), rtol=1e-4, atol=1e-5)


def test_actor_with_the_torso_under_vmap_over_seeds_and_agents_equals_one_by_one():
    size = int(np.prod(SHAPE))
    actor = CategoricalActor(5, (16,), "relu", image_shape=SHAPE)
    seeds, agents = 3, 2
    keys = jax.random.split(jax.random.PRNGKey(2), seeds * agents).reshape(seeds, agents, 2)
    x = jax.random.uniform(jax.random.PRNGKey(3), (seeds, 4, agents, size))  # [seed, batch, agent, obs]
    avail = jnp.ones((4, 5), bool)
    params = jax.jit(jax.vmap(jax.vmap(lambda k: actor.init(k, x[0, :, 0], avail))))(keys)  # [seed, agent, ...]
    per_agent = jax.vmap(actor.apply, in_axes=(0, 1, None), out_axes=1)  # agents: params [agent], obs [batch, agent]
    batched = np.asarray(jax.jit(jax.vmap(per_agent, in_axes=(0, 0, None)))(params, x, avail)[0])
    one = jax.jit(actor.apply)
    for s in range(seeds):
        for i in range(agents):
            p = jax.tree.map(lambda v, s=s, i=i: v[s, i], params)
            np.testing.assert_allclose(batched[s, :, i], np.asarray(one(p, x[s, :, i], avail)[0]), rtol=1e-5, atol=1e-6)
    assert np.abs(batched[0, :, 0] - batched[1, :, 0]).max() > 1e-4  # seeds differ


@pytest.mark.parametrize("shape,needle", [([84, 84, 1], "needs image observations of 7056 inputs"),
                                          ([8, 8, 1], "too small for the CNN torso"),
                                          ([84, 84], "must be \\[H, W, C\\]")])
def test_image_shape_on_the_wrong_env_is_refused(shape, needle):
    from trustmarl.algos import make_algorithm

    with pytest.raises(ConfigError, match=needle):
        make_algorithm(build_config("ippo", "mpe/simple_spread", {"algo.image_shape": shape}))
