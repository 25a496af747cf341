"""Policy and value networks (Flax).

Actors output the parameters of their action distribution (:mod:`trustmarl.distributions`: masked
log-probabilities for a categorical, ``(mean, log_std)`` for a diagonal Gaussian with a learned,
state-independent log_std); off-policy actors output raw logits or deterministic actions.

Recurrent actors (:class:`RecurrentActor`) put a GRU cell between an MLP encoder and the head of a
feed-forward actor; they map ``(hidden, obs, avail, reset) -> (hidden', dist)``, and :func:`unroll`
runs any such step function over a time axis with episode resets. Critics are always feed-forward.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_batching import custom_vmap

from trustmarl.initializers import orthogonal  # LAPACK-free: avoids an XLA:CPU deadlock

from trustmarl.distributions import MASKED_LOGIT, gumbel_softmax  # noqa: E402,F401  (re-exported: networks mask with it;
# the off-policy actors sample with it)


ACTIVATIONS = ("tanh", "relu", "gelu", "leaky_relu")


def _act(name: str):
    """The activation ``name``; ``leaky_relu`` has slope 0.01 (PyTorch's default, as in the MAAC/MADDPG code),
    ``leaky_relu_0.2`` slope 0.2 (TensorFlow's default, as in Wen et al. 2021's code)."""
    return {"tanh": nn.tanh, "relu": nn.relu, "gelu": nn.gelu, "leaky_relu": lambda x: nn.leaky_relu(x, 0.01),
            "leaky_relu_0.2": lambda x: nn.leaky_relu(x, 0.2)}[name]


@custom_vmap
def _transposed(x: jax.Array) -> jax.Array:
    """``x.T`` for ``x`` ``[rows, in]``; under a ``vmap`` of more than one, materialised
    (``optimization_barrier``), so that XLA keeps it as an operand instead of folding it back into
    the product (see :func:`dense`)."""
    return x.T


@_transposed.def_vmap
def _transposed_batched(axis_size, in_batched, x):
    if not in_batched[0]:  # called under a vmap that does not map x
        return x.T, False
    xt = jnp.swapaxes(x, -1, -2)
    if axis_size == 1:  # XLA drops a batch of one: JAX's own program is the faster one there
        return xt, True
    return jax.lax.optimization_barrier(xt), True


@jax.custom_jvp
def dense(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """``x @ kernel + bias`` for ``x`` ``[..., in]``, with a weight gradient that XLA:CPU runs fast
    when the layer is ``vmap``ped (over several seeds, or over agents with separate parameters).

    JAX's rule computes the kernel's gradient by contracting the sample axis of ``x`` in place; for a
    batched (vmapped) layer XLA:CPU sends that product to a slow generic kernel (1.3x slower updates
    with 8 vmapped seeds, ``benchmarks/profile_update.py --ab``). Here the tangent's weight term is
    ``(x^T)^T @ dkernel`` with ``x^T`` materialised when batched, so reverse mode computes a plain
    batched ``x^T @ g``. Unbatched, ``x^T`` folds back and the program is JAX's own (which is the
    faster one there). Values and gradients equal JAX's up to float rounding; forward mode (HATRPO's
    Fisher-vector products) works as usual.
    """
    return x @ kernel + bias


@dense.defjvp
def _dense_jvp(primals, tangents):
    x, kernel, bias = primals
    dx, dkernel, dbias = tangents
    y = x @ kernel + bias
    xt = _transposed(x.reshape(-1, x.shape[-1]))  # [in, samples]
    dy = dx @ kernel + (xt.T @ dkernel).reshape(y.shape) + dbias
    return y, dy


class Dense(nn.Module):
    """``nn.Dense`` (same parameters, names and initialisation) computed with :func:`dense`."""

    features: int
    kernel_init: Callable = nn.initializers.lecun_normal()
    bias_init: Callable = nn.initializers.zeros

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", self.kernel_init, (jnp.shape(x)[-1], self.features), jnp.float32)
        bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
        if plain_dense():
            return x @ kernel + bias
        return dense(x, kernel, bias)


def plain_dense() -> bool:
    """``TRUSTMARL_PLAIN_DENSE=1`` (read when a network is traced): :class:`Dense` computes ``x @ kernel + bias``
    with JAX's own gradient rule instead of :func:`dense`'s (the same values, slower vmapped updates on the CPU)."""
    return os.environ.get("TRUSTMARL_PLAIN_DENSE", "") not in ("", "0")


class CNNTorso(nn.Module):
    """Wen et al. 2021's small CNN for image observations: the first ``H*W*C`` inputs reshaped to ``image_shape``
    ``(H, W, C)``, convolutions of 8, 4 and 3 filters of 3x3 with strides 4, 2 and 1 (VALID, no activation in
    between, as the authors' code), flattened; any further inputs (an agent id, a time feature) are appended."""

    image_shape: tuple[int, int, int]

    @nn.compact
    def __call__(self, x):
        size = int(np.prod(self.image_shape))
        img = x[..., :size].reshape(x.shape[:-1] + tuple(self.image_shape))
        for features, stride in ((8, 4), (4, 2), (3, 1)):
            img = nn.Conv(features, (3, 3), strides=(stride, stride), padding="VALID")(img)
        return jnp.concatenate([img.reshape(x.shape[:-1] + (-1,)), x[..., size:]], axis=-1)


class MLP(nn.Module):
    hidden_sizes: Sequence[int]
    activation: str = "tanh"
    layer_norm: bool = False
    image_shape: tuple[int, int, int] | None = None  # image observations: the small CNN torso first (CNNTorso)

    @nn.compact
    def __call__(self, x):
        if self.image_shape is not None:
            x = CNNTorso(tuple(self.image_shape))(x)
        for h in self.hidden_sizes:
            x = Dense(h, kernel_init=orthogonal(np.sqrt(2.0)), bias_init=nn.initializers.zeros)(x)
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
    output_activation: str | None = None  # an activation on the logits (Wen et al. 2021's code applies one)
    image_shape: tuple[int, int, int] | None = None  # image observations: the CNN torso before the MLP

    @nn.compact
    def __call__(self, obs, avail):
        h = MLP(self.hidden_sizes, self.activation, self.layer_norm, self.image_shape)(obs)
        logits = Dense(self.n_actions, kernel_init=orthogonal(self.head_gain), bias_init=nn.initializers.zeros)(h)
        if self.output_activation is not None:
            logits = _act(self.output_activation)(logits)
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
    output_activation: str | None = None  # an activation on the mean (Wen et al. 2021's code applies one)
    image_shape: tuple[int, int, int] | None = None  # image observations: the CNN torso before the MLP

    @nn.compact
    def __call__(self, obs, avail):
        del avail
        h = MLP(self.hidden_sizes, self.activation, self.layer_norm, self.image_shape)(obs)
        mean = Dense(self.action_dim, kernel_init=orthogonal(self.head_gain), bias_init=nn.initializers.zeros)(h)
        if self.output_activation is not None:
            mean = _act(self.output_activation)(mean)
        log_std = self.param("log_std", nn.initializers.constant(self.log_std_init), (self.action_dim,))
        return mean, jnp.broadcast_to(log_std, mean.shape)


class Critic(nn.Module):
    """A scalar value MLP on a flat input: V(s), V(o), or Q(x, a) on joint observations and actions."""

    hidden_sizes: Sequence[int]
    activation: str = "tanh"
    layer_norm: bool = False
    output_activation: str | None = None  # an activation on the value (Wen et al. 2021's code applies one)
    image_shape: tuple[int, int, int] | None = None  # image observations: the CNN torso before the MLP

    @nn.compact
    def __call__(self, x):
        h = MLP(self.hidden_sizes, self.activation, self.layer_norm, self.image_shape)(x)
        v = Dense(1, kernel_init=orthogonal(1.0), bias_init=nn.initializers.zeros)(h)[..., 0]
        return v if self.output_activation is None else _act(self.output_activation)(v)


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


# ---- off-policy networks ---------------------------------------------------------------------

class LogitsActor(nn.Module):
    """Discrete actor returning raw logits ``[..., n_actions]`` (masking is applied by the caller, so that
    regularisers see the network's own outputs)."""

    n_actions: int
    hidden_sizes: Sequence[int]
    activation: str = "leaky_relu"
    layer_norm: bool = False
    head_gain: float = 0.01

    @nn.compact
    def __call__(self, obs):
        h = MLP(self.hidden_sizes, self.activation, self.layer_norm)(obs)
        return Dense(self.n_actions, kernel_init=orthogonal(self.head_gain), bias_init=nn.initializers.zeros)(h)


class DeterministicActor(nn.Module):
    """Continuous deterministic actor: ``(pre_tanh, action)``, the action ``tanh`` squashed into ``[low, high]``."""

    action_dim: int
    hidden_sizes: Sequence[int]
    low: float = -1.0
    high: float = 1.0
    activation: str = "leaky_relu"
    layer_norm: bool = False
    head_gain: float = 0.01

    @nn.compact
    def __call__(self, obs):
        h = MLP(self.hidden_sizes, self.activation, self.layer_norm)(obs)
        u = Dense(self.action_dim, kernel_init=orthogonal(self.head_gain), bias_init=nn.initializers.zeros)(h)
        return u, self.low + (jnp.tanh(u) + 1.0) * 0.5 * (self.high - self.low)




class AttentionCritic(nn.Module):
    """The multi-head attention critic of MAAC (Iqbal & Sha 2019, Section 3.2 and Figure 1).

    Inputs per group ``g``: observations ``obs[g]`` ``[..., n_g, d_g]`` and one-hot (or continuous) actions
    ``act[g]`` ``[..., n_g, a_g]``. Per agent ``i`` (its own weights; agents of a group are stacked):
    a state-action encoder ``e_i = LeakyReLU(W_e [o_i, a_i])`` and a state encoder ``s_i = LeakyReLU(W_s o_i)``.
    Per head ``h`` (weights shared by all agents): key ``k_j = W_k e_j``, selector ``q_i = W_q s_i`` (no
    bias), value ``v_j = LeakyReLU(W_v e_j + b)``; agent ``i`` attends over every other agent ``j != i``
    of every group: ``alpha_ij = softmax_j(q_i . k_j / sqrt(d))``, ``x_i^h = sum_j alpha_ij v_j``
    (Iqbal & Sha 2019, eq. 6-7). A per-agent head gives ``Q_i(o, (., a_-i)) = W_2 LeakyReLU(W_1 [s_i, x_i])``,
    one value per own action ``[..., n_actions_i]`` (eq. 5 with the discrete-action output of their code).

    Returns ``(q_all, logits)``: per group ``[..., n_g, n_actions_g]``, and the attention logits
    ``q_i . k_j`` before scaling ``[..., heads, N, N]`` (zero on the diagonal), for the logit penalty of
    the critic loss (as in the authors' code) and for diagnostics.
    """

    group_sizes: Sequence[int]  # n_g
    n_actions: Sequence[int]  # output width per group
    hidden: int = 128
    heads: int = 4

    @nn.compact
    def __call__(self, obs: tuple, act: tuple):
        leaky = lambda x: nn.leaky_relu(x, 0.01)  # noqa: E731
        attend = self.hidden // self.heads

        def per_agent(name, features, inputs, n):
            """A Dense layer with one weight set per agent of a group (vmapped over the agent axis -2)."""
            layer = nn.vmap(nn.Dense, in_axes=-2, out_axes=-2, variable_axes={"params": 0},
                            split_rngs={"params": True}, axis_size=n)
            return layer(features, name=name)(inputs)

        e, s = [], []
        for g, (o, a, n) in enumerate(zip(obs, act, self.group_sizes)):
            e.append(leaky(per_agent(f"sa_enc_{g}", self.hidden, jnp.concatenate([o, a], axis=-1), n)))
            s.append(leaky(per_agent(f"s_enc_{g}", self.hidden, o, n)))
        e, s = jnp.concatenate(e, axis=-2), jnp.concatenate(s, axis=-2)  # [..., N, H]
        n_all = e.shape[-2]
        keys = nn.DenseGeneral((self.heads, attend), use_bias=False, name="key")(e)  # [..., N, heads, d]
        sel = nn.DenseGeneral((self.heads, attend), use_bias=False, name="selector")(s)
        val = leaky(nn.DenseGeneral((self.heads, attend), name="value")(e))
        logits = jnp.einsum("...ihd,...jhd->...hij", sel, keys)  # [..., heads, N, N], before the 1/sqrt(d) scaling
        others = ~jnp.eye(n_all, dtype=bool)
        weights = jax.nn.softmax(jnp.where(others, logits / jnp.sqrt(attend), -jnp.inf), axis=-1)
        x = jnp.einsum("...hij,...jhd->...ihd", weights, val).reshape(e.shape[:-1] + (self.heads * attend,))
        q, start = [], 0
        for g, (n, na) in enumerate(zip(self.group_sizes, self.n_actions)):
            inp = jnp.concatenate([s[..., start:start + n, :], x[..., start:start + n, :]], axis=-1)
            h = leaky(per_agent(f"q1_{g}", self.hidden, inp, n))
            q.append(per_agent(f"q2_{g}", na, h, n))
            start += n
        return tuple(q), jnp.where(others, logits, 0.0)
