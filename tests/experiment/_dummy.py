"""A tiny deterministic stand-in algorithm for fast tests of the experiment layer.

A real :class:`~trustmarl.algos.base.Algorithm` (it is also the smallest example of the family
interface): it acts with ``argmax`` of a per-agent parameter row (or uniformly at random while
training), learns nothing from its transitions, and its ``learn`` does noisy gradient steps towards
zero so that metrics change every update. It reports ``episode_return = -|params|^2`` (NaN every 4th
update: "no episode ended"), two losses and a per-agent diagnostic; ``loss/actor`` turns NaN at
update ``nan_at`` (parameters too).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from trustmarl.algos.base import Algorithm
from trustmarl.validation import positive, positive_int

NAME = "dummy"


@dataclasses.dataclass
class DummyConfig:
    name: str = NAME
    lr: float = 0.1
    num_envs: int = 2
    rollout_len: int = 4
    noise: float = 0.5
    nan_at: int = -1  # 1-based update whose loss (and parameters) become NaN; -1: never

    def steps_per_update(self) -> int:
        return self.num_envs * self.rollout_len

    def validate(self) -> None:
        positive(self, "lr")
        positive_int(self, "num_envs", "rollout_len")


class DummyState(NamedTuple):
    params: jax.Array  # [n_agents, 3]
    opt: dict
    env_state: Any
    last: Any
    episodes: Any
    key: jax.Array
    update: jax.Array
    env_steps: jax.Array
    carry: tuple = ()


class DummyAlgorithm(Algorithm):
    def __init__(self, env, cfg: DummyConfig, total_updates: int | None = None):
        super().__init__(env, cfg, total_updates)
        self.name = cfg.name

    def init_state(self, key, last, env_state=None):
        k_params, k_rng = jax.random.split(key)
        return DummyState(
            params=jax.random.normal(k_params, (self.n_agents, 3)),
            opt={"m": jnp.zeros((self.n_agents, 3)), "count": jnp.int32(0)},
            **{**self.loop_fields(key, last, env_state), "key": k_rng},
        )

    def policy_view(self, state):
        return state.params

    def act(self, view, carry, last, key):
        return self.agents.random_actions(key, last.avail), (), carry

    def transition(self, view, last, ts, act_out):
        return {"reward": ts.reward}

    def learn(self, state, traj):
        rng, k_grad, k_ret = jax.random.split(state.key, 3)
        update = state.update + 1
        grad = state.params + self.cfg.noise * jax.random.normal(k_grad, state.params.shape)
        m = 0.9 * state.opt["m"] + 0.1 * grad
        params = state.params - self.cfg.lr * m
        blow_up = update == self.cfg.nan_at
        params = jnp.where(blow_up, jnp.nan, params)
        ended = update % 4 != 3
        ret = -jnp.sum(params**2) + 0.01 * jax.random.normal(k_ret)
        metrics = {
            "episode_return": jnp.where(ended, ret, jnp.nan),
            "episodes": jnp.where(ended, self.cfg.num_envs, 0),
            "loss/actor": jnp.where(blow_up, jnp.nan, jnp.mean(grad**2)),
            "loss/critic": jnp.mean(m**2),
            "diag/ratio_per_agent": jnp.abs(m).mean(axis=1),
        }
        state = state._replace(params=params, opt={"m": m, "count": state.opt["count"] + 1}, key=rng)
        return state, metrics

    def eval_actions(self, view, carry, obs, avail, done, key, deterministic=True):
        """Agent ``k`` plays ``argmax(params[k])`` (per group; within the group's action count)."""
        if not deterministic:
            return self.agents.random_actions(key, avail), carry
        out, start = [], 0
        for grp, av in zip(self.groups, avail):
            choice = jnp.argmax(view[start:start + grp.n, : grp.avail_dim], axis=-1).astype(jnp.int32)
            out.append(jnp.broadcast_to(choice, av.shape[:-1]))
            start += grp.n
        return tuple(out), carry


def register() -> None:
    """Register ``dummy`` (after letting the real algorithms register themselves)."""
    from trustmarl.algos import algo_names, register_algo

    algo_names()
    register_algo(NAME, DummyConfig, DummyAlgorithm, "Test stand-in: noisy gradient steps towards zero.",
                  family="test", action_kinds=("discrete",))


def config(env: str = "matrix/proposition1", **overrides):
    """A resolved run config of ``dummy`` on ``env`` (default ``matrix/proposition1``, 4 agents)."""
    from trustmarl.experiment.config import build_config

    register()
    base = {"total_steps": 8 * 10, "chunk_updates": 3, "num_seeds": 2}
    base.update(overrides)
    return build_config(NAME, env, base)
