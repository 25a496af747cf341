"""Policy and value networks (Flax) and the action distributions they parameterise.

Distributions are plain functions of their parameters so that losses, KL/TV diagnostics and the
HATRPO Fisher-vector products all use one definition:

- categorical: parameter = log-probabilities over actions (unavailable actions at ``MASKED_LOGP``);
- diagonal Gaussian: parameters = (mean, log_std), log_std state-independent and learned.

Recurrent actors (:class:`RecurrentActor`) put a GRU cell between an MLP encoder and the head of a
feed-forward actor; they map ``(hidden, obs, avail, reset) -> (hidden', dist)``, and :func:`unroll`
runs any such step function over a time axis with episode resets. Critics are always feed-forward.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from trustmarl.initializers import orthogonal  # LAPACK-free: avoids an XLA:CPU deadlock

MASKED_LOGIT = -1e9  # logit of an unavailable action: finite, so no NaN in gradients


def _act(name: str):
    return {"tanh": nn.tanh, "relu": nn.relu, "gelu": nn.gelu}[name]


class MLP(nn.Module):
    hidden_sizes: Sequence[int]
    activation: str = "tanh"
    layer_norm: bool = False

    @nn.compact
    def __call__(self, x):
        for h in self.hidden_sizes:
            x = nn.Dense(h, kernel_init=orthogonal(np.sqrt(2.0)), bias_init=nn.initializers.zeros)(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = _act(self.activation)(x)
        return x


class CategoricalActor(nn.Module):
    """Returns masked log-probabilities ``[..., n_actions]``."""

    n_actions: int
    hidden_sizes: Sequence[int]
    activation: str = "tanh"
    layer_norm: bool = False
    head_gain: float = 0.01

    @nn.compact
    def __call__(self, obs, avail):
        h = MLP(self.hidden_sizes, self.activation, self.layer_norm)(obs)
        logits = nn.Dense(self.n_actions, kernel_init=orthogonal(self.head_gain), bias_init=nn.initializers.zeros)(h)
        logits = jnp.where(avail, logits, MASKED_LOGIT)
        return (jax.nn.log_softmax(logits, axis=-1),)


class GaussianActor(nn.Module):
    """Returns ``(mean, log_std)``, each ``[..., action_dim]``; log_std does not depend on the input."""

    action_dim: int
    hidden_sizes: Sequence[int]
    activation: str = "tanh"
    layer_norm: bool = False
    head_gain: float = 0.01
    log_std_init: float = -0.5

    @nn.compact
    def __call__(self, obs, avail):
        del avail
        h = MLP(self.hidden_sizes, self.activation, self.layer_norm)(obs)
        mean = nn.Dense(self.action_dim, kernel_init=orthogonal(self.head_gain), bias_init=nn.initializers.zeros)(h)
        log_std = self.param("log_std", nn.initializers.constant(self.log_std_init), (self.action_dim,))
        return mean, jnp.broadcast_to(log_std, mean.shape)


class Critic(nn.Module):
    hidden_sizes: Sequence[int]
    activation: str = "tanh"
    layer_norm: bool = False

    @nn.compact
    def __call__(self, x):
        h = MLP(self.hidden_sizes, self.activation, self.layer_norm)(x)
        return nn.Dense(1, kernel_init=orthogonal(1.0), bias_init=nn.initializers.zeros)(h)[..., 0]


class RecurrentActor(nn.Module):
    """MLP encoder -> GRU cell -> ``head`` (a feed-forward actor with ``hidden_sizes=()``).

    Called as ``(hidden [..., gru_size], obs, avail, reset [..., 1]) -> (hidden', dist)``: where
    ``reset`` is true the incoming hidden state is replaced by zeros (the observation is the first
    of a new episode), then the cell advances it by one step.
    """

    head: nn.Module
    hidden_sizes: Sequence[int]
    gru_size: int = 64
    activation: str = "tanh"
    layer_norm: bool = False

    @nn.compact
    def __call__(self, hidden, obs, avail, reset):
        x = MLP(self.hidden_sizes, self.activation, self.layer_norm)(obs)
        hidden = jnp.where(reset, jnp.zeros_like(hidden), hidden)
        hidden, y = nn.GRUCell(self.gru_size, recurrent_kernel_init=orthogonal())(hidden, x)  # LAPACK-free init
        return hidden, self.head(y, avail)


def unroll(step: Callable[..., tuple[Any, Any]], hidden: Any, inputs: Any, reset: jax.Array) -> tuple[Any, Any]:
    """Run ``step(hidden, inputs_t, reset_t) -> (hidden, out_t)`` over the leading (time) axis.

    ``inputs`` (a pytree) and ``reset`` are time-major ``[L, ...]``; ``hidden`` is the state entering
    step 0 (before its reset flag is applied). Returns the final hidden state and the stacked outputs
    ``[L, ...]``; equal to a Python loop over t, but one ``lax.scan``.
    """
    return jax.lax.scan(lambda h, xr: step(h, xr[0], xr[1]), hidden, (inputs, reset))


# ---- distributions ---------------------------------------------------------------------------

def dist_sample(kind: str, dist: tuple, key: jax.Array) -> jax.Array:
    if kind == "discrete":
        return jax.random.categorical(key, dist[0], axis=-1).astype(jnp.int32)
    mean, log_std = dist
    return mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)


def dist_mode(kind: str, dist: tuple) -> jax.Array:
    if kind == "discrete":
        return jnp.argmax(dist[0], axis=-1).astype(jnp.int32)
    return dist[0]


def dist_log_prob(kind: str, dist: tuple, action: jax.Array) -> jax.Array:
    """Log-probability of ``action``; for Gaussians summed over action dimensions (joint density)."""
    if kind == "discrete":
        return jnp.take_along_axis(dist[0], action[..., None], axis=-1)[..., 0]
    mean, log_std = dist
    z = (action - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z * z - log_std - 0.5 * jnp.log(2.0 * jnp.pi), axis=-1)


def dist_entropy(kind: str, dist: tuple) -> jax.Array:
    if kind == "discrete":
        logp = dist[0]
        return -jnp.sum(jnp.exp(logp) * logp, axis=-1)
    _, log_std = dist
    return jnp.sum(log_std + 0.5 * jnp.log(2.0 * jnp.pi * jnp.e), axis=-1)
