"""Grid worlds of the MATRL paper (Wen et al. 2021, section 4 and App. D): Checkers and Switch.

JAX-native re-implementations of MA-Gym's ``Checkers-v0`` and ``Switch2-v0`` / ``Switch4-v0`` as they
were in 2019-2020 (Koul 2019; commits 8eca34e and 402763c behave identically), the version the
paper's experiments used. Later MA-Gym releases changed rewards and observations, so they are not
used. Both worlds are deterministic (reset ignores its key).

Shared rules (MA-Gym): actions are 0 down, 1 left, 2 up, 3 right, 4 no-op; agents move one after
another in index order, and a move off the grid, into a wall or into a cell another agent occupies
at that moment is ignored (so an agent may enter a cell vacated earlier in the same step). Rewards
are individual (each agent its own, as MATRL and IL train in the paper); ``reward_mode="team"`` gives
every agent the sum instead (for value-decomposition baselines). Reported team returns in the paper
are sums over agents; trustmarl's "team return" is the mean of the per-agent rewards.

Checkers (2 agents, 3 x 8): fruit in columns 0-5, rows 0 and 2 an apple at even columns and a lemon
at odd ones, row 1 the opposite (9 apples, 9 lemons). Agent 0 (red, "sensitive") starts at (0, 6),
agent 1 (blue) at (2, 6). Every step costs each agent ``step_cost`` (-0.01); entering a fruit cell adds
+5 / -5 (apple / lemon) for agent 0 and +1 / -1 for agent 1, and the fruit disappears. The episode
terminates when all 9 apples are eaten and is truncated after ``max_steps`` (100) steps.
Observation (v0): ``[round(row/3, 2), round(col/7, 2)]`` plus the 3 x 3 neighbourhood (row-major,
the agent's own cell in the centre) coded lemon 1, apple 2, agent 3, else or off-grid 0: 11 floats.

Switch (2 or 4 agents, 3 x 7): free cells are the middle row and columns 0, 1, 5, 6 (two 3 x 2 rooms
joined by a one-cell-wide corridor); the rest is wall. Agent 0 goes (0,1) -> (0,6), agent 1
(0,5) -> (0,0), agent 2 (2,1) -> (2,6), agent 3 (2,5) -> (2,0). Each agent gets ``step_cost`` (-0.1)
every step, except ``arrival_reward`` (+5) instead on the step it reaches its target; arrived agents
stop (they keep their cell and keep paying -0.1). The episode terminates when all agents have
arrived and is truncated after ``max_steps`` (50). Observation (v0): ``[round(row/2, 2),
round(col/6, 2)]``. MA-Gym quirk kept: in Switch2 the start cells of the absent agents 2 and 3,
(2, 1) and (2, 5), stay occupied (blocked) for the whole episode.

``full_observable=True`` gives every agent the concatenation of all agents' observations (MA-Gym's
``-v1``). The global ``state`` (for centralised critics) is described on each class.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from trustmarl.envs.base import AgentGroup, Discrete, MultiAgentEnv, TimeStep
from trustmarl.envs.registry import register

# MA-Gym actions: 0 down, 1 left, 2 up, 3 right, 4 no-op, as (d_row, d_col)
MOVES = np.array([(1, 0), (0, -1), (-1, 0), (0, 1), (0, 0)], dtype=np.int32)
NOOP = 4
REWARD_MODES = ("individual", "team")

EMPTY, LEMON, APPLE, AGENT = 0, 1, 2, 3  # MA-Gym's Checkers observation codes


def _rounded(n: int, denominator: int) -> np.ndarray:
    """``[round(k / denominator, 2) for k < n]`` as float32 (MA-Gym rounds positions with Python's round)."""
    return np.array([round(k / denominator, 2) for k in range(n)], dtype=np.float32)


def _agent_names(n: int) -> tuple[str, ...]:
    return tuple(f"agent_{i}" for i in range(n))


def _check_common(env) -> None:
    if isinstance(env.max_steps, bool) or not isinstance(env.max_steps, int) or env.max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, got {env.max_steps!r}")
    if env.reward_mode not in REWARD_MODES:
        raise ValueError(f"reward_mode must be one of {REWARD_MODES}, got {env.reward_mode!r}")
    if not isinstance(env.full_observable, bool):
        raise ValueError(f"full_observable must be true or false, got {env.full_observable!r}")


def _final_rewards(env, rewards: jax.Array) -> jax.Array:
    if env.reward_mode == "team":
        return jnp.full_like(rewards, jnp.sum(rewards))
    return rewards


def _observations(env, per_agent: jax.Array) -> tuple:
    if env.full_observable:
        per_agent = jnp.broadcast_to(per_agent.reshape(1, -1), (env.n_agents, per_agent.size))
    return (per_agent.astype(jnp.float32),)


def _occupied_by_other(pos: jax.Array, i: int, cell: jax.Array) -> jax.Array:
    """Whether an agent other than ``i`` stands on ``cell`` (``pos`` as updated so far this step)."""
    same = jnp.all(pos == cell[None, :], axis=-1)
    return jnp.any(same & (jnp.arange(pos.shape[0]) != i))


# --- Checkers ---------------------------------------------------------------------------------------

CHECKERS_SHAPE = (3, 8)
CHECKERS_STARTS = np.array([(0, 6), (2, 6)], dtype=np.int32)
CHECKERS_FRUIT_REWARD = np.array([[0.0, -5.0, 5.0], [0.0, -1.0, 1.0]], dtype=np.float32)  # [agent, code]


def checkers_fruit_layout() -> np.ndarray:
    """``[3, 8]`` int32 initial fruit (EMPTY / LEMON / APPLE), as MA-Gym's ``__create_grid``."""
    grid = np.zeros(CHECKERS_SHAPE, dtype=np.int32)
    for r in range(3):
        for c in range(6):
            apple = (c % 2 == 0) if r % 2 == 0 else (c % 2 != 0)
            grid[r, c] = APPLE if apple else LEMON
    return grid


class CheckersState(NamedTuple):
    pos: jax.Array  # [2, 2] int32 (row, col) per agent
    fruit: jax.Array  # [3, 8] int32 remaining fruit codes
    eaten: jax.Array  # [2, 2] int32 per agent: (lemons, apples) eaten this episode
    step: jax.Array  # int32 steps taken


@dataclasses.dataclass(frozen=True)
class Checkers(MultiAgentEnv):
    """MA-Gym ``Checkers-v0`` (2019-2020 version): see the module docstring.

    Global state (23 floats): both agents' normalised positions, the 18 fruit cells (+1 apple, -1
    lemon, 0 eaten; row-major over columns 0-5) and ``step / max_steps``.
    """

    max_steps: int = 100  # episode length (time limit)
    step_cost: float = -0.01  # reward every agent pays each step
    full_observable: bool = False  # every agent sees the whole grid instead of its 5x5 view
    reward_mode: str = "individual"  # individual: each agent's own reward | team: every agent gets the sum

    description = "MA-Gym Checkers (MATRL paper version): 2 agents collect apples, avoid lemons; agent 0 scores 5x."

    def validate(self) -> None:
        _check_common(self)

    @property
    def groups(self) -> tuple[AgentGroup, ...]:
        obs_dim = 11 * (2 if self.full_observable else 1)
        return (AgentGroup("agent", _agent_names(2), obs_dim, Discrete(5)),)

    @property
    def state_dim(self) -> int:
        return 23

    @property
    def max_episode_steps(self) -> int:
        return self.max_steps

    def _obs_per_agent(self, pos: jax.Array, fruit: jax.Array) -> jax.Array:
        """``[2, 11]``: rounded position and the 3 x 3 neighbourhood codes."""
        rows, cols = _rounded(3, 3), _rounded(8, 7)
        codes = fruit
        for i in range(2):
            here = codes[pos[i, 0], pos[i, 1]]
            codes = codes.at[pos[i, 0], pos[i, 1]].set(jnp.where(here == EMPTY, AGENT, here))
        padded = jnp.pad(codes, 1)  # off-grid cells read 0
        out = []
        for i in range(2):
            view = jax.lax.dynamic_slice(padded, (pos[i, 0], pos[i, 1]), (3, 3))
            coords = jnp.stack([jnp.asarray(rows)[pos[i, 0]], jnp.asarray(cols)[pos[i, 1]]])
            out.append(jnp.concatenate([coords, view.reshape(-1).astype(jnp.float32)]))
        return jnp.stack(out)

    def _global_state(self, s: CheckersState) -> jax.Array:
        rows, cols = jnp.asarray(_rounded(3, 3)), jnp.asarray(_rounded(8, 7))
        coords = jnp.stack([rows[s.pos[:, 0]], cols[s.pos[:, 1]]], axis=-1).reshape(-1)
        fruit = s.fruit[:, :6].reshape(-1)
        signed = jnp.where(fruit == APPLE, 1.0, jnp.where(fruit == LEMON, -1.0, 0.0))
        time = jnp.asarray(s.step, jnp.float32)[None] / self.max_steps
        return jnp.concatenate([coords, signed, time]).astype(jnp.float32)

    def _timestep(self, s: CheckersState, reward: jax.Array, terminated, truncated) -> TimeStep:
        obs = _observations(self, self._obs_per_agent(s.pos, s.fruit))
        info = {
            "apples_agent_0": s.eaten[0, 1], "lemons_agent_0": s.eaten[0, 0],
            "apples_agent_1": s.eaten[1, 1], "lemons_agent_1": s.eaten[1, 0],
        }
        return self.make_timestep(obs, self.all_available(), self._global_state(s), reward, terminated, truncated, info=info)

    def initial_state(self) -> CheckersState:
        return CheckersState(
            pos=jnp.asarray(CHECKERS_STARTS),
            fruit=jnp.asarray(checkers_fruit_layout()),
            eaten=jnp.zeros((2, 2), jnp.int32),
            step=jnp.zeros((), jnp.int32),
        )

    @functools.partial(jax.jit, static_argnums=0)  # one compiled call when used eagerly (checker, render)
    def _reset(self, key: jax.Array) -> tuple[CheckersState, TimeStep]:
        del key  # deterministic
        s = self.initial_state()
        return s, self._timestep(s, jnp.zeros((2,), jnp.float32), False, False)

    @functools.partial(jax.jit, static_argnums=0)
    def _step(self, key: jax.Array, state: CheckersState, actions: tuple) -> tuple[CheckersState, TimeStep]:
        del key
        act = jnp.asarray(actions[0], jnp.int32).reshape(2)
        pos, fruit, eaten = state.pos, state.fruit, state.eaten
        rewards = jnp.full((2,), self.step_cost, jnp.float32)
        for i in range(2):  # sequential moves in index order (MA-Gym)
            target = pos[i] + jnp.asarray(MOVES)[act[i]]
            inside = jnp.all((target >= 0) & (target < jnp.asarray(CHECKERS_SHAPE)))
            moved = (act[i] != NOOP) & inside & ~_occupied_by_other(pos, i, target)
            new = jnp.where(moved, target, pos[i])
            code = fruit[new[0], new[1]]
            ate = moved & (code != EMPTY)
            rewards = rewards.at[i].add(jnp.where(ate, jnp.asarray(CHECKERS_FRUIT_REWARD)[i, code], 0.0))
            fruit = fruit.at[new[0], new[1]].set(jnp.where(ate, EMPTY, code))
            eaten = eaten.at[i, jnp.clip(code - 1, 0, 1)].add(ate.astype(jnp.int32))
            pos = pos.at[i].set(new)
        step = state.step + 1
        s = CheckersState(pos=pos, fruit=fruit, eaten=eaten, step=step)
        terminated = ~jnp.any(fruit == APPLE)
        truncated = (step >= self.max_steps) & ~terminated
        return s, self._timestep(s, _final_rewards(self, rewards), terminated, truncated)

    def render(self, state: CheckersState, cell: int = 40) -> np.ndarray:
        """RGB ``[3 * cell, 8 * cell, 3]`` uint8: apples green, lemons yellow, agent 0 red, agent 1 blue."""
        fruit = np.asarray(state.fruit)
        squares = {(r, c): ((60, 170, 60) if fruit[r, c] == APPLE else (235, 210, 40))
                   for r in range(3) for c in range(8) if fruit[r, c] != EMPTY}
        return _draw_grid(CHECKERS_SHAPE, cell, squares, {}, np.asarray(state.pos), [(220, 40, 40), (40, 80, 220)])


# --- Switch -----------------------------------------------------------------------------------------

SWITCH_SHAPE = (3, 7)
SWITCH_STARTS = np.array([(0, 1), (0, 5), (2, 1), (2, 5)], dtype=np.int32)
SWITCH_TARGETS = np.array([(0, 6), (0, 0), (2, 6), (2, 0)], dtype=np.int32)
SWITCH_COLOURS = [(220, 40, 40), (40, 80, 220), (40, 160, 60), (240, 140, 20)]


def switch_free_cells() -> np.ndarray:
    """``[3, 7]`` bool: the middle row and columns 0, 1, 5, 6 are free, everything else is wall."""
    free = np.zeros(SWITCH_SHAPE, dtype=bool)
    free[1, :] = True
    free[:, [0, 1, 5, 6]] = True
    return free


class SwitchState(NamedTuple):
    pos: jax.Array  # [n, 2] int32
    arrived: jax.Array  # [n] bool
    step: jax.Array  # int32


@dataclasses.dataclass(frozen=True)
class Switch(MultiAgentEnv):
    """MA-Gym ``Switch{2,4}-v0`` (2019-2020 version): see the module docstring. Use ``grid/switch2`` or
    ``grid/switch4``.

    Global state (``3 n + 1`` floats): normalised positions, arrived flags and ``step / max_steps``.
    """

    n_agents: int = 4  # type: ignore[assignment]  # agents
    max_steps: int = 50  # episode length (time limit)
    step_cost: float = -0.1  # reward every agent pays each step
    arrival_reward: float = 5.0  # reward of an agent reaching its target room
    full_observable: bool = False  # every agent sees the whole grid instead of its 5x5 view
    reward_mode: str = "individual"  # individual: each agent's own reward | team: every agent gets the sum

    description = "MA-Gym Switch (MATRL paper version): agents cross a one-cell corridor to the opposite room."

    def validate(self) -> None:
        if self.n_agents not in (2, 4):
            raise ValueError(f"n_agents must be 2 or 4 (MA-Gym Switch2 / Switch4), got {self.n_agents!r}")
        _check_common(self)

    @property
    def groups(self) -> tuple[AgentGroup, ...]:
        obs_dim = 2 * (self.n_agents if self.full_observable else 1)
        return (AgentGroup("agent", _agent_names(self.n_agents), obs_dim, Discrete(5)),)

    @property
    def state_dim(self) -> int:
        return 3 * self.n_agents + 1

    @property
    def max_episode_steps(self) -> int:
        return self.max_steps

    def _coords(self, pos: jax.Array) -> jax.Array:
        rows, cols = jnp.asarray(_rounded(3, 2)), jnp.asarray(_rounded(7, 6))
        return jnp.stack([rows[pos[:, 0]], cols[pos[:, 1]]], axis=-1)

    def _timestep(self, s: SwitchState, reward: jax.Array, terminated, truncated) -> TimeStep:
        coords = self._coords(s.pos)
        state = jnp.concatenate([coords.reshape(-1), s.arrived.astype(jnp.float32),
                                 jnp.asarray(s.step, jnp.float32)[None] / self.max_steps])
        info = {"arrived": jnp.mean(s.arrived.astype(jnp.float32))}
        return self.make_timestep(_observations(self, coords), self.all_available(), state.astype(jnp.float32),
                                  reward, terminated, truncated, info=info)

    def initial_state(self) -> SwitchState:
        n = self.n_agents
        return SwitchState(pos=jnp.asarray(SWITCH_STARTS[:n]), arrived=jnp.zeros((n,), bool), step=jnp.zeros((), jnp.int32))

    @functools.partial(jax.jit, static_argnums=0)  # one compiled call when used eagerly (checker, render)
    def _reset(self, key: jax.Array) -> tuple[SwitchState, TimeStep]:
        del key  # deterministic
        s = self.initial_state()
        return s, self._timestep(s, jnp.zeros((self.n_agents,), jnp.float32), False, False)

    @functools.partial(jax.jit, static_argnums=0)
    def _step(self, key: jax.Array, state: SwitchState, actions: tuple) -> tuple[SwitchState, TimeStep]:
        del key
        n = self.n_agents
        act = jnp.asarray(actions[0], jnp.int32).reshape(n)
        free = jnp.asarray(switch_free_cells())
        for r, c in SWITCH_STARTS[n:]:  # MA-Gym quirk: the absent agents' start cells stay occupied
            free = free.at[r, c].set(False)
        targets = jnp.asarray(SWITCH_TARGETS[:n])
        pos, arrived = state.pos, state.arrived
        rewards = jnp.full((n,), self.step_cost, jnp.float32)
        for i in range(n):  # sequential moves in index order; arrived agents do not move
            target = pos[i] + jnp.asarray(MOVES)[act[i]]
            inside = jnp.all((target >= 0) & (target < jnp.asarray(SWITCH_SHAPE)))
            safe = jnp.clip(target, 0, jnp.asarray(SWITCH_SHAPE) - 1)
            ok = (act[i] != NOOP) & ~arrived[i] & inside & free[safe[0], safe[1]] & ~_occupied_by_other(pos, i, target)
            pos = pos.at[i].set(jnp.where(ok, target, pos[i]))
            now = ~arrived[i] & jnp.all(pos[i] == targets[i])
            rewards = rewards.at[i].set(jnp.where(now, self.arrival_reward, self.step_cost))
            arrived = arrived.at[i].set(arrived[i] | now)
        step = state.step + 1
        s = SwitchState(pos=pos, arrived=arrived, step=step)
        terminated = jnp.all(arrived)
        truncated = (step >= self.max_steps) & ~terminated
        return s, self._timestep(s, _final_rewards(self, rewards), terminated, truncated)

    def render(self, state: SwitchState, cell: int = 40) -> np.ndarray:
        """RGB ``[3 * cell, 7 * cell, 3]`` uint8: walls black, targets outlined in the agent's colour."""
        free = switch_free_cells()
        walls = {(r, c): (30, 30, 30) for r in range(3) for c in range(7) if not free[r, c]}
        outlines = {tuple(int(v) for v in SWITCH_TARGETS[i]): SWITCH_COLOURS[i] for i in range(self.n_agents)}
        return _draw_grid(SWITCH_SHAPE, cell, walls, outlines, np.asarray(state.pos), SWITCH_COLOURS)


def _draw_grid(shape, cell, squares: dict, outlines: dict, agents: np.ndarray, colours) -> np.ndarray:
    """A grid image: filled squares, outlined cells and agents as discs (Pillow)."""
    from PIL import Image, ImageDraw

    rows, cols = shape
    img = Image.new("RGB", (cols * cell, rows * cell), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for r in range(rows):
        for c in range(cols):
            box = [c * cell, r * cell, (c + 1) * cell - 1, (r + 1) * cell - 1]
            draw.rectangle(box, fill=squares.get((r, c), (255, 255, 255)), outline=(180, 180, 180))
            if (r, c) in outlines:
                m = max(cell // 10, 1)
                draw.rectangle([box[0] + m, box[1] + m, box[2] - m, box[3] - m], outline=outlines[(r, c)], width=max(cell // 12, 2))
    for i, (r, c) in enumerate(agents):
        m = cell // 5
        draw.ellipse([c * cell + m, r * cell + m, (c + 1) * cell - m, (r + 1) * cell - m], fill=colours[i], outline=(0, 0, 0))
    return np.asarray(img, dtype=np.uint8)


def _fixed_switch(name: str, n: int) -> type:
    doc = f"MA-Gym Switch{n}-v0 (MATRL paper version): {n} agents cross a one-cell corridor to the opposite room."
    return dataclasses.make_dataclass(
        name,
        [("n_agents", int, dataclasses.field(default=n, init=False))],
        bases=(Switch,),
        frozen=True,
        namespace={"description": doc, "__doc__": doc, "__module__": __name__},
    )


Switch2 = _fixed_switch("Switch2", 2)
Switch4 = _fixed_switch("Switch4", 4)

register("grid/checkers", Checkers, Checkers.description)
register("grid/switch2", Switch2, Switch2.description)
register("grid/switch4", Switch4, Switch4.description)
