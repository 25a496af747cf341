"""Learned per-agent trust regions: MAMT's trust-region decomposition (Li et al. 2022).

MAMT (Li, Wang, Jin, Sheng & Zha 2022, "Dealing with Non-Stationarity in MARL via Trust-Region
Decomposition") gives every agent ``i`` its own trust-region size ``delta_i`` (the divisor of its
mirror-descent penalty, :mod:`trustmarl.trust.tsallis`) and learns the ``delta_i`` so that the
non-stationarity each agent feels stays small. The main text of the paper is not available; the
equations below are read from the authors' released code and the paper's appendix, and the paper's
equation numbers are those that its appendix and algorithms cite.

1. **Coordination coefficients** (Li et al. 2022, eq. 7). From the centralised critic, per sample:
   ``Q_i = Q_i(o, a~)`` (agent ``i``'s value of the sampled joint action) and ``b_j`` (agent ``j``'s
   counterfactual baseline, its own action marginalised). Then ``C~[i, j] = |Q_i - b_j|`` for
   ``i != j``, ``C~[j, j] = -inf`` and ``C[:, j] = softmax_i C~[:, j]``: every column sums to 1 over
   the other agents and ``C[j, j] = 0`` (with two agents every off-diagonal coefficient is 1).
   :func:`coordination_coefficients`.
2. **Tightest teammate**: ``j*(i) = argmax_{j != i} sum_b C[b, i, j]`` (once per batch).
   :func:`tightest_teammate`.
3. **Measured non-stationarity** (Li et al. 2022, eq. 5): ``D_ns,i = KL(pi_j*(.|o_j*) || m_i(.|o_i, j*)) /
   |A_j*|`` per sample, with ``m_i`` agent ``i``'s model of its teammate's policy (trained by cross
   entropy on the teammate's replayed actions, :func:`model_cross_entropy`). Teammates may have
   different action counts: log-probabilities are padded to the widest action set with ``-inf``
   (:func:`pad_log_probs`), padded actions count neither in the KL nor in ``|A|``.
   :func:`nonstationarity`.
4. **Coordination graph and GCN** (Li et al. 2022, eq. 8, the TRD-Net's message passing): edge
   ``i -> j`` iff ``C[i, j] >= delta_cc``, plus a self-loop at every agent; a message from ``i`` to
   ``j`` is weighted by ``C[i, j] deg(i)^-1/2 deg(j)^-1/2`` with ``deg`` the number of incoming edges
   (self-loop included). The self-loop's weight is ``C[j, j] = 0`` in the authors' code, so an agent's
   own encoding does not enter its update; ``self_loop_weight`` makes it a parameter (0 reproduces the
   code, 1 is the usual GCN). Computed densely over ``[..., N, N]`` (no graph library).
   :func:`coordination_graph`, :func:`gcn_aggregate`.
5. **TRD-Net** (Li et al. 2022, eq. 8): ``KL^_i = lambda_i * k_i`` predicts agent ``i``'s
   non-stationarity from ``(o_i, a_i, delta_i)`` and the graph. :class:`TRDNet`. It is regressed onto
   ``D_ns`` (fast update); the ``delta_i`` move to lower ``KL^`` (slow update) and are clipped to
   ``[0.01, 100]`` (:func:`clamp_radii`).

Two properties of the released code are *not* reproduced here and are worth knowing: its TRD-Net
hands the edge weights to a graph library that re-orders the edges (self-loops moved to the end), so
its messages are weighted by other edges' coefficients; and the normalisation of the TRD-Net inputs
is a BatchNorm without affine parameters (our networks take already-prepared inputs).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from trustmarl.trust.divergence import categorical_kl

TR_MIN, TR_MAX = 0.01, 100.0  # "trust-region clip from 0.01 to 100" (Li et al. 2022, Table 1)


# ---- coordination coefficients and the tightest teammate ------------------------------------------

def coordination_coefficients(q_taken: ArrayLike, baseline: ArrayLike) -> Array:
    """``C[..., i, j] = softmax_{i != j} |Q_i - b_j|`` (Li et al. 2022, eq. 7, authors' form).

    ``q_taken`` ``[..., N]``: ``Q_i(o, a~)``; ``baseline`` ``[..., N]``: ``b_j``. Returns ``[..., N, N]``,
    each column ``j`` a distribution over the other agents ``i`` (``C[j, j] = 0``; all zeros for N = 1).
    """
    q = jnp.asarray(q_taken)
    b = jnp.asarray(baseline)
    n = q.shape[-1]
    others = ~jnp.eye(n, dtype=bool)
    logits = jnp.abs(q[..., :, None] - b[..., None, :])  # [i, j] = |Q_i - b_j|
    return jax.nn.softmax(jnp.where(others, logits, -jnp.inf), axis=-2, where=others)


def tightest_teammate(coef: ArrayLike, mask: ArrayLike | None = None) -> Array:
    """``j*(i) = argmax_{j != i} sum_b C[b, i, j]`` ``[N]`` int32 (Li et al. 2022, eq. 5's teammate).

    ``coef`` ``[B, N, N]`` (any number of leading sample axes, all summed); ``mask`` ``[B]``: samples that
    count. Needs ``N >= 2``.
    """
    c = jnp.asarray(coef)
    n = c.shape[-1]
    if mask is not None:
        c = c * jnp.asarray(mask, c.dtype).reshape(jnp.shape(mask) + (1, 1))
    total = jnp.sum(c.reshape((-1, n, n)), axis=0)
    return jnp.argmax(jnp.where(jnp.eye(n, dtype=bool), -jnp.inf, total), axis=-1).astype(jnp.int32)


# ---- measured non-stationarity -----------------------------------------------------------------

def pad_log_probs(logps: Sequence[ArrayLike]) -> tuple[Array, Array]:
    """Per-group log-probabilities ``[..., n_g, A_g]`` -> ``([..., N, A_max], valid [N, A_max])``.

    Groups are concatenated in order (the global agent order); missing actions get ``-inf`` and
    ``valid = False``. Select teammates with ``logp[..., jstar, :]`` and ``valid[jstar]``.
    """
    width = max(int(jnp.shape(lp)[-1]) for lp in logps)
    padded, valid = [], []
    for lp in logps:
        lp = jnp.asarray(lp)
        n, a = lp.shape[-2], lp.shape[-1]
        pad = [(0, 0)] * (lp.ndim - 1) + [(0, width - a)]
        padded.append(jnp.pad(lp, pad, constant_values=-jnp.inf))
        valid.append(jnp.broadcast_to(jnp.arange(width) < a, (n, width)))
    return jnp.concatenate(padded, axis=-2), jnp.concatenate(valid, axis=0)


def nonstationarity(logp_teammate: ArrayLike, logp_model: ArrayLike, valid: ArrayLike | None = None) -> Array:
    """``D_ns = KL(pi_j* || m_i) / |A_j*|`` over the last axis (Li et al. 2022, eq. 5).

    ``logp_teammate`` ``[..., N, A]``: ``log pi_{j*(i)}(.|o_{j*(i)})`` for every agent ``i``;
    ``logp_model`` ``[..., N, A]``: ``log m_i(.|o_i, j*(i))``; ``valid`` (broadcasts, e.g. ``[N, A]``):
    the teammate's real actions (padding excluded from the KL and from ``|A|``; default: all).
    Returns ``[..., N]``.
    """
    lt = jnp.asarray(logp_teammate)
    keep = jnp.ones(lt.shape, bool) if valid is None else jnp.broadcast_to(jnp.asarray(valid), lt.shape)
    count = jnp.maximum(jnp.sum(keep, axis=-1), 1)
    return categorical_kl(lt, logp_model, keep) / count


def model_cross_entropy(logp_model: ArrayLike, actions: ArrayLike) -> Array:
    """``-log m_i(a_j | o_i, j)`` per sample: the modeling-policy loss (Li et al. 2022, Table 1:
    "modeling policy loss CrossEntropyLoss"), ``logp_model`` ``[..., A]``, ``actions`` ``[...]`` int."""
    a = jnp.asarray(actions)[..., None]
    return -jnp.take_along_axis(jnp.asarray(logp_model), a, axis=-1)[..., 0]


# ---- the coordination graph and its GCN layer --------------------------------------------------

def coordination_graph(coef: ArrayLike, threshold: float, self_loop_weight: float = 0.0) -> tuple[Array, Array]:
    """Edges ``{i -> j : C[i, j] >= threshold} U {j -> j}`` and their weights (Li et al. 2022, eq. 8).

    Returns ``(weights, edges)``, both ``[..., N, N]`` indexed ``[source i, target j]``: ``weights`` is
    ``C[i, j]`` on off-diagonal edges, 0 off the graph and ``self_loop_weight`` on the diagonal (0 is
    the authors' code, where the self-loop carries ``C[j, j] = 0``).
    """
    c = jnp.asarray(coef)
    eye = jnp.eye(c.shape[-1], dtype=bool)
    edges = (c >= threshold) | eye
    weights = jnp.where(eye, jnp.asarray(self_loop_weight, c.dtype), jnp.where(edges, c, 0.0))
    return weights, edges


def gcn_aggregate(x: ArrayLike, weights: ArrayLike, edges: ArrayLike, agent_major: bool = False) -> Array:
    """``out_j = sum_{i -> j} w_ij deg(i)^-1/2 deg(j)^-1/2 x_i`` (Kipf & Welling 2017 normalisation with
    the edge weights of Li et al. 2022, eq. 8); ``deg`` counts incoming edges, self-loop included.

    ``x`` ``[..., N, H]`` (already multiplied by the layer's weight matrix), ``weights``/``edges``
    ``[..., N, N]`` from :func:`coordination_graph`. Every agent has its self-loop, so ``deg >= 1``.
    ``agent_major=True``: ``x`` and the result are ``[N, ..., H]`` (the weights stay ``[..., N, N]``).
    """
    e = jnp.asarray(edges)
    deg = jnp.maximum(jnp.sum(e, axis=-2).astype(jnp.result_type(x)), 1.0)  # incoming edges of target j
    inv = jax.lax.rsqrt(deg)
    norm = jnp.asarray(weights) * inv[..., :, None] * inv[..., None, :]
    if agent_major:
        return jnp.einsum("...ij,i...h->j...h", norm, jnp.asarray(x))
    return jnp.einsum("...ij,...ih->...jh", norm, jnp.asarray(x))


def clamp_radii(delta: ArrayLike, lo: float = TR_MIN, hi: float = TR_MAX) -> Array:
    """``clip(delta, lo, hi)``: the "trust-region clip" applied after every update (Li et al. 2022, Table 1)."""
    return jnp.clip(jnp.asarray(delta), lo, hi)


# ---- TRD-Net -------------------------------------------------------------------------------------

def _log_weight_init(key, shape, dtype=jnp.float32):
    """``exp(w)`` near ``1/fan_in`` (so a layer roughly averages non-negative inputs); the authors
    initialise ``w`` itself Xavier-uniform, which makes ``exp(w) ~ 1`` and multiplies activations by
    about ``fan_in`` per layer. ``shape`` is ``[..., fan_in, fan_out]``."""
    fan_in, fan_out = shape[-2], shape[-1]
    bound = (6.0 / (fan_in + fan_out)) ** 0.5
    return jax.random.uniform(key, shape, dtype, -bound, bound) - jnp.log(float(fan_in))


class AgentDense(nn.Module):
    """A linear layer with one weight set per agent, applied to ``[..., n, d]`` (weights ``[n, d, features]``).

    ``sign=None``: an ordinary layer (LeCun-normal kernel per agent, zero bias, like ``nn.Dense``).
    ``sign=+1``/``-1``: weights ``sign * exp(w)``, monotone increasing / decreasing in every input (the
    PositiveLinear/NegativeLinear layers of Li et al. 2022's code). Stacked parameters and one einsum
    instead of ``nn.vmap``: the same computation, and much cheaper to compile. ``agent_major=True`` takes
    and returns ``[n, ..., d]`` (the agent axis first: the per-agent products need no transposes).
    """

    features: int
    sign: float | None = None
    use_bias: bool = True
    agent_major: bool = False

    @nn.compact
    def __call__(self, *parts):
        """``parts``: one or more inputs ``[..., n, d_k]`` whose features are, in order, the layer's ``sum_k d_k``
        inputs; their leading axes broadcast. ``AgentDense(f)(x, y)`` equals ``AgentDense(f)(concat([x, y], -1))``
        (the same parameters), but an input without the batch axes (e.g. one encoding per agent) is multiplied
        once instead of once per sample."""
        n, d = jnp.shape(parts[0])[0 if self.agent_major else -2], sum(jnp.shape(x)[-1] for x in parts)
        shape = (n, d, self.features)
        if self.sign is None:
            w = self.param("kernel", nn.initializers.lecun_normal(batch_axis=(0,)), shape, jnp.float32)
        else:
            w = self.sign * jnp.exp(self.param("log_kernel", _log_weight_init, shape, jnp.float32))
        rank = max(jnp.ndim(x) for x in parts)
        spec = "n...d,ndh->n...h" if self.agent_major else "...nd,ndh->...nh"
        y, start = None, 0
        for x in parts:
            width = jnp.shape(x)[-1]
            term = jnp.einsum(spec, x, w[:, start:start + width] if len(parts) > 1 else w)
            if self.agent_major:  # a part without (some of) the batch axes broadcasts over them
                term = term.reshape((n,) + (1,) * (rank - term.ndim) + term.shape[1:])
            y = term if y is None else y + term
            start += width
        if self.use_bias:
            b = self.param("bias", nn.initializers.zeros, (n, self.features), jnp.float32)
            y = y + (b.reshape((n,) + (1,) * (y.ndim - 2) + (self.features,)) if self.agent_major else b)
        return y


def _leaky(x):
    return nn.leaky_relu(x, 0.01)


class TRDNet(nn.Module):
    """Trust-region decomposition network (Li et al. 2022, eq. 8; the authors' ``TRAN``).

    Per agent ``i`` (own weights, stacked per group: :class:`AgentDense`), LeakyReLU(0.01) after every
    layer:

    * k-branch: ``u_i = enc([o_i, a_i])``, ``t_i = enc2(enc1(delta_i))`` (second layer without bias),
      ``z_i = merge([u_i, t_i])``; one GCN layer over the coordination graph with a weight matrix shared
      by all agents, ``z'_j = sum_i w_ij norm_ij (W z_i + b)`` (:func:`gcn_aggregate`, no activation);
      ``k_j = dec2(dec1(z'_j))`` (``dec2``: H -> 1 without bias).
    * lambda-branch (no message passing): ``u'_i``, ``t'_i`` as above with their own weights,
      ``lambda_i = out2(out1([u'_i, t'_i]))`` (``out2``: H -> 1 without bias).
    * output ``KL^_i = lambda_i * k_i``.

    ``monotone=True`` replaces the trust-region encoders, the merge and the decoder layers of the
    k-branch by :class:`AgentDense` layers with negative weights and those of the lambda-branch by positive
    ones (the layers the authors' code leaves commented out); the state-action encoders and the GCN
    stay plain. Then ``lambda_i`` is non-decreasing in ``delta_i``; ``k`` is not guaranteed monotone,
    because the GCN's weight matrix has both signs.

    Call with ``obs``/``act``: per group ``[..., n_g, d_g]`` / ``[..., n_g, a_g]`` (actions one-hot),
    ``delta`` ``[N]`` or ``[..., N]`` (the reference feeds ``delta_i`` itself), ``coef`` ``[..., N, N]`` the
    coordination coefficients (pass them stopped if no gradient should reach the critic). The authors
    batch-normalise ``[o_i, a_i]`` first; this module takes prepared inputs. Returns ``KL^`` ``[..., N]``;
    ``lambda`` and ``k`` are sown into the ``"intermediates"`` collection (for diagnostics).
    """

    group_sizes: Sequence[int]
    hidden: int = 128
    cc_threshold: float = 0.2  # "delta in coordination coefficient" (Li et al. 2022, Table 1; code: 0.05)
    self_loop_weight: float = 0.0  # 0 = authors' code
    monotone: bool = False

    def _layer(self, name: str, features: int, sign: float | None, use_bias: bool = True) -> AgentDense:
        """A per-agent layer; monotone (``sign``) only with ``monotone=True``."""
        return AgentDense(features, sign=sign if self.monotone else None, use_bias=use_bias, agent_major=True, name=name)

    def _branch_inputs(self, prefix: str, g: int, sa: Array, d: Array, sign: float) -> tuple[Array, Array]:
        """``(u_i, t_i)`` of one group, agent axis first: the state-action encoding ``[n_g, ..., H]`` and the
        trust-region encoding (``[n_g, H]`` for one ``delta`` per agent: computed once, not once per sample)."""
        h = self.hidden
        u = _leaky(self._layer(f"{prefix}_sa_{g}", h, None)(sa))
        t = _leaky(self._layer(f"{prefix}_tr1_{g}", h, sign)(d))
        t = _leaky(self._layer(f"{prefix}_tr2_{g}", h, sign, use_bias=False)(t))
        return u, t

    @nn.compact
    def __call__(self, obs: tuple, act: tuple, delta: ArrayLike, coef: ArrayLike) -> Array:
        h = self.hidden
        # agent-major inside ([N, ..., features]): the per-agent layers' products need no transposes
        delta = jnp.moveaxis(jnp.asarray(delta, jnp.result_type(obs[0])), -1, 0)[..., None]  # [N, 1] or [N, ..., 1]
        z, lam, start = [], [], 0
        for g, (o, a, n) in enumerate(zip(obs, act, self.group_sizes)):
            sa = jnp.moveaxis(jnp.concatenate([o, a], axis=-1), -2, 0)  # [n_g, ..., d]
            d = delta[start:start + n]
            k_in = self._branch_inputs("k", g, sa, d, -1.0)  # merge([u, t]): t's half once per agent
            z.append(_leaky(self._layer(f"k_merge_{g}", h, -1.0)(*k_in)))
            l_in = self._branch_inputs("lambda", g, sa, d, 1.0)
            l_hid = _leaky(self._layer(f"lambda_out1_{g}", h, 1.0)(*l_in))
            lam.append(_leaky(self._layer(f"lambda_out2_{g}", 1, 1.0, use_bias=False)(l_hid))[..., 0])
            start += n
        weights, edges = coordination_graph(coef, self.cc_threshold, self.self_loop_weight)
        msg = nn.Dense(h, name="gcn")(jnp.concatenate(z, axis=0))  # W z_i + b, shared by all agents
        z_new = gcn_aggregate(msg, weights, edges, agent_major=True)
        k, start = [], 0
        for g, n in enumerate(self.group_sizes):
            zg = z_new[start:start + n]
            hid = _leaky(self._layer(f"k_dec1_{g}", h, -1.0)(zg))
            k.append(_leaky(self._layer(f"k_dec2_{g}", 1, -1.0, use_bias=False)(hid))[..., 0])
            start += n
        lam, k = jnp.moveaxis(jnp.concatenate(lam, axis=0), 0, -1), jnp.moveaxis(jnp.concatenate(k, axis=0), 0, -1)
        self.sow("intermediates", "lambda", lam)  # apply(..., mutable=["intermediates"]) returns them
        self.sow("intermediates", "k", k)
        return lam * k
