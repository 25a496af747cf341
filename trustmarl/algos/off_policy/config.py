"""Hyperparameters of the off-policy family (MADDPG, MATD3, MAAC).

Defaults are the shared rows of the MAMT paper's Tables 1-3 (Li et al. 2022),
which are also MAAC's (Iqbal & Sha 2019) reference-code settings: 12 env copies, an update every
100 env steps (summed over the copies), 4 gradient steps of batch 1024, buffer 1e6 (or the
run's length when shorter), Adam lr 1e-3,
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

DEFAULT_BUFFER = 1_000_000  # transitions per seed of a run that sets no algo.buffer_size (the papers' 1e6)


@dataclasses.dataclass
class OffPolicyConfig:
    """Hyperparameters shared by every off-policy algorithm (the engine's schedule, replay, targets, optimisers)."""

    name: str = "maddpg"
    # acting: env copies and env steps per copy between two learning phases (update-to-data ratio)
    num_envs: int = 12  # env copies per seed, stepped together
    rollout_len: int = 8  # env steps per copy between two learning phases (12 x 8 = 96 per update, as MAAC's 100)
    warmup_steps: int = 0  # env steps (per seed) of uniformly random actions before the policy acts
    # replay and learning
    buffer_size: int = 0  # transitions over all env copies of one seed; 0: as many as the run stores, at most 1e6
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
    # run keys this family sets by default: the off-policy papers report the deterministic policy's return
    # over 10 test episodes; evaluating every 10k env steps costs under 5% of a run (benchmarks/bench_eval_cost.py)
    RUN_DEFAULTS: typing.ClassVar[dict[str, int]] = {"eval_every": 10_000, "eval_episodes": 10}
    CHOICES: typing.ClassVar[dict[str, tuple[str, ...]]] = {
        "target_update": ("soft", "hard"),
        "optimizer": ("adam", "sgd"),
        "activation": ACTIVATIONS,
    }

    def steps_per_update(self) -> int:
        """Env steps of one seed per update."""
        return self.num_envs * self.rollout_len

    def capacity(self, total_updates: int | None = None) -> int:
        """Buffer steps per env copy (at least one update's worth). ``buffer_size`` when set; otherwise
        (0) the steps a run of ``total_updates`` updates stores, at most ``DEFAULT_BUFFER`` transitions:
        a buffer the run can never fill is neither allocated nor written into checkpoints."""
        if self.buffer_size:
            return max(self.rollout_len, self.buffer_size // self.num_envs)
        fill = DEFAULT_BUFFER // self.num_envs
        if total_updates is not None:
            fill = min(fill, int(total_updates) * self.rollout_len)
        return max(self.rollout_len, fill)

    def validate(self) -> None:
        positive_int(self, "num_envs", "rollout_len", "batch_size", "grad_steps", "target_every",
                     "noise_decay_steps")
        non_negative_int(self, "warmup_steps", "learning_starts", "buffer_size")
        positive(self, "actor_lr", "critic_lr", "adam_eps", "actor_max_grad_norm", "critic_max_grad_norm",
                 "reward_scale", "gumbel_temperature")
        non_negative(self, "actor_l2", "critic_l2", "weight_decay", "policy_reg", "noise_start", "noise_end")
        in_range(self, "gamma", 0.0, 1.0, hi_open=True)
        in_range(self, "tau", 0.0, 1.0, lo_open=True)
        in_range(self, "adam_b1", 0.0, 1.0, hi_open=True)
        choices(self, self.CHOICES)
        hidden_sizes(self)
        if 0 < self.buffer_size < self.steps_per_update():
            raise ConfigError(
                f"algo.buffer_size={self.buffer_size} must hold at least one update's transitions "
                f"(num_envs*rollout_len={self.steps_per_update()})"
            )
