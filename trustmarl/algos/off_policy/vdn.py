"""VDN: value-decomposition networks (Sunehag et al. 2018).

The team's value is the sum of the agents' utilities, trained end to end on the team reward:

    Q_tot(o, a) = sum_i Q_i(o_i, a_i)                                      (Sunehag et al. 2018, eq. 1)
    L = E[(Q_tot(o, a) - y)^2],  y = R + gamma^k (1 - terminated) sum_i Q^-_i(o'_i, a'_i)

so the greedy joint action is every agent's own greedy action (decentralised execution). Assumes a
team reward and a team value that is (close to) additive in the agents' utilities.
"""

from __future__ import annotations

import dataclasses
import typing

from trustmarl.algos import register_algo
from trustmarl.algos.off_policy.qlearning import QLearning, QLearningConfig

NO_PARAMS = "VDN's mixer is a sum, without parameters"


@dataclasses.dataclass
class VDNConfig(QLearningConfig):
    """VDN hyperparameters: the shared Q-learning settings (Wen et al. 2021, Table 4)."""

    name: str = "vdn"

    UNUSED: typing.ClassVar[dict[str, str]] = {
        **QLearningConfig.UNUSED, **{k: NO_PARAMS for k in ("critic_lr", "critic_max_grad_norm", "critic_l2")},
    }


class VDN(QLearning):
    ENV_BLOCKS = True  # run key env_blocks: TD losses are masked means over all blocks' valid steps (masked_mean), gradients
    # all-reduced (engine's apply_*), each block samples its own buffer part; no random draw in the update

    def mix(self, params, q, state):
        return q.sum(-1)  # Q_tot = sum_i Q_i  (Sunehag et al. 2018, eq. 1)


register_algo("vdn", VDNConfig, VDN,
              "VDN: the team value as the sum of the agents' Q-values, double-Q targets (Sunehag et al. 2018)",
              family="off-policy", action_kinds=("discrete",))
