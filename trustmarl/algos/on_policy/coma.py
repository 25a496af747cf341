"""COMA (Foerster et al. 2018), its fully decentralised version F2A2-COMA (Li et al. 2023) and MA-AC
(Zhang et al. 2018), on the on-policy engine.

**COMA** (Foerster et al. 2018): one centralised critic per group (shared by the group's agents, agent
id as input) reads the global state, the agent's own observation, the other agents' one-hot actions
and the agent's one-hot id, and outputs one value per own action, ``Q_i(s, (., a_-i))``. Per update
step (``epochs x minibatches`` per engine update), on a minibatch of the rollout:

- critic: ``mean_i mean_b (Q_i(s, a) - y_i)^2`` with ``y`` the TD(lambda) target of the *target*
  critic, ``y_t = r_t + gamma (1 - d_t) ((1 - lambda) Q'(s_{t+1}, a_{t+1}) + lambda y_{t+1})``
  (Foerster et al. 2018, Section 4; lambda = 0.8), bootstrapped after the rollout with
  ``sum_a pi_i(a) Q'_i(s_T, (a, a~_-i))``, ``a~ ~ pi`` drawn afresh (F2A2-COMA: executed, see below); the target critic is a hard copy every
  ``target_every`` critic steps;
- actors, on the critic *after* this step's critic step: the counterfactual advantage
  ``A_i = Q_i(s, a) - sum_a' pi_i(a' | o_i) Q_i(s, (a', a_-i))`` (Foerster et al. 2018, eq. 4) and the
  score-function loss ``-sum_i mean_b log pi_i(a_i | o_i) sg(A_i)`` (each agent's own objective).

**F2A2-COMA** (Li et al. 2023, Prop. 3, Section 5): every agent holds a full copy of COMA's critic
(leading agent axis; all copies start equal), trains it on its own reward only (``reward=agent``), and
the copies agree by consensus (:mod:`trustmarl.algos.f2a2`). Agent ``i``'s copy gives ``Q_i``. With the
joint objective (reward convention, ``delta = Q - y``):

- critic of copy ``i``: ``mean_b[-alpha1 Q_i + alpha2 (Q_i - y_i)^2] + <lambda_i + beta (w~_i - v_i), w~_i>``
  (Prop. 3 and eq. 5.4a: the gradient of the augmented Lagrangian), one Adam per agent;
- actor ``i``: ``-mean_b log pi_i(a_i) sg(alpha1 A_i - alpha2 delta_i^2)`` on its own updated copy (eq. 5.4b);
- then one consensus event and the dual step (eq. 5.4c/d) on the communication graph.

F2A2-COMA's critic reads only *executed* actions (the counterfactual baseline varies the agent's own
action only), so modelling the other agents (MOA) predicts nothing here: there is no teammate model.

**The bootstrap's actions** (F2A2-COMA and MA-AC). The target of a rollout's last step needs ``Q'_i`` at the
other agents' actions at ``s_T``, which no transition of the rollout holds. Centralised COMA draws
``a~_-i ~ pi_-i`` afresh and executes nothing (Foerster et al. 2018, Section 4: training reads every policy). A
decentralised agent sees the others' executed actions, as labels, but not their policies (Li et al. 2023, Section
5.2 and Table 2), so here every agent samples its action at ``s_T`` from its own policy before the update (the key
and draw of COMA's) and commits to it: the next rollout's first step executes exactly these actions, and the
bootstrap ``sum_a pi_i(a | o_i) Q'_i(s_T, (a, a_-i))`` reads them as executed actions, like every other step's
target (computed before the step is taken, it is the number a learner waiting for the step would get). That
first transition keeps the log-probabilities and distributions of the policy that sampled it (one update older;
the actor loss recomputes ``log pi`` with the current parameters and does not read them). The commitment lives in
the loop's ``carry`` (``(the actors' carry, committed)``): checkpointed and vmapped over seeds with the state,
dropped where the host loop starts fresh episodes (it zeroes the carry); the first rollout samples afresh. A
recurrent actor samples it from the hidden state carried out of the rollout; the next rollout advances that state
with the updated policy. An episode ending at the last step needs nothing: its target ignores the bootstrap, and
the committed actions are a draw at the new episode's first observation.

**MA-AC** (Zhang et al. 2018, "Fully decentralized multi-agent reinforcement learning with networked
agents", Algorithm 1, in its discounted form): the same copies, a TD step of each copy on its agent's
own reward, the local-advantage actor step, then every agent replaces its copy by the
Metropolis-Hastings mix of its neighbours' copies (no penalty, no duals): ``f2a2_coma`` with
``joint=false`` and ``consensus=mix``. Not implemented: the original's consensus at every env step.
"""

from __future__ import annotations

import dataclasses
import typing

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from trustmarl.algos import f2a2, register_algo
from trustmarl.algos.agents import opt_init, opt_step
from trustmarl.algos.base import block_categorical, block_mean
from trustmarl.algos.on_policy.common import ActorCritic, Batch, TrainState, shuffle_order
from trustmarl.algos.on_policy.config import OnPolicyConfig
from trustmarl.algos.on_policy.diagnostics import per_agent_mean
from trustmarl.networks import MLP, Dense, orthogonal
from trustmarl.trust import consensus as C
from trustmarl.trust.gae import gae
from trustmarl.trust.normalize import value_norm_init
from trustmarl.validation import ConfigError, in_range, positive_int

NOT_COMA = "COMA's critic is its own (TD(lambda) on Q(s, a), counterfactual baseline)"


@dataclasses.dataclass
class COMAConfig(OnPolicyConfig):
    """COMA hyperparameters (Foerster et al. 2018; 1024 env steps per update as Li et al. 2023 on MPE)."""

    name: str = "coma"
    rollout_len: int = 64  # env steps per copy in one update's rollout (16 x 64 = 1024 per update)
    epochs: int = 1  # passes over the rollout per update (each minibatch: one critic and one actor step)
    minibatches: int = 1  # minibatches per epoch
    ent_coef: float = 0.0  # entropy bonus coefficient (COMA has none)
    td_lambda: float = 0.8  # lambda of the critic's TD(lambda) target (Foerster et al. 2018)
    target_every: int = 200  # critic steps between hard copies of the target critic (Foerster et al. 2018)
    optimizer: str = "adam"  # adam | sgd (plain gradient steps, e.g. for exact comparisons)
    critic: str = "local"  # (unused: COMA's own critic)
    value_norm: bool = False  # (unused)
    normalize_advantages: bool = False  # (unused)

    UNUSED: typing.ClassVar[dict[str, str]] = {
        "clip_eps": "COMA takes plain policy-gradient steps (no ratio clipping)",
        "clip_rule": "COMA takes plain policy-gradient steps (no ratio clipping)",
        "gae_lambda": "COMA's targets are TD(lambda) on Q: see td_lambda",
        "value_norm": NOT_COMA,
        "normalize_advantages": "the counterfactual advantage is used as it is",
        "vf_coef": "critic and actors take separate steps",
        "agent_reduction": "each agent's loss is its own objective (summed over agents)",
        "critic": NOT_COMA,
        "critic_time": NOT_COMA,
        "bootstrap_truncation": "time limits end episodes (as in COMA)",
    }

    def validate(self) -> None:
        super().validate()
        in_range(self, "td_lambda", 0.0, 1.0)
        positive_int(self, "target_every")
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"algo.optimizer={self.optimizer!r} is not allowed; choose adam or sgd")


@dataclasses.dataclass
class F2A2COMAConfig(COMAConfig, f2a2.ConsensusFields):
    """F2A2-COMA: per-agent copies of COMA's critic on own rewards, tied by consensus (Li et al. 2023)."""

    name: str = "f2a2_coma"
    reward: str = "agent"  # team | agent (F2A2: each copy learns from its own agent's reward)
    share_params: bool | str = False  # false: F2A2's policies are individual (true is refused)

    def validate(self) -> None:
        super().validate()
        self.validate_consensus()
        if self.share_params is not False:
            raise ConfigError(f"algo.share_params={self.share_params!r}: F2A2's policies are individual "
                              "(Li et al. 2023, Table 1); use algo.share_params=false")


@dataclasses.dataclass
class MAACNetConfig(F2A2COMAConfig):
    """MA-AC (Zhang et al. 2018): F2A2-COMA's copies with TD steps, local advantages and plain mixing."""

    name: str = "ma_ac"
    joint: bool = False  # separate TD and actor objectives (Zhang et al. 2018 has no joint objective)
    consensus: str = "mix"  # mix: copies replaced by the Metropolis-Hastings mix of the neighbours' copies

    SENDS_POLICIES: typing.ClassVar[bool] = True  # its agents read the others' policies (Li et al. 2023, Table 2): counted as policy_params

    def validate(self) -> None:
        super().validate()
        if self.consensus != "mix" or self.joint:
            raise ConfigError("ma_ac mixes its copies without duals on separate objectives: algo.consensus must be "
                              "'mix' and algo.joint false (use f2a2_coma for the others)")


class QNet(nn.Module):
    """COMA's critic head: an MLP on ``[s, o_i, a_-i one-hot, id_i]`` with one value per own action."""

    n_actions: int
    hidden_sizes: typing.Sequence[int]
    activation: str = "tanh"
    layer_norm: bool = False

    @nn.compact
    def __call__(self, x):
        h = MLP(self.hidden_sizes, self.activation, self.layer_norm)(x)
        return Dense(self.n_actions, kernel_init=orthogonal(1.0), bias_init=nn.initializers.zeros)(h)


class COMA(ActorCritic):
    """COMA; :class:`F2A2COMA` overrides the critic layout (copies) and the consensus hooks."""

    # run key env_blocks: the critic's and actors' gradients all-reduced, every masked batch mean over the active samples
    # of all blocks (per_agent_mean), the actions at s_T drawn as each block's rows of one draw for all copies
    ENV_BLOCKS = True
    copies = False  # one parameter set per agent (F2A2) instead of one shared critic per group

    def __init__(self, env, cfg: COMAConfig, total_updates: int | None = None):
        super().__init__(env, cfg, total_updates)
        self.name = cfg.name
        net = dict(hidden_sizes=tuple(cfg.hidden_sizes), activation=cfg.activation, layer_norm=cfg.layer_norm)
        self.q_nets = tuple(QNet(g.action_space.n, **net) for g in self.groups)
        widths = [g.action_space.n for g in self.groups for _ in range(g.n)]
        starts = np.cumsum([0] + widths)
        self.others = np.ones((self.n_agents, int(starts[-1])), np.float32)  # row i: zero at agent i's own slot
        for i in range(self.n_agents):
            self.others[i, starts[i]:starts[i + 1]] = 0.0
        self.offsets = [int(o) for o in self.agents.offsets]

    # ---- optimisers ------------------------------------------------------------------------
    def make_tx(self, lr: float, steps_per_update: int) -> optax.GradientTransformation:
        if self.cfg.optimizer == "sgd":
            return optax.chain(optax.clip_by_global_norm(self.cfg.max_grad_norm), optax.sgd(lr))
        return super().make_tx(lr, steps_per_update)

    def apply_critic(self, params, grads, opt):
        pairs = [opt_step(self.critic_tx, p, g, o, self.copies) for p, g, o in zip(params, grads, opt)]
        return tuple(p for p, _ in pairs), tuple(o for _, o in pairs)

    # ---- the critic ----------------------------------------------------------------------------
    def q_input_dim(self, g: int) -> int:
        return self.env.state_dim + self.groups[g].obs_dim + self.others.shape[1] + self.n_agents

    def init_critic(self, key):
        return tuple(net.init(jax.random.fold_in(key, g), jnp.zeros((self.q_input_dim(g),))) for g, net in enumerate(self.q_nets))

    def onehot(self, actions: tuple) -> tuple:
        return tuple(jax.nn.one_hot(a, g.action_space.n) for g, a in zip(self.groups, actions))

    def q_values(self, critic_params, state: jax.Array, obs: tuple, onehots: tuple) -> tuple:
        """Per group ``Q_i(s, (., a_-i))`` ``[..., n_g, A_g]`` for the joint one-hot actions ``onehots``."""
        lead = state.shape[:-1]
        joint = jnp.concatenate([oh.reshape(lead + (-1,)) for oh in onehots], axis=-1)  # [..., W]
        ids = np.eye(self.n_agents, dtype=np.float32)
        out = []
        for g, (grp, net) in enumerate(zip(self.groups, self.q_nets)):
            sl = slice(self.offsets[g], self.offsets[g] + grp.n)
            x = jnp.concatenate([
                jnp.broadcast_to(state[..., None, :], lead + (grp.n, state.shape[-1])), obs[g],
                joint[..., None, :] * self.others[sl], jnp.broadcast_to(ids[sl], lead + ids[sl].shape)], axis=-1)
            if self.copies:  # agent i reads its own copy of the group's head
                params = jax.tree.map(lambda p, sl=sl: p[sl], critic_params[g])
                out.append(jax.vmap(net.apply, in_axes=(0, -2), out_axes=-2)(params, x))
            else:
                out.append(net.apply(critic_params[g], x))
        return tuple(out)

    @staticmethod
    def gather(x: tuple, actions: tuple) -> jax.Array:
        """``[..., N]``: per agent the entry of ``x`` (per group ``[..., n_g, A]``) at its action."""
        return jnp.concatenate([jnp.take_along_axis(v, a[..., None], -1)[..., 0] for v, a in zip(x, actions)], -1)

    def value(self, critic_params, obs: tuple, state: jax.Array, time=None) -> jax.Array:
        """Not used by COMA while acting (its targets are computed in :meth:`targets`): zeros ``[..., N]``."""
        return jnp.zeros(state.shape[:-1] + (self.n_agents,))

    # ---- state ---------------------------------------------------------------------------------
    def init_state(self, key, last, env_state=None) -> TrainState:
        actor_params, _ = self.init_params(key)
        critic = self.init_critic(jax.random.fold_in(key, 7))
        if self.copies:
            critic = f2a2.copies_of(critic, self.n_agents)
        actor_opt = tuple(opt_init(self.actor_txs[g], p, self.stacked(g)) for g, p in enumerate(actor_params))
        return TrainState(
            actor_params=actor_params, critic_params=critic, actor_opt=actor_opt,
            critic_opt=tuple(opt_init(self.critic_tx, p, self.copies) for p in critic), value_norm=value_norm_init(),
            **self.loop_fields(key, last, env_state), extra=self.init_extra(jax.random.fold_in(key, 2), actor_params, critic),
        )

    def init_extra(self, key, actor_params, critic_params):
        return {"target_critic": critic_params, "critic_steps": jnp.zeros((), jnp.int32),
                "comm": C.counters_init(self.n_agents)}

    # ---- targets -------------------------------------------------------------------------------
    def sample_at_last(self, actor_params, hidden, last, key) -> dict:
        """Every agent's action sampled from its own policy at the rollout's last observation ``s_T``:
        ``actions`` (per group ``[E, n_g]``), ``logp`` ``[E, N]``, ``dist`` (per group) and ``valid`` ``[E]``."""
        if self.recurrent:
            _, dists = self.policy_step(actor_params, hidden, last.obs, last.avail, jnp.asarray(last.done))
        else:
            dists = self.policy(actor_params, last.obs, last.avail)
        # discrete policies: jax.random.categorical's draw; env blocks: the block's rows of one draw for all env copies
        acts = tuple(block_categorical(jax.random.fold_in(key, g), d[0]) for g, d in enumerate(dists))
        return {"actions": acts, "logp": self.log_prob(dists, acts), "dist": dists,
                "valid": jnp.ones(jnp.shape(last.done), bool)}

    def bootstrap(self, target_critic, last, sampled: dict) -> jax.Array:
        """``sum_a pi_i(a | o_i) Q'_i(s_T, (a, a~_-i))`` ``[E, N]``: the own action in expectation, the others' at
        ``sampled["actions"]``, ``pi`` the distributions ``sampled["dist"]``."""
        q = self.q_values(target_critic, last.state, last.obs, self.onehot(sampled["actions"]))
        return jnp.concatenate([jnp.sum(jnp.exp(d[0]) * qg, -1) for d, qg in zip(sampled["dist"], q)], -1)

    def last_value(self, state: TrainState) -> jax.Array:
        """COMA's bootstrap after the rollout ``[E, N]`` with ``a~ ~ pi`` drawn afresh at ``s_T`` (the centralised
        critic reads every policy; the draw is not executed)."""
        sampled = self.sample_at_last(state.actor_params, state.carry, state.last, jax.random.fold_in(state.key, 11))
        return self.bootstrap(state.extra["target_critic"], state.last, sampled)

    def targets(self, state: TrainState, traj: dict, last_value: jax.Array):
        """TD(lambda) targets of the target critic at the taken actions (Foerster et al. 2018, Section 4):
        the lambda-returns of :func:`trustmarl.trust.gae.gae` with ``Q'`` in the place of ``V``."""
        q = self.gather(self.q_values(state.extra["target_critic"], traj["state"], traj["obs"], self.onehot(traj["actions"])),
                        traj["actions"])
        _, returns = gae(traj["reward"], q, traj["done"][..., None], last_value, self.cfg.gamma, self.cfg.td_lambda)
        returns = jax.lax.stop_gradient(returns)
        return state, jnp.zeros_like(returns), returns, returns

    # ---- learning ------------------------------------------------------------------------------
    def learn_batch(self, state: TrainState, batch: Batch):
        cfg = self.cfg
        key, k_epochs = jax.random.split(state.key)
        n = jax.tree.leaves(batch.obs)[0].shape[0]

        def epoch(st, k):
            k_perm, k_steps = jax.random.split(k)
            perm = shuffle_order(k_perm, n)
            mbs = jax.tree.map(lambda x: x[perm].reshape((cfg.minibatches, n // cfg.minibatches) + x.shape[1:]), batch)
            return jax.lax.scan(self.update_step, st, (mbs, jax.random.split(k_steps, cfg.minibatches)))

        state, metrics = jax.lax.scan(epoch, state._replace(key=key), jax.random.split(k_epochs, cfg.epochs))
        metrics = {k: jnp.mean(v, axis=(0, 1)) for k, v in metrics.items()}
        extra = dict(state.extra, comm=C.observe(state.extra["comm"], self.steps_per_update) if self.copies else state.extra["comm"])
        state = state._replace(extra=extra)
        metrics.update(self.comm_report(state))
        return state, metrics

    # [N] masked mean over every leading sample axis; env blocks: over the active samples of all blocks once averaged
    per_agent_mean = staticmethod(per_agent_mean)

    def critic_objective(self, q: jax.Array, y: jax.Array, mask: jax.Array) -> jax.Array:
        """COMA: ``mean_i mean_b (Q_i - y_i)^2`` (Foerster et al. 2018, Section 4), one loss for the shared critic."""
        return jnp.mean(self.per_agent_mean(jnp.square(q - y), mask))

    def actor_weights(self, adv: jax.Array, delta: jax.Array) -> jax.Array:
        """The detached weight of ``log pi_i(a_i)``: COMA's counterfactual advantage (Foerster et al. 2018, eq. 4)."""
        return jax.lax.stop_gradient(adv)

    def update_step(self, state: TrainState, inputs):
        """One critic step, the actors on the updated critic, then the consensus hooks (F2A2)."""
        mb, key = inputs
        cfg, mask = self.cfg, mb.active
        onehots = self.onehot(mb.actions)

        def critic_loss(cp):
            q = self.gather(self.q_values(cp, mb.state, mb.obs, onehots), mb.actions)
            return self.critic_objective(q, mb.target, mask), q

        grads, q_old = jax.grad(critic_loss, has_aux=True)(state.critic_params)
        grads = jax.tree.map(jnp.add, block_mean(grads), self.consensus_grads(state))  # env blocks: all blocks' samples
        critic, critic_opt = self.apply_critic(state.critic_params, grads, state.critic_opt)
        critic, comm = self.after_critic(state, critic)
        steps = state.extra["critic_steps"] + 1
        target = optax.periodic_update(critic, state.extra["target_critic"], steps, cfg.target_every)

        q_all = jax.lax.stop_gradient(self.q_values(critic, mb.state, mb.obs, onehots))
        q = self.gather(q_all, mb.actions)
        delta = q - mb.target

        def actor_loss(ap):
            dists = self.batch_policy(ap, mb)
            baseline = jnp.concatenate([jnp.sum(jax.lax.stop_gradient(jnp.exp(d[0])) * qg, -1) for d, qg in zip(dists, q_all)], -1)
            adv = q - baseline  # Foerster et al. 2018, eq. 4: the counterfactual advantage
            w = self.actor_weights(adv, delta)
            per_agent = -self.per_agent_mean(self.log_prob(dists, mb.actions) * w, mask)
            ent = self.per_agent_mean(self.entropy(dists), mask)
            return jnp.sum(per_agent - cfg.ent_coef * ent), (per_agent, adv, ent)

        a_grads, (a_loss, adv, ent) = jax.grad(actor_loss, has_aux=True)(state.actor_params)
        actor, actor_opt = self.apply_actor(state.actor_params, block_mean(a_grads), state.actor_opt)  # env blocks: as the critic's
        state = state._replace(actor_params=actor, actor_opt=actor_opt, critic_params=critic, critic_opt=critic_opt,
                               extra=dict(state.extra, target_critic=target, critic_steps=steps, comm=comm))
        state, more = self.after_actors(state, key)
        c_loss = self.per_agent_mean(jnp.square(q_old - mb.target), mask)
        metrics = {"loss/critic": c_loss.mean(), "loss/actor": a_loss.mean(), "loss/entropy": ent.mean(),
                   "diag/critic_loss_per_agent": c_loss, "diag/actor_loss_per_agent": a_loss,
                   "diag/advantage_per_agent": self.per_agent_mean(adv, mask), "diag/q_per_agent": self.per_agent_mean(q, mask),
                   "diag/critic_offset_per_agent": self.per_agent_mean(delta, mask), "diag/entropy_per_agent": ent, **more}
        return state, metrics

    # ---- hooks of the decentralised versions (COMA: nothing) -------------------------------------
    def consensus_grads(self, state: TrainState):
        return jax.tree.map(jnp.zeros_like, state.critic_params)

    def after_critic(self, state: TrainState, critic):
        return critic, state.extra["comm"]

    def after_actors(self, state: TrainState, key):
        return state, {}

    def comm_payload(self) -> dict[str, int]:
        return {"shared_critic": f2a2.payload_size(f2a2.copies_of(self.init_critic(jax.random.key(0)), 1))}

    def comm_report(self, state: TrainState) -> dict:
        """``comm/...``: centralised COMA communicates nothing (0, as Li et al. 2023 count it)."""
        return f2a2.comm_metrics(state.extra["comm"], self.comm_payload(), f2a2.observed_record_size(self.env))


class F2A2COMA(COMA):
    """F2A2-COMA and MA-AC: per-agent critic copies tied by consensus (see the module docstring)."""

    ENV_BLOCKS = True  # run key env_blocks: COMA's reductions; consensus and duals act on parameters (same in every block)
    copies = True

    def __init__(self, env, cfg: F2A2COMAConfig, total_updates: int | None = None):
        super().__init__(env, cfg, total_updates)
        self.protocol = cfg.protocol(env)

    # ---- the bootstrap's actions are executed (see the module docstring) ----------------------------
    def init_state(self, key, last, env_state=None) -> TrainState:
        """COMA's state; the loop's ``carry`` is ``(the actors' carry, the committed first actions)``, none yet."""
        state = super().init_state(key, last, env_state)
        none = jax.tree.map(jnp.zeros_like, self.sample_at_last(state.actor_params, state.carry, last, key))
        return state._replace(carry=(state.carry, none))

    def make_batch(self, state: TrainState, traj: dict):
        """Before the targets: every agent samples its action at ``s_T`` from its own (not yet updated) policy and
        commits to it: the next rollout's first step executes it, and the bootstrap reads it as an executed action."""
        hidden, _ = state.carry
        committed = self.sample_at_last(state.actor_params, hidden, state.last, jax.random.fold_in(state.key, 11))
        return super().make_batch(state._replace(carry=(hidden, committed)), traj)

    def last_value(self, state: TrainState) -> jax.Array:
        """The bootstrap at the actions the agents committed to at ``s_T`` (executed next): no other agent's policy."""
        return self.bootstrap(state.extra["target_critic"], state.last, state.carry[1])

    def act(self, view, carry, last, key):
        """The engine's acting, except where actions were committed (the first step after an update): those are
        executed, with their log-probabilities and distributions under the policy that sampled them."""
        hidden, committed = carry
        _, out, hidden = super().act(view, hidden, last, key)
        use = committed["valid"]

        def pick(c, x):
            return jnp.where(use.reshape(use.shape + (1,) * (x.ndim - use.ndim)), c, x)

        actions, logp, dist = jax.tree.map(pick, (committed["actions"], committed["logp"], committed["dist"]), out[:3])
        done = dict(committed, valid=jnp.zeros_like(use))
        return self.env_actions(actions), (actions, logp, dist) + tuple(out[3:]), (hidden, done)

    def init_extra(self, key, actor_params, critic_params):
        cfg = self.cfg
        cons = C.init(key, critic_params, self.protocol, beta=cfg.beta if cfg.consensus == "pdhg" else 1.0)
        return {**super().init_extra(key, actor_params, critic_params), "consensus": cons._replace(counters=())}

    def cons(self, state):
        return state.extra["consensus"]._replace(counters=state.extra["comm"])

    def critic_objective(self, q, y, mask):
        """Sum over agents of copy ``i``'s own loss ``mean_b[-alpha1 Q_i + alpha2 (Q_i - y_i)^2]`` (Li et al. 2023,
        Prop. 3 in the reward convention; w/o-JOINT: ``alpha2 (Q_i - y_i)^2``)."""
        cfg = self.cfg
        return jnp.sum(self.per_agent_mean(f2a2.critic_surrogate(q, y, cfg.alpha1, cfg.alpha2, cfg.joint), mask))

    def actor_weights(self, adv, delta):
        cfg = self.cfg  # Li et al. 2023, Prop. 3 (reward convention): alpha1 A - alpha2 delta^2
        return f2a2.actor_weight(adv, delta, cfg.alpha1, cfg.alpha2, cfg.joint)

    def consensus_grads(self, state):
        return f2a2.penalty_grads(self.cfg, self.cons(state), state.critic_params)  # eq. 5.4a

    def after_critic(self, state, critic):
        critic, cons = f2a2.after_critic(self.cfg.consensus, self.cons(state), critic)
        return critic, cons.counters

    def after_actors(self, state, key):
        critic, cons = f2a2.tie_copies(self.cfg, self.cons(state), state.critic_params, key, self.protocol)
        extra = dict(state.extra, consensus=cons._replace(counters=()), comm=cons.counters)
        state = state._replace(critic_params=critic, extra=extra)
        return state, f2a2.consensus_metrics(self.cfg.consensus, cons, critic)

    def policy_sizes(self, actor_params) -> np.ndarray | None:
        """MA-AC: each agent's policy size in scalars ``[N]`` (what an agent sends of its policy); others: None."""
        if not getattr(type(self.cfg), "SENDS_POLICIES", False):
            return None
        sizes = []
        for g, (grp, p) in enumerate(zip(self.groups, actor_params)):
            per = sum(int(np.prod(x.shape[1:] if self.agents.stacked(g) else x.shape)) for x in jax.tree.leaves(p))
            sizes += [per] * grp.n
        return np.asarray(sizes)

    def comm_report(self, state):
        return f2a2.comm_metrics(state.extra["comm"], self.comm_payload(), f2a2.observed_record_size(self.env),
                                 self.policy_sizes(state.actor_params))


register_algo("coma", COMAConfig, COMA,
              "COMA: centralised critic Q(s, a) with a counterfactual baseline and TD(lambda) targets (Foerster et al. 2018)",
              action_kinds=("discrete",))
register_algo("f2a2_coma", F2A2COMAConfig, F2A2COMA,
              "F2A2-COMA: per-agent copies of COMA's critic on own rewards, joint objective, PDHG consensus (Li et al. 2023)",
              action_kinds=("discrete",))
register_algo("ma_ac", MAACNetConfig, F2A2COMA,
              "MA-AC: per-agent critic copies, TD and local-advantage steps, Metropolis-Hastings mixing (Zhang et al. 2018)",
              action_kinds=("discrete",))
