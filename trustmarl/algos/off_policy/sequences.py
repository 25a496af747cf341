"""Recurrent agents and sequence replay for the off-policy family (value decomposition and actor-critic alike).

Recurrent agents (``recurrent=true``: MLP encoder, GRU of ``gru_size`` units, a feed-forward head; the on-policy
family's :class:`~trustmarl.networks.RecurrentActor`) act with a hidden state per agent, reset where an episode
starts, and store with every transition the hidden state that entered the step and whether the step starts an
episode (``first``). They learn from sequences of one env copy, ``batch_size`` of them per gradient step:

- ``sequences=windows``: ``seq_len`` consecutive steps from anywhere (across episode starts, where the hidden state
  is reset as while acting), unrolled from the hidden state stored at the window's start (R2D2's "stored state",
  Kapturowski et al. 2019), after ``burn_in`` steps before the window unrolled without gradient (R2D2's burn-in);
- ``sequences=episodes``: ``seq_len`` steps from a stored episode's first step (a zero hidden state), the steps
  after the episode's end being padding (``valid`` false) that add nothing to any loss or gradient (pymarl's
  episode batches, padded to the episode limit).

The outputs at a step's successor ``o'_t`` are one more step of the network from the hidden state after ``o_t``
(exact at truncations, whose final observation is stored apart). This module holds what both families share: the
configuration fields and their checks (:class:`SequenceFields`, :class:`EpsilonFields`), window and episode
sampling, hidden-state storing and resetting, padding masks and masked means (:class:`SequenceAgents`).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from trustmarl import replay
from trustmarl.algos.base import block_mean
from trustmarl.validation import ConfigError, in_range, non_negative_int, positive_int


@dataclasses.dataclass
class SequenceFields:
    """Configuration of recurrent agents and the sequences they learn from (a mixin of an off-policy config)."""

    recurrent: bool = False  # GRU agents learning from sequences of seq_len consecutive steps (pymarl's RNN agent)
    gru_size: int = 64  # GRU width of recurrent agents (pymarl: 64)
    seq_len: int = 16  # steps per sampled sequence learned from (batch_size sequences per gradient step)
    burn_in: int = 0  # recurrent agents: steps before each window unrolled without gradient from the stored hidden state (R2D2)
    sequences: str = "windows"  # recurrent agents' samples: windows (seq_len steps from anywhere, across episodes) | episodes (from an episode's first step, padded after its end: pymarl)

    # the algorithms (config ``name``) with recurrent agents; a descendant not listed refuses recurrent=true
    RECURRENT_ALGOS = ()

    @property
    def windows(self) -> bool:
        """Whether batches are sequences of consecutive steps."""
        return bool(self.recurrent)

    @property
    def window_len(self) -> int:
        """Steps per sampled window: the burn-in, then the ``seq_len`` steps learned from."""
        return self.burn_in + self.seq_len

    def validate_sequences(self) -> None:
        """The checks of the sequence fields (after the algorithm's own checks of what excludes them)."""
        positive_int(self, "gru_size", "seq_len")
        non_negative_int(self, "burn_in")
        if self.recurrent and self.RECURRENT_ALGOS and self.name not in self.RECURRENT_ALGOS:
            raise ConfigError(f"algo.recurrent=true is not available yet for {self.name} (recurrent agents: "
                              f"{', '.join(self.RECURRENT_ALGOS)})")
        if self.burn_in and not self.recurrent:
            raise ConfigError(f"algo.burn_in={self.burn_in} needs algo.recurrent=true (it warms up a hidden state)")
        if self.sequences == "episodes" and (not self.recurrent or self.burn_in):
            raise ConfigError("algo.sequences=episodes needs algo.recurrent=true and algo.burn_in=0 (an episode starts "
                              "from a zero hidden state)")
        if self.burn_in >= self.seq_len:
            raise ConfigError(f"algo.burn_in={self.burn_in} must be shorter than the window algo.seq_len={self.seq_len} "
                              "(steps unrolled without gradient before the steps learned)")
        if self.windows and self.learning_starts < self.window_len * self.num_envs:
            raise ConfigError(f"algo.learning_starts={self.learning_starts} must be >= (algo.burn_in+algo.seq_len)*"
                              f"algo.num_envs={self.window_len * self.num_envs} (a window per env copy)")
        if self.windows and 0 < self.buffer_size < self.batch_size * self.window_len:
            raise ConfigError(f"algo.buffer_size={self.buffer_size} cannot hold one batch of sequences: it must be >= "
                              f"algo.batch_size*(algo.burn_in+algo.seq_len)={self.batch_size * self.window_len} transitions")

    def check_env(self, env) -> None:
        """Sequences no longer than the env's episodes (then the checks of the config's other bases)."""
        self.check_sequences_env(env, env_label(env))
        parent = getattr(super(), "check_env", None)
        if parent is not None:
            parent(env)

    def check_sequences_env(self, env, label: str) -> None:
        """Sequences no longer than the env's episodes."""
        limit = getattr(env, "max_episode_steps", None)
        if self.windows and limit is not None and self.window_len > int(limit):
            what = f"algo.burn_in+algo.seq_len={self.window_len}" if self.burn_in else f"algo.seq_len={self.seq_len}"
            raise ConfigError(f"{what} is longer than the episodes of {label} "
                              f"(at most {int(limit)} steps); choose at most {int(limit)} steps")


def env_label(env) -> str:
    """The registered name of ``env`` (its class name if it has none)."""
    from trustmarl.envs import registry

    names = [n for n, (f, _) in registry._REGISTRY.items() if f is type(env)]
    return names[0] if names else getattr(env, "name", None) or type(env).__name__


@dataclasses.dataclass
class EpsilonFields:
    """A linear epsilon schedule in env steps: the probability of a uniformly random available action."""

    epsilon_start: float = 0.0  # probability of a uniform available action before epsilon_anneal_start (discrete actors)
    epsilon_end: float = 0.0  # ... from epsilon_anneal_end on (linear in between)
    epsilon_anneal_start: int = 0  # env step at which epsilon starts to fall
    epsilon_anneal_end: int = 50_000  # env step at which epsilon reaches epsilon_end (pymarl: 50000)

    @property
    def explores_uniformly(self) -> bool:
        """Whether epsilon is ever above zero (otherwise acting is the policy's own)."""
        return self.epsilon_start > 0 or self.epsilon_end > 0

    def validate_epsilon(self) -> None:
        in_range(self, "epsilon_start", 0.0, 1.0)
        in_range(self, "epsilon_end", 0.0, 1.0)
        non_negative_int(self, "epsilon_anneal_start", "epsilon_anneal_end")
        if self.epsilon_anneal_end <= self.epsilon_anneal_start:
            raise ConfigError(
                f"algo.epsilon_anneal_end={self.epsilon_anneal_end} must come after algo.epsilon_anneal_start="
                f"{self.epsilon_anneal_start} (env steps at which epsilon starts and stops falling)"
            )


def epsilon_schedule(cfg, env_steps) -> jax.Array:
    """Linear from ``epsilon_start`` (up to ``epsilon_anneal_start``) to ``epsilon_end`` (from ``epsilon_anneal_end``)."""
    frac = (env_steps - cfg.epsilon_anneal_start) / (cfg.epsilon_anneal_end - cfg.epsilon_anneal_start)
    return cfg.epsilon_start + jnp.clip(frac, 0.0, 1.0) * (cfg.epsilon_end - cfg.epsilon_start)


def epsilon_mixture(key, logp: jax.Array, avail: jax.Array, random: jax.Array, eps) -> tuple[jax.Array, jax.Array]:
    """With probability ``eps`` the uniformly random available action ``random``, else a sample of the policy
    ``log pi`` ``[..., A]`` (unavailable actions at probability 0); returns the actions and their log-probability
    under the mixture ``eps / |available| + (1 - eps) pi(a)`` (the behaviour policy the buffer stores)."""
    k_pick, k_pi = jax.random.split(key)
    policy = jax.random.categorical(k_pi, logp).astype(jnp.int32)
    act = jnp.where(jax.random.uniform(k_pick, policy.shape) < eps, random, policy)
    n_avail = jnp.maximum(avail.sum(-1), 1)
    pi_a = jnp.exp(jnp.take_along_axis(logp, act[..., None], -1)[..., 0])
    return act, jnp.log(eps / n_avail + (1.0 - eps) * pi_a)


def expand(x: jax.Array, like: jax.Array) -> jax.Array:
    """``x`` with trailing axes added to broadcast against ``like`` (``[B, L]`` against ``[B, L, N]``)."""
    return x.reshape(x.shape + (1,) * (like.ndim - x.ndim))


def episode_window_indices(first: jax.Array, pos, size, key, batch_size: int, length: int) -> tuple[jax.Array, jax.Array]:
    """Times ``[B, L]`` and copies ``[B, 1]`` of windows of a ring buffer ``[C, E]`` that start at an episode's
    first step (``first``) and lie in the filled part without crossing the write position; uniform over such
    starts (over every fitting start while none is an episode's first step)."""
    c = first.shape[0]
    age = (pos - 1 - jnp.arange(c)) % c  # 0: the newest step
    fits = ((age >= length - 1) & (age < size))[:, None]  # [C, 1]
    starts = jnp.logical_and(first, fits)
    ok = jnp.where(jnp.any(starts), starts, jnp.broadcast_to(fits, first.shape))
    # uniform over the allowed slots by the inverse CDF: O(C E + B log(C E)); a categorical draw of B samples costs B C E
    cdf = jnp.cumsum(ok.reshape(-1).astype(jnp.int32))
    u = jax.random.randint(key, (batch_size,), 0, jnp.maximum(cdf[-1], 1))
    flat = jnp.searchsorted(cdf, u, side="right")
    t0, e = flat // first.shape[1], flat % first.shape[1]
    return (t0[:, None] + jnp.arange(length)[None, :]) % c, e[:, None]


def within_episode(done: jax.Array) -> jax.Array:
    """``[B, L]``: the steps of a window up to and including its first episode end (the rest is padding)."""
    return (jnp.cumsum(done, axis=1) - done) == 0


def masked_mean(x: jax.Array, valid=None) -> jax.Array:
    """The mean of ``x`` over the entries whose leading axes are ``valid`` (all without a mask)."""
    if valid is None:
        return jnp.mean(x)
    w = jnp.broadcast_to(expand(valid.astype(x.dtype), x), x.shape)
    return jnp.sum(x * w) / jnp.maximum(jnp.sum(w), 1.0)


def batch_mean(x: jax.Array, weight=None, axis=0) -> jax.Array:
    """The mean of ``x`` over its batch ``axis``, over the samples whose ``weight`` ``[B]`` is true (padded steps
    excluded: ``jnp.where``, so that nothing of theirs, not even a NaN, reaches the mean or its gradient). A ``weight``
    with more axes (one batch per agent, e.g. ``[N, B]``) lies along ``x``'s leading axes, ``axis`` among them. Env
    blocks: the block's sum over the blocks' mean count of valid samples (as :func:`trustmarl.algos.agents.masked_mean`),
    so that the mean over blocks of losses (through their gradients) and metrics is over all blocks' valid samples."""
    if weight is None:
        return jnp.mean(x, axis=axis)
    if weight.ndim > 1:
        w = jnp.broadcast_to(expand(weight, x), x.shape)
        return jnp.sum(jnp.where(w, x, 0.0), axis=axis) / jnp.maximum(block_mean(jnp.sum(w, axis=axis).astype(jnp.float32)), 1)
    shape = [1] * x.ndim
    shape[axis] = -1
    w = weight.reshape(shape)
    return jnp.sum(jnp.where(w, x, 0.0), axis=axis) / jnp.maximum(block_mean(jnp.sum(weight).astype(jnp.float32)), 1)


def reset_hidden(hidden: tuple, done: jax.Array) -> tuple:
    """Per group ``[..., n_g, H]`` hidden states, zeroed where ``done`` ``[...]`` (a new episode starts)."""
    return tuple(jnp.where(done[..., None, None], 0.0, h) for h in hidden)


def time_major(tree):
    """``[B, L, ...]`` <-> ``[L, B, ...]``."""
    return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), tree)


def successor_outputs(step, out: tuple, hidden: tuple, batch: dict) -> tuple:
    """The outputs at ``next_obs`` ``[B, L, ...]`` from the unroll's outputs ``out`` and hidden states after each step
    ``hidden`` (both ``[B, L, ...]``): ``out[t + 1]`` where step ``t`` did not end the episode (the same input and
    hidden state), one extra ``step`` at the window's last step and at its first truncated step (2 of the L steps)."""
    b = jnp.arange(batch["truncated"].shape[0])
    last = batch["truncated"].shape[1] - 1
    cut = jnp.logical_and(batch["truncated"], jnp.logical_not(batch["terminated"])).at[:, last].set(False)
    k = jnp.where(jnp.any(cut, 1), jnp.argmax(cut, 1), last)  # [B] the first truncation (else the last step again)
    at = lambda x: jnp.stack([x[b, k], x[:, last]])  # noqa: E731  [2, B, ...]
    extra = step(jax.tree.map(at, hidden), jax.tree.map(at, batch["next_obs"]), jax.tree.map(at, batch["next_avail"]),
                 jnp.zeros((2, b.shape[0]), bool))[1]

    def place(o, e):
        nxt = jnp.concatenate([o[:, 1:], e[1][:, None]], 1)  # out[t + 1]; the window's last step: its extra step
        return nxt.at[b, k].set(e[0])  # the first truncation: its extra step (k = last: the same value again)

    return jax.tree.map(place, out, extra)


class FeedForwardHead(nn.Module):
    """A feed-forward head (e.g. ``LogitsActor`` or ``DeterministicActor`` with ``hidden_sizes=()``) called as
    :class:`~trustmarl.networks.RecurrentActor` calls its head, ``(y, avail)``; the mask is applied by the caller."""

    head: nn.Module

    def __call__(self, y, avail):
        return self.head(y)


class SequenceAgents:
    """Mixin of an off-policy algorithm (before :class:`~trustmarl.algos.off_policy.engine.OffPolicy` in the bases)
    with recurrent agents: acting with a carried hidden state, storing it, sampling sequences and unrolling them.

    The algorithm gives ``self.recurrent``, ``self.agent_nets`` (one ``RecurrentActor`` per group when recurrent) and
    :meth:`explore` / :meth:`greedy_outputs` (how the networks' outputs act); with ``recurrent`` false every method
    falls through to the engine's."""

    recurrent: bool = False

    # ---- networks ------------------------------------------------------------------------------
    def agent_inputs(self, g: int) -> tuple:
        """Dummy inputs initialising group ``g``'s network: ``(hidden, obs, avail, reset)`` or ``(obs,)``."""
        ag = self.agents
        if not self.recurrent:
            return (ag.dummy_obs(g),)
        n = self.groups[g].n
        return jnp.zeros((n, self.cfg.gru_size)), ag.dummy_obs(g), ag.dummy_avail(g), jnp.zeros((n, 1), bool)

    def agent_step(self, params, hidden: tuple, obs: tuple, avail: tuple, reset: jax.Array) -> tuple[tuple, tuple]:
        """One step of every group's recurrent network: ``(hidden', outputs)`` per group from ``hidden``
        ``[..., n_g, H]`` (zeroed first where ``reset`` ``[...]``); outputs as the head gives them."""
        ag, hs, outs = self.agents, [], []
        for g, net in enumerate(self.agent_nets):
            r = jnp.broadcast_to(reset[..., None, None], hidden[g].shape[:-1] + (1,))
            h, out = ag.apply(net, params[g], g, hidden[g], ag.with_id(g, obs[g]), avail[g], r)
            hs.append(h)
            outs.append(out)
        return tuple(hs), tuple(outs)

    def unroll(self, step, batch: dict, with_next: bool = True,
               successor: bool = False) -> tuple[tuple, tuple | None]:
        """Per group the outputs of ``step(hidden, obs, avail, reset) -> (hidden', out)`` over sequences ``[B, L, ...]``
        at ``obs`` and (``with_next``) at ``next_obs``, unrolled from the stored hidden state at their start, or
        after the ``burn`` steps before them unrolled without gradient (R2D2's burn-in, Kapturowski et al. 2019).

        The outputs at ``next_obs_t`` are one more step from the hidden state after ``obs_t``. ``successor=False``
        takes that step at every ``t`` (exact everywhere: two steps per step). ``successor=True`` takes it only
        where it differs from the unroll's own next step (:func:`successor_outputs`): within an episode
        ``next_obs_t`` is ``obs_{t+1}`` and the hidden state is the same, so the output there is reused; the extra
        step is taken at the window's last step and at its first truncation (where the episode's final observation
        is not the next stored one). A terminated step's next output is then the next episode's first (never
        bootstrapped: the discount is 0), as is a second truncation in one window, which a window no longer than
        the env's episodes (validated where the env has a limit) never holds."""

        def body(h, x):
            obs, avail, first, next_obs, next_avail = x
            h, out = step(h, obs, avail, first)
            if successor:  # the hidden state after the step, for the few extra steps after the scan
                return h, (out, h)
            out_next = step(h, next_obs, next_avail, jnp.zeros_like(first))[1] if with_next else ()
            return h, (out, out_next)

        # the hidden state entering the window: stored, or warmed up on the burn-in steps without gradient
        h0 = jax.lax.stop_gradient(self.warm_up_with(step, batch["burn"])) if "burn" in batch else tuple(
            h[:, 0] for h in batch["hidden"])
        xs = time_major((batch["obs"], batch["avail"], batch["first"], batch["next_obs"], batch["next_avail"]))
        _, (out, aux) = jax.lax.scan(body, h0, xs)
        out = time_major(out)
        if not with_next:
            return out, None
        if successor:
            return out, successor_outputs(step, out, time_major(aux), batch)
        return out, time_major(aux)

    def warm_up_with(self, step, steps: dict) -> tuple:
        """The hidden states ``[B, n_g, H]`` after unrolling windows ``[B, L, ...]`` from their stored hidden state."""
        return jax.lax.scan(lambda h, x: (step(h, *x)[0], None), tuple(h[:, 0] for h in steps["hidden"]),
                            time_major((steps["obs"], steps["avail"], steps["first"])))[0]

    # ---- acting --------------------------------------------------------------------------------
    def explore(self, outputs: tuple, avail: tuple, key, env_steps):
        """Exploratory actions per group from the networks' outputs and their log-probability ``[..., N]``."""
        raise NotImplementedError

    def greedy_outputs(self, outputs: tuple, avail: tuple) -> tuple:
        """The deterministic actions per group from the networks' outputs."""
        raise NotImplementedError

    def init_carry(self, batch_shape):
        return tuple(jnp.zeros(tuple(batch_shape) + (g.n, self.cfg.gru_size)) for g in self.groups) if self.recurrent else ()

    def act(self, view, carry, last, key):
        """Recurrent agents: the engine's acting (uniform during warm-up) with the hidden state carried and reset
        where ``last`` starts an episode; the hidden state entering the step is stored with the transition."""
        if not self.recurrent:
            return super().act(view, carry, last, key)
        return self.act_with_outputs(view, carry, last, key)[:3]

    def act_with_outputs(self, view, carry, last, key):
        """Recurrent agents' :meth:`act` plus the networks' outputs of the step it took, for a subclass that stores
        more of them (F2A2's behaviour log-probability vectors) without tracing a second step (XLA's common-subexpression
        elimination would merge the two in the compiled program, but the traced program would hold both)."""
        k_random, k_policy = jax.random.split(key)
        h_in = reset_hidden(carry, last.done)
        h_out, out = self.agent_step_outputs(view.actor_params, h_in, last.obs, last.avail, jnp.zeros_like(last.done))
        actions, logp = self.explore(out, last.avail, k_policy, view.env_steps)
        warm = view.env_steps < self.cfg.warmup_steps
        actions = tuple(jnp.where(warm, r, a) for r, a in zip(self.agents.random_actions(k_random, last.avail), actions))
        logp = jnp.where(warm, self.agents.random_log_prob(last.avail), logp)
        return self.agents.env_actions(actions), (actions, logp, h_in), h_out, out

    def agent_step_outputs(self, params, hidden, obs, avail, reset):
        """The step acting and learning read (value decomposition: masked utilities). Default: :meth:`agent_step`."""
        return self.agent_step(params, hidden, obs, avail, reset)

    def eval_actions(self, view, carry, obs, avail, done, key, deterministic=True):
        if not self.recurrent:
            return super().eval_actions(view, carry, obs, avail, done, key, deterministic)
        h_out, out = self.agent_step_outputs(view.actor_params, reset_hidden(carry, done), obs, avail, jnp.zeros_like(done))
        if deterministic:
            actions = self.greedy_outputs(out, avail)
        else:
            actions = self.explore(out, avail, key, view.env_steps)[0]
        return self.agents.env_actions(actions), h_out

    def single_step(self, params, obs: tuple, avail: tuple) -> tuple:
        """Recurrent agents' outputs at ``obs`` from a zero hidden state (probes, policy-change diagnostics)."""
        lead = obs[0].shape[:-2]
        return self.agent_step_outputs(params, self.init_carry(lead), obs, avail, jnp.zeros(lead, bool))[1]

    # ---- transitions and batches ---------------------------------------------------------------
    def example_transition(self, last):
        out = super().example_transition(last)
        if self.recurrent:
            out.update(hidden=self.init_carry(()), first=jnp.zeros((), bool))
        return out

    def transition(self, view, last, ts, act_out):
        out = super().transition(view, last, ts, act_out[:2])
        if self.recurrent:  # the hidden state that entered the step; first: the step starts an episode
            out.update(hidden=act_out[2], first=last.done)
        return out

    def sample_sequences(self, buffer: replay.Transitions, key, reward_stats) -> dict:
        """``batch_size`` sequences ``[B, L, ...]`` with prepared rewards: from an episode's first step with the
        padding after its end marked (``valid``), or windows whose first ``burn_in`` steps (``burn``) only warm
        the hidden state up."""
        cfg = self.cfg
        if cfg.sequences == "episodes":  # from an episode's first step; the steps after its end are padding
            steps = buffer.steps
            t, e = episode_window_indices(steps.data["first"], steps.pos, steps.size, key, cfg.batch_size, cfg.seq_len)
            got = replay.gather_transitions(buffer, t.reshape(-1), jnp.broadcast_to(e, t.shape).reshape(-1))
            window = self.prepare(self.as_batch(*jax.tree.map(lambda x: x.reshape(t.shape + x.shape[1:]), got)), reward_stats)
            window["valid"] = within_episode(jnp.logical_or(window["terminated"], window["truncated"]))
            return window
        # windows [B, burn_in + seq_len, ...]; the burn-in steps only warm the hidden state up
        window = self.prepare(self.draw_windows(buffer, key, cfg.batch_size, cfg.window_len), reward_stats)
        if cfg.burn_in:
            part = lambda lo, hi: {k: jax.tree.map(lambda x: x[:, lo:hi], v) for k, v in window.items()}  # noqa: E731
            window = dict(part(cfg.burn_in, None), burn=part(0, cfg.burn_in))
        return window

    def sample_flat_sequences(self, buffer: replay.Transitions, key, reward_stats) -> dict:
        """Sequences (:meth:`sample_sequences`) as a batch of ``B * L`` transitions ``[B L, ...]`` for feed-forward
        critics, with the sequences themselves under ``seq`` (what the recurrent actors unroll) and ``weight``
        ``[B L]``: false on padded steps, which then add nothing to any loss (:func:`batch_mean`)."""
        window = self.sample_sequences(buffer, key, reward_stats)
        seq_keys = ("obs", "avail", "first", "next_obs", "next_avail", "hidden", "burn")
        seq = {k: v for k, v in window.items() if k in seq_keys}
        steps = {k: v for k, v in window.items() if k not in ("burn", "hidden", "first", "valid")}
        flat = jax.tree.map(lambda x: x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:]), steps)
        valid = window.get("valid", jnp.ones(window["terminated"].shape, bool))
        return dict(flat, seq=seq, weight=valid.reshape(valid.shape[0] * valid.shape[1]))

    def steps_weight(self, batch: dict):
        """Which of the batch's steps count in ``[B, N]`` per-agent terms (padded steps do not; ``None``: all): ``[B]``
        (F2A2's per-agent batches: ``[B, N]``)."""
        return batch.get("weight")

    def group_weight(self, w, g: int):
        """:meth:`steps_weight` ``w`` for group ``g``'s ``[B, n_g]`` terms."""
        return w

    def flatten_outputs(self, outputs: tuple) -> tuple:
        """Per group ``[B, L, ...]`` outputs (pytrees) as ``[B L, ...]``, the layout of :meth:`sample_flat_sequences`."""
        return jax.tree.map(lambda x: x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:]), outputs)
