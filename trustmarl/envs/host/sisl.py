"""PettingZoo SISL environments as Li et al. (2022) trained on them (MAMT's Multi-Walker and Pursuit).

The authors' code (MAAC-style, discrete actors) runs the PettingZoo SISL environments of early 2021
through two small wrappers and cuts every episode after 25 steps. Here:

- :class:`DiscreteMultiWalker` -- Multi-Walker with ``Discrete(16)`` incremental torques. Action
  ``k`` is read as 4 bits, most significant first, one per torque (hip 1, knee 1, hip 2, knee 2);
  bit ``b`` adds ``(2b - 1) * torque_step`` (``torque_step = 0.2``) to that torque of the previous
  step, and the result is clipped to ``[-1, 1]``. The previous torques start at 0 at **every** reset
  (also the automatic reset after an episode ends); the authors' wrapper never resets them, so each
  episode started from the last torques of the episode before.
- :class:`TimeLimit` -- ends an episode after ``episode_limit`` steps as a *truncation* (a time limit:
  the last state is bootstrapped from), unless the environment terminated at that step. The
  environments' own ``max_cycles`` (500) stays as it is, so PettingZoo 1.27's multiwalker, which reports
  ``max_cycles`` as a termination, never reaches it within 25 steps.

Named host environments (``trustmarl.envs.host.registry``):

- ``sisl/multiwalker_li2022``: ``multiwalker_v9`` (PettingZoo's defaults: 3 walkers, shared reward)
  behind :class:`DiscreteMultiWalker`, 25-step episodes. Keys: the ``parallel_env`` keywords,
  ``episode_limit`` (25) and ``torque_step`` (0.2).
- ``sisl/pursuit_li2022``: ``pursuit_v5`` with the reward of the PettingZoo version the authors used
  (``pursuit_v2``): no urgency penalty (``urgency_reward=0``, newer versions use -0.1) and per-pursuer
  rewards (``shared_reward=False``, the old ``local_ratio=1``), 25-step episodes. Keys: the
  ``parallel_env`` keywords and ``episode_limit`` (25).

Only these two files' behaviour is ours; the environments are PettingZoo's (``multiwalker_v9`` and
``pursuit_v5`` differ from the ``v5``/``v2`` of early 2021 in details the changelogs list).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trustmarl.envs.host.pettingzoo_adapter import PettingZooFactory, import_attr

N_TORQUES = 4
N_INCREMENTS = 2**N_TORQUES  # Discrete(16)
TORQUE_STEP = 0.2  # Li et al. 2022's code (delta_a)
EPISODE_LIMIT = 25  # Li et al. 2022's code (episode_length)


def increment_table(torque_step: float = TORQUE_STEP) -> np.ndarray:
    """``[16, 4]``: row ``k`` is ``(2 b - 1) * torque_step`` for the bits ``b`` of ``k``, most significant first."""
    bits = (np.arange(N_INCREMENTS)[:, None] >> np.arange(N_TORQUES - 1, -1, -1)[None, :]) & 1
    return (2.0 * bits - 1.0) * float(torque_step)


class ParallelWrapper:
    """A PettingZoo Parallel API env that forwards everything it does not override to ``env``."""

    def __init__(self, env: Any):
        self.env = env

    def __getattr__(self, name: str) -> Any:
        if name == "env":  # not set yet (e.g. while unpickling): do not recurse
            raise AttributeError(name)
        return getattr(self.env, name)

    @property
    def possible_agents(self) -> list:
        return self.env.possible_agents

    @property
    def agents(self) -> list:
        return self.env.agents

    def observation_space(self, agent: str) -> Any:
        return self.env.observation_space(agent)

    def action_space(self, agent: str) -> Any:
        return self.env.action_space(agent)

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        return self.env.reset(seed=seed, options=options)

    def step(self, actions: dict) -> tuple:
        return self.env.step(actions)

    def render(self) -> Any:
        return self.env.render()

    def close(self) -> None:
        self.env.close()


class DiscreteMultiWalker(ParallelWrapper):
    """Multi-Walker with ``Discrete(16)`` incremental torques (Li et al. 2022's discretisation; module docstring)."""

    def __init__(self, env: Any, torque_step: float = TORQUE_STEP):
        super().__init__(env)
        from gymnasium.spaces import Discrete

        if not torque_step > 0:
            raise ValueError(f"torque_step={torque_step!r} must be > 0")
        self.table = increment_table(torque_step)
        self._space = Discrete(N_INCREMENTS)
        self.torque = {a: np.zeros(N_TORQUES) for a in env.possible_agents}

    def action_space(self, agent: str) -> Any:
        return self._space

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        self.torque = {a: np.zeros(N_TORQUES) for a in self.env.possible_agents}  # every episode starts at rest
        return self.env.reset(seed=seed, options=options)

    def step(self, actions: dict) -> tuple:
        torques = {}
        for agent, k in actions.items():
            t = np.clip(self.torque[agent] + self.table[int(k)], -1.0, 1.0)
            self.torque[agent] = t
            torques[agent] = t.astype(np.float32)
        return self.env.step(torques)


class TimeLimit(ParallelWrapper):
    """Truncate every episode after ``episode_limit`` steps (module docstring)."""

    def __init__(self, env: Any, episode_limit: int = EPISODE_LIMIT):
        super().__init__(env)
        if isinstance(episode_limit, bool) or not isinstance(episode_limit, int) or episode_limit < 1:
            raise ValueError(f"episode_limit={episode_limit!r} must be an integer >= 1")
        self.episode_limit = episode_limit
        self.steps = 0
        self._ended = False

    @property
    def agents(self) -> list:
        return [] if self._ended else self.env.agents

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        self.steps, self._ended = 0, False
        return self.env.reset(seed=seed, options=options)

    def step(self, actions: dict) -> tuple:
        obs, rewards, terms, truncs, infos = self.env.step(actions)
        self.steps += 1
        if self.steps >= self.episode_limit:
            truncs = {a: not bool(terms.get(a, False)) for a in set(terms) | set(truncs)}
            self._ended = True
        return obs, rewards, terms, truncs, infos


# ---- builders (``module:attr`` targets of picklable factories) ----------------------------------

def make_multiwalker_li2022(episode_limit: int = EPISODE_LIMIT, torque_step: float = TORQUE_STEP,
                            **kwargs: Any) -> TimeLimit:
    """``multiwalker_v9.parallel_env(**kwargs)`` with Discrete(16) incremental torques and a time limit."""
    env = import_attr("pettingzoo.sisl.multiwalker_v9:parallel_env")(**kwargs)
    return TimeLimit(DiscreteMultiWalker(env, torque_step), episode_limit)


def make_pursuit_li2022(episode_limit: int = EPISODE_LIMIT, **kwargs: Any) -> TimeLimit:
    """``pursuit_v5.parallel_env(**kwargs)`` with a time limit."""
    return TimeLimit(import_attr("pettingzoo.sisl.pursuit_v5:parallel_env")(**kwargs), episode_limit)


def _factory(builder: str, check: str, kwargs: dict) -> PettingZooFactory:
    import_attr(check)  # a missing PettingZoo / Box2D / pymunk fails here, naming the extra
    if "episode_limit" in kwargs:
        TimeLimit(None, kwargs["episode_limit"])  # validate now, not in a worker
    if "torque_step" in kwargs and not kwargs["torque_step"] > 0:
        raise ValueError(f"torque_step={kwargs['torque_step']!r} must be > 0")
    return PettingZooFactory(f"trustmarl.envs.host.sisl:{builder}", tuple(sorted(kwargs.items())))


def sisl_multiwalker_li2022(**kwargs: Any) -> PettingZooFactory:
    """Factory of ``sisl/multiwalker_li2022`` (keyword arguments: see :func:`make_multiwalker_li2022`)."""
    return _factory("make_multiwalker_li2022", "pettingzoo.sisl.multiwalker_v9:parallel_env", kwargs)


def sisl_pursuit_li2022(**kwargs: Any) -> PettingZooFactory:
    """Factory of ``sisl/pursuit_li2022`` (keyword arguments: see :func:`make_pursuit_li2022`)."""
    return _factory("make_pursuit_li2022", "pettingzoo.sisl.pursuit_v5:parallel_env", kwargs)
