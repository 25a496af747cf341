"""IQL, VDN, QMIX and QTRAN-base: each term against a NumPy reference on hand-built inputs, the schedule,
action masks, bad input; no compiled training here (learning tests are in test_value_decomposition_learning)."""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trustmarl import replay
from trustmarl.algos import make_algorithm
from trustmarl.algos.off_policy.qlearning import (episode_window_indices, epsilon_schedule, lambda_returns, masked_mean,
                                                  n_step, next_values, within_episode)
from trustmarl.algos.off_policy.qmix import QMixer
from trustmarl.algos.off_policy.qtran import qtran_losses
from trustmarl.experiment.config import build_config
from trustmarl.validation import ConfigError

GAME = {"env.payoff": [[11.0, -30.0, 0.0], [-30.0, 7.0, 6.0], [0.0, 0.0, 5.0]]}  # climbing game, 2 agents x 3 actions
SMALL = {"algo.hidden_sizes": [8], "algo.num_envs": 2, "algo.rollout_len": 1, "algo.buffer_size": 16,
         "algo.batch_size": 4, "algo.learning_starts": 4}


def algo_on_game(name: str, **extra):
    cfg = build_config(name, "matrix/custom", {**GAME, **SMALL, **extra})
    return make_algorithm(cfg)


def masked(q, avail):
    return np.where(avail, q, -np.inf)


# ---- the double-Q target ---------------------------------------------------------------------------

def test_next_values_double_q_takes_the_online_argmax_and_the_target_value_among_available_actions():
    rng = np.random.default_rng(0)
    avail = rng.random((5, 2, 4)) < 0.6
    avail[..., 0] = True
    q_on, q_tg = rng.normal(size=(5, 2, 4)), rng.normal(size=(5, 2, 4))
    q_tg[~avail] = 100.0  # an unavailable action is never the target's max
    on, tg = (jnp.where(avail, q, -1e9) for q in (q_on, q_tg))
    a = masked(q_on, avail).argmax(-1)
    ref_double = np.take_along_axis(q_tg, a[..., None], -1)[..., 0]
    np.testing.assert_allclose(next_values((on,), (tg,), double=True), ref_double, rtol=1e-6)
    np.testing.assert_allclose(next_values((on,), (tg,), double=False), masked(q_tg, avail).max(-1), rtol=1e-6)
    assert not np.allclose(ref_double, masked(q_tg, avail).max(-1))  # the two targets differ on this batch


def test_n_step_window_cuts_at_terminal_and_truncated_steps():
    """Windows of 3 steps: rewards summed until the first step that ends an episode; its next obs bootstraps
    unless it is terminal (a NumPy loop is the reference)."""
    gamma = 0.9
    term = np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0], [1, 0, 0]], bool)
    trunc = np.array([[0, 0, 0], [0, 0, 0], [0, 1, 1], [0, 0, 0]], bool)
    reward = np.arange(24, dtype=np.float32).reshape(4, 3, 2)
    window = {"obs": (np.arange(12.0).reshape(4, 3, 1, 1),), "next_obs": (100 + np.arange(12.0).reshape(4, 3, 1, 1),),
              "reward": reward, "terminated": term, "truncated": trunc}
    out = n_step(jax.tree.map(jnp.asarray, window), gamma)
    for b in range(4):
        ret, k = np.zeros(2), 0
        for t in range(3):
            ret += gamma ** t * reward[b, t]
            k = t
            if term[b, t] or trunc[b, t]:
                break
        np.testing.assert_allclose(out["reward"][b], ret, rtol=1e-6)
        assert float(out["discount"][b]) == pytest.approx(0.0 if term[b, k] else gamma ** (k + 1))
        assert float(out["next_obs"][0][b, 0, 0]) == 100 + 3 * b + k
        assert float(out["obs"][0][b, 0, 0]) == 3 * b


@pytest.mark.parametrize("name", ["vdn", "qmix"])
def test_td_target_against_numpy(name):
    """``y = sum_i r_i + discount * Q_tot^-(s', a')`` with ``a'`` the online argmax of the available actions and the
    value from the *target* networks (here different from the online ones)."""
    a = algo_on_game(name)
    q_params, mixer = a.init_networks(jax.random.PRNGKey(0))
    target = jax.tree.map(lambda x: x + 0.3 * jax.random.normal(jax.random.PRNGKey(1), x.shape), q_params)
    state = types.SimpleNamespace(actor_params=q_params, target_actor_params=target, target_critic_params=mixer)
    B = 6
    next_avail = np.ones((B, 2, 3), bool)
    next_avail[0, 0, 1] = next_avail[1, 1, 0] = next_avail[2, :, 2] = False
    window = {"next_obs": (jnp.ones((B, 1, 2, 1)),), "next_avail": (jnp.asarray(next_avail)[:, None],),
              "obs": (jnp.ones((B, 1, 2, 1)),), "avail": (jnp.ones((B, 1, 2, 3), bool),),
              "reward": jnp.asarray(np.random.default_rng(1).normal(size=(B, 1, 2)), jnp.float32),
              "terminated": jnp.asarray([[0], [1], [0], [0], [1], [0]], bool),
              "truncated": jnp.asarray([[0], [0], [1], [0], [0], [1]], bool),
              "next_state": jnp.ones((B, 1, 1))}
    batch = n_step(window, a.cfg.gamma)
    y = np.asarray(a.targets(state, batch))
    q_on = np.asarray(a.q_values(state.actor_params, batch["next_obs"], batch["next_avail"])[0])
    q_tg = np.asarray(a.q_values(target, batch["next_obs"], batch["next_avail"])[0])
    act = masked(q_on, next_avail).argmax(-1)
    assert all(next_avail[b, i, act[b, i]] for b in range(B) for i in range(2))
    util = np.take_along_axis(q_tg, act[..., None], -1)[..., 0]  # [B, 2]
    q_next = util.sum(-1) if name == "vdn" else np.asarray(a.mix(state.target_critic_params, jnp.asarray(util), batch["next_state"]))
    disc = np.where(np.asarray(window["terminated"])[:, 0], 0.0, a.cfg.gamma)
    np.testing.assert_allclose(y, np.asarray(window["reward"])[:, 0].sum(-1) + disc * q_next, rtol=1e-5, atol=1e-6)


# ---- the mixers ---------------------------------------------------------------------------------

def test_vdn_joint_value_is_the_sum_of_the_utilities():
    a = algo_on_game("vdn")
    params = a.init_networks(jax.random.PRNGKey(0))[0]
    rng = np.random.default_rng(0)
    actions = (jnp.asarray(rng.integers(0, 3, (5, 2)), jnp.int32),)
    batch = {"obs": (jnp.ones((5, 2, 1)),), "avail": (jnp.ones((5, 2, 3), bool),), "actions": actions}
    y = jnp.asarray(rng.normal(size=5), jnp.float32)
    loss, metrics = a.losses(params, {}, batch, y)
    q = np.asarray(a.q_values(params, batch["obs"], batch["avail"])[0])
    q_tot = np.take_along_axis(q, np.asarray(actions[0])[..., None], -1)[..., 0].sum(-1)
    assert float(loss) == pytest.approx(np.mean((q_tot - np.asarray(y)) ** 2), rel=1e-5)
    assert float(metrics["diag/q_tot"]) == pytest.approx(q_tot.mean(), rel=1e-5, abs=1e-6)


def test_qmix_is_monotone_in_every_utility_and_vmaps_over_seeds():
    """dQ_tot/dQ_i >= 0 for random states, utilities and parameters (Rashid et al. 2018, eq. 5), and the mixer
    keeps its shapes under vmap over seeds."""
    n, s_dim, seeds, B = 3, 5, 4, 64
    mixer = QMixer(n, embed=8, hyper_hidden=16)
    keys = jax.random.split(jax.random.PRNGKey(0), seeds)
    params = jax.vmap(lambda k: mixer.init(k, jnp.zeros((n,)), jnp.zeros((s_dim,))))(keys)
    q = 3.0 * jax.random.normal(jax.random.PRNGKey(1), (seeds, B, n))
    s = 3.0 * jax.random.normal(jax.random.PRNGKey(2), (seeds, B, s_dim))
    q_tot = jax.vmap(mixer.apply)(params, q, s)
    assert q_tot.shape == (seeds, B)
    grad = jax.vmap(jax.grad(lambda p, q, s: mixer.apply(p, q, s).sum(), argnums=1))(params, q, s)
    assert grad.shape == (seeds, B, n) and bool(jnp.all(grad >= 0.0)) and bool(jnp.any(grad > 0.0))


def test_qmix_smax_preset_mixer_starts_near_zero_on_smax_scale_states():
    """SMAX's global state (3m: 6 units x [alive, x, y, ...] + flags, 72 features) holds raw map coordinates (0-32),
    not SMAC's normalised features. LeCun-initialised hypernetworks of it start with Q_tot in the hundreds and
    dQ_tot/dQ_i ~ 250 against team returns ~1, and QMIX's 3m preset then won no battle in 1M env steps; its
    orthogonal(0.001) mixer kernels (JaxMARL's MIXER_INIT_SCALE) start with |Q_tot| and dQ_tot/dQ_i near 0."""
    cfg = build_config("qmix", "smax/3m").algo
    assert cfg.mixer_init_scale == 0.001
    rng = np.random.default_rng(0)
    s = np.zeros((64, 72), np.float32)
    units = s[:, :60].reshape(64, 6, 10)  # a view: per unit alive, x, y, then 7 features in [0, 1]
    units[:, :, 0] = 1.0
    units[:, :, 1:3] = rng.uniform(0.0, 32.0, (64, 6, 2))
    units[:, :, 3:] = rng.uniform(0.0, 1.0, (64, 6, 7))
    q = jnp.asarray(rng.normal(0.0, 0.1, (64, 3)), jnp.float32)

    def start(scale):
        mixer = QMixer(3, cfg.mixer_embed, cfg.hypernet_hidden, init_scale=scale)
        params = jax.jit(mixer.init)(jax.random.PRNGKey(0), jnp.zeros((3,)), jnp.zeros((72,)))
        mix = lambda x: mixer.apply(params, x, jnp.asarray(s))  # noqa: E731
        q_tot, grad = jax.jit(lambda x: (mix(x), jax.grad(lambda y: mix(y).sum())(x)))(q)
        return float(jnp.abs(q_tot).max()), float(grad.max())

    q_tot, grad = start(cfg.mixer_init_scale)
    assert q_tot < 1e-3 and grad < 1e-3, (q_tot, grad)
    q_tot, grad = start(0.0)  # the library's LeCun-normal kernels: what the preset avoids
    assert q_tot > 50.0 and grad > 50.0, (q_tot, grad)


def test_qtran_losses_against_numpy():
    rng = np.random.default_rng(3)
    q_taken, q_greedy = rng.normal(size=(7, 3)), rng.normal(size=(7, 3))
    q_jt, q_jt_greedy, v, y = (rng.normal(size=7) for _ in range(4))
    out = qtran_losses(*(jnp.asarray(x, jnp.float32) for x in (q_taken, q_greedy, q_jt, q_jt_greedy, v, y)))
    assert float(out["loss/td"]) == pytest.approx(np.mean((q_jt - y) ** 2), rel=1e-5)
    assert float(out["loss/opt"]) == pytest.approx(np.mean((q_greedy.sum(-1) - q_jt_greedy + v) ** 2), rel=1e-5)
    assert float(out["loss/nopt"]) == pytest.approx(np.mean(np.minimum(q_taken.sum(-1) - q_jt + v, 0.0) ** 2), rel=1e-5)
    valid = np.arange(7) < 4  # padded steps weigh nothing
    args = tuple(jnp.asarray(x, jnp.float32) for x in (q_taken, q_greedy, q_jt, q_jt_greedy, v, y))
    masked = qtran_losses(*args, jnp.asarray(valid))
    head = qtran_losses(*(x[:4] for x in args))
    for k in ("loss/td", "loss/opt", "loss/nopt"):
        assert float(masked[k]) == pytest.approx(float(head[k]), rel=1e-5, abs=1e-7), k
    # Q_jt learns only from L_td: the opt/nopt losses do not move it (stop gradient)
    g = jax.grad(lambda qj, qg: qtran_losses(jnp.asarray(q_taken), jnp.asarray(q_greedy), qj, qg, jnp.asarray(v),
                                             jnp.asarray(y))["loss/opt"], argnums=(0, 1))(jnp.asarray(q_jt), jnp.asarray(q_jt_greedy))
    assert not np.any(np.asarray(g[0])) and not np.any(np.asarray(g[1]))


# ---- acting ---------------------------------------------------------------------------------------

def test_epsilon_at_the_schedule_points():
    cfg = build_config("iql", "matrix/custom", {"algo.epsilon_start": 0.9, "algo.epsilon_end": 0.1,
                                                "algo.epsilon_anneal_start": 100, "algo.epsilon_anneal_end": 300}).algo
    for t, eps in [(0, 0.9), (100, 0.9), (150, 0.7), (200, 0.5), (300, 0.1), (10_000, 0.1)]:
        assert float(epsilon_schedule(cfg, jnp.asarray(t, jnp.int32))) == pytest.approx(eps, abs=1e-6), t


def test_masked_actions_are_never_chosen():
    a = algo_on_game("iql", **{"algo.epsilon_start": 0.5, "algo.epsilon_end": 0.5, "algo.epsilon_anneal_end": 1})
    params = a.init_networks(jax.random.PRNGKey(0))[0]
    rng = np.random.default_rng(0)
    avail = rng.random((512, 2, 3)) < 0.5
    avail[np.arange(512), :, rng.integers(0, 3, 512)] = True
    obs = (jnp.asarray(rng.normal(size=(512, 2, 1)), jnp.float32),)
    greedy = np.asarray(a.greedy(params, obs, (jnp.asarray(avail),))[0])
    acts, logp = a.behaviour(params, obs, (jnp.asarray(avail),), jax.random.PRNGKey(3), jnp.asarray(0))
    acts = np.asarray(acts[0])
    for x in (greedy, acts):
        assert np.take_along_axis(avail, x[..., None], -1).all()
    explored = acts != greedy
    assert explored.any() and (~explored).any()
    n = avail.sum(-1)  # log-probabilities of epsilon-greedy: eps / n (+ 1 - eps on the greedy action)
    np.testing.assert_allclose(np.exp(np.asarray(logp)), 0.5 / n + 0.5 * (acts == greedy), rtol=1e-5)


# ---- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("algo,overrides,needle", [
    ("iql", {"algo.epsilon_start": 1.5}, "algo.epsilon_start=1.5 must be in [0.0, 1.0]"),
    ("vdn", {"algo.epsilon_end": -0.1}, "algo.epsilon_end=-0.1 must be in [0.0, 1.0]"),
    ("qmix", {"algo.epsilon_anneal_start": 500, "algo.epsilon_anneal_end": 100}, "algo.epsilon_anneal_end=100 must come after"),
    ("qtran", {"algo.target_every": 0}, "algo.target_every=0 must be an integer >= 1"),
    ("vdn", {"algo.team_reward": "individual"}, "algo.team_reward=individual is not allowed for vdn"),
    ("iql", {"algo.n_steps": 0}, "algo.n_steps=0 must be an integer >= 1"),
    ("qmix", {"algo.mixer_embed": 0}, "algo.mixer_embed=0 must be an integer >= 1"),
    ("qmix", {"algo.mixer_init_scale": -0.1}, "algo.mixer_init_scale=-0.1 is not allowed; choose 0"),
])
def test_bad_values_are_one_line_config_errors(algo, overrides, needle):
    with pytest.raises(ConfigError) as err:
        build_config(algo, "matrix/custom", overrides)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_env_checks_name_the_env_and_suggest_an_alternative():
    with pytest.raises(ConfigError, match=r"vdn learns from a team reward, but matrix/general_sum .* no team reward"):
        make_algorithm(build_config("vdn", "matrix/general_sum"))
    make_algorithm(build_config("iql", "matrix/general_sum", {"algo.team_reward": "individual"}))  # IQL may
    with pytest.raises(ConfigError, match=r"iql supports discrete actions only.*use maddpg or matd3"):
        make_algorithm(build_config("iql", "matrix/differential"))
    stateless = NoState()
    for algo in ("qmix", "qtran"):
        with pytest.raises(ConfigError, match=rf"{algo} conditions on the global state, but NoState has none .*use vdn"):
            build_config(algo, "matrix/custom").algo.check_env(stateless)
    build_config("vdn", "matrix/custom").algo.check_env(stateless)


class NoState:
    """An env (as check_env sees it) without a global state."""

    state_dim = 0


def test_presets_carry_the_papers_settings():
    for algo in ("iql", "vdn", "qmix", "qtran"):
        for env, steps in (("grid/checkers", 400_000), ("grid/switch4", 1_000_000)):
            cfg = build_config(algo, env)  # Wen et al. 2021, Table 4
            a = cfg.algo
            assert (cfg.total_steps, a.hidden_sizes, a.target_update, a.target_every, a.double_q, a.team_reward) == (
                steps, (128, 128), "hard", 200, True, "sum"), (algo, env)
        for env in ("smax/3m", "smax/8m", "smax/2s3z"):
            a = build_config(algo, env).algo
            assert (a.hidden_sizes, a.team_reward) == ((64,), "mean")
        assert build_config(algo, "mpe/simple_spread").algo.epsilon_anneal_end == 200_000
    assert build_config("qmix", "grid/checkers").algo.mixer_embed == 128
    assert build_config("qtran", "grid/switch4").algo.joint_hidden == (128, 128)


# ---- recurrent agents ---------------------------------------------------------------------------

def test_recurrent_agents_replay_their_stored_steps_exactly():
    """GRU agents: the stored hidden states chain (reset where an episode starts), and unrolling a stored window
    from its first hidden state reproduces the utilities and the greedy actions taken while acting (epsilon 0);
    a burn-in reproduces the rest of the window without passing gradients into its steps; one update learns from
    windows (burn-in, TD(lambda)) with finite losses."""
    cfg = build_config("vdn", "mpe/simple_spread", {
        "env.n_agents": 2, "env.max_cycles": 5, "algo.num_envs": 2, "algo.rollout_len": 8, "algo.hidden_sizes": [8],
        "algo.recurrent": True, "algo.gru_size": 8, "algo.seq_len": 4, "algo.burn_in": 1, "algo.td_lambda": 0.6,
        "algo.buffer_size": 64, "algo.batch_size": 2, "algo.learning_starts": 10, "algo.epsilon_start": 0.0,
        "algo.epsilon_end": 0.0, "algo.share_params": False})
    a = make_algorithm(cfg)
    state0 = a.init(jax.random.PRNGKey(0))
    state, metrics = jax.jit(a.update)(state0)
    assert float(metrics["diag/learning"]) == 1.0 and np.isfinite(float(metrics["loss/td"]))

    @jax.jit
    def gather(buffer):
        t, e = jnp.meshgrid(jnp.arange(8), jnp.arange(2), indexing="ij")  # [T=8, E=2]: the rollout, acted with state0's networks
        stored = replay.gather_transitions(buffer, t.reshape(-1), e.reshape(-1))
        return jax.tree.map(lambda x: x.reshape((8, 2) + x.shape[1:]), a.as_batch(*stored))

    traj = gather(state.buffer)
    params, first = state0.actor_params, np.asarray(traj["first"])
    assert first[5].all() and not first[1:5].any()  # 5-step episodes: step 5 starts the next one
    h, q_steps, q_step = tuple(x[0] for x in traj["hidden"]), [], jax.jit(a.q_step)  # jitted: one compile, not eager ops
    for t in range(8):
        h = tuple(jnp.where(jnp.asarray(first[t])[:, None, None], 0.0, x) for x in h)
        np.testing.assert_allclose(h[0], traj["hidden"][0][t], atol=1e-6)  # the hidden state acting stored
        obs, avail = (traj["obs"][0][t],), (traj["avail"][0][t],)
        h, q = q_step(params, h, obs, avail, jnp.zeros(2, bool))
        q_steps.append(q[0])
        np.testing.assert_array_equal(np.argmax(q[0], -1), traj["actions"][0][t])  # greedy (epsilon 0) actions

    @jax.jit
    def unrolls(params, traj):  # every unroll below in one compiled program (eager scans compile one by one)
        window = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), traj)  # 2 windows of 8 steps
        q, q_next = a.utilities(params, window)
        # burn-in: 3 steps warm the hidden state up, the 5 after them are those of the whole unroll; no gradient
        # flows into the burn-in (the same as starting from its end state held constant)
        part = lambda lo, hi: jax.tree.map(lambda x: x[:, lo:hi], window)  # noqa: E731
        burned = dict(part(3, None), burn=part(0, 3))
        q_b, q_next_b = a.utilities(params, burned)
        h3 = tuple(jnp.stack([x] * 5, 1) for x in a.warm_up(params, part(0, 3)))
        g_burn = jax.grad(lambda p: a.utilities(p, burned, with_next=False)[0][0].sum())(params)
        g_held = jax.grad(lambda p: a.utilities(p, dict(part(3, None), hidden=h3),
                                                with_next=False)[0][0].sum())(params)
        return q, q_next, q_b, q_next_b, g_burn, g_held

    q, q_next, q_b, q_next_b, g_burn, g_held = unrolls(params, traj)
    np.testing.assert_allclose(jnp.swapaxes(q[0], 0, 1), jnp.stack(q_steps), rtol=1e-5, atol=1e-6)
    assert q_next[0].shape == q[0].shape == (2, 8, 2, 5)
    np.testing.assert_allclose(q_b[0], q[0][:, 3:], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(q_next_b[0], q_next[0][:, 3:], rtol=1e-5, atol=1e-6)
    for x, y in zip(jax.tree.leaves(g_burn), jax.tree.leaves(g_held)):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


def test_recurrent_settings_are_checked():
    with pytest.raises(ConfigError, match=r"algo.seq_len=30 is longer than the episodes of mpe/simple_spread \(at most 25"):
        make_algorithm(build_config("qmix", "mpe/simple_spread", {"algo.recurrent": True, "algo.seq_len": 30}))
    with pytest.raises(ConfigError, match=r"algo.n_steps>1 is not available with algo.recurrent=true"):
        build_config("vdn", "mpe/simple_spread", {"algo.recurrent": True, "algo.n_steps": 3})


# ---- TD(lambda) targets and burn-in ----------------------------------------------------------------

def lambda_returns_loop(r, d, v, done, valid, lam):
    """Plain loops: per window, backwards, G_t = r_t + d_t ((1 - lam) v_t + lam G_{t+1}) while the episode goes on
    to a valid step t+1, else r_t + d_t v_t (episode end, last step of the window, padding next)."""
    B, L = r.shape[:2]
    out = np.zeros_like(v)
    for b in range(B):
        for t in reversed(range(L)):
            goes_on = t + 1 < L and not done[b, t] and valid[b, t + 1]
            boot = (1 - lam) * v[b, t] + lam * out[b, t + 1] if goes_on else v[b, t]
            out[b, t] = r[b, t] + d[b, t] * boot
    return out


@pytest.mark.parametrize("lam", [0.0, 0.6, 1.0])
def test_lambda_returns_against_a_loop(lam):
    """Windows of 5 steps: one with a termination inside (no bootstrap, the next episode's steps after it), one
    with a truncation (bootstraps from the final observation's value), one padded after its episode's end, one
    padded after a step of an unfinished episode (bootstraps there), one plain (bootstraps at the window's end);
    per agent values (IQL's shape) too."""
    gamma, rng = 0.9, np.random.default_rng(0)
    term = np.zeros((5, 5), bool)
    trunc = np.zeros((5, 5), bool)
    valid = np.ones((5, 5), bool)
    term[0, 2] = True
    trunc[1, 1] = True
    term[2, 2], valid[2, 3:] = True, False
    valid[4, 3:] = False
    r, v = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    v[2, 3:] = v[4, 3:] = r[2, 3:] = r[4, 3:] = 1e6  # padding: never continued into
    d = gamma * (1.0 - term)
    done = term | trunc
    got = lambda_returns(*(jnp.asarray(x) for x in (r, d, v, done)), lam, jnp.asarray(valid))
    ref = lambda_returns_loop(r, d, v, done, valid, lam)
    np.testing.assert_allclose(np.asarray(got)[valid], ref[valid], rtol=1e-5)
    # hand-checked: the terminal step is its reward; the truncated step bootstraps from its successor's value
    assert float(got[0, 2]) == pytest.approx(r[0, 2]) and float(got[2, 2]) == pytest.approx(r[2, 2])
    assert float(got[1, 1]) == pytest.approx(r[1, 1] + gamma * v[1, 1])
    assert float(got[3, 4]) == pytest.approx(r[3, 4] + gamma * v[3, 4])
    assert float(got[4, 2]) == pytest.approx(r[4, 2] + gamma * v[4, 2])
    no_pad = lambda_returns(*(jnp.asarray(x[:4]) for x in (r, d, v, done)), lam)  # without a mask: all steps valid
    np.testing.assert_allclose(np.asarray(no_pad)[:2], lambda_returns_loop(r[:2], d[:2], v[:2], done[:2], valid[:2], lam), rtol=1e-5)
    assert float(no_pad[3, 4]) == pytest.approx(r[3, 4] + gamma * v[3, 4])
    if lam == 0.0:
        np.testing.assert_allclose(np.asarray(got)[valid], (r + d * v)[valid], rtol=1e-5)
    v3 = rng.normal(size=(5, 5, 3))  # per-agent values [B, L, N] with a shared team reward
    got3 = lambda_returns(jnp.asarray(r)[..., None], jnp.asarray(d), jnp.asarray(v3), jnp.asarray(done), lam, jnp.asarray(valid))
    for i in range(3):
        np.testing.assert_allclose(np.asarray(got3)[..., i][valid], lambda_returns_loop(r, d, v3[..., i], done, valid, lam)[valid],
                                   rtol=1e-5)
    # padded steps contribute nothing to the loss
    x = rng.normal(size=(5, 5))
    assert float(masked_mean(jnp.asarray(np.where(valid, x, 1e6)), jnp.asarray(valid))) == pytest.approx(x[valid].mean(), rel=1e-5)


def test_burn_in_and_td_lambda_settings_are_checked():
    for overrides, needle in [
        ({"algo.recurrent": True, "algo.seq_len": 4, "algo.burn_in": 4}, "algo.burn_in=4 must be shorter than the window algo.seq_len=4"),
        ({"algo.burn_in": 2}, "algo.burn_in=2 needs algo.recurrent=true"),
        ({"algo.td_lambda": 1.5}, "algo.td_lambda=1.5 must be in [0.0, 1.0]"),
        ({"algo.td_lambda": 0.8, "algo.n_steps": 3}, "algo.n_steps=3 and algo.td_lambda=0.8 are two multi-step targets"),
        ({"algo.sequences": "episodes"}, "algo.sequences=episodes needs algo.recurrent=true and algo.burn_in=0"),
        ({"algo.sequences": "whole"}, "algo.sequences='whole'"),
    ]:
        with pytest.raises(ConfigError) as err:
            build_config("qmix", "mpe/simple_spread", overrides)
        assert needle in str(err.value) and "\n" not in str(err.value), str(err.value)
    with pytest.raises(ConfigError, match=r"algo.burn_in\+algo.seq_len=30 is longer than the episodes of mpe/simple_spread"):
        make_algorithm(build_config("qmix", "mpe/simple_spread", {"algo.recurrent": True, "algo.seq_len": 20, "algo.burn_in": 10}))


@pytest.mark.parametrize("algo", ["iql", "vdn", "qmix", "qtran"])
def test_every_method_traces_with_td_lambda_and_burn_in(algo):
    """Feed-forward agents with TD(lambda) windows, recurrent ones with burn-in and with whole (padded) episodes:
    the update traces (shapes
    only, nothing compiled) to a scalar TD loss for each method (IQL on each agent's own reward)."""
    base = {"env.n_agents": 2, "env.max_cycles": 8, "algo.num_envs": 2, "algo.rollout_len": 4, "algo.hidden_sizes": [8],
            "algo.buffer_size": 64, "algo.batch_size": 2, "algo.learning_starts": 12, "algo.seq_len": 4}
    extra = {"algo.team_reward": "individual"} if algo == "iql" else {}
    for ov in ({"algo.td_lambda": 0.8}, {"algo.recurrent": True, "algo.gru_size": 8, "algo.burn_in": 2, "algo.td_lambda": 0.5},
               {"algo.recurrent": True, "algo.gru_size": 8, "algo.sequences": "episodes"}):
        a = make_algorithm(build_config(algo, "mpe/simple_spread", {**base, **ov, **extra}))
        state = jax.eval_shape(a.init, jax.random.PRNGKey(0))
        _, metrics = jax.eval_shape(a.update, state)
        assert metrics["loss/td"].shape == (), (algo, ov)


def test_episode_windows_start_at_an_episode_and_pad_after_its_end():
    """Whole-episode sequences: every window starts at a stored episode's first step and lies in the filled part
    without crossing the write position (a loop over the ring is the reference); the steps after the first
    episode end of a window are padding."""
    C, E, L = 12, 3, 4
    rng = np.random.default_rng(0)
    first = rng.random((C, E)) < 0.3
    for pos, size in ((7, 12), (9, 9), (3, 12)):
        t, e = episode_window_indices(jnp.asarray(first), pos, size, jax.random.PRNGKey(pos), 256, L)
        t, e = np.asarray(t), np.asarray(e)[:, 0]
        allowed = {(s, c) for s in range(C) for c in range(E)
                   if first[s, c] and (pos - 1 - s) % C >= L - 1 and (pos - 1 - s) % C < size}
        got = set(zip(t[:, 0].tolist(), e.tolist()))
        assert got <= allowed and len(got) >= min(len(allowed), 5), (pos, got - allowed)
        np.testing.assert_array_equal(t, (t[:, :1] + np.arange(L)) % C)
    # uniform over the allowed starts (the inverse-CDF draw): every count within 5 standard deviations
    n = 8192
    t, e = episode_window_indices(jnp.asarray(first), 7, 12, jax.random.PRNGKey(1), n, L)
    allowed = sorted((s, c) for s in range(C) for c in range(E) if first[s, c] and L - 1 <= (6 - s) % C < 12)
    counts = np.array([np.sum((np.asarray(t)[:, 0] == s) & (np.asarray(e)[:, 0] == c)) for s, c in allowed])
    p = 1 / len(allowed)
    assert counts.sum() == n and np.all(np.abs(counts - n * p) < 5 * np.sqrt(n * p * (1 - p))), counts
    # no episode start fits: uniform over every fitting slot
    t, _ = episode_window_indices(jnp.zeros((C, E), bool), 7, 12, jax.random.PRNGKey(2), 512, L)
    assert set(np.asarray(t)[:, 0].tolist()) == {s for s in range(C) if L - 1 <= (6 - s) % C < 12}
    done = np.array([[0, 1, 0, 1], [0, 0, 0, 0], [1, 0, 0, 0]], bool)
    np.testing.assert_array_equal(within_episode(jnp.asarray(done)),
                                  [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
