"""MPE ``simple_spread`` (cooperative navigation) with N agents, and the Spread variants of Li et al. (2022).

The default reproduces ``mpe2.simple_spread_v3.parallel_env(N, local_ratio, max_cycles,
continuous_actions)`` exactly (up to float32 rounding): same physics, observations, global state,
rewards, truncation. The world (mpe2 ``simple_spread.Scenario``):

- ``N`` agents (radius 0.15, mass 1, collide, silent, no speed limit, no motor noise) and ``N``
  landmarks (radius 0.05, fixed, do not collide). Positions start uniform in ``[-1, 1]^2``, velocities at 0.
- Discrete actions ``[no-op, left, right, down, up]`` give a force ``5 * (+-1)`` on x or y
  (``continuous_actions=True``: ``Box(0, 1, 5)``, force ``5 * (a[2] - a[1], a[4] - a[3])``).
- Contact force between two agents ``a, b`` with ``d = p_a - p_b``: ``F_a = 100 * d / |d| *
  k * softplus(-(|d| - 0.3) / k)`` with ``k = 1e-3`` (and ``F_b = -F_a``).
- Semi-implicit Euler with ``dt = 0.1``, damping 0.25: ``p += v dt``; ``v = 0.75 v + F dt``
  (``integration="velocity_first"``: the original MPE order, ``v`` first, then ``p += v dt``).
- Observation of agent ``i``: ``[v_i, p_i, (p_l - p_i) for landmarks l, (p_j - p_i) for agents j != i,
  comm of agents j != i (2 zeros each, agents are silent)]``, length ``4 + 2N + 4(N - 1)``.
- Global state: the concatenation of all agents' observations (mpe2 ``env.state()``).
- The episode is truncated (never terminated) after ``max_cycles`` steps.

Rewards (``reward_mode``; all computed after the move; ``global = -sum_l min_a |p_a - p_l|``,
``#coll(i) = #{j != i : |p_i - p_j| < 0.3}``):

- ``"mpe2"`` (default): ``(1 - local_ratio) * global - local_ratio * #coll(i)``, mpe2's reward.
- ``"ful"``: ``global - #coll(i)``: the reward of Lowe et al. (2017) as Li et al. (2022, Appendix F.1)
  describe it, for **Spread** (2 agents) and **Spread-3-Ful** (3 agents, Appendix D).
- ``"sep"`` (**Spread-3-Sep**, any N): ``r_i = -|p_i - p_{L_i}|``, agent ``i`` owns landmark ``i``;
  agents do not collide (no contact forces, no penalty).
- ``"mix"`` (**Spread-3-Mix**, N = 3): ``r_0 = r_1 = -sum_{l in {L0, L1}} min_{a in {0, 1}} |p_a - p_l|
  - 1[|p_0 - p_1| < 0.3]``, ``r_2 = -|p_2 - p_{L2}|``; only agents 0 and 1 collide with each other.

Li et al. (2022, Appendix D) define Sep/Mix/Ful in words only ("the minimum distance between i and k
and the landmark"); which landmarks the Mix pair shares is our reading (the two landmarks of the two
agents' own Sep rewards). Observations are the same in every mode, so in ``sep``/``mix`` an agent's
landmark is identified by its position in the observation: train with ``algo.share_params=false``
(or agent ids).

**Named environments** (Li et al. 2022): ``mpe/spread_2`` (:class:`Spread2`), ``mpe/spread_3_sep``,
``mpe/spread_3_mix``, ``mpe/spread_3_ful`` fix ``n_agents`` and ``reward_mode`` and default to the
original MPE integration order (``integration="velocity_first"``; the authors' code builds on the
original MPE), 25-step episodes. Two differences from the original MPE code, kept on purpose:

- it counts each agent's collision with itself, a constant -1 per agent and step; like mpe2 we leave
  that constant out;
- it hands every agent of a ``collaborative`` scenario (``simple_spread`` is one) the **sum** of all
  agents' rewards. Li et al. (2022, Appendix F.1) describe per-agent rewards ("globally rewarded ...
  locally penalised for each collision"), which is what we give. With the sum and the self-collisions
  the original's per-agent reward is ``N * (our team reward) - N`` per step (team reward = the mean
  over agents), so only the scale and offset of returns differ for ``ful``.

Arrays are float32 (JAX's default float); with ``jax.enable_x64(True)`` they are float64, which
the parity tests use to compare with mpe2 step by step (positions and velocities to 1e-10,
observations to 1e-6 because mpe2 rounds them to float32, rewards to 1e-9). In float32 the stiff
contact force amplifies rounding after collisions: up to ~1e-4 over a 25-step episode.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from trustmarl.envs.base import TimeStep
from trustmarl.envs.mpe import core
from trustmarl.envs.mpe.core import ParticleEnv, World, float_dtype, others_index
from trustmarl.envs.registry import register

AGENT_SIZE = 0.15
LANDMARK_SIZE = 0.05
DIM_C = 2  # communication channel width (silent agents observe zeros)
REWARD_MODES = ("mpe2", "ful", "sep", "mix")
_DEFAULT_LOCAL_RATIO = 0.5


class SpreadState(NamedTuple):
    """Physical state of ``simple_spread``."""

    agent_pos: jax.Array  # [N, 2]
    agent_vel: jax.Array  # [N, 2]
    landmark_pos: jax.Array  # [N, 2]
    step: jax.Array  # int32, steps taken in this episode


def _float_dtype() -> jnp.dtype:  # kept for code importing it from here
    return float_dtype()


def _others_index(n: int) -> np.ndarray:  # kept for code importing it from here
    return others_index(n)


@dataclasses.dataclass(frozen=True)
class SimpleSpread(ParticleEnv):
    """MPE ``simple_spread`` (mpe2 ``simple_spread_v3``) in JAX, with the Spread-2/Spread-3 rewards of Li et al. 2022."""

    n_agents: int = 3  # type: ignore[assignment]  # agents (and as many landmarks)
    local_ratio: float = _DEFAULT_LOCAL_RATIO  # weight of the agent's own collision penalty against the global reward
    max_cycles: int = 25  # episode length (time limit)
    reward_mode: str = "mpe2"  # mpe2 | ful | sep | mix (Li et al. 2022's Spread variants)
    continuous_actions: bool = False  # continuous force actions instead of 5 discrete ones
    integration: str = "position_first"  # position_first (mpe2) | velocity_first (the original MPE)

    description = ("MPE simple_spread (cooperative navigation, N agents), exact JAX port of mpe2 simple_spread_v3; "
                   "reward_mode=ful/sep/mix gives the Spread-2 / Spread-3 rewards of Li et al. 2022")

    # --- spaces -------------------------------------------------------------------------------
    def validate(self) -> None:
        core.validate_int("n_agents", self.n_agents, 1)
        lr = self.local_ratio
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0.0 <= lr <= 1.0:
            raise ValueError(f"local_ratio must be a number in [0, 1], got {lr!r}")
        core.validate_int("max_cycles", self.max_cycles, 1)
        core.validate_choice("reward_mode", self.reward_mode, REWARD_MODES)
        if self.reward_mode != "mpe2" and lr != _DEFAULT_LOCAL_RATIO:
            raise ValueError(f"local_ratio={lr!r} only applies to reward_mode='mpe2', not reward_mode={self.reward_mode!r} "
                             "(its rewards have no local/global mix)")
        if self.reward_mode == "mix" and self.n_agents != 3:
            raise ValueError(f"reward_mode='mix' (Spread-3-Mix) needs n_agents=3, got n_agents={self.n_agents!r}")
        core.validate_bool("continuous_actions", self.continuous_actions)
        core.validate_choice("integration", self.integration, core.INTEGRATIONS)

    @property
    def obs_dim(self) -> int:
        n = self.n_agents
        return 4 + 2 * n + 2 * (n - 1) + DIM_C * (n - 1)

    @functools.cached_property
    def world(self) -> World:
        n = self.n_agents
        collide = self.reward_mode != "sep"
        no_contact = [(0, 2), (1, 2)] if self.reward_mode == "mix" else []
        return World.make(n, agent_size=AGENT_SIZE, landmark_size=(LANDMARK_SIZE,) * n, collide=collide,
                          no_contact=no_contact, dim_c=DIM_C, integration=self.integration)

    @property
    def group_layout(self):
        return (("agent", tuple(f"agent_{i}" for i in range(self.n_agents)), self.obs_dim),)

    @property
    def max_episode_steps(self) -> int:
        return self.max_cycles

    @property
    def min_episode_steps(self) -> int:
        return self.max_cycles  # truncated after max_cycles steps, never terminated

    @property
    def state_dim(self) -> int:
        return self.n_agents * self.obs_dim

    def render(self, state: SpreadState, size: int = 320):
        """An RGB frame ``[size, size, 3]`` uint8 (mpe2's colours: agents blue, landmarks dark grey)."""
        pos = np.concatenate([np.asarray(state.agent_pos), np.asarray(state.landmark_pos)])
        radius = [AGENT_SIZE] * self.n_agents + [LANDMARK_SIZE] * self.n_agents
        colors = [core.mpe_rgb((0.35, 0.35, 0.85))] * self.n_agents + [core.mpe_rgb((0.25, 0.25, 0.25))] * self.n_agents
        return core.draw_world(pos, radius, colors, size=size)

    # --- building states ----------------------------------------------------------------------
    def make_state(self, agent_pos, landmark_pos, agent_vel=None, step: int = 0) -> SpreadState:
        """A state from given positions ``[N, 2]`` (and velocities, default 0), e.g. copied from mpe2."""
        dtype = float_dtype()
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
        n = self.n_agents
        # simple_spread.Scenario.reset_world: uniform(-1, 1) positions, zero velocities (one draw for all)
        pos = jax.random.uniform(key, (2 * n, 2), float_dtype(), -1.0, 1.0)
        return self.reset_to(pos[:n], pos[n:])

    def _contact_forces(self, pos: jax.Array) -> jax.Array:
        """``[N, 2]`` total contact force on each agent (mpe2 ``World.get_collision_force``)."""
        return core.contact_forces(self.world, pos)

    def _step(self, key: jax.Array, state: SpreadState, actions: tuple) -> tuple[SpreadState, TimeStep]:
        del key  # deterministic dynamics
        u, _ = self.decode_actions(actions, state.agent_pos.dtype)  # SimpleEnv._set_action
        pos, vel = self.move(state.agent_pos, state.agent_vel, u)  # World.step
        new = SpreadState(pos, vel, state.landmark_pos, state.step + 1)
        return new, self._timestep(new, self._reward(new))

    def _reward(self, state: SpreadState) -> jax.Array:
        """Per-agent reward after the move (SimpleEnv._execute_world_step + Scenario.reward)."""
        pos, lm = state.agent_pos, state.landmark_pos
        n = self.n_agents
        mode = self.reward_mode
        d_al = core.distances(pos, lm)  # [agent, landmark]
        if mode == "sep":
            return -jnp.diagonal(d_al)
        delta = pos[:, None, :] - pos[None, :, :]
        d_aa = jnp.sqrt(jnp.sum(delta * delta, axis=-1))
        collide = (d_aa < 2 * AGENT_SIZE) & ~jnp.eye(n, dtype=bool)
        if mode == "mix":
            pair = -jnp.sum(jnp.min(d_al[:2, :2], axis=0)) - collide[0, 1].astype(pos.dtype)
            return jnp.stack([pair, pair, -d_al[2, 2]])
        global_reward = -jnp.sum(jnp.min(d_al, axis=0))
        local = -jnp.sum(collide, axis=1).astype(pos.dtype)
        if mode == "ful":
            return global_reward + local
        return global_reward * (1.0 - self.local_ratio) + local * self.local_ratio

    def _observations(self, state: SpreadState) -> jax.Array:
        """``[N, obs_dim]`` observations (Scenario.observation)."""
        n = self.n_agents
        pos, vel = state.agent_pos, state.agent_vel
        landmark_rel = (state.landmark_pos[None, :, :] - pos[:, None, :]).reshape(n, 2 * n)
        others = jnp.asarray(others_index(n))  # [N, N-1]
        other_rel = (pos[others] - pos[:, None, :]).reshape(n, 2 * (n - 1))
        comm = jnp.zeros((n, DIM_C * (n - 1)), dtype=pos.dtype)
        return jnp.concatenate([vel, pos, landmark_rel, other_rel, comm], axis=-1)

    def _timestep(self, state: SpreadState, reward: jax.Array) -> TimeStep:
        obs = self._observations(state)
        truncated = state.step >= self.max_cycles
        return self.make_timestep((obs,), self.all_available(), obs.reshape(-1), reward, False, truncated)


register("mpe/simple_spread", SimpleSpread, SimpleSpread.description)


# --- the named environments of Li et al. 2022 (MAMT) ----------------------------------------------
# The team size and the reward are fixed (not env.* keys); max_cycles, continuous_actions and the
# integration order stay configurable, with the original MPE order as the default.

_FIXED = dict(init=False, repr=True, compare=True)


@dataclasses.dataclass(frozen=True)
class Spread2(SimpleSpread):
    """Spread (Li et al. 2022, Appendix F.1): 2 agents, 2 landmarks, ``-sum_l min_a |p_a - p_l| - #coll(i)``."""

    n_agents: int = dataclasses.field(default=2, **_FIXED)  # type: ignore[assignment]
    local_ratio: float = dataclasses.field(default=_DEFAULT_LOCAL_RATIO, **_FIXED)
    reward_mode: str = dataclasses.field(default="ful", **_FIXED)
    integration: str = "velocity_first"

    description = ("Spread (Li et al. 2022, App. F.1): 2 agents, 2 landmarks; global distance reward minus "
                   "own collisions; original MPE physics")


@dataclasses.dataclass(frozen=True)
class Spread3Sep(Spread2):
    """Spread-3-Sep (Li et al. 2022, Appendix D): each agent is rewarded only by its own landmark and nobody collides."""

    n_agents: int = dataclasses.field(default=3, **_FIXED)  # type: ignore[assignment]
    reward_mode: str = dataclasses.field(default="sep", **_FIXED)

    description = ("Spread-3-Sep (Li et al. 2022, App. D): 3 agents, agent i rewarded by -|p_i - L_i| only, "
                   "no collisions (independent agents)")


@dataclasses.dataclass(frozen=True)
class Spread3Mix(Spread2):
    """Spread-3-Mix (Li et al. 2022, Appendix D): agents 0 and 1 share a two-landmark Spread reward, agent 2 is alone."""

    n_agents: int = dataclasses.field(default=3, **_FIXED)  # type: ignore[assignment]
    reward_mode: str = dataclasses.field(default="mix", **_FIXED)

    description = ("Spread-3-Mix (Li et al. 2022, App. D): agents 0 and 1 coupled (landmarks 0, 1 and their "
                   "collision), agent 2 rewarded by -|p_2 - L_2| alone")


@dataclasses.dataclass(frozen=True)
class Spread3Ful(Spread2):
    """Spread-3-Ful (Li et al. 2022, Appendix D): the standard 3-agent Spread reward, every agent coupled."""

    n_agents: int = dataclasses.field(default=3, **_FIXED)  # type: ignore[assignment]

    description = ("Spread-3-Ful (Li et al. 2022, App. D): 3 agents, 3 landmarks, global distance reward minus "
                   "own collisions (fully coupled)")


PAPER_SPREADS = {
    "mpe/spread_2": Spread2,
    "mpe/spread_3_sep": Spread3Sep,
    "mpe/spread_3_mix": Spread3Mix,
    "mpe/spread_3_ful": Spread3Ful,
}
for _name, _cls in PAPER_SPREADS.items():
    register(_name, _cls, _cls.description)
