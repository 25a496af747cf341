"""Teammate models after Rabinowitz et al. 2018 as F2A2 builds them (Li et al. 2023, Section 5.2): the character
and mental GRUs, the natural and impromptu heads and their mixture learn a fixed policy (TV < 0.05), the mental
window reads the current episode only, and the data collected before training (random play) is counted in the
env steps, left out of checkpoints and regenerated bitwise, on JAX-native and host envs; refused settings."""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from trustmarl.algos import make_algorithm
from trustmarl.algos import teammate_models as TM
from trustmarl.experiment.config import build_config
from trustmarl.validation import ConfigError

TINY = {"algo.hidden_sizes": [8], "algo.num_envs": 2, "algo.rollout_len": 4, "algo.buffer_size": 64,
        "algo.batch_size": 8, "algo.learning_starts": 8, "algo.grad_steps": 2, "algo.critic_hidden": 8,
        "algo.attention_heads": 2, "env.n_agents": 3, "env.max_cycles": 5}
PAPER = {"algo.moa": True, "algo.moa_model": "paper", "algo.moa_trajectories": 3, "algo.moa_char_samples": 2,
         "algo.moa_batch": 16, "algo.moa_recent": 8, "algo.moa_window": 3, "algo.moa_hidden": 8}


# ---- the model's pieces -----------------------------------------------------------------------------

def test_episode_masks_by_hand():
    """Windows of W + 1 = 4 steps ending at the sampled step: ``now`` marks the 3 steps before it that share its
    episode, ``next`` the 3 steps ending at it that share its successor's (an episode ending at the sampled step
    does not cut its own history)."""
    done = jnp.array([[0, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1], [0, 0, 0, 1]], bool)
    now, nxt = TM.episode_masks(done)
    np.testing.assert_array_equal(now, [[1, 1, 1], [0, 1, 1], [0, 0, 1], [0, 0, 0], [0, 0, 0], [1, 1, 1]])
    np.testing.assert_array_equal(nxt, [[1, 1, 1], [1, 1, 1], [0, 1, 1], [0, 0, 1], [0, 0, 1], [1, 1, 1]])


def test_heads_are_averaged_in_probability():
    """The prediction is the mean of the two heads' probabilities (hand-built distributions)."""
    p, q = np.array([0.7, 0.2, 0.1]), np.array([0.1, 0.1, 0.8])
    np.testing.assert_allclose(np.exp(TM.mix(jnp.log(p), jnp.log(q))), [0.4, 0.15, 0.45], rtol=1e-6)


def test_mental_window_sees_only_the_current_episode():
    """Steps masked out (an earlier episode) leave the mental embedding bitwise unchanged whatever they hold;
    a step of the current episode changes it; an all-masked window encodes to zeros."""
    d, n, a, w, b = 4, 2, 3, 5, 6
    p = TM.init(jax.random.key(0), d, n, a)
    mental = jax.jit(TM.mental, static_argnums=4)  # one compilation for every call below
    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    obs = jax.random.normal(k1, (b, w, n, d))
    act = jax.random.randint(k2, (b, w, n), 0, a)
    done = jnp.zeros((b, w + 1), bool).at[:, 1].set(True)  # the current episode starts at position 2
    mask, _ = TM.episode_masks(done)
    e = mental(p, obs, act, mask, a)
    old = obs.at[:, :2].set(jax.random.normal(k3, (b, 2, n, d)))  # the earlier episode's steps changed
    np.testing.assert_array_equal(mental(p, old, act.at[:, :2].set((act[:, :2] + 1) % a), mask, a), e)
    assert float(jnp.abs(mental(p, obs.at[:, 3].add(1.0), act, mask, a) - e).min()) > 0  # a current step matters
    np.testing.assert_array_equal(mental(p, obs, act, jnp.zeros((b, w), bool), a), 0.0)


def test_c9_paper_model_learns_a_fixed_policy():
    """C9 (Li et al. 2023, Section 5.2): trained by cross-entropy on the actions of a fixed stochastic policy
    ``pi_j(. | o_j) = softmax(o_j W_j)`` of two targets, the averaged prediction of the natural head (with
    character and mental nets) and the impromptu head is within TV 0.05 of the true policy on held-out states."""
    n, d, a, w = 2, 3, 3, 2
    W = jnp.asarray(np.random.default_rng(0).normal(size=(n, d, a)) * 1.5, jnp.float32)
    true_logp = lambda o: jax.nn.log_softmax(jnp.einsum("bnd,nda->bna", o, W))  # noqa: E731
    avail = jnp.ones((n, a), bool)
    k_traj, k_init = jax.random.split(jax.random.key(3))
    t_obs = jax.random.normal(k_traj, (4, 5, n, d))  # random-play trajectories of the targets (character net)
    t_act = jax.random.categorical(jax.random.fold_in(k_traj, 1), true_logp(t_obs.reshape(-1, n, d))).reshape(4, 5, n)
    params = TM.init(k_init, d, n, a, hidden=32)
    tx = optax.adam(1e-2)
    opt = tx.init(params)

    def data(key, b):
        k_o, k_a = jax.random.split(key)
        o = jax.random.normal(k_o, (b, w + 1, n, d))
        act = jax.random.categorical(k_a, true_logp(o.reshape(-1, n, d))).reshape(b, w + 1, n)
        return o, act

    def predict(p, o, act):
        ec = TM.character(p, t_obs, t_act, jnp.ones((4, 5), bool), a)
        em = TM.mental(p, o[:, :-1], act[:, :-1], jnp.ones((o.shape[0], w), bool), a)
        return TM.natural(p, o[:, -1], avail, ec, em), TM.impromptu(p, o[:, -1], avail)

    @jax.jit
    def step(p, opt, key):
        o, act = data(key, 512)

        def loss(p):
            nat, imp = predict(p, o, act)
            return (TM.nll(nat, act[:, -1]) + TM.nll(imp, act[:, -1])).mean()

        upd, opt = tx.update(jax.grad(loss)(p), opt)
        return optax.apply_updates(p, upd), opt

    for k in range(500):
        params, opt = step(params, opt, jax.random.key(k + 10))
    o, act = data(jax.random.key(99), 2000)
    nat, imp = predict(params, o, act)
    tv = lambda lp: 0.5 * jnp.abs(jnp.exp(lp) - jnp.exp(true_logp(o[:, -1]))).sum(-1).mean(0)  # noqa: E731
    assert float(tv(TM.mix(nat, imp)).max()) < 0.05, (tv(TM.mix(nat, imp)), tv(nat), tv(imp))


# ---- the data collected before training ----------------------------------------------------------------

IQL_TINY = {"algo.num_envs": 2, "algo.rollout_len": 4, "algo.buffer_size": 64, "algo.batch_size": 8, "algo.learning_starts": 8}


def _asking(algo, k=3, t=5):
    """Any off-policy algorithm asks for K random-play trajectories of T steps through the engine's hook."""
    algo.pretrain_request = lambda: (k, t)
    return algo


def test_pretraining_counted_stored_and_regenerated_bitwise():
    """The engine's hook on a JAX-native env: ``init`` collects ``K = 3`` trajectories of ``T = 5`` random steps in
    ``ceil(3 / 2) = 2`` rounds of 2 copies (20 env steps, counted), every step valid (fixed-length episodes), the
    first observation its round's reset; checkpoints leave the data out; regenerating it from the stored key
    is bitwise equal and counts nothing."""
    algo = _asking(make_algorithm(build_config("iql", "mpe/simple_spread", {**IQL_TINY, "env.n_agents": 3, "env.max_cycles": 5}),
                                  total_updates=2))
    s = jax.jit(algo.init)(jax.random.PRNGKey(0))
    pre = s.extra["pretrain"]
    assert int(s.env_steps) == 20 == algo.pretrain_steps()
    assert pre["obs"][0].shape == (3, 5, 3, 18) and pre["actions"][0].shape == (3, 5, 3) and bool(pre["valid"].all())
    assert int(pre["actions"][0].min()) >= 0 and int(pre["actions"][0].max()) < 5 and len(np.unique(pre["actions"][0])) == 5
    first = jax.random.split(jax.random.fold_in(jax.random.fold_in(s.extra["pretrain_key"], 10_000), 0), 2)[0]
    np.testing.assert_array_equal(pre["obs"][0][0, 0], algo.env.reset(first)[1].obs[0])  # trajectory 0 starts at its reset
    again = jax.jit(algo.restore_pretrain)(s._replace(extra={**s.extra, "pretrain": jax.tree.map(jnp.zeros_like, pre)}))
    assert int(again.env_steps) == 20
    for x, y in zip(jax.tree.leaves(again.extra["pretrain"]), jax.tree.leaves(pre)):
        np.testing.assert_array_equal(x, y)
    core, _ = algo.split_bulk(s)
    assert core.extra["pretrain"] is None and core.extra["pretrain_key"] is not None


def test_valid_steps_end_with_the_first_episode():
    """``valid[t]``: no episode ended before step ``t`` of the trajectory (hand-built done flags, 2 rounds of 2 copies)."""
    algo = _asking(make_algorithm(build_config("iql", "mpe/simple_spread", {**IQL_TINY, "env.n_agents": 2, "env.max_cycles": 5}),
                                  total_updates=2), k=3, t=4)
    done = np.zeros((2, 4, 2), bool)  # [R, T, E]
    done[0, 1, 0] = True  # round 0 copy 0 (trajectory 0) ends after step 1
    done[1, 3, 0] = True  # trajectory 2 ends at its last step
    done[0, 0, 1] = True  # trajectory 1 ends after step 0
    obs = tuple(np.zeros((2, 4, 2) + (g.n, g.obs_dim), np.float32) for g in algo.groups)
    acts = tuple(np.zeros((2, 4, 2, g.n), np.int32) for g in algo.groups)
    valid = np.asarray(algo.pack_pretrain(obs, acts, jnp.asarray(done))["valid"])
    np.testing.assert_array_equal(valid, [[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]])


def test_pretraining_runs_on_a_host_env():
    """The host loop plays the engine's random actions on a PettingZoo env, counts the steps, starts training on
    fresh episodes afterwards, and regenerates the same data from the seed (as a resume does)."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "rollout"))
    from trustmarl.envs.host import registry as host_registry
    from trustmarl.experiment.backends import build_algorithm
    from trustmarl.rollout import HostTrainer

    cfg = build_config("iql", "pettingzoo:toy_envs:guess_env", IQL_TINY)
    algo = _asking(build_algorithm(cfg, 2))
    vec = host_registry.make_vec_env(cfg.env.name, cfg.env.params, 2, 7, num_workers_override=0)
    trainer = HostTrainer(algo, vec, num_seeds=1)
    try:
        state = trainer.init(jax.random.split(jax.random.PRNGKey(0), 1))
        pre = jax.tree.map(np.asarray, state.extra["pretrain"])
        assert int(state.env_steps[0]) == 2 * 2 * 5 == algo.pretrain_steps()
        assert pre["obs"][0].shape == (1, 3, 5, 2, 4) and pre["valid"].all()
        np.testing.assert_allclose(pre["obs"][0][0, :, :, 0, 3], np.tile(np.arange(5) / 5, (3, 1)))  # the episode clock
        assert set(np.unique(pre["actions"][0])) == {0, 1, 2}
        fresh = trainer._split_seeds(vec.reset(7))
        np.testing.assert_array_equal(np.asarray(state.last.obs[0]), fresh.obs[0])  # training starts on fresh episodes
        wiped = state._replace(extra={**state.extra, "pretrain": jax.tree.map(jnp.zeros_like, state.extra["pretrain"])})
        again = trainer.pretrain(wiped, 7, count=False)
        assert int(again.env_steps[0]) == 20
        for x, y in zip(jax.tree.leaves(again.extra["pretrain"]), jax.tree.leaves(pre)):
            np.testing.assert_array_equal(np.asarray(x), y)
    finally:
        trainer.close()


def test_paper_models_ask_for_pretraining_data():
    paper = make_algorithm(build_config("f2a2_sac", "mpe/simple_spread", {**TINY, **PAPER}), total_updates=2)
    assert paper.pretrain_request() == (3, 5)  # moa_traj_len 0: the episode limit
    simple = make_algorithm(build_config("f2a2_sac", "mpe/simple_spread", {**TINY, "algo.moa": True}), total_updates=2)
    assert simple.pretrain_request() is None


def test_checkpoint_leaves_the_data_out_and_resume_regenerates_it(tmp_path, monkeypatch):
    """A checkpoint written with the data holds its key, not the data; reading it gives zeros in its place and the
    JAX-native backend's resume regenerates it bitwise (2 seeds)."""
    from trustmarl.algos.off_policy.iql import IQL
    from trustmarl.experiment.backends import JaxBackend, seed_keys
    from trustmarl.experiment.checkpoint import read_meta
    from trustmarl.experiment.runner import read_checkpoint, write_checkpoint

    monkeypatch.setattr(IQL, "pretrain_request", lambda self: (3, 5))
    cfg = build_config("iql", "mpe/simple_spread", {**IQL_TINY, "env.n_agents": 2, "env.max_cycles": 5, "num_seeds": 2})
    algo = make_algorithm(cfg, total_updates=2)
    backend = JaxBackend(cfg, algo)
    state = backend.init()
    write_checkpoint(tmp_path / "ckpt.npz", algo, state, {"update": 0, "env_steps": 20})
    assert "pretrain_key" in str(read_meta(tmp_path / "ckpt.npz")) and "'pretrain'" not in str(read_meta(tmp_path / "ckpt.npz"))
    loaded, _ = read_checkpoint(tmp_path / "ckpt.npz", algo, backend.template())
    assert not np.any(np.asarray(loaded.extra["pretrain"]["obs"][0]))
    resumed = backend.resume(loaded, 0)
    assert not np.array_equal(np.asarray(state.extra["pretrain"]["obs"][0][0]), np.asarray(state.extra["pretrain"]["obs"][0][1]))
    for x, y in zip(jax.tree.leaves(resumed), jax.tree.leaves(state)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert seed_keys(cfg).shape[0] == 2


@pytest.mark.slow  # two F2A2-SAC runs with the paper's teammate models: compiling them takes minutes on 2 loaded cores
def test_f2a2_sac_paper_models_resume_bitwise(tmp_path):
    """A run stopped after one chunk and resumed (the random-play data regenerated, not read from the checkpoint)
    ends bitwise equal to an uninterrupted run; the character net reads the data, so zeros in its place would
    change the teammate models. The pre-training steps are in the env-step count and the TV is logged."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "algos"))
    from test_contract import resume_is_bitwise

    cfg = build_config("f2a2_sac", "mpe/simple_spread", {**TINY, **PAPER, "algo.rollout_len": 4, "total_steps": 48,
                                                         "chunk_updates": 3, "checkpoint_every": 1, "num_seeds": 1})
    full, state, rows = resume_is_bitwise(cfg, tmp_path)
    assert [r["env_steps"] for r in rows][:2] == [20 + 8, 20 + 16]
    tv = [v for k, v in rows[-1].items() if k.startswith("diag/moa_tv_per_agent/agent_")]
    assert len(tv) == 3 and all(0 < v < 1 for v in tv), tv


# ---- refused settings ----------------------------------------------------------------------------------

@pytest.mark.parametrize("over, match", [
    ({"algo.moa_model": "tomnet"}, "moa_model='tomnet'"),
    ({"algo.moa_window": 0}, "moa_window=0"),
    ({"algo.moa_char_samples": 4}, "moa_char_samples=4 exceeds"),
    ({"algo.moa_traj_len": -1}, "moa_traj_len=-1"),
    ({"algo.moa_window": 6}, "moa_window=6 is longer than the episode limit \\(5 steps\\)"),
    ({"algo.moa_window": 4}, "learning_starts=8 must be >= algo.num_envs\\*\\(algo.moa_window\\+1\\)=10"),
])
def test_bad_teammate_model_settings(over, match):
    with pytest.raises(ConfigError, match=match):
        make_algorithm(build_config("f2a2_sac", "mpe/simple_spread", {**TINY, **PAPER, **over}), total_updates=2)


def test_a_window_longer_than_the_episode_exits_2_in_one_line(capsys, monkeypatch, tmp_path):
    from trustmarl.experiment import cli

    monkeypatch.chdir(tmp_path)
    code = cli.main(["train", "f2a2_sac", "mpe/simple_spread", "algo.moa=true", "algo.moa_model=paper", "algo.moa_window=26"])
    out, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and "algo.moa_window=26 is longer than the episode limit (25 steps)" in err, err
