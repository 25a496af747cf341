"""Training on host (Python) environments with the same algorithm objects as JAX-native training.

:class:`HostTrainer` drives a :class:`~trustmarl.envs.host.HostVecEnv` from Python through the
family interface of :class:`~trustmarl.algos.base.Algorithm`, exactly as the jitted JAX-native loop
does: per step ``act`` -> ``vec_env.step`` -> ``transition`` (and the shared episode bookkeeping);
after ``rollout_len`` steps the time-major trajectory ``[T, E, ...]`` goes to ``learn``. It knows
no algorithm family: on-policy algorithms learn from the trajectory, off-policy ones insert it into
their replay buffer.

**Cost per env step**: one jitted call (``transition`` of the previous step fused with ``act`` on
the new observation), one transfer of the new observation to JAX and one of the actions back. The
policy view (parameters, normalisers) is taken once per update; transitions stay JAX arrays until
the update stacks them.

**Seeds**: ``num_seeds`` learners are ``vmap``-ed exactly as in the JAX-native runner, on
``num_seeds * num_envs`` env copies: copies ``[s * num_envs, (s + 1) * num_envs)`` belong to seed
``s``. The training state therefore has the same ``[num_seeds]`` leading axis, checkpoint layout and
metrics as a JAX-native run.

**Environment state** lives in the worker processes, not in the training state (``env_state`` is
``None``). ``state.last`` and ``state.episodes`` are kept up to date, but a restored checkpoint
continues with fresh episodes (:meth:`HostTrainer.reset_envs`): resuming a host run is *not*
bitwise-equal to an uninterrupted run, unlike a JAX-native one.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from trustmarl.algos.base import (SEED_AXIS, episode_metrics, init_episode_stats, step_keys, track_episodes,
                                  zero_episode_sums)
from trustmarl.envs.base import TimeStep


def env_seed(seed: int, update: int) -> int:
    """The HostVecEnv seed used when (re)starting the envs at ``update`` (``seed`` itself at 0)."""
    if update == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(update)]).generate_state(1, np.uint32)[0])


def placeholder_timestep(env: Any, batch: tuple[int, ...]) -> TimeStep:
    """A zero ``TimeStep`` with leading ``batch`` axes for an env description (groups, state_dim)."""
    obs = tuple(np.zeros(batch + (g.n, g.obs_dim), np.float32) for g in env.groups)
    avail = tuple(np.ones(batch + (g.n, g.avail_dim), bool) for g in env.groups)
    state = np.zeros(batch + (env.state_dim,), np.float32)
    flag = np.zeros(batch, bool)
    return TimeStep(
        obs=obs, avail=avail, state=state, reward=np.zeros(batch + (env.n_agents,), np.float32),
        terminated=flag, truncated=flag, active=np.ones(batch + (env.n_agents,), bool),
        final_obs=obs, final_state=state, final_avail=avail,
        info={k: np.zeros(batch, np.float32) for k in getattr(env, "info_keys", ())},  # env outcomes (fixed agents)
    )


def state_template(algo, num_seeds: int):
    """Shapes and dtypes of a host training state with a ``[num_seeds]`` axis (to load checkpoints)."""
    last = placeholder_timestep(algo.env, (num_seeds, algo.num_envs))
    keys = jax.random.split(jax.random.PRNGKey(0), num_seeds)
    return jax.eval_shape(jax.vmap(lambda k, ts: algo.init_state(k, ts, None)), keys, last)


class HostTrainer:
    """Train ``algo`` on ``vec_env`` (``num_seeds * algo.num_envs`` copies); see the module docstring."""

    def __init__(self, algo, vec_env, num_seeds: int = 1):
        self.algo = algo
        self.vec_env = vec_env
        self.num_seeds = int(num_seeds)
        self.num_envs = int(algo.num_envs)
        self.rollout_len = int(algo.rollout_len)
        if vec_env.num_envs != self.num_seeds * self.num_envs:
            raise ValueError(
                f"vec_env has {vec_env.num_envs} copies; num_seeds * num_envs = {self.num_seeds * self.num_envs}"
            )
        layout = lambda groups: [(g.n, g.obs_dim, g.action_space) for g in groups]  # noqa: E731 (names may differ)
        if layout(vec_env.groups) != layout(algo.env.groups) or vec_env.state_dim != algo.env.state_dim:
            raise ValueError("vec_env's agent groups / state width differ from the algorithm's env")
        self._view = jax.jit(jax.vmap(algo.policy_view))
        self._act = jax.jit(jax.vmap(self._act_one))
        self._record_act = jax.jit(jax.vmap(self._record_act_one))
        self._finish = jax.jit(jax.vmap(self._finish_one, axis_name=SEED_AXIS))  # named: see uniform_over_seeds
        self._init = jax.jit(jax.vmap(self._init_one))

    # ---- per-seed pure functions (vmapped over seeds, jitted) ------------------------------------
    def _init_one(self, key: jax.Array, last: TimeStep):
        k_learner, _ = jax.random.split(key)  # as Algorithm.init (its second key resets JAX envs)
        return self.algo.init_state(k_learner, last, None)

    def _act_one(self, view, carry, last: TimeStep, key: jax.Array):
        # the key stream of Algorithm.rollout (its third key steps JAX envs): a deterministic env
        # trains bitwise-alike here and on its JAX-native version
        key, k_act, _ = step_keys(key)
        env_act, act_out, carry = self.algo.act(view, carry, last, k_act)
        return act_out, env_act, key, carry

    def _record_act_one(self, view, carry, last, ts, act_out, episodes, sums, key):
        """The transition ``last -> ts`` and its episode bookkeeping, then ``act`` on ``ts`` (one call per env step)."""
        transition = self.algo.transition(view, last, ts, act_out)
        episodes, sums, count = track_episodes(episodes, ts, *sums)
        act_next, env_act, key, carry = self._act_one(view, carry, ts, key)
        return transition, episodes, (sums, count), act_next, env_act, key, carry

    def _finish_one(self, state, view, transitions: list, last, ts, act_out, episodes, sums, key, carry):
        """Record the last transition, stack the trajectory ``[T, E, ...]`` and learn from it."""
        algo = self.algo
        transition = algo.transition(view, last, ts, act_out)
        episodes, sums, count = track_episodes(episodes, ts, *sums)
        traj = jax.tree.map(lambda *xs: jnp.stack(xs), *transitions, transition)
        state = state._replace(last=ts, episodes=episodes, key=key, carry=carry)
        metrics = episode_metrics(sums, count)
        state, learn_metrics = algo.learn(state, traj)
        metrics.update(learn_metrics)
        return algo.finish(state, metrics)

    # ---- host side -------------------------------------------------------------------------------
    def _split_seeds(self, ts: TimeStep) -> TimeStep:
        """``[S*E, ...]`` -> ``[S, E, ...]`` numpy views. They go to the jitted calls as they are: the
        call's own argument transfer is about half the cost of an explicit ``device_put`` of the tree."""
        s, e = self.num_seeds, self.num_envs
        return jax.tree.map(lambda x: x.reshape((s, e) + x.shape[1:]), ts)

    def _env_step(self, env_act: tuple) -> TimeStep:
        acts = jax.device_get(env_act)
        n = self.num_seeds * self.num_envs
        return self._split_seeds(self.vec_env.step(tuple(np.asarray(a).reshape((n,) + a.shape[2:]) for a in acts)))

    def reset_envs(self, state, seed: int | None = None):
        """Start fresh episodes in every copy; ``state.last``/``episodes``/``carry`` follow (used on resume)."""
        ts = jax.device_put(self._split_seeds(self.vec_env.reset(seed)))
        episodes = jax.vmap(lambda _: init_episode_stats(self.num_envs, self.algo.n_agents))(jnp.arange(self.num_seeds))
        carry = jax.tree.map(jnp.zeros_like, state.carry)  # recurrent actors start the episodes afresh
        return state._replace(last=ts, episodes=episodes, carry=carry)

    def init(self, keys: jax.Array, seed: int | None = None):
        """The learners of ``keys`` ``[num_seeds]`` on freshly reset envs (episode seeds from ``seed``), with
        the data the algorithm asks for before training (``pretrain_request``) collected first."""
        state = self._init(keys, self._split_seeds(self.vec_env.reset(seed)))
        if self.algo.pretrain_request() is None:
            return state
        seed = self.vec_env.seed if seed is None else int(seed)
        return self.reset_envs(self.pretrain(state, seed, count=True), seed)

    def pretrain(self, state, seed: int, count: bool):
        """The pre-training data (:meth:`trustmarl.algos.off_policy.engine.OffPolicy.pretrain_request`) played on
        the host envs: round ``r`` resets every copy with a seed drawn from ``(seed, r)`` and takes T steps of
        the engine's random actions; ``count``: its env steps are added to ``state.env_steps`` (not on resume,
        which regenerates the same data). The envs need a reset afterwards (:meth:`reset_envs`)."""
        algo = self.algo
        _, length = algo.pretrain_request()
        act = jax.jit(jax.vmap(lambda k, r, t, avail: algo.agents.env_actions(algo.pretrain_actions(k, r, t, avail)),
                               in_axes=(0, None, None, 0)))
        keys = state.extra["pretrain_key"]
        rounds = []
        for r in range(algo.pretrain_rounds()):
            ts = self._split_seeds(self.vec_env.reset(int(np.random.SeedSequence([int(seed), 7919, r]).generate_state(1, np.uint32)[0])))
            obs, acts, done = [], [], []
            for t in range(length):
                a = act(keys, r, t, ts.avail)
                obs.append(ts.obs)
                acts.append(a)
                ts = self._env_step(a)
                done.append(ts.terminated | ts.truncated)
            rounds.append(tuple(jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs], 1), *seq)
                                for seq in (obs, acts, done)))  # each [S, T, E, ...]
        obs, acts, done = jax.tree.map(lambda *xs: np.stack(xs, 1), *rounds)  # [S, R, T, E, ...]
        data = jax.jit(jax.vmap(algo.pack_pretrain))(obs, acts, done)
        return jax.jit(jax.vmap(lambda s, d: algo.with_pretrain(s, d, count)))(state, data)

    def update(self, state):
        """One iteration: ``rollout_len`` steps of every copy, then the algorithm's ``learn``."""
        view = self._view(state)
        last = state.last
        act_out, env_act, key, carry = self._act(view, state.carry, last, state.key)
        episodes = state.episodes
        sums = zero_episode_sums(last, self.algo.n_agents, (self.num_seeds,))
        transitions = []
        for t in range(self.rollout_len):
            ts = self._env_step(env_act)
            if t == self.rollout_len - 1:
                break
            transition, episodes, sums, act_next, env_act, key, carry = self._record_act(
                view, carry, last, ts, act_out, episodes, sums, key
            )
            transitions.append(transition)
            last, act_out = ts, act_next
        return self._finish(state, view, transitions, last, ts, act_out, episodes, sums, key, carry)

    def run(self, state, n: int):
        """``n`` updates; metrics with a leading ``[num_seeds, n]`` shape (as a JAX-native chunk)."""
        all_metrics = []
        for _ in range(n):
            state, metrics = self.update(state)
            all_metrics.append(metrics)
        return state, jax.tree.map(lambda *xs: jnp.stack(xs, axis=1), *all_metrics)

    def close(self) -> None:
        self.vec_env.close()
