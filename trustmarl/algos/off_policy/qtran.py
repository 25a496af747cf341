"""QTRAN-base: factorisation by transformation (Son et al. 2019).

A joint action-value network ``Q_jt(s, a)`` (the global state and every agent's one-hot action) learns
the team's value by TD; the agents' utilities only need to *rank* joint actions like it. A state-value
network ``V_jt(s)`` absorbs the difference at the greedy joint action ``a_bar`` (each agent's argmax):

    L_td   = E[(Q_jt(s, a) - y)^2],  y = R + gamma^k (1 - terminated) Q^-_jt(s', a_bar')
    L_opt  = E[(sum_i Q_i(o_i, a_bar_i) - sg(Q_jt(s, a_bar)) + V_jt(s))^2]
    L_nopt = E[min(sum_i Q_i(o_i, a_i) - sg(Q_jt(s, a)) + V_jt(s), 0)^2]
    L = L_td + lambda_opt L_opt + lambda_nopt L_nopt                         (Son et al. 2019, Sec. 3.2)

``L_opt`` and ``L_nopt`` are the two conditions of Son et al. 2019's Theorem 1 (equality at the greedy
joint action, ``>=`` elsewhere) under which the utilities' argmax is the joint argmax; ``sg`` (stop
gradient) keeps ``Q_jt`` out of them. ``a_bar'`` is the online utilities' argmax (double Q,
van Hasselt et al. 2016). Not implemented: QTRAN-alt (the counterfactual joint networks).
"""

from __future__ import annotations

import dataclasses
import typing

import jax
import jax.numpy as jnp

from trustmarl.algos import register_algo
from trustmarl.algos.off_policy.qlearning import QLearning, QLearningConfig, chosen, masked_mean
from trustmarl.networks import Critic
from trustmarl.validation import hidden_sizes, non_negative


@dataclasses.dataclass
class QTRANConfig(QLearningConfig):
    """QTRAN-base hyperparameters (joint networks 2 x 128: Wen et al. 2021, Table 4; loss weights: pymarl's)."""

    name: str = "qtran"
    joint_hidden: tuple[int, ...] = (128, 128)  # hidden widths of the joint networks Q_jt(s, a) and V_jt(s)
    lambda_opt: float = 1.0  # weight of L_opt (Son et al. 2019, Sec. 3.2; pymarl: 1)
    lambda_nopt: float = 0.1  # weight of L_nopt (pymarl: 0.1)

    NEEDS_STATE: typing.ClassVar[bool] = True

    def validate(self) -> None:
        super().validate()
        hidden_sizes(self, "joint_hidden")
        non_negative(self, "lambda_opt", "lambda_nopt")


def qtran_losses(q_taken, q_greedy, q_jt, q_jt_greedy, v, y, valid=None) -> dict:
    """The three QTRAN-base losses (Son et al. 2019, Sec. 3.2) from ``[B, N]`` utilities of the taken and the
    greedy actions, ``Q_jt`` at the taken and the greedy joint actions, ``V_jt`` and the TD target ``[B]``
    (means over the steps that are not padding, ``valid``)."""
    mean = lambda x: masked_mean(x, valid)  # noqa: E731
    l_td = mean(jnp.square(q_jt - y))  # L_td: Q_jt learns the team's value
    l_opt = mean(jnp.square(q_greedy.sum(-1) - jax.lax.stop_gradient(q_jt_greedy) + v))  # L_opt: (4a), equality at a_bar
    l_nopt = mean(jnp.square(jnp.minimum(q_taken.sum(-1) - jax.lax.stop_gradient(q_jt) + v, 0.0)))  # L_nopt: (4b), >= 0
    return {"loss/td": l_td, "loss/opt": l_opt, "loss/nopt": l_nopt}


class QTRAN(QLearning):
    ENV_BLOCKS = True  # run key env_blocks: TD losses are masked means over all blocks' valid steps (masked_mean), gradients
    # all-reduced (engine's apply_*), each block samples its own buffer part; no random draw in the update

    def __init__(self, env, cfg: QTRANConfig, total_updates: int | None = None):
        super().__init__(env, cfg, total_updates)
        self.q_jt = Critic(tuple(cfg.joint_hidden), cfg.activation)
        self.v_jt = Critic(tuple(cfg.joint_hidden), cfg.activation)
        self.act_dim = sum(g.n * g.action_space.n for g in self.groups)

    def init_mixer(self, key):
        k_q, k_v = jax.random.split(key)
        return {"q": self.q_jt.init(k_q, jnp.zeros((self.state_dim + self.act_dim,))),
                "v": self.v_jt.init(k_v, jnp.zeros((self.state_dim,)))}

    def joint_q(self, params, state, actions: tuple) -> jax.Array:
        """``Q_jt(s, a)`` ``[B]`` on the state and every agent's one-hot action."""
        onehots = [v.reshape(v.shape[:-2] + (-1,)) for v in self.agents.action_vectors(actions)]
        return self.q_jt.apply(params["q"], jnp.concatenate([state] + onehots, -1))

    def next_value(self, state, batch, q_next=None):
        # Q^-_jt(s', a_bar'), a_bar' the online (double Q) or target argmax; the targets y are built from it
        if q_next is None or not self.cfg.double_q:
            q_next = self.utilities(state.actor_params if self.cfg.double_q else state.target_actor_params, batch)[1]
        a_next = tuple(jnp.argmax(jax.lax.stop_gradient(q), -1) for q in q_next)
        return self.joint_q(state.target_critic_params, batch["next_state"], a_next)

    def losses(self, q_params, mixer_params, batch, y, q_all=None):
        q_all = self.utilities(q_params, batch, with_next=False)[0] if q_all is None else q_all
        a_bar = tuple(jnp.argmax(q, -1) for q in q_all)
        q_taken, q_greedy = chosen(q_all, batch["actions"]), chosen(q_all, a_bar)
        s = batch["state"]
        terms = qtran_losses(q_taken, q_greedy, self.joint_q(mixer_params, s, batch["actions"]),
                             self.joint_q(mixer_params, s, a_bar), self.v_jt.apply(mixer_params["v"], s), y, batch.get("valid"))
        cfg = self.cfg
        total = terms["loss/td"] + cfg.lambda_opt * terms["loss/opt"] + cfg.lambda_nopt * terms["loss/nopt"]
        return total, {**terms, "diag/q_per_agent": q_taken.reshape(-1, q_taken.shape[-1]).mean(0)}


register_algo("qtran", QTRANConfig, QTRAN,
              "QTRAN-base: a joint Q-network and utilities tied to it by Theorem 1's conditions (Son et al. 2019)",
              family="off-policy", action_kinds=("discrete",))
