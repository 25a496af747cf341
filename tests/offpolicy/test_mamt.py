"""MAMT (Li et al. 2022) on the engine: the presets (the authors' code as ``--preset reference``, the
Spread-3 masks of MAMD-OP) and bad input, refused in one line before compiling."""

from __future__ import annotations

import pytest

from trustmarl.algos import make_algorithm
from trustmarl.experiment import cli
from trustmarl.experiment.config import build_config
from trustmarl.validation import ConfigError

TINY = {"algo.hidden_sizes": [16], "algo.num_envs": 2, "algo.rollout_len": 4, "algo.buffer_size": 64,
        "algo.batch_size": 8, "algo.learning_starts": 8, "algo.grad_steps": 1, "algo.critic_hidden": 8,
        "algo.attention_heads": 2, "algo.trd_hidden": 8}


# ---- presets ---------------------------------------------------------------------------------------

def test_default_follows_the_paper_and_reference_preset_the_authors_code():
    """The table of docs/algorithms/mamt.md: q, the delta loss, the modelling policies, delta_cc."""
    d = build_config("mamt", "mpe/spread_2").algo
    r = build_config("mamt", "mpe/spread_2", preset="reference").algo
    assert (d.tsallis_q, d.delta_loss, d.train_modeling_policy, d.cc_threshold) == (0.2, "penalty", True, 0.2)
    assert (r.tsallis_q, r.delta_loss, r.train_modeling_policy, r.cc_threshold) == (1.0, "reference", False, 0.05)
    # everything else is shared: m = 100, the clip [0.01, 100] and the initial 0.01, c unused
    for k in ("old_policy_lag", "tr_min", "tr_max", "tr_init", "slow_every", "trd_hidden", "delta_lr", "batch_size", "tau"):
        assert getattr(d, k) == getattr(r, k), k
    assert (d.old_policy_lag, d.tr_min, d.tr_max, d.tr_init, d.slow_every, d.trd_hidden) == (100, 0.01, 100.0, 0.01, 1, 128)
    # a user's key beats the preset
    assert build_config("mamt", "mpe/spread_2", {"algo.tsallis_q": 0.5}, preset="reference").algo.tsallis_q == 0.5
    for algo in ("mamd", "mamd_op"):
        assert build_config(algo, "mpe/spread_2").algo.tsallis_q == 0.2
        assert build_config(algo, "mpe/spread_2", preset="reference").algo.tsallis_q == 1.0


@pytest.mark.parametrize("env, mask", [
    ("mpe/spread_3_sep", (False, False, False)),  # = MAAC
    ("mpe/spread_3_mix", (True, True, False)),  # the coupled pair
    ("mpe/spread_3_ful", (True, True, True)),  # = MAMD
])
def test_spread3_presets_carry_mamd_ops_masks(env, mask):
    cfg = build_config("mamd_op", env)
    assert cfg.algo.constrained == mask
    assert build_config("mamd", env).algo.constrained is None  # MAMD constrains every agent
    assert make_algorithm(cfg, total_updates=1).constrained.tolist() == list(mask)


# ---- bad input: one line naming the value and what is allowed, before compiling ------------------------

@pytest.mark.parametrize("algo, override, needle", [
    ("mamt", {"algo.tsallis_q": 0.0}, "algo.tsallis_q=0.0"),  # q <= 0
    ("mamt", {"algo.tsallis_q": -1.0}, "algo.tsallis_q=-1.0"),
    ("mamt", {"algo.old_policy_lag": 0}, "algo.old_policy_lag=0"),  # m < 1
    ("mamd", {"algo.md_coef": 0.0}, "algo.md_coef=0.0"),  # c <= 0
    ("mamt", {"algo.tr_min": 0.0}, "algo.tr_min=0.0"),  # tr_min <= 0
    ("mamt", {"algo.tr_min": 2.0, "algo.tr_max": 1.0, "algo.tr_init": 1.5}, "algo.tr_min=2.0 must be <= algo.tr_max=1.0"),
    ("mamt", {"algo.tr_init": 200.0}, "algo.tr_init=200.0 must lie in [algo.tr_min, algo.tr_max]"),
    ("mamt", {"algo.tr_init": 0.001}, "algo.tr_init=0.001 must lie in"),
    ("mamt", {"algo.cc_threshold": 1.5}, "algo.cc_threshold=1.5 must be in [0.0, 1.0]"),  # delta_cc outside [0, 1]
    ("mamt", {"algo.cc_threshold": -0.1}, "algo.cc_threshold=-0.1"),
    ("mamt", {"algo.slow_every": 0}, "algo.slow_every=0"),
    ("mamt", {"algo.delta_loss": "kl"}, "algo.delta_loss='kl' is not allowed; choose one of penalty, reference"),
    ("mamt", {"algo.md_coef": 5.0}, "algo.md_coef is not used by mamt"),
    ("mamt", {"algo.constrained": [True, True]}, "algo.constrained is not used by mamt"),
])
def test_bad_value_is_one_line_before_compiling(algo, override, needle):
    with pytest.raises(ConfigError) as e:
        build_config(algo, "mpe/simple_spread", {"env.n_agents": 2, **override})
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


@pytest.mark.parametrize("algo, env, override, needle", [
    ("mamt", "mpe/simple", {}, "mamt needs at least 2 agents (it models teammates); the env has 1"),
    ("mamd_op", "mpe/spread_3_mix", {"algo.constrained": [True, False]},
     "algo.constrained has 2 flags but the env has 3 agents (agent_0, agent_1, agent_2)"),
])
def test_env_dependent_checks_before_compiling(algo, env, override, needle):
    """The checks beside ``check_compatible``: raised by ``make_algorithm``, which builds no program."""
    cfg = build_config(algo, env, override)
    with pytest.raises(ConfigError) as e:
        make_algorithm(cfg, total_updates=1)
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


@pytest.mark.parametrize("argv, needle", [
    (["mamt", "mpe/spread_2", "algo.tr_min=0"], "algo.tr_min=0"),
    (["mamt", "mpe/simple"], "mamt needs at least 2 agents"),
])
def test_cli_exits_2_with_one_line(capsys, tmp_path, argv, needle):
    code = cli.main(["train", *argv, *[f"{k}={v}" for k, v in TINY.items() if k != "algo.hidden_sizes"],
                     "total_steps=16", "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("trustmarl: error: ") and err.count("\n") == 1 and needle in err, err
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").rglob("*.msgpack"))
