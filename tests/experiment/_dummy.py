"""A tiny deterministic stand-in algorithm for fast tests of the experiment layer.

Its state mimics a real one (parameters, an optimiser moment, a fake environment state, an RNG key,
counters); ``update`` does noisy gradient steps towards zero so that metrics change every update,
reports ``episode_return = -|params|^2`` (NaN every 4th update: "no episode ended"), two losses
and a per-agent diagnostic, and ``loss/actor`` turns NaN at update ``nan_at`` (parameters too).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from trustmarl.experiment.config import positive, positive_int

NAME = "dummy"


@dataclasses.dataclass
class DummyConfig:
    name: str = NAME
    lr: float = 0.1
    num_envs: int = 2
    rollout_len: int = 4
    noise: float = 0.5
    nan_at: int = -1  # 1-based update whose loss (and parameters) become NaN; -1: never

    def validate(self) -> None:
        positive(self, "lr")
        positive_int(self, "num_envs", "rollout_len")


class DummyAlgorithm:
    def __init__(self, env, cfg: DummyConfig, total_updates: int | None = None):
        self.name = cfg.name
        self.cfg = cfg
        self.n_agents = env.n_agents
        self.steps_per_update = cfg.num_envs * cfg.rollout_len
        self.total_updates = total_updates

    def init(self, key):
        k_params, k_rng = jax.random.split(key)
        return {
            "params": jax.random.normal(k_params, (self.n_agents, 3)),
            "opt": {"m": jnp.zeros((self.n_agents, 3)), "count": jnp.int32(0)},
            "env": (jnp.zeros((self.cfg.num_envs,)), jnp.zeros((self.cfg.num_envs,), dtype=bool)),
            "rng": k_rng,
            "update": jnp.int32(0),
        }

    def update(self, state):
        rng, k_grad, k_ret = jax.random.split(state["rng"], 3)
        update = state["update"] + 1
        grad = state["params"] + self.cfg.noise * jax.random.normal(k_grad, state["params"].shape)
        m = 0.9 * state["opt"]["m"] + 0.1 * grad
        params = state["params"] - self.cfg.lr * m
        blow_up = update == self.cfg.nan_at
        params = jnp.where(blow_up, jnp.nan, params)
        ended = update % 4 != 3
        ret = -jnp.sum(params**2) + 0.01 * jax.random.normal(k_ret)
        metrics = {
            "env_steps": update * self.steps_per_update,
            "episode_return": jnp.where(ended, ret, jnp.nan),
            "episodes": jnp.where(ended, self.cfg.num_envs, 0),
            "loss/actor": jnp.where(blow_up, jnp.nan, jnp.mean(grad**2)),
            "loss/critic": jnp.mean(m**2),
            "diag/ratio_per_agent": jnp.abs(m).mean(axis=1),
        }
        new_state = {
            "params": params,
            "opt": {"m": m, "count": state["opt"]["count"] + 1},
            "env": (state["env"][0] + 1.0, jnp.logical_not(state["env"][1])),
            "rng": rng,
            "update": update,
        }
        return new_state, metrics

    def evaluate(self, state, key, num_episodes, deterministic):
        base = -jnp.sum(state["params"] ** 2)
        if deterministic:
            return base
        return base + jnp.mean(jax.random.normal(key, (num_episodes,)))


def register() -> None:
    """Register ``dummy`` (after letting the real algorithms register themselves, if they import)."""
    try:
        import trustmarl.algos.ppo  # noqa: F401
    except ImportError:
        pass
    from trustmarl.algos import register_algo

    register_algo(NAME, DummyConfig, DummyAlgorithm, "Test stand-in: noisy gradient steps towards zero.")


def config(**overrides):
    """A resolved run config of ``dummy`` on ``matrix/proposition1`` (4 agents)."""
    from trustmarl.experiment.config import build_config

    register()
    base = {"total_steps": 8 * 10, "chunk_updates": 3, "num_seeds": 2}
    base.update(overrides)
    return build_config(NAME, "matrix/proposition1", base)
