"""One episode loop for evaluation and rendering, on JAX-native and host environments alike.

:func:`run_episodes` plays ``B`` fresh episodes per seed with each seed's policy and reports, per
seed, the means over those episodes of the team return (the mean of the agents' rewards summed over
the episode), the sum over agents, each agent's return, the episode length and every env outcome
(``TimeStep.info``, read at the step that ends the episode, e.g. SMAX's win rate). It drives a
*stepper*, which is the only part that differs between environment kinds:

- :class:`JaxStepper`: a JAX-native env, ``[S, B]`` copies vmapped (with ``auto_reset=False`` it
  keeps the episode's last state, which rendering needs);
- :class:`HostStepper`: a :class:`~trustmarl.envs.host.HostVecEnv` with ``S * B`` copies;
- :class:`RenderStepper`: one raw PettingZoo env built with ``render_mode="rgb_array"``.

Episodes run until they first end or ``max_steps`` steps have passed (an episode cut there counts with
its return so far and no outcome). Actions are the policy's mode (``deterministic``) or samples.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from trustmarl.envs.base import RenderError, TimeStep, strong_types


class JaxStepper:
    """``[S, B]`` copies of a JAX-native env, reset with keys from ``key``."""

    def __init__(self, env, num_seeds: int, episodes: int, key: jax.Array, auto_reset: bool = True):
        self.env, self.shape = env, (int(num_seeds), int(episodes))
        self._key = key
        self._reset, self._step = _stepper_fns(env, auto_reset)
        self._t = 0
        self.state = None

    def _keys(self, k: jax.Array) -> jax.Array:
        s, b = self.shape
        return jax.random.split(k, s * b).reshape((s, b) + k.shape)

    def reset(self) -> TimeStep:
        self.state, ts = self._reset(self._keys(jax.random.fold_in(self._key, 0)))
        return ts

    def step(self, actions: tuple) -> TimeStep:
        self._t += 1
        self.state, ts = self._step(self._keys(jax.random.fold_in(self._key, self._t)), self.state, actions)
        return ts

    def frame(self) -> np.ndarray:
        """The first copy rendered (``env.render(state)``)."""
        return np.asarray(self.env.render(jax.tree.map(lambda x: x[0, 0], self.state)))

    def close(self) -> None:
        pass


def _cached(obj, key: tuple, build: Callable[[], Any]) -> Any:
    """``build()`` once per object and ``key``, kept in the object's ``__dict__`` (frozen dataclasses
    too), so repeated evaluations of a run reuse one compiled program and it goes with the object."""
    cache = vars(obj).setdefault("_trustmarl_compiled", {})
    if key not in cache:
        cache[key] = build()
    return cache[key]


def _stepper_fns(env, auto_reset: bool):
    def build():
        step = env.step if auto_reset else (lambda k, s, a: strong_types(env._step(k, s, a)))
        return jax.jit(jax.vmap(jax.vmap(env.reset))), jax.jit(jax.vmap(jax.vmap(step)))

    return _cached(env, ("stepper", auto_reset), build)


class HostStepper:
    """A :class:`HostVecEnv` of ``S * B`` copies (seed ``s`` uses copies ``[s*B, (s+1)*B)``)."""

    def __init__(self, vec_env, num_seeds: int, seed: int | None = None):
        n = vec_env.num_envs
        if n % num_seeds:
            raise ValueError(f"vec_env has {n} copies, not a multiple of num_seeds={num_seeds}")
        self.vec, self.shape, self.seed = vec_env, (int(num_seeds), n // int(num_seeds)), seed

    def _split(self, ts: TimeStep) -> TimeStep:
        return jax.tree.map(lambda x: np.asarray(x).reshape(self.shape + np.shape(x)[1:]), ts)

    def reset(self) -> TimeStep:
        return self._split(self.vec.reset(self.seed))

    def step(self, actions: tuple) -> TimeStep:
        n = self.vec.num_envs
        acts = jax.device_get(actions)
        return self._split(self.vec.step(tuple(np.asarray(a).reshape((n,) + np.shape(a)[2:]) for a in acts)))

    def close(self) -> None:
        pass  # the caller owns the vec env


class RenderStepper:
    """One raw PettingZoo Parallel env (built with ``render_mode="rgb_array"``) as a ``[1, 1]`` stepper."""

    def __init__(self, env, seed: int = 0):
        from trustmarl.envs.host.pettingzoo_adapter import PettingZooAdapter

        self.env, self.adapter, self.seed, self.shape = env, PettingZooAdapter(env), seed, (1, 1)

    def _ts(self, step) -> TimeStep:
        one = lambda x: np.asarray(x)[None, None]  # noqa: E731
        return TimeStep(
            obs=tuple(map(one, step.obs)), avail=tuple(map(one, step.avail)), state=one(step.state),
            reward=one(step.reward), terminated=one(step.terminated), truncated=one(step.truncated),
            active=one(step.active), final_obs=tuple(map(one, step.obs)), final_state=one(step.state),
            final_avail=tuple(map(one, step.avail)),
        )

    def reset(self) -> TimeStep:
        return self._ts(self.adapter.reset(seed=self.seed))

    def step(self, actions: tuple) -> TimeStep:
        return self._ts(self.adapter.step([np.asarray(a)[0, 0] for a in jax.device_get(actions)]))

    def frame(self) -> np.ndarray:
        frame = self.env.render()
        if frame is None or np.ndim(frame) != 3:
            raise RenderError(f"{type(self.env).__name__}.render() returned {type(frame).__name__}, not an RGB array "
                              "(is render_mode='rgb_array' supported?)")
        return np.asarray(frame)

    def close(self) -> None:
        close = getattr(self.env, "close", None)
        if callable(close):
            close()


def run_episodes(algo, views, stepper, key: jax.Array, deterministic: bool = True, max_steps: int | None = None,
                 on_step: Callable[[int], Any] | None = None) -> dict[str, np.ndarray]:
    """Play one episode in each of the stepper's ``[S, B]`` copies with the seed-stacked policy ``views``.

    Returns per-seed means over the ``B`` episodes (float64 arrays ``[S]``, ``return_per_agent``
    ``[S, N]``): ``return`` (team), ``return_sum`` (over agents), ``return_per_agent``, ``length`` and
    one entry per env outcome. ``on_step(t)`` is called after the reset (``t = 0``) and after every
    step (rendering takes its frames there).
    """
    n_seeds, n_eps = stepper.shape
    max_steps = int(max_steps or algo.env.max_episode_steps)
    act = _cached(algo, ("act", deterministic), lambda: jax.jit(jax.vmap(
        lambda v, c, o, a, d, k: algo.eval_actions(v, c, o, a, d, k, deterministic))))
    ts = stepper.reset()
    if on_step is not None:
        on_step(0)
    carry = algo.init_carry((n_seeds, n_eps))
    team = np.zeros((n_seeds, n_eps))
    agents = np.zeros((n_seeds, n_eps, algo.n_agents))
    length = np.zeros((n_seeds, n_eps))
    outcomes = {k: np.zeros((n_seeds, n_eps)) for k in getattr(ts, "info", {}) or {}}
    running = np.ones((n_seeds, n_eps), bool)
    for t in range(max_steps):
        keys = jax.random.split(jax.random.fold_in(key, t), n_seeds)
        done = np.asarray(ts.terminated) | np.asarray(ts.truncated)
        actions, carry = act(views, carry, ts.obs, ts.avail, jnp.asarray(done), keys)
        ts = stepper.step(actions)
        if on_step is not None:
            on_step(t + 1)
        reward = np.asarray(ts.reward, np.float64)
        team += running * reward.mean(-1)
        agents += running[..., None] * reward
        length += running
        done = np.asarray(ts.terminated) | np.asarray(ts.truncated)
        for k in outcomes:
            outcomes[k] += (running & done) * np.asarray(ts.info[k], np.float64)
        running &= ~done
        if not running.any():
            break
    out = {"return": team.mean(1), "return_sum": agents.sum(-1).mean(1), "return_per_agent": agents.mean(1),
           "length": length.mean(1)}
    out.update({k: v.mean(1) for k, v in outcomes.items()})
    return out


def evaluate(algo, state, key: jax.Array, num_episodes: int, deterministic: bool = True, seeded: bool = False):
    """Mean team return of ``num_episodes`` fresh episodes of a JAX-native env for one (unbatched)
    ``state`` (``seeded``: ``state`` has a leading seed axis, and the result too)."""
    view = jax.vmap(algo.policy_view)(state) if seeded else jax.tree.map(lambda x: x[None], algo.policy_view(state))
    n_seeds = jax.tree.leaves(view)[0].shape[0]
    k_env, k_act = jax.random.split(key)
    res = run_episodes(algo, view, JaxStepper(algo.env, n_seeds, num_episodes, k_env), k_act, deterministic)
    return res["return"] if seeded else float(res["return"][0])
