"""A tiny PettingZoo Parallel API env for the host rollout tests (plain Python, importable by workers).

``GuessEnv``: two agents each see a one-hot target ``[3]`` plus the episode time; each gets reward 1
when its discrete action equals its target, else 0. Targets are redrawn every step from the episode
seed, episodes last ``length`` steps (truncation). A uniform policy earns ``length / 3`` per episode,
the optimal one ``length``. ``crash_at`` raises ``RuntimeError`` on that step of the env's lifetime.
"""

from __future__ import annotations

import gymnasium.spaces as gspaces
import numpy as np


class GuessEnv:
    metadata = {"name": "guess"}

    def __init__(self, length: int = 5, crash_at: int | None = None):
        self.length, self.crash_at = length, crash_at
        self.possible_agents = ["guesser_0", "guesser_1"]
        self.agents: list[str] = []
        self._obs_space = gspaces.Box(0.0, 1.0, (4,), np.float32)
        self._act_space = gspaces.Discrete(3)
        self._lifetime = 0
        self.max_cycles = length

    def observation_space(self, agent):
        return self._obs_space

    def action_space(self, agent):
        return self._act_space

    def _obs(self):
        out = {}
        for i, a in enumerate(self.possible_agents):
            o = np.zeros(4, np.float32)
            o[self.targets[i]] = 1.0
            o[3] = self.t / self.length
            out[a] = o
        return out

    def reset(self, seed=None, options=None):
        self.rng = np.random.default_rng(seed)
        self.t = 0
        self.targets = self.rng.integers(0, 3, 2)
        self.agents = list(self.possible_agents)
        return self._obs(), {a: {} for a in self.agents}

    def step(self, actions):
        self._lifetime += 1
        if self.crash_at is not None and self._lifetime >= self.crash_at:
            raise RuntimeError(f"guess env crashed at lifetime step {self._lifetime}")
        rewards = {a: float(int(actions[a]) == int(self.targets[i])) for i, a in enumerate(self.possible_agents)}
        self.t += 1
        self.targets = self.rng.integers(0, 3, 2)
        done = self.t >= self.length
        obs = self._obs()
        terms = {a: False for a in self.agents}
        truncs = {a: done for a in self.agents}
        infos = {a: {} for a in self.agents}
        if done:
            self.agents = []
        return obs, rewards, terms, truncs, infos

    def close(self):
        pass


def guess_env(**kwargs):
    return GuessEnv(**kwargs)


# --- a deterministic JAX-native env and a Parallel API wrapper around it -------------------------------

import dataclasses  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from trustmarl.envs.base import AgentGroup, Box, Discrete, MultiAgentEnv  # noqa: E402


@dataclasses.dataclass(frozen=True)
class CycleEnv(MultiAgentEnv):
    """Deterministic (key-free) env: discrete agents ``a_0, a_1`` should pick ``(t + i) % 3``; the
    continuous agent ``c_0`` should output 0.5. Team reward; episodes of ``length`` steps (truncated)."""

    length: int = 3

    @property
    def groups(self):
        return (AgentGroup("a", ("a_0", "a_1"), 4, Discrete(3)), AgentGroup("c", ("c_0",), 2, Box(1, -1.0, 1.0)))

    @property
    def state_dim(self):
        return 3

    def _ts(self, t, reward, truncated):
        targets = (t + jnp.arange(2)) % 3
        frac = t.astype(jnp.float32) / self.length
        obs_a = jnp.concatenate([jax.nn.one_hot(targets, 3), jnp.full((2, 1), frac)], axis=-1)
        obs_c = jnp.stack([frac, 1.0 - frac])[None]
        state = jnp.concatenate([frac[None], targets.astype(jnp.float32)])
        avail = (jnp.ones((2, 3), bool), jnp.ones((1, 0), bool))
        return self.make_timestep((obs_a, obs_c), avail, state, jnp.full((3,), reward, jnp.float32), False, truncated)

    def _reset(self, key):
        t = jnp.asarray(0, jnp.int32)
        return t, self._ts(t, 0.0, False)

    def _step(self, key, t, actions):
        targets = (t + jnp.arange(2)) % 3
        reward = jnp.sum(actions[0] == targets) - jnp.square(actions[1][0, 0] - 0.5)
        t = t + 1
        return t, self._ts(t, reward, t >= self.length)


class JaxParallel:
    """A JAX-native env behind the PettingZoo Parallel API (numpy in and out); resets ignore the seed."""

    metadata = {"name": "jax_parallel"}

    def __init__(self, env: MultiAgentEnv):
        self.env = env
        self.possible_agents = list(env.agents)
        self.agents: list[str] = []
        self._step = jax.jit(env._step)
        self._spaces = {}
        for g in env.groups:
            obs = gspaces.Box(-np.inf, np.inf, (g.obs_dim,), np.float32)
            sp = g.action_space
            act = gspaces.Discrete(sp.n) if isinstance(sp, Discrete) else gspaces.Box(sp.low, sp.high, (sp.dim,), np.float32)
            self._spaces.update({a: (obs, act) for a in g.agents})
        self.state_space = gspaces.Box(-np.inf, np.inf, (env.state_dim,), np.float32)

    def observation_space(self, agent):
        return self._spaces[agent][0]

    def action_space(self, agent):
        return self._spaces[agent][1]

    def _dicts(self, ts):
        obs = {}
        for g, o in zip(self.env.groups, ts.obs):
            obs.update({a: np.asarray(o[i]) for i, a in enumerate(g.agents)})
        rewards = {a: float(r) for a, r in zip(self.possible_agents, np.asarray(ts.reward))}
        return obs, rewards

    def reset(self, seed=None, options=None):
        self.s, self.ts = self.env.reset(jax.random.PRNGKey(0))
        self.agents = list(self.possible_agents)
        return self._dicts(self.ts)[0], {a: {} for a in self.agents}

    def step(self, actions):
        acts = []
        for g in self.env.groups:
            if isinstance(g.action_space, Discrete):
                acts.append(jnp.asarray([int(actions[a]) for a in g.agents], jnp.int32))
            else:
                acts.append(jnp.asarray(np.stack([actions[a] for a in g.agents]), jnp.float32))
        self.s, self.ts = self._step(jax.random.PRNGKey(0), self.s, tuple(acts))
        obs, rewards = self._dicts(self.ts)
        term, trunc = bool(self.ts.terminated), bool(self.ts.truncated)
        terms = {a: term for a in self.agents}
        truncs = {a: trunc for a in self.agents}
        if term or trunc:
            self.agents = []
        return obs, rewards, terms, truncs, {a: {} for a in self.possible_agents}

    def state(self):
        return np.asarray(self.ts.state)

    def close(self):
        pass


def cycle_parallel(length: int = 3):
    return JaxParallel(CycleEnv(length=length))
