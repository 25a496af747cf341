"""Shared machinery of the on-policy actor-critic family (MAPPO, IPPO, JR-PPO, HAPPO, HATRPO).

On top of the family-agnostic loop (:class:`trustmarl.algos.base.Algorithm`) and agent groups
(:mod:`trustmarl.algos.agents`), this module owns what the on-policy algorithms have in common:
actor and critic networks, the transition they learn from, returns and advantages (GAE, value
normalisation, advantage normalisation), minibatch epochs and the critic fit. An algorithm module
only adds its policy update (``learn_batch``) on the :class:`Batch` built here.

Shapes: E environments, T rollout steps, B = T*E samples, N agents (groups concatenated),
K value heads (1 for a centralised V(s), N for per-agent critics).

Recurrent actors (``recurrent=true``): only the actors carry a GRU hidden state (the loop's ``carry``,
per group ``[E, n_g, gru_size]``); critics stay feed-forward. ``act`` applies the reset flag
``last.done`` (the observation starts a new episode) and advances the hidden state; each transition
stores the hidden state entering the step and the reset flag. The ``Batch`` then keeps time order:
the rollout ``[T, E]`` is cut into ``n_seq = T*E/seq_len`` sequences, every field gets leading axes
``[n_seq, seq_len]`` (``hidden`` only the state entering each sequence, ``[n_seq, n_g, H]``), minibatches
sample whole sequences, and the policy is re-evaluated by unrolling from each sequence's stored
hidden state with the stored resets (Kuba et al. 2022 (HATRPO/HAPPO) practice, as in HARL). Losses
reduce over all leading axes.

Time-aware critic (``critic_time=true``; Pardo et al. 2018, "Time Limits in Reinforcement Learning",
Section 3): when a time limit ends episodes and is treated as terminal, the return from a state depends on
the time left, which observations rarely show; the critic then also reads ``t / max_episode_steps``
(t = steps taken in the episode before the observation). The step counter lives in the loop's
``carry`` (``(hidden, t)``), restarts at ``last.done``, and each transition stores its time.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from trustmarl.algos.agents import adam, concat_agents, linear_decay, masked_mean, opt_init, opt_step
from trustmarl.algos.base import Algorithm, EpisodeStats, block_mean, block_sum, env_blocked
from trustmarl.envs.base import Discrete, MultiAgentEnv, TimeStep
from trustmarl.networks import (
    CategoricalActor,
    Critic,
    GaussianActor,
    RecurrentActor,
    unroll,
)
from trustmarl.trust.gae import gae
from trustmarl.validation import ConfigError
from trustmarl.trust.normalize import (
    ValueNormState,
    normalize_advantages,
    value_norm_denormalize,
    value_norm_init,
    value_norm_normalize,
    value_norm_update,
)

__all__ = ["ActorCritic", "Batch", "Recurrence", "TrainState", "View", "masked_mean"]


def shuffle_order(key: jax.Array, n: int) -> jax.Array:
    """A random order of ``range(n)`` (minibatch shuffling): one sort of random 32-bit keys whose low
    ``b = ceil(log2 n)`` bits are replaced by the index, so the sorted keys carry the permutation.

    A one-operand integer sort is ~3.5x faster on XLA:CPU than ``argsort`` of random floats (a
    two-operand sort). Equal random parts (32 - b bits) keep index order, as equal floats do in an
    argsort; with n = 2048 that is about one pair per shuffle. Above 4096 samples (fewer than 20
    random bits) it falls back to ``argsort`` of uniform floats.
    """
    b = max(1, (n - 1).bit_length())
    if b > 12:
        return jnp.argsort(jax.random.uniform(key, (n,)))
    bits = jax.random.bits(key, (n,), jnp.uint32)
    low = jnp.uint32((1 << b) - 1)
    packed = (bits & ~low) | jnp.arange(n, dtype=jnp.uint32)
    return (jax.lax.sort(packed) & low).astype(jnp.int32)


class TrainState(NamedTuple):
    actor_params: tuple  # per group; stacked on a leading agent axis unless shared
    critic_params: Any  # one network (critic="state") or a tuple per group (critic="local")
    actor_opt: tuple
    critic_opt: Any
    value_norm: ValueNormState
    env_state: Any  # [E, ...] (None on host envs)
    last: TimeStep  # [E, ...] the observation the next action is taken on
    episodes: EpisodeStats  # running returns of the unfinished episodes
    key: jax.Array
    update: jax.Array  # updates done
    env_steps: jax.Array  # env steps of this seed
    carry: tuple = ()  # recurrent actors: per group [E, n_g, gru_size] hidden state entering the next step; else ()
    extra: Any = ()  # the algorithm's own state (``init_extra``), e.g. further optimisers and counters


class View(NamedTuple):
    """What acting and ``transition`` read: the networks and the value normaliser."""

    actor_params: tuple
    critic_params: Any
    value_norm: ValueNormState


class Recurrence(NamedTuple):
    """The recurrent part of ``act``'s output (5th element, recurrent configs only)."""

    hidden_in: tuple  # per group [E, n_g, H]: the hidden state entering the step (before the reset)
    reset: jax.Array  # [E] bool: the observation is the first of a new episode (``last.done``)
    hidden_out: tuple  # per group [E, n_g, H]: the hidden state entering the next step


class Batch(NamedTuple):
    """One rollout, flattened to B samples; every sample holds all agents of one env step.

    Recurrent configs replace the leading ``[B]`` by ``[n_seq, seq_len]`` (time order kept) and fill
    ``hidden`` (per group ``[n_seq, n_g, H]``, the state entering each sequence) and ``reset``
    (``[n_seq, seq_len]``); feed-forward batches leave them empty.
    """

    obs: tuple  # per group [B, n_g, obs_dim]
    avail: tuple  # per group [B, n_g, n_actions]
    actions: tuple  # per group [B, n_g] or [B, n_g, dim]
    dist: tuple  # per group: the behaviour policy's distribution parameters
    logp: jax.Array  # [B, N] behaviour log-probabilities
    state: jax.Array  # [B, S]
    active: jax.Array  # [B, N] float mask
    value: jax.Array  # [B, K] value estimates at collection time (denormalised)
    adv: jax.Array  # [B, K] advantages (normalised when configured)
    returns: jax.Array  # [B, K] GAE returns (denormalised)
    target: jax.Array  # [B, K] value targets (normalised when value_norm)
    hidden: tuple = ()  # recurrent only: per group [n_seq, n_g, H]
    reset: Any = None  # recurrent only: [n_seq, seq_len] episode-start flags
    time: Any = None  # critic_time only: [B] (or [n_seq, seq_len]) t / max_episode_steps of each sample


class ActorCritic(Algorithm):
    """Networks, acting, transitions and targets; subclasses implement ``learn_batch(state, batch)``."""

    name = "actor-critic"

    def __init__(self, env: MultiAgentEnv, cfg, total_updates: int | None = None):
        super().__init__(env, cfg, total_updates, share_params=cfg.share_params, agent_id=cfg.agent_id)
        self.n_values = 1 if cfg.critic == "state" else self.n_agents
        self.shared = self.agents.shared  # share_params="auto" resolved against the env's groups
        self.recurrent = bool(getattr(cfg, "recurrent", False))
        self.critic_time = bool(getattr(cfg, "critic_time", False))
        self.time_scale = 1.0 / max(1, int(getattr(env, "max_episode_steps", 1)))
        self.seq_len = (getattr(cfg, "seq_len", 0) or cfg.rollout_len) if self.recurrent else 1
        net = dict(hidden_sizes=tuple(cfg.hidden_sizes), activation=cfg.activation, layer_norm=cfg.layer_norm)
        image = self.image_shape(env, cfg)
        head_net = dict(net, hidden_sizes=()) if self.recurrent else dict(net, image_shape=image)  # recurrent: the head sits on the GRU
        self.actors = tuple(
            CategoricalActor(g.action_space.n, head_gain=cfg.actor_head_gain, **head_net)
            if isinstance(g.action_space, Discrete)
            else GaussianActor(g.action_space.dim, head_gain=cfg.actor_head_gain, log_std_init=cfg.log_std_init, **head_net)
            for g in self.groups
        )
        if self.recurrent:
            self.actors = tuple(RecurrentActor(head, gru_size=cfg.gru_size, **net) for head in self.actors)
        self.critic = Critic(**net, image_shape=image if cfg.critic != "state" else None)
        self.actor_txs = tuple(self.make_tx(cfg.actor_lr, self.actor_steps_per_update(g)) for g in range(len(self.groups)))
        self.critic_tx = self.make_tx(cfg.critic_lr, self.critic_steps_per_update())

    @staticmethod
    def image_shape(env, cfg) -> tuple[int, int, int] | None:
        """``algo.image_shape`` checked against the env: every group's observation must hold H*W*C inputs."""
        shape = getattr(cfg, "image_shape", None)
        if shape is None:
            return None
        if getattr(cfg, "recurrent", False):
            raise ConfigError("algo.image_shape (the CNN torso) is not available with recurrent actors")
        size, side = int(np.prod(shape)), np.asarray(shape[:2])
        for stride in (4, 2, 1):  # the torso's 3x3 VALID convolutions
            side = (side - 3) // stride + 1
        if side.min() < 1:
            raise ConfigError(f"algo.image_shape={list(shape)!r} is too small for the CNN torso (at least 11 x 11)")
        for g in env.groups:
            if g.obs_dim != size:
                raise ConfigError(f"algo.image_shape={list(shape)!r} needs image observations of {size} inputs; group "
                                  f"{g.name!r} observes {g.obs_dim} (not an image env, or another image size)")
        return tuple(int(v) for v in shape)

    def check_env_blocks(self, blocks: int) -> None:
        """Each block's batch (``num_envs/blocks`` env copies) must split into the configured minibatches."""
        super().check_env_blocks(blocks)
        cfg = self.cfg
        samples = self.num_envs // blocks * cfg.rollout_len // self.seq_len  # samples (recurrent: sequences) per block
        for name in ("minibatches", "critic_minibatches"):
            m = getattr(cfg, name, None)
            if m is not None and samples % m:
                raise ConfigError(f"env_blocks={blocks}: algo.{name}={m} must divide each block's "
                                  f"{'sequences' if self.recurrent else 'samples'} "
                                  f"num_envs/env_blocks*rollout_len{'/seq_len' if self.recurrent else ''}={samples}")

    # ---- optimisers ------------------------------------------------------------------------
    def actor_steps_per_update(self, g: int) -> int:
        """Optimiser steps group ``g``'s actor optimiser takes per update (for learning-rate annealing)."""
        return self.cfg.epochs * self.cfg.minibatches

    def critic_steps_per_update(self) -> int:
        return self.cfg.epochs * self.cfg.minibatches

    def make_tx(self, lr: float, steps_per_update: int) -> optax.GradientTransformation:
        """Adam after global-norm clipping; with ``anneal_lr`` the rate falls linearly to 0 over training."""
        cfg = self.cfg
        schedule = linear_decay(lr, steps_per_update, self.total_updates) if cfg.anneal_lr else lr
        return adam(schedule, cfg.max_grad_norm, eps=cfg.adam_eps)

    def stacked(self, g: int) -> bool:
        """Whether group ``g`` has one parameter set per agent (not shared)."""
        return self.agents.stacked(g)

    # ---- networks --------------------------------------------------------------------------
    def init_params(self, key: jax.Array):
        k_actor, k_critic = jax.random.split(key)
        ag = self.agents
        actor_params, critic_local = [], []
        for g, (grp, actor) in enumerate(zip(self.groups, self.actors)):
            ka, kc = jax.random.split(jax.random.fold_in(k_actor, g))
            obs, avail = ag.dummy_obs(g), ag.dummy_avail(g)
            inputs = (obs, avail)
            if self.recurrent:  # (hidden, obs, avail, reset)
                inputs = (jnp.zeros((grp.n, self.cfg.gru_size)), obs, avail, jnp.zeros((grp.n, 1), bool))
            actor_params.append(ag.init(actor, ka, g, *inputs))
            critic_local.append(ag.init(self.critic, kc, g, self.time_input(obs, jnp.zeros(obs.shape[:-1]))))
        if self.cfg.critic == "state":
            critic_params = self.critic.init(k_critic, self.time_input(jnp.zeros((self.env.state_dim,)), jnp.zeros(())))
        else:
            critic_params = tuple(critic_local)
        return tuple(actor_params), critic_params

    def policy(self, actor_params: tuple, obs: tuple, avail: tuple) -> tuple:
        """Per group, the action distribution parameters for ``[..., n_g, obs_dim]`` observations.

        Feed-forward actors only; recurrent ones use :meth:`policy_step` / :meth:`policy_sequence`.
        """
        if self.recurrent:
            raise TypeError("recurrent actors need a hidden state: use policy_step or policy_sequence")
        ag = self.agents
        return tuple(ag.apply(self.actors[g], actor_params[g], g, ag.with_id(g, obs[g]), avail[g]) for g in range(len(self.groups)))

    def init_carry(self, batch_shape: tuple[int, ...]) -> tuple:
        """Zero actor hidden states, per group ``[*batch_shape, n_g, gru_size]`` (``()`` if not recurrent);
        with ``critic_time`` the pair ``(hidden, steps [*batch_shape] int32)``."""
        hidden = ()
        if self.recurrent:
            hidden = tuple(jnp.zeros(tuple(batch_shape) + (g.n, self.cfg.gru_size)) for g in self.groups)
        return (hidden, jnp.zeros(tuple(batch_shape), jnp.int32)) if self.critic_time else hidden

    def split_carry(self, carry) -> tuple[tuple, Any]:
        """``(actor hidden states, episode step counter or None)``."""
        return (carry[0], carry[1]) if self.critic_time else (carry, None)

    def time_input(self, x: jax.Array, time: jax.Array | None) -> jax.Array:
        """``x`` ``[lead..., d]`` or ``[lead..., n_g, d]`` with the time fraction ``time`` ``[lead...]``
        appended (critic_time), else ``x``."""
        if not self.critic_time:
            return x
        t = jnp.reshape(time, jnp.shape(time) + (1,) * (x.ndim - 1 - jnp.ndim(time)))
        t = jnp.broadcast_to(t, x.shape[:-1])
        return jnp.concatenate([x, t[..., None].astype(x.dtype)], axis=-1)


    def policy_step(self, actor_params: tuple, hidden: tuple, obs: tuple, avail: tuple, reset: jax.Array):
        """One recurrent step for ``[..., n_g, ...]`` inputs: ``(hidden', dists)``.

        ``reset`` ``[...]`` (one flag per env, shared by its agents) zeroes the incoming hidden state.
        """
        ag = self.agents
        out = []
        for g, grp in enumerate(self.groups):
            r = jnp.broadcast_to(reset[..., None, None], reset.shape + (grp.n, 1))
            out.append(ag.apply(self.actors[g], actor_params[g], g, hidden[g], ag.with_id(g, obs[g]), avail[g], r))
        return tuple(h for h, _ in out), tuple(d for _, d in out)

    @staticmethod
    def sequence(step: Callable, hidden, obs, avail, reset: jax.Array):
        """Unroll ``step(hidden, (obs_t, avail_t), reset_t) -> (hidden, dist_t)`` over batch-major
        sequences ``[n_seq, L, ...]`` from the hidden state entering each sequence; dists ``[n_seq, L, ...]``."""
        tm = lambda x: jnp.swapaxes(x, 0, 1)  # noqa: E731  batch-major <-> time-major
        _, dists = unroll(step, hidden, jax.tree.map(tm, (obs, avail)), tm(reset))
        return jax.tree.map(tm, dists)

    def policy_sequence(self, actor_params: tuple, hidden: tuple, obs: tuple, avail: tuple, reset: jax.Array) -> tuple:
        """Per group, the distributions along sequences ``[n_seq, L, n_g, ...]`` (``hidden`` ``[n_seq, n_g, H]``)."""
        step = lambda h, x, r: self.policy_step(actor_params, h, x[0], x[1], r)  # noqa: E731
        return self.sequence(step, hidden, obs, avail, reset)

    def batch_policy(self, actor_params: tuple, batch: "Batch") -> tuple:
        """The current policy's distributions on every sample of ``batch`` (any layout)."""
        if self.recurrent:
            return self.policy_sequence(actor_params, batch.hidden, batch.obs, batch.avail, batch.reset)
        return self.policy(actor_params, batch.obs, batch.avail)

    def log_prob(self, dists: tuple, actions: tuple) -> jax.Array:
        return concat_agents([dd.log_prob(d, a) for dd, d, a in zip(self.dists, dists, actions)])

    def entropy(self, dists: tuple) -> jax.Array:
        return concat_agents([dd.entropy(d) for dd, d in zip(self.dists, dists)])

    def value(self, critic_params, obs: tuple, state: jax.Array, time: jax.Array | None = None) -> jax.Array:
        """Critic output ``[..., K]`` (in normalised units when value normalisation is on); ``time``
        ``[...]`` is the episode-time fraction the time-aware critic reads (``critic_time``)."""
        if self.critic_time and time is None:
            raise ValueError("critic_time=true: the critic needs the episode time of every sample")
        if self.cfg.critic == "state":
            return self.critic.apply(critic_params, self.time_input(state, time))[..., None]
        ag = self.agents
        return concat_agents(
            [ag.apply(self.critic, critic_params[g], g, self.time_input(ag.with_id(g, obs[g]), time), out_axes=-1)
             for g in range(len(self.groups))]
        )

    def denorm(self, vn: ValueNormState, v: jax.Array) -> jax.Array:
        return value_norm_denormalize(vn, v) if self.cfg.value_norm else v

    def env_actions(self, actions: tuple) -> tuple:
        return self.agents.env_actions(actions)

    # ---- state -----------------------------------------------------------------------------
    def init_state(self, key: jax.Array, last: TimeStep, env_state: Any = None) -> TrainState:
        """Networks, optimisers and counters; the environment part is ``last``/``env_state``."""
        actor_params, critic_params = self.init_params(key)
        actor_opt = tuple(opt_init(self.actor_txs[g], p, self.stacked(g)) for g, p in enumerate(actor_params))
        if self.cfg.critic == "state":
            critic_opt = self.critic_tx.init(critic_params)
        else:
            critic_opt = tuple(opt_init(self.critic_tx, p, self.stacked(g)) for g, p in enumerate(critic_params))
        return TrainState(
            actor_params=actor_params,
            critic_params=critic_params,
            actor_opt=actor_opt,
            critic_opt=critic_opt,
            value_norm=value_norm_init(),
            **self.loop_fields(key, last, env_state),
            extra=self.init_extra(jax.random.fold_in(key, 2), actor_params, critic_params),
        )

    def init_extra(self, key: jax.Array, actor_params: tuple, critic_params: Any) -> Any:
        """The algorithm's own state beyond the family's fields, kept in ``state.extra`` (checkpointed and
        vmapped over seeds with the rest), e.g. a dict of further optimiser states. Default: ``()``."""
        return ()


    def policy_view(self, state: TrainState) -> View:
        return View(state.actor_params, state.critic_params, state.value_norm)

    # ---- acting and transitions --------------------------------------------------------------
    def act(self, view: View, carry: tuple, last: TimeStep, key: jax.Array):
        """Sample every agent's action for the observations in ``last`` (leading [E] axis).

        ``act_out`` is ``(actions, logp [E, N], dists, value [E, K])``; recurrent configs read the
        hidden state ``carry`` (reset where ``last.done``), advance it, and append a 5th element, a
        :class:`Recurrence`, for the trajectory.
        """
        carry, steps = self.split_carry(carry)
        if self.recurrent:
            if len(carry) != len(self.groups):
                raise ValueError("recurrent actors: the carry must hold one hidden state per group")
            reset = jnp.asarray(last.done)
            hidden, dists = self.policy_step(view.actor_params, carry, last.obs, last.avail, reset)
        else:
            dists = self.policy(view.actor_params, last.obs, last.avail)
        keys = jax.random.split(key, len(self.groups))
        actions = tuple(dd.sample(d, kk) for dd, d, kk in zip(self.dists, dists, keys))
        time = None
        if self.critic_time:  # steps taken in the episode before ``last`` (0 on a first observation)
            steps = jnp.where(last.done, 0, steps)
            time = steps * self.time_scale
        value = self.denorm(view.value_norm, self.value(view.critic_params, last.obs, last.state, time))
        out = (actions, self.log_prob(dists, actions), dists, value)
        if self.recurrent:
            out += (Recurrence(hidden_in=carry, reset=reset, hidden_out=hidden),)
            carry = hidden
        if self.critic_time:
            out += (time,)
            carry = (carry, steps + 1)
        return self.env_actions(actions), out, carry

    def transition(self, view: View, last: TimeStep, ts: TimeStep, act_out) -> dict:
        """The transition to learn from after stepping ``last`` -> ``ts``."""
        cfg = self.cfg
        actions, logp, dists, value = act_out[:4]
        team = ts.reward.mean(-1)  # the team reward: mean of the agents' rewards
        reward = ts.reward if cfg.reward == "agent" else jnp.broadcast_to(team[:, None], value.shape)
        time = act_out[-1] if self.critic_time else None
        if cfg.bootstrap_truncation:  # a time limit is not a terminal state: bootstrap V(final)
            t_final = None if time is None else time + self.time_scale
            v_final = self.denorm(view.value_norm, self.value(view.critic_params, ts.final_obs, ts.final_state, t_final))
            trunc = jnp.logical_and(ts.truncated, ~ts.terminated)
            reward = reward + cfg.gamma * trunc[:, None] * v_final
        transition = dict(
            obs=last.obs, avail=last.avail, actions=actions, dist=dists, logp=logp, state=last.state,
            active=last.active.astype(jnp.float32), value=value, reward=reward, done=ts.done,
        )
        if self.recurrent:  # what the training unroll needs to replay the behaviour policy
            transition.update(hidden=act_out[4].hidden_in, reset=act_out[4].reset)
        if self.critic_time:
            transition["time"] = time
        return transition

    def last_value(self, state: TrainState) -> jax.Array:
        time = None
        if self.critic_time:
            time = jnp.where(state.last.done, 0, self.split_carry(state.carry)[1]) * self.time_scale
        return self.denorm(state.value_norm, self.value(state.critic_params, state.last.obs, state.last.state, time))

    # ---- returns and batches -------------------------------------------------------------------
    def targets(self, state: TrainState, traj: dict, last_value: jax.Array):
        """GAE advantages and value targets; updates the value normaliser (as MAPPO and HARL do, Yu et al. 2021)."""
        cfg = self.cfg
        done = jnp.broadcast_to(traj["done"][..., None], traj["value"].shape).astype(jnp.float32)
        adv, returns = gae(traj["reward"], traj["value"], done, last_value, cfg.gamma, cfg.gae_lambda)
        vn = state.value_norm
        # env blocks (run key env_blocks): statistics over the env copies of all blocks, so every block keeps the
        # same normaliser and normalises with the moments of the whole batch
        total = (lambda x: block_sum(jnp.sum(x))) if env_blocked() else None  # noqa: E731
        if cfg.value_norm:
            vn = value_norm_update(vn, returns, total=total)
            target = value_norm_normalize(vn, returns)
        else:
            target = returns
        mask = traj["active"] if self.n_values == self.n_agents else None
        if cfg.normalize_advantages:
            adv = normalize_advantages(adv, mask, total=total)
        return state._replace(value_norm=vn), adv, target, returns

    def collect(self, state: TrainState):
        """Rollout + targets as a ``Batch`` (B = T*E samples, or sequences when recurrent)."""
        state, traj, metrics = self.rollout(state)
        state, batch = self.make_batch(state, traj)
        return state, batch, metrics

    def make_batch(self, state: TrainState, traj: dict) -> tuple[TrainState, Batch]:
        """Targets for a time-major trajectory ``[T, E, ...]`` (bootstrapped from ``state.last``), flattened
        to a ``Batch`` (recurrent configs: cut into ``[n_seq, seq_len, ...]`` sequences, see the module docstring)."""
        state, adv, target, returns = self.targets(state, traj, self.last_value(state))
        if self.recurrent:
            return state, self._sequence_batch(traj, adv, target, returns)
        flat = lambda x: x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:])  # noqa: E731
        batch = Batch(
            obs=jax.tree.map(flat, traj["obs"]),
            avail=jax.tree.map(flat, traj["avail"]),
            actions=jax.tree.map(flat, traj["actions"]),
            dist=jax.tree.map(flat, traj["dist"]),
            logp=flat(traj["logp"]),
            state=flat(traj["state"]),
            active=flat(traj["active"]),
            value=flat(traj["value"]),
            adv=flat(adv),
            returns=flat(returns),
            target=flat(target),
            time=flat(traj["time"]) if self.critic_time else None,
        )
        return state, batch

    def _sequence_batch(self, traj: dict, adv, target, returns) -> Batch:
        """``[T, E, ...]`` -> ``[n_seq, L, ...]``: sequence ``c*E + e`` holds steps ``[c*L, (c+1)*L)`` of env ``e``."""
        L = self.seq_len

        def seq(x):
            t, e = x.shape[:2]
            x = jnp.swapaxes(x.reshape((t // L, L, e) + x.shape[2:]), 1, 2)
            return x.reshape((t // L * e, L) + x.shape[3:])

        fields = {k: traj[k] for k in ("obs", "avail", "actions", "dist", "logp", "state", "active", "value", "reset")}
        if self.critic_time:
            fields["time"] = traj["time"]
        fields.update(adv=adv, returns=returns, target=target)
        fields = jax.tree.map(seq, fields)
        hidden = jax.tree.map(lambda x: seq(x)[:, 0], traj["hidden"])  # the state entering each sequence
        return Batch(hidden=hidden, **fields)

    def learn(self, state: TrainState, traj: dict):
        """Targets and the batch from the trajectory, then the algorithm's policy and critic update."""
        state, batch = self.make_batch(state, traj)
        return self.learn_batch(state, batch)

    def learn_batch(self, state: TrainState, batch: Batch):
        raise NotImplementedError

    # ---- gradient epochs -------------------------------------------------------------------
    def sgd(self, loss_fn, apply_fn, params, opt, data, key, epochs: int, minibatches: int, reduce=None):
        """``epochs`` x ``minibatches`` gradient steps of ``loss_fn(params, minibatch) -> (loss, aux)``.

        ``data`` is a pytree with a leading batch axis; ``apply_fn(params, grads, opt) -> (params, opt)``
        applies one optimiser step. Returns the new ``(params, opt)`` and the mean of ``aux``, or
        ``reduce(aux)`` of the stacked ``[epochs, minibatches, ...]`` values when ``reduce`` is given
        (e.g. per-epoch ratio ranges, :func:`trustmarl.algos.on_policy.diagnostics.reduce_epochs`).
        The batch is shuffled once per epoch (one gather) and split by reshaping; with ``sgd_unroll``
        the small loops are unrolled, which XLA on CPU runs faster than a ``while`` loop.
        """
        grad_fn = jax.grad(loss_fn, has_aux=True)
        batch_size = jax.tree.leaves(data)[0].shape[0]
        unroll = bool(self.cfg.sgd_unroll)

        def minibatch_step(carry, mb):
            params, opt = carry
            grads, aux = grad_fn(params, mb)
            grads = block_mean(grads)  # env blocks: the gradient of the union of the blocks' minibatches (all-reduced)
            return apply_fn(params, grads, opt), aux

        def epoch(carry, k):
            perm = shuffle_order(k, batch_size)
            split = lambda x: x[perm].reshape((minibatches, batch_size // minibatches) + x.shape[1:])  # noqa: E731
            return jax.lax.scan(minibatch_step, carry, jax.tree.map(split, data), unroll=unroll)

        (params, opt), aux = jax.lax.scan(epoch, (params, opt), jax.random.split(key, epochs), unroll=unroll)
        return params, opt, (reduce(aux) if reduce is not None else jax.tree.map(jnp.mean, aux))

    def apply_actor(self, actor_params, grads, actor_opt):
        pairs = [opt_step(self.actor_txs[g], p, gr, o, self.stacked(g)) for g, (p, gr, o) in enumerate(zip(actor_params, grads, actor_opt))]
        return tuple(p for p, _ in pairs), tuple(o for _, o in pairs)

    def apply_critic(self, critic_params, grads, critic_opt):
        if self.cfg.critic == "state":
            return opt_step(self.critic_tx, critic_params, grads, critic_opt, False)
        pairs = [opt_step(self.critic_tx, p, gr, o, self.stacked(g)) for g, (p, gr, o) in enumerate(zip(critic_params, grads, critic_opt))]
        return tuple(p for p, _ in pairs), tuple(o for _, o in pairs)

    def value_loss(self, critic_params, mb: Batch) -> jax.Array:
        """Squared error to the (normalised) GAE targets, masked for per-agent critics (Schulman et al. 2017,
        eq. 9 L_V; targets of Schulman et al. 2016, eq. 16; no value clipping: Sun et al. 2023, footnote 1)."""
        v = self.value(critic_params, mb.obs, mb.state, mb.time)
        v_mask = mb.active if self.n_values == self.n_agents else None
        return 0.5 * masked_mean(jnp.square(v - mb.target), v_mask)

    def critic_learn(self, state: TrainState, batch: Batch, key: jax.Array, epochs: int, minibatches: int):
        """Fit the critic alone (used after the sequential actor updates of HAPPO/HATRPO)."""
        loss = lambda cp, mb: (self.value_loss(cp, mb), {"loss/value": self.value_loss(cp, mb)})  # noqa: E731
        params, opt, aux = self.sgd(loss, self.apply_critic, state.critic_params, state.critic_opt, batch, key, epochs, minibatches)
        return state._replace(critic_params=params, critic_opt=opt), aux

    # ---- evaluation ------------------------------------------------------------------------
    def eval_actions(self, view: View, carry: tuple, obs: tuple, avail: tuple, done: jax.Array,
                     key: jax.Array, deterministic: bool = True) -> tuple[tuple, tuple]:
        """Actions for evaluation and rendering: ``(env_actions, carry')``.

        The policy's mode (``deterministic``) or a sample drawn from ``key``; continuous actions are
        clipped to the action box. Recurrent actors advance the hidden state ``carry`` (zeroed where
        ``done``, the flag of the step that produced ``obs``); feed-forward ones pass ``()`` through.
        """
        carry, steps = self.split_carry(carry)
        if self.recurrent:
            carry, dists = self.policy_step(view.actor_params, carry, obs, avail, done)
        else:
            dists = self.policy(view.actor_params, obs, avail)
        if self.critic_time:  # the critic's step counter is not used to act
            carry = (carry, steps)
        if deterministic:
            actions = tuple(dd.mode(d) for dd, d in zip(self.dists, dists))
        else:
            ks = jax.random.split(key, len(self.groups))
            actions = tuple(dd.sample(d, kk) for dd, d, kk in zip(self.dists, dists, ks))
        return self.env_actions(actions), carry
