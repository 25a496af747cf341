"""Plain NumPy (float64) forward passes of trustmarl's networks and parameter-vector helpers, for the
reference tests of the off-policy learning rules. Written from the papers' definitions, loop by loop;
they read the parameters out of the Flax trees and nothing else from the library."""

from __future__ import annotations

import jax
import numpy as np


def leaky(x):
    """LeakyReLU with slope 0.01 (PyTorch's default, the MAAC/MADDPG code's activation)."""
    return np.where(x > 0, x, 0.01 * x)


def to_numpy(tree):
    return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


def mlp(p: dict, x, n_hidden: int, act=leaky):
    """``MLP`` (hidden Dense layers ``MLP_0/Dense_k`` with ``act``) then the linear head ``Dense_0``."""
    for k in range(n_hidden):
        layer = p["MLP_0"][f"Dense_{k}"]
        x = act(x @ layer["kernel"] + layer["bias"])
    return x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"]


def agent_params(stacked: dict, i: int) -> dict:
    """Agent ``i``'s parameters of a group stacked on a leading agent axis."""
    return jax.tree.map(lambda x: x[i], stacked)


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def attention_critic(p: dict, obs: list, act: list, heads: int):
    """MAAC's attention critic (Iqbal & Sha 2019, Section 3.2) for ONE sample as a plain loop over agents,
    heads and other agents: per agent its Q vector over its own actions, and the attention logits
    ``q_i . k_j`` (before the 1/sqrt(d) scaling) ``[heads, N, N]`` with zeros on the diagonal.
    ``obs``/``act``: per group ``[n_g, d]``; ``p``: the critic's ``params`` dict (numpy)."""
    agents = [(g, i) for g, o in enumerate(obs) for i in range(o.shape[0])]
    dense = lambda layer, i, x: x @ layer["kernel"][i] + layer["bias"][i]
    e = [leaky(dense(p[f"sa_enc_{g}"], i, np.concatenate([obs[g][i], act[g][i]]))) for g, i in agents]
    s = [leaky(dense(p[f"s_enc_{g}"], i, obs[g][i])) for g, i in agents]
    d = p["key"]["kernel"].shape[-1]
    n = len(agents)
    out, logits = [], np.zeros((heads, n, n))
    for a, (g, i) in enumerate(agents):
        x = []
        for h in range(heads):
            q = s[a] @ p["selector"]["kernel"][:, h]
            others = [b for b in range(n) if b != a]
            raw = np.array([q @ (e[b] @ p["key"]["kernel"][:, h]) for b in others])
            logits[h, a, others] = raw
            w = np.exp(raw / np.sqrt(d) - (raw / np.sqrt(d)).max())
            w /= w.sum()
            v = [leaky(e[b] @ p["value"]["kernel"][:, h] + p["value"]["bias"][h]) for b in others]
            x.append(sum(wb * vb for wb, vb in zip(w, v)))
        hid = leaky(dense(p[f"q1_{g}"], i, np.concatenate([s[a]] + x)))
        out.append(dense(p[f"q2_{g}"], i, hid))
    return out, logits


# ---- parameter vectors: directional derivatives of a reference loss by central differences ----------

def flatten(tree) -> tuple[np.ndarray, callable]:
    """``tree`` as one float64 vector and the inverse (numpy leaves, float64)."""
    leaves, treedef = jax.tree.flatten(tree)
    shapes = [np.shape(x) for x in leaves]
    sizes = [int(np.prod(s)) for s in shapes]
    vec = np.concatenate([np.asarray(x, np.float64).ravel() for x in leaves])

    def unflatten(v):
        parts, start = [], 0
        for shape, size in zip(shapes, sizes):
            parts.append(v[start:start + size].reshape(shape))
            start += size
        return jax.tree.unflatten(treedef, parts)

    return vec, unflatten


def directional(loss, tree, direction, eps: float = 1e-6) -> float:
    """``d/de loss(tree + e * direction)`` at 0 by central differences in float64."""
    x, unflatten = flatten(tree)
    d, _ = flatten(direction)
    return (loss(unflatten(x + eps * d)) - loss(unflatten(x - eps * d))) / (2 * eps)


def dot(a, b) -> float:
    return float(sum(np.sum(np.asarray(x, np.float64) * np.asarray(y, np.float64))
                     for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))))


def random_direction(tree, rng: np.random.Generator, keep=lambda path: True):
    """A standard normal direction on the leaves whose key path satisfies ``keep`` (zero elsewhere)."""
    def leaf(path, x):
        name = "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
        return rng.standard_normal(np.shape(x)) if keep(name) else np.zeros(np.shape(x))
    out = jax.tree_util.tree_map_with_path(leaf, tree)
    assert any(np.any(x != 0) for x in jax.tree.leaves(out)), "the direction selects no parameter"
    return out


# ---- a trivial environment: cheap to reset and compile, any number of agents and action kind -------

def tiny_env(n_agents: int = 3, obs_dim: int = 4, space=None):
    """A one-step environment of ``n_agents`` agents in one group (observations of ones, reward 0): the
    reference tests feed hand-built batches, so the environment only gives shapes."""
    import dataclasses

    import jax.numpy as jnp

    from trustmarl.envs.base import AgentGroup, Discrete, MultiAgentEnv

    space = space or Discrete(5)
    width = space.n if space.kind == "discrete" else 0

    @dataclasses.dataclass(frozen=True)
    class Tiny(MultiAgentEnv):
        @property
        def groups(self):
            return (AgentGroup("agent", tuple(f"a{i}" for i in range(n_agents)), obs_dim, space),)

        @property
        def state_dim(self):
            return 1

        @property
        def max_episode_steps(self):
            return 1

        def _ts(self, done):
            return self.make_timestep((jnp.ones((n_agents, obs_dim)),), (jnp.ones((n_agents, width), bool),),
                                      jnp.ones((1,)), jnp.zeros((n_agents,)), done, False)

        def _reset(self, key):
            return jnp.zeros(()), self._ts(False)

        def _step(self, key, state, actions):
            return state, self._ts(True)

    return Tiny()
