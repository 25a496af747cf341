"""PPO-based MATRL (Wen et al. 2021, Algorithm 2; spec seed 002 §2.9 and §5).

T6 (the degenerate cases, bit for bit on matching pennies): ``rho = 1`` is an independent PPO step with
the best-response settings; ``rho = 0`` is IL-PP (the best response starts from the candidates and
weighs samples by the other agents' clipped candidate ratios); "w/o BR" with ``rho = 0`` is one IL step.
Also: the logged meta-game is the spec's estimator on uncentred advantages, rho is its equilibrium,
the mixture's TV and the best-response weights, rewards-to-go targets, the per-agent KL early stop,
configuration errors. T9 (slow): learning on matching pennies and Checkers against IL.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _util import build, fresh_batch

from trustmarl.algos.on_policy.matrl import best_response_weights
from trustmarl.experiment.config import ConfigError, build_config
from trustmarl.trust.metagame import expected_payoffs, metagame_payoffs, nash_conv
from trustmarl.trust.nash import pure_profiles

MP = "matrix/matching_pennies"
TINY = {"algo.num_envs": 64, "algo.rollout_len": 4, "algo.hidden_sizes": [8], "algo.actor_head_gain": 1.0}
BR_AS_IL = {"algo.tpr_iters": 5, "algo.actor_lr": 2e-3, "algo.critic_lr": 2e-3, "algo.target_kl": None}  # = br_iters, br_lr, no early stop

_CACHE: dict = {}


def learned(**overrides):
    """``(algo, state, batch, new_state, metrics)``: one jitted ``learn_batch`` on one matching-pennies rollout
    (the same behaviour state and batch for every configuration; cached)."""
    key = tuple(sorted(overrides.items()))
    if key not in _CACHE:
        a = build("matrl", MP, **TINY, **overrides)
        if "batch" not in _CACHE:
            _CACHE["batch"] = fresh_batch(a)
        state, batch = _CACHE["batch"]
        state = a.init_state(jax.random.PRNGKey(0), state.last, state.env_state)._replace(
            actor_params=state.actor_params, critic_params=state.critic_params, key=state.key)
        new, metrics = jax.jit(a.learn_batch)(state, batch)
        _CACHE[key] = (a, state, batch, new, jax.tree.map(np.asarray, metrics))
    return _CACHE[key]


def nets(state):
    return state.actor_params, state.critic_params


def bitwise_equal(x, y) -> bool:
    lx, ly = jax.tree.leaves(x), jax.tree.leaves(y)
    return len(lx) == len(ly) and all(np.asarray(a).tobytes() == np.asarray(b).tobytes() for a, b in zip(lx, ly))


def moved(x, y) -> float:
    return max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y)))


# ---- T6: degenerate cases, bit for bit --------------------------------------------------------------

def test_no_br_with_rho_0_is_one_independent_step():
    """"MATRL w/o BR" with rho = 0 keeps the candidates: exactly the IL (independent PPO) update."""
    _, state, _, il, _ = learned(**{"algo.independent": True})
    _, _, _, nobr, m = learned(**{"algo.rho": 0.0, "algo.best_response": False})
    assert moved(nets(state), nets(il)) > 1e-3  # the step did something
    assert bitwise_equal(nets(il), nets(nobr))
    assert m["diag/rho_per_agent"].tolist() == [0.0, 0.0]


def test_rho_1_is_an_independent_step_with_the_best_response_settings():
    """rho = 1: the mixture is the current policy and every BR weight is exactly 1, so the update is one
    independent PPO step with br_iters / br_lr (Wen et al. 2021 section 3.3: MATRL degenerates to IL)."""
    _, _, _, r1, m = learned(**{"algo.rho": 1.0})
    _, _, _, il, _ = learned(**{"algo.independent": True, **BR_AS_IL})
    assert bitwise_equal(nets(r1), nets(il))
    for k in ("min", "max", "mean"):
        assert m[f"diag/br_weight_{k}_per_agent"].tolist() == [1.0, 1.0]
    assert m["diag/mixture_tv_per_agent"].tolist() == [0.0, 0.0]


def test_rho_0_is_il_pp_best_response_to_the_candidates():
    """rho = 0 (IL-PP): the best response starts from the candidates (theta_bar = theta_hat) and weighs agent
    i's samples by clip(pi_hat_j / pi_j, 1 +- 0.1) of the other agent: recomputed here step by step."""
    a, state, batch, ilpp, m = learned(**{"algo.rho": 0.0, "algo.actor_lr": 0.05})  # candidates beyond the clip range
    cfg = a.cfg

    def reference(state, batch):
        data, _, _ = a.step_data(state, batch)
        current = nets(state)
        cand, _, _ = a.ppo_steps(current, (state.actor_opt, state.critic_opt), (a.actor_txs[0], a.critic_tx), batch, data,
                                 cfg.tpr_iters, 1.5 * cfg.target_kl)
        logp_hat = a.log_prob(a.policy(cand[0], batch.obs, batch.avail), batch.actions)
        c = jnp.clip(jnp.exp(logp_hat - batch.logp), 1 - cfg.br_clip, 1 + cfg.br_clip)
        weight = c[:, ::-1]  # two agents: W_{-0} = c_1, W_{-1} = c_0
        nxt, _, _ = a.ppo_steps(cand, (state.extra["br_actor_opt"], state.extra["br_critic_opt"]), (a.br_actor_tx, a.br_critic_tx), batch,
                                data._replace(weight=weight), cfg.br_iters, None)
        return nxt, cand

    want, cand = jax.jit(reference)(state, batch)
    assert bitwise_equal(nets(ilpp), want)
    assert moved(want, cand) > 1e-4  # the best response moved away from the candidates
    lo, hi = 1 - cfg.br_clip, 1 + cfg.br_clip
    wmin, wmax = m["diag/br_weight_min_per_agent"], m["diag/br_weight_max_per_agent"]
    assert np.any(wmin == np.float32(lo)) or np.any(wmax == np.float32(hi)), (wmin, wmax)  # the clip is active


# ---- the meta-game, the equilibrium and the mixture as logged -----------------------------------------

def test_logged_metagame_rho_and_mixture_are_consistent():
    """The logged payoffs are the spec's estimator (clipped candidate ratios, advantages divided by their
    std but not centred), rho is an equilibrium of them, u(rho) and the mixture TV follow from rho."""
    a, state, batch, new, m = learned()
    n = a.n_agents
    g = np.zeros((n,) + (2,) * n)
    for x in pure_profiles(n)[1:]:
        g[(slice(None),) + tuple(x)] = m["diag/meta_payoff_" + "".join(map(str, x)) + "_per_agent"]
    rho = m["diag/rho_per_agent"]
    assert float(nash_conv(g, rho)) <= 1e-5 * np.abs(g).max() + 1e-7 and m["diag/nash_fallback"] == 0.0
    np.testing.assert_allclose(m["diag/meta_value_per_agent"], expected_payoffs(g, rho), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(m["diag/mixture_tv_per_agent"], (1 - rho) * m["diag/candidate_tv_per_agent"], rtol=1e-6)
    # recompute the estimator from the candidates (the rho = 0 w/o-BR update returns them)
    _, _, _, cand, _ = learned(**{"algo.rho": 0.0, "algo.best_response": False})
    r_hat = np.exp(np.asarray(a.log_prob(a.policy(cand.actor_params, batch.obs, batch.avail), batch.actions) - batch.logp))
    adv = np.asarray(batch.adv)
    assert np.abs(adv.mean(0)).max() > 1e-3  # the raw advantages are not centred: centring would change G
    np.testing.assert_allclose(m["diag/adv_std_per_agent"], adv.std(0), rtol=1e-5)
    want = metagame_payoffs(r_hat, adv / adv.std(0), clip=a.cfg.meta_clip)
    np.testing.assert_allclose(g, np.asarray(want), rtol=2e-4, atol=2e-6)
    assert np.abs(g).max() > 1e-3


def test_best_response_weights_are_products_of_the_others_clipped_mixture_ratios():
    rng = np.random.default_rng(0)
    r = np.exp(rng.normal(0, 0.3, size=(50, 3)))
    rho = np.array([0.2, 1.0, 0.7])
    w = np.asarray(best_response_weights(r, rho, 0.1))
    c = np.clip(rho + (1 - rho) * r, 0.9, 1.1)
    want = np.stack([c[:, 1] * c[:, 2], c[:, 0] * c[:, 2], c[:, 0] * c[:, 1]], axis=1)
    np.testing.assert_allclose(w, want, rtol=1e-6)
    assert np.asarray(best_response_weights(r, np.ones(3), 0.1)).tolist() == np.ones((50, 3)).tolist()


# ---- targets, advantages and the early stop -------------------------------------------------------------

def test_value_targets_are_rewards_to_go_and_advantages_are_raw():
    """Value targets: discounted rewards-to-go, bootstrapped with V only where the rollout is cut (Algorithm 2
    line 8, reference code); ``batch.adv`` stays uncentred (the meta-game needs it), the PPO losses centre it."""
    a = build("matrl", MP, **TINY)
    T, E, N = 5, 2, 2
    rng = np.random.default_rng(1)
    reward = rng.normal(size=(T, E, N)).astype(np.float32)
    value = rng.normal(size=(T, E, N)).astype(np.float32)
    done = np.zeros((T, E), bool)
    done[2, 0] = True
    last = rng.normal(size=(E, N)).astype(np.float32)
    state = learned()[1]
    _, adv, target, rtg = a.targets(state, {"reward": reward, "value": value, "done": done}, last)
    want = np.zeros((T, E, N))
    nxt = last.astype(np.float64)
    for t in reversed(range(T)):
        nxt = reward[t] + a.cfg.gamma * (1.0 - done[t])[:, None] * nxt
        want[t] = nxt
    np.testing.assert_allclose(target, want, rtol=1e-5)
    np.testing.assert_allclose(rtg, want, rtol=1e-5)
    data, meta_adv, std = learned()[0].step_data(state, learned()[2])
    np.testing.assert_allclose(np.asarray(data.adv).mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(data.adv).std(0), 1.0, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(meta_adv) * np.asarray(std), np.asarray(learned()[2].adv), rtol=1e-5, atol=1e-6)


def test_kl_early_stop_is_per_agent_and_freezes_the_networks():
    """The TPR step stops an agent once its sample KL exceeds 1.5 target_kl; stopped networks stay put."""
    _, _, _, full, m_full = learned(**{"algo.independent": True})  # target_kl 0.1: never reached here
    assert m_full["diag/tpr_steps_per_agent"].tolist() == [10.0, 10.0]
    kl = m_full["diag/kl_per_agent"]  # the exact KL reached after 10 steps (the sample KL is close to it)
    assert kl.max() < 0.1
    _, _, _, early, m = learned(**{"algo.independent": True, "algo.target_kl": float(kl.min()) / 4})
    steps = m["diag/tpr_steps_per_agent"]
    assert 1 <= steps.min() and steps.max() < 10, steps
    _, _, _, cut, _ = learned(**{"algo.independent": True, "algo.target_kl": None, "algo.tpr_iters": int(steps[0])})
    agent0 = lambda s: jax.tree.map(lambda x: x[0], nets(s))  # noqa: E731
    assert bitwise_equal(agent0(early), agent0(cut))  # agent 0 stopped after steps[0] steps


def test_configuration_errors():
    with pytest.raises(ConfigError, match="share_params=true is not allowed for matrl"):
        build_config("matrl", MP, {"algo.share_params": True})
    with pytest.raises(ConfigError, match=r"algo.rho=1.5 must be in \[0, 1\]"):
        build_config("matrl", MP, {"algo.rho": 1.5})
    with pytest.raises(ConfigError, match="algo.rho has no effect with algo.independent=true"):
        build_config("matrl", MP, {"algo.rho": 0.0, "algo.independent": True})
    with pytest.raises(ConfigError, match="algo.epochs is not used by matrl"):
        build_config("matrl", MP, {"algo.epochs": 3})
    with pytest.raises(ConfigError, match="algo.critic='state' is not allowed"):
        build_config("matrl", MP, {"algo.critic": "state"})
    cfg = build_config("matrl", "grid/switch4")
    assert cfg.algo.vf_coef == 0.01 and build_config("matrl", "grid/checkers").algo.vf_coef == 1.0  # Table 3


# ---- the reference code's defects as options (``--preset reference``) --------------------------------

def test_entropy_terms_are_the_reference_codes_sample_estimate_with_its_signs():
    """``entropy_term``: exact per-state entropy (default) or the code's ``mean(-log pi(a_t))``; the total loss
    is ``c_pi L + c_v L_V + c_kl KL - sign c_H H`` with sign -1 only in the code's MATRL candidate loss."""
    a = build("matrl", MP, **TINY)
    state, batch = fresh_batch(a)
    data, _, _ = a.step_data(state, batch)
    params = nets(state)
    logp = np.asarray(a.log_prob(a.policy(params[0], batch.obs, batch.avail), batch.actions))
    sample_ent = (-logp).mean(0)
    totals = {}
    for term in ("exact", "sample", "sample_flipped", "reference"):
        for independent in (False, True):
            b = build("matrl", MP, **TINY, **{"algo.entropy_term": term, "algo.independent": independent})
            d = data._replace(entropy_sign=b.entropy_sign(candidate=True))
            total, aux = b.losses(params, batch, d)
            if term != "exact":
                np.testing.assert_allclose(np.asarray(aux["entropy"]), sample_ent, rtol=1e-5)
            rest = np.asarray(aux["policy"] + a.cfg.vf_coef * aux["value"] + a.cfg.kl_coef * aux["kl"])
            sign = (total - rest.sum()) / (-a.cfg.ent_coef * np.asarray(aux["entropy"]).sum())
            totals[term, independent] = round(float(sign), 3)
            assert b.entropy_sign(candidate=False) == (-1.0 if term == "sample_flipped" else 1.0)  # best response
    assert totals == {("exact", False): 1.0, ("exact", True): 1.0, ("sample", False): 1.0, ("sample", True): 1.0,
                      ("sample_flipped", False): -1.0, ("sample_flipped", True): -1.0,
                      ("reference", False): -1.0, ("reference", True): 1.0}
    exact = np.asarray(a.losses(params, batch, data)[1]["entropy"])
    assert np.abs(exact - sample_ent).max() > 1e-4  # the two estimates differ on a finite batch


def test_head_activation_applies_the_hidden_activation_to_logits_and_values():
    """``head_activation``: the reference code's mlp puts the hidden activation on the output layer too (policy,
    value or both); recomputed by hand in NumPy from the parameters (one hidden layer, leaky ReLU of slope 0.01
    or TensorFlow's 0.2)."""
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (7, 1)))
    avail = jnp.ones((7, 2), bool)

    def log_softmax(z):
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    for act, slope in (("leaky_relu", 0.01), ("leaky_relu_0.2", 0.2)):
        leaky = lambda v, slope=slope: np.where(v >= 0, v, slope * v)  # noqa: E731
        ident = lambda v: v  # noqa: E731
        for mode in ("none", "policy", "value", "both"):
            h = build("matrl", MP, **{**TINY, "algo.actor_head_gain": 3.0, "algo.activation": act, "algo.head_activation": mode})
            actor, critic = h.init_params(jax.random.PRNGKey(1))

            def by_hand(p, out):
                p = jax.tree.map(lambda v: np.asarray(v[0], np.float64), p)["params"]  # agent 0
                hid = leaky(x @ p["MLP_0"]["Dense_0"]["kernel"] + p["MLP_0"]["Dense_0"]["bias"])
                return out(hid @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"])

            p0, q0 = jax.tree.map(lambda v: v[0], actor[0]), jax.tree.map(lambda v: v[0], critic[0])
            pol = leaky if mode in ("policy", "both") else ident
            val = leaky if mode in ("value", "both") else ident
            np.testing.assert_allclose(np.asarray(h.actors[0].apply(p0, x, avail)[0]), log_softmax(by_hand(actor[0], pol)),
                                       rtol=1e-4, atol=1e-5, err_msg=f"{act} {mode}")
            np.testing.assert_allclose(np.asarray(h.critic.apply(q0, x)), by_hand(critic[0], val)[:, 0], rtol=1e-4, atol=1e-5,
                                       err_msg=f"{act} {mode}")
            assert (by_hand(actor[0], ident) < 0).any() and (by_hand(critic[0], ident) < 0).any()  # the activation matters


def test_reference_presets_resolve_to_the_authors_code_values():
    """``--preset reference``: the authors' code's configs (checker_config.yaml, switch_config.yaml,
    mujoco_configs/*.yaml) on top of the paper's defaults."""
    ck = build_config("matrl", "grid/checkers", preset="reference").algo
    assert (ck.tpr_iters, ck.entropy_term, ck.head_activation, ck.vf_coef, ck.kl_coef, ck.ent_coef) == (5, "reference", "both", 1.0, 1e-3, 0.05)
    sw = build_config("matrl", "grid/switch4", preset="reference").algo
    assert (sw.tpr_iters, sw.vf_coef, sw.entropy_term, sw.head_activation, sw.activation) == (5, 1e-3, "reference", "both", "leaky_relu_0.2")
    assert build_config("matrl", "grid/switch4").algo.vf_coef == 0.01  # Table 3
    il = build_config("matrl", "grid/checkers", {"algo.independent": True}, preset="reference").algo
    assert il.independent and il.tpr_iters == 5
    default = build_config("matrl", "grid/checkers").algo
    assert (default.tpr_iters, default.entropy_term, default.head_activation) == (10, "exact", "none")
    with pytest.raises(ConfigError, match=r"algo.entropy_term='bogus'"):
        build_config("matrl", MP, {"algo.entropy_term": "bogus"})


def test_mamujoco_presets_resolve_to_table5_the_code_and_de_witts_maddpg():
    """MaMuJoCo: Wen et al. 2021, Table 5 by default; ``--preset reference`` the authors' code's values
    (Ant: meta-game clip 0.2); MADDPG ``--preset dewitt2020`` the settings Table 5 takes from de Witt et al. 2020."""
    for env in ("mamujoco/hopper_3x1", "mamujoco/ant_2x4"):
        c = build_config("matrl", env)
        a = c.algo
        assert (a.steps_per_update(), a.vf_coef, a.pi_coef, a.kl_coef, a.tpr_iters, a.br_iters, a.meta_clip) == (4000, 1e-3, 100.0, 0.01, 10, 5, 0.1)
        assert c.env.params["observation"] == "full"  # the code leaves agent_obsk unset: the full observation
        r = build_config("matrl", env, preset="reference").algo
        assert (r.tpr_iters, r.kl_coef, r.entropy_term, r.head_activation, r.vf_coef, r.pi_coef) == (5, 1e-3, "reference", "both", 1e-3, 100.0)
        assert r.meta_clip == (0.2 if "ant" in env else 0.1)
        d = build_config("maddpg", env, preset="dewitt2020").algo
        assert (d.hidden_sizes, d.actor_lr, d.critic_lr, d.batch_size, d.steps_per_update(), d.grad_steps, d.warmup_steps,
                d.gamma) == ((300, 300), 1e-3, 1e-3, 100, 100, 100, 10000, 0.99)
    il = build_config("matrl", "mamujoco/hopper_3x1", {"algo.independent": True}).algo  # IL: the same PPO settings
    assert il.independent and (il.vf_coef, il.pi_coef, il.kl_coef) == (1e-3, 100.0, 0.01)


def test_pong_presets_resolve_to_table6_and_the_code():
    """Two-player Pong: Wen et al. 2021, Table 6 (batch 4000, c_v 0.1, c_pi 10, c_kl 0.01); ``--preset reference``
    the authors' code's atari_configs (batch 1000, c_v 0.0001, c_kl 0.001, 5 policy iterations and its defects)."""
    from trustmarl.algos.on_policy.matrl import MATRLConfig
    from trustmarl.experiment.config import load_yaml, preset_files

    def resolved(preset=None):  # the preset layers on the defaults (build_config would need the atari extra)
        merged = {}
        for f in preset_files("matrl", "pettingzoo/pong", preset):
            merged.update(load_yaml(f))
        cfg = MATRLConfig(**{k[5:]: v for k, v in merged.items() if k.startswith("algo.")})
        cfg.validate()
        return cfg

    p = resolved()
    assert (p.steps_per_update(), p.vf_coef, p.pi_coef, p.kl_coef, p.tpr_iters, p.ent_coef) == (4000, 0.1, 10.0, 0.01, 10, 0.05)
    r = resolved("reference")
    assert (r.steps_per_update(), r.vf_coef, r.pi_coef, r.kl_coef, r.tpr_iters, r.entropy_term, r.head_activation) == (
        1000, 1e-4, 10.0, 1e-3, 5, "reference", "both")


# ---- T9: learning (slow; calibrated numbers in docs/matrl.md) -----------------------------------------

def policy_trajectory(variant: dict, n_updates: int, seeds, **overrides):
    """P(action 0) of both agents after every update on matching pennies: ``[S, U, 2]``."""
    from trustmarl.algos import make_algorithm
    from trustmarl.algos.base import init_seeds

    cfg = build_config("matrl", MP, {**overrides, **variant})
    a = make_algorithm(cfg, total_updates=n_updates)
    state = init_seeds(a, jnp.stack([jax.random.PRNGKey(s) for s in seeds]))
    obs, avail = (jnp.ones((1, 2, 1)),), (jnp.ones((1, 2, 2), bool),)

    def body(s, _):
        s, _ = a.update(s)
        return s, jnp.exp(a.policy(s.actor_params, obs, avail)[0][0])[0, :, 0]

    _, p = jax.jit(jax.vmap(lambda s: jax.lax.scan(body, s, None, length=n_updates)))(state)
    return np.asarray(p)


@pytest.mark.slow
def test_matching_pennies_matrl_stays_nearer_the_equilibrium_than_il():
    """T9 (spec seed 002 §5): after 200 updates (256 samples each, Table 3 losses) MATRL's policies are nearer
    (1/2, 1/2) than independent PPO's. Calibration, 8 seeds, max-norm distance averaged over the last 40
    updates: MATRL 0.31 (per seed 0.24-0.37), IL 0.48 (0.43-0.49, at the boundary), IL-PP 0.37, w/o BR 0.47."""
    ov = {**TINY, "algo.hidden_sizes": [16]}
    seeds = range(8)
    dist = {}
    for name, variant in (("matrl", {}), ("il", {"algo.independent": True})):
        p = policy_trajectory(variant, 200, seeds, **ov)
        dist[name] = np.abs(p[:, -40:] - 0.5).max(-1).mean(1)  # per seed
    assert dist["il"].mean() > 0.4, dist  # IL runs to the boundary (matching pennies cycles outwards)
    assert dist["matrl"].mean() < dist["il"].mean() - 0.1, dist


@pytest.mark.slow
def test_checkers_matrl_reaches_the_papers_return_and_is_not_behind_il():
    """T9 on Checkers, 100 updates (0.2 M env steps) x 5 seeds, the seeds of ``trustmarl train num_seeds=5``.

    Calibration (the reproduction's runs, return summed over agents, mean of the last 20 updates): MATRL
    18.4 (per seed 16.6-20.2), IL 17.4 (15.0-20.6). The paper's MATRL ~18 is reproduced; its IL ~ -2 is
    not (our independent PPO reaches 18.3 by 0.4 M steps), so only "not behind IL" is asserted."""
    from trustmarl.algos import make_algorithm
    from trustmarl.algos.base import init_seeds

    final = {}
    for name, variant in (("matrl", {}), ("il", {"algo.independent": True})):
        a = make_algorithm(build_config("matrl", "grid/checkers", variant), total_updates=100)
        state = init_seeds(a, jax.random.split(jax.random.PRNGKey(0), 5))
        run = jax.jit(jax.vmap(lambda s: jax.lax.scan(lambda c, _: a.update(c), s, None, length=100)))
        _, m = run(state)
        r = np.asarray(m["episode_return_sum"])
        assert np.nanmean(r[:, :5]) < 3.0  # starts near the random policy's return
        final[name] = np.nanmean(r[:, -20:], axis=1)
    assert final["matrl"].mean() > 16.0 and final["matrl"].min() > 13.0, final
    assert final["matrl"].mean() > final["il"].mean() - 1.5, final
