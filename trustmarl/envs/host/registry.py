"""Names of host (Python) environments for configs and the command line.

Host environments are named next to the JAX-native ones (``trustmarl list`` shows both):

- ``pettingzoo/pong`` - two-player Atari Pong (``pong_v3``, zero-sum); keys ``obs_type`` (``ram``, ``grayscale84``), ``frame_skip``,
  ``full_action_space``, ``max_cycles`` (see :mod:`trustmarl.envs.host.atari`; extra ``atari``).
- ``pettingzoo/simple_spread`` - mpe2 ``simple_spread_v3`` (discrete); keys ``n_agents``, ``local_ratio``,
  ``max_cycles`` as for the JAX-native ``mpe/simple_spread``, whose observation layout it shares.
- ``magent2/battle`` - MAgent2 battle (``battle_v4``): two armies, one group (13x13x5 views flattened to 845,
  ``Discrete(21)``); keys ``map_size``, ``max_cycles`` and the reward options (see :mod:`trustmarl.envs.host.magent`;
  extra ``magent``).
- ``sisl/multiwalker``, ``sisl/pursuit`` - PettingZoo SISL; their ``parallel_env`` keywords as ``env.*`` keys.
- ``sisl/multiwalker_li2022``, ``sisl/pursuit_li2022`` - the same as Li et al. (2022) ran them (Discrete(16)
  incremental torques; the old Pursuit reward; 25-step episodes as truncations): ``env.episode_limit`` and
  the ``parallel_env`` keywords (see :mod:`trustmarl.envs.host.sisl`).
- ``mamujoco/<task>`` (``halfcheetah_2x3``, ``halfcheetah_6x1``, ``walker2d_2x3``, ``ant_4x2``,
  ``ant_2x4``, ``hopper_3x1``, ``humanoid_17x1``, ``many_segment_swimmer_10x2``) - keys ``agent_obsk``,
  ``observation``, ``max_episode_steps`` (see :mod:`trustmarl.envs.host.mamujoco`).
- ``pettingzoo:module.path:attr`` or plain ``module.path:attr`` - any PettingZoo Parallel API env factory
  by import path (the plain form is a host env when the object is not a JAX-native ``MultiAgentEnv``);
  every ``env.*`` key except ``num_workers`` is passed to it as a keyword argument (unchecked).

Every host env also has ``env.num_workers``: worker processes of the :class:`HostVecEnv`. ``-1`` (the
default) means *auto*: ``0`` (every copy in the training process) for the cheap MPE preset, whose step
costs less than a round trip to a worker, and ``min(copies, cpu count)`` for everything else. Results
do not depend on it (episode seeds depend only on the seed and the copy index).

Nothing heavy is imported here: PettingZoo or MuJoCo are imported when an env is built, and a missing
one raises :class:`~trustmarl.envs.host.MissingExtraError` naming the pip extra.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

GENERIC_PREFIX = "pettingzoo:"
AUTO_WORKERS = -1
DEFAULT_MAX_EPISODE_STEPS = 1000  # for generic envs that do not say (bounds host evaluation episodes)


@dataclasses.dataclass(frozen=True)
class HostEnvSpec:
    """A named host env: its ``env.*`` keys with defaults and how to build its factory."""

    name: str
    description: str
    defaults: dict[str, Any]  # env.* keys (without num_workers) and their defaults
    build: Callable[[dict[str, Any]], Callable[[], Any]]  # params -> picklable env factory
    max_steps_key: str | None = None  # the key holding the episode limit
    cheap: bool = False  # auto num_workers = 0
    preset_alias: str | None = None  # use the algorithm presets of this (JAX-native) env name
    obs_storage: str | None = None  # a dtype holding every observation exactly (integer counts): replay buffers use it


def _simple_spread(p: dict[str, Any]):
    from trustmarl.envs.host.pettingzoo_adapter import mpe2_simple_spread

    return mpe2_simple_spread(N=p["n_agents"], local_ratio=p["local_ratio"], max_cycles=p["max_cycles"])


def _sisl(fn_name: str):
    def build(p: dict[str, Any]):
        from trustmarl.envs.host import pettingzoo_adapter

        return getattr(pettingzoo_adapter, fn_name)(**p)

    return build


def _sisl_li2022(fn_name: str):
    def build(p: dict[str, Any]):
        from trustmarl.envs.host import sisl

        return getattr(sisl, fn_name)(**p)

    return build


def _pong(p: dict[str, Any]):
    from trustmarl.envs.host.atari import pong

    return pong(**p)


def _battle(p: dict[str, Any]):
    from trustmarl.envs.host.magent import battle

    return battle(**p)


def _mamujoco(task: str):
    def build(p: dict[str, Any]):
        from trustmarl.envs.host.mamujoco import mamujoco

        return mamujoco(task, **p)

    return build


_MULTIWALKER = dict(
    n_walkers=3, position_noise=1e-3, angle_noise=1e-3, forward_reward=1.0, terminate_reward=-100.0,
    fall_reward=-10.0, shared_reward=True, terminate_on_fall=True, remove_on_fall=True, terrain_length=200,
    max_cycles=500,
)
_PURSUIT = dict(
    x_size=16, y_size=16, max_cycles=500, shared_reward=True, n_evaders=30, n_pursuers=8, obs_range=7,
    n_catch=2, freeze_evaders=False, tag_reward=0.01, catch_reward=5.0, urgency_reward=-0.1, surround=True,
    constraint_window=1.0,
)
# Li et al. 2022 (MAMT): Discrete(16) incremental torques, 25-step episodes (trustmarl.envs.host.sisl)
_MULTIWALKER_LI2022 = dict(_MULTIWALKER, episode_limit=25, torque_step=0.2)
_PURSUIT_LI2022 = dict(_PURSUIT, urgency_reward=0.0, shared_reward=False, episode_limit=25)
#: MAgent2 battle: magent2 0.3.4's map size and default rewards; max_cycles 500 (magent2's default is 1000)
BATTLE_DEFAULTS = dict(map_size=45, max_cycles=500, step_reward=-0.005, dead_penalty=-0.1, attack_penalty=-0.1,
                       attack_opponent_reward=0.2)
_MAMUJOCO_OPTIONS = dict(agent_obsk=1, observation="local", max_episode_steps=1000)
#: registry name suffix -> ``MAMUJOCO_TASKS`` key (agents x actuators per agent)
MAMUJOCO_PRESETS = {
    "halfcheetah_2x3": "HalfCheetah-2x3",
    "halfcheetah_6x1": "HalfCheetah-6x1",
    "walker2d_2x3": "Walker2d-2x3",
    "ant_4x2": "Ant-4x2",
    "ant_2x4": "Ant-2x4",
    "hopper_3x1": "Hopper-3x1",
    "humanoid_17x1": "Humanoid-17x1",
    "many_segment_swimmer_10x2": "ManySegmentSwimmer-10x2",
}


def _presets() -> dict[str, HostEnvSpec]:
    specs = [
        HostEnvSpec(
            "pettingzoo/simple_spread",
            "host env: mpe2 simple_spread_v3 via PettingZoo (same inputs as mpe/simple_spread); "
            "needs trustmarl[pettingzoo]",
            dict(n_agents=3, local_ratio=0.5, max_cycles=25), _simple_spread, "max_cycles", cheap=True,
            preset_alias="mpe/simple_spread",
        ),
        HostEnvSpec(
            "sisl/multiwalker", "host env: PettingZoo SISL multiwalker_v9 (continuous); needs trustmarl[pettingzoo]",
            dict(_MULTIWALKER), _sisl("sisl_multiwalker"), "max_cycles",
        ),
        HostEnvSpec(
            "sisl/pursuit", "host env: PettingZoo SISL pursuit_v5 (discrete); needs trustmarl[pettingzoo]",
            dict(_PURSUIT), _sisl("sisl_pursuit"), "max_cycles", obs_storage="uint8",  # counts 0..30
        ),
        HostEnvSpec(
            "sisl/multiwalker_li2022",
            "host env: SISL multiwalker_v9 as in Li et al. 2022 (MAMT): Discrete(16) incremental torques, "
            "25-step episodes; needs trustmarl[pettingzoo]",
            dict(_MULTIWALKER_LI2022), _sisl_li2022("sisl_multiwalker_li2022"), "episode_limit",
        ),
        HostEnvSpec(
            "sisl/pursuit_li2022",
            "host env: SISL pursuit_v5 as in Li et al. 2022 (MAMT): no urgency penalty, per-pursuer rewards, "
            "25-step episodes; needs trustmarl[pettingzoo]",
            dict(_PURSUIT_LI2022), _sisl_li2022("sisl_pursuit_li2022"), "episode_limit", obs_storage="uint8",
        ),
        HostEnvSpec(
            "pettingzoo/pong",
            "host env: two-player Atari Pong (PettingZoo pong_v3; RAM observations / 255; zero-sum, Wen et al. 2021 "
            "Figure 6); needs trustmarl[atari]",
            {"obs_type": "ram", "frame_skip": 1, "full_action_space": True, "max_cycles": 100_000}, _pong, "max_cycles",
        ),
        HostEnvSpec(
            "magent2/battle",
            "host env: MAgent2 battle_v4, two armies of int(0.2 map_size)^2 agents less the border ones (12 at "
            "map_size 20, 64 at 40), one group; needs trustmarl[magent]",
            dict(BATTLE_DEFAULTS), _battle, "max_cycles",
        ),
    ]
    for suffix, task in MAMUJOCO_PRESETS.items():
        specs.append(HostEnvSpec(
            f"mamujoco/{suffix}", f"host env: Multi-Agent MuJoCo {task} (continuous); needs trustmarl[mujoco]",
            dict(_MAMUJOCO_OPTIONS), _mamujoco(task), "max_episode_steps",
        ))
    return {s.name: s for s in specs}


PRESETS: dict[str, HostEnvSpec] = _presets()


# ---- names -------------------------------------------------------------------------------------

def is_generic(name: str) -> bool:
    """``pettingzoo:module.path:attr``, or ``module.path:attr`` naming something other than a JAX-native env."""
    if name.startswith(GENERIC_PREFIX):
        return True
    from trustmarl.envs import registry as jax_registry

    return jax_registry.is_import_path(name) and not jax_registry.is_jax_env(name)


def generic_spec(name: str) -> str:
    """The ``module.path:attr`` part of a generic host env name."""
    return name[len(GENERIC_PREFIX):] if name.startswith(GENERIC_PREFIX) else name


def is_host_env(name: str) -> bool:
    """Whether ``name`` is a host env (a preset or ``pettingzoo:module.path:attr``)."""
    return name in PRESETS or is_generic(name)


def host_env_names() -> list[str]:
    """The preset names (``pettingzoo:module.path:attr`` is accepted besides them)."""
    return sorted(PRESETS)


def describe(name: str) -> str:
    if is_generic(name):
        return "host env: a PettingZoo Parallel API env factory by import path; needs trustmarl[pettingzoo]"
    return PRESETS[name].description


def env_defaults(name: str) -> dict[str, Any]:
    """The ``env.*`` keys of ``name`` and their defaults (a generic env accepts any further key)."""
    base = {} if is_generic(name) else dict(PRESETS[name].defaults)
    return {**base, "num_workers": AUTO_WORKERS}


def _split(name: str, params: dict[str, Any]) -> tuple[dict[str, Any], int]:
    params = dict(params)
    workers = int(params.pop("num_workers", AUTO_WORKERS))
    if not is_generic(name):
        params = {**PRESETS[name].defaults, **params}
    return params, workers


def preset_name(name: str) -> str:
    """The env name whose algorithm presets (``configs/<algo>/<env>.yaml``) apply to ``name``.

    ``pettingzoo/simple_spread`` uses those of ``mpe/simple_spread`` (the same task and inputs), so one
    config trains both the same way.
    """
    spec = PRESETS.get(name)
    return spec.preset_alias if spec is not None and spec.preset_alias else name


def make_factory(name: str, params: dict[str, Any]) -> Callable[[], Any]:
    """The picklable env factory of ``name`` with ``params`` (``num_workers`` is not passed on).

    Raises ``MissingExtraError`` (an ``ImportError``) when a needed package is missing and ``ValueError``
    or ``KeyError`` for bad options.
    """
    if not is_host_env(name):
        raise KeyError(f"{name!r} is not a host environment")
    kwargs, _ = _split(name, params)
    if is_generic(name):
        from trustmarl.envs.host.pettingzoo_adapter import load_pettingzoo

        spec = generic_spec(name)
        if spec.count(":") != 1 or not all(spec.split(":")):
            raise ValueError(f"expected pettingzoo:module.path:attr, got {name!r}")
        try:
            return load_pettingzoo(spec, **kwargs)
        except AttributeError as err:
            raise ValueError(f"cannot import {spec!r}: {err}") from None
    return PRESETS[name].build(kwargs)


def num_workers(name: str, params: dict[str, Any], num_copies: int) -> int:
    """Worker processes for ``num_copies`` copies (resolves ``-1`` = auto, see the module docstring)."""
    _, workers = _split(name, params)
    if workers >= 0:
        return min(workers, num_copies)
    if not is_generic(name) and PRESETS[name].cheap:
        return 0
    return min(num_copies, os.cpu_count() or 1)


def validate_params(name: str, params: dict[str, Any]) -> None:
    """Check ``num_workers``; unknown keys and types of presets are checked by the config layer."""
    w = params.get("num_workers", AUTO_WORKERS)
    if isinstance(w, bool) or not isinstance(w, int) or w < AUTO_WORKERS:
        raise ValueError(f"num_workers={w!r} must be an integer >= 0, or -1 for automatic")


# ---- the env description the algorithms need -----------------------------------------------------

def _host_env_info_class():
    """``HostEnvInfo``, defined on first use (its base class lives with JAX in :mod:`trustmarl.envs.base`)."""
    global _HOST_ENV_INFO
    if _HOST_ENV_INFO is None:
        from trustmarl.envs.base import AgentGroup, GroupedAgents

        @dataclasses.dataclass(frozen=True)
        class HostEnvInfo(GroupedAgents):
            """What an algorithm reads from its ``env``: groups, state width, agent count, episode limit."""

            name: str
            groups: tuple[AgentGroup, ...]
            state_dim: int
            max_episode_steps: int
            obs_storage: str | None = None  # a dtype holding every observation exactly (replay buffers use it)

        HostEnvInfo.__module__, HostEnvInfo.__qualname__ = __name__, "HostEnvInfo"  # picklable by name
        _HOST_ENV_INFO = HostEnvInfo
    return _HOST_ENV_INFO


_HOST_ENV_INFO = None


def __getattr__(name: str):
    if name == "HostEnvInfo":
        return _host_env_info_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _max_episode_steps(name: str, params: dict[str, Any], env: Any) -> int:
    kwargs, _ = _split(name, params)
    if not is_generic(name):
        return int(kwargs[PRESETS[name].max_steps_key])
    for key in ("max_cycles", "max_episode_steps", "max_steps"):
        if isinstance(kwargs.get(key), int):
            return kwargs[key]
    for obj in (env, getattr(env, "unwrapped", None)):
        for attr in ("max_cycles", "max_episode_steps", "max_steps"):
            v = getattr(obj, attr, None)
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                return v
    return DEFAULT_MAX_EPISODE_STEPS


def probe(name: str, params: dict[str, Any]):
    """Build one copy in this process to read its spaces (then close it)."""
    from trustmarl.envs.host.pettingzoo_adapter import PettingZooAdapter

    env = make_factory(name, params)()
    try:
        adapter = env if isinstance(env, PettingZooAdapter) else PettingZooAdapter(env)
        storage = PRESETS[name].obs_storage if name in PRESETS else None
        return _host_env_info_class()(name, tuple(adapter.groups), int(adapter.state_dim), _max_episode_steps(name, params, env),
                                      storage)
    finally:
        close = getattr(env, "close", None)
        if callable(close):
            close()


def make_vec_env(name: str, params: dict[str, Any], num_copies: int, seed: int, num_workers_override: int | None = None):
    """A :class:`HostVecEnv` with ``num_copies`` copies of ``name`` (episode seeds derived from ``seed``)."""
    from trustmarl.envs.host.vector import HostVecEnv

    factory = make_factory(name, params)
    workers = num_workers(name, params, num_copies) if num_workers_override is None else num_workers_override
    return HostVecEnv([factory] * num_copies, num_workers=workers, seed=seed)
