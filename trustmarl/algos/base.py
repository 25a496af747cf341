"""What every trustmarl algorithm provides to the experiment layer.

Training is a pure function of (config, key): ``init(key)`` builds a ``TrainState`` pytree (network
parameters, optimiser states, normalisers, environment states, RNG key, counters), ``update(state)``
performs one iteration (rollout + learning) and returns the new state and a flat dict of metrics.
Both are jit- and vmap-compatible, so several seeds are one ``vmap`` and a chunk of updates is one
``lax.scan``; the experiment layer (progress bar, logging, checkpoints) runs between chunks.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax

# Metric names every algorithm reports from ``update`` (scalars unless noted):
#   "env_steps"        env steps of this seed after the update (int)
#   "episode_return"   mean return of the episodes that ended during this update's rollout
#                      (NaN when none ended); the return is the sum of the team reward
#   "episodes"         number of episodes that ended during the rollout
#   "loss/..."         loss terms; "diag/..." trust-region diagnostics; per-agent diagnostics are
#                      arrays of shape [n_agents] under names ending in "_per_agent".
REQUIRED_METRICS = ("env_steps", "episode_return", "episodes")


class Algorithm(Protocol):
    name: str
    steps_per_update: int  # env steps of one seed per call of ``update``

    def init(self, key: jax.Array) -> Any: ...

    def update(self, state: Any) -> tuple[Any, dict[str, jax.Array]]: ...

    def evaluate(self, state: Any, key: jax.Array, num_episodes: int, deterministic: bool) -> jax.Array:
        """Mean episode return of ``num_episodes`` fresh episodes with the current policy."""
        ...


def init_seeds(algo: Algorithm, keys: jax.Array) -> Any:
    """``init`` for each key, stacked on a leading seed axis (the same values as ``vmap(init)``).

    Seeds are initialised one at a time with one jitted ``init``: on XLA:CPU (jax 0.10) a
    ``jit(vmap(init))`` over seeds of Flax networks with orthogonal initialisers can deadlock.
    """
    import jax.numpy as jnp

    init = jax.jit(algo.init)
    states = [init(k) for k in keys]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *states)
