"""MADDPG (Lowe et al. 2017) and, with its three changes switched on, MATD3 (Ackermann et al. 2019).

Each agent ``i`` has a deterministic actor ``mu_i(o_i)`` (continuous: tanh-squashed into the action box;
discrete: logits, acting through a straight-through Gumbel-softmax sample) and a centralised critic
``Q_i(x, a_1..a_N)`` on the joint observation ``x = (o_1..o_N)`` and every agent's action (one-hot for
discrete agents), so mixed discrete/continuous teams work. Per gradient step, on a batch from the buffer:

- critic (Lowe et al. 2017, eq. 6): ``L(Q_i) = E[(Q_i(x, a) - y_i)^2]`` with
  ``y_i = r_i + gamma (1 - terminated) Q'_i(x', a')`` and ``a'_j = mu'_j(o'_j)`` from the target actors
  (discrete: the one-hot of the argmax of the target logits, as in the authors' PyTorch port);
- actor (Lowe et al. 2017, eq. 5): ``grad J(mu_i) = E[grad mu_i(o_i) grad_{a_i} Q_i(x, a)|_{a_i = mu_i(o_i)}]``,
  the other agents' actions taken from the buffer (``actor_others=buffer``, the paper) or from their
  current deterministic policies (``actor_others=current``, the maddpg-pytorch code), plus
  ``policy_reg * mean(logits^2)`` (pre-tanh outputs for continuous actors; the reference code's regulariser);
- targets: Polyak averaging after every gradient step (or hard copies).

``critic=shared``: one agent-conditioned critic ``Q(x, a, onehot(i))`` instead of a critic per agent, agent
``i`` reading ``Q(x, a, onehot(i))`` as its ``Q_i`` and the critic descending the mean of the agents' losses
(the centralised, shared-critic reading of MADDPG in Li et al. 2023, App. H.3 and Table 1: the centralised
counterpart of F2A2-DDPG, whose agents each hold a copy of this critic).

Recurrent actors (``recurrent=true``; :mod:`trustmarl.algos.off_policy.sequences`): an MLP encoder, a GRU and the
feed-forward head above (logits or tanh action); actors and target actors unrolled over sampled sequences
(:meth:`MADDPG.batch_outputs`), the critics on the flattened steps, every batch mean over the valid (unpadded)
steps; with ``epsilon_*`` set, discrete agents act with a uniform available action with probability epsilon, else
a sample of softmax(logits) (the stored log-probability is the mixture's).

The gradient step is written in pieces that F2A2-DDPG and F2A2-TD3 reuse (as MAAC's): :meth:`MADDPG.td_target`,
:meth:`MADDPG.critic_step`, :meth:`MADDPG.actor_objective` inside :meth:`MADDPG.actor_step`, and
:meth:`MADDPG.delayed_actor_step` (per-agent delays ``d_i``: agent ``i``'s actor and target step when the
gradient-step count is a multiple of ``d_i``).

MATD3 (``algo matd3``) adds (Ackermann et al. 2019, Algorithm 1, after Fujimoto et al. 2018's TD3):
two critics per agent and the minimum of their targets ``y_i = r_i + gamma (1 - d) min_k Q'_{i,k}(x', a')``
(``twin_critics``); target policy smoothing ``a'_j = clip(mu'_j(o'_j) + clip(eps, -c, c), low, high)``,
``eps ~ N(0, target_noise^2)`` (for discrete agents: a Gumbel-softmax sample of the target logits instead
of the argmax); and actor and target updates every ``policy_delay`` critic steps.
"""

from __future__ import annotations

import dataclasses
import typing

import jax
import jax.numpy as jnp

from trustmarl.algos import register_algo
from trustmarl.algos.base import block_rows
from trustmarl.algos.off_policy.config import OffPolicyConfig
from trustmarl.algos.off_policy.engine import OffPolicy, OffPolicyState
from trustmarl.algos.off_policy.sequences import (EpsilonFields, FeedForwardHead, SequenceAgents, SequenceFields, batch_mean,
                                                  epsilon_mixture, epsilon_schedule)
from trustmarl.networks import Critic, DeterministicActor, LogitsActor, RecurrentActor, gumbel_softmax
from trustmarl.validation import ConfigError, non_negative, positive_int


@dataclasses.dataclass
class MADDPGConfig(OffPolicyConfig, SequenceFields, EpsilonFields):
    """MADDPG hyperparameters (MAMT paper Table 3: MAAC's shared settings; maddpg-pytorch's tau 0.01)."""

    name: str = "maddpg"
    actor_others: str = "buffer"  # buffer: the paper's eq. 5 | current: the others' current deterministic policies
    critic: str = "per_agent"  # per_agent: a critic Q_i(x, a) per agent | shared: one Q(x, a, onehot(i)) for all (Li et al. 2023, App. H.3)
    twin_critics: bool = False  # MATD3: two critics per agent, min of the targets
    policy_delay: int = 1  # MATD3: actor and target updates every this many critic steps (counted across updates)
    target_noise: float = 0.0  # MATD3: std of the target policy smoothing noise (continuous actions)
    target_noise_clip: float = 0.5  # MATD3: the smoothing noise is clipped to +-this value

    CHOICES: typing.ClassVar[dict[str, tuple[str, ...]]] = {**OffPolicyConfig.CHOICES, "actor_others": ("buffer", "current"),
                                                                "critic": ("per_agent", "shared"), "sequences": ("windows", "episodes")}
    RECURRENT_ALGOS = ("maddpg", "matd3")  # descendants not listed refuse recurrent=true; F2A2-DDPG/-TD3 name themselves

    def validate(self) -> None:
        super().validate()
        positive_int(self, "policy_delay")
        non_negative(self, "target_noise", "target_noise_clip")
        self.validate_epsilon()
        self.validate_sequences()
        if self.policy_delay > self.grad_steps:
            raise ConfigError(f"algo.policy_delay={self.policy_delay} is more than algo.grad_steps={self.grad_steps}: some updates "
                              "would take no actor step (and log a NaN actor loss); make algo.grad_steps >= the delay")


@dataclasses.dataclass
class MATD3Config(MADDPGConfig):
    """MATD3 hyperparameters: MADDPG's plus TD3's three changes (Fujimoto et al. 2018 defaults)."""

    name: str = "matd3"
    twin_critics: bool = True
    policy_delay: int = 2
    target_noise: float = 0.2
    target_noise_clip: float = 0.5

    def validate(self) -> None:
        super().validate()
        if not self.twin_critics:
            raise ConfigError("algo.twin_critics=false is MADDPG with delayed updates; matd3 needs twin critics")


class MADDPG(SequenceAgents, OffPolicy):
    ENV_BLOCKS = True  # run key env_blocks: gradients (engine's apply_*), replay sampling and reward statistics per block;
    # the Gumbel and smoothing noise of the training batch drawn as this block's rows of one draw (action_vectors)

    def __init__(self, env, cfg: MADDPGConfig, total_updates: int | None = None):
        super().__init__(env, cfg, total_updates)
        net = dict(hidden_sizes=tuple(cfg.hidden_sizes), activation=cfg.activation, layer_norm=cfg.layer_norm)
        self.recurrent = bool(getattr(cfg, "recurrent", False))
        head = dict(net, hidden_sizes=()) if self.recurrent else net  # recurrent: the MLP is the GRU's encoder
        self.actors = tuple(
            LogitsActor(g.action_space.n, **head) if g.action_space.kind == "discrete"
            else DeterministicActor(g.action_space.dim, low=g.action_space.low, high=g.action_space.high, **head)
            for g in self.groups
        )
        if self.recurrent:  # MLP encoder, GRU, the feed-forward head (the on-policy family's RecurrentActor)
            self.actors = tuple(RecurrentActor(FeedForwardHead(a), tuple(cfg.hidden_sizes), cfg.gru_size, cfg.activation,
                                               cfg.layer_norm) for a in self.actors)
        self.agent_nets = self.actors  # the networks SequenceAgents steps
        self.critic = Critic(**net)
        self.n_critics = 2 if cfg.twin_critics else 1
        # Q(x, a, onehot(i)): agent i's input carries its one-hot; one such critic (shared) or a copy per agent (F2A2)
        self.agent_input = cfg.critic == "shared"
        self.critic_copies = 1 if cfg.critic == "shared" else self.n_agents
        # the shared critic descends the mean of the agents' losses (the per-agent critics: each its own loss)
        self.critic_weight = 1.0 / self.n_agents if cfg.critic == "shared" else 1.0
        self.per_agent_delays = False  # F2A2-TD3: each agent's actor delay drawn once per seed
        self.widths = [self.agents.action_width(g) for g in range(len(self.groups))]
        self.joint_obs_dim = sum(g.n * g.obs_dim for g in self.groups)
        self.joint_act_dim = sum(g.n * w for g, w in zip(self.groups, self.widths))
        # for each agent, a 0/1 mask over the joint action vector selecting its own slots
        masks, start = [], 0
        for g, w in zip(self.groups, self.widths):
            for _ in range(g.n):
                masks.append(jnp.zeros(self.joint_act_dim).at[start:start + w].set(1.0))
                start += w
        self.own_slots = jnp.stack(masks)  # [N, A]

    def critic_stacked(self) -> bool:
        return True

    # ---- networks ------------------------------------------------------------------------------
    def init_networks(self, key):
        k_actor, k_critic = jax.random.split(key)
        ag = self.agents
        actors = tuple(ag.init(a, jax.random.fold_in(k_actor, g), g, *self.agent_inputs(g)) for g, a in enumerate(self.actors))
        x = jnp.zeros((self.joint_obs_dim + self.joint_act_dim + (self.n_agents if self.agent_input else 0),))
        keys = jax.random.split(k_critic, self.n_critics * self.critic_copies).reshape(self.n_critics, self.critic_copies, -1)
        critics = jax.vmap(jax.vmap(self.critic.init, in_axes=(0, None)), in_axes=(0, None))(keys, x)  # [K, N or 1, ...]
        return actors, critics

    def outputs(self, actor_params: tuple, obs: tuple) -> tuple:
        """Per group the actor outputs: logits ``[..., n_g, A]`` or ``(pre_tanh, action)`` (recurrent actors: from a zero
        hidden state; the masks do not enter the networks)."""
        ag = self.agents
        if self.recurrent:
            return self.single_step(actor_params, obs, tuple(jnp.ones(o.shape[:-1] + (1,), bool) for o in obs))
        return tuple(ag.apply(self.actors[g], actor_params[g], g, ag.with_id(g, obs[g])) for g in range(len(self.groups)))

    def q_values(self, critic_params, x: jax.Array, per_agent: bool = False) -> jax.Array:
        """``[K, N, ...]``: every critic on the shared input ``x`` ``[..., D]``, or (``per_agent``) agent ``i``'s
        critics on ``x[i]`` of ``x`` ``[N, ..., D]``. Agent-conditioned critics (``critic=shared``, F2A2's copies)
        read ``[x, onehot(i)]``; the one shared critic serves every agent."""
        if self.agent_input:
            n = self.n_agents
            x = x if per_agent else jnp.broadcast_to(x[None], (n,) + x.shape)
            ids = jnp.broadcast_to(jnp.eye(n, dtype=x.dtype).reshape((n,) + (1,) * (x.ndim - 2) + (n,)), x.shape[:-1] + (n,))
            x, per_agent = jnp.concatenate([x, ids], -1), True
            if jax.tree.leaves(critic_params)[0].shape[1] == 1:  # the one shared critic
                critic_params = jax.tree.map(lambda p: jnp.broadcast_to(p, (p.shape[0], n) + p.shape[2:]), critic_params)
        return jax.vmap(jax.vmap(self.critic.apply, in_axes=(0, 0 if per_agent else None)), in_axes=(0, None))(critic_params, x)

    def joint(self, obs: tuple, action_vectors: tuple) -> jax.Array:
        """The critic input ``[B, D]``: every agent's observation, then every agent's action vector."""
        flat = lambda xs: jnp.concatenate([x.reshape(x.shape[:-2] + (-1,)) for x in xs], axis=-1)  # noqa: E731
        return jnp.concatenate([flat(obs), flat(action_vectors)], axis=-1)

    def batch_outputs(self, actor_params: tuple, batch: dict, nxt: bool = False) -> tuple:
        """:meth:`outputs` at the batch's ``obs`` (or ``next_obs``); recurrent actors unroll the batch's sequences
        (``batch["seq"]``), the successor being one more step from ``o_t``'s hidden state."""
        if "seq" not in batch:
            return self.outputs(actor_params, batch["next_obs" if nxt else "obs"])
        out, out_next = self.unroll(lambda h, o, av, r: self.agent_step(actor_params, h, o, av, r), batch["seq"], with_next=nxt)
        return self.flatten_outputs(out_next if nxt else out)

    # ---- acting --------------------------------------------------------------------------------
    def behaviour(self, actor_params, obs, avail, key, env_steps):
        return self.explore(self.outputs(actor_params, obs), avail, key, env_steps)

    def greedy_outputs(self, outputs, avail):
        return tuple(jnp.argmax(self.masked_logits(o, av), -1).astype(jnp.int32) if grp.action_space.kind == "discrete"
                     else o[1] for grp, o, av in zip(self.groups, outputs, avail))

    def sample_batch(self, buffer, key, reward_stats):
        """Recurrent actors: sequences, flattened for the critics (``seq`` and the padding ``weight`` beside them)."""
        if self.recurrent:
            return self.sample_flat_sequences(buffer, key, reward_stats)
        return super().sample_batch(buffer, key, reward_stats)

    def explore(self, outputs, avail, key, env_steps):
        """Discrete agents: the argmax of a Gumbel-softmax sample (a sample of softmax(logits)), or with ``epsilon`` on a
        uniform available action with probability epsilon (the stored log-probability the mixture's); continuous
        agents: Gaussian noise on the deterministic action."""
        sigma = self.noise(env_steps)
        mix = getattr(self.cfg, "explores_uniformly", False)
        eps = epsilon_schedule(self.cfg, env_steps) if mix else None
        random = self.agents.random_actions(jax.random.fold_in(key, 1000), avail) if mix else (None,) * len(avail)
        actions, logps = [], []
        for g, (grp, out, av) in enumerate(zip(self.groups, outputs, avail)):
            k = jax.random.fold_in(key, g)
            if grp.action_space.kind == "discrete" and mix:
                a, lp = epsilon_mixture(k, jax.nn.log_softmax(self.masked_logits(out, av)), av, random[g], eps)
                logps.append(lp)
            elif grp.action_space.kind == "discrete":
                logits = self.masked_logits(out, av)
                a = jnp.argmax(gumbel_softmax(k, logits, self.cfg.gumbel_temperature), axis=-1).astype(jnp.int32)
                # the argmax of a Gumbel-softmax sample is a Gumbel-max sample of softmax(logits), whatever the temperature
                logps.append(jnp.take_along_axis(jax.nn.log_softmax(logits), a[..., None], -1)[..., 0])
            else:
                noise = sigma * jax.random.normal(k, out[1].shape)
                a = out[1] + noise
                z = noise / jnp.maximum(sigma, 1e-8)
                logps.append(jnp.sum(-0.5 * z * z - jnp.log(jnp.maximum(sigma, 1e-8)) - 0.5 * jnp.log(2 * jnp.pi), -1))
            actions.append(a)
        return tuple(actions), jnp.concatenate(logps, axis=-1)

    def greedy(self, actor_params, obs, avail):
        return self.greedy_outputs(self.outputs(actor_params, obs), avail)

    def action_vectors(self, outputs: tuple, avail: tuple, key=None, smooth: bool = False, straight_through: bool = False):
        """Per group the critic's action inputs from actor outputs: discrete one-hots (argmax, a Gumbel
        sample when ``smooth``, or a straight-through Gumbel-softmax sample when ``straight_through``),
        continuous actions (plus clipped smoothing noise when ``smooth``)."""
        cfg, vecs = self.cfg, []
        for g, (grp, out, av) in enumerate(zip(self.groups, outputs, avail)):
            k = None if key is None else jax.random.fold_in(key, g)
            sp = grp.action_space
            if sp.kind == "discrete":
                logits = self.masked_logits(out, av)
                if straight_through or smooth:
                    vecs.append(gumbel_softmax(k, logits, cfg.gumbel_temperature, hard=True, batch_rows=True))  # env blocks: own rows
                else:
                    vecs.append(jax.nn.one_hot(jnp.argmax(logits, -1), sp.n))
            else:
                a = out[1]
                if smooth:
                    noise = block_rows(k, a.shape, jax.random.normal)  # env blocks: this block's rows of one draw
                    eps = jnp.clip(cfg.target_noise * noise, -cfg.target_noise_clip, cfg.target_noise_clip)
                    a = jnp.clip(a + eps, sp.low, sp.high)
                vecs.append(a)
        return tuple(vecs)

    # ---- learning, in pieces as MAAC's: target, critic step, (delayed) actor step, targets ---------
    def train_step(self, state: OffPolicyState, batch: dict, key):
        """The critic step, then the actors whose turn it is on the *updated* critic, then the targets."""
        k_target, k_actor = jax.random.split(key)
        batch = dict(batch, y=self.td_target(state, batch, k_target))
        state, metrics = self.critic_step(state, batch, jax.random.fold_in(key, 3))
        state, a_loss, more = self.delayed_actor_step(state, batch, k_actor)
        return state, {**metrics, "loss/actor": jnp.nanmean(a_loss), "diag/actor_loss_per_agent": a_loss, **more}

    def next_action_vectors(self, state: OffPolicyState, batch: dict, key) -> tuple:
        """Per group the target actors' next actions ``mu'(o')`` (MATD3: smoothed)."""
        smooth = self.cfg.target_noise > 0
        next_out = self.batch_outputs(state.target_actor_params, batch, nxt=True)
        return self.action_vectors(next_out, batch["next_avail"], key if smooth else None, smooth=smooth)

    def td_target(self, state: OffPolicyState, batch: dict, key) -> jax.Array:
        """``y_i = r_i + gamma (1 - terminated) min_k Q'_{i,k}(x', mu'(o'))`` ``[N, B]``, no gradient (Lowe et al.
        2017, eq. 6; the min over twin critics and the target smoothing: Ackermann et al. 2019 / Fujimoto et al. 2018)."""
        next_act = self.next_action_vectors(state, batch, key)
        q_next = self.q_values(state.target_critic_params, self.joint(batch["next_obs"], next_act)).min(0)  # [N, B]
        not_done = 1.0 - batch["terminated"].astype(jnp.float32)
        return jax.lax.stop_gradient(batch["reward"].T + self.cfg.gamma * not_done[None] * q_next)

    def critic_step(self, state: OffPolicyState, batch: dict, key):
        """One step of the critics on ``mean_{k,b} (Q_{i,k}(x, a) - y_i)^2`` per agent (Lowe et al. 2017, eq. 6):
        summed over the agents' critics, or averaged over the agents for the one shared critic."""
        x, y = self.joint(batch["obs"], self.agents.action_vectors(batch["actions"])), batch["y"]
        w = batch.get("weight")  # padded steps excluded (recurrent actors)

        def critic_loss(params):
            q = self.q_values(params, x)  # [K, N, B]
            if w is None:
                per_agent = jnp.mean(jnp.square(q - y[None]), axis=(0, 2))
            else:
                per_agent = batch_mean(jnp.square(q - y[None]), w, axis=2).mean(0)
            return per_agent.sum() * self.critic_weight, (per_agent, batch_mean(q[0], w, axis=-1))

        grads, (c_loss, q_mean) = jax.grad(critic_loss, has_aux=True)(state.critic_params)
        critic_params, critic_opt = self.apply_critic(state.critic_params, grads, state.critic_opt)
        state = state._replace(critic_params=critic_params, critic_opt=critic_opt)
        return state, {"loss/critic": c_loss.mean(), "diag/critic_loss_per_agent": c_loss, "diag/q_per_agent": q_mean}

    def substitute(self, x_obs: jax.Array, others: jax.Array, own: jax.Array) -> jax.Array:
        """``[N, B, D]``: agent ``i``'s critic input, the others' actions ``others`` (``[B, A]`` or per agent ``[N, B, A]``)
        with its own slot replaced by ``own`` ``[B, A]`` (or per agent ``[N, B, A]``: F2A2's per-agent batches)."""
        slots = self.own_slots[:, None]
        acts = others * (1 - slots) + (own if own.ndim == 3 else own[None]) * slots  # [N, B, A]
        return jnp.concatenate([jnp.broadcast_to(x_obs, acts.shape[:2] + x_obs.shape[-1:]), acts], -1)

    def actor_objective(self, state: OffPolicyState, batch: dict, out: tuple, key) -> jax.Array:
        """``[N]`` to minimise: ``-mean_b Q_i(x, a_1..mu_i(o_i)..a_N)`` (Lowe et al. 2017, eq. 5), the others' actions
        from the buffer or their current deterministic policies (``actor_others``)."""
        x_obs = self.joint(batch["obs"], self.agents.action_vectors(batch["actions"]))
        x_obs, buffer_act = x_obs[..., : self.joint_obs_dim], x_obs[..., self.joint_obs_dim:]
        own = self.joint(batch["obs"], self.action_vectors(out, batch["avail"], key, straight_through=True))[..., self.joint_obs_dim:]
        if self.cfg.actor_others == "current":
            others = self.joint(batch["obs"], self.action_vectors(out, batch["avail"]))[..., self.joint_obs_dim:]
            others = jax.lax.stop_gradient(others)
        else:
            others = buffer_act
        q = self.q_values(state.critic_params, self.substitute(x_obs, others, own), per_agent=True)[0]  # [N, B]
        return -batch_mean(q, batch.get("weight"), axis=-1)

    def actor_step(self, state: OffPolicyState, batch: dict, key):
        """One step of every actor on :meth:`actor_objective` plus ``policy_reg * mean(logits^2)`` (pre-tanh outputs
        for continuous actors; the reference code's regulariser)."""
        cfg, w = self.cfg, self.steps_weight(batch)

        def mean_sq(x, g):  # [B, n_g, A] -> [N]: mean over the batch (its valid steps) and the outputs
            return jnp.mean(jnp.square(x), axis=(0, -1)) if w is None else batch_mean(jnp.mean(jnp.square(x), -1), self.group_weight(w, g))

        def actor_loss(actor_params):
            out = self.batch_outputs(actor_params, batch)
            reg = jnp.concatenate([mean_sq(o if grp.action_space.kind == "discrete" else o[0], g)
                                   for g, (grp, o) in enumerate(zip(self.groups, self.own_outputs(out)))])  # [N]
            per_agent = self.actor_objective(state, batch, out, key) + cfg.policy_reg * reg
            return per_agent.sum(), per_agent

        grads, a_loss = jax.grad(actor_loss, has_aux=True)(state.actor_params)
        actor_params, actor_opt = self.apply_actors(state.actor_params, grads, state.actor_opt)
        return state._replace(actor_params=actor_params, actor_opt=actor_opt), a_loss

    def own_outputs(self, out: tuple) -> tuple:
        """Per group each agent's outputs on the batch it learns from (F2A2's per-agent batches pick them). MADDPG: ``out``."""
        return out

    def policy_delays(self, state: OffPolicyState) -> jax.Array:
        """``[N]`` int32: every agent's actor delay ``d_i`` (MATD3: ``policy_delay`` for all)."""
        return jnp.full((self.n_agents,), self.cfg.policy_delay, jnp.int32)

    def select_agents(self, due: jax.Array, new: tuple, old: tuple) -> tuple:
        """Per group (actor parameters, optimiser states, targets): ``new`` for the agents where ``due`` ``[N]``."""
        out = []
        for g, (grp, a, b) in enumerate(zip(self.groups, new, old)):
            m = jax.lax.dynamic_slice_in_dim(due, int(self.agents.offsets[g]), grp.n)
            if not self.agents.stacked(g):  # one actor for the group: it steps with its first agent
                out.append(jax.tree.map(lambda x, y, m=m: jnp.where(m[0], x, y), a, b))
            else:
                out.append(jax.tree.map(lambda x, y, m=m: jnp.where(m.reshape((-1,) + (1,) * (x.ndim - 1)), x, y), a, b))
        return tuple(out)

    def delayed_actor_step(self, state: OffPolicyState, batch: dict, key):
        """Agent ``i``'s actor and its target step when ``grad_steps % d_i == 0`` (Ackermann et al. 2019, Alg. 1,
        per agent; the count runs across updates and checkpoints); the critic targets follow the critics at every
        step (Polyak every step, as before a HalfCheetah 2x3 measurement: freezing them as Fujimoto et al. 2018,
        Algorithm 1, failed the slow test); :meth:`after_actors` runs between the actors and the targets. Returns
        the state, the actor losses ``[N]`` (NaN: no step) and :meth:`after_actors`' metrics."""
        k_after = jax.random.fold_in(key, 5)
        if self.cfg.policy_delay == 1 and not self.per_agent_delays:
            state, a_loss = self.actor_step(state, batch, key)
            state, more = self.after_actors(state, batch, k_after)
            return self.update_targets(state), a_loss, more
        due = state.grad_steps % self.policy_delays(state) == 0  # [N]

        def actors(old):
            new, a_loss = self.actor_step(old, batch, key)
            new, more = self.after_actors(new, batch, k_after)
            new = self.update_targets(new)
            pick = lambda a, b: self.select_agents(due, a, b)  # noqa: E731
            new = new._replace(actor_params=pick(new.actor_params, old.actor_params), actor_opt=pick(new.actor_opt, old.actor_opt),
                               target_actor_params=pick(new.target_actor_params, old.target_actor_params))
            return new, jnp.where(due, a_loss, jnp.nan), more

        def critic_only(old):
            new, more = self.after_actors(old, batch, k_after)
            return self.update_targets(new, actors=False), jnp.full((self.n_agents,), jnp.nan), more

        return jax.lax.cond(due.any(), actors, critic_only, state)

    def after_actors(self, state: OffPolicyState, batch: dict, key):
        """Steps after the actors' and before the targets' (F2A2: the consensus event). MADDPG: none."""
        return state, {}

    def policy_change(self, old_actor, new_actor, obs, avail):
        old, new = self.outputs(old_actor, obs), self.outputs(new_actor, obs)
        out = {}
        if all(g.action_space.kind == "discrete" for g in self.groups):
            out.update(self.categorical_kl_per_agent(old, new, avail))
        # every kind: mean squared change of the deterministic action (one-hot for discrete agents)
        a_old, a_new = self.action_vectors(old, avail), self.action_vectors(new, avail)
        out["diag/action_change_per_agent"] = jnp.concatenate(
            [jnp.mean(jnp.sum(jnp.square(n - o), -1), axis=0) for o, n in zip(a_old, a_new)])
        return out


register_algo(
    "maddpg", MADDPGConfig, MADDPG,
    "MADDPG: deterministic actors (Gumbel-softmax for discrete actions), a centralised Q(x, a) critic per agent (Lowe et al. 2017)",
    family="off-policy",
)
register_algo(
    "matd3", MATD3Config, MADDPG,
    "MATD3: MADDPG with twin critics, target policy smoothing and delayed actor updates (Ackermann et al. 2019)",
    family="off-policy",
)
