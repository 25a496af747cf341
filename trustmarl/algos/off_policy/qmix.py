"""QMIX: monotonic value-function factorisation (Rashid et al. 2018).

A mixing network combines the agents' chosen utilities into ``Q_tot``; its weights are produced by
hypernetworks of the global state ``s`` (``env.state``) and made non-negative, so ``Q_tot`` is monotone
in every utility and the greedy joint action is every agent's own greedy action:

    Q_tot(s, a) = w_2(s)^T elu(W_1(s)^T q + b_1(s)) + V(s),   q_i = Q_i(o_i, a_i)   (Rashid et al. 2018, Sec. 4)
    W_1(s) = |hyper_1(s)|,  w_2(s) = |hyper_2(s)|  =>  dQ_tot / dQ_i >= 0         (Rashid et al. 2018, eq. 5)
    L = E[(Q_tot(s, a) - y)^2],  y = R + gamma^k (1 - terminated) Q^-_tot(s', a')   (Rashid et al. 2018, eq. 6)

Assumes a team reward and a team value whose best joint action is the agents' individual best actions
(monotonicity); games like the climbing game violate it (see the docs' value-decomposition page).
"""

from __future__ import annotations

import dataclasses
import typing

import flax.linen as nn
import jax.numpy as jnp

from trustmarl.algos import register_algo
from trustmarl.algos.off_policy.qlearning import QLearning, QLearningConfig
from trustmarl.initializers import orthogonal
from trustmarl.networks import Dense
from trustmarl.validation import ConfigError, positive_int


@dataclasses.dataclass
class QMIXConfig(QLearningConfig):
    """QMIX hyperparameters: the shared Q-learning settings plus the mixer's widths (pymarl's defaults)."""

    name: str = "qmix"
    mixer_embed: int = 32  # width of the mixing network's hidden layer (pymarl: 32)
    hypernet_hidden: int = 64  # hidden width of the hypernetworks producing the mixing weights (pymarl: 64)
    mixer_init_scale: float = 0.0  # 0: LeCun-normal mixer kernels | > 0: orthogonal(scale) kernels (JaxMARL's MIXER_INIT_SCALE)

    NEEDS_STATE: typing.ClassVar[bool] = True

    def validate(self) -> None:
        super().validate()
        positive_int(self, "mixer_embed", "hypernet_hidden")
        if not self.mixer_init_scale >= 0:
            raise ConfigError(f"algo.mixer_init_scale={self.mixer_init_scale} is not allowed; choose 0 (LeCun-normal "
                              "kernels) or a positive orthogonal scale")


class QMixer(nn.Module):
    """``(q [..., N], state [..., S]) -> Q_tot [...]`` with state-conditioned non-negative weights."""

    n_agents: int
    embed: int = 32
    hyper_hidden: int = 64
    init_scale: float = 0.0  # 0: LeCun-normal kernels; > 0: orthogonal(init_scale)

    @nn.compact
    def __call__(self, q, state):
        init = orthogonal(self.init_scale) if self.init_scale > 0 else nn.initializers.lecun_normal()
        Dense_ = lambda out, name: Dense(out, kernel_init=init, name=name)  # noqa: E731

        def hyper(out, name):  # two-layer hypernetwork (pymarl's hypernet_layers=2)
            return Dense_(out, f"{name}_out")(nn.relu(Dense_(self.hyper_hidden, f"{name}_hidden")(state)))

        n, e = self.n_agents, self.embed
        w1 = jnp.abs(hyper(n * e, "w1")).reshape(state.shape[:-1] + (n, e))  # |.|: monotone (Rashid et al. 2018, eq. 5)
        b1 = Dense_(e, "b1")(state)
        hidden = nn.elu(jnp.einsum("...n,...ne->...e", q, w1) + b1)
        w2 = jnp.abs(hyper(e, "w2"))
        v = Dense_(1, "v_out")(nn.relu(Dense_(e, "v_hidden")(state)))[..., 0]  # state-dependent bias V(s)
        return jnp.sum(hidden * w2, axis=-1) + v


class QMIX(QLearning):
    ENV_BLOCKS = True  # run key env_blocks: TD losses are masked means over all blocks' valid steps (masked_mean), gradients
    # all-reduced (engine's apply_*), each block samples its own buffer part; no random draw in the update

    def __init__(self, env, cfg: QMIXConfig, total_updates: int | None = None):
        super().__init__(env, cfg, total_updates)
        self.mixer = QMixer(self.n_agents, cfg.mixer_embed, cfg.hypernet_hidden, init_scale=cfg.mixer_init_scale)

    def init_mixer(self, key):
        return self.mixer.init(key, jnp.zeros((self.n_agents,)), jnp.zeros((self.state_dim,)))

    def mix(self, params, q, state):
        return self.mixer.apply(params, q, state)


register_algo("qmix", QMIXConfig, QMIX,
              "QMIX: a monotonic mixer of the agents' Q-values conditioned on the global state (Rashid et al. 2018)",
              family="off-policy", action_kinds=("discrete",))

