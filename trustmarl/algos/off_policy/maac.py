"""MAAC: actor-attention-critic (Iqbal & Sha 2019) with soft actor-critic actors.

One centralised attention critic (:class:`~trustmarl.networks.AttentionCritic`) gives every agent
``Q_i(o, (., a_-i))``, the value of each of its own actions given the other agents' actions; agents of
different groups attend to each other (Rover-Tower's rovers and towers). Discrete actions only (the
critic outputs one value per own action). Per gradient step, on a batch from the buffer:

- critic (Iqbal & Sha 2019, eq. 3; the soft target of their code):
  ``L_Q = sum_i E[(Q_i(o, a) - y_i)^2] + 1e-3 sum_{i,h} mean((q_i . k_j)^2)`` with
  ``y_i = r_i + gamma (1 - terminated) Q'_i(o', a') - log pi'_i(a'_i | o'_i) / soft_reward_scale``, ``a' ~ pi'``
  (the target policies); the attention-logit penalty and the 1/n scaling of the gradients of the
  modules shared by all agents (keys, selectors, values, state-action encoders) follow the authors' code;
- actors (Iqbal & Sha 2019, eq. 4 and the counterfactual baseline of eq. 5): with ``a~ ~ pi`` for every agent,
  ``A_i = Q_i(o, a~) - sum_{a_i} pi_i(a_i | o_i) Q_i(o, (a_i, a~_-i))`` and the score-function loss
  ``E[log pi_i(a~_i | o_i) sg(log pi_i(a~_i | o_i) / soft_reward_scale - A_i)] + policy_reg mean(logits^2)``,
  i.e. soft policy iteration with entropy coefficient ``1 / soft_reward_scale`` (the paper's reward scale);
- targets: Polyak averaging of the critic and the actors after every gradient step.

The preset follows the MAMT paper's Table 2 (= the MAAC reference code): 12 env copies, an update every
100 env steps, 4 gradient steps of batch 1024, tau 0.001, reward scale 100, rewards normalised by the
buffer's statistics, critic L2 1e-3. Not reproduced: the reference code's BatchNorm on the inputs.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from trustmarl.algos import register_algo
from trustmarl.algos.off_policy.config import OffPolicyConfig
from trustmarl.algos.off_policy.engine import OffPolicy, OffPolicyState
from trustmarl.networks import AttentionCritic, LogitsActor
from trustmarl.validation import ConfigError, non_negative, positive, positive_int

SHARED_CRITIC_MODULES = ("key", "selector", "value", "sa_enc_")  # gradients scaled by 1/n (MAAC code)


@dataclasses.dataclass
class MAACConfig(OffPolicyConfig):
    """MAAC hyperparameters (MAMT paper Table 2, the MAAC code's defaults)."""

    name: str = "maac"
    tau: float = 0.001
    reward_norm: bool = True
    critic_l2: float = 1e-3
    soft_reward_scale: float = 100.0  # the entropy coefficient is 1 / soft_reward_scale
    critic_hidden: int = 128
    attention_heads: int = 4
    attention_penalty: float = 1e-3

    UNUSED = {
        "noise_start": "MAAC's actors are stochastic (softmax policies): no action noise",
        "noise_end": "MAAC's actors are stochastic (softmax policies): no action noise",
        "noise_decay_steps": "MAAC's actors are stochastic (softmax policies): no action noise",
        "gumbel_temperature": "MAAC samples its softmax policies directly",
    }

    def validate(self) -> None:
        super().validate()
        positive(self, "soft_reward_scale")
        positive_int(self, "critic_hidden", "attention_heads")
        non_negative(self, "attention_penalty")
        if self.critic_hidden % self.attention_heads:
            raise ConfigError(
                f"algo.attention_heads={self.attention_heads} must divide algo.critic_hidden={self.critic_hidden}"
            )


class MAAC(OffPolicy):
    def __init__(self, env, cfg: MAACConfig, total_updates: int | None = None):
        super().__init__(env, cfg, total_updates)
        net = dict(hidden_sizes=tuple(cfg.hidden_sizes), activation=cfg.activation, layer_norm=cfg.layer_norm)
        self.actors = tuple(LogitsActor(g.action_space.n, **net) for g in self.groups)
        self.critic = AttentionCritic(group_sizes=tuple(g.n for g in self.groups),
                                      n_actions=tuple(g.action_space.n for g in self.groups),
                                      hidden=cfg.critic_hidden, heads=cfg.attention_heads)

    def init_networks(self, key):
        k_actor, k_critic = jax.random.split(key)
        ag = self.agents
        actors = tuple(ag.init(a, jax.random.fold_in(k_actor, g), g, ag.dummy_obs(g)) for g, a in enumerate(self.actors))
        obs = tuple(jnp.zeros((g.n, g.obs_dim)) for g in self.groups)
        act = tuple(jnp.zeros((g.n, g.action_space.n)) for g in self.groups)
        return actors, self.critic.init(k_critic, obs, act)

    def log_policies(self, actor_params: tuple, obs: tuple, avail: tuple) -> tuple[tuple, tuple]:
        """Per group ``(logits, log pi)`` ``[..., n_g, A]`` (unavailable actions masked out of ``log pi``)."""
        ag, logits = self.agents, []
        for g in range(len(self.groups)):
            logits.append(ag.apply(self.actors[g], actor_params[g], g, ag.with_id(g, obs[g])))
        return tuple(logits), tuple(jax.nn.log_softmax(self.masked_logits(lg, av)) for lg, av in zip(logits, avail))

    def sample(self, logp: tuple, key) -> tuple:
        return tuple(jax.random.categorical(jax.random.fold_in(key, g), lp).astype(jnp.int32) for g, lp in enumerate(logp))

    @staticmethod
    def gather(x: tuple, actions: tuple) -> jax.Array:
        """``[..., N]``: per agent the entry of ``x`` (per group ``[..., n_g, A]``) at its action."""
        return jnp.concatenate([jnp.take_along_axis(v, a[..., None], -1)[..., 0] for v, a in zip(x, actions)], -1)

    def onehot(self, actions: tuple) -> tuple:
        return tuple(jax.nn.one_hot(a, g.action_space.n) for g, a in zip(self.groups, actions))

    # ---- acting --------------------------------------------------------------------------------
    def behaviour(self, actor_params, obs, avail, key, env_steps):
        _, logp = self.log_policies(actor_params, obs, avail)
        actions = self.sample(logp, key)
        return actions, self.gather(logp, actions)

    def greedy(self, actor_params, obs, avail):
        _, logp = self.log_policies(actor_params, obs, avail)
        return tuple(jnp.argmax(lp, -1).astype(jnp.int32) for lp in logp)

    # ---- learning ------------------------------------------------------------------------------
    def train_step(self, state: OffPolicyState, batch: dict, key):
        cfg = self.cfg
        k_next, k_act = jax.random.split(key)
        # soft target: y_i = r_i + gamma (1 - d) Q'_i(o', a') - log pi'_i(a'_i | o'_i) / alpha  (a' ~ target policies)
        _, next_logp = self.log_policies(state.target_actor_params, batch["next_obs"], batch["next_avail"])
        next_a = self.sample(next_logp, k_next)
        q_next, _ = self.critic.apply(state.target_critic_params, batch["next_obs"], self.onehot(next_a))
        not_done = 1.0 - batch["terminated"].astype(jnp.float32)[:, None]
        y = batch["reward"] + cfg.gamma * not_done * self.gather(q_next, next_a) - self.gather(next_logp, next_a) / cfg.soft_reward_scale
        y = jax.lax.stop_gradient(y)  # [B, N]

        def critic_loss(params):
            q_all, logits = self.critic.apply(params, batch["obs"], self.onehot(batch["actions"]))
            q = self.gather(q_all, batch["actions"])
            per_agent = jnp.mean(jnp.square(q - y), axis=0)  # Iqbal & Sha 2019, eq. 3
            n = self.n_agents
            # the authors' attention-logit penalty: 1e-3 * sum over agents and heads of mean(logit^2) over j != i
            penalty = jnp.sum(jnp.square(logits)) / (logits.shape[0] * max(n - 1, 1))
            return per_agent.sum() + cfg.attention_penalty * penalty, (per_agent, q.mean(0))

        grads, (c_loss, q_mean) = jax.grad(critic_loss, has_aux=True)(state.critic_params)
        grads = scale_shared(grads, 1.0 / self.n_agents)
        critic_params, critic_opt = self.apply_critic(state.critic_params, grads, state.critic_opt)

        # actors with the counterfactual baseline (Iqbal & Sha 2019, eq. 4-5)
        def actor_loss(actor_params):
            logits, logp = self.log_policies(actor_params, batch["obs"], batch["avail"])
            acts = self.sample(jax.lax.stop_gradient(logp), k_act)
            q_all, _ = self.critic.apply(state.critic_params, batch["obs"], self.onehot(acts))
            q_all = jax.lax.stop_gradient(q_all)
            baseline = jnp.concatenate([jnp.sum(jnp.exp(lp) * q, -1) for lp, q in zip(logp, q_all)], -1)
            adv = self.gather(q_all, acts) - baseline
            logp_a = self.gather(logp, acts)  # [B, N]
            pol = logp_a * jax.lax.stop_gradient(logp_a / cfg.soft_reward_scale - adv)
            reg = jnp.concatenate([jnp.mean(jnp.square(lg), axis=(0, -1)) for lg in logits])
            per_agent = pol.mean(0) + cfg.policy_reg * reg
            entropy = jnp.concatenate([-jnp.sum(jnp.exp(lp) * jnp.where(jnp.isfinite(lp), lp, 0.0), -1).mean(0) for lp in logp])
            return per_agent.sum(), (per_agent, entropy)

        grads, (a_loss, entropy) = jax.grad(actor_loss, has_aux=True)(state.actor_params)
        actor_params, actor_opt = self.apply_actors(state.actor_params, grads, state.actor_opt)
        state = state._replace(critic_params=critic_params, critic_opt=critic_opt, actor_params=actor_params, actor_opt=actor_opt)
        return self.update_targets(state), {
            "loss/critic": c_loss.mean(), "loss/actor": a_loss.mean(), "loss/entropy": entropy.mean(),
            "diag/critic_loss_per_agent": c_loss, "diag/actor_loss_per_agent": a_loss, "diag/q_per_agent": q_mean,
            "diag/entropy_per_agent": entropy,
        }

    def policy_change(self, old_actor, new_actor, obs, avail):
        old, _ = self.log_policies(old_actor, obs, avail)
        new, _ = self.log_policies(new_actor, obs, avail)
        return self.categorical_kl_per_agent(old, new, avail)


def scale_shared(grads, factor: float):
    """Scale the gradients of the critic modules every agent shares (MAAC code: 1/n after the backward pass)."""
    def scale(path, g):
        name = str(getattr(path[1], "key", "")) if len(path) > 1 else ""
        return g * factor if name.startswith(SHARED_CRITIC_MODULES) else g

    return jax.tree_util.tree_map_with_path(scale, grads)


register_algo(
    "maac", MAACConfig, MAAC,
    "MAAC: soft actor-critic actors with a multi-head attention critic and a counterfactual baseline (Iqbal & Sha 2019)",
    family="off-policy", action_kinds=("discrete",),
)
