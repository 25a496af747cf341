"""Any trustmarl JAX-native environment as a PettingZoo Parallel API environment (optional extra ``pettingzoo``).

``to_pettingzoo("mpe/rover_tower")`` (or ``to_pettingzoo(env)``) returns a
:class:`JaxParallelEnv` that other libraries can use like any PettingZoo env:

- **Agents** are ``env.agents`` (the groups concatenated, trustmarl's global order) as
  ``possible_agents``. ``agents`` holds the agents still in the episode.
- **Spaces.** ``observation_space(agent)`` is ``Box(-inf, inf, (obs_dim,), float32)`` of the agent's
  group; ``action_space(agent)`` is ``Discrete(n)`` or ``Box(low, high, (dim,), float32)``;
  ``state_space`` / ``state()`` are the global state.
- **Reset / step.** ``reset(seed)`` seeds a JAX key stream (``PRNGKey(seed)``; without a seed the first
  reset draws one); every reset and step consumes a fresh key of it. ``step(actions)`` runs the
  environment's non-resetting ``_step``, compiled once per environment (equal environments share the
  compiled functions). Continuous actions are clipped to the space; agents missing from ``actions``
  (e.g. already finished) act with action 0 / the lower bound.
- **Episode end.** ``terminated`` / ``truncated`` are the env's flags for every live agent; an agent
  that becomes inactive (``TimeStep.active`` false, e.g. a dead SMAX unit) is terminated. Finished
  agents leave ``agents``; an episode is over when ``agents`` is empty (call ``reset``).
- **Available actions.** For discrete agents ``infos[agent]["action_mask"]`` (int8) holds the mask, as
  trustmarl's own PettingZoo adapter reads it.
- **Rendering.** With ``render_mode="rgb_array"``, ``render()`` returns ``env.render(state)`` (uint8
  ``[H, W, 3]``) for environments that implement it.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np

from trustmarl.envs.base import Box, Discrete, MultiAgentEnv
from trustmarl.envs.host import MissingExtraError

try:
    import gymnasium.spaces as gspaces
    from pettingzoo.utils.env import ParallelEnv
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise MissingExtraError(
        f"to_pettingzoo needs pettingzoo and gymnasium: pip install 'trustmarl[pettingzoo]' ({err})"
    ) from err


@functools.lru_cache(maxsize=64)
def _compiled(env: MultiAgentEnv):
    """Jitted ``reset`` and non-resetting ``_step`` of ``env`` (shared by equal environments)."""
    return jax.jit(env.reset), jax.jit(env._step)


class JaxParallelEnv(ParallelEnv):
    """A trustmarl :class:`~trustmarl.envs.base.MultiAgentEnv` behind PettingZoo's Parallel API."""

    def __init__(self, env: MultiAgentEnv, render_mode: str | None = None, name: str | None = None):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if render_mode == "rgb_array" and not callable(getattr(env, "render", None)):
            raise ValueError(f"{type(env).__name__} does not implement render(state)")
        self.env = env
        self.render_mode = render_mode
        self.metadata = {"name": name or type(env).__name__, "render_modes": ["rgb_array"],
                         "is_parallelizable": True, "render_fps": 10}
        self.possible_agents = list(env.agents)
        self.agents: list[str] = []
        self.observation_spaces: dict[str, Any] = {}
        self.action_spaces: dict[str, Any] = {}
        self._where: dict[str, tuple[int, int]] = {}  # agent -> (group index, index in group)
        for gi, g in enumerate(env.groups):
            obs_space = gspaces.Box(-np.inf, np.inf, (g.obs_dim,), np.float32)
            sp = g.action_space
            if isinstance(sp, Discrete):
                act_space = gspaces.Discrete(sp.n)
            elif isinstance(sp, Box):
                act_space = gspaces.Box(np.float32(sp.low), np.float32(sp.high), (sp.dim,), np.float32)
            else:  # pragma: no cover - the env contract has only these two
                raise TypeError(f"unsupported action space {sp!r}")
            for k, a in enumerate(g.agents):
                self.observation_spaces[a] = obs_space
                self.action_spaces[a] = act_space
                self._where[a] = (gi, k)
        self.state_space = gspaces.Box(-np.inf, np.inf, (env.state_dim,), np.float32)
        self._reset_fn, self._step_fn = _compiled(env)
        self._key: jax.Array | None = None
        self._env_state: Any = None
        self._ts: Any = None

    # --- spaces ------------------------------------------------------------------------------------
    def observation_space(self, agent: str):
        return self.observation_spaces[agent]

    def action_space(self, agent: str):
        return self.action_spaces[agent]

    # --- episode -----------------------------------------------------------------------------------
    def _next_key(self) -> jax.Array:
        self._key, sub = jax.random.split(self._key)
        return sub

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._key = jax.random.PRNGKey(int(seed))
        elif self._key is None:
            self._key = jax.random.PRNGKey(int(np.random.SeedSequence().generate_state(1)[0]))
        self._env_state, ts = self._reset_fn(self._next_key())
        self._ts = jax.device_get(ts)
        active = np.asarray(self._ts.active, bool)
        self.agents = [a for a, on in zip(self.possible_agents, active) if on]
        return self._observations(self.agents), self._infos(self.agents)

    def step(self, actions: dict):
        if self._env_state is None:
            raise RuntimeError("call reset() before step()")
        live = list(self.agents)
        if not live:
            raise RuntimeError("the episode is over (no agents left): call reset()")
        self._env_state, ts = self._step_fn(self._next_key(), self._env_state, self._group_actions(actions))
        self._ts = jax.device_get(ts)
        rewards = np.asarray(self._ts.reward, np.float64)
        active = np.asarray(self._ts.active, bool)
        index = {a: i for i, a in enumerate(self.possible_agents)}
        term_all, trunc_all = bool(self._ts.terminated), bool(self._ts.truncated)
        obs = self._observations(live)
        rew = {a: float(rewards[index[a]]) for a in live}
        term = {a: term_all or not active[index[a]] for a in live}
        trunc = {a: trunc_all and not term[a] for a in live}
        infos = self._infos(live)
        self.agents = [a for a in live if not (term[a] or trunc[a])]
        return obs, rew, term, trunc, infos

    def _group_actions(self, actions: dict) -> tuple:
        out = []
        for gi, g in enumerate(self.env.groups):
            sp = g.action_space
            if isinstance(sp, Discrete):
                arr = np.zeros((g.n,), np.int32)
                for k, a in enumerate(g.agents):
                    if a in actions:
                        arr[k] = int(np.asarray(actions[a]).reshape(()))
            else:
                arr = np.full((g.n, sp.dim), sp.low, np.float32)
                for k, a in enumerate(g.agents):
                    if a in actions:
                        arr[k] = np.clip(np.asarray(actions[a], np.float32).reshape(sp.dim), sp.low, sp.high)
            out.append(arr)
        return tuple(out)

    def _observations(self, agents: list[str]) -> dict:
        obs = self._ts.obs
        return {a: np.asarray(obs[self._where[a][0]][self._where[a][1]], np.float32) for a in agents}

    def _infos(self, agents: list[str]) -> dict:
        infos: dict[str, dict] = {}
        for a in agents:
            gi, k = self._where[a]
            info: dict[str, Any] = {}
            if isinstance(self.env.groups[gi].action_space, Discrete):
                info["action_mask"] = np.asarray(self._ts.avail[gi][k], np.int8)
            infos[a] = info
        return infos

    def state(self) -> np.ndarray:
        if self._ts is None:
            raise RuntimeError("call reset() before state()")
        return np.asarray(self._ts.state, np.float32)

    def render(self):
        if self.render_mode is None:
            return None
        if self._env_state is None:
            raise RuntimeError("call reset() before render()")
        return np.asarray(self.env.render(self._env_state), np.uint8)

    def close(self) -> None:
        self._env_state = None


def to_pettingzoo(env_or_name: MultiAgentEnv | str, render_mode: str | None = None, **kwargs: Any) -> JaxParallelEnv:
    """A PettingZoo Parallel env running the JAX env ``env_or_name`` (an instance, or a registered name
    built with the hyperparameters ``kwargs``, e.g. ``to_pettingzoo("mpe/simple_spread", n_agents=2)``)."""
    if isinstance(env_or_name, str):
        from trustmarl.envs.registry import make

        return JaxParallelEnv(make(env_or_name, **kwargs), render_mode=render_mode, name=env_or_name)
    if kwargs:
        raise TypeError(f"hyperparameters {sorted(kwargs)} apply only to an environment given by name")
    if not isinstance(env_or_name, MultiAgentEnv):
        raise TypeError(f"expected a trustmarl MultiAgentEnv or a registered name, got {type(env_or_name).__name__}")
    return JaxParallelEnv(env_or_name, render_mode=render_mode)
