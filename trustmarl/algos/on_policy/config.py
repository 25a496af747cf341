"""Hyperparameters of the on-policy actor-critic family (MAPPO, IPPO, JR-PPO, HAPPO, HATRPO)."""

from __future__ import annotations

import dataclasses
import typing

from trustmarl.validation import (
    ConfigError,
    choices,
    hidden_sizes,
    in_range,
    non_negative,
    positive,
    positive_int,
)


@dataclasses.dataclass
class OnPolicyConfig:
    """Hyperparameters of the on-policy actor-critic family (MAPPO, IPPO, JR-PPO).

    Defaults follow the MAPPO reference settings (Yu et al. 2021) where Sun et al. 2023 state none and JaxMARL's MPE
    settings for the rollout shape; algorithm presets in ``trustmarl/configs`` override them.
    """

    name: str = "mappo"
    # rollout
    num_envs: int = 16  # env copies per seed, stepped together
    rollout_len: int = 128  # env steps per copy in one update's rollout
    # optimisation
    epochs: int = 4  # passes over the rollout per update
    minibatches: int = 4  # minibatches per epoch
    actor_lr: float = 5e-4  # Adam step size of the actors
    critic_lr: float = 5e-4  # Adam step size of the critic
    anneal_lr: bool = False  # both step sizes fall linearly to 0 over the run's total_steps
    adam_eps: float = 1e-5  # Adam's epsilon
    max_grad_norm: float = 10.0  # global-norm gradient clipping of each network (per agent when not shared)
    sgd_unroll: bool = False  # unroll the epoch/minibatch loops: no faster since trustmarl.compilation, ~4x longer compilation
    # returns and advantages
    gamma: float = 0.99  # discount factor
    gae_lambda: float = 0.95  # GAE lambda (Schulman et al. 2016)
    bootstrap_truncation: bool = False  # bootstrap V at time limits (the limit only cuts the episode) instead of treating it as terminal
    critic_time: bool = False  # time-aware critic: it also reads t / max_episode_steps (Pardo et al. 2018)
    reward: str = "team"  # team | agent  (agent: each agent's own reward; needs critic=local)
    normalize_advantages: bool = True  # standardise the advantages of each batch
    value_norm: bool = True  # critic targets normalised by a running mean and std (as in MAPPO, Yu et al. 2021)
    # losses
    clip_eps: float = 0.2  # PPO clip range eps of the ratio (Schulman et al. 2017, eq. 7)
    clip_rule: str = "fixed"  # fixed | per_agent (eps/N) | nth_root | joint (JR-PPO)
    ent_coef: float = 0.01  # entropy bonus coefficient
    vf_coef: float = 1.0  # value-loss coefficient
    agent_reduction: str = "mean"  # mean | sum over agents of the per-agent losses
    # agents and networks
    share_params: bool | str = "auto"  # true | false | auto: share when every agent has the same spaces (one group)
    critic: str = "state"  # state: V(global state) | local: V(observation)
    agent_id: bool = True  # append a one-hot agent id to inputs of shared networks
    hidden_sizes: tuple[int, ...] = (64, 64)  # hidden layer widths of actors and critics
    activation: str = "tanh"  # tanh | relu | gelu
    layer_norm: bool = False  # layer normalisation after each hidden layer
    image_shape: tuple[int, ...] | None = None  # [H, W, C]: observations are flat images; the small CNN torso of Wen et al. 2021 before the MLP
    log_std_init: float = -0.5  # initial log standard deviation of Gaussian (continuous) policies
    actor_head_gain: float = 0.01  # orthogonal-init gain of the policy head; larger = more random initial policies
    # recurrent actors (critics stay feed-forward): MLP encoder -> GRU -> head, trained on sequences
    recurrent: bool = False  # GRU actors (MLP encoder -> GRU -> head), trained on sequences; critics stay feed-forward
    gru_size: int = 64  # GRU hidden state width
    seq_len: int = 0  # training sequence length; 0 = the whole rollout_len; must divide rollout_len

    # keys an algorithm inherits but does not read, with the reason; setting one is an error
    UNUSED: typing.ClassVar[dict[str, str]] = {}
    CHOICES: typing.ClassVar[dict[str, tuple[str, ...]]] = {
        "reward": ("team", "agent"),
        "clip_rule": ("fixed", "per_agent", "nth_root", "joint"),
        "agent_reduction": ("mean", "sum"),
        "critic": ("state", "local"),
        "activation": ("tanh", "relu", "gelu"),
    }

    def steps_per_update(self) -> int:
        """Env steps of one seed per update."""
        return self.num_envs * self.rollout_len

    def validate(self) -> None:
        positive_int(self, "num_envs", "rollout_len", "epochs", "minibatches")
        if self.image_shape is not None and (len(self.image_shape) != 3 or min(self.image_shape) < 1):
            raise ConfigError(f"algo.image_shape={list(self.image_shape)!r} must be [H, W, C] of positive sizes, or null")
        positive(self, "actor_lr", "critic_lr", "adam_eps", "max_grad_norm", "clip_eps")
        non_negative(self, "ent_coef", "vf_coef")
        in_range(self, "gamma", 0.0, 1.0, hi_open=True)
        in_range(self, "gae_lambda", 0.0, 1.0)
        choices(self, self.CHOICES)
        if isinstance(self.share_params, str) and self.share_params != "auto":
            raise ConfigError(f"algo.share_params={self.share_params!r} is not allowed; choose true, false or auto")
        hidden_sizes(self)
        batch = self.num_envs * self.rollout_len
        if batch % self.minibatches:
            raise ConfigError(f"algo.minibatches={self.minibatches} must divide num_envs*rollout_len={batch}")
        if self.recurrent:
            self._validate_recurrent()
        if self.critic_time and self.bootstrap_truncation:
            raise ConfigError(
                "algo.critic_time=true and algo.bootstrap_truncation=true are two treatments of time limits "
                "(the limit is part of the task / the limit only cuts the episode); choose one"
            )
        if self.reward == "agent" and self.critic != "local":
            raise ConfigError("algo.reward='agent' needs algo.critic='local' (a centralised V(s) has one value per step)")

    def train_samples(self) -> int:
        """Samples along the leading batch axis: env steps, or sequences of ``seq_len`` when recurrent."""
        steps = self.num_envs * self.rollout_len
        return steps // (self.seq_len or self.rollout_len) if self.recurrent else steps

    def _validate_recurrent(self) -> None:
        positive_int(self, "gru_size")
        if not isinstance(self.seq_len, int) or isinstance(self.seq_len, bool) or self.seq_len < 0:
            raise ConfigError(f"algo.seq_len={self.seq_len!r} must be an integer >= 0 (0 = the whole rollout_len)")
        if self.seq_len and self.rollout_len % self.seq_len:
            raise ConfigError(f"algo.seq_len={self.seq_len} must divide algo.rollout_len={self.rollout_len}")
        n_seq = self.train_samples()
        if n_seq % self.minibatches:
            raise ConfigError(
                f"algo.minibatches={self.minibatches} must divide the number of training sequences "
                f"num_envs*rollout_len/seq_len={n_seq} (recurrent minibatches hold whole sequences)"
            )
