"""JaxMARL environments (SMAX, MaBrax, ...) behind trustmarl's JAX-native contract (optional extra ``jaxmarl``).

:class:`JaxMARLEnv` wraps ``jaxmarl.make(name, **kwargs)`` into a :class:`~trustmarl.envs.base.MultiAgentEnv`:

- **Groups.** Agents with identical observation and action spaces form one group (first-appearance
  order; agents keep their JaxMARL order inside a group). In SMAX every ally has the same spaces
  (unit types are one-hot bits of the observation), so all allies are one group ``"ally"``; MaBrax
  agents with different observation sizes form several groups.
- **Observations** are flattened to ``[obs_dim]`` float32 and stacked per group.
- **Available actions** come from ``env.get_avail_actions(state)`` when the env implements it (SMAX),
  otherwise every action is available.
- **Global state** is ``obs["world_state"]`` when the env provides it (SMAX), otherwise the
  concatenation of all agents' flattened observations in trustmarl's agent order.
- **Rewards** are JaxMARL's per-agent rewards in trustmarl's agent order.
- **Active** agents are those whose per-agent ``dones[agent]`` is false (dead SMAX units are inactive);
  every agent is active after a reset.
- **Terminated / truncated.** JaxMARL only reports ``dones["__all__"]``. The adapter splits it:

  * SMAX (``SMAX`` and ``HeuristicEnemySMAX``/``LearnedPolicyEnemySMAX``): *terminated* when one team
    is wiped out (win, loss or draw), *truncated* when the episode ended only because the step counter
    reached ``max_steps`` (a battle decided on the last step counts as terminated);
  * MaBrax: *truncated* when Brax's episode wrapper flags ``info["truncation"]`` (time limit reached
    while the body had not fallen), otherwise *terminated*;
  * other envs with a ``max_steps`` attribute and a ``state.step`` counter: truncated when the
    counter reached ``max_steps`` (so a terminal state on the last step is labelled a truncation),
    otherwise terminated; envs without a step counter: ``done`` is always a termination.

- **Auto-reset.** The adapter calls JaxMARL's non-resetting ``step_env``; trustmarl's
  :meth:`MultiAgentEnv.step` performs the reset, so ``final_obs``/``final_state`` hold the terminal
  observation. Its key splitting equals JaxMARL's own ``step`` (``key_step, key_reset = split(key)``),
  so ``env.step(key, ...)`` reproduces ``raw.step(key, ...)`` exactly. MaBrax is built with
  ``auto_reset=False`` so Brax's own reset wrapper does not replace the terminal observation.

The JaxMARL env instance is built lazily by :func:`raw_env` (cached on the hashable dataclass fields),
so ``JaxMARLEnv`` stays a hashable static argument of ``jax.jit`` and importing this module never
imports JaxMARL. Without JaxMARL, building an env raises :class:`~trustmarl.envs.host.MissingExtraError`.

Registered names: ``smax/<map>`` (``HeuristicEnemySMAX``: the learning allies face JaxMARL's scripted
heuristic enemies) and ``mabrax/<task>``. SMAX is JaxMARL's JAX re-implementation of StarCraft-like
micromanagement; it is not the StarCraft II based SMAC, and its dynamics, rewards and episode limits
differ, so results are not comparable with SMAC numbers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import math
import os
import sys
from typing import Any, Callable, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from trustmarl.envs.base import AgentGroup, Box, Discrete, MultiAgentEnv, TimeStep
from trustmarl.envs.host import MissingExtraError
from trustmarl.envs.registry import register

INSTALL_JAXMARL = "pip install 'trustmarl[jaxmarl]'"
INSTALL_MABRAX = "pip install 'trustmarl[mabrax]' (or: pip install 'trustmarl[jaxmarl]' 'brax>=0.10.3')"

SMAX_MAPS = ("3m", "8m", "2s3z", "3s5z", "10m_vs_11m", "27m_vs_30m")
SMAX_ENV_ID = "HeuristicEnemySMAX"
# trustmarl task name -> JaxMARL env id (names with '|' get a readable alias)
MABRAX_TASKS = {
    "ant_4x2": "ant_4x2",
    "halfcheetah_6x1": "halfcheetah_6x1",
    "hopper_3x1": "hopper_3x1",
    "humanoid_9_8": "humanoid_9|8",
    "walker2d_2x3": "walker2d_2x3",
}
_MABRAX_IDS = frozenset(MABRAX_TASKS.values())

Kwargs = tuple[tuple[str, Any], ...]


# --- building the JaxMARL env (lazy, cached) -------------------------------------------------------


@contextlib.contextmanager
def _silenced() -> Iterator[None]:
    """Hide JaxMARL's import-time prints and restore ``sys.stdout``/``sys.stderr`` afterwards.

    ``jaxmarl.environments.mabrax`` resets ``sys.stdout`` to ``sys.__stdout__`` while importing Brax,
    which would undo a plain ``redirect_stdout`` (and a test runner's capture), so file descriptor 1
    is redirected too and the stream objects are put back.
    """
    saved_streams = sys.stdout, sys.stderr
    for s in (sys.stdout, sys.__stdout__):
        with contextlib.suppress(Exception):
            s.flush()
    saved_fd = None
    with contextlib.suppress(OSError, ValueError):
        saved_fd = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            if saved_fd is not None:
                os.dup2(devnull.fileno(), 1)
            with contextlib.redirect_stdout(io.StringIO()):
                yield
    finally:
        with contextlib.suppress(Exception):
            sys.__stdout__.flush()
        if saved_fd is not None:
            os.dup2(saved_fd, 1)
            os.close(saved_fd)
        sys.stdout, sys.stderr = saved_streams


def import_jaxmarl(name: str | None = None) -> Any:
    """Import ``jaxmarl`` (silencing its import-time prints) or raise :class:`MissingExtraError` naming
    the extra that provides it: ``trustmarl[mabrax]`` for the MaBrax env ``name``, else ``trustmarl[jaxmarl]``."""
    if sys.modules.get("jaxmarl") is not None:
        return sys.modules["jaxmarl"]
    try:
        with _silenced():
            import jaxmarl
    except ImportError as err:
        install = INSTALL_MABRAX if name in _MABRAX_IDS else INSTALL_JAXMARL
        raise MissingExtraError(
            f"JaxMARL environments need the optional package 'jaxmarl' ({err}); install it with {install}"
        ) from err
    return jaxmarl


@functools.lru_cache(maxsize=None)
def raw_env(name: str, scenario: str | None = None, kwargs: Kwargs = ()) -> Any:
    """The JaxMARL env ``jaxmarl.make(name, scenario=map_name_to_scenario(scenario), **kwargs)`` (cached)."""
    jaxmarl = import_jaxmarl(name)
    kw = dict(kwargs)
    if scenario is not None:
        from jaxmarl.environments.smax import map_name_to_scenario

        kw["scenario"] = map_name_to_scenario(scenario)
    if name in _MABRAX_IDS:
        kw.setdefault("auto_reset", False)  # trustmarl's step resets; keeps the terminal observation
    try:
        with _silenced():
            return jaxmarl.make(name, **kw)
    except ImportError as err:
        if name in _MABRAX_IDS:
            raise MissingExtraError(f"MaBrax task {name!r} needs 'brax' ({err}); install it with {INSTALL_MABRAX}") from err
        raise


class Layout(NamedTuple):
    """Host-side facts about a JaxMARL env, computed once per hyperparameter set."""

    jaxmarl_agents: tuple[str, ...]  # the env's agent order
    groups: tuple[AgentGroup, ...]
    state_dim: int
    world_state: bool  # obs["world_state"] is the global state
    avail: bool  # env.get_avail_actions is implemented
    done_kind: str  # "smax", "enemy_smax", "mabrax", "steps" or "plain" (see the module docstring)
    max_steps: int


def _space_dim(space: Any) -> int:
    return int(math.prod(space.shape)) if space.shape else 1


def _action_space(space: Any) -> Discrete | Box:
    """trustmarl action space of a JaxMARL ``Discrete``/``Box`` space."""
    if hasattr(space, "n") and not getattr(space, "shape", None):
        return Discrete(int(space.n))
    if not (hasattr(space, "low") and hasattr(space, "high")):
        raise ValueError(f"action space {space} is neither Discrete nor Box; trustmarl cannot wrap it")
    low, high = np.asarray(space.low, dtype=np.float64), np.asarray(space.high, dtype=np.float64)
    if low.size and (np.ptp(low) > 0 or np.ptp(high) > 0):
        raise ValueError(f"action space {space} has per-dimension bounds; trustmarl Box needs one low/high")
    return Box(_space_dim(space), float(low.min()), float(high.max()))


def _stem(agents: tuple[str, ...]) -> str:
    """``"ally"`` for ``("ally_0", "ally_1")``: the common name without its trailing index."""
    stems = {a.rstrip("0123456789").rstrip("_") or "agent" for a in agents}
    return stems.pop() if len(stems) == 1 else "agent"


def group_agents(agents: tuple[str, ...], obs_dims: dict, action_spaces: dict) -> tuple[AgentGroup, ...]:
    """Agents with identical (obs_dim, action space) in one group, groups in first-appearance order."""
    keys: dict[tuple, list[str]] = {}
    for a in agents:
        keys.setdefault((obs_dims[a], action_spaces[a]), []).append(a)
    stems = [_stem(tuple(members)) for members in keys.values()]
    groups = []
    for i, ((obs_dim, space), members) in enumerate(keys.items()):
        name = stems[i] if stems.count(stems[i]) == 1 else f"{stems[i]}_{i}"
        groups.append(AgentGroup(name, tuple(members), obs_dim, space))
    return tuple(groups)


def _done_kind(env: Any, state: Any) -> str:
    from jaxmarl.environments.smax import SMAX

    if isinstance(env, SMAX):
        return "smax"
    inner = getattr(env, "_env", None)
    if isinstance(inner, SMAX) and hasattr(state, "enemy_policy_state"):
        return "enemy_smax"
    if env.__class__.__name__ in ("Ant", "HalfCheetah", "Hopper", "Humanoid", "Walker2d", "MABraxEnv"):
        return "mabrax"
    if hasattr(env, "max_steps") and hasattr(state, "step"):
        return "steps"
    return "plain"


def _max_steps(env: Any, kind: str) -> int:
    if kind == "mabrax":
        return int(math.ceil(env.episode_length / env.action_repeat))
    return int(getattr(env, "max_steps", 1000))


@functools.lru_cache(maxsize=None)
def layout(name: str, scenario: str | None = None, kwargs: Kwargs = ()) -> Layout:
    """Groups, state size and termination rules of a JaxMARL env (traced with ``eval_shape``, not run)."""
    env = raw_env(name, scenario, kwargs)
    agents = tuple(env.agents)
    obs_dims = {a: _space_dim(env.observation_space(a)) for a in agents}
    spaces = {a: _action_space(env.action_space(a)) for a in agents}
    groups = group_agents(agents, obs_dims, spaces)
    obs, state = jax.eval_shape(env.reset, jax.random.PRNGKey(0))
    world_state = isinstance(obs, dict) and "world_state" in obs
    state_dim = int(math.prod(obs["world_state"].shape)) if world_state else sum(obs_dims.values())
    avail = any(isinstance(g.action_space, Discrete) for g in groups)
    if avail:
        try:
            jax.eval_shape(env.get_avail_actions, state)
        except NotImplementedError:
            avail = False
    kind = _done_kind(env, state)
    return Layout(agents, groups, state_dim, world_state, avail, kind, _max_steps(env, kind))


# --- the adapter --------------------------------------------------------------------------------------


def _as_kwargs(kwargs: Any) -> Kwargs:
    """Normalise a dict or iterable of pairs into a sorted tuple of ``(key, value)`` pairs."""
    items = kwargs.items() if isinstance(kwargs, dict) else kwargs
    return tuple(sorted((str(k), v) for k, v in items))


@dataclasses.dataclass(frozen=True)
class JaxMARLEnv(MultiAgentEnv):
    """A JaxMARL environment ``jaxmarl.make(name, **kwargs)`` behind trustmarl's contract.

    ``scenario`` names a SMAX map (passed as ``scenario=map_name_to_scenario(scenario)``); ``kwargs``
    are further keyword arguments of the JaxMARL constructor as ``(key, value)`` pairs (a dict is
    accepted and converted; values must be hashable), e.g. ``(("max_steps", 200),)``.
    """

    name: str = SMAX_ENV_ID  # the JaxMARL environment id (jaxmarl.make)
    scenario: str | None = "3m"  # the SMAX map
    kwargs: tuple = ()  # further JaxMARL constructor arguments as (key, value) pairs

    description = "A JaxMARL environment (jaxmarl.make(name, **kwargs)) behind trustmarl's contract."

    def __post_init__(self) -> None:
        if isinstance(self.kwargs, dict) or isinstance(self.kwargs, list):
            object.__setattr__(self, "kwargs", _as_kwargs(self.kwargs))

    # --- hyperparameters and spaces ---------------------------------------------------------------
    def validate(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a JaxMARL env id (a non-empty string), got {self.name!r}")
        if self.scenario is not None and not isinstance(self.scenario, str):
            raise ValueError(f"scenario must be a SMAX map name or None, got {self.scenario!r}")
        if not isinstance(self.kwargs, tuple) or not all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in self.kwargs):
            raise ValueError(f"kwargs must be a tuple of (name, value) pairs, got {self.kwargs!r}")
        try:
            hash(self.kwargs)
        except TypeError as err:
            raise ValueError(f"kwargs values must be hashable (use tuples, not lists): {err}") from None
        jaxmarl = import_jaxmarl(self.name)
        if self.name not in jaxmarl.registered_envs:
            raise ValueError(f"name {self.name!r} is not a JaxMARL env; choose one of: {', '.join(jaxmarl.registered_envs)}")
        if self.scenario is not None:
            from jaxmarl.environments.smax.smax_env import MAP_NAME_TO_SCENARIO

            if self.scenario not in MAP_NAME_TO_SCENARIO:
                raise ValueError(f"scenario {self.scenario!r} is not a SMAX map; choose one of: {', '.join(MAP_NAME_TO_SCENARIO)}")
        self.layout  # builds the env: raises on bad kwargs  # noqa: B018

    @property
    def raw(self) -> Any:
        """The wrapped JaxMARL env instance (cached per hyperparameter set)."""
        return raw_env(self.name, self.scenario, self.kwargs)

    @property
    def layout(self) -> Layout:
        return layout(self.name, self.scenario, self.kwargs)

    @property
    def groups(self) -> tuple[AgentGroup, ...]:
        return self.layout.groups

    @property
    def state_dim(self) -> int:
        return self.layout.state_dim

    @property
    def max_episode_steps(self) -> int:
        """JaxMARL's episode limit (SMAX ``max_steps``, MaBrax ``episode_length / action_repeat``)."""
        return self.layout.max_steps

    # --- conversions between JaxMARL dicts and trustmarl arrays -----------------------------------
    def actions_dict(self, actions: tuple) -> dict:
        """trustmarl per-group actions -> JaxMARL ``{agent: action}``."""
        out = {}
        for g, act in zip(self.groups, actions):
            for i, a in enumerate(g.agents):
                out[a] = act[i]
        return out

    def _obs(self, obs: dict) -> tuple:
        return tuple(
            jnp.stack([jnp.reshape(obs[a], (-1,)) for a in g.agents]).astype(jnp.float32) for g in self.groups
        )

    def _avail(self, state: Any) -> tuple:
        if not self.layout.avail:
            return self.all_available()
        masks = self.raw.get_avail_actions(state)
        out = []
        for g in self.groups:
            if isinstance(g.action_space, Discrete):
                out.append(jnp.stack([jnp.asarray(masks[a]) for a in g.agents]).astype(bool))
            else:
                out.append(jnp.ones((g.n, 0), dtype=bool))
        return tuple(out)

    def _global_state(self, obs: dict, per_group: tuple) -> jax.Array:
        if self.layout.world_state:
            return jnp.reshape(obs["world_state"], (-1,)).astype(jnp.float32)
        return jnp.concatenate([o.reshape(-1) for o in per_group])

    def _per_agent(self, values: dict, dtype) -> jax.Array:
        return jnp.stack([jnp.asarray(values[a]) for a in self.agents]).astype(dtype)

    def _split_done(self, state: Any, done: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(terminated, truncated)`` from JaxMARL's ``dones["__all__"]`` (rules in the module docstring)."""
        kind = self.layout.done_kind
        if kind in ("smax", "enemy_smax"):
            s = state.state if kind == "enemy_smax" else state
            n_allies = self.raw.num_allies
            battle_over = jnp.all(~s.unit_alive[:n_allies]) | jnp.all(~s.unit_alive[n_allies:])
            return done & battle_over, done & ~battle_over
        if kind == "mabrax":
            trunc = done & (jnp.asarray(state.info["truncation"]) > 0)
            return done & ~trunc, trunc
        if kind == "steps":
            trunc = done & (state.step >= self.raw.max_steps)
            return done & ~trunc, trunc
        return done, jnp.zeros((), dtype=bool)

    def _timestep(self, obs: dict, state: Any, reward, terminated, truncated, active) -> TimeStep:
        per_group = self._obs(obs)
        return self.make_timestep(
            per_group, self._avail(state), self._global_state(obs, per_group), reward, terminated, truncated, active,
            self._info(state, terminated),
        )

    def _info(self, state: Any, terminated: jax.Array) -> dict:
        """SMAX: ``win_rate`` is 1.0 on the step where the allies win (every enemy dead, an ally alive)."""
        if self.layout.done_kind not in ("smax", "enemy_smax"):
            return {}
        s = state.state if self.layout.done_kind == "enemy_smax" else state
        n_allies = self.raw.num_allies
        won = terminated & jnp.any(s.unit_alive[:n_allies]) & jnp.all(~s.unit_alive[n_allies:])
        return {"win_rate": won}

    # --- dynamics ---------------------------------------------------------------------------------
    def _reset(self, key: jax.Array) -> tuple[Any, TimeStep]:
        obs, state = self.raw.reset(key)
        zero = jnp.zeros((self.n_agents,), jnp.float32)
        return state, self._timestep(obs, state, zero, False, False, None)

    def _step(self, key: jax.Array, state: Any, actions: tuple) -> tuple[Any, TimeStep]:
        obs, state, rewards, dones, _ = self.raw.step_env(key, state, self.actions_dict(actions))
        done = jnp.asarray(dones["__all__"], dtype=bool)
        terminated, truncated = self._split_done(state, done)
        active = ~self._per_agent(dones, bool)
        return state, self._timestep(obs, state, self._per_agent(rewards, jnp.float32), terminated, truncated, active)


# --- registered variants ------------------------------------------------------------------------------


def _variant(cls_name: str, description: str, **defaults: Any) -> type:
    """A ``JaxMARLEnv`` subclass whose field defaults are ``defaults`` (one registered name each)."""
    fields = {f.name: f for f in dataclasses.fields(JaxMARLEnv)}
    ns = {
        "__annotations__": {k: fields[k].type for k in defaults},
        "__module__": __name__,
        "__qualname__": cls_name,
        "__doc__": description,
        "description": description,
        **defaults,
    }
    cls = dataclasses.dataclass(frozen=True)(type(cls_name, (JaxMARLEnv,), ns))
    globals()[cls_name] = cls  # importable by name (pickling, import paths)
    return cls


_SMAX_UNITS = {
    "3m": "3 marines vs 3",
    "8m": "8 marines vs 8",
    "2s3z": "2 stalkers + 3 zealots vs the same",
    "3s5z": "3 stalkers + 5 zealots vs the same",
    "10m_vs_11m": "10 marines vs 11",
    "27m_vs_30m": "27 marines vs 30",
}


def _register_all(register_fn: Callable[..., None] = register) -> None:
    for map_name in SMAX_MAPS:
        desc = (
            f"SMAX map {map_name} (JaxMARL HeuristicEnemySMAX, pure JAX; not StarCraft II/SMAC): "
            f"{_SMAX_UNITS[map_name]} scripted heuristic enemies; needs {INSTALL_JAXMARL}"
        )
        cls = _variant(f"SMAX_{map_name}", desc, name=SMAX_ENV_ID, scenario=map_name)
        register_fn(f"smax/{map_name}", cls, desc)
    for task, env_id in MABRAX_TASKS.items():
        desc = f"MaBrax {env_id} (JaxMARL multi-agent Brax, continuous joints per agent); needs {INSTALL_MABRAX}"
        cls = _variant(f"MaBrax_{task}", desc, name=env_id, scenario=None)
        register_fn(f"mabrax/{task}", cls, desc)


_register_all()
