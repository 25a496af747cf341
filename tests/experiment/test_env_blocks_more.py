"""Env blocks (run key ``env_blocks``) for MAAC, MAMD, MAMD-OP, MAMT and HATRPO: two blocks, a ``vmap`` named
``env_block`` on one device, learn from the two halves of a batch exactly what the program without blocks learns from
the whole batch (to float tolerance: the all-reduced sums add the halves in another order), and stay equal to each
other bit for bit. A reduction over the batch that skips the block axis (a local mean, a gradient that is not
all-reduced, a random draw repeated in every block) makes the blocks differ from the unblocked program."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trustmarl.algos import algo_config_class
from trustmarl.algos.base import ENV_BLOCK_AXIS, block_metrics
from trustmarl.experiment.backends import block_algorithm, build_algorithm, env_axes
from trustmarl.experiment.config import build_config

BLOCKS = 2
ENV = "mpe/simple_spread"  # three agents (MAMT's tightest teammate is a choice), episodes of 5 steps
OFF = {"algo.hidden_sizes": [8], "algo.num_envs": 4, "algo.rollout_len": 4, "algo.batch_size": 8, "algo.buffer_size": 16, "algo.critic_hidden": 8,
       "algo.attention_heads": 2, "algo.old_policy_lag": 2, "env.n_agents": 3, "env.max_cycles": 5,
       "env_blocks": BLOCKS}
ON = {"algo.hidden_sizes": [8], "algo.num_envs": 4, "algo.rollout_len": 8, "env.n_agents": 3, "env.max_cycles": 5,
      "env_blocks": BLOCKS}  # one minibatch (the blocks' minibatches together are the whole batch's)


def split(x, axis: int = 0):
    """``x`` with its ``axis`` cut into BLOCKS contiguous blocks, the block axis first (as the env-block programs)."""
    x = jnp.asarray(x)
    return jnp.moveaxis(x.reshape(x.shape[:axis] + (BLOCKS, x.shape[axis] // BLOCKS) + x.shape[axis + 1:]), axis, 0)


def same_in_every_block(tree):
    """Block 0 of ``tree`` after checking that every leaf is bit for bit the same in all blocks."""
    for x in jax.tree.leaves(tree):
        x = np.asarray(x)
        assert all(np.array_equal(x[0], x[b], equal_nan=True) for b in range(1, BLOCKS)), ("blocks differ", x.shape)
    return jax.tree.map(lambda x: x[0], tree)


def max_rel_diff(a, b) -> float:
    """The largest ``|a - b| / (|b| + 1e-3)`` over all leaves (parameters, optimiser moments, radii)."""
    worst = 0.0
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if x.size:
            worst = max(worst, float(np.max(np.abs(x - y) / (np.abs(y) + 1e-3))))
    return worst


def random_transitions(algo, key, size: int) -> dict:
    """``size`` transitions of the off-policy engine's layout with random observations, actions, rewards and ends."""
    k = jax.random.split(key, 5)
    groups = algo.groups
    obs = lambda k: tuple(jax.random.normal(jax.random.fold_in(k, g), (size, grp.n, grp.obs_dim))  # noqa: E731
                          for g, grp in enumerate(groups))
    avail = tuple(jnp.ones((size, grp.n, grp.action_space.n), bool) for grp in groups)
    actions = tuple(jax.random.randint(jax.random.fold_in(k[2], g), (size, grp.n), 0, grp.action_space.n)
                    for g, grp in enumerate(groups))
    n = algo.n_agents
    return dict(obs=obs(k[0]), avail=avail, actions=actions, logp=jnp.zeros((size, n)), reward=jax.random.normal(k[3], (size, n)),
                next_obs=obs(k[1]), next_avail=avail, terminated=jax.random.bernoulli(k[4], 0.2, (size,)),
                truncated=jnp.zeros((size,), bool), active=jnp.ones((size, n), bool))


# measured (float32 sums in another order): 1.4e-6 MAAC, 1.2e-6 MAMT's steps, 2.9e-6 MA-AC, 1.4e-5 HATRPO (its conjugate
# gradient amplifies rounding); a reduction that skips the blocks: above 0.3 or the blocks differ
TOL = 1e-4


@pytest.mark.parametrize("name, ov", [
    ("maac", {}),
    ("maddpg", {}),  # the straight-through Gumbel samples of the critic's target and the actor loss
    pytest.param("matd3", {"algo.policy_delay": 1}, marks=pytest.mark.slow),  # + twin critics, target smoothing
    # ~11 s of CPU each (two compilations of a gradient iteration); MAMT's own reductions also in the test below
    pytest.param("mamd", {"algo.penalty": "tsallis_relative_entropy"}, marks=pytest.mark.slow),  # the exact penalty's mean
    pytest.param("mamd_op", {}, marks=pytest.mark.slow),  # agents 1-2 mirror descent, agent 3 MAAC's loss
    pytest.param("mamt", {"algo.trd_hidden": 8}, marks=pytest.mark.slow),  # ~30 s; its own steps: the test below
])
def test_two_blocks_take_the_gradient_steps_of_the_whole_batch(name, ov):
    """Three gradient iterations (critic, actors, lagged old policy; MAMT: teammate models, TRD-Net, radii) on batches
    of 8 transitions: the unblocked ``train_step`` on the batch against two vmapped blocks on its halves with the same
    key. The sampled actions ``a~`` and ``a'`` of the blocks are the rows of the unblocked draw, the gradients and MAMT's
    batch statistics (the tightest teammate's coefficient sums, the penalty's mean) are over both halves."""
    known = {f"algo.{f.name}" for f in dataclasses.fields(algo_config_class(name))}
    cfg = build_config(name, ENV, {k: v for k, v in {**OFF, **ov}.items() if not k.startswith("algo.") or k in known})
    algo = build_algorithm(cfg)  # accepts env_blocks=2
    part = block_algorithm(algo, BLOCKS)
    state = jax.jit(algo.init)(jax.random.PRNGKey(0))
    flat = random_transitions(algo, jax.random.PRNGKey(1), 16)
    one = jax.jit(algo.train_step)
    blocks = jax.jit(jax.vmap(part.train_step, in_axes=(None, 0, None), axis_name=ENV_BLOCK_AXIS))
    ref = blk = state._replace(buffer=None)
    for it in range(3):
        rows = jax.random.permutation(jax.random.PRNGKey(10 + it), 16)[: cfg.algo.batch_size]
        batch = jax.tree.map(lambda x: x[rows], flat)
        key = jax.random.PRNGKey(20 + it)
        ref, m1 = one(ref, batch, key)
        blk, m2 = blocks(blk, jax.tree.map(split, batch), key)
        blk = same_in_every_block(blk)
        ref, blk = (s._replace(grad_steps=s.grad_steps + 1) for s in (ref, blk))
        assert max_rel_diff(blk, ref) < TOL, (it, max_rel_diff(blk, ref))
    assert max_rel_diff(ref.actor_params, state.actor_params) > 1e-3  # the actors moved
    if name == "mamt":
        m2 = same_in_every_block({k: m2[k] for k in ("diag/tightest_teammate_per_agent", "diag/penalty_per_agent")})
        assert np.array_equal(m1["diag/tightest_teammate_per_agent"], m2["diag/tightest_teammate_per_agent"])
        np.testing.assert_allclose(m2["diag/penalty_per_agent"], m1["diag/penalty_per_agent"], rtol=1e-4, atol=1e-6)
        assert max_rel_diff(ref.extra["delta"], state.extra["delta"]) > 1e-3  # the radii moved


@pytest.mark.slow  # ~20 s of CPU (two compilations of MAMT's steps): the default suite's budget
def test_mamt_trust_region_steps_over_two_blocks():
    """MAMT's steps after the actors' (Li et al. 2022, Algorithm 1, steps 5-10: the tightest teammate, the teammate
    models' step, TRD-Net's fast step, the radii's slow step) on two blocks' halves of a batch equal the steps on the
    whole batch, twice in a row: the coefficient sums, the penalty's mean and the three gradients are over all blocks."""
    algo = build_algorithm(build_config("mamt", ENV, {**OFF, "algo.trd_hidden": 8}))
    part = block_algorithm(algo, BLOCKS)
    state = jax.jit(algo.init)(jax.random.PRNGKey(0))._replace(buffer=None)
    old = jax.tree.map(lambda x: x + 0.3 * jax.random.normal(jax.random.PRNGKey(2), x.shape), state.actor_params)
    state = state._replace(extra={**state.extra, "old_actor": old}, critic_params=jax.tree.map(lambda x: 3.0 * x, state.critic_params))
    batch = random_transitions(algo, jax.random.PRNGKey(1), 16)
    terms = algo.policy_terms(state.actor_params, state.critic_params, batch, jax.random.PRNGKey(3), old)
    one = jax.jit(lambda s, b, t: algo.trust_region_steps(s, b, t, {}))
    blocks = jax.jit(jax.vmap(lambda s, b, t: part.trust_region_steps(s, b, t, {}), in_axes=(None, 0, 0), axis_name=ENV_BLOCK_AXIS))
    ref = blk = state
    for it in range(2):
        ref, m1 = one(ref, batch, terms)
        blk, m2 = blocks(blk, jax.tree.map(split, batch), jax.tree.map(split, terms))
        blk = same_in_every_block(blk)
        assert max_rel_diff(blk.extra, ref.extra) < TOL, (it, max_rel_diff(blk.extra, ref.extra))
    m2 = same_in_every_block({k: m2[k] for k in ("diag/tightest_teammate_per_agent", "diag/penalty_per_agent")})
    assert np.array_equal(m1["diag/tightest_teammate_per_agent"], m2["diag/tightest_teammate_per_agent"])
    assert len(set(np.asarray(m1["diag/tightest_teammate_per_agent"]).tolist())) > 1  # not every agent's teammate alike
    np.testing.assert_allclose(m2["diag/penalty_per_agent"], m1["diag/penalty_per_agent"], rtol=1e-4, atol=1e-6)
    assert max_rel_diff(ref.extra["delta"], state.extra["delta"]) > 1e-3  # the radii moved


def learn_on_the_same_rollouts(name: str, ov: dict, updates: int = 2):
    """``updates`` on-policy updates from the same rollouts: ``learn`` on the whole trajectory against two vmapped
    blocks on its halves of env copies (each block's parameters, optimiser states and counters its own, checked equal
    in both blocks). Returns ``(initial, unblocked, blocked state, unblocked metrics, blocked metrics)`` (the blocks'
    metrics reduced over blocks as the runs log them); the blocked state's env leaves are the blocks' halves joined."""
    cfg = build_config(name, ENV, {**ON, **ov})
    algo = build_algorithm(cfg)
    part, axes = block_algorithm(algo, BLOCKS), env_axes(algo, BLOCKS)
    in_axes = jax.tree.map(lambda a: None if a < 0 else 0, axes)
    rollout, one = jax.jit(algo.rollout), jax.jit(algo.learn)
    learn = lambda s, t: (lambda out: (out[0], block_metrics(out[1])))(part.learn(s, t))  # noqa: E731  as the runs
    blocks = jax.jit(jax.vmap(learn, in_axes=(in_axes, 0), axis_name=ENV_BLOCK_AXIS))
    ref = blk = start = jax.jit(algo.init)(jax.random.PRNGKey(0))
    flat_axes = jax.tree.leaves(axes)
    for it in range(updates):
        ref, traj, _ = rollout(ref)  # both learn from this rollout; the blocks' parameters are their own
        blk = jax.tree.map(lambda r, b, a: r if a >= 0 else b, ref, blk, axes)._replace(key=ref.key)  # the rollout's key
        ref, m1 = one(ref, traj)
        out, m2 = blocks(jax.tree.map(lambda x, a: x if a < 0 else split(x, a), blk, axes), jax.tree.map(lambda x: split(x, 1), traj))
        leaves, tree = jax.tree.flatten(out)
        shared = iter(same_in_every_block([x for x, a in zip(leaves, flat_axes) if a < 0]))
        joined = [next(shared) if a < 0 else jnp.moveaxis(x, 0, a).reshape(x.shape[1:a + 1] + (-1,) + x.shape[a + 2:])
                  for x, a in zip(leaves, flat_axes)]
        blk = jax.tree.unflatten(tree, joined)
        assert max_rel_diff(blk, ref) < TOL, (it, max_rel_diff(blk, ref))
    return start, ref, blk, m1, same_in_every_block(m2)


def test_hatrpo_two_blocks_take_the_whole_batchs_trust_region_steps():
    """Two HATRPO updates (every agent's conjugate gradient, step size and line search, then the critic): the accepted
    steps, their line-search counts, step sizes and KL reached are those of the unblocked program, and so are the
    parameters."""
    start, ref, blk, m1, m2 = learn_on_the_same_rollouts("hatrpo", {"algo.critic_epochs": 1, "algo.critic_minibatches": 1})
    for k in ("diag/accepted_per_agent", "diag/ls_steps_per_agent", "diag/position_per_agent"):
        assert np.array_equal(np.asarray(m1[k]), np.asarray(m2[k])), (k, m1[k], m2[k])
    for k in ("diag/step_size_per_agent", "diag/improvement_predicted_per_agent", "diag/kl_reached_per_agent"):
        np.testing.assert_allclose(m2[k], m1[k], rtol=TOL, atol=1e-7, err_msg=k)
    assert np.asarray(m1["diag/accepted_per_agent"]).sum() >= 1  # some agent took its step
    assert max_rel_diff(ref.actor_params, start.actor_params) > 1e-3


@pytest.mark.slow  # ~10 s of CPU each; COMA's masked means are also tested below
@pytest.mark.parametrize("name", ["coma", "ma_ac"])
def test_coma_and_ma_ac_two_blocks_learn_what_one_learns(name):
    """Two updates of COMA (one centralised critic per group) and MA-AC (per-agent critic copies mixed by consensus;
    the class of F2A2-COMA): the critic and actor steps on all blocks' samples, and the actions at the rollout's last
    observation (COMA's bootstrap; MA-AC executes them next) the rows of the unblocked draw."""
    start, ref, blk, m1, m2 = learn_on_the_same_rollouts(name, {"algo.target_every": 1})
    np.testing.assert_allclose(m2["loss/critic"], m1["loss/critic"], rtol=TOL)  # masked means over all blocks' samples
    assert max_rel_diff(ref.actor_params, start.actor_params) > 1e-3 and max_rel_diff(ref.critic_params, start.critic_params) > 1e-3


def test_coma_masked_means_over_blocks_are_over_all_active_samples():
    """COMA's per-agent masked means (its losses and their gradients) averaged over blocks with different numbers of
    active samples equal the masked mean over the samples of all blocks (MPE above has every agent active)."""
    algo = build_algorithm(build_config("coma", ENV, ON))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3)).astype(np.float32)
    mask = np.zeros((16, 3), np.float32)
    mask[:7, 0] = mask[:2, 1] = mask[9:, 1] = mask[::3, 2] = 1.0  # agent 0: 7 active samples in block 0, none in block 1
    got = jax.vmap(algo.per_agent_mean, axis_name=ENV_BLOCK_AXIS)(split(x), split(mask)).mean(0)
    np.testing.assert_allclose(got, (x * mask).sum(0) / mask.sum(0), rtol=1e-6)


def test_ppo_family_masked_means_over_blocks_are_over_all_active_samples():
    """The PPO family's masked means (``masked_mean``: the policy, entropy and value losses, through their gradients;
    ``per_agent_mean`` and the trust-region diagnostics' denominators) averaged over blocks with different numbers of
    active samples equal the masked mean over the samples of all blocks, and are the plain masked means without
    blocks (MPE above has every agent active; SMAX's dead agents do not)."""
    from trustmarl.algos.agents import masked_mean
    from trustmarl.algos.on_policy.diagnostics import per_agent_mean

    rng = np.random.default_rng(1)
    x = rng.normal(size=(16, 3)).astype(np.float32)
    mask = np.zeros((16, 3), np.float32)
    mask[:7, 0] = mask[:2, 1] = mask[9:, 1] = mask[::3, 2] = 1.0  # agent 0 only in block 0
    want = (x * mask).sum(0) / mask.sum(0)
    got = jax.vmap(per_agent_mean, axis_name=ENV_BLOCK_AXIS)(split(x), split(mask)).mean(0)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(per_agent_mean(x, mask), want, rtol=1e-6)
    loss = lambda v, m: masked_mean(jnp.square(v), m)  # noqa: E731
    whole, g_whole = jax.value_and_grad(loss)(x, mask)
    blocks, g_blocks = jax.vmap(jax.value_and_grad(loss), axis_name=ENV_BLOCK_AXIS)(split(x), split(mask))
    np.testing.assert_allclose(blocks.mean(), whole, rtol=1e-6)
    np.testing.assert_allclose(np.concatenate(list(g_blocks)) / BLOCKS, g_whole, rtol=1e-6)


def test_recurrent_off_policy_batch_means_over_blocks_are_over_all_valid_samples():
    """``batch_mean`` (the recurrent off-policy losses and diagnostics over valid, unpadded steps) averaged over blocks
    with different numbers of valid samples equals the mean over the valid samples of all blocks, for one weight per
    sample ``[B]`` and one per agent and sample ``[N, B]``."""
    from trustmarl.algos.off_policy.sequences import batch_mean

    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 16)).astype(np.float32)  # [N, B]: the batch axis last
    w = np.zeros((3, 16), bool)
    w[0, :7] = w[1, :2] = w[1, 9:] = w[2, ::3] = True
    want = (x * w).sum(1) / w.sum(1)
    split1 = lambda a: jnp.moveaxis(jnp.asarray(a).reshape(a.shape[0], BLOCKS, -1), 1, 0)  # noqa: E731
    got = jax.vmap(lambda a, b: batch_mean(a, b, axis=1), axis_name=ENV_BLOCK_AXIS)(split1(x), split1(w)).mean(0)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(batch_mean(x, w, axis=1), want, rtol=1e-6)
    ws = w[1]  # one weight per sample
    got = jax.vmap(lambda a, b: batch_mean(a, b, axis=1), axis_name=ENV_BLOCK_AXIS)(split1(x), split(ws)).mean(0)
    np.testing.assert_allclose(got, (x * ws).sum(1) / ws.sum(), rtol=1e-6)


@pytest.mark.parametrize("name", ["qmix", pytest.param("qtran", marks=pytest.mark.slow)])
def test_value_decomposition_blocks_take_the_gradient_step_of_the_whole_batch(name):
    """QMIX (QTRAN) at its simple_spread preset (one-step targets, double Q, the mixer on the state): two blocks
    learning from the two halves of a batch the algorithm drew from its own replay buffer take the gradient step of the
    whole batch (TD losses as means over all blocks' samples, gradients all-reduced), twice in a row, and stay bit for
    bit equal to each other. Masked means over unequal valid counts (padded episodes): the masked-means tests above."""
    cfg = build_config(name, ENV, {"algo.hidden_sizes": [8], "algo.gru_size": 8, "algo.num_envs": 4, "algo.rollout_len": 10,
                                   "algo.batch_size": 8, "algo.learning_starts": 0, "env.n_agents": 3, "env.max_cycles": 5,
                                   "env_blocks": BLOCKS})
    algo = build_algorithm(cfg)
    part = block_algorithm(algo, BLOCKS)
    state = jax.jit(algo.init)(jax.random.PRNGKey(0))
    state = jax.jit(algo.update)(state)[0]  # 40 stored steps: 8 episodes of 5
    batch = jax.jit(algo.sample_batch)(state.buffer, jax.random.PRNGKey(1), None)
    one = jax.jit(algo.train_step)
    blocks = jax.jit(jax.vmap(part.train_step, in_axes=(None, 0, None), axis_name=ENV_BLOCK_AXIS))
    ref = blk = state._replace(buffer=None)
    for it in range(2):
        key = jax.random.PRNGKey(20 + it)
        ref, _ = one(ref, batch, key)
        blk, _ = blocks(blk, jax.tree.map(split, batch), key)
        blk = same_in_every_block(blk)
        assert max_rel_diff(blk, ref) < TOL, (it, max_rel_diff(blk, ref))
    assert max_rel_diff(ref.actor_params, state.actor_params) > 1e-3  # the agents' networks moved
