"""Recurrent (GRU) actors for MAPPO, IPPO, HAPPO and HATRPO.

- the sequence unroll with episode resets equals a step-by-step Python loop;
- replaying a rollout's stored hidden states through the training unroll reproduces the behaviour
  log-probabilities (ratio 1, HAPPO factor 1 before any update), and reusing one zero state instead
  does not (seed 001 spec §7 #5);
- a memory task that a feed-forward policy cannot solve (return 0.5) and a GRU policy solves;
- a recurrent run killed and resumed from its checkpoint ends bitwise-equal to an uninterrupted one.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxcache import compilation_cache as jax_compilation_cache

from trustmarl.algos import algo_config_class, make_algorithm
from trustmarl.algos.evaluation import evaluate
from trustmarl.envs.base import AgentGroup, Box, Discrete, MultiAgentEnv
from trustmarl.experiment.config import ConfigError, EnvConfig, RunConfig, build_config


@dataclasses.dataclass(frozen=True)
class CueMemory(MultiAgentEnv):
    """At t=0 every agent sees its own random cue bit (as ±1), afterwards 0. At the last of
    ``length`` steps an agent earns 1 iff its action names its cue (discrete: action == cue;
    continuous: action > 0 iff cue). Only memory of the first observation solves it."""

    n_discrete: int = 2
    n_continuous: int = 0
    length: int = 3

    @property
    def groups(self):
        gs = [AgentGroup("d", tuple(f"d{i}" for i in range(self.n_discrete)), 1, Discrete(2))]
        if self.n_continuous:
            gs.append(AgentGroup("c", tuple(f"c{i}" for i in range(self.n_continuous)), 1, Box(1)))
        return tuple(gs)

    @property
    def state_dim(self) -> int:
        return self.n_agents + 1

    @property
    def max_episode_steps(self) -> int:
        return self.length

    def _timestep(self, t, cue, reward, done):
        signal = jnp.where(t == 0, 2.0 * cue - 1.0, 0.0)[:, None]
        obs = (signal[: self.n_discrete],) + ((signal[self.n_discrete :],) if self.n_continuous else ())
        state = jnp.concatenate([cue, jnp.array([t / self.length])])
        return self.make_timestep(obs, self.all_available(), state, reward, done, False)

    def _reset(self, key):
        cue = jax.random.bernoulli(key, 0.5, (self.n_agents,)).astype(jnp.float32)
        state = (jnp.zeros((), jnp.int32), cue)
        return state, self._timestep(state[0], cue, jnp.zeros((self.n_agents,)), False)

    def _step(self, key, state, actions):
        t, cue = state
        said = actions[0].astype(jnp.float32)
        if self.n_continuous:
            said = jnp.concatenate([said, (actions[1][:, 0] > 0).astype(jnp.float32)])
        t = t + 1
        done = t == self.length
        reward = jnp.where(done, (said == cue).astype(jnp.float32), 0.0)
        return (t, cue), self._timestep(t, cue, reward, done)


def make(algo: str, env: MultiAgentEnv, **overrides):
    """``algo`` on ``env`` (an unregistered test env) with ``algo.*`` overrides, validated."""
    cfg = algo_config_class(algo)(name=algo, **overrides)
    cfg.validate()
    return make_algorithm(RunConfig(algo=cfg, env=EnvConfig("test")), env=env)


SMALL = dict(recurrent=True, gru_size=8, hidden_sizes=(8,), num_envs=4, rollout_len=8, seq_len=4, minibatches=2, epochs=1)


# ---- the unroll ---------------------------------------------------------------------------------

def test_sequence_unroll_equals_python_loop():
    """``policy_sequence`` (one scan over [n_seq, L] sequences) equals ``policy_step`` in a loop,
    resets included; the reset really zeroes the state (without it the outputs differ)."""
    a = make("ippo", CueMemory(n_discrete=2, n_continuous=1), **SMALL, share_params=False)
    params, _ = a.init_params(jax.random.PRNGKey(0))
    n_seq, L = 3, 6
    ks = jax.random.split(jax.random.PRNGKey(1), 4)
    obs = tuple(jax.random.normal(jax.random.fold_in(ks[0], g), (n_seq, L, grp.n, 1)) for g, grp in enumerate(a.groups))
    avail = tuple(jnp.ones((n_seq, L, grp.n, grp.avail_dim), bool) for grp in a.groups)
    hidden = tuple(jax.random.normal(jax.random.fold_in(ks[1], g), (n_seq, grp.n, 8)) for g, grp in enumerate(a.groups))
    reset = jnp.zeros((n_seq, L), bool).at[0, 0].set(True).at[1, 2].set(True).at[2, 1].set(True).at[2, 4].set(True)

    seq = jax.jit(a.policy_sequence)(params, hidden, obs, avail, reset)
    step = jax.jit(a.policy_step)
    h, loop = hidden, []
    for t in range(L):
        h, d = step(params, h, tuple(o[:, t] for o in obs), tuple(x[:, t] for x in avail), reset[:, t])
        loop.append(d)
    for g in range(len(a.groups)):
        for leaf_seq, *leaf_t in zip(jax.tree.leaves(seq[g]), *(jax.tree.leaves(d[g]) for d in loop)):
            np.testing.assert_allclose(np.asarray(leaf_seq), np.stack(leaf_t, axis=1), rtol=1e-6, atol=1e-6)
    no_reset = jax.jit(a.policy_sequence)(params, hidden, obs, avail, jnp.zeros_like(reset))
    assert not np.allclose(np.asarray(no_reset[0][0][1, 2:]), np.asarray(seq[0][0][1, 2:]), atol=1e-4)
    assert np.allclose(np.asarray(no_reset[0][0][1, :2]), np.asarray(seq[0][0][1, :2]))  # before the reset: same


def test_config_validation():
    ok = dict(recurrent=True, num_envs=4, rollout_len=8)
    algo_config_class("mappo")(**ok, seq_len=4, minibatches=8).validate()  # 8 sequences of 4
    with pytest.raises(ConfigError, match="seq_len=3 must divide algo.rollout_len=8"):
        algo_config_class("mappo")(**ok, seq_len=3, minibatches=1).validate()
    with pytest.raises(ConfigError, match="training sequences num_envs\\*rollout_len/seq_len=4"):
        algo_config_class("mappo")(**ok, seq_len=0, minibatches=8).validate()  # 32 steps but only 4 sequences
    with pytest.raises(ConfigError, match="gru_size"):
        algo_config_class("ippo")(**ok, gru_size=0, minibatches=1).validate()
    with pytest.raises(ConfigError, match="critic_minibatches=8"):
        algo_config_class("happo")(**ok, minibatches=1, critic_minibatches=8).validate()
    algo_config_class("mappo")(num_envs=4, rollout_len=8, seq_len=3, minibatches=8).validate()  # ignored unless recurrent


# ---- replay of the behaviour policy -------------------------------------------------------------

def _replay(a, state):
    """Two rollouts (the hidden state carries over), then the training-side log-probs of the second:
    whole-batch unroll, unroll from zero states, every agent's slice (sequential algorithms) and the
    trust-region diagnostics, in one jitted call."""
    from trustmarl.algos.on_policy.diagnostics import trust_region_diagnostics

    state, _, _ = a.collect(state)
    state, batch, _ = a.collect(state)
    logp = a.log_prob(a.batch_policy(state.actor_params, batch), batch.actions)
    zero = batch._replace(hidden=jax.tree.map(jnp.zeros_like, batch.hidden))
    logp_zero = a.log_prob(a.batch_policy(state.actor_params, zero), batch.actions)
    agents = []
    if hasattr(a, "_agent_data"):
        for g, grp in enumerate(a.groups):
            for i in range(grp.n):
                data = a._agent_data(batch, g, jnp.asarray(i), jnp.zeros(batch.logp.shape[:-1]))
                params = a.agents.take(state.actor_params[g], g, i)
                agents.append((a.agent_log_prob(g, params, jnp.asarray(i), data)[1], data.logp_old, data.factor))
    return state, batch, logp, logp_zero, agents, trust_region_diagnostics(a, state.actor_params, batch)


@pytest.mark.parametrize("algo,extra", [
    ("mappo", {"share_params": False}),  # sharing needs identical spaces: this env mixes two groups
    ("ippo", {"share_params": False}),
    ("happo", {}),
    pytest.param("hatrpo", {}, marks=pytest.mark.slow),  # HAPPO's sequential path is the same
])
def test_stored_hidden_states_replay_behaviour_log_probs(algo, extra):
    """Rollout -> sequence batch -> training unroll gives back the behaviour log-probs (ratio 1),
    per agent through HAPPO's/HATRPO's agent slice too (factor 1); zero states instead of the stored
    ones do not (the episodes of length 3 cross the sequences of length 4). Discrete and continuous
    groups with per-agent parameters (shared parameters: the memory and resume tests)."""
    a = make(algo, CueMemory(n_discrete=2, n_continuous=1), **{**SMALL, "actor_head_gain": 1.0, **extra})
    state, batch, logp, logp_zero, agents, diag = jax.jit(lambda s: _replay(a, s))(a.init(jax.random.PRNGKey(3)))
    n_seq = a.cfg.num_envs * a.cfg.rollout_len // a.cfg.seq_len
    assert batch.logp.shape == (n_seq, 4, 3) and batch.reset.shape == (n_seq, 4)
    assert batch.hidden[0].shape == (n_seq, 2, 8) and batch.hidden[1].shape == (n_seq, 1, 8)
    assert 0 < int(batch.reset.sum()) < batch.reset.size
    assert float(jnp.abs(batch.hidden[0]).max()) > 1e-3  # non-zero states enter the sequences

    np.testing.assert_allclose(np.asarray(logp), np.asarray(batch.logp), atol=2e-6)
    assert float(jnp.abs(logp_zero - batch.logp).max()) > 1e-2
    assert len(agents) == (3 if algo in ("happo", "hatrpo") else 0)
    for lp, lp_old, factor in agents:
        assert lp.shape == factor.shape == (n_seq, 4)
        np.testing.assert_allclose(np.asarray(lp), np.asarray(lp_old), atol=2e-6)
    assert abs(float(diag["diag/ratio_max"]) - 1) < 1e-5 and abs(float(diag["diag/ratio_min"]) - 1) < 1e-5
    assert float(diag["diag/kl"]) < 1e-8 and diag["diag/kl_per_agent"].shape == (3,)
    if algo == "hatrpo":  # natural-gradient steps through the unroll (happo: the resume test; mappo: memory)
        new_state, metrics = jax.jit(a.learn_batch)(state, batch)
        assert all(bool(jnp.all(jnp.isfinite(v))) for v in metrics.values())
        assert float(metrics["diag/accepted_per_agent"].sum()) >= 1
        assert 0 < float(metrics["diag/kl"]) and float(metrics["diag/kl_per_agent"].max()) <= a.cfg.kl_threshold + 1e-6


# ---- memory ---------------------------------------------------------------------------------------

def _train_and_eval(recurrent: bool, updates: int = 60) -> float:
    env = CueMemory(n_discrete=2, length=3)
    a = make(
        "mappo", env, recurrent=recurrent, gru_size=16, hidden_sizes=(16,), num_envs=32, rollout_len=12, seq_len=6,
        minibatches=2, epochs=4, actor_lr=3e-3, critic_lr=3e-3, ent_coef=0.0, actor_head_gain=1.0,
    )

    @jax.jit
    def run(key):
        state = a.init(key)
        return jax.lax.scan(lambda s, _: a.update(s), state, None, length=updates)[0]

    return evaluate(a, run(jax.random.PRNGKey(0)), jax.random.PRNGKey(7), 512, True)


@pytest.mark.slow  # a learning test; replay and resume of recurrent agents stay in the default suite
def test_gru_solves_memory_task_that_mlp_cannot():
    """Cue at t=0, answer at t=2: a feed-forward policy sees the same (empty) observation at the
    answer step whatever the cue, so its deterministic return is 0.5 up to sampling noise (512
    episodes x 2 agents: sd ~0.016); the GRU policy remembers the cue."""
    mlp, gru = _train_and_eval(False), _train_and_eval(True)
    assert abs(mlp - 0.5) < 0.08, mlp
    assert gru > 0.9, gru


# ---- checkpoint / resume ----------------------------------------------------------------------------

@pytest.fixture
def compilation_cache(tmp_path):
    """A persistent compilation cache for this test: the three runs compile the same programs once."""
    with jax_compilation_cache(tmp_path / "jax_cache"):
        yield


def test_recurrent_run_resumes_exactly(tmp_path, compilation_cache):
    """A recurrent HAPPO run killed after one chunk and resumed ends bitwise-equal to an uninterrupted
    one: the actor hidden state is part of the checkpoint (episodes of 5 steps cross chunk ends)."""
    from trustmarl.experiment.runner import load_run_state, train

    overrides = {
        "total_steps": 4 * 8 * 4, "chunk_updates": 2, "num_seeds": 2, "checkpoint_every": 1,
        "algo.num_envs": 4, "algo.rollout_len": 8, "algo.seq_len": 4, "algo.epochs": 1, "algo.minibatches": 2,
        "algo.critic_epochs": 1, "algo.hidden_sizes": [8], "algo.gru_size": 8, "algo.recurrent": True,
        "env.n_agents": 2, "env.max_cycles": 5, "algo.critic_time": False,  # the carry is the GRU state alone
    }
    cfg = build_config("happo", "mpe/simple_spread", overrides)
    full = train(cfg, tmp_path / "full", progress=False, tensorboard=False)
    train(cfg, tmp_path / "part", progress=False, tensorboard=False, stop_after_chunks=1)
    train(None, tmp_path / "part", resume=True, progress=False, tensorboard=False)
    assert full["status"] == "completed" and full["updates"] == 4
    s_full, s_part = load_run_state(tmp_path / "full")[2], load_run_state(tmp_path / "part")[2]
    assert s_full.carry[0].shape == (2, 4, 2, 8) and float(jnp.abs(s_full.carry[0]).max()) > 0
    lf, lp = jax.tree_util.tree_leaves(s_full), jax.tree_util.tree_leaves(s_part)
    assert len(lf) == len(lp) and all(np.asarray(x).tobytes() == np.asarray(y).tobytes() for x, y in zip(lf, lp))
