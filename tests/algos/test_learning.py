"""Learning tests: seed 001 Proposition 1 (parameter sharing is exponentially suboptimal) and MPE.

Settings of the Proposition 1 runs follow the lead's validated scripts (32 envs x 4 steps per update,
5 epochs, 1 minibatch, lr 3e-3, head gain 1, no entropy bonus).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _util import final_return, initial_return, train

P1 = {"env.n_agents": 4, "algo.num_envs": 32, "algo.rollout_len": 4, "algo.epochs": 5, "algo.minibatches": 1,
      "algo.actor_head_gain": 1.0, "algo.agent_id": False, "algo.ent_coef": 0.0, "algo.actor_lr": 3e-3,
      "algo.critic_lr": 3e-3}
SEEDS = range(5)


def test_proposition1_shared_mappo_reaches_the_shared_optimum():
    """A shared policy without agent ids (every agent plays action 0 with the same probability p) gets
    J(p) = 2 p^2 (1 - p)^2 on the n = 4 game, at most J(1/2) = 2/2^4 = 0.125 (seed 001 Prop. 1). Started at
    p = 0.8 (J = 0.0512), MAPPO climbs to the shared optimum: p near 1/2 and J near 0.125 in every seed."""
    def start(state):  # the policy head gives logits (1.4, 0) whatever the input: p = sigmoid(1.4) = 0.80
        p = state.actor_params[0]["params"]
        head = {"kernel": jnp.zeros_like(p["Dense_0"]["kernel"]),
                "bias": jnp.broadcast_to(jnp.array([1.4, 0.0]), p["Dense_0"]["bias"].shape)}
        return state._replace(actor_params=({"params": {**p, "Dense_0": head}},))

    a, state, m = train("mappo", "matrix/proposition1", 100, seeds=SEEDS, start=start, **P1, **{"algo.share_params": True})
    first = np.asarray(m["episode_return"])[:, 0]
    assert first.mean() < 0.08, first  # the start is far from the optimum
    j = np.asarray(final_return(m))
    assert np.all((j >= 0.09) & (j <= 0.125 + 0.05)), j
    logp = jax.vmap(lambda ap, last: a.policy(ap, last.obs, last.avail))(state.actor_params, state.last)[0][0]
    p0 = np.exp(np.asarray(logp))[..., 0]  # [seeds, envs, agents]: P(action 0)
    assert np.all(np.abs(p0 - 0.5) < 0.12), p0[:, 0]


@pytest.mark.parametrize(
    "algo,updates,extra",
    [("mappo", 100, {}), pytest.param("happo", 60, {}, marks=pytest.mark.slow),
     pytest.param("ippo", 100, {}, marks=pytest.mark.slow),
     pytest.param("jrppo", 100, {}, marks=pytest.mark.slow),
     pytest.param("hatrpo", 60, {"algo.kl_threshold": 0.05}, marks=pytest.mark.slow)],
)
def test_proposition1_non_shared_agents_reach_the_optimum(algo, updates, extra):
    """Non-shared agents solve the game (J = 1) in at least 4 of 5 seeds (lead: 5/5 for all five)."""
    _, _, m = train(algo, "matrix/proposition1", updates, seeds=SEEDS, **P1, **{"algo.share_params": False}, **extra)
    j = np.asarray(final_return(m))
    assert np.sum(j > 0.9) >= 4, j


@pytest.mark.slow
@pytest.mark.parametrize("algo,extra", [("happo", {}), ("hatrpo", {"algo.kl_threshold": 0.05})])
def test_heterogeneous_random_payoff_is_solved(algo, extra):
    """Action counts (2, 3, 2), a random payoff: the best joint action is found in most seeds."""
    payoff = np.random.default_rng(1).normal(size=(2, 3, 2))
    ov = dict(P1, **{"env.payoff": payoff.tolist(), "algo.share_params": False}, **extra)
    ov.pop("env.n_agents")
    _, _, m = train(algo, "matrix/custom", 80, seeds=SEEDS, **ov)
    j = np.asarray(final_return(m))
    assert np.sum(j > payoff.max() - 0.1) >= 4, (j, payoff.max())


MPE = {"algo.num_envs": 16, "algo.rollout_len": 128, "algo.sgd_unroll": False}  # unrolling: slower compile
# updates and the required gain (team return, last 10% minus first 10% of updates) per algorithm: the tuned
# presets of MAPPO/IPPO/HAPPO (time-aware critic, lr 3e-3..5e-3) gain 6-7.5 by 40 updates (82k steps) in
# the preset sweep (docs/ppo_family.md); JR-PPO and HATRPO keep the JaxMARL settings (lead's measurement:
# gains 1.95-4.2 after 150 updates).
MPE_RUNS = {"mappo": (40, 3.0), "ippo": (40, 3.0), "happo": (40, 3.0), "jrppo": (150, 1.5), "hatrpo": (150, 1.5)}


@pytest.mark.parametrize("algo", ["mappo", pytest.param("ippo", marks=pytest.mark.slow), pytest.param("jrppo", marks=pytest.mark.slow),
                                  pytest.param("happo", marks=pytest.mark.slow), pytest.param("hatrpo", marks=pytest.mark.slow)])  # slow: under 20 min
def test_mpe_simple_spread_improves(algo):
    """Two seeds with the MPE preset settings: the mean episode return clearly improves (the margin is
    several times the update-to-update noise of a mean over 10% of the updates)."""
    updates, margin = MPE_RUNS[algo]
    a, _, m = train(algo, "mpe/simple_spread", updates, seeds=(0, 1), **MPE)
    gain = np.asarray(final_return(m) - initial_return(m))
    assert np.all(gain > margin), gain
    ev = np.asarray(m["diag/explained_variance"])[:, -10:]
    assert np.all((ev > -1.0) & (ev <= 1.0)), ev
