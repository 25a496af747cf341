"""Multi-Agent MuJoCo (Gymnasium-Robotics ``mamujoco_v1``) behind trustmarl's contract.

``mamujoco(task, ...)`` (or one of the named factories) returns a picklable :class:`MaMuJoCoFactory`;
calling it builds a ``gymnasium_robotics.mamujoco_v1`` Parallel API env, which
:class:`~trustmarl.envs.host.vector.HostVecEnv` wraps with the PettingZoo adapter.

Tasks of Kuba et al. 2022, Section 4.1 (Figure 3) provided here, as ``MAMUJOCO_TASKS`` keys:
``HalfCheetah-2x3``, ``HalfCheetah-6x1``, ``Walker2d-2x3``, ``Ant-4x2``, ``Hopper-3x1``,
``Humanoid-17x1`` and ``ManySegmentSwimmer-10x2`` (a 20-segment swimmer, 2 rotors per agent), and
``Ant-2x4`` (two agents of four joints: the Ant of Wen et al. 2021's code, beside the 4x2 split). Any other
``(scenario, agent_conf)`` pair that Gymnasium-Robotics knows works through :func:`mamujoco`.

**Humanoid 17x1.** Gymnasium-Robotics only ships the ``"9|8"`` (upper/lower body) partition. We build a
custom ``agent_factorization`` from its nodes with one actuator per agent, ordered by actuator index, so
``agent_i`` drives actuator ``i`` (abdomen_y, abdomen_z, abdomen_x, right_hip_x, ..., left_elbow); the
graph edges and global (torso) nodes are Gymnasium-Robotics' own.

**Observations** (option ``observation``):

- ``"local"`` (default): Gymnasium-Robotics' factored observation of the agent's own joints and of
  joints up to ``agent_obsk`` hops away. ``agent_obsk`` defaults to Gymnasium-Robotics' default, 1.
  Agents' observation widths can differ, so one task can give several agent groups.
- ``"full"``: every agent observes the full single-agent MuJoCo observation (``env.state()``) followed by
  a one-hot agent id: the setting the HATRPO/HAPPO paper's code actually used (Kuba et al. 2022, Section 4.1: its
  ``agent_obsk`` was parsed but unused). That code also standardised each observation vector over its own
  elements; we do not (use the trainer's observation normaliser instead).

**Global state** (critic input): always the full single-agent observation (``env.state()``), as in the
paper's code. **Reward**: the single-agent task reward, given to every agent. **Episode limit**:
``max_episode_steps`` (default 1000, as in the paper). Note: Gymnasium's ``*-v5`` MuJoCo tasks and
``mujoco`` 3+/4 differ from the paper's ``*-v2``/MuJoCo 2.0, so compare methods, not absolute returns.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import tempfile
import warnings
from typing import Any

import numpy as np

from trustmarl.envs.host import MissingExtraError

#: task name -> (Gymnasium-Robotics scenario, agent_conf)
MAMUJOCO_TASKS: dict[str, tuple[str, str]] = {
    "HalfCheetah-2x3": ("HalfCheetah", "2x3"),
    "HalfCheetah-6x1": ("HalfCheetah", "6x1"),
    "Walker2d-2x3": ("Walker2d", "2x3"),
    "Ant-4x2": ("Ant", "4x2"),
    "Ant-2x4": ("Ant", "2x4"),  # Wen et al. 2021's Ant (their code's agent_conf; the text says "4-agent")
    "Hopper-3x1": ("Hopper", "3x1"),
    "Humanoid-17x1": ("Humanoid", "17x1"),
    "ManySegmentSwimmer-10x2": ("ManySegmentSwimmer", "10x2"),
}

_EXTRA_MSG = "Multi-Agent MuJoCo needs gymnasium-robotics and mujoco: pip install 'trustmarl[mujoco]'"


_log = logging.getLogger(__name__)
_SEEN: set[str] = set()


def _debug_once(message: str) -> None:
    """Third-party notices (Gymnasium-Robotics' import-time notice, MuJoCo compiler deprecations) go to the
    debug log once per process instead of the terminal, so that a run's output and its errors stay readable
    (``logging.basicConfig(level=logging.DEBUG)`` shows them)."""
    message = " ".join(str(message).split())
    if message and message not in _SEEN:
        _SEEN.add(message)
        _log.debug("%s", message)


def _require() -> Any:
    """Import ``gymnasium_robotics.mamujoco_v1`` (quietly) or raise :class:`MissingExtraError`."""
    try:
        with contextlib.redirect_stderr(io.StringIO()) as notices, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import mujoco
            from gymnasium_robotics import mamujoco_v1
    except ImportError as err:
        raise MissingExtraError(f"{_EXTRA_MSG} ({err})") from err
    for line in notices.getvalue().splitlines():
        _debug_once(line)
    for w in caught:
        _debug_once(f"{w.category.__name__}: {w.message}")
    mujoco.set_mju_user_warning(_debug_once)  # compiler notices printed by MuJoCo's C code
    return mamujoco_v1


def one_actuator_per_agent(scenario: str, base_partition: str) -> dict[str, Any]:
    """An ``agent_factorization`` with one agent per actuator, built from a Gymnasium-Robotics partition.

    The nodes of ``base_partition`` (e.g. Humanoid's ``"9|8"``) are regrouped into single-node parts
    ordered by actuator index; edges and global nodes are kept.
    """
    _require()
    from gymnasium_robotics.envs.multiagent_mujoco.obsk import get_parts_and_edges

    parts, edges, global_nodes = get_parts_and_edges(scenario, base_partition)
    nodes = sorted((node for part in parts for node in part), key=lambda node: node.act_ids)
    return {"partition": [(node,) for node in nodes], "edges": edges, "globals": global_nodes}


def _many_segment_swimmer(agent_conf: str, max_episode_steps: int, **kwargs: Any) -> Any:
    """The single-agent many-segment swimmer, with its generated XML in a private temporary file.

    (Gymnasium-Robotics writes the XML into its own package folder, which races between processes.)
    """
    import gymnasium
    from gymnasium_robotics.envs.multiagent_mujoco import many_segment_swimmer

    n_agents, per_agent = (int(x) for x in agent_conf.split("x"))
    fd, path = tempfile.mkstemp(suffix=".xml", prefix="trustmarl_swimmer_")
    os.close(fd)
    try:
        many_segment_swimmer.gen_asset(n_segs=n_agents * per_agent, asset_path=path)
        return gymnasium.make("Swimmer-v5", xml_file=path, max_episode_steps=max_episode_steps, **kwargs)
    finally:
        os.remove(path)


class FullObservation:
    """Parallel-API wrapper: every agent observes ``env.state()`` plus a one-hot agent id."""

    def __init__(self, env: Any, agent_id: bool = True):
        import gymnasium

        self.env = env
        self.possible_agents = list(env.possible_agents)
        self.agent_id = agent_id
        self.metadata = getattr(env, "metadata", {})
        self._state_dim = int(np.asarray(env.single_agent_env.observation_space.shape).prod())
        width = self._state_dim + (len(self.possible_agents) if agent_id else 0)
        self._space = gymnasium.spaces.Box(-np.inf, np.inf, (width,), np.float64)
        self.state_space = gymnasium.spaces.Box(-np.inf, np.inf, (self._state_dim,), np.float64)

    @property
    def agents(self) -> list[str]:
        return self.env.agents

    def observation_space(self, agent: str) -> Any:
        return self._space

    def action_space(self, agent: str) -> Any:
        return self.env.action_space(agent)

    def state(self) -> np.ndarray:
        return self.env.state()

    def _obs(self) -> dict[str, np.ndarray]:
        state = np.asarray(self.env.state(), dtype=np.float64)
        out = {}
        for i, agent in enumerate(self.possible_agents):
            onehot = np.eye(len(self.possible_agents))[i] if self.agent_id else np.zeros(0)
            out[agent] = np.concatenate([state, onehot])
        return out

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        _, infos = self.env.reset(seed=seed, options=options)
        return self._obs(), infos

    def step(self, actions: dict) -> tuple:
        _, rewards, terms, truncs, infos = self.env.step(actions)
        return self._obs(), rewards, terms, truncs, infos

    def render(self) -> Any:
        return self.env.render()

    def close(self) -> None:
        self.env.close()


@dataclasses.dataclass(frozen=True)
class MaMuJoCoFactory:
    """Picklable factory of one MaMuJoCo task (see the module docstring for the options)."""

    scenario: str
    agent_conf: str
    agent_obsk: int = 1
    observation: str = "local"  # "local" (factored, agent_obsk) or "full" (paper setting)
    max_episode_steps: int = 1000
    gym_kwargs: tuple = ()

    def __post_init__(self) -> None:
        if self.observation not in ("local", "full"):
            raise ValueError(f"observation must be 'local' or 'full', got {self.observation!r}")
        if not isinstance(self.agent_obsk, int) or self.agent_obsk < 0:
            raise ValueError(f"agent_obsk must be an integer >= 0, got {self.agent_obsk!r}")

    def rendering(self) -> "MaMuJoCoFactory":
        """The same task built with ``render_mode="rgb_array"`` (for ``trustmarl eval --render``)."""
        kwargs = dict(self.gym_kwargs, render_mode="rgb_array")
        return dataclasses.replace(self, gym_kwargs=tuple(sorted(kwargs.items())))

    def __call__(self) -> Any:
        mamujoco_v1 = _require()
        kwargs = dict(self.gym_kwargs)
        extra: dict[str, Any] = {}
        if self.scenario in ("Humanoid", "HumanoidStandup") and self.agent_conf == "17x1":
            extra["agent_factorization"] = one_actuator_per_agent(self.scenario, "9|8")
        if self.scenario == "ManySegmentSwimmer":
            extra["gym_env"] = _many_segment_swimmer(self.agent_conf, self.max_episode_steps, **kwargs)
        else:
            kwargs["max_episode_steps"] = self.max_episode_steps
        env = mamujoco_v1.parallel_env(
            self.scenario, self.agent_conf, agent_obsk=self.agent_obsk, **extra,
            **({} if "gym_env" in extra else kwargs),
        )
        return FullObservation(env) if self.observation == "full" else env


def mamujoco(task: str, agent_conf: str | None = None, **options: Any) -> MaMuJoCoFactory:
    """Factory for ``task`` (a ``MAMUJOCO_TASKS`` key, or a scenario name with ``agent_conf``).

    ``options``: ``agent_obsk``, ``observation``, ``max_episode_steps``; anything else is passed to the
    single-agent Gymnasium MuJoCo env (``gym_kwargs``; arguments that change its observation space break
    the factorisation).
    """
    if agent_conf is None:
        if task not in MAMUJOCO_TASKS:
            raise KeyError(f"unknown MaMuJoCo task {task!r}; choose one of {', '.join(MAMUJOCO_TASKS)}")
        scenario, agent_conf = MAMUJOCO_TASKS[task]
    else:
        scenario = task
    known = {f.name for f in dataclasses.fields(MaMuJoCoFactory)} - {"scenario", "agent_conf", "gym_kwargs"}
    own = {k: v for k, v in options.items() if k in known}
    gym_kwargs = tuple(sorted((k, v) for k, v in options.items() if k not in known))
    _require()
    return MaMuJoCoFactory(scenario, agent_conf, gym_kwargs=gym_kwargs, **own)


def halfcheetah_2x3(**options: Any) -> MaMuJoCoFactory:
    return mamujoco("HalfCheetah-2x3", **options)


def halfcheetah_6x1(**options: Any) -> MaMuJoCoFactory:
    return mamujoco("HalfCheetah-6x1", **options)


def walker2d_2x3(**options: Any) -> MaMuJoCoFactory:
    return mamujoco("Walker2d-2x3", **options)


def ant_4x2(**options: Any) -> MaMuJoCoFactory:
    return mamujoco("Ant-4x2", **options)


def ant_2x4(**options: Any) -> MaMuJoCoFactory:
    return mamujoco("Ant-2x4", **options)


def hopper_3x1(**options: Any) -> MaMuJoCoFactory:
    return mamujoco("Hopper-3x1", **options)


def humanoid_17x1(**options: Any) -> MaMuJoCoFactory:
    return mamujoco("Humanoid-17x1", **options)


def many_segment_swimmer_10x2(**options: Any) -> MaMuJoCoFactory:
    return mamujoco("ManySegmentSwimmer-10x2", **options)
