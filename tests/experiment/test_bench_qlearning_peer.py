"""The peer benchmark's mapping of JaxMARL's Q-learning config to ours (``benchmarks/bench_qlearning_peer.py``),
on JaxMARL's ``ql_rnn_smax.yaml`` values written out by hand: every derived setting, and that it builds."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from bench_qlearning_peer import SETTINGS, our_overrides  # noqa: E402

from trustmarl.experiment.config import build_config  # noqa: E402

# JaxMARL baselines/QLearning/config/alg/ql_rnn_smax.yaml (commit c793d09) over config.yaml
THEIRS_SMAX = {"NUM_ENVS": 16, "NUM_STEPS": 128, "BUFFER_SIZE": 5000, "BUFFER_BATCH_SIZE": 32, "HIDDEN_SIZE": 512,
               "MIXER_EMBEDDING_DIM": 64, "MIXER_HYPERNET_HIDDEN_DIM": 256, "MIXER_INIT_SCALE": 0.001,
               "EPS_START": 1.0, "EPS_FINISH": 0.05, "EPS_DECAY": 0.1, "MAX_GRAD_NORM": 10,
               "TARGET_UPDATE_INTERVAL": 10, "TAU": 1.0, "NUM_EPOCHS": 8, "LR": 5e-05, "LEARNING_STARTS": 10000,
               "LR_LINEAR_DECAY": False, "GAMMA": 0.99, "REW_SCALE": 10.0}


def test_smax_mapping():
    ov = our_overrides(THEIRS_SMAX, "qmix", SETTINGS["smax"], schedule_steps=40960)
    # equal step-samples per gradient step: 32 trajectories x 128 steps ~ 41 episodes x 100 steps
    assert ov["algo.batch_size"] == 41 and ov["algo.seq_len"] == 100 and ov["algo.sequences"] == "episodes"
    assert ov["algo.target_every"] == 80  # 10 updates x 8 gradient steps
    assert ov["algo.learning_starts"] == 65536  # flashbax waits for 32 trajectories per env copy (32 updates)
    assert ov["algo.epsilon_anneal_end"] == 4096  # 10% of their TOTAL_TIMESTEPS
    assert (ov["algo.gru_size"], ov["algo.hidden_sizes"], ov["algo.grad_steps"]) == (512, [512], 8)
    assert (ov["algo.mixer_embed"], ov["algo.hypernet_hidden"], ov["algo.reward_scale"]) == (64, 256, 10.0)
    assert ov["algo.mixer_init_scale"] == 0.001  # MIXER_INIT_SCALE: orthogonal(0.001) mixer kernels in both
    assert ov["algo.team_reward"] == "mean"  # CTRolloutManager on SMAX: the first ally's (shared) reward
    cfg = build_config("qmix", "smax/3m", ov)
    assert cfg.algo.num_envs * cfg.algo.rollout_len == 2048
    vdn = our_overrides(THEIRS_SMAX, "vdn", SETTINGS["smax"], schedule_steps=40960)
    assert "algo.mixer_embed" not in vdn and "algo.critic_lr" not in vdn
    build_config("vdn", "smax/3m", vdn)
