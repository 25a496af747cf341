"""One action distribution object per action kind: what every family does with a policy's output.

A group of agents (``trustmarl.envs.base.AgentGroup``) has one action space; :func:`for_space` gives its
distribution object, and algorithms call methods on it instead of dispatching on the kind. Distribution
*parameters* stay plain tuples of arrays (so they sit in batches, buffers and pytrees):

- :class:`Categorical` (``Discrete(n)``): ``(logp,)``, log-probabilities ``[..., n]`` over the actions,
  unavailable actions at :data:`MASKED_LOGIT` (finite: no NaN in gradients);
- :class:`DiagGaussian` (``Box``): ``(mean, log_std)``, each ``[..., dim]``.

Every method is a pure ``jnp`` function, shape-polymorphic over leading axes (samples, agents, seeds).
The categorical object also holds what discrete off-policy learners need: Gumbel-softmax samples (Jang
et al. 2017; Maddison et al. 2017), epsilon-mixtures with the uniform policy over available actions
(epsilon-greedy exploration) and the uniform warm-up policy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from trustmarl.envs.base import Box, Discrete
from trustmarl.trust.divergence import categorical_kl, categorical_tv, gaussian_kl, tv_from_ratio

MASKED_LOGIT = -1e9  # logit of an unavailable action: finite, so no NaN in gradients


class Categorical:
    """A categorical distribution over ``n`` actions with an available-action mask."""

    kind = "discrete"

    def __init__(self, n: int):
        self.n = int(n)

    @property
    def width(self) -> int:
        """Width of an action as a critic input (its one-hot)."""
        return self.n

    # ---- parameters ------------------------------------------------------------------------
    @staticmethod
    def masked_logits(logits: jax.Array, avail: jax.Array) -> jax.Array:
        return jnp.where(avail, logits, MASKED_LOGIT)

    def from_logits(self, logits: jax.Array, avail: jax.Array) -> tuple:
        """``(logp,)``: masked log-softmax of raw logits."""
        return (jax.nn.log_softmax(self.masked_logits(logits, avail), axis=-1),)

    # ---- the distribution ------------------------------------------------------------------
    def sample(self, dist: tuple, key: jax.Array) -> jax.Array:
        return jax.random.categorical(key, dist[0], axis=-1).astype(jnp.int32)

    def mode(self, dist: tuple) -> jax.Array:
        return jnp.argmax(dist[0], axis=-1).astype(jnp.int32)

    def log_prob(self, dist: tuple, action: jax.Array) -> jax.Array:
        return jnp.take_along_axis(dist[0], action[..., None], axis=-1)[..., 0]

    def entropy(self, dist: tuple) -> jax.Array:
        """``-sum_a p(a) log p(a)``; masked actions (probability ~0) add nothing."""
        logp = dist[0]
        return -jnp.sum(jnp.exp(logp) * logp, axis=-1)

    def kl(self, old: tuple, new: tuple, avail: jax.Array | None = None) -> jax.Array:
        """Exact ``KL(old || new)`` per sample over the available actions."""
        return categorical_kl(old[0], new[0], avail)

    def tv(self, old: tuple, new: tuple, avail: jax.Array | None = None, log_ratio: jax.Array | None = None) -> jax.Array:
        """Exact total variation per sample (``log_ratio`` is not needed for a categorical)."""
        return categorical_tv(old[0], new[0], avail)

    def fisher(self, dist: tuple, tangent: tuple, weight: jax.Array) -> tuple:
        """The Fisher metric of ``dist`` applied to a tangent of its log-probabilities: ``p * d``, per sample
        weighted by ``weight`` (HATRPO's Fisher-vector products, Kuba et al. 2022, eq. 8)."""
        return (jnp.exp(dist[0]) * tangent[0] * weight[..., None],)

    # ---- actions as inputs and for exploration ----------------------------------------------
    def action_vector(self, action: jax.Array) -> jax.Array:
        """The one-hot of ``action`` (a critic input)."""
        return jax.nn.one_hot(action, self.n)

    def random(self, key: jax.Array, avail: jax.Array) -> jax.Array:
        """A uniformly random available action (``avail`` ``[..., n]``)."""
        return jax.random.categorical(key, jnp.where(avail, 0.0, -jnp.inf), axis=-1).astype(jnp.int32)

    def random_log_prob(self, avail: jax.Array) -> jax.Array:
        """Log-probability of any action under the uniform policy over the available ones."""
        return -jnp.log(jnp.maximum(jnp.sum(avail, axis=-1), 1))

    def epsilon_mixture(self, dist: tuple, epsilon, avail: jax.Array) -> tuple:
        """``(1 - eps) pi + eps uniform(available)`` as a distribution (epsilon-greedy / epsilon-softmax)."""
        uniform = jnp.where(avail, -jnp.log(jnp.maximum(jnp.sum(avail, -1, keepdims=True), 1)), MASKED_LOGIT)
        mixed = jnp.logaddexp(jnp.log1p(-epsilon) + dist[0], jnp.log(epsilon) + uniform)
        return (jnp.where(avail, mixed, MASKED_LOGIT),)

    def gumbel_softmax(self, key: jax.Array, logits: jax.Array, temperature: float = 1.0, hard: bool = True) -> jax.Array:
        """A (straight-through) Gumbel-softmax sample ``[..., n]`` of (masked) logits (:func:`gumbel_softmax`).

        ``hard``: the forward value is the one-hot of ``argmax(logits + g)`` -- a sample of
        ``softmax(logits)`` whatever the temperature (the Gumbel-max trick) -- and the gradient that of the
        soft sample ``softmax((logits + g) / temperature)``. Masked actions (:data:`MASKED_LOGIT`) are never drawn.
        """
        return gumbel_softmax(key, logits, temperature, hard)


class DiagGaussian:
    """A diagonal Gaussian over a ``dim``-dimensional box; actions are clipped to the box only when sent
    to the environment (the density is that of the unclipped sample)."""

    kind = "continuous"

    def __init__(self, dim: int, low: float = -1.0, high: float = 1.0):
        self.dim, self.low, self.high = int(dim), low, high

    @property
    def width(self) -> int:
        return self.dim

    def sample(self, dist: tuple, key: jax.Array) -> jax.Array:
        mean, log_std = dist
        return mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)

    def mode(self, dist: tuple) -> jax.Array:
        return dist[0]

    def log_prob(self, dist: tuple, action: jax.Array) -> jax.Array:
        """Joint log-density (summed over action dimensions)."""
        mean, log_std = dist
        z = (action - mean) * jnp.exp(-log_std)
        return jnp.sum(-0.5 * z * z - log_std - 0.5 * jnp.log(2.0 * jnp.pi), axis=-1)

    def entropy(self, dist: tuple) -> jax.Array:
        return jnp.sum(dist[1] + 0.5 * jnp.log(2.0 * jnp.pi * jnp.e), axis=-1)

    def kl(self, old: tuple, new: tuple, avail: jax.Array | None = None) -> jax.Array:
        return gaussian_kl(old[0], old[1], new[0], new[1])

    def tv(self, old: tuple, new: tuple, avail: jax.Array | None = None, log_ratio: jax.Array | None = None) -> jax.Array:
        """No closed form: the per-sample estimate ``|1 - ratio| / 2`` from the log-ratio of the taken action."""
        return tv_from_ratio(log_ratio)

    def fisher(self, dist: tuple, tangent: tuple, weight: jax.Array) -> tuple:
        """The Fisher metric in (mean, log std) coordinates: ``(d_mu / sigma^2, 2 d_logsigma)``, weighted."""
        return (tangent[0] * jnp.exp(-2.0 * dist[1]) * weight[..., None], 2.0 * tangent[1] * weight[..., None])

    def action_vector(self, action: jax.Array) -> jax.Array:
        return action

    def clip(self, action: jax.Array) -> jax.Array:
        return jnp.clip(action, self.low, self.high)

    def random(self, key: jax.Array, avail: jax.Array) -> jax.Array:
        """Uniform in the box (``avail`` ``[..., 0]`` only gives the leading shape)."""
        return jax.random.uniform(key, avail.shape[:-1] + (self.dim,), minval=self.low, maxval=self.high)

    def random_log_prob(self, avail: jax.Array) -> jax.Array:
        return jnp.full(avail.shape[:-1], -self.dim * jnp.log(self.high - self.low))


Distribution = Categorical | DiagGaussian


def for_space(space) -> Distribution:
    """The distribution object of an action space."""
    if isinstance(space, Discrete):
        return Categorical(space.n)
    if isinstance(space, Box):
        return DiagGaussian(space.dim, space.low, space.high)
    raise TypeError(f"no action distribution for {space!r}")


def gumbel_softmax(key: jax.Array, logits: jax.Array, temperature: float = 1.0, hard: bool = True,
                   batch_rows: bool = False) -> jax.Array:
    """A (straight-through) Gumbel-softmax sample ``[..., n]`` (Jang et al. 2017; Maddison et al. 2017).

    ``hard``: the forward value is the one-hot of the argmax, the gradient that of the soft sample
    ``softmax((logits + g) / temperature)`` (the straight-through estimator used by MADDPG's discrete actors).
    Unavailable actions should carry ``MASKED_LOGIT`` logits: they are never drawn. ``batch_rows``: ``logits`` are the
    rows of a training batch (leading axis) that this env block holds: the noise is those rows of the whole batch's
    draw (:func:`trustmarl.algos.base.block_rows`; the same draw outside an env-block program).
    """
    if batch_rows:
        from trustmarl.algos.base import block_rows

        g = block_rows(key, logits.shape, lambda k, shape: jax.random.gumbel(k, shape, logits.dtype))
    else:
        g = jax.random.gumbel(key, logits.shape, logits.dtype)
    soft = jax.nn.softmax((logits + g) / temperature, axis=-1)
    if not hard:
        return soft
    one_hot = jax.nn.one_hot(jnp.argmax(soft, axis=-1), logits.shape[-1], dtype=soft.dtype)
    return one_hot + soft - jax.lax.stop_gradient(soft)
