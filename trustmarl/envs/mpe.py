"""JAX-native Multi-Agent Particle Environments: ``simple_spread`` (cooperative navigation).

Reproduces ``mpe2.simple_spread_v3.parallel_env(N, local_ratio, max_cycles, continuous_actions=False)``
exactly (up to float32 rounding): same physics, observations, global state, rewards, truncation.

The world (mpe2 ``core.World`` and ``simple_spread.Scenario``):

- ``N`` agents (radius 0.15, mass 1, collide, silent, no speed limit, no motor noise) and ``N``
  landmarks (fixed, do not collide). Positions start uniform in ``[-1, 1]^2``, velocities at 0.
- Discrete actions ``[no-op, left, right, down, up]`` give a force ``5 * (+-1)`` on x or y.
- Contact force between two agents ``a, b`` with ``d = p_a - p_b``: ``F_a = 100 * d / |d| *
  k * softplus(-(|d| - 0.3) / k)`` with ``k = 1e-3`` (and ``F_b = -F_a``).
- Semi-implicit Euler with ``dt = 0.1``, damping 0.25: ``p += v dt``; ``v = 0.75 v + F dt``.
- Reward of agent ``i`` (computed after the move): ``(1 - local_ratio) * global + local_ratio * local_i``
  with ``global = -sum_landmarks min_agents |p_agent - p_landmark|`` and ``local_i = -#{j != i :
  |p_i - p_j| < 0.3}``.
- Observation of agent ``i``: ``[v_i, p_i, (p_l - p_i) for landmarks l, (p_j - p_i) for agents j != i,
  comm of agents j != i (2 zeros each, agents are silent)]``, length ``4 + 2N + 4(N - 1)``.
- Global state: the concatenation of all agents' observations (mpe2 ``env.state()``).
- The episode is truncated (never terminated) after ``max_cycles`` steps.

Agents live on one array axis; contact forces and distances are computed by broadcasting.
Arrays are float32 (JAX's default float); with ``jax.enable_x64(True)`` they are float64, which
the parity tests use to compare with mpe2 step by step (positions and velocities to 1e-10,
observations to 1e-6 because mpe2 rounds them to float32, rewards to 1e-9). In float32 the stiff
contact force amplifies rounding after collisions: up to ~1e-4 over a 25-step episode.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from trustmarl.envs.base import AgentGroup, Discrete, MultiAgentEnv, TimeStep
from trustmarl.envs.registry import register

# mpe2 core.World / simple_env.SimpleEnv / simple_spread.Scenario constants.
DT = 0.1
DAMPING = 0.25
CONTACT_FORCE = 1e2
CONTACT_MARGIN = 1e-3
AGENT_SIZE = 0.15
SENSITIVITY = 5.0  # SimpleEnv._set_action: action.u *= 5 when agent.accel is None
DIM_C = 2  # communication channel width (silent agents observe zeros)

# Discrete action -> unit force direction: no-op, left, right, down, up.
_ACTION_DIRECTIONS = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]], dtype=np.float32)


class SpreadState(NamedTuple):
    """Physical state of ``simple_spread``."""

    agent_pos: jax.Array  # [N, 2]
    agent_vel: jax.Array  # [N, 2]
    landmark_pos: jax.Array  # [N, 2]
    step: jax.Array  # int32, steps taken in this episode


def _float_dtype() -> jnp.dtype:
    """float32, or float64 when JAX's x64 mode is on."""
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def _others_index(n: int) -> np.ndarray:
    """``[n, n-1]`` indices of the other agents, in order, for each agent."""
    return np.array([[j for j in range(n) if j != i] for i in range(n)], dtype=np.int32).reshape(n, n - 1)


@dataclasses.dataclass(frozen=True)
class SimpleSpread(MultiAgentEnv):
    """MPE ``simple_spread`` (mpe2 ``simple_spread_v3``, discrete actions) in JAX."""

    n_agents: int = 3  # type: ignore[assignment]
    local_ratio: float = 0.5
    max_cycles: int = 25

    description = "MPE simple_spread (cooperative navigation), exact JAX port of mpe2 simple_spread_v3."

    # --- spaces -------------------------------------------------------------------------------
    def validate(self) -> None:
        n = self.n_agents
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n_agents must be an integer >= 1, got {n!r}")
        lr = self.local_ratio
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0.0 <= lr <= 1.0:
            raise ValueError(f"local_ratio must be a number in [0, 1], got {lr!r}")
        mc = self.max_cycles
        if isinstance(mc, bool) or not isinstance(mc, int) or mc < 1:
            raise ValueError(f"max_cycles must be an integer >= 1, got {mc!r}")

    @property
    def obs_dim(self) -> int:
        n = self.n_agents
        return 4 + 2 * n + 2 * (n - 1) + DIM_C * (n - 1)

    @property
    def groups(self) -> tuple[AgentGroup, ...]:
        names = tuple(f"agent_{i}" for i in range(self.n_agents))
        return (AgentGroup("agent", names, self.obs_dim, Discrete(5)),)

    @property
    def max_episode_steps(self) -> int:
        return self.max_cycles

    def render(self, state: SpreadState, size: int = 320):
        """An RGB frame ``[size, size, 3]`` uint8 of the arena ([-1.5, 1.5]^2): agents blue, landmarks grey."""
        from trustmarl.experiment.render import draw_circles

        pos = np.concatenate([np.asarray(state.landmark_pos), np.asarray(state.agent_pos)])
        radius = [0.05] * self.n_agents + [AGENT_SIZE] * self.n_agents
        colors = [(64, 64, 64)] * self.n_agents + [(89, 89, 217)] * self.n_agents
        return draw_circles(pos, radius, colors, size=size, extent=1.5)

    @property
    def state_dim(self) -> int:
        return self.n_agents * self.obs_dim

    # --- building states ----------------------------------------------------------------------
    def make_state(self, agent_pos, landmark_pos, agent_vel=None, step: int = 0) -> SpreadState:
        """A state from given positions ``[N, 2]`` (and velocities, default 0), e.g. copied from mpe2."""
        dtype = _float_dtype()
        agent_pos = jnp.asarray(agent_pos, dtype=dtype).reshape(self.n_agents, 2)
        vel = jnp.zeros_like(agent_pos) if agent_vel is None else jnp.asarray(agent_vel, dtype=dtype)
        return SpreadState(
            agent_pos=agent_pos,
            agent_vel=vel.reshape(self.n_agents, 2),
            landmark_pos=jnp.asarray(landmark_pos, dtype=dtype).reshape(self.n_agents, 2),
            step=jnp.asarray(step, dtype=jnp.int32),
        )

    def reset_to(self, agent_pos, landmark_pos, agent_vel=None) -> tuple[SpreadState, TimeStep]:
        """Start an episode from given positions (what ``_reset`` returns for a sampled state)."""
        state = self.make_state(agent_pos, landmark_pos, agent_vel)
        return state, self._timestep(state, jnp.zeros((self.n_agents,), state.agent_pos.dtype))

    # --- dynamics -----------------------------------------------------------------------------
    def _reset(self, key: jax.Array) -> tuple[SpreadState, TimeStep]:
        k_agent, k_landmark = jax.random.split(key)
        n = self.n_agents
        # simple_spread.Scenario.reset_world: uniform(-1, 1) positions, zero velocities
        dtype = _float_dtype()
        agent_pos = jax.random.uniform(k_agent, (n, 2), dtype, -1.0, 1.0)
        landmark_pos = jax.random.uniform(k_landmark, (n, 2), dtype, -1.0, 1.0)
        return self.reset_to(agent_pos, landmark_pos)

    def _contact_forces(self, pos: jax.Array) -> jax.Array:
        """``[N, 2]`` total contact force on each agent (mpe2 ``World.get_collision_force``)."""
        delta = pos[:, None, :] - pos[None, :, :]  # [N, N, 2], delta[i, j] = p_i - p_j
        dist = jnp.sqrt(jnp.sum(delta * delta, axis=-1))
        not_self = ~jnp.eye(self.n_agents, dtype=bool)
        safe_dist = jnp.where(not_self, dist, 1.0)
        k = CONTACT_MARGIN
        penetration = jnp.logaddexp(0.0, -(safe_dist - 2 * AGENT_SIZE) / k) * k  # softplus penetration
        force = CONTACT_FORCE * delta / safe_dist[..., None] * penetration[..., None]
        return jnp.sum(jnp.where(not_self[..., None], force, 0.0), axis=1)

    def _step(self, key: jax.Array, state: SpreadState, actions: tuple) -> tuple[SpreadState, TimeStep]:
        del key  # deterministic dynamics
        act = jnp.asarray(actions[0], dtype=jnp.int32)
        u = jnp.asarray(_ACTION_DIRECTIONS, dtype=state.agent_pos.dtype)[act] * SENSITIVITY  # SimpleEnv._set_action
        force = u + self._contact_forces(state.agent_pos)
        # World.integrate_state (mass 1, no max speed)
        pos = state.agent_pos + state.agent_vel * DT
        vel = state.agent_vel * (1.0 - DAMPING) + force * DT
        new = SpreadState(pos, vel, state.landmark_pos, state.step + 1)
        return new, self._timestep(new, self._reward(new))

    def _reward(self, state: SpreadState) -> jax.Array:
        """Per-agent reward after the move (SimpleEnv._execute_world_step + Scenario.reward)."""
        pos, lm = state.agent_pos, state.landmark_pos
        d_al = jnp.sqrt(jnp.sum((pos[:, None, :] - lm[None, :, :]) ** 2, axis=-1))  # [agent, landmark]
        global_reward = -jnp.sum(jnp.min(d_al, axis=0))
        delta = pos[:, None, :] - pos[None, :, :]
        d_aa = jnp.sqrt(jnp.sum(delta * delta, axis=-1))
        collide = (d_aa < 2 * AGENT_SIZE) & ~jnp.eye(self.n_agents, dtype=bool)
        local = -jnp.sum(collide, axis=1).astype(pos.dtype)
        return global_reward * (1.0 - self.local_ratio) + local * self.local_ratio

    def _observations(self, state: SpreadState) -> jax.Array:
        """``[N, obs_dim]`` observations (Scenario.observation)."""
        n = self.n_agents
        pos, vel = state.agent_pos, state.agent_vel
        landmark_rel = (state.landmark_pos[None, :, :] - pos[:, None, :]).reshape(n, 2 * n)
        others = jnp.asarray(_others_index(n))  # [N, N-1]
        other_rel = (pos[others] - pos[:, None, :]).reshape(n, 2 * (n - 1))
        comm = jnp.zeros((n, DIM_C * (n - 1)), dtype=pos.dtype)
        return jnp.concatenate([vel, pos, landmark_rel, other_rel, comm], axis=-1)

    def _timestep(self, state: SpreadState, reward: jax.Array) -> TimeStep:
        obs = self._observations(state)
        truncated = state.step >= self.max_cycles
        return self.make_timestep((obs,), self.all_available(), obs.reshape(-1), reward, False, truncated)


register("mpe/simple_spread", SimpleSpread, SimpleSpread.description)
