"""MAMT (Li et al. 2022) on the engine: the presets (the authors' code as ``--preset reference``, the
Spread-3 masks of MAMD-OP) and bad input, refused in one line before compiling."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trustmarl.algos import make_algorithm
from trustmarl.experiment import cli
from trustmarl.experiment.config import build_config
from trustmarl.validation import ConfigError

TINY = {"algo.hidden_sizes": [16], "algo.num_envs": 2, "algo.rollout_len": 4, "algo.buffer_size": 64,
        "algo.batch_size": 8, "algo.learning_starts": 8, "algo.grad_steps": 1, "algo.critic_hidden": 8,
        "algo.attention_heads": 2}
TRD = {"algo.trd_hidden": 8}


# ---- presets ---------------------------------------------------------------------------------------

def test_default_follows_the_paper_and_reference_preset_the_authors_code():
    """The table of docs/algorithms/mamt.md: q, the delta loss, the modelling policies, delta_cc."""
    d = build_config("mamt", "mpe/spread_2").algo
    r = build_config("mamt", "mpe/spread_2", preset="reference").algo
    assert (d.tsallis_q, d.delta_loss, d.train_modeling_policy, d.cc_threshold) == (0.2, "penalty", True, 0.2)
    assert (r.tsallis_q, r.delta_loss, r.train_modeling_policy, r.cc_threshold) == (1.0, "reference", False, 0.05)
    # everything else is shared: m = 100, the clip [0.01, 100] and the initial 0.01, c unused
    for k in ("old_policy_lag", "tr_min", "tr_max", "tr_init", "slow_every", "trd_hidden", "delta_lr", "batch_size", "tau"):
        assert getattr(d, k) == getattr(r, k), k
    assert (d.old_policy_lag, d.tr_min, d.tr_max, d.tr_init, d.slow_every, d.trd_hidden) == (100, 0.01, 100.0, 0.01, 1, 128)
    # a user's key beats the preset
    assert build_config("mamt", "mpe/spread_2", {"algo.tsallis_q": 0.5}, preset="reference").algo.tsallis_q == 0.5
    for algo in ("mamd", "mamd_op"):
        assert build_config(algo, "mpe/spread_2").algo.tsallis_q == 0.2
        assert build_config(algo, "mpe/spread_2", preset="reference").algo.tsallis_q == 1.0


@pytest.mark.parametrize("env, mask", [
    ("mpe/spread_3_sep", (False, False, False)),  # = MAAC
    ("mpe/spread_3_mix", (True, True, False)),  # the coupled pair
    ("mpe/spread_3_ful", (True, True, True)),  # = MAMD
])
def test_spread3_presets_carry_mamd_ops_masks(env, mask):
    cfg = build_config("mamd_op", env)
    assert cfg.algo.constrained == mask
    assert build_config("mamd", env).algo.constrained is None  # MAMD constrains every agent
    assert make_algorithm(cfg, total_updates=1).constrained.tolist() == list(mask)


# ---- bad input: one line naming the value and what is allowed, before compiling ------------------------

@pytest.mark.parametrize("algo, override, needle", [
    ("mamt", {"algo.tsallis_q": 0.0}, "algo.tsallis_q=0.0"),  # q <= 0
    ("mamt", {"algo.tsallis_q": -1.0}, "algo.tsallis_q=-1.0"),
    ("mamt", {"algo.old_policy_lag": 0}, "algo.old_policy_lag=0"),  # m < 1
    ("mamd", {"algo.md_coef": 0.0}, "algo.md_coef=0.0"),  # c <= 0
    ("mamt", {"algo.tr_min": 0.0}, "algo.tr_min=0.0"),  # tr_min <= 0
    ("mamt", {"algo.tr_min": 2.0, "algo.tr_max": 1.0, "algo.tr_init": 1.5}, "algo.tr_min=2.0 must be <= algo.tr_max=1.0"),
    ("mamt", {"algo.tr_init": 200.0}, "algo.tr_init=200.0 must lie in [algo.tr_min, algo.tr_max]"),
    ("mamt", {"algo.tr_init": 0.001}, "algo.tr_init=0.001 must lie in"),
    ("mamt", {"algo.cc_threshold": 1.5}, "algo.cc_threshold=1.5 must be in [0.0, 1.0]"),  # delta_cc outside [0, 1]
    ("mamt", {"algo.cc_threshold": -0.1}, "algo.cc_threshold=-0.1"),
    ("mamt", {"algo.slow_every": 0}, "algo.slow_every=0"),
    ("mamt", {"algo.delta_loss": "kl"}, "algo.delta_loss='kl' is not allowed; choose one of penalty, reference"),
    ("mamt", {"algo.md_coef": 5.0}, "algo.md_coef is not used by mamt"),
    ("mamt", {"algo.constrained": [True, True]}, "algo.constrained is not used by mamt"),
])
def test_bad_value_is_one_line_before_compiling(algo, override, needle):
    with pytest.raises(ConfigError) as e:
        build_config(algo, "mpe/simple_spread", {"env.n_agents": 2, **override})
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


@pytest.mark.parametrize("algo, env, override, needle", [
    ("mamt", "mpe/simple", {}, "mamt needs at least 2 agents (it models teammates); the env has 1"),
    ("mamd_op", "mpe/spread_3_mix", {"algo.constrained": [True, False]},
     "algo.constrained has 2 flags but the env has 3 agents (agent_0, agent_1, agent_2)"),
])
def test_env_dependent_checks_before_compiling(algo, env, override, needle):
    """The checks beside ``check_compatible``: raised by ``make_algorithm``, which builds no program."""
    cfg = build_config(algo, env, override)
    with pytest.raises(ConfigError) as e:
        make_algorithm(cfg, total_updates=1)
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


@pytest.mark.parametrize("argv, needle", [
    (["mamt", "mpe/spread_2", "algo.tr_min=0"], "algo.tr_min=0"),
    (["mamt", "mpe/simple"], "mamt needs at least 2 agents"),
])
def test_cli_exits_2_with_one_line(capsys, tmp_path, argv, needle):
    code = cli.main(["train", *argv, *[f"{k}={v}" for k, v in TINY.items() if k != "algo.hidden_sizes"],
                     "total_steps=16", "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("trustmarl: error: ") and err.count("\n") == 1 and needle in err, err
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").rglob("*.msgpack"))


# ---- cross-checks on the engine ----------------------------------------------------------------------

def run(algo, updates: int, seed: int = 0):
    state = jax.jit(algo.init)(jax.random.PRNGKey(seed))
    update = jax.jit(algo.update)
    out = []
    for _ in range(updates):
        state, metrics = update(state)
        out.append(metrics)
    return state, out


C = 7.0


FIXED_COMMON = {**TINY, "env.n_agents": 2, "algo.old_policy_lag": 3, "algo.tsallis_q": 0.5}


@pytest.fixture(scope="module")
def fixed_radius_mamt():
    """MAMT with tr_min = tr_max = tr_init = c, 2 agents, 4 updates."""
    mamt = make_algorithm(build_config("mamt", "mpe/simple_spread", {**FIXED_COMMON, **TRD, "algo.tr_min": C,
                                                                    "algo.tr_max": C, "algo.tr_init": C}), total_updates=10)
    return run(mamt, 4)


@pytest.fixture(scope="module")
def fixed_radius_runs(fixed_radius_mamt):
    """The fixed-radius MAMT run and MAMD with md_coef = c, same seed."""
    mamd = make_algorithm(build_config("mamd", "mpe/simple_spread", {**FIXED_COMMON, "algo.md_coef": C}), total_updates=10)
    return fixed_radius_mamt, run(mamd, 4)


@pytest.mark.slow  # the default suite's 20-minute budget
def test_fixed_radii_give_mamds_actor_steps(fixed_radius_runs):
    """Li et al. 2022: MAMT is MAMD with per-agent divisors delta_i; pinned at c by the clamp, every actor and
    critic step is MAMD's (the trust-region networks do not feed back into them)."""
    (s_mamt, m_mamt), (s_mamd, m_mamd) = fixed_radius_runs
    assert int(s_mamt.grad_steps) == int(s_mamd.grad_steps) > 2
    np.testing.assert_array_equal(np.asarray(s_mamt.extra["delta"]), [C, C])  # the clamp holds delta at c
    for a, b in zip(jax.tree.leaves(s_mamt.actor_params), jax.tree.leaves(s_mamd.actor_params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    for a, b in zip(jax.tree.leaves(s_mamt.extra["old_actor"]), jax.tree.leaves(s_mamd.extra["old_actor"])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(m_mamt[-1]["diag/kl_delta_per_agent"]),
                               np.asarray(m_mamd[-1]["diag/kl_delta_per_agent"]), rtol=1e-4, atol=1e-7)
    # the trust-region networks did learn meanwhile
    assert np.isfinite(float(m_mamt[-1]["loss/trd"])) and np.isfinite(float(m_mamt[-1]["loss/modeling"]))


PER_AGENT = ("delta", "kl_hat", "d_ns", "tightest_teammate", "penalty", "coordination_mean", "coordination_var",
             "modeling_loss", "kl_delta")


def test_per_agent_diagnostics_are_logged(fixed_radius_mamt):
    """Issue list of Li et al. 2022's figures: delta, K^L, D_ns, j*, the penalty, C's mean and variance
    (Figs. 12-14), kl_delta (Figs. 15-18), per agent; the three losses as scalars."""
    _, metrics = fixed_radius_mamt
    m = metrics[-1]
    for name in PER_AGENT:
        v = np.asarray(m[f"diag/{name}_per_agent"])
        assert v.shape == (2,) and np.all(np.isfinite(v)), name
    for name in ("loss/trd", "loss/delta", "loss/modeling"):
        assert np.shape(m[name]) == () and np.isfinite(float(m[name])), name
    np.testing.assert_array_equal(np.asarray(m["diag/tightest_teammate_per_agent"]), [1, 0])  # two agents
    np.testing.assert_allclose(np.asarray(m["diag/coordination_mean_per_agent"]), [1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(m["diag/coordination_var_per_agent"]), [0.0, 0.0], atol=1e-9)


@pytest.fixture(scope="module")
def three_agent_step():
    """One call of MAMT's trust-region steps (Li et al. 2022, steps 5-10) on a hand-built 3-agent batch."""
    algo = make_algorithm(build_config("mamt", "mpe/spread_3_ful", {**TINY, **TRD}), total_updates=1)
    state = jax.jit(algo.init)(jax.random.PRNGKey(3))
    k = jax.random.split(jax.random.PRNGKey(5), 5)
    g = algo.groups[0]
    b = 8
    old = jax.tree.map(lambda x: x + 0.3 * jax.random.normal(k[0], x.shape), state.actor_params)
    state = state._replace(extra={**state.extra, "old_actor": old})
    batch = {"obs": (2.0 * jax.random.normal(k[1], (b, g.n, g.obs_dim)),),
             "avail": (jnp.ones((b, g.n, g.action_space.n), bool),),
             "actions": (jax.random.randint(k[2], (b, g.n), 0, g.action_space.n),)}
    # a critic with spread-out values, so that the coordination coefficients differ between agents
    critic = jax.tree.map(lambda x: 3.0 * x, state.critic_params)
    terms = algo.policy_terms(state.actor_params, critic, batch, k[3], old)
    lm, _ = algo.model_log_probs(state.extra["model"], batch["obs"], batch["avail"])
    new_state, metrics = jax.jit(lambda s, bt, t: algo.trust_region_steps(s, bt, t, {}))(state, batch, terms)
    return algo, state, batch, terms, np.asarray(lm, np.float64), new_state, metrics


def _loop_coefficients(q, base):
    """C[b, i, j] = exp|Q_i - b_j| / sum_{k != j} exp|Q_k - b_j| for i != j, 0 on the diagonal (eq. 7)."""
    bsz, n = q.shape
    c = np.zeros((bsz, n, n))
    for s in range(bsz):
        for j in range(n):
            w = {i: np.exp(abs(q[s, i] - base[s, j])) for i in range(n) if i != j}
            for i, v in w.items():
                c[s, i, j] = v / sum(w.values())
    return c


def test_coordination_nonstationarity_and_modelling_against_loops(three_agent_step):
    algo, _, batch, terms, lm, _, m = three_agent_step
    q, base = np.asarray(terms.q, np.float64), np.asarray(terms.baseline, np.float64)
    c = _loop_coefficients(q, base)
    n = 3
    own = [[c[s, i, j] for s in range(len(q)) for j in range(n) if j != i] for i in range(n)]
    np.testing.assert_allclose(np.asarray(m["diag/coordination_mean_per_agent"]), [np.mean(o) for o in own], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(m["diag/coordination_var_per_agent"]), [np.var(o) for o in own], rtol=1e-3, atol=1e-9)
    assert np.ptp([np.mean(o) for o in own]) > 1e-3  # the agents' coefficients do differ here
    # tightest teammate: argmax over j != i of the batch sum of C[b, i, j]
    jstar = [max((j for j in range(n) if j != i), key=lambda j: c[:, i, j].sum()) for i in range(n)]
    np.testing.assert_array_equal(np.asarray(m["diag/tightest_teammate_per_agent"]), jstar)
    # D_ns,i = KL(pi_j* || m_i(.|o_i, j*)) / |A_j*| (eq. 5), with agent i's model before its step
    logp = np.asarray(terms.logp[0], np.float64)  # [B, N, A]
    n_act = logp.shape[-1]
    d_ns = [np.mean([sum(np.exp(logp[s, jstar[i], a]) * (logp[s, jstar[i], a] - lm[s, i, jstar[i], a])
                         for a in range(n_act)) / n_act for s in range(len(q))]) for i in range(n)]
    np.testing.assert_allclose(np.asarray(m["diag/d_ns_per_agent"]), d_ns, rtol=1e-4, atol=1e-7)
    # modelling cross-entropy over the teammates j != i only, on the replayed actions
    acts = np.asarray(batch["actions"][0])
    ce = [sum(np.mean([-lm[s, i, j, acts[s, j]] for s in range(len(q))]) for j in range(n) if j != i) for i in range(n)]
    np.testing.assert_allclose(np.asarray(m["diag/modeling_loss_per_agent"]), ce, rtol=1e-5)
    # the penalty D_q,i: the batch mean of ln_q pi_i(a~) - ln_q pi_i^old(a~), q = 0.2
    qq = algo.cfg.tsallis_q

    def lnq(p):
        return (np.maximum(p, 1e-6) ** (1 - qq) - 1) / (1 - qq)

    pen = (lnq(np.exp(np.asarray(terms.logp_a, np.float64))) - lnq(np.exp(np.asarray(terms.old_logp_a, np.float64)))).mean(0)
    np.testing.assert_allclose(np.asarray(m["diag/penalty_per_agent"]), pen, rtol=1e-4, atol=1e-7)


def test_radii_move_inside_the_clip_and_the_networks_step(three_agent_step):
    """The slow step moves each delta_i from tr_init = tr_min = 0.01 by one Adam step (1e-3) in the direction of
    its penalty D_q,i (the term sum_i D_q,i / delta_i dominates at delta = 0.01), and the clip holds it at
    0.01 where D_q,i < 0 (the authors' penalty at q = 0.2 can be negative); TRD-Net and the modelling
    policies take their steps (train_modeling_policy=true)."""
    algo, state, _, _, _, new, m = three_agent_step
    delta = np.asarray(new.extra["delta"])
    pen = np.asarray(m["diag/penalty_per_agent"])
    assert np.any(pen < 0) and np.any(pen > 0), pen  # both cases occur on this batch
    np.testing.assert_allclose(delta, np.clip(0.01 + algo.cfg.delta_lr * np.sign(pen), 0.01, 100.0), rtol=1e-3)
    np.testing.assert_array_equal(np.asarray(m["diag/delta_per_agent"]), delta)
    for key in ("trd", "model"):
        assert any(not np.array_equal(np.asarray(a), np.asarray(b))
                   for a, b in zip(jax.tree.leaves(state.extra[key]), jax.tree.leaves(new.extra[key]))), key


def test_reference_preset_freezes_the_models_and_moves_delta_by_the_predicted_kl_alone():
    """``--preset reference`` (the authors' code): the modelling policies never step, and the slow step follows
    d mean(K^L) / d delta alone (no penalty term), with K^L from TRD-Net *after* the fast step: the first Adam
    step is -delta_lr * sign(g + l2 delta), then the clip."""
    cfg = build_config("mamt", "mpe/spread_3_ful", {**TINY, **TRD}, preset="reference")
    algo = make_algorithm(cfg, total_updates=1)
    state = jax.jit(algo.init)(jax.random.PRNGKey(3))
    k = jax.random.split(jax.random.PRNGKey(5), 4)
    g = algo.groups[0]
    batch = {"obs": (2.0 * jax.random.normal(k[1], (8, g.n, g.obs_dim)),),
             "avail": (jnp.ones((8, g.n, g.action_space.n), bool),),
             "actions": (jax.random.randint(k[2], (8, g.n), 0, g.action_space.n),)}
    terms = algo.policy_terms(state.actor_params, state.critic_params, batch, k[3], state.extra["old_actor"])
    new, m = jax.jit(lambda s, bt, t: algo.trust_region_steps(s, bt, t, {}))(state, batch, terms)
    for a, b in zip(jax.tree.leaves(state.extra["model"]), jax.tree.leaves(new.extra["model"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    from trustmarl.trust.radii import coordination_coefficients

    coef = coordination_coefficients(terms.q, terms.baseline)
    act = (jax.nn.one_hot(terms.actions[0], g.action_space.n),)
    delta0 = state.extra["delta"]
    grad = np.asarray(jax.grad(lambda d: algo.trd.apply(new.extra["trd"], batch["obs"], act, d, coef).mean())(delta0))
    step = grad + cfg.algo.l2 * np.asarray(delta0)
    expect = np.clip(np.asarray(delta0) - cfg.algo.delta_lr * np.sign(step), cfg.algo.tr_min, cfg.algo.tr_max)
    np.testing.assert_allclose(np.asarray(new.extra["delta"]), expect, rtol=1e-4)
    np.testing.assert_allclose(float(m["loss/delta"]),
                               float(algo.trd.apply(new.extra["trd"], batch["obs"], act, delta0, coef).mean()), rtol=1e-5)
