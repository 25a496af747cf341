"""Shared machinery of the on-policy actor-critic family (MAPPO, IPPO, JR-PPO, HAPPO, HATRPO).

This module owns everything the algorithms have in common: agent groups and parameter sharing,
network evaluation, the jitted rollout (``lax.scan`` over steps, ``vmap`` over environments),
returns and advantages (GAE, value normalisation, advantage normalisation), optimisers and
evaluation. An algorithm module only adds its policy update on the batch built here.

Shapes: E environments, T rollout steps, B = T*E samples, N agents (groups concatenated),
K value heads (1 for a centralised V(s), N for per-agent critics).

Recurrent actors (``recurrent=true``): only the actors carry a GRU hidden state (``TrainState.actor_hidden``,
per group ``[E, n_g, gru_size]``); critics stay feed-forward. ``act`` applies the reset flag
``last.done`` (the observation starts a new episode) and advances the hidden state; each transition
stores the hidden state entering the step and the reset flag. The ``Batch`` then keeps time order:
the rollout ``[T, E]`` is cut into ``n_seq = T*E/seq_len`` sequences, every field gets leading axes
``[n_seq, seq_len]`` (``hidden`` only the state entering each sequence, ``[n_seq, n_g, H]``), minibatches
sample whole sequences, and the policy is re-evaluated by unrolling from each sequence's stored
hidden state with the stored resets (seed 001 spec §7 #5). Losses reduce over all leading axes.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from trustmarl.envs.base import Discrete, MultiAgentEnv, TimeStep
from trustmarl.networks import (
    CategoricalActor,
    Critic,
    GaussianActor,
    RecurrentActor,
    dist_entropy,
    dist_log_prob,
    dist_mode,
    dist_sample,
    unroll,
)
from trustmarl.trust.gae import gae
from trustmarl.trust.normalize import (
    ValueNormState,
    normalize_advantages,
    value_norm_denormalize,
    value_norm_init,
    value_norm_normalize,
    value_norm_update,
)


class TrainState(NamedTuple):
    actor_params: tuple  # per group; stacked on a leading agent axis unless shared
    critic_params: Any  # one network (critic="state") or a tuple per group (critic="local")
    actor_opt: tuple
    critic_opt: Any
    value_norm: ValueNormState
    env_state: Any  # [E, ...]
    last: TimeStep  # [E, ...] the observation the next action is taken on
    ep_return: jax.Array  # [E] running team return of the unfinished episodes
    key: jax.Array
    update: jax.Array  # updates done
    env_steps: jax.Array  # env steps of this seed
    actor_hidden: tuple = ()  # recurrent actors: per group [E, n_g, gru_size] entering the next step; else ()


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


def tree_concat_agents(xs: list[jax.Array]) -> jax.Array:
    return jnp.concatenate(xs, axis=-1)


def masked_mean(x: jax.Array, mask: jax.Array | None) -> jax.Array:
    if mask is None:
        return x.mean()
    mask = jnp.broadcast_to(mask, x.shape)
    return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


class ActorCritic:
    """Networks, rollout and targets; subclasses implement ``learn(state, batch)``."""

    name = "actor-critic"

    def __init__(self, env: MultiAgentEnv, cfg, total_updates: int | None = None):
        self.env = env
        self.cfg = cfg
        self.groups = env.groups
        self.kinds = tuple(g.action_space.kind for g in self.groups)
        self.n_agents = env.n_agents
        self.n_values = 1 if cfg.critic == "state" else self.n_agents
        self.steps_per_update = cfg.num_envs * cfg.rollout_len
        self.total_updates = max(1, int(total_updates or 1))
        self.shared = cfg.share_params
        self.recurrent = bool(getattr(cfg, "recurrent", False))
        self.seq_len = (getattr(cfg, "seq_len", 0) or cfg.rollout_len) if self.recurrent else 1
        net = dict(hidden_sizes=tuple(cfg.hidden_sizes), activation=cfg.activation, layer_norm=cfg.layer_norm)
        head_net = dict(net, hidden_sizes=()) if self.recurrent else net  # recurrent: the head sits on the GRU
        self.actors = tuple(
            CategoricalActor(g.action_space.n, head_gain=cfg.actor_head_gain, **head_net)
            if isinstance(g.action_space, Discrete)
            else GaussianActor(g.action_space.dim, head_gain=cfg.actor_head_gain, log_std_init=cfg.log_std_init, **head_net)
            for g in self.groups
        )
        if self.recurrent:
            self.actors = tuple(RecurrentActor(head, gru_size=cfg.gru_size, **net) for head in self.actors)
        self.critic = Critic(**net)
        self.actor_txs = tuple(self.make_tx(cfg.actor_lr, self.actor_steps_per_update(g)) for g in range(len(self.groups)))
        self.critic_tx = self.make_tx(cfg.critic_lr, self.critic_steps_per_update())

    # ---- optimisers ------------------------------------------------------------------------
    def actor_steps_per_update(self, g: int) -> int:
        """Optimiser steps group ``g``'s actor optimiser takes per update (for learning-rate annealing)."""
        return self.cfg.epochs * self.cfg.minibatches

    def critic_steps_per_update(self) -> int:
        return self.cfg.epochs * self.cfg.minibatches

    def make_tx(self, lr: float, steps_per_update: int) -> optax.GradientTransformation:
        """Adam after global-norm clipping; with ``anneal_lr`` the rate falls linearly to 0 over training."""
        cfg = self.cfg
        if cfg.anneal_lr:
            def schedule(count):
                return lr * jnp.maximum(0.0, 1.0 - (count // steps_per_update) / self.total_updates)
        else:
            schedule = lr
        return optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), optax.adam(schedule, eps=cfg.adam_eps))

    def stacked(self, g: int) -> bool:
        """Whether group ``g`` has one parameter set per agent (not shared)."""
        return not self.shared

    def opt_init(self, tx, params, stacked: bool):
        return jax.vmap(tx.init)(params) if stacked else tx.init(params)

    def opt_step(self, tx, params, grads, opt, stacked: bool):
        """One optimiser step; for stacked (non-shared) agents each agent is clipped and updated alone."""
        if stacked:
            upd, opt = jax.vmap(tx.update)(grads, opt, params)
        else:
            upd, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, upd), opt

    # ---- inputs ----------------------------------------------------------------------------
    def _with_id(self, g: int, obs: jax.Array) -> jax.Array:
        if not (self.cfg.agent_id and self.shared):
            return obs
        n = self.groups[g].n
        ids = jnp.broadcast_to(jnp.eye(n, dtype=obs.dtype), obs.shape[:-2] + (n, n))
        return jnp.concatenate([obs, ids], axis=-1)

    def _apply_group(self, module, params, g: int, *inputs, out_axes: int = -2):
        """Apply a group network to ``[..., n_g, d]`` inputs (vmapped over agents unless shared)."""
        if self.stacked(g):
            return jax.vmap(module.apply, in_axes=(0,) + (-2,) * len(inputs), out_axes=out_axes)(params, *inputs)
        return module.apply(params, *inputs)

    # ---- networks --------------------------------------------------------------------------
    def init_params(self, key: jax.Array):
        k_actor, k_critic = jax.random.split(key)
        actor_params, critic_local = [], []
        for g, (grp, actor) in enumerate(zip(self.groups, self.actors)):
            ka, kc = jax.random.split(jax.random.fold_in(k_actor, g))
            obs = self._with_id(g, jnp.zeros((grp.n, grp.obs_dim)))
            avail = jnp.ones((grp.n, max(grp.avail_dim, 1)), dtype=bool)[:, : grp.avail_dim]
            inputs = (obs, avail)
            if self.recurrent:  # (hidden, obs, avail, reset)
                inputs = (jnp.zeros((grp.n, self.cfg.gru_size)), obs, avail, jnp.zeros((grp.n, 1), bool))
            if self.stacked(g):
                actor_params.append(jax.vmap(actor.init)(jax.random.split(ka, grp.n), *inputs))
                critic_local.append(jax.vmap(self.critic.init)(jax.random.split(kc, grp.n), obs))
            else:
                actor_params.append(actor.init(ka, *(x[0] for x in inputs)))
                critic_local.append(self.critic.init(kc, obs[0]))
        if self.cfg.critic == "state":
            critic_params = self.critic.init(k_critic, jnp.zeros((self.env.state_dim,)))
        else:
            critic_params = tuple(critic_local)
        return tuple(actor_params), critic_params

    def policy(self, actor_params: tuple, obs: tuple, avail: tuple) -> tuple:
        """Per group, the action distribution parameters for ``[..., n_g, obs_dim]`` observations.

        Feed-forward actors only; recurrent ones use :meth:`policy_step` / :meth:`policy_sequence`.
        """
        if self.recurrent:
            raise TypeError("recurrent actors need a hidden state: use policy_step or policy_sequence")
        return tuple(
            self._apply_group(self.actors[g], actor_params[g], g, self._with_id(g, obs[g]), avail[g])
            for g in range(len(self.groups))
        )

    def init_hidden(self, batch_shape: tuple[int, ...]) -> tuple:
        """Zero actor hidden states, per group ``[*batch_shape, n_g, gru_size]``; ``()`` if not recurrent."""
        if not self.recurrent:
            return ()
        return tuple(jnp.zeros(tuple(batch_shape) + (g.n, self.cfg.gru_size)) for g in self.groups)

    def policy_step(self, actor_params: tuple, hidden: tuple, obs: tuple, avail: tuple, reset: jax.Array):
        """One recurrent step for ``[..., n_g, ...]`` inputs: ``(hidden', dists)``.

        ``reset`` ``[...]`` (one flag per env, shared by its agents) zeroes the incoming hidden state.
        """
        out = []
        for g, grp in enumerate(self.groups):
            r = jnp.broadcast_to(reset[..., None, None], reset.shape + (grp.n, 1))
            out.append(self._apply_group(self.actors[g], actor_params[g], g, hidden[g], self._with_id(g, obs[g]), avail[g], r))
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
        return tree_concat_agents([dist_log_prob(k, d, a) for k, d, a in zip(self.kinds, dists, actions)])

    def entropy(self, dists: tuple) -> jax.Array:
        return tree_concat_agents([dist_entropy(k, d) for k, d in zip(self.kinds, dists)])

    def value(self, critic_params, obs: tuple, state: jax.Array) -> jax.Array:
        """Critic output ``[..., K]`` (in normalised units when value normalisation is on)."""
        if self.cfg.critic == "state":
            return self.critic.apply(critic_params, state)[..., None]
        return tree_concat_agents(
            [self._apply_group(self.critic, critic_params[g], g, self._with_id(g, obs[g]), out_axes=-1) for g in range(len(self.groups))]
        )

    def denorm(self, vn: ValueNormState, v: jax.Array) -> jax.Array:
        return value_norm_denormalize(vn, v) if self.cfg.value_norm else v

    def env_actions(self, actions: tuple) -> tuple:
        """Continuous actions are clipped to the action box before the environment sees them."""
        out = []
        for grp, a in zip(self.groups, actions):
            sp = grp.action_space
            out.append(a if isinstance(sp, Discrete) else jnp.clip(a, sp.low, sp.high))
        return tuple(out)

    # ---- state -----------------------------------------------------------------------------
    def init_learner(self, key: jax.Array, last: TimeStep | None = None, env_state: Any = None) -> TrainState:
        """Networks, optimisers and counters; the environment part is ``last``/``env_state``."""
        actor_params, critic_params = self.init_params(key)
        actor_opt = tuple(self.opt_init(self.actor_txs[g], p, self.stacked(g)) for g, p in enumerate(actor_params))
        if self.cfg.critic == "state":
            critic_opt = self.critic_tx.init(critic_params)
        else:
            critic_opt = tuple(self.opt_init(self.critic_tx, p, self.stacked(g)) for g, p in enumerate(critic_params))
        return TrainState(
            actor_params=actor_params,
            critic_params=critic_params,
            actor_opt=actor_opt,
            critic_opt=critic_opt,
            value_norm=value_norm_init(),
            env_state=env_state,
            last=last,
            ep_return=jnp.zeros((self.cfg.num_envs,)),
            key=jax.random.fold_in(key, 1),
            update=jnp.zeros((), jnp.int32),
            env_steps=jnp.zeros((), jnp.int32),
            actor_hidden=self.init_hidden((self.cfg.num_envs,)),
        )

    def init(self, key: jax.Array) -> TrainState:
        """The full training state, with ``num_envs`` freshly reset JAX-native environments."""
        k_learner, k_env = jax.random.split(key)
        env_state, ts = jax.vmap(self.env.reset)(jax.random.split(k_env, self.cfg.num_envs))
        return self.init_learner(k_learner, ts, env_state)

    # ---- rollout and targets ---------------------------------------------------------------
    def act(self, state: TrainState, last: TimeStep, key: jax.Array):
        """Sample every agent's action for the observations in ``last`` (leading [E] axis).

        Returns ``(actions, logp [E, N], dists, value [E, K])``; used by the jitted rollout below and
        by the host rollout loop (``trustmarl.rollout.host``), so both train the same way.
        Recurrent configs read ``state.actor_hidden`` (reset where ``last.done``) and append a 5th
        element, a :class:`Recurrence`; :meth:`carry_hidden` moves its new hidden state into the state.
        """
        if self.recurrent:
            if len(state.actor_hidden) != len(self.groups):
                raise ValueError("recurrent actors: state.actor_hidden must hold one hidden state per group")
            reset = jnp.asarray(last.done)
            hidden, dists = self.policy_step(state.actor_params, state.actor_hidden, last.obs, last.avail, reset)
        else:
            dists = self.policy(state.actor_params, last.obs, last.avail)
        keys = jax.random.split(key, len(self.groups))
        actions = tuple(dist_sample(k, d, kk) for k, d, kk in zip(self.kinds, dists, keys))
        value = self.denorm(state.value_norm, self.value(state.critic_params, last.obs, last.state))
        out = (actions, self.log_prob(dists, actions), dists, value)
        if self.recurrent:
            out += (Recurrence(hidden_in=state.actor_hidden, reset=reset, hidden_out=hidden),)
        return out

    def carry_hidden(self, state: TrainState, act_out) -> TrainState:
        """``state`` with the actor hidden state advanced past ``act_out``'s step (no-op if not recurrent)."""
        if not self.recurrent:
            return state
        return state._replace(actor_hidden=act_out[4].hidden_out)

    def record(self, state: TrainState, last: TimeStep, ts: TimeStep, act_out, ep_return: jax.Array):
        """The transition to learn from after stepping ``last`` -> ``ts``, and episode bookkeeping.

        Returns ``(transition, ep_return, finished, finished_count)``; ``finished`` sums over the episodes
        that ended here their return (``"episode_return"``) and their ``ts.info`` outcomes (``"episode_<key>"``).
        """
        cfg = self.cfg
        actions, logp, dists, value = act_out[:4]
        team = ts.reward.mean(-1)  # the team reward: mean of the agents' rewards
        reward = ts.reward if cfg.reward == "agent" else jnp.broadcast_to(team[:, None], value.shape)
        if cfg.bootstrap_truncation:  # a time limit is not a terminal state: bootstrap V(final)
            v_final = self.denorm(state.value_norm, self.value(state.critic_params, ts.final_obs, ts.final_state))
            trunc = jnp.logical_and(ts.truncated, ~ts.terminated)
            reward = reward + cfg.gamma * trunc[:, None] * v_final
        done = ts.done
        ep_ret = ep_return + team
        transition = dict(
            obs=last.obs, avail=last.avail, actions=actions, dist=dists, logp=logp, state=last.state,
            active=last.active.astype(jnp.float32), value=value, reward=reward, done=done,
        )
        if self.recurrent:  # what the training unroll needs to replay the behaviour policy
            transition.update(hidden=act_out[4].hidden_in, reset=act_out[4].reset)
        ended = {"episode_return": ep_ret, **{f"episode_{k}": v for k, v in ts.info.items()}}
        finished = {k: jnp.sum(jnp.where(done, v, 0.0)) for k, v in ended.items()}
        return transition, jnp.where(done, 0.0, ep_ret), finished, jnp.sum(done)

    def rollout(self, state: TrainState):
        """Collect ``rollout_len`` steps in ``num_envs`` environments with the current policies."""
        cfg, env = self.cfg, self.env

        def step(carry, _):
            st, sums, ret_count = carry
            key, k_act, k_env = jax.random.split(st.key, 3)
            act_out = self.act(st, st.last, k_act)
            env_keys = jax.random.split(k_env, cfg.num_envs)
            env_state, ts = jax.vmap(env.step)(env_keys, st.env_state, self.env_actions(act_out[0]))
            transition, ep_ret, finished, count = self.record(st, st.last, ts, act_out, st.ep_return)
            st = self.carry_hidden(st._replace(env_state=env_state, last=ts, ep_return=ep_ret, key=key), act_out)
            return (st, jax.tree.map(jnp.add, sums, finished), ret_count + count), transition

        zeros = {k: jnp.zeros(()) for k in self.episode_metric_names(state.last)}
        (state, sums, ret_count), traj = jax.lax.scan(
            step, (state, zeros, jnp.zeros((), jnp.int32)), None, length=cfg.rollout_len
        )
        return state, traj, self.last_value(state), self.episode_metrics(sums, ret_count)

    def last_value(self, state: TrainState) -> jax.Array:
        return self.denorm(state.value_norm, self.value(state.critic_params, state.last.obs, state.last.state))

    @staticmethod
    def episode_metric_names(ts: TimeStep) -> list[str]:
        """``episode_return`` and ``episode_<key>`` for every outcome in ``ts.info``."""
        return ["episode_return"] + [f"episode_{k}" for k in ts.info]

    @staticmethod
    def episode_metrics(sums: dict, count: jax.Array) -> dict:
        """Per-episode means of ``sums`` over the ``count`` episodes that ended (NaN if none did)."""
        means = {k: jnp.where(count > 0, v / jnp.maximum(count, 1), jnp.nan) for k, v in sums.items()}
        return {**means, "episodes": count}

    def targets(self, state: TrainState, traj: dict, last_value: jax.Array):
        """GAE advantages and value targets; updates the value normaliser (seed 001 §3.7)."""
        cfg = self.cfg
        done = jnp.broadcast_to(traj["done"][..., None], traj["value"].shape).astype(jnp.float32)
        adv, returns = gae(traj["reward"], traj["value"], done, last_value, cfg.gamma, cfg.gae_lambda)
        vn = state.value_norm
        if cfg.value_norm:
            vn = value_norm_update(vn, returns)
            target = value_norm_normalize(vn, returns)
        else:
            target = returns
        mask = traj["active"] if self.n_values == self.n_agents else None
        if cfg.normalize_advantages:
            adv = normalize_advantages(adv, mask)
        return state._replace(value_norm=vn), adv, target, returns

    def collect(self, state: TrainState):
        """Rollout + targets as a ``Batch`` (B = T*E samples, or sequences when recurrent)."""
        state, traj, last_value, metrics = self.rollout(state)
        state, batch = self.make_batch(state, traj, last_value)
        return state, batch, metrics

    def make_batch(self, state: TrainState, traj: dict, last_value: jax.Array) -> tuple[TrainState, Batch]:
        """Targets for a time-major trajectory ``[T, E, ...]``, flattened to a ``Batch``
        (recurrent configs: cut into ``[n_seq, seq_len, ...]`` sequences, see the module docstring)."""
        state, adv, target, returns = self.targets(state, traj, last_value)
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
        fields.update(adv=adv, returns=returns, target=target)
        fields = jax.tree.map(seq, fields)
        hidden = jax.tree.map(lambda x: seq(x)[:, 0], traj["hidden"])  # the state entering each sequence
        return Batch(hidden=hidden, **fields)

    def finish(self, state: TrainState, metrics: dict) -> tuple[TrainState, dict]:
        state = state._replace(update=state.update + 1, env_steps=state.env_steps + self.steps_per_update)
        metrics["env_steps"] = state.env_steps
        return state, metrics

    def update(self, state: TrainState):
        """One iteration on the JAX-native environment: rollout, targets, learning."""
        state, batch, metrics = self.collect(state)
        state, learn_metrics = self.learn(state, batch)
        metrics.update(learn_metrics)
        return self.finish(state, metrics)

    def update_from_trajectory(self, state: TrainState, traj: dict, last_value: jax.Array, metrics: dict):
        """One iteration from a trajectory collected elsewhere (the host rollout loop)."""
        state, batch = self.make_batch(state, traj, last_value)
        state, learn_metrics = self.learn(state, batch)
        metrics = dict(metrics, **learn_metrics)
        return self.finish(state, metrics)

    def learn(self, state: TrainState, batch: Batch):
        raise NotImplementedError

    # ---- gradient epochs -------------------------------------------------------------------
    def sgd(self, loss_fn, apply_fn, params, opt, data, key, epochs: int, minibatches: int):
        """``epochs`` x ``minibatches`` gradient steps of ``loss_fn(params, minibatch) -> (loss, aux)``.

        ``data`` is a pytree with a leading batch axis; ``apply_fn(params, grads, opt) -> (params, opt)``
        applies one optimiser step. Returns the new ``(params, opt)`` and the mean of ``aux``.
        The batch is shuffled once per epoch (one gather) and split by reshaping; with ``sgd_unroll``
        the small loops are unrolled, which XLA on CPU runs faster than a ``while`` loop.
        """
        grad_fn = jax.grad(loss_fn, has_aux=True)
        batch_size = jax.tree.leaves(data)[0].shape[0]
        unroll = bool(self.cfg.sgd_unroll)

        def minibatch_step(carry, mb):
            params, opt = carry
            grads, aux = grad_fn(params, mb)
            return apply_fn(params, grads, opt), aux

        def epoch(carry, k):
            perm = jnp.argsort(jax.random.uniform(k, (batch_size,)))  # one sort: cheaper than random.permutation
            split = lambda x: x[perm].reshape((minibatches, batch_size // minibatches) + x.shape[1:])  # noqa: E731
            return jax.lax.scan(minibatch_step, carry, jax.tree.map(split, data), unroll=unroll)

        (params, opt), aux = jax.lax.scan(epoch, (params, opt), jax.random.split(key, epochs), unroll=unroll)
        return params, opt, jax.tree.map(jnp.mean, aux)

    def apply_actor(self, actor_params, grads, actor_opt):
        pairs = [self.opt_step(self.actor_txs[g], p, gr, o, self.stacked(g)) for g, (p, gr, o) in enumerate(zip(actor_params, grads, actor_opt))]
        return tuple(p for p, _ in pairs), tuple(o for _, o in pairs)

    def apply_critic(self, critic_params, grads, critic_opt):
        if self.cfg.critic == "state":
            return self.opt_step(self.critic_tx, critic_params, grads, critic_opt, False)
        pairs = [self.opt_step(self.critic_tx, p, gr, o, self.stacked(g)) for g, (p, gr, o) in enumerate(zip(critic_params, grads, critic_opt))]
        return tuple(p for p, _ in pairs), tuple(o for _, o in pairs)

    def value_loss(self, critic_params, mb: Batch) -> jax.Array:
        """Squared error to the (normalised) GAE targets, masked for per-agent critics (seed 004 §3.3)."""
        v = self.value(critic_params, mb.obs, mb.state)
        v_mask = mb.active if self.n_values == self.n_agents else None
        return 0.5 * masked_mean(jnp.square(v - mb.target), v_mask)

    def critic_learn(self, state: TrainState, batch: Batch, key: jax.Array, epochs: int, minibatches: int):
        """Fit the critic alone (used after the sequential actor updates of HAPPO/HATRPO)."""
        loss = lambda cp, mb: (self.value_loss(cp, mb), {"loss/value": self.value_loss(cp, mb)})  # noqa: E731
        params, opt, aux = self.sgd(loss, self.apply_critic, state.critic_params, state.critic_opt, batch, key, epochs, minibatches)
        return state._replace(critic_params=params, critic_opt=opt), aux

    # ---- evaluation ------------------------------------------------------------------------
    def eval_actions(self, actor_params: tuple, hidden: tuple, obs: tuple, avail: tuple, done: jax.Array,
                     key: jax.Array, deterministic: bool = True) -> tuple[tuple, tuple]:
        """Actions for evaluation and rendering: ``(env_actions, hidden')``.

        The policy's mode (``deterministic``) or a sample drawn from ``key``; continuous actions are
        clipped to the action box. Recurrent actors advance ``hidden`` (zeroed where ``done``, the
        flag of the step that produced ``obs``); feed-forward ones pass ``()`` through.
        """
        if self.recurrent:
            hidden, dists = self.policy_step(actor_params, hidden, obs, avail, done)
        else:
            dists = self.policy(actor_params, obs, avail)
        if deterministic:
            actions = tuple(dist_mode(kd, d) for kd, d in zip(self.kinds, dists))
        else:
            ks = jax.random.split(key, len(self.groups))
            actions = tuple(dist_sample(kd, d, kk) for kd, d, kk in zip(self.kinds, dists, ks))
        return self.env_actions(actions), hidden

    def evaluate(self, state: TrainState, key: jax.Array, num_episodes: int, deterministic: bool = True) -> jax.Array:
        """Mean team return of ``num_episodes`` fresh episodes (each stopped at its first end)."""
        return self.evaluate_episodes(state, key, num_episodes, deterministic)["episode_return"]

    def evaluate_episodes(self, state: TrainState, key: jax.Array, num_episodes: int, deterministic: bool = True) -> dict:
        """Means over ``num_episodes`` fresh episodes of the return (``episode_return``) and of the env's
        outcomes (``episode_<key>`` for every ``TimeStep.info`` key, e.g. SMAX's ``episode_win_rate``).
        An episode still running after ``env.max_episode_steps`` counts with its return so far."""
        env = self.env
        k_reset, k_run = jax.random.split(key)
        env_state, ts = jax.vmap(env.reset)(jax.random.split(k_reset, num_episodes))

        def step(carry, k):
            (env_state, ts, sums, running), hidden = carry
            actions, hidden = self.eval_actions(state.actor_params, hidden, ts.obs, ts.avail, ts.done, k, deterministic)
            k_env = jax.random.split(jax.random.fold_in(k, 1), num_episodes)
            env_state, ts = jax.vmap(env.step)(k_env, env_state, actions)
            ended = running * ts.done  # the info of the step that ends each episode
            sums = {"episode_return": sums["episode_return"] + running * ts.reward.mean(-1),
                    **{f"episode_{k}": sums[f"episode_{k}"] + ended * v for k, v in ts.info.items()}}
            running = running * (1.0 - ts.done)
            return ((env_state, ts, sums, running), hidden), None

        zeros = {k: jnp.zeros((num_episodes,)) for k in self.episode_metric_names(ts)}
        init = ((env_state, ts, zeros, jnp.ones((num_episodes,))), self.init_hidden((num_episodes,)))
        ((_, _, sums, _), _), _ = jax.lax.scan(step, init, jax.random.split(k_run, env.max_episode_steps))
        return {k: v.mean() for k, v in sums.items()}
