"""MATRL's bounds on random two-agent Markov games, with exact evaluation (spec T1 Markov part, T2, T3).

Theorem 1 (Wen et al. 2021, eq. 4), Remark 1 (eq. 31), and the meta-game identities (the mixed payoff
of the meta-game is g(pi_bar) of the distribution mixture; D_TV(pi, pi_bar) = (1 - rho) D_TV(pi, pi_hat))
on 3000 random games: |S| in {2, 3, 4}, |A_1| = 2, |A_2| in {2, 3}, gamma in {0.5, 0.9, 0.95}, candidates
pi_hat = (1 - s) pi + s random with s in {0.02, 0.1, 0.3, 1}.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from trustmarl.games.tabular import TabularGame, evaluate, max_tv, random_game, random_policy, surrogate
from trustmarl.trust.bounds import joint_coupling, remark1_penalty, theorem1_penalty
from trustmarl.trust.metagame import expected_payoffs

def _draw(rng: np.random.Generator, n_states: int, n2: int, batch: int) -> dict:
    """Random games, policies, candidates and meta-strategies (numpy, on the host), padded to 4 states
    and 3 actions for agent 2 so that every shape runs in one compiled program: padded states are
    unreachable absorbing states with reward 0 (value and advantage 0), a padded action copies action
    0's rewards and transitions and has probability 0, so no quantity below changes."""
    gamma = rng.choice([0.5, 0.9, 0.95], size=batch)
    s = rng.choice([0.02, 0.1, 0.3, 1.0], size=(batch, 1, 1))
    small = random_game(rng, n_states, (2, n2), 0.9, batch=batch)
    pi = [random_policy(rng, n_states, a, batch) for a in (2, n2)]
    hat = [(1 - s) * p + s * random_policy(rng, n_states, a, batch) for p, a in zip(pi, (2, n2))]
    transition = np.zeros((batch, 4, 2, 3, 4))
    transition[:, :n_states, :, :n2, :n_states] = small.transition
    transition[:, :n_states, :, n2:, :n_states] = small.transition[:, :, :, :1]
    for k in range(n_states, 4):
        transition[:, k, :, :, k] = 1.0
    reward = np.zeros((batch, 2, 4, 2, 3))
    reward[:, :, :n_states, :, :n2] = small.reward
    reward[:, :, :n_states, :, n2:] = small.reward[..., :1]
    initial = np.zeros((batch, 4))
    initial[:, :n_states] = small.initial

    def pad(p, n_actions):
        out = np.full((batch, 4, n_actions), 1.0 / p.shape[-1])
        out[..., p.shape[-1]:] = 0.0
        out[:, :n_states, : p.shape[-1]] = p
        return out

    game = TabularGame(transition=transition, reward=reward, initial=initial, gamma=gamma)
    return {"game": game, "pi": [pad(pi[0], 2), pad(pi[1], 3)], "hat": [pad(hat[0], 2), pad(hat[1], 3)],
            "rho": rng.uniform(size=(batch, 2))}


def _instance(game, pi, hat, rho):
    """Every quantity of T1-T3 for one game and one update (jitted and vmapped)."""
    bar = [r * p + (1 - r) * h for r, p, h in zip(rho, pi, hat)]
    ev = evaluate(game, *pi)
    alpha = jnp.stack([max_tv(p, h) for p, h in zip(pi, hat)])
    eps = jnp.max(jnp.abs(ev.advantage), axis=(1, 2, 3))  # [2]
    meta = jnp.stack(
        [jnp.stack([surrogate(ev, (pi[0], hat[0])[x1], (pi[1], hat[1])[x2]) for x2 in (0, 1)]) for x1 in (0, 1)]
    )  # [x1, x2, i]
    return {
        "gain": evaluate(game, *hat).eta - ev.eta,
        "surrogate": surrogate(ev, *hat),
        "penalty": theorem1_penalty(alpha, eps, game.gamma),
        "gain_bar": evaluate(game, *bar).eta - ev.eta,
        "surrogate_bar": surrogate(ev, *bar),
        "penalty_bar": remark1_penalty(alpha, rho, eps, game.gamma),
        "mixed_payoff": expected_payoffs(jnp.moveaxis(meta, -1, 0), rho),
        "tv_bar": jnp.stack([max_tv(p, b) for p, b in zip(pi, bar)]),
        "tv_bar_expected": (1 - rho) * alpha,
        "meta_00": meta[0, 0],
    }


def _all_instances() -> dict:
    rng = np.random.default_rng(0)
    parts = [_draw(rng, n_states, n2, 500) for n_states, n2 in [(2, 2), (2, 3), (3, 2), (3, 3), (4, 2), (4, 3)]]
    batch = jax.tree.map(lambda *x: np.concatenate(x), *parts)
    with jax.enable_x64(True):
        res = jax.jit(jax.vmap(_instance))(batch["game"], batch["pi"], batch["hat"], batch["rho"])
    return {k: np.asarray(v) for k, v in res.items()}


def test_theorem1_remark1_and_metagame_identities_on_3000_random_games():
    r = _all_instances()
    assert len(r["gain"]) == 3000
    # T2, Theorem 1: eta_i(pi_hat) - eta_i(pi) >= g_i(pi_hat) - 4 gamma eps_i / (1-gamma)^2 (a1 + a2 - a1 a2)^2
    slack = r["gain"] - (r["surrogate"] - r["penalty"])
    assert np.all(slack >= -1e-9), slack.min()
    # T3, Remark 1 for the mixture, and its penalty is never larger than Theorem 1's
    slack_bar = r["gain_bar"] - (r["surrogate_bar"] - r["penalty_bar"])
    assert np.all(slack_bar >= -1e-9), slack_bar.min()
    assert np.all(r["penalty_bar"] <= r["penalty"] + 1e-15)
    # T1 (Markov): G[0, 0] = 0; sum_x prod_j w_j(x_j) G[x] = g(pi_bar); TV(pi, pi_bar) = (1 - rho) TV(pi, pi_hat)
    np.testing.assert_allclose(r["meta_00"], 0.0, atol=1e-9)
    np.testing.assert_allclose(r["mixed_payoff"], r["surrogate_bar"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(r["tv_bar"], r["tv_bar_expected"], rtol=1e-12, atol=1e-15)
    # the checks are not vacuous: the surrogate alone over-promises in many games (the penalty is needed)
    assert np.mean(np.abs(r["surrogate"]) > 1e-3) > 0.5
    assert np.mean(r["gain"] < r["surrogate"]) > 0.2


def test_single_agent_bound_fails_when_the_other_agent_moves():
    """T2 contrast: agent 1 keeps its policy (alpha_1 = 0), agent 2 moves halfway to a random policy.
    The naive single-agent view of agent 1 (its own alpha is 0, so eta_1 should change by at least
    g_1) fails in about half of the games; Theorem 1, which charges agent 2's move, never fails."""

    def one(game, pi1, pi2, hat2):
        ev = evaluate(game, pi1, pi2)
        gain = evaluate(game, pi1, hat2).eta[0] - ev.eta[0]
        g1 = surrogate(ev, pi1, hat2)[0]
        alpha = jnp.stack([jnp.zeros(()), max_tv(pi2, hat2)])
        eps1 = jnp.max(jnp.abs(ev.advantage[0]))
        return gain - g1, gain - (g1 - theorem1_penalty(alpha, eps1, game.gamma))

    rng = np.random.default_rng(1)
    game = random_game(rng, 3, (2, 2), 0.9, sharpen=4.0, batch=2000)
    pi1, pi2, other = (random_policy(rng, 3, 2, 2000) for _ in range(3))
    with jax.enable_x64(True):
        naive, theorem = (np.asarray(x) for x in jax.jit(jax.vmap(one))(game, pi1, pi2, 0.5 * pi2 + 0.5 * other))
    assert 0.3 < np.mean(naive < 0) < 0.7
    assert np.all(theorem >= -1e-9)


def test_penalty_formulas():
    """Eq. 4's coupling for two agents, the n-agent generalisation, and Remark 1's special cases."""
    a = np.array([0.1, 0.3])
    assert float(joint_coupling(a)) == np.float32(0.1 + 0.3 - 0.03)
    np.testing.assert_allclose(float(joint_coupling(np.array([0.1, 0.2, 0.5]))), 1 - 0.9 * 0.8 * 0.5, rtol=1e-6)
    np.testing.assert_allclose(float(theorem1_penalty(a, 2.0, 0.9)), 4 * 0.9 * 2.0 / 0.01 * 0.37**2, rtol=1e-5)
    np.testing.assert_allclose(float(remark1_penalty(a, np.ones(2), 2.0, 0.9)), 0.0, atol=1e-12)
    np.testing.assert_allclose(float(remark1_penalty(a, np.zeros(2), 2.0, 0.9)), float(theorem1_penalty(a, 2.0, 0.9)), rtol=1e-6)
    rho = np.array([0.25, 0.6])
    rt = 1 - rho
    coupling = a[0] * rt[0] + a[1] * rt[1] - a[0] * a[1] * rt[0] * rt[1]  # eq. 31
    np.testing.assert_allclose(float(remark1_penalty(a, rho, 1.0, 0.5)), 4 * 0.5 / 0.25 * coupling**2, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(theorem1_penalty(a, np.array([1.0, 2.0]), 0.5)), [8 * 0.37**2, 16 * 0.37**2], rtol=1e-5)
