"""Training and evaluation on host (Python) environments with the same algorithm objects.

:class:`HostTrainer` drives a :class:`~trustmarl.envs.host.HostVecEnv` from Python and trains any
:class:`~trustmarl.algos.common.ActorCritic` algorithm exactly as its jitted JAX-native rollout does:
per step ``algo.act`` -> clipped ``algo.env_actions`` -> ``vec_env.step`` -> ``algo.record``; after
``rollout_len`` steps the time-major trajectory ``[T, E, ...]`` and the bootstrap value
(``ActorCritic.last_value``) go to ``algo.update_from_trajectory``.

**Cost per env step**: one jitted call (``record`` of the previous transition fused with ``act`` on the
new observation), one transfer of the new observation to JAX and one of the actions back. Only the
learner-side pieces the policy needs (parameters, value normaliser) are passed per step; the
transitions stay JAX arrays until the update stacks them.

**Seeds**: ``num_seeds`` learners are ``vmap``-ed exactly as in the JAX-native runner, on
``num_seeds * num_envs`` env copies: copies ``[s * num_envs, (s + 1) * num_envs)`` belong to seed
``s``. The training state therefore has the same ``[num_seeds]`` leading axis, checkpoint layout and
metrics as a JAX-native run.

**Environment state** lives in the worker processes, not in the ``TrainState`` (``env_state`` is
``None``). ``state.last`` and ``state.ep_return`` are kept up to date, but a restored checkpoint
continues with fresh episodes (:meth:`HostTrainer.reset_envs`): resuming a host run is *not*
bitwise-equal to an uninterrupted run, unlike a JAX-native one.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from trustmarl.algos.common import TrainState
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
        final_obs=obs, final_state=state,
    )


def state_template(algo, num_seeds: int) -> TrainState:
    """Shapes and dtypes of a host ``TrainState`` with a ``[num_seeds]`` axis (to load checkpoints)."""
    last = placeholder_timestep(algo.env, (num_seeds, algo.cfg.num_envs))
    keys = jax.random.split(jax.random.PRNGKey(0), num_seeds)
    return jax.eval_shape(jax.vmap(lambda k, ts: algo.init_learner(k, ts, None)), keys, last)


def _policy_state(params: tuple, hidden: tuple) -> TrainState:
    """A ``TrainState`` holding only what ``act``/``record`` read: parameters, the value normaliser and
    (recurrent actors) the actor hidden state."""
    actor_params, critic_params, value_norm = params
    return TrainState(
        actor_params=actor_params, critic_params=critic_params, actor_opt=(), critic_opt=(),
        value_norm=value_norm, env_state=None, last=None, ep_return=None, key=None, update=None, env_steps=None,
        actor_hidden=hidden,
    )


class HostTrainer:
    """Train ``algo`` on ``vec_env`` (``num_seeds * algo.cfg.num_envs`` copies); see the module docstring."""

    def __init__(self, algo, vec_env, num_seeds: int = 1):
        self.algo = algo
        self.vec_env = vec_env
        self.num_seeds = int(num_seeds)
        self.num_envs = int(algo.cfg.num_envs)
        self.rollout_len = int(algo.cfg.rollout_len)
        if vec_env.num_envs != self.num_seeds * self.num_envs:
            raise ValueError(
                f"vec_env has {vec_env.num_envs} copies; num_seeds * num_envs = {self.num_seeds * self.num_envs}"
            )
        layout = lambda groups: [(g.n, g.obs_dim, g.action_space) for g in groups]  # noqa: E731 (names may differ)
        if layout(vec_env.groups) != layout(algo.env.groups) or vec_env.state_dim != algo.env.state_dim:
            raise ValueError("vec_env's agent groups / state width differ from the algorithm's env")
        self._act = jax.jit(jax.vmap(self._act_one))
        self._record_act = jax.jit(jax.vmap(self._record_act_one))
        self._finish = jax.jit(jax.vmap(self._finish_one))
        self._init = jax.jit(jax.vmap(self._init_one))

    # ---- per-seed pure functions (vmapped over seeds, jitted) ------------------------------------
    def _init_one(self, key: jax.Array, last: TimeStep) -> TrainState:
        k_learner, _ = jax.random.split(key)  # as ActorCritic.init (its second key resets JAX envs)
        return self.algo.init_learner(k_learner, last, None)

    def _act_one(self, params: tuple, hidden: tuple, last: TimeStep, key: jax.Array):
        # the key stream of ActorCritic.rollout (its third key steps JAX envs): a deterministic env
        # trains bitwise-alike here and on its JAX-native version
        key, k_act, _ = jax.random.split(key, 3)
        view = _policy_state(params, hidden)
        act_out = self.algo.act(view, last, k_act)
        hidden = self.algo.carry_hidden(view, act_out).actor_hidden  # recurrent actors: advance; else ()
        return act_out, self.algo.env_actions(act_out[0]), key, hidden

    def _record_act_one(self, params, hidden, last, ts, act_out, ep_return, sums, key):
        """``record`` the transition ``last -> ts``, then ``act`` on ``ts`` (one call per env step)."""
        view = _policy_state(params, hidden)
        transition, ep_return, finished, count = self.algo.record(view, last, ts, act_out, ep_return)
        act_next, env_act, key, hidden = self._act_one(params, hidden, ts, key)
        return transition, ep_return, (jax.tree.map(jnp.add, sums[0], finished), sums[1] + count), act_next, env_act, key, hidden

    def _finish_one(self, state: TrainState, transitions: list, last, ts, act_out, ep_return, sums, key, hidden):
        """Record the last transition, stack the trajectory ``[T, E, ...]`` and learn from it."""
        algo = self.algo
        transition, ep_return, finished, count = algo.record(state, last, ts, act_out, ep_return)
        traj = jax.tree.map(lambda *xs: jnp.stack(xs), *transitions, transition)
        state = state._replace(last=ts, ep_return=ep_return, key=key, actor_hidden=hidden)
        metrics = algo.episode_metrics(jax.tree.map(jnp.add, sums[0], finished), sums[1] + count)
        return algo.update_from_trajectory(state, traj, algo.last_value(state), metrics)

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

    def reset_envs(self, state: TrainState, seed: int | None = None) -> TrainState:
        """Start fresh episodes in every copy; ``state.last``/``ep_return`` follow (used on resume)."""
        ts = jax.device_put(self._split_seeds(self.vec_env.reset(seed)))
        hidden = jax.tree.map(jnp.zeros_like, state.actor_hidden)  # recurrent actors start the episodes afresh
        return state._replace(last=ts, ep_return=jnp.zeros_like(state.ep_return), actor_hidden=hidden)

    def init(self, keys: jax.Array, seed: int | None = None) -> TrainState:
        """The learners of ``keys`` ``[num_seeds]`` on freshly reset envs (episode seeds from ``seed``)."""
        return self._init(keys, self._split_seeds(self.vec_env.reset(seed)))

    def update(self, state: TrainState) -> tuple[TrainState, dict]:
        """One iteration: ``rollout_len`` steps of every copy, then the algorithm's update."""
        s = self.num_seeds
        params = (state.actor_params, state.critic_params, state.value_norm)
        last = state.last
        act_out, env_act, key, hidden = self._act(params, state.actor_hidden, last, state.key)
        ep_return = state.ep_return
        sums = ({k: jnp.zeros((s,), jnp.float32) for k in self.algo.episode_metric_names(last)}, jnp.zeros((s,), jnp.int32))
        transitions = []
        for t in range(self.rollout_len):
            ts = self._env_step(env_act)
            if t == self.rollout_len - 1:
                break
            transition, ep_return, sums, act_next, env_act, key, hidden = self._record_act(
                params, hidden, last, ts, act_out, ep_return, sums, key
            )
            transitions.append(transition)
            last, act_out = ts, act_next
        return self._finish(state, transitions, last, ts, act_out, ep_return, sums, key, hidden)

    def run(self, state: TrainState, n: int) -> tuple[TrainState, dict]:
        """``n`` updates; metrics with a leading ``[num_seeds, n]`` shape (as a JAX-native chunk)."""
        all_metrics = []
        for _ in range(n):
            state, metrics = self.update(state)
            all_metrics.append(metrics)
        return state, jax.tree.map(lambda *xs: jnp.stack(xs, axis=1), *all_metrics)

    def close(self) -> None:
        self.vec_env.close()


def evaluate_host(
    algo, vec_env, actor_params: tuple, num_seeds: int, key: jax.Array, deterministic: bool = True,
    max_steps: int | None = None,
) -> np.ndarray:
    """Mean team return per seed ``[num_seeds]`` of one fresh episode in every copy of ``vec_env``.

    ``vec_env`` has ``num_seeds * episodes`` copies (seed ``s`` uses copies ``[s*episodes, (s+1)*episodes)``)
    and ``actor_params`` a leading ``[num_seeds]`` axis. Each copy runs until its first episode ends or
    ``max_steps`` (default ``algo.env.max_episode_steps``) steps have passed; an episode cut there counts
    with its return so far. Actions are the policy's mode (``deterministic``) or samples from ``key``.
    """
    n = vec_env.num_envs
    episodes = n // num_seeds
    max_steps = int(max_steps or algo.env.max_episode_steps)

    act = jax.jit(jax.vmap(lambda *a: algo.eval_actions(*a, deterministic)))
    split = lambda x: x.reshape((num_seeds, episodes) + x.shape[1:])  # noqa: E731
    hidden = algo.init_hidden((num_seeds, episodes)) if getattr(algo, "recurrent", False) else ()
    ts = vec_env.reset()
    ret = np.zeros(n, np.float64)
    running = np.ones(n, bool)
    for t in range(max_steps):
        keys = jax.random.split(jax.random.fold_in(key, t), num_seeds)
        done = split(ts.terminated | ts.truncated)
        acts, hidden = act(actor_params, hidden, jax.tree.map(split, ts.obs), jax.tree.map(split, ts.avail), done, keys)
        acts = jax.device_get(acts)
        ts = vec_env.step(tuple(np.asarray(a).reshape((n,) + a.shape[2:]) for a in acts))
        ret += running * ts.reward.mean(-1)
        running &= ~(ts.terminated | ts.truncated)
        if not running.any():
            break
    return ret.reshape(num_seeds, episodes).mean(axis=1)
