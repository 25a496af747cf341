"""Small helpers to train several seeds of an algorithm in one jitted call (tests only)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from trustmarl.algos import make_algorithm
from trustmarl.algos.base import init_seeds
from trustmarl.experiment.config import build_config, drop_unused


def train(algo: str, env: str, n_updates: int, seeds=(0,), start=None, **overrides):
    """Train ``len(seeds)`` seeds (vmapped) for ``n_updates``; returns (algorithm, state, metrics [S, U]).
    ``start(state) -> state`` (optional) edits the initial states (all seeds) before training."""
    cfg = build_config(algo, env, drop_unused(algo, overrides))
    a = make_algorithm(cfg, total_updates=n_updates)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    state = init_seeds(a, keys)
    if start is not None:
        state = start(state)
    run = jax.jit(jax.vmap(lambda s: jax.lax.scan(lambda c, _: a.update(c), s, None, length=n_updates)))
    state, metrics = run(state)
    return a, state, metrics


def final_return(metrics, frac: float = 0.1):
    """Per-seed mean episode return over the last ``frac`` of the updates."""
    r = metrics["episode_return"]
    k = max(1, int(r.shape[1] * frac))
    return jnp.nanmean(r[:, -k:], axis=1)


def initial_return(metrics, frac: float = 0.1):
    r = metrics["episode_return"]
    k = max(1, int(r.shape[1] * frac))
    return jnp.nanmean(r[:, :k], axis=1)


def build(algo: str, env: str, n_updates: int = 1, **overrides):
    """The algorithm object of ``algo`` on ``env`` with ``algo.x``/``env.x`` overrides (presets applied)."""
    return make_algorithm(build_config(algo, env, drop_unused(algo, overrides)), total_updates=n_updates)


def fresh_batch(a, seed: int = 0):
    """``(state, batch)``: a freshly initialised state (behaviour params) and one rollout's batch."""
    state = a.init(jax.random.PRNGKey(seed))
    state, batch, _ = jax.jit(a.collect)(state)
    return state, batch


def perturb(tree, key, scale: float):
    """``tree`` plus Gaussian noise of std ``scale`` on every leaf (moves a policy off the behaviour one)."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    noisy = [x + scale * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
    return jax.tree.unflatten(treedef, noisy)


_PARAMS: dict = {}


def init_params(a, key):
    """``a.init_params(key)``, cached per network structure (Flax init compiles slowly on CPU)."""
    c = a.cfg
    sig = (repr(a.env), c.critic, a.shared, c.agent_id, tuple(c.hidden_sizes), c.actor_head_gain, c.log_std_init,
           c.activation, c.layer_norm, tuple(map(int, jax.random.key_data(key).ravel())))
    if sig not in _PARAMS:
        _PARAMS[sig] = jax.jit(a.init_params)(key)
    return _PARAMS[sig]


def synthetic_batch(a, key, batch_size: int = 256, actor_params=None, critic_params=None):
    """Jitted :func:`synthetic_batch_eager`: one compile per call (a new closure each time); cheaper than the eager
    version only where its ops are not yet warm in the process."""
    if actor_params is None or critic_params is None:
        actor_params, critic_params = init_params(a, key)
    fn = jax.jit(lambda k, ap, cp: synthetic_batch_eager(a, k, batch_size, ap, cp))
    return fn(key, actor_params, critic_params)


def synthetic_batch_eager(a, key, batch_size: int = 256, actor_params=None, critic_params=None):
    """A ``Batch`` without a rollout: random observations/states/advantages, actions sampled from the
    (given or freshly initialised) actor, behaviour log-probs and distributions from that actor.

    Much cheaper than compiling a rollout; used by the loss-level tests.
    """
    from trustmarl.algos.on_policy.common import Batch

    ks = jax.random.split(key, 8)
    if actor_params is None or critic_params is None:
        actor_params, critic_params = a.init_params(ks[0])
    obs = tuple(jax.random.normal(jax.random.fold_in(ks[1], g), (batch_size, grp.n, grp.obs_dim)) for g, grp in enumerate(a.groups))
    avail = tuple(jnp.ones((batch_size, grp.n, grp.avail_dim), bool) for grp in a.groups)
    dist = a.policy(actor_params, obs, avail)
    actions = tuple(dd.sample(d, jax.random.fold_in(ks[2], g)) for g, (dd, d) in enumerate(zip(a.dists, dist)))
    n, kv = a.n_agents, a.n_values
    batch = Batch(
        obs=obs, avail=avail, actions=actions, dist=dist, logp=a.log_prob(dist, actions),
        state=jax.random.normal(ks[3], (batch_size, a.env.state_dim)),
        active=jnp.ones((batch_size, n)),
        value=jax.random.normal(ks[4], (batch_size, kv)),
        adv=jax.random.normal(ks[5], (batch_size, kv)),
        returns=jax.random.normal(ks[6], (batch_size, kv)),
        target=jax.random.normal(ks[7], (batch_size, kv)),
    )
    return actor_params, critic_params, batch
