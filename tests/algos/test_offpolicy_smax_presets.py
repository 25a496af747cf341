"""The recurrent off-policy actor-critic SMAX presets (``configs/{maac,f2a2_sac,maddpg,matd3}/smax*.yaml``): SMAC's
episode limits through the adapter's kwargs, pymarl's 5000-episode buffer at that limit, GRU 64 actors on whole
episodes, Adam 5e-4, gamma 0.99, hard target copies every 200 updates, epsilon 0.5 -> 0.01 over 50k env steps; and
one update of MADDPG and MATD3 on 3m with the preset's structure (networks and batch shrunk)."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

pytest.importorskip("jaxmarl")

from trustmarl.algos import make_algorithm  # noqa: E402
from trustmarl.algos.off_policy.sequences import epsilon_schedule  # noqa: E402
from trustmarl.experiment.config import build_config  # noqa: E402

LIMITS = {"3m": 60, "8m": 120, "2s3z": 120}  # SMAC's episode limits


@pytest.mark.parametrize("algo", ["maac", "f2a2_sac", "maddpg", "matd3"])
def test_smax_presets_are_recurrent_with_smacs_limits_and_pymarls_buffer(algo):
    for m, limit in LIMITS.items():
        cfg = build_config(algo, f"smax/{m}", {})
        a = cfg.algo
        assert cfg.env.params["kwargs"] == (("max_steps", limit),), (algo, m)
        assert a.recurrent and a.gru_size == 64 and a.sequences == "episodes" and a.seq_len == a.rollout_len == limit
        assert (a.buffer_size, a.batch_size, a.num_envs, a.learning_starts) == (5000 * limit, 32, 8, 32 * limit)
        assert (a.actor_lr, a.critic_lr, a.gamma, a.target_update) == (5e-4, 5e-4, 0.99, "hard")
        assert a.target_every == 200 * a.grad_steps  # gradient steps: every 200 updates
        eps = [float(epsilon_schedule(a, s)) for s in (0, 50_000)]
        np.testing.assert_allclose(eps, [0.5, 0.01], rtol=1e-6)
        assert (cfg.total_steps, cfg.eval_every, cfg.eval_episodes) == (2_000_000, 10_000, 32)
    # F2A2-SAC runs at MAAC's settings (the f2a2-smax comparison): every key they share has the same value
    if algo == "f2a2_sac":
        c, d = build_config("maac", "smax/3m", {}).algo, build_config("f2a2_sac", "smax/3m", {}).algo
        assert all(getattr(c, k) == getattr(d, k) for k in vars(c) if k != "name")


SMALL = {"algo.num_envs": 2, "algo.batch_size": 2, "algo.buffer_size": 240, "algo.learning_starts": 120,
         "algo.hidden_sizes": [8], "algo.gru_size": 8}  # the 3m preset's structure, networks and batch shrunk


@pytest.mark.parametrize("algo", ["maddpg", "matd3"])
def test_the_smax_preset_update_traces_on_3m(algo):
    """The 3m preset (GRU actors on whole 60-step episodes, epsilon mixture, hard targets; shrunk): the update
    traces (shapes only, nothing compiled) to scalar losses and takes ``grad_steps`` gradient steps."""
    a = make_algorithm(build_config(algo, "smax/3m", SMALL))
    state, metrics = jax.eval_shape(a.update, jax.eval_shape(a.init, jax.random.PRNGKey(0)))
    assert metrics["loss/critic"].shape == () and state.buffer.steps.data["hidden"][0].shape[-2:] == (3, 8)


@pytest.mark.slow  # one compiled update on SMAX with 60-step scans: about a minute on 2 loaded cores
@pytest.mark.parametrize("algo", ["maddpg", "matd3"])
def test_one_update_of_the_smax_preset_on_3m(algo):
    """The 3m preset with its structure (GRU actors on whole 60-step episodes, epsilon mixture, hard targets), the
    networks, env copies and batch shrunk: the first update learns (finite critic and actor losses)."""
    a = make_algorithm(build_config(algo, "smax/3m", SMALL))
    state, metrics = jax.jit(a.update)(a.init(jax.random.PRNGKey(0)))
    assert math.isfinite(float(metrics["loss/critic"])) and math.isfinite(float(np.nanmean(metrics["diag/actor_loss_per_agent"])))
    assert int(state.grad_steps) == a.cfg.grad_steps and float(np.abs(np.asarray(state.buffer.steps.data["hidden"][0])).max()) > 0
