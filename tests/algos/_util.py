"""Small helpers to train several seeds of an algorithm in one jitted call (tests only)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from trustmarl.algos import make_algorithm
from trustmarl.experiment.config import build_config


def train(algo: str, env: str, n_updates: int, seeds=(0,), **overrides):
    """Train ``len(seeds)`` seeds (vmapped) for ``n_updates``; returns (algorithm, state, metrics [S, U])."""
    cfg = build_config(algo, env, overrides)
    a = make_algorithm(cfg, total_updates=n_updates)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    state = jax.jit(jax.vmap(a.init))(keys)
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
