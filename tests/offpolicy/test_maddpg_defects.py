"""Two former defects of MADDPG/MATD3, each held by a test:

- the behaviour log-probability of a discrete action is that of a Gumbel-max sample of softmax(logits),
  whatever the Gumbel-softmax temperature (it used to be log_softmax(logits / temperature));
- MATD3's ``policy_delay`` counts gradient steps across updates (it used to have to divide
  ``grad_steps``), and the count survives a checkpoint and resume.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from refnets import tiny_env

from trustmarl.algos import make_algorithm
from trustmarl.envs.base import Discrete
from trustmarl.experiment.checkpoint import load_checkpoint, save_checkpoint
from trustmarl.experiment.config import build_config

N, OBS, A = 2, 3, 4
CFG = {"algo.hidden_sizes": [8], "algo.num_envs": 2, "algo.rollout_len": 4, "algo.buffer_size": 64,
       "algo.batch_size": 8, "algo.learning_starts": 8, "algo.grad_steps": 3, "algo.policy_delay": 2,
       "algo.gumbel_temperature": 0.4}


@pytest.fixture(scope="module")
def algo():
    return make_algorithm(build_config("matd3", "matrix/custom", CFG), total_updates=10, env=tiny_env(N, OBS, Discrete(A)))


def test_behaviour_log_prob_is_the_sampling_distribution_at_any_temperature(algo):
    """Frequencies of 20000 behaviour draws equal exp(the stored log-probabilities) (and therefore not
    softmax(logits / 0.4)); an unavailable action is never drawn."""
    params = jax.tree.map(lambda x: 3.0 * x + 0.5, algo.init_networks(jax.random.PRNGKey(1))[0])  # far from uniform
    obs = (jnp.array([[0.5, -1.0, 2.0], [1.0, 0.3, -0.7]]),)
    avail = (jnp.array([[True, True, True, True], [True, False, True, True]]),)
    draw = jax.jit(jax.vmap(lambda k: algo.behaviour(params, obs, avail, k, jnp.int32(0))))
    actions, logp = draw(jax.random.split(jax.random.PRNGKey(2), 20000))
    actions, logp = np.asarray(actions[0]), np.asarray(logp)
    for i in range(N):
        freq = np.bincount(actions[:, i], minlength=A) / len(actions)
        prob = np.zeros(A)
        for a in range(A):
            hit = actions[:, i] == a
            if hit.any():
                assert np.ptp(logp[hit, i]) < 1e-5  # one log-probability per action
                prob[a] = np.exp(logp[hit, i][0])
        assert abs(prob.sum() - 1.0) < 1e-4, prob  # the stored numbers are a distribution over the drawn actions
        np.testing.assert_allclose(freq, prob, atol=0.015)
    assert not (actions[:, 1] == 1).any()


def adam_count(opt) -> np.ndarray:
    """The Adam step counts in an optimiser state (one per stacked agent)."""
    counts = [x for path, x in jax.tree_util.tree_flatten_with_path(opt)[0] if "count" in jax.tree_util.keystr(path)]
    return np.asarray(counts[0])


def test_policy_delay_counts_gradient_steps_across_updates_and_resumes(algo, tmp_path):
    """3 gradient steps per update, a delay of 2: the actors step at gradient steps 0, 2, 4, 6, 8 (2, 3, 5
    actor steps after 1, 2, 3 updates), and a run saved after one update and resumed continues bit for bit."""
    update = jax.jit(algo.update)
    state = algo.init(jax.random.PRNGKey(0))  # eager: bitwise jax.jit(algo.init)'s state, without its compile
    counts, grad_steps, states = [], [], []
    for _ in range(3):
        state, _ = update(state)
        states.append(state)
        counts.append(int(adam_count(state.actor_opt)[0]))
        grad_steps.append(int(state.grad_steps))
    assert grad_steps == [3, 6, 9] and counts == [2, 3, 5]
    save_checkpoint(tmp_path / "ckpt.npz", states[0], {"update": 1})
    resumed, _ = load_checkpoint(tmp_path / "ckpt.npz", states[0])
    for _ in range(2):
        resumed, _ = update(resumed)
    for x, y in zip(jax.tree.leaves(resumed.actor_params) + jax.tree.leaves(resumed.target_critic_params),
                    jax.tree.leaves(state.actor_params) + jax.tree.leaves(state.target_critic_params)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert int(adam_count(resumed.actor_opt)[0]) == 5
