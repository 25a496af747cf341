"""Cooperative Treasure Collection (CTC; Iqbal & Sha, ICML 2019, MAAC ``fullobs_collect_treasure``),
used by Li et al. 2023 (F2A2): a JAX port of ``mpe2.collect_treasure_v1``.

- **Agents.** ``num_collectors`` collectors (radius 0.05, mass 1) then ``num_deposits`` deposits ("banks",
  radius 0.075, mass 2.25, deposit ``d`` accepts treasure type ``d``); all with acceleration 1.5,
  maximum speed 1.0, silent, and *ghosts*: no contact forces. Action ``Discrete(5)`` movement (or
  ``Box(0, 1, 5)``).
- **Treasures.** ``num_treasures`` landmarks (radius 0.025) of a uniformly random type, uniform in
  ``[-0.95, 0.95]^2``. After each move (mpe2 ``Scenario.post_step``): a treasure that was alive is
  picked up by the first (lowest index) collector that holds nothing and touches it; a treasure that was
  dead respawns at a new random position with a new random type (mpe2's ``respawn_prob`` 1, so a picked
  treasure is gone for exactly one step); then every holding collector that touches its type's deposit
  delivers.
- **Rewards.** ``global = 5 * #pickups + 5 * #deliveries`` of the step, shared by everybody. Collectors
  add ``-5`` per other collector within 0.1 and ``-0.1 *`` the distance to the nearest alive treasure
  (holding nothing) or to their type's deposit (holding). Deposits add ``-0.1 *`` the distance to the
  nearest collector holding their type, else to the collectors' centroid.
- **Observations** (own frame): ``[p, v, holding one-hot (collectors only)]``, then every other agent
  sorted by distance: ``[p_j - p, v_j, deposit type one-hot, holding one-hot]``, then every treasure,
  alive ones sorted by distance, dead ones last as zeros: ``[p_t - p, type one-hot]``. 86 for a
  collector and 84 for a deposit by default; the global state (684) is their concatenation.
- **Episode**: truncated after ``max_cycles`` = 100 steps (Li et al. 2023: "reset each environment after every
  100 steps"; mpe2's default is 25).

The respawn positions and types are drawn when a treasure is picked up and kept in the state
(``respawn_pos``, ``respawn_type``) until it respawns, so a test can replay mpe2's random stream.

Relation to the MAAC code used by the papers (mpe2's port fixes its reward bookkeeping): MAAC computes
the global reward *after* pickups and deliveries changed the state, so it rarely pays anything
(collectors that just picked up hold a treasure, the treasure is gone); mpe2 counts the events
themselves, as the paper describes them. MAAC shows dead treasures at ``(-999, -999)`` in the
observations instead of zeros, and integrates velocity first (``integration="velocity_first"``);
mpe2 moves position first (the default here).
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

COLLECTOR_SIZE = 0.05
DEPOSIT_SIZE = 0.075
TREASURE_SIZE = 0.025
TREASURE_BOUND = 0.95
EVENT_REWARD = 5.0
COLLISION_PENALTY = 5.0
SHAPING = 0.1
# one colour per treasure type (mpe2 collect_treasure's palette)
TYPE_COLORS = np.array([
    [0.212, 0.408, 0.776], [0.945, 0.553, 0.000], [0.169, 0.627, 0.173],
    [0.839, 0.149, 0.157], [0.580, 0.404, 0.741], [0.549, 0.337, 0.294],
])


class TreasureState(NamedTuple):
    """State of Cooperative Treasure Collection (agents are collectors then deposits)."""

    agent_pos: jax.Array  # [C + D, 2]
    agent_vel: jax.Array  # [C + D, 2]
    holding: jax.Array  # [C] int32 treasure type held, -1 for none
    treasure_pos: jax.Array  # [T, 2]
    treasure_type: jax.Array  # [T] int32
    alive: jax.Array  # [T] bool
    respawn_pos: jax.Array  # [T, 2] where each treasure respawns next
    respawn_type: jax.Array  # [T] int32 the type it respawns with
    step: jax.Array  # int32


@dataclasses.dataclass(frozen=True)
class TreasureCollection(ParticleEnv):
    """Cooperative Treasure Collection (mpe2 ``collect_treasure_v1``; MAAC's CTC) with 100-step episodes."""

    num_collectors: int = 6  # collector agents
    num_deposits: int = 2  # banks (deposit agents)
    num_treasures: int = 6  # treasures on the field
    max_cycles: int = 100  # episode length (100, as Li et al. 2023)
    continuous_actions: bool = False  # continuous force actions instead of 5 discrete ones
    integration: str = "position_first"  # position_first (mpe2) | velocity_first (the original MPE)

    description = ("Cooperative Treasure Collection (Iqbal & Sha 2019): 6 collectors bring respawning treasures to "
                   "2 banks; JAX port of mpe2 collect_treasure_v1, 100-step episodes (Li et al. 2023).")

    def validate(self) -> None:
        core.validate_int("num_collectors", self.num_collectors, 1)
        core.validate_int("num_deposits", self.num_deposits, 1, len(TYPE_COLORS))
        core.validate_int("num_treasures", self.num_treasures, 1)
        core.validate_int("max_cycles", self.max_cycles, 1)
        core.validate_bool("continuous_actions", self.continuous_actions)
        core.validate_choice("integration", self.integration, core.INTEGRATIONS)

    @functools.cached_property
    def world(self) -> World:
        c, d = self.num_collectors, self.num_deposits
        return World.make(c + d, agent_size=[COLLECTOR_SIZE] * c + [DEPOSIT_SIZE] * d, mass=[1.0] * c + [2.25] * d,
                          accel=1.5, max_speed=1.0, landmark_size=(TREASURE_SIZE,) * self.num_treasures,
                          dim_c=2, integration=self.integration)

    @property
    def obs_dims(self) -> tuple[int, int]:
        n, k = self.num_collectors + self.num_deposits, self.num_deposits
        rest = (n - 1) * (4 + 2 * k) + self.num_treasures * (2 + k)
        return 4 + k + rest, 4 + rest

    @property
    def group_layout(self):
        c, d = self.num_collectors, self.num_deposits
        dc, dd = self.obs_dims
        return (("collector", tuple(f"collector_{i}" for i in range(c)), dc),
                ("deposit", tuple(f"deposit_{i}" for i in range(d)), dd))

    @property
    def state_dim(self) -> int:
        return sum(g.n * g.obs_dim for g in self.groups)

    @property
    def max_episode_steps(self) -> int:
        return self.max_cycles

    # --- states --------------------------------------------------------------------------------
    def make_state(self, agent_pos, treasure_pos, treasure_type, agent_vel=None, holding=None, alive=None,
                   respawn_pos=None, respawn_type=None, step: int = 0) -> TreasureState:
        """A state from given arrays (e.g. copied from mpe2); defaults: at rest, nothing held, all alive."""
        dtype = float_dtype()
        n, t = self.num_collectors + self.num_deposits, self.num_treasures
        pos = jnp.asarray(agent_pos, dtype).reshape(n, 2)
        return TreasureState(
            agent_pos=pos,
            agent_vel=jnp.zeros_like(pos) if agent_vel is None else jnp.asarray(agent_vel, dtype).reshape(n, 2),
            holding=(jnp.full((self.num_collectors,), -1, jnp.int32) if holding is None
                     else jnp.asarray(holding, jnp.int32).reshape(self.num_collectors)),
            treasure_pos=jnp.asarray(treasure_pos, dtype).reshape(t, 2),
            treasure_type=jnp.asarray(treasure_type, jnp.int32).reshape(t),
            alive=jnp.ones((t,), bool) if alive is None else jnp.asarray(alive, bool).reshape(t),
            respawn_pos=jnp.zeros((t, 2), dtype) if respawn_pos is None else jnp.asarray(respawn_pos, dtype).reshape(t, 2),
            respawn_type=jnp.zeros((t,), jnp.int32) if respawn_type is None else jnp.asarray(respawn_type, jnp.int32).reshape(t),
            step=jnp.asarray(step, jnp.int32),
        )

    def reset_to(self, state: TreasureState) -> tuple[TreasureState, TimeStep]:
        return state, self._timestep(state, jnp.zeros((self.n_agents,), state.agent_pos.dtype))

    def _treasures_from(self, u_pos: jax.Array, u_type: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Positions uniform in ``[-0.95, 0.95]^2`` and uniform types from uniforms in ``[0, 1)``."""
        pos = core.scaled(u_pos, -TREASURE_BOUND, TREASURE_BOUND).reshape(self.num_treasures, 2)
        return pos, core.choice_index(u_type, self.num_deposits)

    def _reset(self, key: jax.Array) -> tuple[TreasureState, TimeStep]:
        dtype = float_dtype()
        n, t = self.num_collectors + self.num_deposits, self.num_treasures
        u_agent, u_tpos, u_ttype, u_rpos, u_rtype = core.uniform_parts(key, (2 * n, 2 * t, t, 2 * t, t), dtype)
        treasure_pos, treasure_type = self._treasures_from(u_tpos, u_ttype)
        respawn_pos, respawn_type = self._treasures_from(u_rpos, u_rtype)
        state = TreasureState(
            agent_pos=core.scaled(u_agent, -1.0, 1.0).reshape(n, 2),
            agent_vel=jnp.zeros((n, 2), dtype),
            holding=jnp.full((self.num_collectors,), -1, jnp.int32),
            treasure_pos=treasure_pos,
            treasure_type=treasure_type,
            alive=jnp.ones((t,), bool),
            respawn_pos=respawn_pos,
            respawn_type=respawn_type,
            step=jnp.zeros((), jnp.int32),
        )
        return self.reset_to(state)

    # --- dynamics --------------------------------------------------------------------------------
    def _step(self, key: jax.Array, state: TreasureState, actions: tuple) -> tuple[TreasureState, TimeStep]:
        c = self.num_collectors
        dtype = state.agent_pos.dtype
        u, _ = self.decode_actions(actions, dtype)
        pos, vel = self.move(state.agent_pos, state.agent_vel, u)
        # pickups (Scenario.post_step): treasures in order; each goes to the first free collector touching it
        touch = core.is_touching(state.treasure_pos, pos[:c], TREASURE_SIZE + COLLECTOR_SIZE)  # [T, C]
        holding = state.holding
        picked = []
        for t in range(self.num_treasures):  # a short static loop over treasures (agents stay vectorised)
            cand = touch[t] & (holding < 0) & state.alive[t]
            first = jnp.argmax(cand)
            took = cand[first]
            holding = jnp.where((jnp.arange(c) == first) & took, state.treasure_type[t], holding)
            picked.append(took)
        picked = jnp.stack(picked)
        # dead treasures respawn at their drawn position/type; picked ones die and get new draws
        respawn = ~state.alive
        new_pos, new_type = self._treasures_from(*core.uniform_parts(key, (2 * self.num_treasures, self.num_treasures), dtype))
        treasure_pos = jnp.where(respawn[:, None], state.respawn_pos, state.treasure_pos)
        treasure_type = jnp.where(respawn, state.respawn_type, state.treasure_type)
        alive = (state.alive & ~picked) | respawn
        respawn_pos = jnp.where(picked[:, None], new_pos, state.respawn_pos)
        respawn_type = jnp.where(picked, new_type, state.respawn_type)
        # deliveries: a holding collector touching the deposit of its type
        deposit_pos = pos[c:]
        reach = core.is_touching(pos[:c], deposit_pos, COLLECTOR_SIZE + DEPOSIT_SIZE)  # [C, D]
        delivered = (holding >= 0) & jnp.take_along_axis(reach, jnp.maximum(holding, 0)[:, None], axis=1)[:, 0]
        holding = jnp.where(delivered, -1, holding)
        events = (jnp.sum(picked) + jnp.sum(delivered)).astype(dtype) * EVENT_REWARD
        new = TreasureState(pos, vel, holding, treasure_pos, treasure_type, alive, respawn_pos, respawn_type,
                            state.step + 1)
        return new, self._timestep(new, self._rewards(new, events))

    def _rewards(self, s: TreasureState, events: jax.Array) -> jax.Array:
        c, d = self.num_collectors, self.num_deposits
        dtype = s.agent_pos.dtype
        col, dep = s.agent_pos[:c], s.agent_pos[c:]
        d_cc = core.distances(col, col)
        bumps = jnp.sum((d_cc < 2 * COLLECTOR_SIZE) & ~jnp.eye(c, dtype=bool), axis=1).astype(dtype)
        d_ct = core.distances(col, s.treasure_pos)  # [C, T]
        nearest_treasure = jnp.min(jnp.where(s.alive[None, :], d_ct, jnp.inf), axis=1)
        nearest_treasure = jnp.where(jnp.any(s.alive), nearest_treasure, 0.0)
        d_cd = core.distances(col, dep)  # [C, D]
        to_deposit = jnp.take_along_axis(d_cd, jnp.maximum(s.holding, 0)[:, None], axis=1)[:, 0]
        collector = -COLLISION_PENALTY * bumps - SHAPING * jnp.where(s.holding < 0, nearest_treasure, to_deposit)
        carries = s.holding[:, None] == jnp.arange(d)[None, :]  # [C, D]
        nearest_carrier = jnp.min(jnp.where(carries, d_cd, jnp.inf), axis=0)
        centroid = jnp.mean(col, axis=0)
        to_centroid = jnp.sqrt(jnp.sum(jnp.square(centroid - dep), axis=-1))
        deposit = -SHAPING * jnp.where(jnp.any(carries, axis=0), nearest_carrier, to_centroid)
        return jnp.concatenate([collector, deposit]) + events

    def _observations(self, s: TreasureState) -> tuple[jax.Array, jax.Array]:
        c, k = self.num_collectors, self.num_deposits
        n = c + k
        dtype = s.agent_pos.dtype
        p, v = s.agent_pos, s.agent_vel
        holding_1h = jax.nn.one_hot(s.holding, k, dtype=dtype)  # -1 -> zeros
        encoding = jnp.concatenate([  # [N, 2k]: deposit type one-hot | holding one-hot
            jnp.concatenate([jnp.zeros((c, k), dtype), holding_1h], axis=1),
            jnp.concatenate([jnp.eye(k, dtype=dtype), jnp.zeros((k, k), dtype)], axis=1),
        ], axis=0)
        others = jnp.asarray(others_index(n))
        rel = p[others] - p[:, None]  # [N, N-1, 2]
        order = jnp.argsort(jnp.sqrt(jnp.sum(rel * rel, axis=-1)), axis=1, stable=True)
        sorted_idx = jnp.take_along_axis(others, order, axis=1)
        other_feats = jnp.concatenate([jnp.take_along_axis(rel, order[..., None], axis=1), v[sorted_idx],
                                       encoding[sorted_idx]], axis=-1).reshape(n, -1)
        t_rel = s.treasure_pos[None] - p[:, None]  # [N, T, 2]
        key = jnp.where(s.alive[None, :], jnp.sqrt(jnp.sum(t_rel * t_rel, axis=-1)), 1e6)
        t_order = jnp.argsort(key, axis=1, stable=True)
        t_feats = jnp.concatenate([t_rel, jax.nn.one_hot(s.treasure_type, k, dtype=dtype)[None].repeat(n, 0)], -1)
        t_feats = jnp.where(s.alive[None, :, None], t_feats, 0.0)
        t_feats = jnp.take_along_axis(t_feats, t_order[..., None], axis=1).reshape(n, -1)
        collector = jnp.concatenate([p[:c], v[:c], holding_1h, other_feats[:c], t_feats[:c]], axis=-1)
        deposit = jnp.concatenate([p[c:], v[c:], other_feats[c:], t_feats[c:]], axis=-1)
        return collector, deposit

    def _timestep(self, state: TreasureState, reward: jax.Array) -> TimeStep:
        obs = self._observations(state)
        gstate = jnp.concatenate([o.reshape(-1) for o in obs])
        return self.make_timestep(obs, self.all_available(), gstate, reward, False, state.step >= self.max_cycles)

    def render(self, state: TreasureState, size: int = 320) -> np.ndarray:
        """Collectors grey (tinted by the treasure they hold), deposits in a dark tint of their type's colour,
        alive treasures in their type's colour (mpe2's colours; dead treasures are not drawn)."""
        c, k = self.num_collectors, self.num_deposits
        holding = np.asarray(state.holding)
        colors = [np.array([0.85, 0.85, 0.85]) if h < 0 else 0.85 * TYPE_COLORS[h] for h in holding]
        colors += [TYPE_COLORS[d] * 0.35 for d in range(k)]
        alive = np.asarray(state.alive)
        types = np.asarray(state.treasure_type)
        colors += [TYPE_COLORS[types[t]] for t in np.flatnonzero(alive)]
        pos = np.concatenate([np.asarray(state.agent_pos), np.asarray(state.treasure_pos)[alive]])
        radius = [COLLECTOR_SIZE] * c + [DEPOSIT_SIZE] * k + [TREASURE_SIZE] * int(alive.sum())
        return core.draw_world(pos, radius, [core.mpe_rgb(x) for x in colors], size=size)


register("mpe/treasure_collection", TreasureCollection, TreasureCollection.description)
