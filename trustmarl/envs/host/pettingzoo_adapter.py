"""PettingZoo Parallel API environments behind trustmarl's environment contract.

:class:`PettingZooAdapter` wraps one ``pettingzoo.ParallelEnv`` (or anything with the same methods) and
returns numpy versions of the contract's fields for a single copy; :class:`~trustmarl.envs.host.vector.
HostVecEnv` batches copies and adds auto-reset.

Conventions (documented here once, used everywhere in ``trustmarl.envs.host``):

- **Groups.** Agents with equal observation *and* action spaces (gymnasium space equality: type,
  shape, dtype, bounds) form one group; groups appear in the order in which their first agent appears
  in ``env.possible_agents``, and agents keep their ``possible_agents`` order inside a group. The global
  agent order (``reward``, ``active``) is the groups concatenated, so it differs from
  ``possible_agents`` when groups interleave (e.g. ``[a0:disc, a1:cont, a2:disc]`` -> ``(a0, a2, a1)``).
  Group names are ``"g<k>_<prefix of the first agent>"`` (prefix = the name without a trailing ``_<n>``).
- **Observations** are flattened to 1-D float32 (``obs_dim = prod(shape)``). Dict observations with an
  ``"observation"`` key use that entry (and their ``"action_mask"`` entry as the mask).
- **Available actions** (discrete groups): ``observation["action_mask"]`` or ``info["action_mask"]``
  when present, otherwise every action is available.
- **Box actions**: the policy outputs unbounded values; the adapter **clips** them to the space bounds
  per dimension before calling the environment. The group's :class:`~trustmarl.envs.base.Box` carries
  scalar bounds (the smallest low and largest high when bounds differ per dimension).
- **Global state**: ``env.state()`` when the environment implements it, otherwise the concatenation of
  all agents' (flattened) observations in global agent order. After a step that ends the episode by
  *termination* the env is not asked for its state (SISL multiwalker, for one, has torn down its world
  by then and raises): ``state`` (the episode's ``final_state``) repeats the last state it gave. Nothing
  reads it: a terminal state is never bootstrapped from. After a truncation the state is asked for
  as usual, since bootstrapping a time limit needs it.
- **Agents that leave** mid-episode (absent from the step dicts) get reward 0, ``active=False`` and
  their last observation. The episode ends when ``env.agents`` is empty or every agent of the step is
  terminated or truncated; it counts as *truncated* only when all of them are truncated and none is
  terminated, otherwise as *terminated*.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from typing import Any, Callable, Sequence

import numpy as np

from trustmarl.envs.base import AgentGroup, Box, Discrete
from trustmarl.envs.host import MissingExtraError

try:
    import gymnasium.spaces as gspaces
except ImportError as err:  # pragma: no cover - gymnasium ships with pettingzoo
    raise MissingExtraError(
        "PettingZoo environments need gymnasium and pettingzoo: pip install 'trustmarl[pettingzoo]'"
    ) from err

# Which pip extra provides a top-level package (for MissingExtraError messages).
_EXTRA_OF_PACKAGE = {
    "mpe2": "pettingzoo",
    "pettingzoo": "pettingzoo",
    "pymunk": "pettingzoo",
    "Box2D": "pettingzoo",
    "gymnasium_robotics": "mujoco",
    "mujoco": "mujoco",
    "jinja2": "mujoco",
    "jaxmarl": "jaxmarl",
    "multi_agent_ale_py": "atari",
    "ale_py": "atari",
    "magent2": "magent",
}


def missing_extra(package: str, err: BaseException | None = None) -> MissingExtraError:
    """A :class:`MissingExtraError` for the missing top-level ``package``."""
    extra = _EXTRA_OF_PACKAGE.get(package)
    if extra is None:
        msg = (f"the package {package!r} is not installed: install the package that provides it "
               "(PettingZoo support itself: pip install 'trustmarl[pettingzoo]')")
    else:
        msg = f"the optional package {package!r} is not installed: pip install 'trustmarl[{extra}]'"
    if package in ("pymunk", "Box2D"):
        msg += " (SISL environments need pip install 'pettingzoo[sisl]')"
    if err is not None:
        msg += f" ({err})"
    return MissingExtraError(msg)


# --- spaces and groups ------------------------------------------------------------------------------


def _obs_subspace(space: Any) -> Any:
    """The observation part of a space (the ``"observation"`` entry of a Dict space)."""
    if isinstance(space, gspaces.Dict) and "observation" in space.spaces:
        return space.spaces["observation"]
    return space


def obs_dim_of(space: Any) -> int:
    """Flattened observation width of a (Box-like) observation space."""
    sub = _obs_subspace(space)
    if sub.shape is None:
        raise ValueError(f"observation space {space} has no shape; only array observations are supported")
    return int(np.prod(sub.shape)) if len(sub.shape) else 1


def contract_action_space(space: Any, agent: str = "?") -> Discrete | Box:
    """The contract's action space for a gymnasium ``Discrete`` or ``Box`` action space."""
    if isinstance(space, gspaces.Discrete):
        return Discrete(int(space.n))
    if isinstance(space, gspaces.Box):
        low = np.broadcast_to(space.low, space.shape)
        high = np.broadcast_to(space.high, space.shape)
        return Box(int(np.prod(space.shape)), float(np.min(low)), float(np.max(high)))
    raise ValueError(
        f"agent {agent!r} has action space {space}; only gymnasium Discrete and Box action spaces are supported"
    )


def _group_prefix(agent: str) -> str:
    return re.sub(r"_\d+$", "", agent)


def group_agents(
    observation_spaces: dict[str, Any], action_spaces: dict[str, Any], agent_order: Sequence[str]
) -> tuple[AgentGroup, ...]:
    """Group agents with equal observation and action spaces (see the module docstring for the order)."""
    keys: list[tuple[Any, Any]] = []
    members: list[list[str]] = []
    for agent in agent_order:
        key = (observation_spaces[agent], action_spaces[agent])
        for i, k in enumerate(keys):
            if k[0] == key[0] and k[1] == key[1]:
                members[i].append(agent)
                break
        else:
            keys.append(key)
            members.append([agent])
    groups = []
    for i, ((obs_space, act_space), names) in enumerate(zip(keys, members)):
        name = f"g{i}_{_group_prefix(names[0])}"
        groups.append(AgentGroup(name, tuple(names), obs_dim_of(obs_space), contract_action_space(act_space, names[0])))
    return tuple(groups)


# --- the adapter ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Step:
    """One copy's contract fields as numpy arrays (no leading env axis)."""

    obs: tuple  # per group [n_g, obs_dim] float32
    avail: tuple  # per group [n_g, n_actions] bool ([n_g, 0] for continuous groups)
    state: np.ndarray  # [state_dim] float32
    reward: np.ndarray  # [n_agents] float32
    terminated: bool
    truncated: bool
    active: np.ndarray  # [n_agents] bool


def observation_array(raw: Any) -> np.ndarray:
    """One agent's PettingZoo observation as the flat float32 vector the policies read."""
    if isinstance(raw, dict) and "observation" in raw:
        raw = raw["observation"]
    return np.asarray(raw, dtype=np.float32).reshape(-1)


def action_mask(group: AgentGroup, raw_obs: Any, info: Any) -> np.ndarray:
    """One agent's available actions ``[avail_dim]``: ``raw_obs["action_mask"]``, else ``info["action_mask"]``,
    else all of them."""
    n = group.avail_dim
    mask = None
    if isinstance(raw_obs, dict) and "action_mask" in raw_obs:
        mask = raw_obs["action_mask"]
    elif isinstance(info, dict) and "action_mask" in info:
        mask = info["action_mask"]
    if mask is None or n == 0:
        return np.ones((n,), dtype=bool)
    return np.asarray(mask).reshape(n).astype(bool)


class PettingZooAdapter:
    """One PettingZoo Parallel API environment as numpy contract fields (see the module docstring)."""

    def __init__(self, env: Any):
        self.env = env
        possible = list(env.possible_agents)
        if not possible:
            raise ValueError("the environment has no possible_agents")
        self._obs_spaces = {a: env.observation_space(a) for a in possible}
        self._act_spaces = {a: env.action_space(a) for a in possible}
        self.groups = group_agents(self._obs_spaces, self._act_spaces, possible)
        self.agents = tuple(a for g in self.groups for a in g.agents)
        self.n_agents = len(self.agents)
        self._use_env_state, self.state_dim = self._probe_state()
        self._last_obs = {a: np.zeros(obs_dim_of(self._obs_spaces[a]), np.float32) for a in self.agents}
        self._last_state = np.zeros(self.state_dim, np.float32)

    def _probe_state(self) -> tuple[bool, int]:
        """Whether ``env.state()`` is implemented, and the global state width."""
        space = getattr(self.env, "state_space", None)
        if space is not None and getattr(space, "shape", None) is not None:
            return True, int(np.prod(space.shape))
        if callable(getattr(self.env, "state", None)):
            self.env.reset(seed=0)  # state() needs a reset; every episode is re-seeded anyway
            try:
                return True, int(np.asarray(self.env.state()).size)
            except (NotImplementedError, AttributeError):
                pass
        return False, sum(g.n * g.obs_dim for g in self.groups)

    # --- conversions ------------------------------------------------------------------------------
    def _obs_array(self, agent: str, raw: Any) -> np.ndarray:
        return observation_array(raw)

    def _mask(self, group: AgentGroup, agent: str, raw_obs: Any, info: Any) -> np.ndarray:
        return action_mask(group, raw_obs, info)

    def _env_action(self, agent: str, action: np.ndarray) -> Any:
        space = self._act_spaces[agent]
        if isinstance(space, gspaces.Discrete):
            return int(space.start) + int(action)
        a = np.asarray(action, dtype=np.float64).reshape(space.shape)
        return np.clip(a, space.low, space.high).astype(space.dtype)  # policy output is unbounded: clip

    def _fields(self, obs: dict, infos: dict, rewards: dict, live: set, terminated: bool = False) -> tuple:
        obs_out, avail_out = [], []
        for g in self.groups:
            rows, masks = [], []
            for a in g.agents:
                if a in obs:
                    self._last_obs[a] = self._obs_array(a, obs[a])
                rows.append(self._last_obs[a])
                masks.append(self._mask(g, a, obs.get(a), infos.get(a) if isinstance(infos, dict) else None))
            obs_out.append(np.stack(rows).astype(np.float32))
            avail_out.append(np.stack(masks).reshape(g.n, g.avail_dim))
        if self._use_env_state and terminated:  # the env may be gone (see the module docstring)
            state = self._last_state
        elif self._use_env_state:
            state = np.asarray(self.env.state(), dtype=np.float32).reshape(-1)
            self._last_state = state
        else:
            state = np.concatenate([o.reshape(-1) for o in obs_out]).astype(np.float32)
        reward = np.array([float(rewards.get(a, 0.0)) for a in self.agents], dtype=np.float32)
        active = np.array([a in live for a in self.agents], dtype=bool)
        return tuple(obs_out), tuple(avail_out), state, reward, active

    # --- API ----------------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> Step:
        """Reset the environment with ``seed``."""
        obs, infos = self.env.reset(seed=seed)
        live = set(obs)
        o, av, s, _, act = self._fields(obs, infos or {}, {}, live)
        return Step(o, av, s, np.zeros(self.n_agents, np.float32), False, False, act)

    def step(self, actions: Sequence[np.ndarray]) -> Step:
        """Step with ``actions`` per group (``[n_g]`` int or ``[n_g, dim]`` float)."""
        live_before = list(self.env.agents)
        act_dict = {}
        for g, acts in zip(self.groups, actions):
            acts = np.asarray(acts)
            for i, a in enumerate(g.agents):
                if a in live_before:
                    act_dict[a] = self._env_action(a, acts[i])
        obs, rewards, terms, truncs, infos = self.env.step(act_dict)
        acted = [a for a in live_before if a in terms or a in truncs] or live_before
        all_done = all(bool(terms.get(a, False)) or bool(truncs.get(a, False)) for a in acted)
        done = all_done or not self.env.agents
        truncated = done and all(bool(truncs.get(a, False)) for a in acted) and not any(
            bool(terms.get(a, False)) for a in acted
        )
        live = {a for a in obs if a in live_before}
        terminated = bool(done and not truncated)
        o, av, s, r, act = self._fields(obs, infos or {}, rewards, live, terminated)
        return Step(o, av, s, r, terminated, bool(truncated), act)

    def close(self) -> None:
        close = getattr(self.env, "close", None)
        if callable(close):
            close()


# --- loading and presets -------------------------------------------------------------------------


def import_attr(spec: str) -> Any:
    """Import ``"module.path:attr"``; a missing package raises :class:`MissingExtraError`."""
    if ":" not in spec:
        raise ValueError(f"expected 'module.path:attr', got {spec!r}")
    module_name, attr = spec.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise missing_extra((err.name or module_name).split(".")[0], err) from err
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@dataclasses.dataclass(frozen=True)
class PettingZooFactory:
    """A picklable factory: ``PettingZooFactory("mpe2.simple_spread_v3:parallel_env", {"N": 3})()``."""

    spec: str
    kwargs: tuple = ()

    def rendering(self) -> "PettingZooFactory":
        """The same env built with ``render_mode="rgb_array"`` (for ``trustmarl eval --render``)."""
        kwargs = dict(self.kwargs, render_mode="rgb_array")
        return dataclasses.replace(self, kwargs=tuple(sorted(kwargs.items())))

    def __call__(self) -> Any:
        return import_attr(self.spec)(**dict(self.kwargs))


def load_pettingzoo(path: str, **kwargs: Any) -> PettingZooFactory:
    """A factory for the Parallel API env at the import path ``path`` ("module.path:attr") built with ``kwargs``.

    The import is attempted at once, so a missing package fails here with :class:`MissingExtraError`.
    """
    import_attr(path)
    return PettingZooFactory(path, tuple(sorted(kwargs.items())))


def mpe2_simple_spread(N: int = 3, local_ratio: float = 0.5, max_cycles: int = 25) -> PettingZooFactory:
    """MPE cooperative navigation (``mpe2.simple_spread_v3``, discrete actions)."""
    return load_pettingzoo(
        "mpe2.simple_spread_v3:parallel_env", N=N, local_ratio=local_ratio, max_cycles=max_cycles,
        continuous_actions=False,
    )


def sisl_multiwalker(**kwargs: Any) -> PettingZooFactory:
    """SISL ``multiwalker_v9`` (continuous actions in ``[-1, 1]^4``); kwargs go to ``parallel_env``."""
    return load_pettingzoo("pettingzoo.sisl.multiwalker_v9:parallel_env", **kwargs)


def sisl_pursuit(**kwargs: Any) -> PettingZooFactory:
    """SISL ``pursuit_v5`` (5 discrete actions, 7x7x3 observations flattened to 147)."""
    return load_pettingzoo("pettingzoo.sisl.pursuit_v5:parallel_env", **kwargs)


EnvFactory = Callable[[], Any]
