"""Rover-Tower (Iqbal & Sha, "Actor-Attention-Critic for Multi-Agent Reinforcement Learning", ICML 2019),
the ``multi_speaker_listener`` scenario of the MAAC code, used by Li et al. 2022 (MAMT) and
Li et al. 2023 (F2A2). No Python package ships it; this is a rebuild from the MAAC code.

- **Agents.** ``n_rovers`` rovers (listeners, ids 0..P-1) and as many towers (speakers, ids P..2P-1);
  ``n_landmarks`` landmarks (radius 0.04). Rovers: radius 0.075, mass 1, acceleration 1.5, maximum
  speed 1.0, silent, no collisions; action ``Discrete(5)`` movement. Towers: radius 0.075, do not move;
  action ``Discrete(5)``: one of ``dim_c = 5`` messages, written one-hot to the tower's channel.
- **Reset.** A random permutation pairs tower ``s`` with rover ``rover_of_tower[s]``; each tower gets a
  goal landmark uniformly (goals may repeat). Every agent and landmark starts uniform in ``[-1, 1]^2``
  with zero velocity and zero messages.
- **Observations.** Rover (``P + 9``, 13 by default): ``[one-hot of its tower (P), its tower's current
  message (5), own position (2), own velocity (2)]`` (rovers are blind: no landmarks). Tower (``P + 4``,
  8 by default): ``[one-hot of its rover (P), its rover's position (2), its goal landmark's position
  (2)]``. Positions are absolute.
- **Reward** of a pair, given to both its rover and its tower: with ``d2 = |p_rover - p_goal|^2``,
  ``-d2 + 10 * [d2 < 1.5 * (0.075 + 0.04)]`` (the code compares the *squared* distance with a linear
  threshold, 0.1725; kept). No sharing across pairs: ``TimeStep.reward`` is per agent, rovers then
  towers, and the team reward is its mean.
- **Episode**: truncated after ``max_cycles`` = 25 steps (MAAC's ``episode_length``).
- **Global state**: the concatenation of all observations (rovers then towers), ``8P + ...`` = 84.
- **Physics**: the original MPE integration (``integration="velocity_first"``: ``v = 0.75 v + F dt``,
  clipped to the maximum speed, then ``p += v dt``), as in the MAAC code (Iqbal & Sha 2019); mpe2's order
  (``position_first``) is available.

Deviations: MAAC's one-hot action vectors are trustmarl's discrete indices, and the movement actions
use mpe2's order ``[no-op, left, right, down, up]`` (the original one-hot order is ``[no-op, right,
left, up, down]``: the same five forces, relabelled). Landmark colours (rendering only) are seaborn's
default palette, as in MAAC.
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
from trustmarl.envs.mpe.core import ParticleEnv, World, float_dtype
from trustmarl.envs.registry import register

AGENT_SIZE = 0.075
LANDMARK_SIZE = 0.04
ACCEL = 1.5
MAX_SPEED = 1.0
DIM_C = 5
GOAL_BONUS = 10.0
GOAL_THRESHOLD = 1.5 * (AGENT_SIZE + LANDMARK_SIZE)  # compared with the squared distance (as in MAAC)

# seaborn's default palette (matplotlib tab10), which MAAC uses for the landmarks
LANDMARK_COLORS = np.array([
    [0.1216, 0.4667, 0.7059], [1.0, 0.498, 0.0549], [0.1725, 0.6275, 0.1725], [0.8392, 0.1529, 0.1569],
    [0.5804, 0.4039, 0.7412], [0.549, 0.3373, 0.2941], [0.8902, 0.4667, 0.7608], [0.498, 0.498, 0.498],
    [0.7373, 0.7412, 0.1333], [0.0902, 0.7451, 0.8118],
])


class RoverTowerState(NamedTuple):
    """State of Rover-Tower (agents are rovers then towers)."""

    agent_pos: jax.Array  # [2P, 2]
    agent_vel: jax.Array  # [2P, 2] (towers: 0)
    comm: jax.Array  # [2P, 5] messages (rovers: 0)
    landmark_pos: jax.Array  # [L, 2]
    rover_of_tower: jax.Array  # [P] int32: tower s is paired with rover rover_of_tower[s]
    tower_of_rover: jax.Array  # [P] int32: the inverse permutation
    goal: jax.Array  # [P] int32: tower s's goal landmark
    step: jax.Array  # int32


@dataclasses.dataclass(frozen=True)
class RoverTower(ParticleEnv):
    """Rover-Tower (MAAC ``multi_speaker_listener``): towers see where their blind rover must go and tell it."""

    n_rovers: int = 4  # rovers (each paired with a tower)
    n_landmarks: int = 6  # goal landmarks
    max_cycles: int = 25  # episode length (time limit)
    integration: str = "velocity_first"  # velocity_first (the MAAC code) | position_first (mpe2)

    description = ("Rover-Tower (Iqbal & Sha 2019): 4 blind rovers guided by 4 static speaking towers to goal "
                   "landmarks; per-pair rewards (Li et al. 2022; Li et al. 2023).")

    def validate(self) -> None:
        core.validate_int("n_rovers", self.n_rovers, 1)
        core.validate_int("n_landmarks", self.n_landmarks, 1, len(LANDMARK_COLORS))
        core.validate_int("max_cycles", self.max_cycles, 1)
        core.validate_choice("integration", self.integration, core.INTEGRATIONS)

    @functools.cached_property
    def world(self) -> World:
        p = self.n_rovers
        return World.make(2 * p, agent_size=AGENT_SIZE, landmark_size=(LANDMARK_SIZE,) * self.n_landmarks,
                          accel=ACCEL, max_speed=MAX_SPEED, movable=[True] * p + [False] * p,
                          silent=[True] * p + [False] * p, dim_c=DIM_C, integration=self.integration)

    @property
    def group_layout(self):
        p = self.n_rovers
        return (("rover", tuple(f"rover_{i}" for i in range(p)), p + DIM_C + 4),
                ("tower", tuple(f"tower_{i}" for i in range(p)), p + 4))

    @property
    def state_dim(self) -> int:
        return sum(g.n * g.obs_dim for g in self.groups)

    @property
    def max_episode_steps(self) -> int:
        return self.max_cycles

    @property
    def min_episode_steps(self) -> int:
        return self.max_cycles  # truncated after max_cycles steps, never terminated

    # --- states --------------------------------------------------------------------------------
    def make_state(self, agent_pos, landmark_pos, rover_of_tower, goal, agent_vel=None, comm=None,
                   step: int = 0) -> RoverTowerState:
        """A state from given arrays (rovers then towers); velocities and messages default to 0."""
        dtype = float_dtype()
        p = self.n_rovers
        pos = jnp.asarray(agent_pos, dtype).reshape(2 * p, 2)
        r_of_t = jnp.asarray(rover_of_tower, jnp.int32).reshape(p)
        return RoverTowerState(
            agent_pos=pos,
            agent_vel=jnp.zeros_like(pos) if agent_vel is None else jnp.asarray(agent_vel, dtype).reshape(2 * p, 2),
            comm=jnp.zeros((2 * p, DIM_C), dtype) if comm is None else jnp.asarray(comm, dtype).reshape(2 * p, DIM_C),
            landmark_pos=jnp.asarray(landmark_pos, dtype).reshape(self.n_landmarks, 2),
            rover_of_tower=r_of_t,
            tower_of_rover=jnp.argsort(r_of_t).astype(jnp.int32),
            goal=jnp.asarray(goal, jnp.int32).reshape(p),
            step=jnp.asarray(step, jnp.int32),
        )

    def reset_to(self, state: RoverTowerState) -> tuple[RoverTowerState, TimeStep]:
        return state, self._timestep(state, jnp.zeros((self.n_agents,), state.agent_pos.dtype))

    def _reset(self, key: jax.Array) -> tuple[RoverTowerState, TimeStep]:
        p, n_l, dtype = self.n_rovers, self.n_landmarks, float_dtype()
        u_agent, u_landmark, u_perm, u_goal = core.uniform_parts(key, (4 * p, 2 * n_l, p, p), dtype)
        r_of_t = jnp.argsort(u_perm).astype(jnp.int32)  # a uniformly random pairing
        state = RoverTowerState(
            agent_pos=core.scaled(u_agent, -1.0, 1.0).reshape(2 * p, 2),
            agent_vel=jnp.zeros((2 * p, 2), dtype),
            comm=jnp.zeros((2 * p, DIM_C), dtype),
            landmark_pos=core.scaled(u_landmark, -1.0, 1.0).reshape(n_l, 2),
            rover_of_tower=r_of_t,
            tower_of_rover=jnp.argsort(r_of_t).astype(jnp.int32),
            goal=core.choice_index(u_goal, n_l),
            step=jnp.zeros((), jnp.int32),
        )
        return self.reset_to(state)

    # --- dynamics --------------------------------------------------------------------------------
    def _step(self, key: jax.Array, state: RoverTowerState, actions: tuple) -> tuple[RoverTowerState, TimeStep]:
        del key  # deterministic dynamics
        u, c = self.decode_actions(actions, state.agent_pos.dtype)
        pos, vel = self.move(state.agent_pos, state.agent_vel, u)
        new = state._replace(agent_pos=pos, agent_vel=vel, comm=c, step=state.step + 1)
        return new, self._timestep(new, self._rewards(new))

    def pair_rewards(self, state: RoverTowerState) -> jax.Array:
        """``[P]`` reward of each tower's pair: ``-d2 + 10 [d2 < 0.1725]``, ``d2`` the rover's squared distance to the goal."""
        rover_pos = state.agent_pos[state.rover_of_tower]
        d2 = jnp.sum(jnp.square(rover_pos - state.landmark_pos[state.goal]), axis=-1)
        return -d2 + jnp.where(d2 < GOAL_THRESHOLD, GOAL_BONUS, 0.0)

    def _rewards(self, state: RoverTowerState) -> jax.Array:
        pair = self.pair_rewards(state)
        return jnp.concatenate([pair[state.tower_of_rover], pair])

    def _observations(self, state: RoverTowerState) -> tuple[jax.Array, jax.Array]:
        p = self.n_rovers
        dtype = state.agent_pos.dtype
        rover_pos, rover_vel = state.agent_pos[:p], state.agent_vel[:p]
        message = state.comm[p:][state.tower_of_rover]  # each rover's tower's message
        rover = jnp.concatenate([jax.nn.one_hot(state.tower_of_rover, p, dtype=dtype), message, rover_pos, rover_vel], -1)
        tower = jnp.concatenate([jax.nn.one_hot(state.rover_of_tower, p, dtype=dtype), rover_pos[state.rover_of_tower],
                                 state.landmark_pos[state.goal]], -1)
        return rover, tower

    def _timestep(self, state: RoverTowerState, reward: jax.Array) -> TimeStep:
        obs = self._observations(state)
        gstate = jnp.concatenate([o.reshape(-1) for o in obs])
        return self.make_timestep(obs, self.all_available(), gstate, reward, False, state.step >= self.max_cycles)

    def render(self, state: RoverTowerState, size: int = 320) -> np.ndarray:
        """Rovers in their goal's colour (lightened), towers grey, landmarks in their colours; the
        towers' messages as text."""
        p = self.n_rovers
        goal = np.asarray(state.goal)
        tower_of_rover = np.asarray(state.tower_of_rover)
        rover_colors = [LANDMARK_COLORS[goal[tower_of_rover[r]]] + 0.25 for r in range(p)]
        colors = rover_colors + [(0.25, 0.25, 0.25)] * p + list(LANDMARK_COLORS[: self.n_landmarks])
        pos = np.concatenate([np.asarray(state.agent_pos), np.asarray(state.landmark_pos)])
        radius = [AGENT_SIZE] * (2 * p) + [LANDMARK_SIZE] * self.n_landmarks
        comm = np.asarray(state.comm)[p:]
        texts = [f"tower_{s} -> rover_{int(np.asarray(state.rover_of_tower)[s])} sends "
                 + ("_" if not comm[s].any() else "ABCDE"[int(np.argmax(comm[s]))]) for s in range(p)]
        return core.draw_world(pos, radius, [core.mpe_rgb(c) for c in colors], size=size, texts=texts)


register("mpe/rover_tower", RoverTower, RoverTower.description)
