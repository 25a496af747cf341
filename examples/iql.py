"""Independent Q-learning (Tan 1993) with deep Q-networks, as a new trustmarl algorithm in one file.

The example of ``docs/writing_an_algorithm.md``, registered as ``my_iql`` (the library's own ``iql``, with
double-Q targets, team rewards and n-step returns, is ``trustmarl/algos/off_policy/iql.py`` beside VDN,
QMIX and QTRAN). An off-policy algorithm is the off-policy engine
(replay, update-to-data schedule, warm-up, target networks, checkpoints, evaluation, host envs)
plus four methods. Every agent learns its own ``Q_i(o_i, .)`` from its own reward, epsilon-greedy.

    trustmarl train examples.iql:IQL mpe/simple_spread --out runs/iql   # by import path, from the repo root
    trustmarl eval runs/iql                                              # the run records the import path
    import examples.iql  # in Python: registers "my_iql"; build_config("my_iql", ENV, {...}) then works
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from trustmarl.algos import register_algo
from trustmarl.algos.off_policy.config import OffPolicyConfig
from trustmarl.algos.off_policy.engine import OffPolicy
from trustmarl.networks import LogitsActor
from trustmarl.validation import in_range


@dataclasses.dataclass
class IQLConfig(OffPolicyConfig):
    """The engine's hyperparameters plus epsilon-greedy exploration."""

    name: str = "my_iql"
    epsilon_start: float = 1.0  # probability of a random action at the start
    epsilon_end: float = 0.05  # ... after epsilon_decay_steps env steps (a schedule in env steps: resume continues it)
    epsilon_decay_steps: int = 10_000  # env steps over which epsilon falls linearly

    def validate(self) -> None:
        super().validate()
        in_range(self, "epsilon_start", 0.0, 1.0)
        in_range(self, "epsilon_end", 0.0, 1.0)


class IQL(OffPolicy):
    def __init__(self, env, cfg: IQLConfig, total_updates=None):
        super().__init__(env, cfg, total_updates)
        # a Q-network per group: LogitsActor maps an observation to one output per action
        self.q_nets = tuple(LogitsActor(g.action_space.n, tuple(cfg.hidden_sizes), cfg.activation, head_gain=1.0)
                            for g in self.groups)
        self.epsilon = optax.linear_schedule(cfg.epsilon_start, cfg.epsilon_end, cfg.epsilon_decay_steps)

    def init_networks(self, key):
        ag = self.agents
        q = tuple(ag.init(net, jax.random.fold_in(key, g), g, ag.dummy_obs(g)) for g, net in enumerate(self.q_nets))
        return q, ()  # the "actors" are the Q-networks; no separate critic

    def q_values(self, params, obs, avail):
        ag = self.agents
        return tuple(self.masked_logits(ag.apply(net, params[g], g, ag.with_id(g, obs[g])), avail[g])
                     for g, net in enumerate(self.q_nets))

    def greedy(self, params, obs, avail):
        return tuple(jnp.argmax(q, -1).astype(jnp.int32) for q in self.q_values(params, obs, avail))

    def behaviour(self, params, obs, avail, key, env_steps):
        greedy = self.greedy(params, obs, avail)
        random = self.agents.random_actions(key, avail)
        explore = [jax.random.uniform(jax.random.fold_in(key, 10 + g), a.shape) < self.epsilon(env_steps)
                   for g, a in enumerate(greedy)]
        actions = tuple(jnp.where(e, r, a) for e, r, a in zip(explore, random, greedy))
        return actions, jnp.zeros(actions[0].shape[:-1] + (self.n_agents,))  # log-probs are not used here

    def train_step(self, state, batch, key):
        # y_i = r_i + gamma (1 - terminated) max_a Q'_i(o'_i, a)  (Mnih et al. 2015, eq. 3, per agent)
        q_next = self.q_values(state.target_actor_params, batch["next_obs"], batch["next_avail"])
        q_next = jnp.concatenate([q.max(-1) for q in q_next], -1)  # [B, N]
        not_done = 1.0 - batch["terminated"].astype(jnp.float32)[:, None]
        y = jax.lax.stop_gradient(batch["reward"] + self.cfg.gamma * not_done * q_next)

        def loss(params):
            q = self.q_values(params, batch["obs"], batch["avail"])
            q = jnp.concatenate([jnp.take_along_axis(v, a[..., None], -1)[..., 0] for v, a in zip(q, batch["actions"])], -1)
            per_agent = jnp.mean(jnp.square(q - y), axis=0)
            return per_agent.sum(), per_agent

        grads, per_agent = jax.grad(loss, has_aux=True)(state.actor_params)
        params, opt = self.apply_actors(state.actor_params, grads, state.actor_opt)
        state = self.update_targets(state._replace(actor_params=params, actor_opt=opt))
        return state, {"loss/td": per_agent.mean(), "diag/td_loss_per_agent": per_agent}


register_algo("my_iql", IQLConfig, IQL, "IQL: independent deep Q-learning, epsilon-greedy (Tan 1993; the docs' example)",
              family="off-policy", action_kinds=("discrete",))
