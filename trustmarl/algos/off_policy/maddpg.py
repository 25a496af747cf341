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
from trustmarl.algos.off_policy.config import OffPolicyConfig
from trustmarl.algos.off_policy.engine import OffPolicy, OffPolicyState
from trustmarl.networks import Critic, DeterministicActor, LogitsActor, gumbel_softmax
from trustmarl.validation import ConfigError, non_negative, positive_int


@dataclasses.dataclass
class MADDPGConfig(OffPolicyConfig):
    """MADDPG hyperparameters (MAMT paper Table 3: MAAC's shared settings; maddpg-pytorch's tau 0.01)."""

    name: str = "maddpg"
    actor_others: str = "buffer"  # buffer: the paper's eq. 5 | current: the others' current deterministic policies
    twin_critics: bool = False  # MATD3: two critics per agent, min of the targets
    policy_delay: int = 1  # MATD3: actor and target updates every this many critic steps (counted across updates)
    target_noise: float = 0.0  # MATD3: std of the target policy smoothing noise (continuous actions)
    target_noise_clip: float = 0.5  # MATD3: the smoothing noise is clipped to +-this value

    CHOICES: typing.ClassVar[dict[str, tuple[str, ...]]] = {**OffPolicyConfig.CHOICES, "actor_others": ("buffer", "current")}

    def validate(self) -> None:
        super().validate()
        positive_int(self, "policy_delay")
        non_negative(self, "target_noise", "target_noise_clip")


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


class MADDPG(OffPolicy):
    def __init__(self, env, cfg: MADDPGConfig, total_updates: int | None = None):
        super().__init__(env, cfg, total_updates)
        net = dict(hidden_sizes=tuple(cfg.hidden_sizes), activation=cfg.activation, layer_norm=cfg.layer_norm)
        self.actors = tuple(
            LogitsActor(g.action_space.n, **net) if g.action_space.kind == "discrete"
            else DeterministicActor(g.action_space.dim, low=g.action_space.low, high=g.action_space.high, **net)
            for g in self.groups
        )
        self.critic = Critic(**net)
        self.n_critics = 2 if cfg.twin_critics else 1
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
        actors = tuple(ag.init(a, jax.random.fold_in(k_actor, g), g, ag.dummy_obs(g)) for g, a in enumerate(self.actors))
        x = jnp.zeros((self.joint_obs_dim + self.joint_act_dim,))
        keys = jax.random.split(k_critic, self.n_critics * self.n_agents).reshape(self.n_critics, self.n_agents, -1)
        critics = jax.vmap(jax.vmap(self.critic.init, in_axes=(0, None)), in_axes=(0, None))(keys, x)  # [K, N, ...]
        return actors, critics

    def outputs(self, actor_params: tuple, obs: tuple) -> tuple:
        """Per group the actor outputs: logits ``[..., n_g, A]`` or ``(pre_tanh, action)``."""
        ag = self.agents
        return tuple(ag.apply(self.actors[g], actor_params[g], g, ag.with_id(g, obs[g])) for g in range(len(self.groups)))

    def q_values(self, critic_params, x: jax.Array, per_agent: bool = False) -> jax.Array:
        """``[K, N, ...]``: every critic on the shared input ``x`` ``[..., D]``, or (``per_agent``) agent ``i``'s
        critics on ``x[i]`` of ``x`` ``[N, ..., D]``."""
        return jax.vmap(jax.vmap(self.critic.apply, in_axes=(0, 0 if per_agent else None)), in_axes=(0, None))(critic_params, x)

    def joint(self, obs: tuple, action_vectors: tuple) -> jax.Array:
        """The critic input ``[B, D]``: every agent's observation, then every agent's action vector."""
        flat = lambda xs: jnp.concatenate([x.reshape(x.shape[:-2] + (-1,)) for x in xs], axis=-1)  # noqa: E731
        return jnp.concatenate([flat(obs), flat(action_vectors)], axis=-1)

    # ---- acting --------------------------------------------------------------------------------
    def behaviour(self, actor_params, obs, avail, key, env_steps):
        sigma = self.noise(env_steps)
        actions, logps = [], []
        for g, (grp, out, av) in enumerate(zip(self.groups, self.outputs(actor_params, obs), avail)):
            k = jax.random.fold_in(key, g)
            if grp.action_space.kind == "discrete":
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
        out = []
        for grp, o, av in zip(self.groups, self.outputs(actor_params, obs), avail):
            out.append(jnp.argmax(self.masked_logits(o, av), -1).astype(jnp.int32) if grp.action_space.kind == "discrete" else o[1])
        return tuple(out)

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
                    vecs.append(gumbel_softmax(k, logits, cfg.gumbel_temperature, hard=True))
                else:
                    vecs.append(jax.nn.one_hot(jnp.argmax(logits, -1), sp.n))
            else:
                a = out[1]
                if smooth:
                    eps = jnp.clip(cfg.target_noise * jax.random.normal(k, a.shape), -cfg.target_noise_clip, cfg.target_noise_clip)
                    a = jnp.clip(a + eps, sp.low, sp.high)
                vecs.append(a)
        return tuple(vecs)

    # ---- learning ------------------------------------------------------------------------------
    def train_step(self, state: OffPolicyState, batch: dict, key):
        cfg = self.cfg
        k_target, k_actor = jax.random.split(key)
        # critic: y_i = r_i + gamma (1 - terminated) min_k Q'_{i,k}(x', mu'(o'))  (Lowe et al. 2017, eq. 6;
        # the min over twin critics and the target smoothing: Ackermann et al. 2019 / Fujimoto et al. 2018)
        next_out = self.outputs(state.target_actor_params, batch["next_obs"])
        smooth = cfg.target_noise > 0
        next_act = self.action_vectors(next_out, batch["next_avail"], k_target if smooth else None, smooth=smooth)
        q_next = self.q_values(state.target_critic_params, self.joint(batch["next_obs"], next_act)).min(0)  # [N, B]
        not_done = 1.0 - batch["terminated"].astype(jnp.float32)
        y = jax.lax.stop_gradient(batch["reward"].T + cfg.gamma * not_done[None] * q_next)  # [N, B]
        x = self.joint(batch["obs"], self.agents.action_vectors(batch["actions"]))

        def critic_loss(params):
            q = self.q_values(params, x)  # [K, N, B]
            per_agent = jnp.mean(jnp.square(q - y[None]), axis=(0, 2))
            return per_agent.sum(), (per_agent, q[0].mean(-1))

        grads, (c_loss, q_mean) = jax.grad(critic_loss, has_aux=True)(state.critic_params)
        critic_params, critic_opt = self.apply_critic(state.critic_params, grads, state.critic_opt)
        state = state._replace(critic_params=critic_params, critic_opt=critic_opt)

        def actor_update(state):
            # actor: maximise Q_i(x, a_1..mu_i(o_i)..a_N)  (Lowe et al. 2017, eq. 5), plus the output regulariser
            buffer_act = self.joint(batch["obs"], self.agents.action_vectors(batch["actions"]))[..., self.joint_obs_dim:]

            def actor_loss(actor_params):
                out = self.outputs(actor_params, batch["obs"])
                own = self.joint(batch["obs"], self.action_vectors(out, batch["avail"], k_actor, straight_through=True))
                own_act = own[..., self.joint_obs_dim:]  # [B, A] every agent's current (straight-through) action
                if cfg.actor_others == "current":
                    others = self.joint(batch["obs"], self.action_vectors(out, batch["avail"]))[..., self.joint_obs_dim:]
                    others = jax.lax.stop_gradient(others)
                else:
                    others = buffer_act
                acts = others[None] * (1 - self.own_slots[:, None]) + own_act[None] * self.own_slots[:, None]  # [N, B, A]
                xs = jnp.concatenate([jnp.broadcast_to(x[None, :, : self.joint_obs_dim], acts.shape[:2] + (self.joint_obs_dim,)), acts], -1)
                q = self.q_values(state.critic_params, xs, per_agent=True)[0]  # [N, B]: agent i's critic, its own substitution
                reg = jnp.concatenate([jnp.mean(jnp.square(o if g.action_space.kind == "discrete" else o[0]), axis=(0, -1))
                                       for g, o in zip(self.groups, out)])  # [N]
                per_agent = -q.mean(-1) + cfg.policy_reg * reg
                return per_agent.sum(), per_agent

            grads, a_loss = jax.grad(actor_loss, has_aux=True)(state.actor_params)
            actor_params, actor_opt = self.apply_actors(state.actor_params, grads, state.actor_opt)
            state = state._replace(actor_params=actor_params, actor_opt=actor_opt)
            return self.update_targets(state), a_loss

        def critic_only(state):
            # between delayed steps the critic targets still follow the critics (Polyak every step, as before a
            # HalfCheetah 2x3 measurement: freezing them as Fujimoto et al. 2018, Algorithm 1, failed the slow test)
            return self.update_targets(state, actors=False), jnp.full((self.n_agents,), jnp.nan)

        if cfg.policy_delay == 1:
            state, a_loss = actor_update(state)
        else:  # MATD3: actors and their targets every policy_delay critic steps (Ackermann et al. 2019, Alg. 1), counted
            # by the state's gradient-step counter across updates (and checkpoints)
            state, a_loss = jax.lax.cond(state.grad_steps % cfg.policy_delay == 0, actor_update, critic_only, state)
        return state, {
            "loss/critic": c_loss.mean(), "loss/actor": jnp.nanmean(a_loss),
            "diag/critic_loss_per_agent": c_loss, "diag/actor_loss_per_agent": a_loss, "diag/q_per_agent": q_mean,
        }

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
