"""IQL: independent deep Q-learning (Tan 1993; deep Q-networks, Mnih et al. 2015), the baseline of value decomposition.

Each agent learns its own ``Q_i(o_i, a_i)`` as if the others were part of the environment, on the team
reward (``team_reward=sum|mean``) or on its own reward (``team_reward=individual``, general-sum games too):

    L = E[ mean_i (Q_i(o_i, a_i) - y_i)^2 ],  y_i = R_i + gamma^k (1 - terminated) Q^-_i(o'_i, a'_i)   (Mnih et al. 2015, eq. 3)

with the double-Q ``a'_i`` and the rest of the shared machinery of :mod:`trustmarl.algos.off_policy.qlearning`.
"""

from __future__ import annotations

import dataclasses
import typing

from trustmarl.algos import register_algo
from trustmarl.algos.off_policy.qlearning import QLearning, QLearningConfig

NO_MIXER = "independent Q-learning has no mixer or joint network"


@dataclasses.dataclass
class IQLConfig(QLearningConfig):
    """IQL hyperparameters: the shared Q-learning settings."""

    name: str = "iql"

    UNUSED: typing.ClassVar[dict[str, str]] = {
        **QLearningConfig.UNUSED, "critic_lr": NO_MIXER, "critic_max_grad_norm": NO_MIXER, "critic_l2": NO_MIXER,
    }
    MIXES: typing.ClassVar[bool] = False


class IQL(QLearning):
    ENV_BLOCKS = True  # run key env_blocks: TD losses are masked means over all blocks' valid steps (masked_mean), gradients
    # all-reduced (engine's apply_*), each block samples its own buffer part; no random draw in the update

    def mix(self, params, q, state):
        return q  # no mixing: every agent's own TD error, [B, N]


register_algo("iql", IQLConfig, IQL,
              "IQL: independent deep Q-learning, double-Q targets, epsilon-greedy (Tan 1993; Mnih et al. 2015)",
              family="off-policy", action_kinds=("discrete",))
