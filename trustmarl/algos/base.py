"""The interface every trustmarl algorithm implements, and the training loop provided once.

Training is a pure function of (config, key): ``init(key)`` builds a state pytree, ``update(state)``
performs one iteration and returns the new state and a flat dict of metrics. Both are jit- and
vmap-compatible, so several seeds are one ``vmap`` and a chunk of updates is one ``lax.scan``.

An algorithm family implements six small functions (see :class:`Algorithm`); the loop that drives
them exists once for JAX-native environments (:meth:`Algorithm.update`: ``lax.scan`` over
``act -> env.step -> transition``, then ``learn``) and once for host environments
(:class:`trustmarl.rollout.host.HostTrainer`: the same calls from a Python loop). Both split the
keys with :func:`step_keys` and count episodes with :func:`track_episodes`, so a deterministic env
trains bitwise alike on both paths.

**The state** is the family's own ``NamedTuple`` with at least these fields, which the loops manage:

=============  ==================================================================================
``env_state``  JAX-native env states ``[E, ...]`` (``None`` on host envs: they live in workers)
``last``       the ``TimeStep`` ``[E, ...]`` the next action is taken on
``episodes``   :class:`EpisodeStats` of the unfinished episodes
``carry``      per-step acting state (recurrent hidden states, exploration noise); ``()`` if none
``key``        the PRNG key
``update``     updates done (int32)
``env_steps``  env steps of this seed (int32)
=============  ==================================================================================
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from trustmarl.algos.agents import AgentGroups
from trustmarl.envs.base import TimeStep

# Metric names every algorithm reports from ``update`` (scalars unless noted):
#   "env_steps"                  env steps of this seed after the update (int)
#   "episode_return"             mean team return of the episodes that ended during this update's
#                                rollout (NaN when none ended); the team return sums the mean of the
#                                agents' rewards over the episode
#   "episode_return_sum"         the same episodes' return summed over agents (general-sum games)
#   "episode_return_per_agent"   [n_agents] each agent's own return
#   "episode_length"             mean episode length; "episode_<key>" for every env outcome in TimeStep.info
#   "episodes"                   number of episodes that ended during the rollout
#   "diag/learning"              (optional) 0 for an update that did not learn (e.g. an off-policy warm-up):
#                                its NaN losses are no divergence
#   "loss/..."                   loss terms; "diag/..." diagnostics; per-agent diagnostics are arrays
#                                of shape [n_agents] under names ending in "_per_agent".
REQUIRED_METRICS = ("env_steps", "episode_return", "episode_return_sum", "episode_return_per_agent", "episodes")


class EpisodeStats(NamedTuple):
    """Running sums of the unfinished episodes, per env copy."""

    team: jax.Array  # [E] sum of the team reward (mean over agents) so far
    agents: jax.Array  # [E, N] each agent's reward summed so far
    length: jax.Array  # [E] int32 steps so far


def init_episode_stats(num_envs: int, n_agents: int) -> EpisodeStats:
    return EpisodeStats(jnp.zeros((num_envs,)), jnp.zeros((num_envs, n_agents)), jnp.zeros((num_envs,), jnp.int32))


def episode_metric_names(ts: TimeStep) -> list[str]:
    """The names :func:`track_episodes` sums: returns, length and ``episode_<key>`` per ``ts.info`` outcome."""
    return ["episode_return", "episode_return_sum", "episode_return_per_agent", "episode_length"] + [
        f"episode_{k}" for k in ts.info
    ]


def zero_episode_sums(ts: TimeStep, n_agents: int, batch: tuple[int, ...] = ()) -> tuple[dict, jax.Array]:
    """Empty ``(sums, count)`` for :func:`track_episodes` (``batch``: leading axes, e.g. seeds)."""
    sums = {k: jnp.zeros(batch + ((n_agents,) if k == "episode_return_per_agent" else ())) for k in episode_metric_names(ts)}
    return sums, jnp.zeros(batch, jnp.int32)


def track_episodes(stats: EpisodeStats, ts: TimeStep, sums: dict, count: jax.Array):
    """Add the rewards of step ``ts`` ``[E, ...]`` to the running episodes; the episodes that end here
    add their returns, length and ``ts.info`` outcomes to ``sums`` (and ``count``) and restart at 0."""
    done = ts.done
    team = stats.team + ts.reward.mean(-1)  # the team reward: mean of the agents' rewards
    agents = stats.agents + ts.reward
    length = stats.length + 1
    ended = {
        "episode_return": team,
        "episode_return_sum": agents.sum(-1),
        "episode_return_per_agent": agents,
        "episode_length": length.astype(jnp.float32),
        **{f"episode_{k}": v for k, v in ts.info.items()},
    }
    finished = {}
    for k, v in ended.items():
        d = done if v.ndim == 1 else done[:, None]
        finished[k] = jnp.sum(jnp.where(d, v, 0.0), axis=0)
    sums = jax.tree.map(jnp.add, sums, finished)
    stats = EpisodeStats(jnp.where(done, 0.0, team), jnp.where(done[:, None], 0.0, agents), jnp.where(done, 0, length))
    return stats, sums, count + jnp.sum(done)


def episode_metrics(sums: dict, count: jax.Array) -> dict:
    """Per-episode means of ``sums`` over the ``count`` episodes that ended (NaN if none did)."""
    means = {}
    for k, v in sums.items():
        c = count[..., None] if v.ndim > count.ndim else count
        means[k] = jnp.where(c > 0, v / jnp.maximum(c, 1), jnp.nan)
    return {**means, "episodes": count}


SEED_AXIS = "seed"  # the name both loops give their vmap over seeds (see :func:`uniform_over_seeds`)


def uniform_over_seeds(pred: jax.Array) -> jax.Array:
    """``pred`` as one unbatched value when it is the same for every seed (e.g. derived from update or step
    counts, which all seeds share), so a ``lax.cond`` on it stays a branch under the loops' ``vmap`` over
    seeds instead of becoming a ``select`` that computes both branches for every seed. Outside that vmap
    (an algorithm called directly or vmapped by a user) it returns ``pred`` unchanged."""
    try:
        return jax.lax.pmax(pred.astype(jnp.int32), SEED_AXIS).astype(pred.dtype)
    except NameError:  # no vmap named SEED_AXIS around this call
        return pred


# Env blocks (run key ``env_blocks``): one seed's ``num_envs`` env copies split into B blocks, each with its own
# rollout and minibatches; the blocks of one device are a ``vmap`` named ENV_BLOCK_AXIS, the devices a mesh axis
# named ENV_DEVICE_AXIS (``jax.shard_map``). Every reduction over env copies that learning depends on (gradients,
# value and advantage normalisation statistics, episode counts) goes through the helpers below, which are the
# identity when no block axis is bound (a run without env blocks computes exactly what it computed before).
ENV_DEVICE_AXIS = "envs"
ENV_BLOCK_AXIS = "env_block"
_BLOCK_AXES = (ENV_DEVICE_AXIS, ENV_BLOCK_AXIS)  # major to minor: block b of device d is global block d * (B/D) + b


def _bound_block_axes() -> tuple[str, ...]:
    try:  # JAX's axis environment (jax._src.core, JAX 0.5+): microseconds, where the fallback's NameErrors take ms
        from jax._src import core as _core

        env = _core.get_axis_env()
        return tuple(name for name in _BLOCK_AXES if env.axis_exists(name))
    except (ImportError, AttributeError):  # pragma: no cover - other JAX versions
        pass
    bound = []
    for name in _BLOCK_AXES:
        try:
            jax.lax.axis_index(name)
            bound.append(name)
        except NameError:
            pass
    return tuple(bound)


def env_blocked() -> bool:
    """Whether this code runs inside an env-block program (see ``env_blocks``)."""
    return bool(_bound_block_axes())


def block_sum(tree):
    """``tree`` summed over all env blocks (``psum`` over the bound block axes; identity outside them)."""
    axes = _bound_block_axes()
    return jax.lax.psum(tree, axes) if axes else tree


def block_mean(tree):
    """``tree`` averaged over all env blocks (equal-sized blocks: the mean over all env copies of per-block means)."""
    axes = _bound_block_axes()
    return jax.lax.pmean(tree, axes) if axes else tree


def _block_index():
    """``(index, count)``: this env block's global index (bound block axes major to minor) and the number of blocks;
    ``(None, 1)`` outside an env-block program."""
    index, count = None, 1
    for name in _bound_block_axes():
        i = jax.lax.axis_index(name)
        index, count = (i if index is None else index * jax.lax.axis_size(name) + i), count * jax.lax.axis_size(name)
    return index, count


def block_key(key: jax.Array) -> jax.Array:
    """``key`` folded with the global block index, so that blocks draw different actions and env noise from
    one shared state key; unchanged outside an env-block program."""
    index, _ = _block_index()
    return key if index is None else jax.random.fold_in(key, index)


def block_rows(key: jax.Array, shape: tuple[int, ...], draw) -> jax.Array:
    """``draw(key, shape)`` for the rows of a training batch ``[B / blocks, ...]`` that this env block holds (run key
    ``env_blocks``): the draw for the batch of all blocks ``[B, ...]`` (block ``b``'s rows at ``b * B / blocks``), sliced
    at this block's rows. Blocks draw different numbers from one shared key and together exactly what the program
    without blocks draws; ``draw(key, shape)`` itself outside an env-block program."""
    index, count = _block_index()
    if index is None:
        return draw(key, shape)
    whole = draw(key, (shape[0] * count,) + tuple(shape[1:]))
    return jax.lax.dynamic_slice_in_dim(whole, index * shape[0], shape[0], 0)


def block_categorical(key: jax.Array, logits: jax.Array) -> jax.Array:
    """``jax.random.categorical(key, logits)`` (int32) for the rows ``[B / blocks, ...]`` of a batch that this env block
    holds: the argmax of ``logits`` plus Gumbel noise drawn by :func:`block_rows` (jax.random.categorical's own draw,
    so bit for bit the same outside an env-block program)."""
    gumbel = block_rows(key, logits.shape, lambda k, shape: jax.random.gumbel(k, shape, logits.dtype))
    return jnp.argmax(gumbel + logits, axis=-1).astype(jnp.int32)


def block_metrics(metrics: dict) -> dict:
    """An update's metrics as one value for all blocks: minima / maxima (``*_min``, ``*_min_*``) over blocks, other float metrics
    averaged over blocks (episode metrics are already block totals: see :meth:`Algorithm.rollout`)."""
    axes = _bound_block_axes()
    if not axes:
        return metrics
    out = {}
    for k, v in metrics.items():
        if k.endswith("_min") or "_min_" in k:
            out[k] = jax.lax.pmin(v, axes)
        elif k.endswith("_max") or "_max_" in k:
            out[k] = jax.lax.pmax(v, axes)
        elif jnp.issubdtype(jnp.asarray(v).dtype, jnp.floating):
            out[k] = jax.lax.pmean(v, axes)
        else:
            out[k] = v
    return out


def step_keys(key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(key', k_act, k_env)``: the per-step split shared by the JAX-native and host loops."""
    key, k_act, k_env = jax.random.split(key, 3)
    return key, k_act, k_env


class Algorithm:
    """Base class of all algorithms: the family interface and the JAX-native loop.

    A family implements:

    - ``init_state(key, last, env_state) -> state``: networks, optimisers, buffers and counters for
      ``num_envs`` env copies whose current ``TimeStep`` is ``last`` (``env_state`` is ``None`` on host envs);
    - ``policy_view(state) -> view``: the small pytree acting and ``transition`` read (parameters,
      normalisers, counters); constant during one rollout;
    - ``act(view, carry, last, key) -> (env_actions, act_out, carry)``: the behaviour policy's actions
      for ``last`` ``[E, ...]`` (``env_actions`` clipped to the action boxes), what ``transition``
      needs of them (``act_out``), and the advanced per-step ``carry``;
    - ``transition(view, last, ts, act_out) -> pytree``: what to learn from after stepping ``last`` -> ``ts``;
    - ``learn(state, traj) -> (state, metrics)``: learn from a time-major trajectory ``[T, E, ...]``
      of transitions (``state.last`` is the final ``TimeStep``);
    - ``eval_actions(view, carry, obs, avail, done, key, deterministic) -> (env_actions, carry)``
      and ``init_carry(batch_shape)``: acting for evaluation and rendering.
    """

    name = "algorithm"
    # whether every reduction over env copies in ``update`` goes through the block helpers above, so that the
    # run key ``env_blocks`` may split the env copies into blocks (see :meth:`check_env_blocks`); each class
    # declares it itself (not inherited: a subclass may add reductions over env copies)
    ENV_BLOCKS = False
    # the metric the progress bar shows as ``ret`` (its mean over a chunk's updates; the last value is kept
    # while no episode ends); further fields come from :meth:`progress_postfix`
    PROGRESS_METRIC = "episode_return"

    def __init__(self, env, cfg, total_updates: int | None = None, share_params: bool = False, agent_id: bool = False):
        self.env = env
        self.cfg = cfg
        self.agents = AgentGroups(env, share_params, agent_id)
        self.groups = self.agents.groups
        self.kinds = self.agents.kinds
        self.dists = self.agents.dists  # per group: its action distribution object (trustmarl.distributions)
        self.n_agents = self.agents.n_agents
        self.num_envs = int(cfg.num_envs)
        self.rollout_len = int(cfg.rollout_len)
        self.steps_per_update = self.num_envs * self.rollout_len
        self.total_updates = max(1, int(total_updates or 1))

    # ---- the family interface --------------------------------------------------------------
    def init_state(self, key: jax.Array, last: TimeStep, env_state: Any = None):
        raise NotImplementedError

    def policy_view(self, state) -> Any:
        raise NotImplementedError

    def act(self, view, carry, last: TimeStep, key: jax.Array):
        raise NotImplementedError

    def transition(self, view, last: TimeStep, ts: TimeStep, act_out) -> Any:
        raise NotImplementedError

    def learn(self, state, traj):
        raise NotImplementedError

    def eval_actions(self, view, carry, obs: tuple, avail: tuple, done: jax.Array, key: jax.Array,
                     deterministic: bool = True) -> tuple[tuple, Any]:
        raise NotImplementedError

    def init_carry(self, batch_shape: tuple[int, ...]) -> Any:
        return ()

    def progress_postfix(self, row: dict) -> dict[str, str]:
        """The algorithm's own fields in the progress bar, from the last metrics row (default: none)."""
        return {}

    def check_env_blocks(self, blocks: int) -> None:
        """``ConfigError`` (one line) unless this algorithm can train with its env copies in ``blocks`` blocks."""
        from trustmarl.validation import ConfigError

        if not type(self).__dict__.get("ENV_BLOCKS", False):  # declared by each class: a subclass may add reductions
            raise ConfigError(f"env_blocks={blocks}: {self.name} does not split its env copies into blocks; use env_blocks=1")
        if self.num_envs % blocks:
            raise ConfigError(f"env_blocks={blocks} must divide algo.num_envs={self.num_envs}")

    def block_part(self, blocks: int):
        """The algorithm one of ``blocks`` env blocks runs: a copy with ``num_envs / blocks`` env copies that
        counts the env steps of all blocks (``steps_per_update`` unchanged)."""
        import copy

        part = copy.copy(self)
        part.num_envs = self.num_envs // blocks
        return part

    # ---- checkpoints: the policy apart from bulky data ----------------------------------------------
    def pretrain_request(self) -> tuple[int, int] | None:
        """``(K, T)``: K trajectories of T uniformly random env steps the algorithm wants before training, which
        both loops collect (see :class:`~trustmarl.algos.off_policy.engine.OffPolicy`); ``None``: none."""
        return None

    def split_bulk(self, state) -> tuple[Any, Any]:
        """``(core, bulk)``: the state without its bulky data and that data (``None``: nothing bulky). A
        checkpoint writes the bulk (a replay buffer) to a file of its own, cut by :meth:`trim_bulk`, and
        reads it only to resume training; evaluation, rendering and ``trustmarl.load_policy`` read the
        core alone. Works on seed-batched states and on their templates (``jax.ShapeDtypeStruct`` leaves)."""
        return state, None

    def trim_bulk(self, bulk) -> Any:
        """The part of a seed-batched ``bulk`` worth saving (numpy leaves; default: all of it)."""
        return bulk

    def join_bulk(self, core, bulk, template) -> Any:
        """The state from ``core`` and a saved ``bulk`` (:meth:`trim_bulk`'s output, numpy) fitted to the
        full state's ``template``; inverse of :meth:`split_bulk`."""
        return core

    def loop_fields(self, key: jax.Array, last: TimeStep, env_state: Any) -> dict:
        """The state fields the loops manage, freshly initialised (for a family's ``init_state``)."""
        return dict(
            env_state=env_state, last=last, episodes=init_episode_stats(self.num_envs, self.n_agents),
            key=jax.random.fold_in(key, 1), update=jnp.zeros((), jnp.int32), env_steps=jnp.zeros((), jnp.int32),
            carry=self.init_carry((self.num_envs,)),
        )

    # ---- provided: the JAX-native loop ----------------------------------------------------------
    def init(self, key: jax.Array):
        """The full training state, with ``num_envs`` freshly reset JAX-native environments."""
        k_learner, k_env = jax.random.split(key)
        env_state, ts = jax.vmap(self.env.reset)(jax.random.split(k_env, self.num_envs))
        return self.init_state(k_learner, ts, env_state)

    def rollout(self, state):
        """``rollout_len`` steps of ``num_envs`` JAX-native envs: ``(state, traj [T, E, ...], episode metrics)``."""
        env = self.env
        view = self.policy_view(state)

        def step(carry, _):
            st, sums, count = carry
            key, k_act, k_env = step_keys(st.key)
            k_act, k_env = block_key(k_act), block_key(k_env)  # env blocks: each block its own actions and env noise
            env_act, act_out, acting = self.act(view, st.carry, st.last, k_act)
            env_state, ts = jax.vmap(env.step)(jax.random.split(k_env, self.num_envs), st.env_state, env_act)
            transition = self.transition(view, st.last, ts, act_out)
            episodes, sums, count = track_episodes(st.episodes, ts, sums, count)
            st = st._replace(env_state=env_state, last=ts, episodes=episodes, key=key, carry=acting)
            return (st, sums, count), transition

        sums, count = zero_episode_sums(state.last, self.n_agents)
        (state, sums, count), traj = jax.lax.scan(step, (state, sums, count), None, length=self.rollout_len)
        return state, traj, episode_metrics(*block_sum((sums, count)))  # env blocks: the episodes of all blocks

    def update(self, state):
        """One iteration on the JAX-native environment: rollout, then learning."""
        state, traj, metrics = self.rollout(state)
        state, learn_metrics = self.learn(state, traj)
        metrics.update(learn_metrics)
        return self.finish(state, metrics)

    def finish(self, state, metrics: dict):
        """Count the update and its env steps (both loops call this after ``learn``)."""
        state = state._replace(update=state.update + 1, env_steps=state.env_steps + self.steps_per_update)
        metrics["env_steps"] = state.env_steps
        return state, metrics


def init_seeds(algo: Algorithm, keys: jax.Array, shardings: Any = None) -> Any:
    """``init`` for each key, stacked on a leading seed axis (the same values as ``vmap(init)``), built in
    place: the memory of the stacked state plus one seed's.

    Seeds are initialised one at a time with one jitted ``init``: on XLA:CPU (jax 0.10) a
    ``jit(vmap(init))`` over seeds of Flax networks with orthogonal initialisers can deadlock. It is
    compiled with JAX's rolled Threefry loop (:func:`trustmarl.compilation.rolled_threefry`): the
    same numbers, a shorter compilation. ``shardings``: ``(one seed's, seed-stacked)`` state shardings (env blocks:
    each device computes and holds only its env copies' part); ``None``: the default device.
    """
    from trustmarl.compilation import rolled_threefry

    one, stack = ({}, {}) if shardings is None else ({"out_shardings": s} for s in shardings)
    init = jax.jit(algo.init, **one)
    with rolled_threefry():  # runs once: JAX's smaller rolled-loop program compiles faster
        first = init(keys[0])
    n = len(keys)
    # the seed-stacked state is allocated once and each further seed written into it in place (donated):
    # never all seeds' states and their stack at once (replay buffers: twice the memory)
    stacked = jax.jit(lambda s: jax.tree.map(lambda x: jnp.stack([x] * n), s), **stack)(first)
    del first
    put = jax.jit(lambda st, s, k: jax.tree.map(lambda a, x: a.at[k].set(x), st, s), donate_argnums=0, **stack)
    for k in range(1, n):
        stacked = put(stacked, init(keys[k]), k)
    return stacked
