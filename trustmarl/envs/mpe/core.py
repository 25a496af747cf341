"""A JAX particle world: the physics of the Multi-Agent Particle Environments (MPE), shared by ``mpe/*``.

The world follows ``mpe2._mpe_utils.core.World`` (Lowe et al. 2017; PettingZoo's MPE, now ``mpe2``):

- **Entities** are ``N`` agents followed by ``L`` landmarks. Every entity has a size (radius); agents
  also have a mass, an acceleration (the force of one unit of action, ``5.0`` when unset), an optional
  maximum speed, and flags: *movable* (speakers do not move), *silent* (cannot send messages),
  *collide*. Landmarks never move; a landmark may collide (obstacles push agents away).
- **Actions** (``SimpleEnv._set_action``). Discrete movement ``[no-op, left, right, down, up]`` gives the
  unit force ``(0,0), (-1,0), (1,0), (0,-1), (0,1)``; continuous movement ``a in [0, 1]^5`` gives
  ``(a[2] - a[1], a[4] - a[3])``; both are scaled by the acceleration. An agent that moves and speaks
  has ``5 * dim_c`` discrete actions (``move = a % 5``, ``message = a // 5``) or a ``5 + dim_c``
  continuous vector; a speaker that cannot move chooses one of ``dim_c`` messages (or a ``dim_c``
  vector). A discrete message is written to the agent's communication state ``c`` as a one-hot
  vector, a continuous one as given; silent agents have ``c = 0``.
- **Contact force** between two colliding entities ``a, b`` with ``d = p_a - p_b`` and ``m = size_a +
  size_b``: ``F_a = 100 * d / |d| * k * softplus(-(|d| - m) / k)``, ``k = 1e-3``, and ``F_b = -F_a``.
  Pairs can be switched off one by one (the Spread-3 variants of Li et al. 2022 take some agents out of the
  collisions).
- **Integration** with ``dt = 0.1`` and damping ``0.25``, ``F`` the action force plus contact forces:
  mpe2 (``position_first``, the default) does ``p += v dt; v = 0.75 v + F / m dt``, then clips the speed
  to ``max_speed``; the original MPE of Lowe et al. and the MAAC code of Iqbal & Sha (2019)
  (``velocity_first``) update and clip ``v`` first and then move with the new velocity.

Agents are on one array axis: a step is a handful of ``[N, 2]`` and ``[N, M, 2]`` array operations,
whatever the number of agents. :class:`World` is a static, hashable description from which the
constants are built once at trace time; parts of the physics that a world does not use (contact
forces, speed limits, masses other than 1, immovable agents) are left out of the traced program.

A scenario subclasses :class:`ParticleEnv` and supplies the world, the reset, rewards, observations
and global state; :meth:`ParticleEnv.decode_actions` and :meth:`ParticleEnv.move` do the rest.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from trustmarl.envs.base import AgentGroup, Box, Discrete, MultiAgentEnv

DT = 0.1
DAMPING = 0.25
CONTACT_FORCE = 1e2
CONTACT_MARGIN = 1e-3
DEFAULT_ACCEL = 5.0  # SimpleEnv._set_action: sensitivity 5 when agent.accel is None
N_MOVES = 5  # no-op, left, right, down, up
INTEGRATIONS = ("position_first", "velocity_first")

# Discrete movement action -> unit force direction (mpe2 order: no-op, left, right, down, up).
MOVE_DIRECTIONS = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]], dtype=np.float64)


def float_dtype() -> jnp.dtype:
    """float32, or float64 when JAX's x64 mode is on (the parity tests compare with mpe2 in float64)."""
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def _per_agent(value: Any, n: int, name: str) -> tuple:
    if isinstance(value, (list, tuple, np.ndarray)):
        if len(value) != n:
            raise ValueError(f"{name} has {len(value)} entries for {n} agents")
        return tuple(value)
    return (value,) * n


@dataclasses.dataclass(frozen=True)
class World:
    """The static part of a particle world (hashable; build it with :meth:`World.make`).

    Per-agent tuples have one entry per agent in the global agent order; ``None`` in ``accel`` means
    the default sensitivity 5.0 and in ``max_speed`` no speed limit.
    """

    agent_size: tuple[float, ...]
    landmark_size: tuple[float, ...]
    mass: tuple[float, ...]
    accel: tuple[float | None, ...]
    max_speed: tuple[float | None, ...]
    movable: tuple[bool, ...]
    silent: tuple[bool, ...]
    agent_collide: tuple[bool, ...]
    landmark_collide: tuple[bool, ...]
    no_contact: frozenset = frozenset()  # {(i, j)}: agent pairs whose contact force is switched off
    dim_c: int = 0
    integration: str = "position_first"  # position_first (mpe2) | velocity_first (the original MPE and MAAC code)

    @classmethod
    def make(
        cls,
        n_agents: int,
        agent_size: float | Sequence[float] = 0.05,
        landmark_size: Sequence[float] = (),
        mass: float | Sequence[float] = 1.0,
        accel: float | None | Sequence[float | None] = None,
        max_speed: float | None | Sequence[float | None] = None,
        movable: bool | Sequence[bool] = True,
        silent: bool | Sequence[bool] = True,
        collide: bool | Sequence[bool] = False,
        landmark_collide: bool | Sequence[bool] = False,
        no_contact: Sequence[tuple[int, int]] = (),
        dim_c: int = 0,
        integration: str = "position_first",
    ) -> "World":
        n_l = len(landmark_size)
        pairs = frozenset((min(i, j), max(i, j)) for i, j in no_contact)
        return cls(
            agent_size=tuple(float(x) for x in _per_agent(agent_size, n_agents, "agent_size")),
            landmark_size=tuple(float(x) for x in landmark_size),
            mass=tuple(float(x) for x in _per_agent(mass, n_agents, "mass")),
            accel=_per_agent(accel, n_agents, "accel"),
            max_speed=_per_agent(max_speed, n_agents, "max_speed"),
            movable=tuple(bool(x) for x in _per_agent(movable, n_agents, "movable")),
            silent=tuple(bool(x) for x in _per_agent(silent, n_agents, "silent")),
            agent_collide=tuple(bool(x) for x in _per_agent(collide, n_agents, "collide")),
            landmark_collide=tuple(bool(x) for x in _per_agent(landmark_collide, n_l, "landmark_collide")),
            no_contact=pairs,
            dim_c=int(dim_c),
            integration=integration,
        )

    # --- derived constants (numpy, built once per world) ----------------------------------------
    @property
    def n_agents(self) -> int:
        return len(self.agent_size)

    @property
    def n_landmarks(self) -> int:
        return len(self.landmark_size)

    @functools.cached_property
    def sensitivity(self) -> np.ndarray:
        """``[N]`` force of one unit of action (``accel``, or 5.0)."""
        return np.array([DEFAULT_ACCEL if a is None else a for a in self.accel], dtype=np.float64)

    @functools.cached_property
    def contact_landmarks(self) -> np.ndarray:
        """Indices of the landmarks that push agents (``collide``)."""
        return np.flatnonzero(np.array(self.landmark_collide, dtype=bool)).astype(np.int32)

    @functools.cached_property
    def contact_mask(self) -> np.ndarray:
        """``[N, N + L_c]``: agent ``i`` feels a contact force from agent / colliding landmark ``j``."""
        n = self.n_agents
        col = np.array(self.agent_collide, dtype=bool)
        aa = col[:, None] & col[None, :] & ~np.eye(n, dtype=bool)
        for i, j in self.no_contact:
            aa[i, j] = aa[j, i] = False
        al = np.repeat(col[:, None], len(self.contact_landmarks), axis=1)
        return np.concatenate([aa, al], axis=1)

    @functools.cached_property
    def contact_dist_min(self) -> np.ndarray:
        """``[N, N + L_c]`` sum of the radii of each pair."""
        sizes = np.array(self.agent_size)
        others = np.concatenate([sizes, np.array(self.landmark_size)[self.contact_landmarks]])
        return sizes[:, None] + others[None, :]

    @property
    def has_contacts(self) -> bool:
        return bool(self.contact_mask.any())


def _const(x: np.ndarray, dtype) -> Any:
    """A Python scalar when every entry of ``x`` is equal (a weakly typed constant), else an array."""
    flat = np.asarray(x).reshape(-1)
    if flat.size and np.all(flat == flat[0]):
        return flat[0].item()
    return jnp.asarray(x, dtype=dtype)


def contact_forces(world: World, agent_pos: jax.Array, landmark_pos: jax.Array | None = None) -> jax.Array:
    """``[N, 2]`` total contact force on each agent (mpe2 ``World.apply_environment_force``)."""
    dtype = agent_pos.dtype
    mask = world.contact_mask
    n = world.n_agents
    if mask.shape == (n, n) and np.array_equal(mask, ~np.eye(n, dtype=bool)):
        mask = ~jnp.eye(n, dtype=bool)  # every pair collides (built in the program, fused by XLA)
    others = agent_pos
    if len(world.contact_landmarks):
        others = jnp.concatenate([agent_pos, landmark_pos[world.contact_landmarks]], axis=0)
    delta = agent_pos[:, None, :] - others[None, :, :]  # [N, M, 2], delta[i, j] = p_i - p_j
    dist = jnp.sqrt(jnp.sum(delta * delta, axis=-1))
    safe_dist = jnp.where(mask, dist, 1.0)
    k = CONTACT_MARGIN
    penetration = jnp.logaddexp(0.0, -(safe_dist - _const(world.contact_dist_min, dtype)) / k) * k  # softplus
    force = CONTACT_FORCE * delta / safe_dist[..., None] * penetration[..., None]
    return jnp.sum(jnp.where(mask[..., None], force, 0.0), axis=1)


def integrate(world: World, pos: jax.Array, vel: jax.Array, force: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Damped semi-implicit Euler step of every agent (mpe2 ``World.integrate_state``)."""
    dtype = pos.dtype
    masses = np.array(world.mass)
    accel = force if np.all(masses == 1.0) else force / _const(masses[:, None], dtype)
    limits = np.array([np.inf if s is None else s for s in world.max_speed], dtype=np.float64)

    def clip(v):
        if np.all(np.isinf(limits)):
            return v
        speed = jnp.sqrt(jnp.square(v[:, 0]) + jnp.square(v[:, 1]))
        limit = _const(limits, dtype)  # a scalar, or [N] with inf for agents without a limit
        over = speed > limit
        scaled = v / jnp.where(over, speed, 1.0)[:, None] * (limit if np.ndim(limit) == 0 else limit[:, None])
        return jnp.where(over[:, None], scaled, v)

    if world.integration == "velocity_first":
        new_vel = clip(vel * (1.0 - DAMPING) + accel * DT)
        new_pos = pos + new_vel * DT
    else:
        new_pos = pos + vel * DT
        new_vel = clip(vel * (1.0 - DAMPING) + accel * DT)
    movable = np.array(world.movable, dtype=bool)
    if not movable.all():
        new_pos = jnp.where(movable[:, None], new_pos, pos)
        new_vel = jnp.where(movable[:, None], new_vel, vel)
    return new_pos, new_vel


def uniform_parts(key: jax.Array, sizes: Sequence[int], dtype) -> list[jax.Array]:
    """Flat ``[0, 1)`` uniform arrays of the given sizes from **one** random draw.

    A reset runs at every step (``MultiAgentEnv.step`` computes it and keeps it when the episode ends), and
    on CPU each ``jax.random`` call costs about as much as a whole particle step: drawing everything at
    once makes the small scenarios about twice as fast as separate ``split``/``uniform``/``randint`` calls.
    """
    u = jax.random.uniform(key, (max(sum(sizes), 1),), dtype)
    out, start = [], 0
    for k in sizes:
        out.append(u[start:start + k])
        start += k
    return out


def scaled(u: jax.Array, low: float, high: float) -> jax.Array:
    """``u`` in ``[0, 1)`` mapped to ``[low, high)``."""
    return u * (high - low) + low


def choice_index(u: jax.Array, n: Any) -> jax.Array:
    """Uniform integers in ``[0, n)`` from uniforms ``u`` in ``[0, 1)`` (``n`` a scalar or per-entry array)."""
    n_f = jnp.asarray(n, u.dtype)
    return jnp.minimum(jnp.floor(u * n_f).astype(jnp.int32), jnp.asarray(n, jnp.int32) - 1)


def is_touching(pos_a: jax.Array, pos_b: jax.Array, dist_min: Any) -> jax.Array:
    """``[A, B]`` bool: ``|p_a - p_b| < dist_min`` (the scenarios' ``is_collision``)."""
    delta = pos_a[:, None, :] - pos_b[None, :, :]
    return jnp.sqrt(jnp.sum(delta * delta, axis=-1)) < dist_min


def distances(pos_a: jax.Array, pos_b: jax.Array) -> jax.Array:
    """``[A, B]`` Euclidean distances."""
    delta = pos_a[:, None, :] - pos_b[None, :, :]
    return jnp.sqrt(jnp.sum(delta * delta, axis=-1))


def others_index(n: int) -> np.ndarray:
    """``[n, n-1]`` indices of the other agents, in order, for each agent."""
    return np.array([[j for j in range(n) if j != i] for i in range(n)], dtype=np.int32).reshape(n, n - 1)


def validate_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")


def validate_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")


def validate_bool(name: str, value: Any) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be true or false, got {value!r}")


# --- rendering -----------------------------------------------------------------------------------


def mpe_rgb(color: Sequence[float]) -> tuple[int, int, int]:
    """mpe2's drawing colour of an entity colour (``pygame.draw.circle(..., color * 200)``)."""
    c = np.clip(np.asarray(color, dtype=float)[:3] * 200.0, 0, 255)
    if c.size < 3:
        c = np.concatenate([c, np.zeros(3 - c.size)])
    return tuple(int(x) for x in c)


def draw_world(pos, radius, colors, size: int = 320, extent: float | None = None,
               texts: Sequence[str] = ()) -> np.ndarray:
    """An RGB frame ``[size, size, 3]`` uint8: filled circles with black borders, y axis up, in the order
    given (mpe2 draws agents, then landmarks), and ``texts`` (e.g. messages) in the bottom-left corner.

    ``extent`` is the half-width of the square shown; by default it is 1.5, widened when an entity lies
    further out (mpe2 zooms out the same way to keep every entity on screen).
    """
    from PIL import Image, ImageDraw

    pos = np.asarray(pos, dtype=float).reshape(-1, 2)
    radius = np.asarray(radius, dtype=float).reshape(-1)
    if extent is None:
        reach = np.max(np.abs(pos) + radius[:, None]) if len(pos) else 0.0
        extent = max(1.5, 1.05 * float(reach))
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    scale = size / (2 * extent)
    for (x, y), r, c in zip(pos, radius, colors):
        cx, cy = (x + extent) * scale, (extent - y) * scale
        rr = max(r * scale, 1.0)
        draw.ellipse([cx - rr, cy - rr, cx + rr, cy + rr], fill=tuple(c), outline=(0, 0, 0))
    for line, text in enumerate(reversed(list(texts))):
        draw.text((0.03 * size, size - 14 * (line + 1) - 0.02 * size), text, fill=(0, 0, 0))
    return np.asarray(img)


# --- the scenario base class ---------------------------------------------------------------------


class ParticleEnv(MultiAgentEnv):
    """Base of the particle-world scenarios (a mixin for frozen dataclasses; no fields of its own).

    A subclass provides ``world`` (a :class:`World`), ``group_layout`` (``(name, agent names, obs_dim)``
    per group, consecutive in the world's agent order), the reset and step, and optionally the
    hyperparameter ``continuous_actions``. Groups' action spaces follow from the world (mpe2's rules).
    """

    @property
    def world(self) -> World:
        raise NotImplementedError

    @property
    def group_layout(self) -> tuple[tuple[str, tuple[str, ...], int], ...]:
        raise NotImplementedError

    @property
    def continuous(self) -> bool:
        return bool(getattr(self, "continuous_actions", False))

    @property
    def groups(self) -> tuple[AgentGroup, ...]:
        return _groups(self)

    def group_slices(self) -> tuple[slice, ...]:
        out, start = [], 0
        for _, names, _ in self.group_layout:
            out.append(slice(start, start + len(names)))
            start += len(names)
        return tuple(out)

    def action_space_of(self, first_agent: int) -> Discrete | Box:
        """mpe2's action space of agent ``first_agent`` (``SimpleEnv.__init__``)."""
        w = self.world
        movable, silent = w.movable[first_agent], w.silent[first_agent]
        if self.continuous:
            dim = (N_MOVES if movable else 0) + (0 if silent else w.dim_c)
            return Box(dim, 0.0, 1.0)
        n = N_MOVES if movable else 1
        return Discrete(n if silent else n * w.dim_c)

    def decode_actions(self, actions: tuple, dtype) -> tuple[jax.Array, jax.Array | None]:
        """``(u [N, 2], c [N, dim_c] or None)``: action forces and messages (``SimpleEnv._set_action``)."""
        w = self.world
        us, cs = [], []
        for sl, act in zip(self.group_slices(), actions):
            i0, n = sl.start, sl.stop - sl.start
            movable, silent = w.movable[i0], w.silent[i0]
            if self.continuous:
                a = jnp.asarray(act, dtype=dtype).reshape(n, -1)
                if movable:
                    u = jnp.stack([a[:, 2] - a[:, 1], a[:, 4] - a[:, 3]], axis=-1)
                    rest = a[:, N_MOVES:]
                else:
                    u, rest = jnp.zeros((n, 2), dtype), a
                c = rest[:, : w.dim_c]
            else:
                a = jnp.asarray(act, dtype=jnp.int32).reshape(n)
                if movable and not silent:
                    move, msg = a % N_MOVES, a // N_MOVES
                elif movable:
                    move, msg = a, None
                else:
                    move, msg = None, a
                u = jnp.asarray(MOVE_DIRECTIONS, dtype)[move] if move is not None else jnp.zeros((n, 2), dtype)
                c = jax.nn.one_hot(msg, w.dim_c, dtype=dtype) if msg is not None else None
            sens = w.sensitivity[sl]
            us.append(u * _const(sens[:, None], dtype))
            cs.append(jnp.zeros((n, w.dim_c), dtype) if silent or c is None else c)
        u = us[0] if len(us) == 1 else jnp.concatenate(us, axis=0)
        if w.dim_c == 0 or all(w.silent):
            return u, None
        return u, (cs[0] if len(cs) == 1 else jnp.concatenate(cs, axis=0))

    def move(self, agent_pos: jax.Array, agent_vel: jax.Array, u: jax.Array,
             landmark_pos: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """One physics step (``World.step``): action forces plus contact forces, then integration."""
        w = self.world
        force = u + contact_forces(w, agent_pos, landmark_pos) if w.has_contacts else u
        return integrate(w, agent_pos, agent_vel, force)


def _groups(env: ParticleEnv) -> tuple[AgentGroup, ...]:
    out = []
    for (name, names, obs_dim), sl in zip(env.group_layout, env.group_slices()):
        out.append(AgentGroup(name, tuple(names), int(obs_dim), env.action_space_of(sl.start)))
    return tuple(out)
