"""Agent groups and their parameters: the plumbing every algorithm family shares.

An environment organises its agents in *groups* (agents with the same observation and action
spaces, see :mod:`trustmarl.envs.base`). A group's network either has one parameter set per agent,
stacked on a leading agent axis and applied with ``vmap`` (*stacked*, the default), or one set
shared by all agents of the group (*shared*, optionally with a one-hot agent id appended to the
inputs). Optimiser states follow the same layout, so each stacked agent is clipped and updated on
its own. Nothing here knows about returns, critics or replay: on-policy, off-policy and later
families build on it.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from trustmarl.distributions import for_space


class AgentGroups:
    """The groups of ``env`` and how networks are applied to them.

    ``share_params``: one network per group (HARL/MAPPO sharing) instead of one per agent; ``"auto"``
    shares when all agents form one group (same spaces) and gives each agent its own network otherwise;
    ``agent_id``: with sharing, append a one-hot agent id (within the group) to the inputs.
    """

    def __init__(self, env, share_params: bool | str = False, agent_id: bool = False):
        self.env = env
        self.groups = tuple(env.groups)
        self.kinds = tuple(g.action_space.kind for g in self.groups)
        self.dists = tuple(for_space(g.action_space) for g in self.groups)  # one distribution object per group
        self.n_agents = int(env.n_agents)
        self.shared = len(self.groups) == 1 if share_params == "auto" else bool(share_params)
        self.agent_id = bool(agent_id)
        # global agent index -> (group, index within the group); group -> first global index
        self.agent_group = np.concatenate([np.full(g.n, k) for k, g in enumerate(self.groups)]).astype(np.int32)
        self.agent_local = np.concatenate([np.arange(g.n) for g in self.groups]).astype(np.int32)
        self.offsets = np.cumsum([0] + [g.n for g in self.groups])[:-1]

    def __len__(self) -> int:
        return len(self.groups)

    def stacked(self, g: int) -> bool:
        """Whether group ``g`` has one parameter set per agent (not shared)."""
        return not self.shared

    # ---- inputs ------------------------------------------------------------------------------
    def with_id(self, g: int, obs: jax.Array) -> jax.Array:
        """``obs`` ``[..., n_g, d]`` with a one-hot agent id appended (shared networks with ``agent_id``)."""
        if not (self.agent_id and self.shared):
            return obs
        n = self.groups[g].n
        ids = jnp.broadcast_to(jnp.eye(n, dtype=obs.dtype), obs.shape[:-2] + (n, n))
        return jnp.concatenate([obs, ids], axis=-1)

    def input_dim(self, g: int) -> int:
        grp = self.groups[g]
        return grp.obs_dim + (grp.n if self.agent_id and self.shared else 0)

    def dummy_obs(self, g: int) -> jax.Array:
        """Zero observations ``[n_g, obs_dim(+ids)]`` of group ``g`` (network initialisation)."""
        return self.with_id(g, jnp.zeros((self.groups[g].n, self.groups[g].obs_dim)))

    def dummy_avail(self, g: int) -> jax.Array:
        grp = self.groups[g]
        return jnp.ones((grp.n, max(grp.avail_dim, 1)), dtype=bool)[:, : grp.avail_dim]

    # ---- networks ----------------------------------------------------------------------------
    def init(self, module, key: jax.Array, g: int, *inputs):
        """Parameters of ``module`` for group ``g`` from per-agent inputs ``[n_g, ...]``: stacked
        (one set per agent, keys split from ``key``) or shared (initialised on agent 0's inputs)."""
        if self.stacked(g):
            return jax.vmap(module.init)(jax.random.split(key, self.groups[g].n), *inputs)
        return module.init(key, *(x[0] for x in inputs))

    def apply(self, module, params, g: int, *inputs, out_axes: int = -2):
        """Apply a group network to ``[..., n_g, d]`` inputs (vmapped over agents unless shared)."""
        if self.stacked(g):
            return jax.vmap(module.apply, in_axes=(0,) + (-2,) * len(inputs), out_axes=out_axes)(params, *inputs)
        return module.apply(params, *inputs)

    def take(self, tree, g: int, i):
        """Agent ``i``'s parameters (or optimiser state) of group ``g``."""
        return jax.tree.map(lambda x: x[i], tree) if self.stacked(g) else tree

    def put(self, tree, new, g: int, i):
        """``tree`` with agent ``i``'s entry replaced by ``new`` (the whole tree when shared)."""
        return jax.tree.map(lambda x, y: x.at[i].set(y), tree, new) if self.stacked(g) else new

    # ---- actions -----------------------------------------------------------------------------
    def env_actions(self, actions: tuple) -> tuple:
        """Continuous actions are clipped to the action box before the environment sees them."""
        return tuple(d.clip(a) if d.kind == "continuous" else a for d, a in zip(self.dists, actions))

    def random_actions(self, key: jax.Array, avail: tuple) -> tuple:
        """Uniformly random valid actions for ``avail`` ``[..., n_g, n_actions]`` (continuous: uniform in the box)."""
        return tuple(d.random(jax.random.fold_in(key, g), av) for g, (d, av) in enumerate(zip(self.dists, avail)))

    def random_log_prob(self, avail: tuple) -> jax.Array:
        """``[..., N]``: log-density of :meth:`random_actions` (uniform over the available actions / the box)."""
        return concat_agents([d.random_log_prob(av) for d, av in zip(self.dists, avail)])

    def action_width(self, g: int) -> int:
        """Width of group ``g``'s action as a critic input: one-hot size or box dimension."""
        return self.dists[g].width

    def action_vectors(self, actions: tuple) -> tuple:
        """Per group, actions as critic inputs ``[..., n_g, width]``: discrete ones one-hot, continuous as they are."""
        return tuple(d.action_vector(a) for d, a in zip(self.dists, actions))


def concat_agents(xs: list[jax.Array]) -> jax.Array:
    """Concatenate per-group ``[..., n_g]`` arrays into ``[..., N]`` (global agent order)."""
    return jnp.concatenate(xs, axis=-1)


def masked_mean(x: jax.Array, mask: jax.Array | None) -> jax.Array:
    """The mean of ``x`` over the entries where ``mask`` is set. Env blocks (run key ``env_blocks``): the block's sum
    over the blocks' mean count, so that averaged over blocks, as losses (through their gradients) and metrics are,
    it is the masked mean over the samples of all blocks, also when blocks hold different numbers of active samples
    (agents dead on SMAX); the plain masked mean outside an env-block program."""
    if mask is None:
        return x.mean()
    from trustmarl.algos.base import block_mean  # base imports this module

    mask = jnp.broadcast_to(mask, x.shape)
    return jnp.sum(x * mask) / jnp.maximum(block_mean(jnp.sum(mask)), 1.0)


# ---- optimisers ------------------------------------------------------------------------------

def adam(lr, max_grad_norm: float, eps: float = 1e-5, b1: float = 0.9, weight_decay: float = 0.0,
         l2: float = 0.0) -> optax.GradientTransformation:
    """Adam after global-norm clipping.

    ``weight_decay``: decoupled (AdamW, Loshchilov & Hutter 2019). ``l2``: PyTorch-style L2, i.e.
    ``l2 * params`` added to the gradient *after* clipping and before Adam's moments (what
    ``torch.optim.Adam(weight_decay=...)`` does, as in the MAAC/MAMT reference code).
    """
    parts = [optax.clip_by_global_norm(max_grad_norm)]
    if l2:
        parts.append(optax.add_decayed_weights(l2))
    if weight_decay:
        parts.append(optax.adamw(lr, b1=b1, eps=eps, weight_decay=weight_decay))
    else:
        parts.append(optax.adam(lr, b1=b1, eps=eps))
    return optax.chain(*parts)


def linear_decay(lr: float, steps_per_update: int, total_updates: int) -> Callable:
    """A learning rate falling linearly to 0 over ``total_updates`` updates of ``steps_per_update`` steps."""
    def schedule(count):
        return lr * jnp.maximum(0.0, 1.0 - (count // steps_per_update) / total_updates)

    return schedule


def opt_init(tx: optax.GradientTransformation, params, stacked: bool):
    return jax.vmap(tx.init)(params) if stacked else tx.init(params)


def opt_step(tx: optax.GradientTransformation, params, grads, opt, stacked: bool):
    """One optimiser step; for stacked (non-shared) agents each agent is clipped and updated alone."""
    if stacked:
        upd, opt = jax.vmap(tx.update)(grads, opt, params)
    else:
        upd, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, upd), opt
