"""Deep Q-learning for teams: the shared base of IQL, VDN, QMIX and QTRAN on the off-policy engine.

Every agent ``i`` has a utility ``Q_i(o_i, .)`` (one output per action; parameters shared within a group
of agents with the same spaces, a one-hot agent id appended, or one network per agent); it acts
epsilon-greedily on the available actions, with epsilon falling linearly in env steps. A method is then
one choice of *mixer*, how the chosen utilities make the value the TD loss is taken on
(:meth:`QLearning.mix`): none (IQL), their sum (VDN), a monotonic hypernetwork of the global state
(QMIX); QTRAN replaces the loss (:mod:`trustmarl.algos.off_policy.qtran`). Per gradient step on a batch:

    y = R + gamma^k (1 - terminated) Q_tot^-(s', a'),  a'_i = argmax_{a available} Q_i(o'_i, a)
    L = E[(Q_tot(s, a) - y)^2]

- double Q (van Hasselt et al. 2016, eq. 4): ``a'`` is the argmax of the *online* utilities and the value
  that of the *target* networks (``double_q=false``: the max of the target utilities); unavailable actions
  are never the argmax;
- ``R``: the team reward, the sum (Wen et al. 2021, Table 4) or mean of the agents' rewards, over
  ``k = n_steps`` steps (fewer when the episode ends inside the window); a truncated episode bootstraps
  from its last observation, a terminated one does not;
- target networks: hard copies every ``target_every`` gradient steps (Wen et al. 2021, Table 4: 200) or Polyak;
- recurrent agents (``recurrent=true``, pymarl's RNN agent: MLP, GRU of ``gru_size``, linear head; the machinery shared
  with the actor-critic methods is :mod:`trustmarl.algos.off_policy.sequences`) act with a
  hidden state per agent, reset where an episode starts, and store the hidden state that entered each step;
  they learn from windows of ``seq_len`` consecutive steps of one env copy (``batch_size`` windows), unrolled
  from the stored hidden state at the window's start (R2D2's "stored state", Kapturowski et al. 2019), after
  ``burn_in`` steps before the window unrolled without gradient (R2D2's burn-in); the utilities of ``o'_t`` are
  one more GRU step from the hidden state after ``o_t``: the unroll's own step ``t + 1`` within an episode, an extra
  step at the window's last step and at a truncation (exact there too; ``SequenceAgents.unroll(successor=True)``);
- one online pass per gradient step: the loss's utilities (with gradient) also give the double-Q argmax at ``o'``
  (without gradient), so recurrent agents unroll the online network once and the target network once;
- TD(lambda) (``td_lambda > 0``, feed-forward or recurrent agents): windows of ``seq_len`` steps, each step's
  target the lambda-return of the one-step targets above (:func:`lambda_returns`), cut at episode ends.

Environments whose agents have their own objectives (``cooperative = False``: general-sum games) have no
team reward: the mixing methods refuse them, and IQL learns from each agent's own reward
(``team_reward=individual``).
"""

from __future__ import annotations

import dataclasses
import typing

import flax.linen as nn
import jax
import jax.numpy as jnp

from trustmarl.algos.agents import AgentGroups
from trustmarl.algos.off_policy.config import OffPolicyConfig
from trustmarl.algos.off_policy.engine import OffPolicy, OffPolicyState
from trustmarl.algos.off_policy.sequences import (EpsilonFields, SequenceAgents, SequenceFields, env_label,  # noqa: F401
                                                  episode_window_indices,
                                                  epsilon_schedule, expand, masked_mean, reset_hidden, within_episode)
from trustmarl.networks import Dense, LogitsActor, RecurrentActor, orthogonal
from trustmarl.validation import ConfigError, in_range, positive_int

NO_NOISE = "Q-learning explores epsilon-greedily (algo.epsilon_*), not with action noise"


@dataclasses.dataclass
class QLearningConfig(OffPolicyConfig, SequenceFields, EpsilonFields):
    """Hyperparameters shared by the Q-learning methods (pymarl's settings where Wen et al. 2021 are silent)."""

    name: str = "iql"
    num_envs: int = 8  # env copies per seed, stepped together
    rollout_len: int = 8  # env steps per copy between two learning phases
    buffer_size: int = 100_000  # transitions over all env copies of one seed
    batch_size: int = 128  # transitions per gradient step
    grad_steps: int = 1  # gradient steps per update
    learning_starts: int = 1000  # stored transitions needed before the first gradient step
    target_update: str = "hard"  # hard: copy every target_every gradient steps | soft: Polyak tau every step
    target_every: int = 200  # gradient steps between hard target copies (Wen et al. 2021, Table 4)
    actor_lr: float = 5e-4  # Adam step size of the agents' Q-networks
    critic_lr: float = 5e-4  # Adam step size of the mixer (QMIX) or of the joint networks (QTRAN)
    actor_max_grad_norm: float = 10.0  # global-norm gradient clip of the Q-networks (pymarl: 10)
    critic_max_grad_norm: float = 10.0  # global-norm gradient clip of the mixer / joint networks (not times n)
    share_params: bool | str = "auto"  # auto: one Q-network per group of agents with the same spaces | true | false: one per agent
    agent_id: bool = True  # with shared Q-networks: append a one-hot agent id (within the group)
    epsilon_start: float = 1.0  # probability of a random (available) action before epsilon_anneal_start
    epsilon_end: float = 0.05  # ... from epsilon_anneal_end on (linear in between)
    epsilon_anneal_start: int = 0  # env step at which epsilon starts to fall
    epsilon_anneal_end: int = 50_000  # env step at which epsilon reaches epsilon_end (pymarl: 50000)
    double_q: bool = True  # double Q-learning targets (van Hasselt et al. 2016): online argmax, target value
    n_steps: int = 1  # k of the k-step return the TD target sums (cut at episode ends)
    team_reward: str = "sum"  # sum | mean of the agents' rewards (the team reward) | individual: each agent's own (IQL)
    # recurrent, gru_size, seq_len (also the window of td_lambda > 0), burn_in, sequences: SequenceFields
    td_lambda: float = 0.0  # lambda of TD(lambda) targets over each window of seq_len steps (0: one-step or n-step targets)

    UNUSED: typing.ClassVar[dict[str, str]] = {
        "noise_start": NO_NOISE, "noise_end": NO_NOISE, "noise_decay_steps": NO_NOISE,
        "gumbel_temperature": NO_NOISE, "policy_reg": "Q-networks have no policy outputs to regularise",
    }
    CHOICES: typing.ClassVar[dict[str, tuple[str, ...]]] = {
        **OffPolicyConfig.CHOICES, "team_reward": ("sum", "mean", "individual"), "sequences": ("windows", "episodes"),
    }
    MIXES: typing.ClassVar[bool] = True  # the method learns one team value (no individual rewards)
    NEEDS_STATE: typing.ClassVar[bool] = False  # the method conditions on the global state

    def validate(self) -> None:
        super().validate()
        self.validate_epsilon()
        positive_int(self, "n_steps")
        in_range(self, "td_lambda", 0.0, 1.0)
        if self.recurrent and self.n_steps > 1:
            raise ConfigError("algo.n_steps>1 is not available with algo.recurrent=true (windows give one-step "
                              "targets; use algo.td_lambda for multi-step targets)")
        if self.td_lambda > 0 and self.n_steps > 1:
            raise ConfigError(f"algo.n_steps={self.n_steps} and algo.td_lambda={self.td_lambda} are two multi-step "
                              "targets; choose one (algo.n_steps=1 or algo.td_lambda=0)")
        self.validate_sequences()
        if not isinstance(self.share_params, bool) and self.share_params != "auto":
            raise ConfigError(f"algo.share_params={self.share_params!r} is not allowed; choose true, false or auto")
        if self.team_reward == "individual" and self.MIXES:
            raise ConfigError(f"algo.team_reward=individual is not allowed for {self.name}: it learns one team value; "
                              "choose sum or mean (or iql for individual rewards)")
        if self.n_steps > 1 and self.reward_norm:
            raise ConfigError("algo.reward_norm=true needs algo.n_steps=1 (rewards are normalised per step)")
        if self.n_steps > 1 and self.learning_starts < self.n_steps * self.num_envs:
            raise ConfigError(f"algo.learning_starts={self.learning_starts} must be >= algo.n_steps*algo.num_envs="
                              f"{self.n_steps * self.num_envs} (a window of n_steps steps per env copy)")

    @property
    def windows(self) -> bool:
        """Whether batches are windows of consecutive steps (recurrent agents or TD(lambda) targets)."""
        return bool(self.recurrent) or self.td_lambda > 0

    def check_env(self, env) -> None:
        """A team reward exists (cooperative env) unless each agent learns its own; QMIX/QTRAN need a state."""
        if self.team_reward != "individual" and not getattr(env, "cooperative", True):
            hint = "use algo.team_reward=individual" if not self.MIXES else "use iql with algo.team_reward=individual"
            raise ConfigError(f"{self.name} learns from a team reward, but {env_label(env)} gives each agent its own "
                              f"reward and has no team reward (not cooperative); {hint}, or ippo/matrl")
        if self.NEEDS_STATE and int(getattr(env, "state_dim", 0) or 0) < 1:
            raise ConfigError(f"{self.name} conditions on the global state, but {env_label(env)} has none "
                              "(state_dim=0); use vdn, which needs no state")
        self.check_sequences_env(env, env_label(env))


def next_values(q_online: tuple, q_target: tuple, double: bool) -> jax.Array:
    """``[B, N]``: per agent ``Q^-_i(o', argmax_a Q_i(o', a))`` (double Q, van Hasselt et al. 2016, eq. 4) or
    ``max_a Q^-_i(o', a)``, from masked per-group utilities ``[B, n_g, A_g]``."""
    out = []
    for on, tg in zip(q_online, q_target):
        a = jnp.argmax(on if double else tg, axis=-1)
        out.append(jnp.take_along_axis(tg, a[..., None], -1)[..., 0])
    return jnp.concatenate(out, axis=-1)


def chosen(q: tuple, actions: tuple) -> jax.Array:
    """``[B, N]``: each agent's utility of its action."""
    return jnp.concatenate([jnp.take_along_axis(v, a[..., None], -1)[..., 0] for v, a in zip(q, actions)], -1)


def n_step(window: dict, gamma: float) -> dict:
    """A window ``[B, L, ...]`` of consecutive steps of one env copy -> one transition ``[B, ...]`` whose
    ``reward`` is the discounted sum up to the window's end or the first step that ends an episode (the
    steps after it belong to the next episode and count nothing), ``next_*`` are that last step's and
    ``discount = gamma^k (1 - terminated)`` (``k`` steps summed)."""
    done = jnp.logical_or(window["terminated"], window["truncated"])  # [B, L]
    valid = (jnp.cumsum(done, axis=1) - done) == 0  # no earlier step of the window ended the episode
    last = jnp.sum(valid, axis=1) - 1  # [B] index of the last step counted
    weight = valid * gamma ** jnp.arange(done.shape[1])  # [B, L]
    reward = jnp.sum(window["reward"] * weight[..., None], axis=1)
    at = lambda x: jax.vmap(lambda xb, i: xb[i])(x, last)  # the last counted step
    first = {k: jax.tree.map(lambda x: x[:, 0], v) for k, v in window.items()}
    out = dict(first, reward=reward, terminated=at(window["terminated"]), truncated=at(window["truncated"]))
    for k in ("next_obs", "next_avail", "next_state"):
        if k in window:
            out[k] = jax.tree.map(at, window[k])
    out["discount"] = gamma ** (last + 1.0) * (1.0 - out["terminated"].astype(jnp.float32))
    return out


def lambda_returns(reward, discount, next_value, done, lam: float, valid=None) -> jax.Array:
    """TD(lambda) targets over windows ``[B, L, ...]`` (pymarl's ``build_td_lambda_targets``), backwards from
    the window's last step, which bootstraps one step:

        G_t = r_t + d_t ((1 - lambda) v_t + lambda G_{t+1})   while the episode goes on to step t+1,
        G_t = r_t + d_t v_t                                    at an episode's end or the window's last step,

    ``d_t = gamma (1 - terminated_t)``, ``v_t = Q_tot^-(s'_t, a'_t)`` the value of step t's successor (its final
    observation where the episode was truncated: a truncation bootstraps, a termination does not).
    ``lambda = 0`` gives the one-step targets. Padded steps (``valid`` false) are never continued into."""
    go_on = jnp.logical_not(done)
    if valid is not None:
        go_on = jnp.logical_and(go_on, jnp.concatenate([valid[:, 1:], jnp.zeros_like(valid[:, :1])], 1))
    go_on = go_on.at[:, -1].set(False)
    tm = lambda x: jnp.swapaxes(expand(x, next_value), 0, 1)  # noqa: E731  [L, B, ...]

    def back(g_next, x):
        r, d, v, c = x
        g = r + d * jnp.where(c, (1.0 - lam) * v + lam * g_next, v)
        return g, g

    _, g = jax.lax.scan(back, jnp.zeros_like(next_value[:, 0]),
                        (tm(reward), tm(discount), tm(next_value), tm(go_on)), reverse=True)
    return jnp.swapaxes(g, 0, 1)


class QHead(nn.Module):
    """The linear utility head of a recurrent agent (``RecurrentActor``'s head)."""

    n_actions: int

    @nn.compact
    def __call__(self, y, avail):
        return Dense(self.n_actions, kernel_init=orthogonal(1.0), bias_init=nn.initializers.zeros)(y)


class QLearning(SequenceAgents, OffPolicy):
    """The engine plus epsilon-greedy utilities; subclasses give :meth:`mix` (and :meth:`init_mixer`)."""

    def __init__(self, env, cfg: QLearningConfig, total_updates: int | None = None):
        super().__init__(env, cfg, total_updates)
        if cfg.share_params == "auto":  # one Q-network per group (heterogeneous teams: one per kind of agent)
            self.agents = AgentGroups(env, True, cfg.agent_id)
        self.critic_tx = self.make_tx(cfg.critic_lr, cfg.critic_max_grad_norm, l2=cfg.critic_l2)
        self.recurrent = bool(cfg.recurrent)
        if self.recurrent:
            self.q_nets = tuple(RecurrentActor(QHead(g.action_space.n), tuple(cfg.hidden_sizes), cfg.gru_size,
                                               cfg.activation, cfg.layer_norm) for g in self.groups)
        else:
            self.q_nets = tuple(LogitsActor(g.action_space.n, tuple(cfg.hidden_sizes), cfg.activation, cfg.layer_norm,
                                            head_gain=1.0) for g in self.groups)
        self.agent_nets = self.q_nets  # the networks SequenceAgents steps
        self.state_dim = int(env.state_dim)

    # ---- networks ------------------------------------------------------------------------------
    def init_networks(self, key):
        ag = self.agents

        q = tuple(ag.init(net, jax.random.fold_in(key, g), g, *self.agent_inputs(g)) for g, net in enumerate(self.q_nets))
        return q, self.init_mixer(jax.random.fold_in(key, len(self.groups)))

    def init_mixer(self, key) -> dict:
        """The mixer's parameters (the engine's "critic"); none by default."""
        return {}

    def mix(self, params, q: jax.Array, state: jax.Array | None) -> jax.Array:
        """``Q_tot`` ``[B]`` from the agents' chosen utilities ``q`` ``[B, N]`` (IQL: ``[B, N]`` unchanged)."""
        raise NotImplementedError

    def q_values(self, params, obs: tuple, avail: tuple) -> tuple:
        """Per group the utilities ``[..., n_g, A]``, unavailable actions at ``MASKED_LOGIT`` (never a max);
        recurrent agents: from a zero hidden state."""
        ag = self.agents
        if self.recurrent:
            return self.single_step(params, obs, avail)
        return tuple(self.masked_logits(ag.apply(net, params[g], g, ag.with_id(g, obs[g])), avail[g])
                     for g, net in enumerate(self.q_nets))

    def q_step(self, params, hidden: tuple, obs: tuple, avail: tuple, reset: jax.Array) -> tuple[tuple, tuple]:
        """Recurrent agents, one step: ``(hidden', utilities)`` per group from ``hidden`` ``[..., n_g, H]``
        (zeroed first where ``reset`` ``[...]``)."""
        hidden, q = self.agent_step(params, hidden, obs, avail, reset)
        return hidden, tuple(self.masked_logits(v, av) for v, av in zip(q, avail))

    def agent_step_outputs(self, params, hidden, obs, avail, reset):
        return self.q_step(params, hidden, obs, avail, reset)

    def utilities(self, params, batch: dict, with_next: bool = True) -> tuple[tuple, tuple | None]:
        """Per group the utilities at ``obs`` and (``with_next``) at ``next_obs``: of a batch ``[B, (L,) ...]``, or
        (recurrent agents) of windows ``[B, L, ...]`` unrolled from the stored hidden state at their start (after
        the ``burn`` steps before them, unrolled without gradient: R2D2's burn-in, Kapturowski et al. 2019)."""
        if not self.recurrent:
            nxt = self.q_values(params, batch["next_obs"], batch["next_avail"]) if with_next else None
            return self.q_values(params, batch["obs"], batch["avail"]), nxt
        return self.unroll(lambda h, o, av, r: self.q_step(params, h, o, av, r), batch, with_next, successor=True)

    def warm_up(self, params, steps: dict) -> tuple:
        """The hidden states ``[B, n_g, H]`` after unrolling windows ``[B, L, ...]`` from their stored hidden state."""
        return self.warm_up_with(lambda h, o, av, r: self.q_step(params, h, o, av, r), steps)

    # ---- acting --------------------------------------------------------------------------------
    def greedy(self, params, obs, avail):
        return tuple(jnp.argmax(q, -1).astype(jnp.int32) for q in self.q_values(params, obs, avail))

    def behaviour(self, params, obs, avail, key, env_steps):
        return self.explore(self.q_values(params, obs, avail), avail, key, env_steps)

    def greedy_outputs(self, q: tuple, avail: tuple) -> tuple:
        return tuple(jnp.argmax(v, -1).astype(jnp.int32) for v in q)

    def explore(self, q: tuple, avail: tuple, key, env_steps):
        """Epsilon-greedy over the available actions; the log-probability of the action taken under it."""
        eps = epsilon_schedule(self.cfg, env_steps)
        greedy = tuple(jnp.argmax(v, -1).astype(jnp.int32) for v in q)
        random = self.agents.random_actions(key, avail)
        actions, logps = [], []
        for g, (a, r, av) in enumerate(zip(greedy, random, avail)):
            explore = jax.random.uniform(jax.random.fold_in(key, 1000 + g), a.shape) < eps
            act = jnp.where(explore, r, a)
            n_avail = jnp.maximum(av.sum(-1), 1)
            logps.append(jnp.log(eps / n_avail + (1.0 - eps) * (act == a)))
            actions.append(act)
        return tuple(actions), jnp.concatenate(logps, -1)

    # ---- transitions and batches ---------------------------------------------------------------
    def example_transition(self, last):
        out = super().example_transition(last)  # recurrent agents: hidden, first (SequenceAgents)
        if self.cfg.NEEDS_STATE:
            out.update(state=jnp.zeros(jnp.shape(last.state)[1:]), next_state=jnp.zeros(jnp.shape(last.state)[1:]))
        return out

    def transition(self, view, last, ts, act_out):
        out = super().transition(view, last, ts, act_out)  # recurrent agents: hidden, first (SequenceAgents)
        if self.cfg.NEEDS_STATE:
            out.update(state=last.state, next_state=ts.final_state)
        return out

    def sample_batch(self, buffer, key, reward_stats):
        cfg = self.cfg
        if cfg.windows:  # sequences [B, L, ...] (recurrent agents, TD(lambda) targets): SequenceAgents
            window = self.sample_sequences(buffer, key, reward_stats)
            return dict(window, discount=cfg.gamma * (1.0 - window["terminated"].astype(jnp.float32)))
        if cfg.n_steps == 1:
            batch = super().sample_batch(buffer, key, reward_stats)
            return dict(batch, discount=cfg.gamma * (1.0 - batch["terminated"].astype(jnp.float32)))
        window = self.prepare(self.draw_windows(buffer, key, cfg.batch_size, cfg.n_steps), reward_stats)
        return n_step(window, cfg.gamma)

    def team(self, reward: jax.Array) -> jax.Array:
        """The reward learnt from: ``[B]`` team reward (sum or mean over agents) or ``[B, N]`` (individual)."""
        mode = self.cfg.team_reward
        return reward if mode == "individual" else (reward.sum(-1) if mode == "sum" else reward.mean(-1))

    # ---- learning ------------------------------------------------------------------------------
    def next_value(self, state: OffPolicyState, batch: dict, q_next: tuple | None = None) -> jax.Array:
        """``Q_tot^-(s', a')`` ``[B, (L,)]`` (IQL: per agent ``[B, (L,) N]``), ``a'`` the online argmax (double Q,
        van Hasselt et al. 2016, eq. 4) valued by the target networks; ``q_next``: the online utilities at ``o'``
        if already computed (:meth:`train_step`), else computed here."""
        q_tg = self.utilities(state.target_actor_params, batch)[1]
        if not self.cfg.double_q:
            q_on = q_tg  # unused: the target's own max
        else:
            q_on = self.utilities(state.actor_params, batch)[1] if q_next is None else jax.lax.stop_gradient(q_next)
        return self.mix(state.target_critic_params, next_values(q_on, q_tg, self.cfg.double_q), batch.get("next_state"))

    def targets(self, state: OffPolicyState, batch: dict, q_next: tuple | None = None) -> jax.Array:
        """``y = R + gamma^k (1 - terminated) Q_tot^-(s', a')`` (Rashid et al. 2018, eq. 6's y_tot); on windows with
        ``td_lambda > 0`` the lambda-returns of these one-step targets (Sutton & Barto 2018, Sec. 12.1)."""
        v = self.next_value(state, batch, q_next)
        r, disc = self.team(batch["reward"]), batch["discount"]
        if r.ndim < v.ndim:  # IQL on the team reward: the same reward for every agent
            r = r[..., None]
        if self.cfg.td_lambda > 0:  # lambda = 0 is the one-step target below, on windows too
            done = jnp.logical_or(batch["terminated"], batch["truncated"])
            return lambda_returns(r, disc, v, done, self.cfg.td_lambda, batch.get("valid"))
        return r + expand(disc, v) * v

    def losses(self, q_params, mixer_params, batch: dict, y: jax.Array, q_all: tuple | None = None) -> tuple[jax.Array, dict]:
        """The TD loss ``E[(Q_tot(s, a) - y)^2]`` (Rashid et al. 2018, eq. 6; IQL/VDN the same with their Q_tot),
        over the steps that are not padding (``valid``); ``q_all``: the utilities at ``obs`` if already computed."""
        q_all = self.utilities(q_params, batch, with_next=False)[0] if q_all is None else q_all
        q = chosen(q_all, batch["actions"])  # [B, (L,) N]
        q_tot = self.mix(mixer_params, q, batch.get("state"))
        td2 = masked_mean(jnp.square(q_tot - y), batch.get("valid"))
        return td2, {"loss/td": td2, "diag/q_tot": masked_mean(q_tot, batch.get("valid")),
                     "diag/q_per_agent": q.reshape(-1, q.shape[-1]).mean(0)}

    def loss_and_targets(self, params: tuple, state: OffPolicyState, batch: dict) -> tuple[jax.Array, dict]:
        """The loss with its targets from one pass of the online networks: the utilities at ``obs`` (differentiated)
        and, for double Q, at ``o'`` (the argmax only, without gradient); recurrent agents unroll once."""
        q_all, q_next = self.utilities(params[0], batch, with_next=self.cfg.double_q)
        y = jax.lax.stop_gradient(self.targets(state, batch, q_next))
        return self.losses(params[0], params[1], batch, y, q_all)

    def train_step(self, state: OffPolicyState, batch: dict, key):
        grads, metrics = jax.grad(lambda p: self.loss_and_targets(p, state, batch), has_aux=True)(
            (state.actor_params, state.critic_params))
        q_params, q_opt = self.apply_actors(state.actor_params, grads[0], state.actor_opt)
        mixer, mixer_opt = self.apply_critic(state.critic_params, grads[1], state.critic_opt)
        state = state._replace(actor_params=q_params, actor_opt=q_opt, critic_params=mixer, critic_opt=mixer_opt)
        metrics["diag/epsilon"] = epsilon_schedule(self.cfg, state.env_steps)
        return self.update_targets(state), metrics

    def policy_change(self, old_actor, new_actor, obs, avail):
        """The share of observations whose greedy action one update changed, per agent (recurrent agents: from a
        zero hidden state)."""
        old, new = self.greedy(old_actor, obs, avail), self.greedy(new_actor, obs, avail)
        return {"diag/greedy_change_per_agent": jnp.concatenate([jnp.mean(o != n, axis=0) for o, n in zip(old, new)])}

