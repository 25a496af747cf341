"""Returns and advantages wired through the algorithm on a hand-built trajectory with a time limit.

``transition`` (team reward, the truncation bootstrap from ``final_state``), ``make_batch`` (GAE,
value normalisation, advantage normalisation) and the time-aware critic are checked together against
a NumPy float64 reference written here from the papers' formulas, with value normalisation on and off:
each function has its own unit tests (tests/trust), this one catches wrong wiring between them
(e.g. bootstrapping from the reset state instead of the final one, or from a normalised value).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _util import build

from trustmarl.envs.base import TimeStep

T, E, GAMMA, LAM = 6, 2, 0.9, 0.8
TRUNCATED = {(2, 0)}  # (step, env): env 0 hits its time limit after step 2 (auto-reset to a new state)
TERMINATED = {(3, 1)}  # env 1 ends in a terminal state after step 3


def timestep(rng, n_obs: int, n_state: int, reward=None, step=None) -> TimeStep:
    obs = (jnp.asarray(rng.normal(size=(E, 3, n_obs)), jnp.float32),)
    state = jnp.asarray(rng.normal(size=(E, n_state)), jnp.float32)
    avail = (jnp.ones((E, 3, 5), bool),)
    term = np.array([(step, e) in TERMINATED for e in range(E)])
    trunc = np.array([(step, e) in TRUNCATED for e in range(E)])
    final_state = jnp.where(jnp.asarray(term | trunc)[:, None], jnp.asarray(rng.normal(size=(E, n_state)), jnp.float32), state)
    final_obs = (jnp.where(jnp.asarray(term | trunc)[:, None, None], jnp.asarray(rng.normal(size=obs[0].shape), jnp.float32), obs[0]),)
    return TimeStep(obs=obs, avail=avail, state=state,
                    reward=jnp.zeros((E, 3)) if reward is None else jnp.asarray(reward, jnp.float32),
                    terminated=jnp.asarray(term), truncated=jnp.asarray(trunc), active=jnp.ones((E, 3), bool),
                    final_obs=final_obs, final_state=final_state, final_avail=avail)


def gae_np(r, v, done, last_v):
    adv, nxt_adv, nxt_v = np.zeros_like(r), np.zeros(r.shape[1:]), last_v
    for t in reversed(range(len(r))):
        nd = 1.0 - done[t]
        delta = r[t] + GAMMA * nd * nxt_v - v[t]  # Schulman et al. 2016, eq. 16 (TD residual)
        nxt_adv = delta + GAMMA * LAM * nd * nxt_adv  # GAE recursion
        adv[t], nxt_v = nxt_adv, v[t]
    return adv, adv + v


@pytest.mark.parametrize("bootstrap,value_norm,critic_time", [
    (False, True, False), (True, True, False), (True, False, False), (False, True, True),
])
def test_truncation_gae_and_normalisation_wiring(bootstrap, value_norm, critic_time):
    a = build("mappo", "mpe/simple_spread", **{
        "algo.num_envs": E, "algo.rollout_len": T, "algo.gamma": GAMMA, "algo.gae_lambda": LAM,
        "algo.bootstrap_truncation": bootstrap, "algo.value_norm": value_norm, "algo.critic_time": critic_time,
        "algo.hidden_sizes": [8], "algo.sgd_unroll": False})
    rng = np.random.default_rng(0)
    n_obs, n_state = a.env.groups[0].obs_dim, a.env.state_dim
    steps = [timestep(rng, n_obs, n_state)]
    for t in range(T):
        steps.append(timestep(rng, n_obs, n_state, reward=rng.normal(size=(E, 3)), step=t))
    state = a.init_state(jax.random.PRNGKey(0), steps[0])
    view, carry, transitions = a.policy_view(state), state.carry, []
    for t in range(T):
        _, act_out, carry = a.act(view, carry, steps[t], jax.random.PRNGKey(t))
        transitions.append(a.transition(view, steps[t], steps[t + 1], act_out))
    traj = jax.tree.map(lambda *xs: jnp.stack(xs), *transitions)
    new_state, batch = a.make_batch(state._replace(last=steps[-1], carry=carry), traj)

    # reference: V = the critic's output in return units (value norm at its initial statistics:
    # mean 0, variance clamped to 1e-2), on the global state (and t / 25 with the time-aware critic)
    scale = 0.1 if value_norm else 1.0
    time = np.zeros((T + 1, E))
    for t in range(1, T + 1):
        time[t] = np.where([(t - 1, e) in TRUNCATED | TERMINATED for e in range(E)], 0, time[t - 1] + 1)
    def v(x, t):
        inp = jnp.concatenate([x, jnp.asarray(t / 25.0, jnp.float32)[:, None]], -1) if critic_time else x
        return np.asarray(a.critic.apply(state.critic_params, inp), np.float64) * scale
    values = np.stack([v(steps[t].state, time[t]) for t in range(T)])
    last_v = v(steps[T].state, time[T])
    reward = np.stack([np.asarray(steps[t + 1].reward, np.float64).mean(-1) for t in range(T)])  # team reward
    done = np.stack([np.asarray(steps[t + 1].terminated | steps[t + 1].truncated, np.float64) for t in range(T)])
    if bootstrap:  # a time limit is not terminal: r + gamma V(final state) (Pardo et al. 2018, partial-episode bootstrapping)
        for (t, e) in TRUNCATED:
            reward[t, e] += GAMMA * v(steps[t + 1].final_state, time[t] + 1)[e]
    adv, returns = gae_np(reward, values, done, last_v)
    if value_norm:  # one running-statistics step from zero (beta^1, debiased): the batch mean and variance
        target = (returns - returns.mean()) / np.sqrt(max(returns.var(), 1e-2))
    else:
        target = returns
    adv_n = (adv - adv.mean()) / (adv.std() + 1e-8)

    flat = lambda x: np.asarray(x, np.float64).reshape(T * E)  # noqa: E731
    np.testing.assert_allclose(flat(batch.value), values.reshape(-1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(flat(batch.returns), returns.reshape(-1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(flat(batch.target), target.reshape(-1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(flat(batch.adv), adv_n.reshape(-1), rtol=1e-4, atol=1e-5)
    if critic_time:
        np.testing.assert_allclose(flat(batch.time), time[:T].reshape(-1) / 25.0, atol=1e-7)
    # the bootstrap reads the final state, which differs from the reset state the next step starts from
    assert not np.allclose(np.asarray(steps[3].final_state[0]), np.asarray(steps[3].state[0]))
