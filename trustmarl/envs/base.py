"""The environment contract of trustmarl's JAX-native environments.

An environment is a frozen dataclass whose fields are its hyperparameters (so ``env.n_agents=5`` on
the command line is validated against the fields) and which is hashable (so it can be a static
argument of ``jax.jit``). Reset and step are pure functions of a PRNG key and an explicit state.

Agents are organised in **groups**: agents with identical observation and action spaces are stacked
on a leading agent axis, so one network evaluation is a ``vmap`` over that axis. The global agent
order is the concatenation of the groups in order; per-agent arrays that span all agents
(``reward``, ``active``) use that order.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, NamedTuple, Union

import jax
import jax.numpy as jnp


class RenderError(RuntimeError):
    """An environment that cannot render headless (no rgb_array mode, no OpenGL backend, ...)."""


@dataclasses.dataclass(frozen=True)
class Discrete:
    """``n`` discrete actions, with an available-action mask."""

    n: int

    @property
    def kind(self) -> str:
        return "discrete"


@dataclasses.dataclass(frozen=True)
class Box:
    """A ``dim``-dimensional continuous action in ``[low, high]`` per dimension."""

    dim: int
    low: float = -1.0
    high: float = 1.0

    @property
    def kind(self) -> str:
        return "continuous"


ActionSpace = Union[Discrete, Box]


@dataclasses.dataclass(frozen=True)
class AgentGroup:
    """Agents that share observation and action spaces (stacked on one axis)."""

    name: str
    agents: tuple[str, ...]
    obs_dim: int
    action_space: ActionSpace

    @property
    def n(self) -> int:
        return len(self.agents)

    @property
    def avail_dim(self) -> int:
        """Width of the available-action mask (0 for continuous actions)."""
        return self.action_space.n if isinstance(self.action_space, Discrete) else 0


class TimeStep(NamedTuple):
    """What the environment returns after reset and after every step.

    obs:        tuple over groups of ``[n_g, obs_dim_g]`` float32 per-agent observations.
    avail:      tuple over groups of ``[n_g, n_actions_g]`` bool available-action masks
                (``[n_g, 0]`` for continuous groups).
    state:      ``[state_dim]`` float32 global state for centralised critics.
    reward:     ``[n_agents]`` float32 per-agent rewards (a team reward is repeated per agent).
                The *team reward* used for returns is their mean.
    terminated: scalar bool, the episode ended in a terminal state (no bootstrap).
    truncated:  scalar bool, the episode was cut by a time limit (bootstrap is allowed).
    active:     ``[n_agents]`` bool, agents alive at this step (dead agents are masked out of losses).
    final_obs, final_state, final_avail: after an auto-reset, the observation, state and available
                actions the episode ended in (equal to ``obs``/``state``/``avail`` when no reset happened);
                used to bootstrap truncation (off-policy targets act on ``final_obs`` with ``final_avail``).
    info:       dict of scalar float32 per-episode outcomes, read at the step that ends an episode and
                logged as ``episode_<key>``, the mean over the episodes that ended in an update (SMAX:
                ``win_rate``, 1.0 for a won battle). The same keys after reset and every step; default ``{}``.
    """

    obs: tuple
    avail: tuple
    state: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    active: jax.Array
    final_obs: tuple
    final_state: jax.Array
    final_avail: tuple
    info: dict = {}  # never mutated: environments build a new dict per step

    @property
    def done(self) -> jax.Array:
        return jnp.logical_or(self.terminated, self.truncated)


class GroupedAgents:
    """``n_agents`` and ``agents`` (global order = groups concatenated) from ``groups``."""

    groups: tuple[AgentGroup, ...]

    @property
    def n_agents(self) -> int:
        return sum(g.n for g in self.groups)

    @property
    def agents(self) -> tuple[str, ...]:
        return tuple(a for g in self.groups for a in g.agents)


def strong_types(tree: Any) -> Any:
    """``tree`` with weakly typed arrays made ordinary ones of the same dtype.

    A reset state built from Python scalars (e.g. ``jnp.full(n, -1)``) is weakly typed, while the same
    field after a step is not: a jitted training chunk fed one and then the other compiles twice.
    """
    def fix(x):
        return jnp.asarray(x, dtype=x.dtype) if getattr(jax.typeof(x), "weak_type", False) else x

    return jax.tree.map(lambda x: fix(x) if isinstance(x, jax.Array) else x, tree)


class MultiAgentEnv(GroupedAgents):
    """Base class of JAX-native multi-agent environments.

    Subclasses are ``@dataclasses.dataclass(frozen=True)`` classes that define ``groups``,
    ``state_dim``, ``_reset(key) -> (state, TimeStep)`` and ``_step(key, state, actions) ->
    (state, TimeStep)``. ``actions`` is a tuple over groups of ``[n_g]`` int32 (discrete) or
    ``[n_g, dim]`` float32 (continuous) arrays. ``step`` adds auto-reset on ``done``.
    """

    description: ClassVar[str] = ""
    # the agents share one objective, so their rewards add up to a team reward (value decomposition learns
    # from it); False in general-sum and competitive games, where each agent has only its own reward
    cooperative: ClassVar[bool] = True

    # --- to implement -------------------------------------------------------------------------
    @property
    def groups(self) -> tuple[AgentGroup, ...]:
        raise NotImplementedError

    @property
    def state_dim(self) -> int:
        raise NotImplementedError

    def _reset(self, key: jax.Array) -> tuple[Any, TimeStep]:
        raise NotImplementedError

    def _step(self, key: jax.Array, state: Any, actions: tuple) -> tuple[Any, TimeStep]:
        raise NotImplementedError

    # --- provided -----------------------------------------------------------------------------
    @property
    def max_episode_steps(self) -> int:
        """An upper bound on the episode length (evaluation scans this many steps)."""
        return 1000

    @property
    def obs_storage(self) -> str | None:
        """A dtype that holds every observation exactly (e.g. ``"uint8"`` for small integer counts), which
        replay buffers store them in; ``None``: float32 as given."""
        return None

    @property
    def min_episode_steps(self) -> int:
        """A lower bound on the episode length (1: an episode may end at any step). Off-policy replay
        buffers keep one final observation per episode apart and size that store by it."""
        return 1

    def validate(self) -> None:
        """Raise ``ValueError`` naming a bad hyperparameter; subclasses extend it."""

    def reset(self, key: jax.Array) -> tuple[Any, TimeStep]:
        return strong_types(self._reset(key))

    def step(self, key: jax.Array, state: Any, actions: tuple) -> tuple[Any, TimeStep]:
        """Step, and reset the episode when it is done (``final_*`` keep the last observation)."""
        key_step, key_reset = jax.random.split(key)
        state_next, ts = self._step(key_step, state, actions)
        state_reset, ts_reset = self._reset(key_reset)
        done = ts.done
        pick = lambda a, b: jax.tree.map(lambda x, y: jnp.where(done, x, y), a, b)  # noqa: E731
        state_out = pick(state_reset, state_next)
        ts_out = ts._replace(
            obs=pick(ts_reset.obs, ts.obs),
            avail=pick(ts_reset.avail, ts.avail),
            state=pick(ts_reset.state, ts.state),
            active=pick(ts_reset.active, ts.active),
            final_obs=ts.obs,
            final_state=ts.state,
            final_avail=ts.avail,
        )
        return strong_types((state_out, ts_out))

    def make_timestep(self, obs, avail, state, reward, terminated, truncated, active=None, info=None) -> TimeStep:
        """Convenience constructor for subclasses (``final_*`` default to the current values)."""
        if active is None:
            active = jnp.ones((self.n_agents,), dtype=bool)
        return TimeStep(
            obs=tuple(obs),
            avail=tuple(avail),
            state=state,
            reward=reward,
            terminated=jnp.asarray(terminated, dtype=bool),
            truncated=jnp.asarray(truncated, dtype=bool),
            active=active,
            final_obs=tuple(obs),
            final_state=state,
            final_avail=tuple(avail),
            info={k: jnp.asarray(v, jnp.float32) for k, v in (info or {}).items()},
        )

    def all_available(self) -> tuple:
        """Available-action masks with every action available, per group."""
        return tuple(jnp.ones((g.n, g.avail_dim), dtype=bool) for g in self.groups)

    def random_actions(self, key: jax.Array, avail: tuple | None = None) -> tuple:
        """Uniformly random valid actions (used by tests, the env checker and benchmarks)."""
        avail = self.all_available() if avail is None else avail
        out = []
        for g, av, k in zip(self.groups, avail, jax.random.split(key, len(self.groups))):
            if isinstance(g.action_space, Discrete):
                logits = jnp.where(av, 0.0, -jnp.inf)
                out.append(jax.random.categorical(k, logits, axis=-1).astype(jnp.int32))
            else:
                sp = g.action_space
                out.append(jax.random.uniform(k, (g.n, sp.dim), minval=sp.low, maxval=sp.high))
        return tuple(out)


def hyperparameters(env_cls) -> dict[str, dataclasses.Field]:
    """The configurable fields of an environment class."""
    return {f.name: f for f in dataclasses.fields(env_cls) if f.init}
