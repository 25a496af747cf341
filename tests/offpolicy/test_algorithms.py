"""The off-policy algorithms' pieces against references: the attention critic, the Gumbel-softmax
straight-through gradient, target updates, bootstrapping at terminations vs truncations, the
true next observation at auto-resets, and MADDPG reaching a one-step game's optimum."""

from __future__ import annotations

import dataclasses

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from refnets import attention_critic, to_numpy

from trustmarl import replay
from trustmarl.algos import make_algorithm
from trustmarl.envs.base import AgentGroup, Box, MultiAgentEnv
from trustmarl.experiment.config import build_config
from trustmarl.networks import AttentionCritic, gumbel_softmax

TINY = {"algo.hidden_sizes": [16], "algo.num_envs": 2, "algo.rollout_len": 4, "algo.buffer_size": 64,
        "algo.batch_size": 8, "algo.learning_starts": 8, "algo.grad_steps": 2}


def build(algo: str, env: str = "mpe/simple_spread", env_obj=None, **overrides):
    cfg = build_config(algo, env, {**TINY, **overrides})
    return make_algorithm(cfg, total_updates=10, env=env_obj)


# ---- the attention critic -------------------------------------------------------------------------

def reference_attention_critic(params, obs, act, heads):
    """Iqbal & Sha 2019, Section 3.2, as a plain loop over agents, heads and other agents (numpy, ``refnets``)."""
    return attention_critic(to_numpy(params["params"]), obs, act, heads)[0]


def test_attention_critic_matches_a_plain_loop_reference():
    """Two groups of different sizes (2 and 3 agents, different observation and action widths) attend
    to each other; every agent's Q vector equals the loop reference."""
    m = AttentionCritic(group_sizes=(2, 3), n_actions=(5, 3), hidden=12, heads=3)
    k1, k2, k3, k4, k5 = jax.random.split(jax.random.PRNGKey(0), 5)
    obs = (jax.random.normal(k1, (2, 6)), jax.random.normal(k2, (3, 4)))
    act = (jax.nn.one_hot(jax.random.randint(k3, (2,), 0, 5), 5), jax.nn.one_hot(jax.random.randint(k4, (3,), 0, 3), 3))
    params = m.init(k5, obs, act)
    params = jax.tree.map(lambda x: x + 0.1 * jax.random.normal(k5, x.shape), params)  # non-zero biases too
    q, logits = m.apply(params, obs, act)
    ref = reference_attention_critic(params, [np.asarray(o) for o in obs], [np.asarray(a) for a in act], heads=3)
    got = [np.asarray(x, np.float64) for x in (*q[0], *q[1])]
    for r, g in zip(ref, got):
        np.testing.assert_allclose(g, r, rtol=2e-4, atol=2e-5)
    assert logits.shape == (3, 5, 5) and np.all(np.asarray(logits)[:, range(5), range(5)] == 0)
    # batched inputs give the same per-sample values
    qb, _ = m.apply(params, tuple(o[None].repeat(4, 0) for o in obs), tuple(a[None].repeat(4, 0) for a in act))
    np.testing.assert_allclose(np.asarray(qb[1][2]), np.asarray(q[1])[None].repeat(4, 0)[2], rtol=1e-6)


# ---- Gumbel-softmax ---------------------------------------------------------------------------------

def test_gumbel_softmax_straight_through_gradient():
    """Forward: the one-hot of the sample; backward: the gradient of the soft sample with the same noise.
    Unavailable actions (masked logits) are never drawn; the draws follow softmax(logits)."""
    logits = jnp.array([0.3, -1.2, 2.0, 0.5])
    w = jnp.array([1.0, -2.0, 0.5, 3.0])
    key = jax.random.PRNGKey(4)
    hard = gumbel_softmax(key, logits, 0.7)
    assert set(np.unique(np.asarray(hard))) <= {0.0, 1.0} and float(hard.sum()) == 1.0
    g_hard = jax.grad(lambda lg: jnp.sum(w * gumbel_softmax(key, lg, 0.7)))(logits)
    g_soft = jax.grad(lambda lg: jnp.sum(w * gumbel_softmax(key, lg, 0.7, hard=False)))(logits)
    np.testing.assert_allclose(g_hard, g_soft, rtol=1e-6)
    assert float(jnp.abs(g_hard).sum()) > 1e-3
    masked = logits.at[2].set(-1e9)
    draws = jax.vmap(lambda k: jnp.argmax(gumbel_softmax(k, masked)))(jax.random.split(key, 20000))
    freq = np.bincount(np.asarray(draws), minlength=4) / 20000
    expect = np.asarray(jax.nn.softmax(masked))
    assert freq[2] == 0 and np.abs(freq - expect).max() < 0.015


# ---- targets and bootstrapping ------------------------------------------------------------------------

def test_soft_and_hard_target_updates():
    a = build("maddpg", **{"algo.tau": 0.25})
    state = a.init(jax.random.PRNGKey(0))
    moved = state._replace(critic_params=jax.tree.map(lambda x: x + 1.0, state.critic_params),
                           actor_params=jax.tree.map(lambda x: x - 2.0, state.actor_params))
    soft = a.update_targets(moved)
    for t, old in zip(jax.tree.leaves(soft.target_critic_params), jax.tree.leaves(state.critic_params)):
        np.testing.assert_allclose(t, old + 0.25, rtol=1e-6, atol=1e-6)
    for t, old in zip(jax.tree.leaves(soft.target_actor_params), jax.tree.leaves(state.actor_params)):
        np.testing.assert_allclose(t, old - 0.5, rtol=1e-6, atol=1e-6)
    h = build("maddpg", **{"algo.target_update": "hard", "algo.target_every": 3})
    for steps, copied in ((1, False), (3, True), (6, True)):
        out = h.update_targets(moved._replace(grad_steps=jnp.int32(steps)))
        same = all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(out.target_critic_params), jax.tree.leaves(moved.critic_params)))
        assert same == copied, steps


@dataclasses.dataclass(frozen=True)
class CoordinationGame(MultiAgentEnv):
    """One step, two agents with actions in [-1, 1] and a shared reward -(a1 - a2 - 0.8)^2 - 0.5 (a1 + a2)^2:
    each agent's best response depends on the other's action; the optimum is (0.4, -0.4) with reward 0."""

    @property
    def groups(self):
        return (AgentGroup("agent", ("a0", "a1"), 1, Box(1, -1.0, 1.0)),)

    @property
    def state_dim(self):
        return 1

    @property
    def max_episode_steps(self):
        return 1

    def _ts(self, reward, done):
        return self.make_timestep((jnp.ones((2, 1)),), (jnp.ones((2, 0), bool),), jnp.ones((1,)), jnp.full((2,), reward),
                                  done, False)

    def _reset(self, key):
        return jnp.zeros(()), self._ts(0.0, False)

    def _step(self, key, state, actions):
        a = actions[0][:, 0]
        r = -jnp.square(a[0] - a[1] - 0.8) - 0.5 * jnp.square(a[0] + a[1])
        return state, self._ts(r, True)


@pytest.mark.slow  # moved out of the default suite to keep it under 20 minutes on 2 cores
def test_terminated_transitions_do_not_bootstrap_truncated_ones_do():
    """MADDPG's target y = r + gamma (1 - terminated) Q'(x', mu'(o')): a truncated transition bootstraps."""
    a = build("maddpg", "matrix/custom", env_obj=CoordinationGame(), **{"algo.gamma": 0.9})
    state = a.init(jax.random.PRNGKey(1))
    batch = a.prepare(a.draw(state.buffer, jax.random.PRNGKey(0), 2), None)  # 2 (empty) transitions
    batch.update(reward=jnp.array([[1.0, 1.0], [2.0, 2.0]]), terminated=jnp.array([True, False]),
                 truncated=jnp.array([False, True]), obs=(jnp.array([[[0.3], [-0.2]], [[1.0], [0.5]]]),),
                 next_obs=(jnp.array([[[2.0], [1.0]], [[-1.5], [0.7]]]),))
    next_act = a.action_vectors(a.outputs(state.target_actor_params, batch["next_obs"]), batch["next_avail"])
    q_next = a.q_values(state.target_critic_params, a.joint(batch["next_obs"], next_act))[0]  # [N, B]
    new_state, metrics = a.train_step(state, batch, jax.random.PRNGKey(2))
    y = np.array([[1.0, 1.0], [2.0 + 0.9 * float(q_next[0, 1]), 2.0 + 0.9 * float(q_next[1, 1])]])
    q = np.asarray(a.q_values(state.critic_params, a.joint(batch["obs"], a.agents.action_vectors(batch["actions"])))[0]).T
    np.testing.assert_allclose(metrics["diag/critic_loss_per_agent"], np.mean((q - y) ** 2, axis=0), rtol=1e-5)
    assert abs(float(q_next[0, 1])) > 1e-4  # the bootstrap term is not trivially zero


def test_buffer_holds_the_true_next_observation_at_auto_resets():
    """Episodes of simple_spread cut at 4 steps: the next observation of a transition that ends an episode
    is its final observation, not the reset observation the env returned (the buffer keeps it apart: it
    stores each observation once)."""
    a = build("maddpg", **{"env.max_cycles": 4, "algo.rollout_len": 8})
    state = jax.jit(a.update)(a.init(jax.random.PRNGKey(5)))[0]
    assert not isinstance(state.buffer.finals, tuple)  # 4-step episodes: finals kept apart (sparse layout)
    step, nxt = replay.gather_transitions(state.buffer, jnp.arange(8), jnp.zeros(8, jnp.int32))  # copy 0, in order
    data = jax.tree.map(np.asarray, step)
    assert data["truncated"][3] and data["truncated"][7] and not data["truncated"][[0, 1, 2, 4, 5, 6]].any()
    obs, nxt = data["obs"][0], np.asarray(nxt["obs"][0])
    np.testing.assert_array_equal(nxt[:3], obs[1:4])  # within an episode: the next step's observation
    assert not np.allclose(nxt[3], obs[4])  # at the reset: the final observation, not the new episode's first
    # the final observation continues the episode: velocity/position of step 4 follow from step 3 (finite, moved)
    assert np.isfinite(nxt[3]).all() and not np.allclose(nxt[3], obs[3])
    np.testing.assert_array_equal(nxt[7], np.asarray(state.last.final_obs[0][0]))  # the newest step's: the last final
    assert not data["terminated"].any()


# ---- learning: a one-step continuous game ------------------------------------------------------------

@pytest.mark.parametrize("algo", ["maddpg", pytest.param("matd3", marks=pytest.mark.slow)])  # matd3: slow suite
def test_reaches_the_optimum_of_a_one_step_continuous_game(algo):
    """From a random start both deterministic actions end within 0.06 of the optimum (0.4, -0.4)."""
    a = build(algo, "matrix/custom", env_obj=CoordinationGame(), **{
        "algo.num_envs": 16, "algo.rollout_len": 1, "algo.buffer_size": 4096, "algo.batch_size": 128,
        "algo.learning_starts": 256, "algo.grad_steps": 2, "algo.hidden_sizes": [32, 32], "algo.noise_start": 0.3,
        "algo.noise_end": 0.05, "algo.noise_decay_steps": 6000, "algo.tau": 0.05, "algo.actor_lr": 3e-3,
        "algo.critic_lr": 3e-3, "algo.warmup_steps": 256,
    })

    @jax.jit
    def run(key):
        state = a.init(key)
        state, metrics = jax.lax.scan(lambda s, _: a.update(s), state, None, length=600)
        return a.greedy(state.actor_params, state.last.obs, state.last.avail)[0][0, :, 0], metrics

    act, metrics = run(jax.random.PRNGKey(0))
    np.testing.assert_allclose(np.asarray(act), [0.4, -0.4], atol=0.06)
    assert float(np.nanmean(np.asarray(metrics["episode_return"])[-50:])) > -0.05
    assert np.asarray(metrics["diag/learning"])[0] == 0 and np.asarray(metrics["diag/learning"])[-1] == 1


@pytest.mark.slow  # moved out of the default suite to keep it under 20 minutes on 2 cores
def test_maac_on_rover_tower_two_groups_attend_to_each_other():
    """Rovers (obs 13) and towers (obs 8) are different groups; MAAC's critic attends across them: each
    rover's Q changes when a tower's action changes."""
    a = build("maac", "mpe/rover_tower", **{"algo.critic_hidden": 16, "algo.attention_heads": 2})
    state, metrics = jax.jit(lambda s: jax.lax.scan(lambda c, _: a.update(c), s, None, length=3))(a.init(jax.random.PRNGKey(0)))
    assert np.asarray(metrics["diag/learning"])[-1] == 1 and np.isfinite(np.asarray(metrics["loss/critic"])[-1])
    assert np.asarray(metrics["diag/q_per_agent"]).shape == (3, 8)
    obs = tuple(jnp.ones((g.n, g.obs_dim)) for g in a.groups)
    act = [jax.nn.one_hot(jnp.zeros((g.n,), jnp.int32), g.action_space.n) for g in a.groups]
    q0, _ = a.critic.apply(state.critic_params, obs, tuple(act))
    act[1] = act[1].at[2].set(jax.nn.one_hot(3, a.groups[1].action_space.n))  # tower 2 changes its message
    q1, _ = a.critic.apply(state.critic_params, obs, tuple(act))
    assert float(jnp.abs(q1[0] - q0[0]).max()) > 1e-6  # the rovers' values depend on the towers' actions


# ---- one branch for all seeds before learning starts ---------------------------------------------

def _learning_conds(jaxpr) -> int:
    """How many ``cond``s anywhere in ``jaxpr`` have one branch with matrix products (the gradient steps)
    and one without (waiting for ``learning_starts``)."""
    found = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "cond":
            has_dot = ["dot_general" in str(b.jaxpr) for b in eqn.params["branches"]]
            found += any(has_dot) and not all(has_dot)
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            found += _learning_conds(sub)
    return found


def test_seeds_share_one_learning_branch_under_the_loops_vmap():
    """All seeds store as many transitions, so the loops' vmap over seeds (named ``SEED_AXIS``) keeps the
    ``learning_starts`` test a branch: before learning starts no seed computes gradient steps. A plain vmap
    (no axis name) turns the cond into a select that computes them for every seed and drops the result:
    the behaviour this guards against (Rashid et al. 2018's QMIX on SMAX waited 32 updates that way)."""
    from trustmarl.algos.base import SEED_AXIS

    algo = build("iql")
    states = jax.eval_shape(lambda k: jax.vmap(algo.init)(k), jax.random.split(jax.random.PRNGKey(0), 2))  # shapes only
    named = jax.make_jaxpr(jax.vmap(algo.update, axis_name=SEED_AXIS))(states).jaxpr
    plain = jax.make_jaxpr(jax.vmap(algo.update))(states).jaxpr
    assert _learning_conds(named) == 1
    assert _learning_conds(plain) == 0
