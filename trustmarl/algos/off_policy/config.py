"""Hyperparameters of the off-policy family (MADDPG, MATD3, MAAC).

Defaults are the shared rows of the MAMT paper's Tables 1-3 (Li et al. 2022),
which are also MAAC's (Iqbal & Sha 2019) reference-code settings: 12 env copies, an update every
100 env steps (summed over the copies), 4 gradient steps of batch 1024, buffer 1e6, Adam lr 1e-3,
discount 0.99, 128-unit LeakyReLU networks, actor gradient clip 0.5, critic clip 10 x agents.
"""

from __future__ import annotations

import dataclasses
import typing

from trustmarl.networks import ACTIVATIONS
from trustmarl.validation import (
    ConfigError,
    choices,
    hidden_sizes,
    in_range,
    non_negative,
    non_negative_int,
    positive,
    positive_int,
)


@dataclasses.dataclass
class OffPolicyConfig:
    """Hyperparameters shared by every off-policy algorithm (the engine's schedule, replay, targets, optimisers)."""

    name: str = "maddpg"
    # acting: env copies and env steps per copy between two learning phases (update-to-data ratio)
    num_envs: int = 12  # env copies per seed, stepped together
    rollout_len: int = 8  # env steps per copy between two learning phases (12 x 8 = 96 per update, as MAAC's 100)
    warmup_steps: int = 0  # env steps (per seed) of uniformly random actions before the policy acts
    # replay and learning
    buffer_size: int = 1_000_000  # transitions over all env copies of one seed
    batch_size: int = 1024  # transitions per gradient step
    grad_steps: int = 4  # gradient steps per update
    learning_starts: int = 1024  # stored transitions needed before the first gradient step
    gamma: float = 0.99  # discount factor
    reward_scale: float = 1.0  # rewards are multiplied by this before learning
    reward_norm: bool = False  # normalise each agent's rewards by the buffer's mean/std at sampling (MAAC code)
    # target networks
    target_update: str = "soft"  # soft: Polyak tau after every gradient step | hard: copy every target_every steps
    tau: float = 0.01  # Polyak coefficient of the soft target update
    target_every: int = 1  # gradient steps between hard target copies
    # optimisers (Adam); *_l2: PyTorch-style L2 added to the gradient after clipping; weight_decay: decoupled (AdamW)
    actor_lr: float = 1e-3  # Adam step size of the actors
    critic_lr: float = 1e-3  # Adam step size of the critics
    adam_eps: float = 1e-8  # Adam's epsilon
    adam_b1: float = 0.9  # Adam's beta1
    actor_max_grad_norm: float = 0.5  # global-norm gradient clipping of each actor
    critic_max_grad_norm: float = 10.0  # per agent: the clip is this value times the number of agents (10 n)
    actor_l2: float = 0.0  # PyTorch-style L2 on the actors' gradients
    critic_l2: float = 0.0  # PyTorch-style L2 on the critics' gradients
    weight_decay: float = 0.0  # decoupled weight decay (AdamW) of every network
    optimizer: str = "adam"  # adam | sgd (plain gradient steps after clipping, e.g. for exact comparisons)
    policy_reg: float = 1e-3  # coefficient of mean(logits^2) (discrete) / mean(pre-tanh^2) (continuous)
    # networks
    share_params: bool = False  # one actor shared by the agents of a group
    agent_id: bool = False  # with shared actors: append a one-hot agent id
    hidden_sizes: tuple[int, ...] = (128, 128)  # hidden layer widths of actors and critics
    activation: str = "leaky_relu"  # leaky_relu | relu | tanh | gelu
    layer_norm: bool = False  # layer normalisation after each hidden layer
    # exploration: continuous actions add Gaussian noise of a std falling linearly from noise_start to
    # noise_end over noise_decay_steps env steps; discrete actions are sampled (Gumbel-softmax / softmax)
    noise_start: float = 0.1  # std of the Gaussian exploration noise (continuous actions) at the start
    noise_end: float = 0.1  # its std after noise_decay_steps env steps
    noise_decay_steps: int = 1  # env steps over which the noise std falls linearly
    gumbel_temperature: float = 1.0  # temperature of the Gumbel-softmax samples of discrete actions

    UNUSED: typing.ClassVar[dict[str, str]] = {}
    CHOICES: typing.ClassVar[dict[str, tuple[str, ...]]] = {
        "target_update": ("soft", "hard"),
        "optimizer": ("adam", "sgd"),
        "activation": ACTIVATIONS,
    }

    def steps_per_update(self) -> int:
        """Env steps of one seed per update."""
        return self.num_envs * self.rollout_len

    def capacity(self) -> int:
        """Buffer steps per env copy (at least one update's worth)."""
        return max(self.rollout_len, self.buffer_size // self.num_envs)

    def validate(self) -> None:
        positive_int(self, "num_envs", "rollout_len", "buffer_size", "batch_size", "grad_steps", "target_every",
                     "noise_decay_steps")
        non_negative_int(self, "warmup_steps", "learning_starts")
        positive(self, "actor_lr", "critic_lr", "adam_eps", "actor_max_grad_norm", "critic_max_grad_norm",
                 "reward_scale", "gumbel_temperature")
        non_negative(self, "actor_l2", "critic_l2", "weight_decay", "policy_reg", "noise_start", "noise_end")
        in_range(self, "gamma", 0.0, 1.0, hi_open=True)
        in_range(self, "tau", 0.0, 1.0, lo_open=True)
        in_range(self, "adam_b1", 0.0, 1.0, hi_open=True)
        choices(self, self.CHOICES)
        hidden_sizes(self)
        if self.buffer_size < self.steps_per_update():
            raise ConfigError(
                f"algo.buffer_size={self.buffer_size} must hold at least one update's transitions "
                f"(num_envs*rollout_len={self.steps_per_update()})"
            )
