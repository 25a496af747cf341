"""The standard mpe2 particle scenarios in JAX: ``mpe/simple``, ``simple_reference``,
``simple_speaker_listener``, ``simple_push``, ``simple_adversary``, ``simple_tag``, ``simple_crypto``,
``simple_world_comm``.

Each reproduces ``mpe2.<name>_v3.parallel_env`` (``simple_speaker_listener_v4``) with its default
arguments (and the ones exposed as hyperparameters) step by step: the physics of
:mod:`trustmarl.envs.mpe.core`, the scenario's observations, ``env.state()`` (the concatenation of all
observations), rewards and truncation after ``max_cycles`` steps. Agents with different observation
or action spaces are in different groups, in mpe2's agent order; competitive scenarios return each
agent's own reward in ``TimeStep.reward`` (its mean, the "team reward" the trainers log, mixes the
teams and means little there). ``continuous_actions=True`` gives mpe2's ``Box(0, 1)`` actions.

Not ported: mpe2's partial-observability options (``num_agent_neighbors``, ``num_landmark_neighbors``),
curricula and ``terminate_on_success`` (all off by default in mpe2), motor/communication noise (unused
by these scenarios). The random initial state has mpe2's distribution, not its random stream.

References: Lowe et al., "Multi-Agent Actor-Critic for Mixed Cooperative-Competitive Environments"
(NeurIPS 2017) and Mordatch & Abbeel (2018) for the scenarios; Terry et al., PettingZoo (2021) and
Farama's ``mpe2`` package for the versions ported here.
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


class ParticleState(NamedTuple):
    """State of a standard mpe2 scenario."""

    agent_pos: jax.Array  # [N, 2]
    agent_vel: jax.Array  # [N, 2]
    comm: jax.Array  # [N, dim_c] communication state c (0 for silent agents)
    landmark_pos: jax.Array  # [L, 2]
    goal: jax.Array  # [G] int32 scenario indices (goal landmarks, keys), G may be 0
    step: jax.Array  # int32, steps taken in this episode


def _bound_penalty(pos: jax.Array) -> jax.Array:
    """``[N]`` sum over coordinates of mpe2's ``bound(|x|)``: 0 below 0.9, ``10 (x - 0.9)`` below 1,
    then ``min(exp(2x - 2), 10)`` (simple_tag / simple_world_comm)."""
    x = jnp.abs(pos)
    b = jnp.where(x < 0.9, 0.0, jnp.where(x < 1.0, (x - 0.9) * 10, jnp.minimum(jnp.exp(2 * x - 2), 10.0)))
    return b[:, 0] + b[:, 1]


class _Classic(ParticleEnv):
    """Shared reset/step of the standard scenarios (subclasses are frozen dataclasses with ``max_cycles``)."""

    LANDMARK_RANGE = 1.0  # landmarks start uniform in [-r, r]^2
    GOAL_CHOICES: tuple = ()  # number of values of each goal index

    # --- to implement ----------------------------------------------------------------------------
    def _observations(self, s: ParticleState) -> tuple:
        raise NotImplementedError

    def _rewards(self, s: ParticleState) -> jax.Array:
        raise NotImplementedError

    def _colors(self, s: ParticleState) -> tuple[list, list]:
        """mpe2 entity colours (0..1 floats), agents then landmarks, for ``render``."""
        raise NotImplementedError

    def goal_choices(self) -> tuple:
        return self.GOAL_CHOICES

    # --- provided ----------------------------------------------------------------------------------
    def validate(self) -> None:
        core.validate_int("max_cycles", self.max_cycles, 1)
        core.validate_bool("continuous_actions", self.continuous_actions)

    @property
    def max_episode_steps(self) -> int:
        return self.max_cycles

    @property
    def min_episode_steps(self) -> int:
        return self.max_cycles  # truncated after max_cycles steps, never terminated

    @property
    def state_dim(self) -> int:
        return sum(g.n * g.obs_dim for g in self.groups)

    def make_state(self, agent_pos, landmark_pos, goal=(), agent_vel=None, comm=None, step: int = 0) -> ParticleState:
        """A state from given arrays (e.g. copied from an mpe2 world); velocities and messages default to 0."""
        dtype = float_dtype()
        w = self.world
        n = w.n_agents
        pos = jnp.asarray(agent_pos, dtype).reshape(n, 2)
        return ParticleState(
            agent_pos=pos,
            agent_vel=jnp.zeros_like(pos) if agent_vel is None else jnp.asarray(agent_vel, dtype).reshape(n, 2),
            comm=jnp.zeros((n, w.dim_c), dtype) if comm is None else jnp.asarray(comm, dtype).reshape(n, w.dim_c),
            landmark_pos=jnp.asarray(landmark_pos, dtype).reshape(w.n_landmarks, 2),
            goal=jnp.asarray(goal, jnp.int32).reshape(len(self.goal_choices())),
            step=jnp.asarray(step, jnp.int32),
        )

    def reset_to(self, state: ParticleState) -> tuple[ParticleState, TimeStep]:
        """Start an episode from ``state`` (what ``_reset`` returns for a sampled state)."""
        return state, self._timestep(state, jnp.zeros((self.n_agents,), state.agent_pos.dtype))

    def _reset(self, key: jax.Array) -> tuple[ParticleState, TimeStep]:
        w = self.world
        dtype = float_dtype()
        r = self.LANDMARK_RANGE
        choices = self.goal_choices()
        u_agent, u_landmark, u_goal = core.uniform_parts(key, (2 * w.n_agents, 2 * w.n_landmarks, len(choices)), dtype)
        state = ParticleState(
            agent_pos=core.scaled(u_agent, -1.0, 1.0).reshape(w.n_agents, 2),
            agent_vel=jnp.zeros((w.n_agents, 2), dtype),
            comm=jnp.zeros((w.n_agents, w.dim_c), dtype),
            landmark_pos=core.scaled(u_landmark, -r, r).reshape(w.n_landmarks, 2),
            goal=core.choice_index(u_goal, np.array(choices, dtype=np.int32)),
            step=jnp.zeros((), jnp.int32),
        )
        return self.reset_to(state)

    def _step(self, key: jax.Array, state: ParticleState, actions: tuple) -> tuple[ParticleState, TimeStep]:
        del key  # deterministic dynamics
        u, c = self.decode_actions(actions, state.agent_pos.dtype)
        pos, vel = self.move(state.agent_pos, state.agent_vel, u, state.landmark_pos)
        new = state._replace(agent_pos=pos, agent_vel=vel, comm=state.comm if c is None else c, step=state.step + 1)
        return new, self._timestep(new, self._rewards(new))

    def _timestep(self, state: ParticleState, reward: jax.Array) -> TimeStep:
        obs = self._observations(state)
        gstate = jnp.concatenate([o.reshape(-1) for o in obs])
        return self.make_timestep(obs, self.all_available(), gstate, reward, False, state.step >= self.max_cycles)

    def render(self, state: ParticleState, size: int = 320) -> np.ndarray:
        """An RGB frame ``[size, size, 3]`` uint8: agents then landmarks in mpe2's colours, and the
        messages of the agents that speak (``<agent> sends <letter>``, as mpe2 writes them)."""
        agent_colors, landmark_colors = self._colors(state)
        w = self.world
        pos = np.concatenate([np.asarray(state.agent_pos), np.asarray(state.landmark_pos)])
        radius = list(w.agent_size) + list(w.landmark_size)
        colors = [core.mpe_rgb(c) for c in list(agent_colors) + list(landmark_colors)]
        return core.draw_world(pos, radius, colors, size=size, texts=self._message_texts(state))

    def _message_texts(self, state) -> list[str]:
        w = self.world
        comm = np.asarray(state.comm)
        out = []
        for i, name in enumerate(self.agents):
            if w.silent[i]:
                continue
            c = comm[i]
            if np.all(c == 0):
                word = "_"
            elif self.continuous:
                word = "[" + ",".join(f"{x:.2f}" for x in c) + "]"
            else:
                word = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[int(np.argmax(c))]
            out.append(f"{name} sends {word}")
        return out


def _names(prefix: str, n: int, start: int = 0) -> tuple[str, ...]:
    return tuple(f"{prefix}_{i}" for i in range(start, start + n))


# ---- simple ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Simple(_Classic):
    """mpe2 ``simple_v3``: one agent is rewarded ``-|p - p_landmark|^2``; obs ``[v, p_landmark - p]``.

    A single-agent debugging task (Lowe et al. 2017)."""

    max_cycles: int = 25  # episode length (time limit)
    continuous_actions: bool = False  # continuous force actions instead of 5 discrete ones

    description = "MPE simple (1 agent reaches a landmark), exact JAX port of mpe2 simple_v3."

    @functools.cached_property
    def world(self) -> World:
        return World.make(1, agent_size=0.05, landmark_size=(0.05,))

    @property
    def group_layout(self):
        return (("agent", ("agent_0",), 4),)

    def _observations(self, s):
        return (jnp.concatenate([s.agent_vel, s.landmark_pos - s.agent_pos], axis=-1),)

    def _rewards(self, s):
        return -jnp.sum(jnp.square(s.agent_pos - s.landmark_pos[0]), axis=-1)

    def _colors(self, s):
        return [(0.25, 0.25, 0.25)], [(0.75, 0.25, 0.25)]


# ---- simple_reference -----------------------------------------------------------------------------

_REFERENCE_COLORS = np.array([[0.75, 0.25, 0.25], [0.25, 0.75, 0.25], [0.25, 0.25, 0.75]])


@dataclasses.dataclass(frozen=True)
class SimpleReference(_Classic):
    """mpe2 ``simple_reference_v3``: two agents that move and speak (10 symbols); each knows the goal
    landmark of the *other* one and must tell it.

    Observation ``[v, 3 landmarks - p, colour of the goal it knows (3), message of the other (10)]`` (21);
    actions ``Discrete(50)`` (move x message) or ``Box(0, 1, 15)``. Reward of agent ``i``:
    ``(1 - local_ratio) * mean_j(r_j) + local_ratio * r_i`` with ``r_i = -|p_other - p_goal_i|``."""

    local_ratio: float = 0.5  # weight of the agent's own reward against the global one
    max_cycles: int = 25  # episode length (time limit)
    continuous_actions: bool = False  # continuous force actions instead of 5 discrete ones

    description = "MPE simple_reference (2 speaking agents guide each other), exact JAX port of mpe2 simple_reference_v3."
    GOAL_CHOICES = (3, 3)  # goal landmark known by agent 0 (for agent 1) and by agent 1 (for agent 0)

    def validate(self) -> None:
        super().validate()
        lr = self.local_ratio
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0.0 <= lr <= 1.0:
            raise ValueError(f"local_ratio must be a number in [0, 1], got {lr!r}")

    @functools.cached_property
    def world(self) -> World:
        return World.make(2, agent_size=0.05, landmark_size=(0.05,) * 3, silent=False, dim_c=10)

    @property
    def group_layout(self):
        return (("agent", ("agent_0", "agent_1"), 21),)

    def _observations(self, s):
        rel = (s.landmark_pos[None] - s.agent_pos[:, None]).reshape(2, 6)
        goal_color = jnp.asarray(_REFERENCE_COLORS, s.agent_pos.dtype)[s.goal]
        return (jnp.concatenate([s.agent_vel, rel, goal_color, s.comm[::-1]], axis=-1),)

    def _rewards(self, s):
        # agent i wants the other agent at its goal landmark
        local = -jnp.sqrt(jnp.sum(jnp.square(s.agent_pos[::-1] - s.landmark_pos[s.goal]), axis=-1))
        glob = jnp.sum(local) / 2
        return glob * (1 - self.local_ratio) + local * self.local_ratio

    def _colors(self, s):
        goal = np.asarray(s.goal)
        return [_REFERENCE_COLORS[goal[1]], _REFERENCE_COLORS[goal[0]]], list(_REFERENCE_COLORS)


# ---- simple_speaker_listener ----------------------------------------------------------------------

_SPEAKER_LISTENER_COLORS = np.array([[0.65, 0.15, 0.15], [0.15, 0.65, 0.15], [0.15, 0.15, 0.65]])


@dataclasses.dataclass(frozen=True)
class SimpleSpeakerListener(_Classic):
    """mpe2 ``simple_speaker_listener_v4``: a speaker that cannot move sees the goal landmark's colour
    and says one of 3 symbols; a silent listener hears it and moves.

    Groups ``speaker`` (obs: goal colour, 3; ``Discrete(3)``) and ``listener`` (obs ``[v, 3 landmarks - p,
    message (3)]``, 11; ``Discrete(5)``). Both get ``-|p_listener - p_goal|^2``."""

    max_cycles: int = 25  # episode length (time limit)
    continuous_actions: bool = False  # continuous force actions instead of 5 discrete ones

    description = "MPE simple_speaker_listener (a static speaker guides a listener), exact JAX port of mpe2 simple_speaker_listener_v4."
    GOAL_CHOICES = (3,)

    @functools.cached_property
    def world(self) -> World:
        return World.make(2, agent_size=0.075, landmark_size=(0.04,) * 3, movable=(False, True),
                          silent=(False, True), dim_c=3)

    @property
    def group_layout(self):
        return (("speaker", ("speaker_0",), 3), ("listener", ("listener_0",), 11))

    def _observations(self, s):
        dtype = s.agent_pos.dtype
        speaker = jnp.asarray(_SPEAKER_LISTENER_COLORS, dtype)[s.goal]  # [1, 3]
        p = s.agent_pos[1:2]
        rel = (s.landmark_pos[None] - p[:, None]).reshape(1, 6)
        listener = jnp.concatenate([s.agent_vel[1:2], rel, s.comm[0:1]], axis=-1)
        return speaker, listener

    def _rewards(self, s):
        r = -jnp.sum(jnp.square(s.agent_pos[1] - s.landmark_pos[s.goal[0]]))
        return jnp.stack([r, r])

    def _colors(self, s):
        g = int(np.asarray(s.goal)[0])
        return [(0.25, 0.25, 0.25), _SPEAKER_LISTENER_COLORS[g] + 0.45], list(_SPEAKER_LISTENER_COLORS)


# ---- simple_push ----------------------------------------------------------------------------------

_PUSH_LANDMARK_COLORS = np.array([[0.1, 0.9, 0.1], [0.1, 0.1, 0.9]])


@dataclasses.dataclass(frozen=True)
class SimplePush(_Classic):
    """mpe2 ``simple_push_v3``: an agent (knows the goal landmark) and an adversary (does not) that
    collide with each other.

    Groups ``adversary`` (obs ``[v, landmarks - p, other - p]``, 8) and ``agent`` (obs ``[v, goal - p, own
    colour (3), landmarks - p, landmark colours (6), other - p]``, 19). Rewards: agent ``-|p - p_goal|``;
    adversary ``|p_agent - p_goal| - |p_adversary - p_goal|``."""

    max_cycles: int = 25  # episode length (time limit)
    continuous_actions: bool = False  # continuous force actions instead of 5 discrete ones

    description = "MPE simple_push (an agent reaches the goal, an adversary pushes it away), exact JAX port of mpe2 simple_push_v3."
    cooperative = False  # adversaries: no team reward
    GOAL_CHOICES = (2,)

    @functools.cached_property
    def world(self) -> World:
        return World.make(2, agent_size=0.05, landmark_size=(0.05, 0.05), collide=True, dim_c=2)

    @property
    def group_layout(self):
        return (("adversary", ("adversary_0",), 8), ("agent", ("agent_0",), 19))

    def _observations(self, s):
        dtype = s.agent_pos.dtype
        p, v, lm = s.agent_pos, s.agent_vel, s.landmark_pos
        g = s.goal[0]
        adv = jnp.concatenate([v[0], (lm - p[0]).reshape(-1), p[1] - p[0]])[None]
        own_color = jnp.asarray([0.25, 0.25, 0.25], dtype).at[g + 1].add(0.5)
        good = jnp.concatenate([v[1], lm[g] - p[1], own_color, (lm - p[1]).reshape(-1),
                                jnp.asarray(_PUSH_LANDMARK_COLORS.reshape(-1), dtype), p[0] - p[1]])[None]
        return adv, good

    def _rewards(self, s):
        d = jnp.sqrt(jnp.sum(jnp.square(s.agent_pos - s.landmark_pos[s.goal[0]]), axis=-1))  # [adversary, agent]
        return jnp.stack([d[1] - d[0], -d[1]])

    def _colors(self, s):
        g = int(np.asarray(s.goal)[0])
        agent = np.array([0.25, 0.25, 0.25])
        agent[g + 1] += 0.5
        return [(0.75, 0.25, 0.25), agent], list(_PUSH_LANDMARK_COLORS)


# ---- simple_adversary -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SimpleAdversary(_Classic):
    """mpe2 ``simple_adversary_v3``: ``num_good`` agents (mpe2's ``N``) know the goal among ``num_good``
    landmarks; one adversary does not and tries to reach it.

    Groups ``adversary`` (obs ``[landmarks - p, others - p]``, ``4N``) and ``agent`` (obs ``[goal - p,
    landmarks - p, others - p]``, ``2 + 4N``). Rewards: agents ``-min_agents |p - p_goal| +
    |p_adversary - p_goal|``; adversary ``-|p_adversary - p_goal|``."""

    num_good: int = 2  # good agents
    max_cycles: int = 25  # episode length (time limit)
    continuous_actions: bool = False  # continuous force actions instead of 5 discrete ones

    description = "MPE simple_adversary (agents hide the goal landmark from an adversary), exact JAX port of mpe2 simple_adversary_v3."
    cooperative = False  # adversaries: no team reward

    def validate(self) -> None:
        super().validate()
        core.validate_int("num_good", self.num_good, 1)

    def goal_choices(self) -> tuple:
        return (self.num_good,)

    @functools.cached_property
    def world(self) -> World:
        n = self.num_good
        return World.make(n + 1, agent_size=0.15, landmark_size=(0.08,) * n, dim_c=2)

    @property
    def group_layout(self):
        n = self.num_good
        return (("adversary", ("adversary_0",), 4 * n), ("agent", _names("agent", n), 2 + 4 * n))

    def _observations(self, s):
        n = self.num_good + 1
        p = s.agent_pos
        lm_rel = (s.landmark_pos[None] - p[:, None]).reshape(n, -1)
        other_rel = (p[jnp.asarray(others_index(n))] - p[:, None]).reshape(n, -1)
        goal_rel = s.landmark_pos[s.goal[0]][None] - p[1:]
        return (jnp.concatenate([lm_rel[:1], other_rel[:1]], axis=-1),
                jnp.concatenate([goal_rel, lm_rel[1:], other_rel[1:]], axis=-1))

    def _rewards(self, s):
        d = jnp.sqrt(jnp.sum(jnp.square(s.agent_pos - s.landmark_pos[s.goal[0]]), axis=-1))
        good = -jnp.min(d[1:]) + d[0]
        return jnp.concatenate([-d[:1], jnp.broadcast_to(good, (self.num_good,))])

    def _colors(self, s):
        lm = [(0.15, 0.15, 0.15)] * self.num_good
        lm[int(np.asarray(s.goal)[0])] = (0.15, 0.65, 0.15)
        return [(0.85, 0.35, 0.35)] + [(0.35, 0.35, 0.85)] * self.num_good, lm


# ---- simple_tag -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SimpleTag(_Classic):
    """mpe2 ``simple_tag_v3`` (predator-prey): slower adversaries (radius 0.075, accel 3, max speed 1)
    chase faster good agents (0.05, 4, 1.3) among ``num_obstacles`` large obstacles (0.2) that everyone
    bounces off.

    Observation ``[v, p, obstacles - p, others - p, velocities of the other good agents]`` (16 for an
    adversary, 14 for the good agent by default). Rewards: adversaries ``+10`` for every (good,
    adversary) pair in contact; good agents ``-10`` per adversary touching them and a penalty for
    leaving the arena (``bound``)."""

    num_good: int = 1  # good agents
    num_adversaries: int = 3  # adversaries
    num_obstacles: int = 2  # obstacles
    max_cycles: int = 25  # episode length (time limit)
    continuous_actions: bool = False  # continuous force actions instead of 5 discrete ones

    description = "MPE simple_tag (predator-prey with obstacles), exact JAX port of mpe2 simple_tag_v3."
    cooperative = False  # adversaries: no team reward
    LANDMARK_RANGE = 0.9

    def validate(self) -> None:
        super().validate()
        core.validate_int("num_good", self.num_good, 1)
        core.validate_int("num_adversaries", self.num_adversaries, 1)
        core.validate_int("num_obstacles", self.num_obstacles, 0)

    @functools.cached_property
    def world(self) -> World:
        a, g = self.num_adversaries, self.num_good
        return World.make(a + g, agent_size=[0.075] * a + [0.05] * g, accel=[3.0] * a + [4.0] * g,
                          max_speed=[1.0] * a + [1.3] * g, collide=True, landmark_size=(0.2,) * self.num_obstacles,
                          landmark_collide=True, dim_c=2)

    @property
    def group_layout(self):
        a, g, o = self.num_adversaries, self.num_good, self.num_obstacles
        base = 4 + 2 * o + 2 * (a + g - 1)
        return (("adversary", _names("adversary", a), base + 2 * g), ("agent", _names("agent", g), base + 2 * (g - 1)))

    def _observations(self, s):
        a, g = self.num_adversaries, self.num_good
        n = a + g
        p, v = s.agent_pos, s.agent_vel
        lm_rel = (s.landmark_pos[None] - p[:, None]).reshape(n, -1)
        other_rel = (p[jnp.asarray(others_index(n))] - p[:, None]).reshape(n, -1)
        good = np.arange(a, n)
        vel_adv = jnp.broadcast_to(v[good].reshape(1, -1), (a, 2 * g))  # adversaries see every good agent's velocity
        vel_good = v[jnp.asarray(others_index(g) + a)].reshape(g, -1) if g > 1 else jnp.zeros((g, 0), p.dtype)
        base = jnp.concatenate([v, p, lm_rel, other_rel], axis=-1)
        return jnp.concatenate([base[:a], vel_adv], axis=-1), jnp.concatenate([base[a:], vel_good], axis=-1)

    def _rewards(self, s):
        a = self.num_adversaries
        sizes = np.array(self.world.agent_size)
        touch = core.is_touching(s.agent_pos[a:], s.agent_pos[:a], sizes[a:, None] + sizes[None, :a])  # [good, adv]
        dtype = s.agent_pos.dtype
        good = -10.0 * jnp.sum(touch, axis=1).astype(dtype) - _bound_penalty(s.agent_pos[a:])
        adv = 10.0 * jnp.sum(touch).astype(dtype)
        return jnp.concatenate([jnp.broadcast_to(adv, (a,)), good])

    def _colors(self, s):
        return ([(0.85, 0.35, 0.35)] * self.num_adversaries + [(0.35, 0.85, 0.35)] * self.num_good,
                [(0.25, 0.25, 0.25)] * self.num_obstacles)


# ---- simple_crypto --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SimpleCrypto(_Classic):
    """mpe2 ``simple_crypto_v3``: Alice (speaker) sees the goal and a key and sends a 4-symbol message;
    Bob sees the key and the message; Eve sees only the message. Nobody moves.

    Groups ``eve`` (obs: Alice's message, 4), ``bob`` (key, message: 8), ``alice`` (goal, key: 8), each
    ``Discrete(4)``. Rewards (a message counts once it is not all zeros): Eve ``-|c_eve - goal|^2``; Bob
    and Alice ``|c_eve - goal|^2 - |c_bob - goal|^2``, with goal and key one-hot over the 4 symbols."""

    max_cycles: int = 25  # episode length (time limit)
    continuous_actions: bool = False  # continuous force actions instead of 5 discrete ones

    description = "MPE simple_crypto (Alice and Bob share a key, Eve eavesdrops), exact JAX port of mpe2 simple_crypto_v3."
    cooperative = False  # adversaries: no team reward
    GOAL_CHOICES = (2, 2)  # goal landmark, key landmark

    @functools.cached_property
    def world(self) -> World:
        return World.make(3, agent_size=0.05, landmark_size=(0.05, 0.05), movable=False, silent=False, dim_c=4)

    @property
    def group_layout(self):
        return (("eve", ("eve_0",), 4), ("bob", ("bob_0",), 8), ("alice", ("alice_0",), 8))

    def _observations(self, s):
        dtype = s.agent_pos.dtype
        goal = jax.nn.one_hot(s.goal[0], 4, dtype=dtype)
        key = jax.nn.one_hot(s.goal[1], 4, dtype=dtype)
        alice = s.comm[2]
        return alice[None], jnp.concatenate([key, alice])[None], jnp.concatenate([goal, key])[None]

    def _rewards(self, s):
        goal = jax.nn.one_hot(s.goal[0], 4, dtype=s.agent_pos.dtype)
        err = jnp.sum(jnp.square(s.comm - goal), axis=-1)  # [eve, bob, alice]
        spoke = jnp.any(s.comm != 0, axis=-1)
        eve_err = jnp.where(spoke[0], err[0], 0.0)
        bob_err = jnp.where(spoke[1], err[1], 0.0)
        good = eve_err - bob_err
        return jnp.stack([-eve_err, good, good])

    def _colors(self, s):
        g = np.zeros(4)
        g[int(np.asarray(s.goal)[0])] = 1.0
        return [(0.75, 0.25, 0.25), g, (0.25, 0.25, 0.25)], [np.eye(4)[0], np.eye(4)[1]]


# ---- simple_world_comm ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SimpleWorldComm(_Classic):
    """mpe2 ``simple_world_comm_v3``: ``simple_tag`` with a speaking leader adversary, food that good
    agents are rewarded for reaching, and forests that hide the agents inside them.

    Agents: ``leadadversary_0`` (moves and says one of 4 symbols: ``Discrete(20)``), ``adversary_*`` and
    ``agent_*`` (``Discrete(5)``). Landmarks: ``num_obstacles`` obstacles (0.2, collide), ``num_food``
    food (0.03), ``num_forests`` forests (0.3). Observation ``[v, p, landmarks - p, others - p (0 when
    hidden), velocities of good others (0 when hidden), in_forest (+-1 per forest)]`` then, for
    adversaries, the leader's message (4); good agents put ``in_forest`` before the velocities.
    Another agent is visible when both are in the same forest, or neither is in a forest, or the
    observer is the leader. Rewards: good ``-5`` per adversary touching it, ``-2 bound``, ``+2`` per food
    touched, ``-0.05 min_food |p - p_food|``; adversaries ``-0.1 min_good |p - p_good|`` and ``+5`` per
    (good, adversary) pair in contact."""

    num_good: int = 2  # good agents
    num_adversaries: int = 4  # adversaries
    num_obstacles: int = 1  # obstacles
    num_food: int = 2  # food landmarks
    num_forests: int = 2  # forests
    max_cycles: int = 25  # episode length (time limit)
    continuous_actions: bool = False  # continuous force actions instead of 5 discrete ones

    description = "MPE simple_world_comm (predator-prey with a speaking leader, food and forests), exact JAX port of mpe2 simple_world_comm_v3."
    cooperative = False  # adversaries: no team reward
    LANDMARK_RANGE = 0.9

    def validate(self) -> None:
        super().validate()
        core.validate_int("num_good", self.num_good, 1)
        core.validate_int("num_adversaries", self.num_adversaries, 1)
        core.validate_int("num_obstacles", self.num_obstacles, 0)
        core.validate_int("num_food", self.num_food, 1)
        core.validate_int("num_forests", self.num_forests, 0)

    @functools.cached_property
    def world(self) -> World:
        a, g = self.num_adversaries, self.num_good
        o, f, fo = self.num_obstacles, self.num_food, self.num_forests
        return World.make(a + g, agent_size=[0.075] * a + [0.045] * g, accel=[3.0] * a + [4.0] * g,
                          max_speed=[1.0] * a + [1.3] * g, collide=True, silent=[False] + [True] * (a + g - 1),
                          landmark_size=(0.2,) * o + (0.03,) * f + (0.3,) * fo,
                          landmark_collide=(True,) * o + (False,) * (f + fo), dim_c=4)

    @property
    def obs_dims(self) -> tuple[int, int]:
        a, g = self.num_adversaries, self.num_good
        n_l = self.num_obstacles + self.num_food + self.num_forests
        base = 4 + 2 * n_l + 2 * (a + g - 1) + self.num_forests
        return base + 2 * g + 4, base + 2 * (g - 1)

    @property
    def group_layout(self):
        a, g = self.num_adversaries, self.num_good
        adv_dim, good_dim = self.obs_dims
        layout = [("leadadversary", ("leadadversary_0",), adv_dim)]
        if a > 1:
            layout.append(("adversary", _names("adversary", a - 1), adv_dim))
        layout.append(("agent", _names("agent", g), good_dim))
        return tuple(layout)

    def _observations(self, s):
        a, g = self.num_adversaries, self.num_good
        n = a + g
        o, f = self.num_obstacles, self.num_food
        dtype = s.agent_pos.dtype
        p, v = s.agent_pos, s.agent_vel
        sizes = np.array(self.world.agent_size)
        in_forest = core.is_touching(p, s.landmark_pos[o + f:], sizes[:, None] + 0.3)  # [N, forests]
        any_in = jnp.any(in_forest, axis=1)
        # vis[i, j]: i sees j (same forest, or neither in a forest, or i is the leader)
        vis = jnp.any(in_forest[:, None, :] & in_forest[None, :, :], axis=-1) | (~any_in[:, None] & ~any_in[None, :])
        vis = vis.at[0].set(True)
        rows = np.arange(n)[:, None]
        others = others_index(n)
        rel = p[None, :, :] - p[:, None, :]  # rel[i, j] = p_j - p_i
        other_rel = jnp.where(vis[rows, others][..., None], rel[rows, others], 0.0).reshape(n, -1)

        def good_vels(obs_rows: np.ndarray, idx: np.ndarray) -> jax.Array:
            """Velocities of the good agents ``idx[k]`` seen by ``obs_rows[k]`` (0 when hidden)."""
            if idx.shape[1] == 0:
                return jnp.zeros((len(obs_rows), 0), dtype)
            seen = vis[obs_rows[:, None], idx]
            return jnp.where(seen[..., None], v[idx], 0.0).reshape(len(obs_rows), -1)

        lm_rel = (s.landmark_pos[None] - p[:, None]).reshape(n, -1)
        forest_flag = jnp.where(in_forest, 1.0, -1.0).astype(dtype)
        base = jnp.concatenate([v, p, lm_rel, other_rel], axis=-1)
        comm = jnp.broadcast_to(s.comm[0], (a, s.comm.shape[1]))  # the leader's message
        adv_vel = good_vels(np.arange(a), np.tile(np.arange(a, n), (a, 1)))
        good_vel = good_vels(np.arange(a, n), others_index(g) + a)
        adv = jnp.concatenate([base[:a], adv_vel, forest_flag[:a], comm], axis=-1)
        good = jnp.concatenate([base[a:], forest_flag[a:], good_vel], axis=-1)
        if a > 1:
            return adv[:1], adv[1:], good
        return adv, good

    def _rewards(self, s):
        a = self.num_adversaries
        o, f = self.num_obstacles, self.num_food
        dtype = s.agent_pos.dtype
        sizes = np.array(self.world.agent_size)
        p = s.agent_pos
        touch = core.is_touching(p[a:], p[:a], sizes[a:, None] + sizes[None, :a])  # [good, adv]
        food = s.landmark_pos[o:o + f]
        d_food = core.distances(p[a:], food)  # [good, food]
        eats = d_food < sizes[a:, None] + 0.03
        good = (-5.0 * jnp.sum(touch, axis=1).astype(dtype) - 2 * _bound_penalty(p[a:])
                + 2.0 * jnp.sum(eats, axis=1).astype(dtype) - 0.05 * jnp.min(d_food, axis=1))
        adv = -0.1 * jnp.min(core.distances(p[:a], p[a:]), axis=1) + 5.0 * jnp.sum(touch).astype(dtype)
        return jnp.concatenate([adv, good])

    def _colors(self, s):
        a, g = self.num_adversaries, self.num_good
        agents = [(0.65, 0.15, 0.15)] + [(0.95, 0.45, 0.45)] * (a - 1) + [(0.45, 0.95, 0.45)] * g
        lms = ([(0.25, 0.25, 0.25)] * self.num_obstacles + [(0.15, 0.15, 0.65)] * self.num_food
               + [(0.6, 0.9, 0.6)] * self.num_forests)
        return agents, lms


for _name, _cls in (
    ("mpe/simple", Simple),
    ("mpe/simple_reference", SimpleReference),
    ("mpe/simple_speaker_listener", SimpleSpeakerListener),
    ("mpe/simple_push", SimplePush),
    ("mpe/simple_adversary", SimpleAdversary),
    ("mpe/simple_tag", SimpleTag),
    ("mpe/simple_crypto", SimpleCrypto),
    ("mpe/simple_world_comm", SimpleWorldComm),
):
    register(_name, _cls, _cls.description)
