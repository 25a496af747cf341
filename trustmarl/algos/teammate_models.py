"""Teammate models after machine theory of mind (Rabinowitz et al. 2018), as F2A2 builds them (Li et al. 2023,
Section 5.2, Figure 3 and Appendix G).

An observer ``i`` never reads agent ``j``'s policy; it predicts ``pi~_j(. | o_j)`` from what it saw ``j`` do. One
model per observer and agent group, with a one-hot of the target agent ``j`` among its inputs:

* **character net** (2-layer GRU, 64 units): encodes each of ``S`` past trajectories of ``j`` (pairs
  ``(o_j, onehot(a_j))`` plus the target one-hot, collected by random play before training) into its last
  hidden state; the character ``e_char^j`` is the mean over the trajectories (Li et al. 2023, Section 5.2);
* **mental net** (2-layer GRU, 64 units): encodes the last ``W`` steps of the *current* episode (steps of an
  earlier episode are masked: they leave the hidden state unchanged) into ``e_mental^j``;
* **natural head** (MLP, one hidden layer of 128): logits from ``[o_j, onehot(j), e_char^j, e_mental^j]``;
* **impromptu head** (MLP, one hidden layer of 128): logits from ``[o_j, onehot(j)]`` alone;
* the prediction averages the two heads' probabilities, ``pi~_j = (softmax(natural) + softmax(impromptu)) / 2``;
  each head is trained by its own cross-entropy on ``j``'s executed actions (the natural head and the two
  recurrent nets end to end on windows drawn from the replay buffer, the impromptu head on the most recent
  steps).

Parameters are plain dicts (no Flax modules) so that the recurrent nets run inside ``lax.scan``; every
function below reads one observer's parameters and is vmapped over observers by its callers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from trustmarl.networks import MASKED_LOGIT

GRU = 64  # width of the character and mental GRUs (Li et al. 2023, Appendix G: 2 layers of 64)


def _dense_init(key, d_in: int, d_out: int):
    return {"w": jax.nn.initializers.glorot_uniform()(key, (d_in, d_out)), "b": jnp.zeros((d_out,))}


def _gru_init(key, d_in: int, h: int):
    k1, k2 = jax.random.split(key)
    return {"wx": jax.nn.initializers.glorot_uniform()(k1, (d_in, 3 * h)), "bx": jnp.zeros((3 * h,)),
            "wh": jax.nn.initializers.glorot_uniform()(k2, (h, 3 * h)), "bh": jnp.zeros((3 * h,))}
    # not orthogonal: a QR decomposition vmapped over observers inside a jitted init can deadlock XLA:CPU


def _gru_step(p, h, x):
    """One GRU step (Cho et al. 2014): gates ``r, z``, candidate ``n = tanh(W x + r * (U h))``, ``h' = (1 - z) n + z h``."""
    gx, gh = x @ p["wx"] + p["bx"], h @ p["wh"] + p["bh"]
    rx, zx, nx = jnp.split(gx, 3, -1)
    rh, zh, nh = jnp.split(gh, 3, -1)
    r, z = jax.nn.sigmoid(rx + rh), jax.nn.sigmoid(zx + zh)
    n = jnp.tanh(nx + r * nh)
    return (1.0 - z) * n + z * h


def init(key, obs_dim: int, n_targets: int, n_actions: int, hidden: int = 128) -> dict:
    """One observer's model of a group of ``n_targets`` agents (observations ``obs_dim``, ``n_actions`` actions)."""
    k = jax.random.split(key, 8)
    seq_in = obs_dim + n_actions + n_targets
    head_in = obs_dim + n_targets
    return {
        "char": [_gru_init(k[0], seq_in, GRU), _gru_init(k[1], GRU, GRU)],
        "mental": [_gru_init(k[2], seq_in, GRU), _gru_init(k[3], GRU, GRU)],
        "natural": [_dense_init(k[4], head_in + 2 * GRU, hidden), _dense_init(k[5], hidden, n_actions)],
        "impromptu": [_dense_init(k[6], head_in, hidden), _dense_init(k[7], hidden, n_actions)],
    }


def _mlp(p, x):
    return jax.nn.relu(x @ p[0]["w"] + p[0]["b"]) @ p[1]["w"] + p[1]["b"]


def _with_id(x):
    """``[..., n, d]`` -> ``[..., n, d + n]``: each target's one-hot appended."""
    n = x.shape[-2]
    return jnp.concatenate([x, jnp.broadcast_to(jnp.eye(n, dtype=x.dtype), x.shape[:-2] + (n, n))], -1)


def encode(layers, obs, actions, valid, n_actions: int):
    """The top layer's last hidden state ``[..., n, 64]`` of a 2-layer GRU over time-major steps.

    ``obs`` ``[L, ..., n, d]``, ``actions`` ``[L, ..., n]`` (int), ``valid`` ``[L, ...]``: an invalid step
    leaves every layer's hidden state as it was (a sequence of invalid steps encodes to zeros)."""
    x = _with_id(jnp.concatenate([obs, jax.nn.one_hot(actions, n_actions, dtype=obs.dtype)], -1))
    h0 = jnp.zeros(x.shape[1:-1] + (GRU,), x.dtype)

    def step(hs, inp):
        xt, vt = inp
        out, h_in = [], xt
        for p, h in zip(layers, hs):
            h_new = _gru_step(p, h, h_in)
            h_new = jnp.where(vt[..., None, None], h_new, h)
            out.append(h_new)
            h_in = h_new
        return tuple(out), None

    hs, _ = jax.lax.scan(step, (h0, h0), (x, valid))
    return hs[-1]


def character(params, obs, actions, valid, n_actions: int):
    """``e_char`` ``[n, 64]``: the mean over ``S`` trajectories (``obs`` ``[S, T, n, d]``, ``actions`` ``[S, T, n]``,
    ``valid`` ``[S, T]``) of their encodings by the character net (Li et al. 2023, Section 5.2)."""
    enc = encode(params["char"], jnp.swapaxes(obs, 0, 1), jnp.swapaxes(actions, 0, 1), jnp.swapaxes(valid, 0, 1), n_actions)
    return enc.mean(0)


def mental(params, obs, actions, mask, n_actions: int):
    """``e_mental`` ``[B, n, 64]`` from the last ``W`` steps ``obs`` ``[B, W, n, d]``, ``actions`` ``[B, W, n]``;
    ``mask`` ``[B, W]``: the step belongs to the current episode."""
    return encode(params["mental"], jnp.swapaxes(obs, 0, 1), jnp.swapaxes(actions, 0, 1), jnp.swapaxes(mask, 0, 1), n_actions)


def _masked_log_softmax(logits, avail):
    return jax.nn.log_softmax(jnp.where(avail, logits, MASKED_LOGIT), -1)


def natural(params, obs, avail, e_char, e_mental):
    """The natural head's log-probabilities ``[B, n, A]`` at ``obs`` ``[B, n, d]`` from ``[o_j, onehot(j), e_char^j, e_mental^j]``."""
    x = _with_id(obs)
    x = jnp.concatenate([x, jnp.broadcast_to(e_char, x.shape[:-1] + e_char.shape[-1:]), e_mental], -1)
    return _masked_log_softmax(_mlp(params["natural"], x), avail)


def impromptu(params, obs, avail):
    """The impromptu head's log-probabilities ``[B, n, A]`` from ``[o_j, onehot(j)]`` alone."""
    return _masked_log_softmax(_mlp(params["impromptu"], _with_id(obs)), avail)


def mix(nat, imp):
    """``log((exp(nat) + exp(imp)) / 2)``: the two heads' probabilities averaged."""
    return jnp.logaddexp(nat, imp) - jnp.log(2.0)


def nll(logp, actions):
    """``[B, n]`` negative log-likelihood of the executed ``actions`` ``[B, n]``: each head's cross-entropy loss
    (Li et al. 2023, Section 5.2; Rabinowitz et al. 2018, Section 3)."""
    return -jnp.take_along_axis(logp, actions[..., None], -1)[..., 0]


def episode_masks(done):
    """From the ``done`` flags ``[B, W + 1]`` of windows ending at the sampled step (position ``W``): which of
    the ``W`` previous steps share the sampled step's episode (``[B, W]``, positions ``0 .. W - 1``), and which
    of the ``W`` steps ending at the sampled one share its successor's episode (positions ``1 .. W``)."""
    w = done.shape[1] - 1
    d = done[:, :w].astype(jnp.int32)
    after = jnp.flip(jnp.cumsum(jnp.flip(d, 1), 1), 1)  # [B, W]: ends at positions k .. W-1
    now = after == 0
    nxt = jnp.concatenate([after[:, 1:] == 0, jnp.ones_like(now[:, :1])], 1)
    return now, nxt
