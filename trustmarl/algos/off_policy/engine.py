"""The off-policy engine: replay, the update-to-data schedule, warm-up, exploration and target networks.

Every off-policy algorithm (MADDPG, MATD3, MAAC and the algorithms built on them) is this engine plus
four methods: ``init_networks`` (actors and critics), ``behaviour`` (exploratory actions), ``greedy``
(deterministic actions for evaluation) and ``train_step`` (one gradient step on a sampled batch,
targets included). An algorithm that needs more state (old policies, trust radii, further networks and
their optimisers) returns it from ``init_extra``; it lives in ``state.extra``.
The schedule, as Stable-Baselines3's ``collect_rollouts(train_freq, learning_starts, replay_buffer)``
states it, is: each update, every one of ``num_envs`` env copies takes ``rollout_len`` steps (uniformly
random actions during the first ``warmup_steps`` env steps), the transitions are appended to the
replay buffer in the training state, and once ``learning_starts`` transitions are stored the update
takes ``grad_steps`` gradient steps on batches of ``batch_size`` drawn uniformly from the buffer
(skipped with ``lax.cond`` before that; the update then reports ``diag/learning = 0`` and NaN losses).

A transition (one env copy, one step) holds the observations, available actions and actions of every
group, the behaviour policy's log-probability of each agent's action, every agent's reward, the
*true* next observation and available actions (``final_obs``/``final_avail`` at an auto-reset),
``terminated`` and ``truncated`` separately (time limits bootstrap, terminal states do not) and the
agents' ``active`` flags. The buffer stores each observation once (:class:`trustmarl.replay.Transitions`:
the next observation is the next step's, the true final one kept apart where an episode ended) and
discrete actions in the smallest integer type that holds them; batches are the full transitions above.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from trustmarl import replay
from trustmarl.algos.agents import adam, opt_init, opt_step
from trustmarl.algos.base import (Algorithm, block_key, block_mean, block_sum, env_blocked,
                                  uniform_over_seeds)
from trustmarl.envs.base import TimeStep
from trustmarl.networks import MASKED_LOGIT
from trustmarl.trust.divergence import categorical_kl


def _action_dtype(group) -> Any:
    """Discrete actions: the smallest signed integer type holding ``0 .. n - 1``; others as they are."""
    n = getattr(group.action_space, "n", None)
    if n is None:
        return jnp.float32
    return jnp.int8 if n <= 127 else jnp.int16 if n <= 32767 else jnp.int32


class OffPolicyState(NamedTuple):
    actor_params: tuple  # per group (stacked over the group's agents unless shared)
    critic_params: Any  # the algorithm's critic(s)
    target_actor_params: tuple
    target_critic_params: Any
    actor_opt: tuple
    critic_opt: Any
    buffer: replay.Transitions  # each observation stored once per step (replay.Transitions)
    grad_steps: jax.Array  # gradient steps taken (int32)
    env_state: Any
    last: TimeStep
    episodes: Any
    key: jax.Array
    update: jax.Array
    env_steps: jax.Array
    carry: tuple = ()
    extra: Any = ()  # the algorithm's own state (``init_extra``): old policies, trust radii, further networks


class View(NamedTuple):
    """What acting reads: the actors and the env steps so far (warm-up and noise schedules)."""

    actor_params: tuple
    env_steps: jax.Array


class OffPolicy(Algorithm):
    """The engine; subclasses implement ``init_networks``, ``behaviour``, ``greedy`` and ``train_step``."""

    # metrics of train_step reported from the update's last gradient step instead of their mean over the
    # update's steps (e.g. an index such as MAMT's tightest teammate, whose mean means nothing)
    LAST_STEP_METRICS: frozenset[str] = frozenset()

    def __init__(self, env, cfg, total_updates: int | None = None):
        super().__init__(env, cfg, total_updates, share_params=cfg.share_params, agent_id=cfg.agent_id)
        self.name = cfg.name
        self.capacity = cfg.capacity(total_updates)  # total_updates None: the 1e6 default, uncapped
        self.actor_tx = self.make_tx(cfg.actor_lr, cfg.actor_max_grad_norm, l2=cfg.actor_l2)
        # MAAC/MAMT code: the critic's gradient norm is clipped at 10 x the number of agents
        self.critic_tx = self.make_tx(cfg.critic_lr, cfg.critic_max_grad_norm * self.n_agents, l2=cfg.critic_l2)
        self.noise = optax.linear_schedule(cfg.noise_start, cfg.noise_end, cfg.noise_decay_steps)

    def check_env_blocks(self, blocks: int) -> None:
        """Each block samples ``batch_size / blocks`` transitions from its own part of the buffer."""
        from trustmarl.validation import ConfigError

        super().check_env_blocks(blocks)
        if self.cfg.batch_size % blocks:
            raise ConfigError(f"env_blocks={blocks} must divide algo.batch_size={self.cfg.batch_size} "
                              "(each block samples batch_size/env_blocks transitions from its own env copies)")
        if self.pretrain_request() is not None:
            raise ConfigError(f"env_blocks={blocks}: {self.name} collects data before training, which env blocks "
                              "do not split; use env_blocks=1")

    def block_part(self, blocks: int):
        """The algorithm one env block runs (see :func:`trustmarl.experiment.backends.block_algorithm`): a
        block's batch is ``batch_size / blocks`` transitions."""
        part = super().block_part(blocks)
        part.cfg = dataclasses.replace(self.cfg, batch_size=self.cfg.batch_size // blocks)
        return part

    # ---- the algorithm's part ------------------------------------------------------------------
    def init_networks(self, key: jax.Array) -> tuple[tuple, Any]:
        """``(actor_params per group, critic_params)``."""
        raise NotImplementedError

    def init_extra(self, key: jax.Array, actor_params: tuple, critic_params: Any) -> Any:
        """The algorithm's own state beyond the engine's fields, kept in ``state.extra`` (checkpointed and
        vmapped over seeds with the rest): e.g. a dict of old policies, trust radii, further networks and
        their optimiser states (:meth:`make_tx`). Subclasses extend their parent's dict. Default: ``()``."""
        return ()

    def make_tx(self, lr: float, max_grad_norm: float, l2: float = 0.0):
        """Adam for a further network, with the run's Adam settings (eps, beta1, weight decay): clipped at
        ``max_grad_norm`` (global norm), PyTorch-style ``l2`` added to the gradient after clipping."""
        cfg = self.cfg
        if getattr(cfg, "optimizer", "adam") == "sgd":
            return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.add_decayed_weights(l2), optax.sgd(lr))
        return adam(lr, max_grad_norm, l2=l2, eps=cfg.adam_eps, b1=cfg.adam_b1, weight_decay=cfg.weight_decay)

    def critic_stacked(self) -> bool:
        """Whether the critic parameters have a leading per-agent axis (one optimiser state per agent)."""
        return False

    def behaviour(self, actor_params: tuple, obs: tuple, avail: tuple, key: jax.Array, env_steps) -> tuple[tuple, jax.Array]:
        """Exploratory actions per group and their log-probabilities ``[..., N]`` under the behaviour policy."""
        raise NotImplementedError

    def greedy(self, actor_params: tuple, obs: tuple, avail: tuple) -> tuple:
        """The deterministic policy's actions per group (evaluation)."""
        raise NotImplementedError

    def train_step(self, state: OffPolicyState, batch: dict, key: jax.Array) -> tuple[OffPolicyState, dict]:
        """One gradient step (critics, actors, targets) on a batch ``[B, ...]``; metrics as scalars / ``[N]``."""
        raise NotImplementedError

    def policy_change(self, old_actor: tuple, new_actor: tuple, obs: tuple, avail: tuple) -> dict:
        """How far one update moved each agent's policy on ``obs`` ``[B, ...]``: ``diag/kl_per_agent`` for
        stochastic/discrete policies (exact KL(old || new) of the action distributions)."""
        return {}

    # ---- shared helpers ------------------------------------------------------------------------
    def masked_logits(self, logits: jax.Array, avail: jax.Array) -> jax.Array:
        return jnp.where(avail, logits, MASKED_LOGIT)

    def categorical_kl_per_agent(self, old_logits: tuple, new_logits: tuple, avail: tuple) -> dict:
        """Mean over the batch of KL(old || new) per agent, from per-group logits ``[B, n_g, A]``."""
        kl = [categorical_kl(jax.nn.log_softmax(self.masked_logits(o, a)), jax.nn.log_softmax(self.masked_logits(n, a)), a).mean(0)
              for o, n, a in zip(old_logits, new_logits, avail)]
        kl = jnp.concatenate(kl, axis=-1)
        return {"diag/kl_per_agent": kl, "diag/kl": kl.sum()}

    def update_targets(self, state: OffPolicyState, actors: bool = True) -> OffPolicyState:
        """Soft (Polyak, ``optax.incremental_update``) or hard (``optax.periodic_update``) target updates,
        after ``state.grad_steps`` gradient steps."""
        cfg = self.cfg

        def move(new, old):
            if cfg.target_update == "soft":
                return optax.incremental_update(new, old, cfg.tau)
            return optax.periodic_update(new, old, state.grad_steps, cfg.target_every)

        state = state._replace(target_critic_params=move(state.critic_params, state.target_critic_params))
        if actors:
            state = state._replace(target_actor_params=move(state.actor_params, state.target_actor_params))
        return state

    def apply_critic(self, params, grads, opt):
        grads = block_mean(grads)  # env blocks (run key env_blocks): the gradient of the union of the blocks' batches
        return opt_step(self.critic_tx, params, grads, opt, self.critic_stacked())

    def apply_actors(self, params: tuple, grads: tuple, opt: tuple):
        grads = block_mean(grads)  # env blocks: as in apply_critic
        pairs = [opt_step(self.actor_tx, p, g, o, self.agents.stacked(k)) for k, (p, g, o) in enumerate(zip(params, grads, opt))]
        return tuple(p for p, _ in pairs), tuple(o for _, o in pairs)

    # ---- the engine (Algorithm interface) ----------------------------------------------------------
    def example_transition(self, last: TimeStep) -> dict:
        """One env copy's transition with the right shapes and dtypes (for the empty buffer)."""
        one = lambda x: jnp.zeros(jnp.shape(x)[1:], jnp.result_type(x))  # noqa: E731  drop the [E] axis
        actions = jax.tree.map(one, self.agents.random_actions(jax.random.key(0), last.avail))
        return dict(
            obs=jax.tree.map(one, last.obs), avail=jax.tree.map(one, last.avail), actions=actions,
            logp=jnp.zeros((self.n_agents,)), reward=jnp.zeros((self.n_agents,)),
            next_obs=jax.tree.map(one, last.obs), next_avail=jax.tree.map(one, last.avail),
            terminated=jnp.zeros((), bool), truncated=jnp.zeros((), bool), active=jnp.zeros((self.n_agents,), bool),
        )

    # a transition's successor fields and the step fields they repeat (stored once: replay.Transitions)
    NEXT = {"next_obs": "obs", "next_avail": "avail"}

    def split_transition(self, transition: dict) -> tuple[dict, dict]:
        """``(per-step fields, successor fields)`` of a transition (or a trajectory of them)."""
        step = {k: v for k, v in transition.items() if k not in self.NEXT}
        return step, {v: transition[k] for k, v in self.NEXT.items()}

    def init_buffer(self, example: dict) -> replay.Transitions:
        """The empty buffer: discrete actions in the smallest integer type that holds them, observations in
        the env's ``obs_storage`` dtype when it declares one (both exact), the successor fields in the
        sparse layout when the env's episodes last at least ``min_episode_steps`` >= 4 steps."""
        step, nxt = self.split_transition(example)
        step["actions"] = tuple(a.astype(_action_dtype(g)) for a, g in zip(step["actions"], self.groups))
        storage = getattr(self.env, "obs_storage", None)
        if storage is not None:  # observations the env declares integer-valued: exact in that dtype
            step["obs"], nxt["obs"] = (tuple(o.astype(storage) for o in x) for x in (step["obs"], nxt["obs"]))
        finals = replay.final_capacity(self.capacity, int(getattr(self.env, "min_episode_steps", 1)))
        return replay.init_transitions(step, nxt, self.capacity, self.num_envs, finals)

    def as_batch(self, step: dict, nxt: dict) -> dict:
        """Stored fields (step and successor) as ``transition`` made them: actions and observations back in
        their own dtypes, the successors under their ``next_...`` names."""
        step = dict(step, actions=tuple(a.astype(jnp.int32) if jnp.issubdtype(a.dtype, jnp.integer) else a
                                        for a in step["actions"]))
        step["obs"], obs_next = (tuple(o.astype(jnp.float32) for o in x) for x in (step["obs"], nxt["obs"]))
        nxt = dict(nxt, obs=obs_next)
        return {**step, **{k: nxt[v] for k, v in self.NEXT.items()}}

    def draw(self, buffer: replay.Transitions, key: jax.Array, batch_size: int) -> dict:
        """``batch_size`` transitions ``[B, ...]`` drawn uniformly (as :func:`trustmarl.replay.sample`)."""
        return self.as_batch(*replay.sample_transitions(buffer, key, batch_size))

    def draw_windows(self, buffer: replay.Transitions, key: jax.Array, batch_size: int, length: int) -> dict:
        """``batch_size`` windows of ``length`` consecutive transitions of one env copy ``[B, L, ...]``
        (as :func:`trustmarl.replay.sample_windows`)."""
        return self.as_batch(*replay.sample_transition_windows(buffer, key, batch_size, length))

    def init_state(self, key: jax.Array, last: TimeStep, env_state: Any = None) -> OffPolicyState:
        actor_params, critic_params = self.init_networks(key)
        actor_opt = tuple(opt_init(self.actor_tx, p, self.agents.stacked(g)) for g, p in enumerate(actor_params))
        return OffPolicyState(
            actor_params=actor_params,
            critic_params=critic_params,
            target_actor_params=actor_params,
            target_critic_params=critic_params,
            actor_opt=actor_opt,
            critic_opt=opt_init(self.critic_tx, critic_params, self.critic_stacked()),
            buffer=self.init_buffer(self.example_transition(last)),
            grad_steps=jnp.zeros((), jnp.int32),
            **self.loop_fields(key, last, env_state),
            extra=self.with_pretrain_fields(self.init_extra(jax.random.fold_in(key, 2), actor_params, critic_params), key),
        )

    def progress_postfix(self, row: dict) -> dict[str, str]:
        """``warm-up`` while actions are random, the buffer's fill, ``learning: waiting`` before ``learning_starts``."""
        post = {"warm-up": "on"} if row.get("progress/warmup", 0) > 0 else {}
        if "progress/buffer" in row:
            post["buffer"] = f"{100 * row['progress/buffer']:.0f}%"
        if row.get("diag/learning", 1) == 0:
            post["learning"] = "waiting"
        return post

    def split_bulk(self, state: OffPolicyState):
        """The replay buffer is the bulk: checkpoints save its filled part beside the rest, read to resume.
        Data collected before training (:meth:`pretrain_request`) is saved nowhere: its key is, and the loops
        regenerate it on resume (:meth:`restore_pretrain`)."""
        core = state._replace(buffer=None)
        if isinstance(core.extra, dict) and "pretrain" in core.extra:
            core = core._replace(extra={**core.extra, "pretrain": None})
        return core, state.buffer

    def trim_bulk(self, bulk: replay.Transitions) -> replay.Transitions:
        return replay.filled_transitions(bulk)

    def join_bulk(self, core: OffPolicyState, bulk: replay.Transitions, template: OffPolicyState) -> OffPolicyState:
        finals = None if isinstance(template.buffer.finals, tuple) else jax.tree.leaves(template.buffer.finals)[0].shape[1]
        buf = replay.refill_transitions(bulk, self.capacity, finals)
        core = core._replace(buffer=jax.tree.map(jnp.asarray, buf))
        if isinstance(template.extra, dict) and "pretrain" in template.extra:  # zeros until the loop regenerates it
            core = core._replace(extra={**core.extra, "pretrain": jax.tree.map(lambda t: jnp.zeros(t.shape, t.dtype),
                                                                                 template.extra["pretrain"])})
        return core

    # ---- data collected before training (e.g. the teammate models' random trajectories, Li et al. 2023,
    # Section 5.2 and Appendix G) ----------------------------------------------------------------------
    # An algorithm asks for K trajectories of T uniformly random steps (Algorithm.pretrain_request); both loops collect
    # them before the first update (the JAX-native one in ``init``, the host one in HostTrainer.init) in
    # ``rounds = ceil(K / num_envs)`` rounds of ``num_envs`` freshly reset env copies, count every env step of
    # it in ``state.env_steps`` (so warm-up, evaluation times and the run's env-step total include it), and
    # store it in ``state.extra["pretrain"]``. Checkpoints leave it out; the loops regenerate it on resume from
    # the stored ``state.extra["pretrain_key"]`` (the same key: the same actions; the same env seeds: the same
    # trajectories, bitwise on JAX-native envs).
    def pretrain_rounds(self) -> int:
        k, _ = self.pretrain_request()
        return -(-k // self.num_envs)

    def pretrain_steps(self) -> int:
        """Env steps of one seed's pre-training collection (every copy of every round, T steps each)."""
        return self.pretrain_rounds() * self.num_envs * self.pretrain_request()[1]

    def with_pretrain_fields(self, extra, key: jax.Array):
        """``extra`` plus an empty ``pretrain`` store and its key when the algorithm asks for pre-training data."""
        if self.pretrain_request() is None:
            return extra
        k, t = self.pretrain_request()
        empty = dict(obs=tuple(jnp.zeros((k, t, g.n, g.obs_dim)) for g in self.groups),
                     actions=tuple(jnp.zeros((k, t, g.n), jnp.int32) for g in self.groups), valid=jnp.zeros((k, t), bool))
        if not isinstance(extra, dict) and extra != ():
            raise TypeError(f"{type(self).__name__}: data collected before training lives in a dict state.extra, not {type(extra).__name__}")
        return {**(extra or {}), "pretrain": empty, "pretrain_key": jax.random.fold_in(key, 30)}

    def pretrain_actions(self, key: jax.Array, r, t, avail: tuple) -> tuple:
        """Round ``r``, step ``t``: uniformly random actions ``[E, ...]`` (the same in both loops)."""
        return self.agents.random_actions(jax.random.fold_in(jax.random.fold_in(key, r), t), avail)

    def pack_pretrain(self, obs: tuple, actions: tuple, done: jax.Array) -> dict:
        """Rounds ``[R, T, E, ...]`` of observations, actions and ``done`` flags -> the store ``[K, T, ...]``:
        trajectory ``r * E + e`` is copy ``e`` of round ``r``; ``valid[t]``: step ``t`` is in the first episode."""
        k, t = self.pretrain_request()

        def traj(x):
            x = jnp.swapaxes(x, 1, 2)  # [R, E, T, ...]
            return x.reshape((-1,) + x.shape[2:])[:k]

        done = traj(done)
        valid = jnp.concatenate([jnp.ones((k, 1), bool), ~jnp.cumsum(done, 1, dtype=jnp.int32)[:, :-1].astype(bool)], 1)
        return dict(obs=tuple(traj(o).astype(jnp.float32) for o in obs), actions=tuple(traj(a).astype(jnp.int32) for a in actions),
                    valid=valid)

    def collect_pretrain(self, key: jax.Array) -> dict:
        """The pre-training data of one seed on the JAX-native env (``key``: ``state.extra["pretrain_key"]``)."""
        _, length = self.pretrain_request()
        env, e = self.env, self.num_envs

        def one_round(r):
            k = jax.random.fold_in(key, 10_000 + r)
            env_state, ts = jax.vmap(env.reset)(jax.random.split(jax.random.fold_in(k, 0), e))

            def step(carry, t):
                env_state, last = carry
                a = self.pretrain_actions(key, r, t, last.avail)
                env_state, ts = jax.vmap(env.step)(jax.random.split(jax.random.fold_in(k, t + 1), e), env_state,
                                                   self.agents.env_actions(a))
                return (env_state, ts), (last.obs, a, ts.terminated | ts.truncated)

            return jax.lax.scan(step, (env_state, ts), jnp.arange(length))[1]

        obs, actions, done = jax.lax.map(one_round, jnp.arange(self.pretrain_rounds()))
        return self.pack_pretrain(obs, actions, done)

    def with_pretrain(self, state: OffPolicyState, data: dict, count: bool = True) -> OffPolicyState:
        """``state`` holding the collected ``data``; ``count``: its env steps added to ``state.env_steps``."""
        state = state._replace(extra={**state.extra, "pretrain": data})
        return state._replace(env_steps=state.env_steps + self.pretrain_steps()) if count else state

    def restore_pretrain(self, state: OffPolicyState) -> OffPolicyState:
        """Resume on a JAX-native env: the data regenerated from its key (env steps not counted again)."""
        return self.with_pretrain(state, self.collect_pretrain(state.extra["pretrain_key"]), count=False)

    def init(self, key: jax.Array) -> OffPolicyState:
        """The JAX-native loop's fresh state, with the pre-training data collected (:meth:`pretrain_request`)."""
        state = super().init(key)
        if self.pretrain_request() is None:
            return state
        return self.with_pretrain(state, self.collect_pretrain(state.extra["pretrain_key"]))

    def policy_view(self, state: OffPolicyState) -> View:
        return View(state.actor_params, state.env_steps)

    def act(self, view: View, carry, last: TimeStep, key: jax.Array):
        """Uniformly random valid actions during warm-up, the behaviour policy after it."""
        k_random, k_policy = jax.random.split(key)
        actions, logp = self.behaviour(view.actor_params, last.obs, last.avail, k_policy, view.env_steps)
        random = self.agents.random_actions(k_random, last.avail)
        warm = view.env_steps < self.cfg.warmup_steps
        actions = tuple(jnp.where(warm, r, a) for r, a in zip(random, actions))
        logp = jnp.where(warm, self.agents.random_log_prob(last.avail), logp)
        return self.agents.env_actions(actions), (actions, logp), carry

    def transition(self, view: View, last: TimeStep, ts: TimeStep, act_out) -> dict:
        actions, logp = act_out
        return dict(
            obs=last.obs, avail=last.avail, actions=actions, logp=logp, reward=ts.reward,
            next_obs=ts.final_obs, next_avail=ts.final_avail, terminated=ts.terminated, truncated=ts.truncated,
            active=last.active,
        )

    def prepare(self, batch: dict, reward_stats) -> dict:
        """Rewards as the algorithm learns from them: scaled, and normalised by the buffer's statistics."""
        reward = batch["reward"] * self.cfg.reward_scale
        if self.cfg.reward_norm:
            mean, std = reward_stats
            reward = (reward - mean * self.cfg.reward_scale) / (std * self.cfg.reward_scale)
        return dict(batch, reward=reward)

    def sample_batch(self, buffer: replay.Transitions, key: jax.Array, reward_stats) -> dict:
        """One gradient step's batch ``[B, ...]``: uniform transitions with prepared rewards. Algorithms that
        learn from several consecutive steps (n-step returns, recurrent agents) override it."""
        return self.prepare(self.draw(buffer, key, self.cfg.batch_size), reward_stats)

    def learn(self, state: OffPolicyState, traj: dict):
        """Store the rollout, then ``grad_steps`` gradient steps once ``learning_starts`` transitions are stored."""
        cfg = self.cfg
        step, nxt = self.split_transition(traj)
        buffer = replay.insert_transitions(state.buffer, step, nxt, traj["terminated"] | traj["truncated"])
        key, k_learn, k_diag = jax.random.split(state.key, 3)
        stored = buffer.steps.size * self.num_envs
        combine = block_sum if env_blocked() else None  # env blocks: the statistics of all blocks' buffers
        stats = replay.field_mean_std(buffer.steps, buffer.steps.data["reward"], combine=combine) if cfg.reward_norm else None
        # the buffer is read, never written, while learning: keep it out of the cond and scan carries
        learner = state._replace(buffer=None, key=key)

        def learning(learner):
            def step(st, k):
                k_batch, k_train = jax.random.split(k)
                batch = self.sample_batch(buffer, block_key(k_batch), stats)  # env blocks: each from its own buffer
                st, metrics = self.train_step(st, batch, k_train)
                return st._replace(grad_steps=st.grad_steps + 1), metrics

            old_actor = learner.actor_params
            learner, metrics = jax.lax.scan(step, learner, jax.random.split(k_learn, cfg.grad_steps))
            metrics = {k: m[-1] if k in self.LAST_STEP_METRICS else jnp.nanmean(m, 0)  # over the update's gradient
                       for k, m in metrics.items()}  # steps (NaN: no actor step)
            probe = self.draw(buffer, block_key(k_diag), min(cfg.batch_size, 256))
            metrics.update(self.policy_change(old_actor, learner.actor_params, probe["obs"], probe["avail"]))
            return learner, metrics

        def waiting(learner):
            shapes = jax.eval_shape(lambda s: learning(s)[1], learner)
            return learner, jax.tree.map(lambda a: jnp.full(a.shape, jnp.nan, a.dtype), shapes)

        # every seed stores as many transitions: one branch for all (under vmap a batched predicate would
        # turn the cond into a select, computing the gradient steps before learning_starts and dropping them)
        ready = uniform_over_seeds(block_sum(stored) >= jnp.maximum(cfg.learning_starts, 1))  # env blocks: all copies
        learner, metrics = jax.lax.cond(ready, learning, waiting, learner)
        state = learner._replace(buffer=buffer)
        metrics["diag/learning"] = ready.astype(jnp.float32)
        metrics["diag/grad_steps"] = state.grad_steps
        metrics["progress/buffer"] = stored / (self.capacity * self.num_envs)
        metrics["progress/warmup"] = (state.env_steps < cfg.warmup_steps).astype(jnp.float32)
        return state, metrics

    def eval_actions(self, view: View, carry, obs: tuple, avail: tuple, done: jax.Array, key: jax.Array,
                     deterministic: bool = True):
        if deterministic:
            actions = self.greedy(view.actor_params, obs, avail)
        else:
            actions, _ = self.behaviour(view.actor_params, obs, avail, key, view.env_steps)
        return self.agents.env_actions(actions), carry
