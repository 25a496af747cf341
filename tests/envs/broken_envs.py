"""Deliberately broken (and good) test environments for the env checker and the host vector env.

``ToyEnv(bug="")`` is a small valid JAX-native env (a discrete group of 2 agents and a continuous group
of 1, episodes of 5 steps); each ``bug`` value breaks exactly one rule of the contract.
``ToyParallelEnv`` is the same idea for the PettingZoo Parallel API (plain Python, no pettingzoo import).
"""

from __future__ import annotations

import dataclasses

import gymnasium.spaces as gspaces
import jax
import jax.numpy as jnp
import numpy as np

from trustmarl.envs.base import AgentGroup, Box, Discrete, MultiAgentEnv

JAX_BUGS = ("obs_shape", "obs_dtype", "reward_shape", "no_avail", "nondeterministic_reset", "nan_obs",
            "never_ends", "state_shape", "done_shape", "info_keys")


@dataclasses.dataclass(frozen=True)
class ToyEnv(MultiAgentEnv):
    """Two discrete agents and one continuous agent chasing a random target; ``bug`` breaks one rule."""

    bug: str = ""
    episode_len: int = 5

    @property
    def groups(self):
        return (AgentGroup("d", ("d0", "d1"), 3, Discrete(4)), AgentGroup("c", ("c0",), 3, Box(2)))

    @property
    def state_dim(self):
        return 4

    def _ts(self, x, step, reward, info=None):
        obs_d = jnp.tile(jnp.concatenate([x, step[None].astype(jnp.float32)])[None], (2, 1))
        obs_c = obs_d[:1]
        if self.bug == "obs_shape":
            obs_d = obs_d[:, :2]
        if self.bug == "obs_dtype":
            obs_d = obs_d.astype(jnp.int32)
        if self.bug == "nan_obs":
            obs_c = obs_c.at[0, 0].set(jnp.nan)
        avail_d = jnp.ones((2, 4), bool)
        if self.bug == "no_avail":
            avail_d = avail_d.at[1].set(False)
        state = jnp.concatenate([x, step[None].astype(jnp.float32), jnp.zeros(1)])
        if self.bug == "state_shape":
            state = state[:3]
        if self.bug == "reward_shape":
            reward = reward[0]
        done = step >= self.episode_len
        if self.bug == "never_ends":
            done = jnp.asarray(False)
        if self.bug == "done_shape":
            done = jnp.broadcast_to(done, (1,))
        return self.make_timestep((obs_d, obs_c), (avail_d, jnp.ones((1, 0), bool)), state, reward, False, done,
                                  info=info)

    def _reset(self, key):
        x = jax.random.normal(key, (2,))
        if self.bug == "nondeterministic_reset":
            x = x + jnp.asarray(np.random.default_rng().normal(size=2), dtype=jnp.float32)
        step = jnp.asarray(0, jnp.int32)
        return (x, step), self._ts(x, step, jnp.zeros(3))

    def _step(self, key, state, actions):
        x, step = state
        move = jnp.asarray([[0, 0], [1, 0], [0, 1], [-1, 0]], jnp.float32)[actions[0]].sum(0) * 0.1
        x = x + move + 0.1 * jnp.clip(actions[1][0], -1, 1)
        step = step + 1
        reward = jnp.full((3,), -jnp.sum(x * x))
        info = {"near": jnp.sum(x * x) < 0.1} if self.bug == "info_keys" else None  # the reset has no "near"
        return (x, step), self._ts(x, step, reward, info)


# --- PettingZoo Parallel API toys ------------------------------------------------------------------

PZ_BUGS = ("missing_agent_in_obs", "missing_agent_in_rewards", "obs_dtype", "obs_outside_space",
           "nondeterministic_reset", "empty_action_mask", "nan_obs")


class ToyParallelEnv:
    """Mixed discrete/continuous Parallel API env: agents ``a_0``(Discrete 3), ``b_0``(Box 2), ``a_1``(Discrete 3).

    Episodes last ``max_cycles`` steps (truncation); ``terminate_at`` ends them by termination instead;
    ``raise_at_step`` raises ``ValueError`` on that step (counted over the env's lifetime); ``bug`` breaks
    one rule of the API; ``mask=True`` gives an ``action_mask`` in infos (action 0 never available).
    """

    metadata = {"name": "toy_parallel"}

    def __init__(self, bug: str = "", max_cycles: int = 4, terminate_at: int | None = None,
                 raise_at_step: int | None = None, mask: bool = False):
        self.bug, self.max_cycles, self.terminate_at = bug, max_cycles, terminate_at
        self.raise_at_step, self.mask = raise_at_step, mask
        self.possible_agents = ["a_0", "b_0", "a_1"]
        self.agents: list[str] = []
        self._obs_space = gspaces.Box(-10.0, 10.0, (2,), np.float32)
        self._lifetime_steps = 0
        self._rng = np.random.default_rng(0)

    def observation_space(self, agent):
        return self._obs_space

    def action_space(self, agent):
        return gspaces.Discrete(3) if agent.startswith("a") else gspaces.Box(-0.5, 0.5, (2,), np.float32)

    def _obs(self):
        obs = {}
        for i, a in enumerate(self.possible_agents):
            o = np.array([self.pos + i, self.t], dtype=np.float32)
            if self.bug == "obs_dtype":
                o = o.astype(np.float64)
            if self.bug == "obs_outside_space":
                o = o + 100.0
            if self.bug == "nan_obs" and a == "b_0":
                o[0] = np.nan
            obs[a] = o
        if self.bug == "missing_agent_in_obs":
            obs.pop("a_1")
        return obs

    def _infos(self):
        if not self.mask:
            return {a: {} for a in self.possible_agents}
        m = np.array([0, 1, 1], dtype=np.int8) if self.bug != "empty_action_mask" else np.zeros(3, np.int8)
        return {a: ({"action_mask": m} if a.startswith("a") else {}) for a in self.possible_agents}

    def reset(self, seed=None, options=None):
        rng = np.random.default_rng(seed)
        self.pos = float(rng.uniform(-1, 1))
        if self.bug == "nondeterministic_reset":
            self.pos += float(self._rng.uniform())
        self.t = 0
        self.agents = list(self.possible_agents)
        return self._obs(), self._infos()

    def step(self, actions):
        self._lifetime_steps += 1
        if self.raise_at_step is not None and self._lifetime_steps >= self.raise_at_step:
            raise ValueError(f"toy env exploded at step {self._lifetime_steps}")
        self.last_actions = dict(actions)
        push = sum(float(np.sum(v)) if isinstance(v, np.ndarray) else 0.1 * (v - 1) for v in actions.values())
        self.pos = float(np.clip(self.pos + push, -5, 5))
        self.t += 1
        term = self.terminate_at is not None and self.t >= self.terminate_at
        trunc = self.t >= self.max_cycles and not term
        rewards = {a: -abs(self.pos) + (0.5 if a == "b_0" else 0.0) for a in self.agents}
        if self.bug == "missing_agent_in_rewards":
            rewards.pop("b_0")
        terms = {a: term for a in self.agents}
        truncs = {a: trunc for a in self.agents}
        obs, infos = self._obs(), self._infos()
        if term or trunc:
            self.agents = []
        return obs, rewards, terms, truncs, infos

    def close(self):
        pass


def toy_parallel_env(**kwargs):
    """Import-path friendly factory: ``"broken_envs:toy_parallel_env"``."""
    return ToyParallelEnv(**kwargs)
