"""Recurrent actors of the off-policy actor-critic methods (MAAC, MADDPG, MATD3 and their F2A2 versions F2A2-SAC,
F2A2-DDPG, F2A2-TD3 with ``recurrent=true``) and the
sequence replay they share with value decomposition (:mod:`trustmarl.algos.off_policy.sequences`): replay of stored
steps bit for bit, padding that adds nothing to any loss or gradient, no hidden state across an episode start, the
epsilon-uniform/softmax mixture and its schedule, bad input, and a bitwise resume (slow)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trustmarl import replay
from trustmarl.algos import make_algorithm
from trustmarl.algos.off_policy.sequences import epsilon_mixture, epsilon_schedule
from trustmarl.experiment import cli
from trustmarl.experiment.config import build_config
from trustmarl.validation import ConfigError

SMALL = {"env.n_agents": 2, "env.max_cycles": 5, "algo.num_envs": 2, "algo.rollout_len": 8, "algo.hidden_sizes": [8],
         "algo.buffer_size": 64, "algo.batch_size": 8, "algo.learning_starts": 8, "algo.grad_steps": 1,
         "algo.critic_hidden": 8, "algo.attention_heads": 2, "algo.reward_norm": False, "algo.recurrent": True, "algo.gru_size": 8, "algo.seq_len": 4}


def algo(name: str, **extra):
    maac_only = ("algo.critic_hidden", "algo.attention_heads", "algo.reward_norm")
    keys = {k: v for k, v in SMALL.items() if not (name not in ("maac", "f2a2_sac") and k in maac_only)}
    return make_algorithm(build_config(name, "mpe/simple_spread", {**keys, **extra}))


def filled(a, seed: int, rollouts: int = 1):
    """``(initial state, state after rollouts stored in its buffer)``: acting and storing only (nothing learned, so
    nothing of the update but the rollout is compiled)."""
    state0 = state = a.init(jax.random.PRNGKey(seed))
    roll = jax.jit(a.rollout)
    for _ in range(rollouts):
        state, traj, _ = roll(state)
        step, nxt = a.split_transition(traj)
        state = state._replace(buffer=replay.insert_transitions(state.buffer, step, nxt, traj["terminated"] | traj["truncated"]))
    return state0, state


@functools.lru_cache(maxsize=None)
def prepared(name: str, **extra):
    """``(algorithm, initial state, state after two stored rollouts)``, shared by the tests of one module run."""
    a = algo(name, **extra)
    return (a, *filled(a, 0, rollouts=2))


NEEDS = {"matd3": {"algo.grad_steps": 2}, "f2a2_td3": {"algo.grad_steps": 3}}  # every actor delay within an update


def sample(a, state, key):
    """One gradient step's batch (jitted: eager gathers are slow)."""
    return jax.jit(lambda buffer, k: a.sample_batch(buffer, k, None))(state.buffer, key)


def rollout_of(a, state):
    """The first rollout of ``state``'s buffer as trajectories ``[T, E, ...]``."""
    T, E = a.cfg.rollout_len, a.cfg.num_envs
    t, e = jnp.meshgrid(jnp.arange(T), jnp.arange(E), indexing="ij")
    stored = replay.gather_transitions(state.buffer, t.reshape(-1), e.reshape(-1))
    return jax.tree.map(lambda x: x.reshape((T, E) + x.shape[1:]), a.as_batch(*stored))


@pytest.mark.parametrize("name", ["maac", pytest.param("f2a2_sac", marks=pytest.mark.slow), pytest.param("maddpg", marks=pytest.mark.slow),
                                  pytest.param("f2a2_td3", marks=pytest.mark.slow)])  # F2A2's acting path: the epsilon-mixture test below
def test_replaying_stored_steps_reproduces_the_logits_and_hidden_states_of_acting_bit_for_bit(name):
    """Acting stores the hidden state entering every step; unrolling the stored rollout (one sequence per env copy,
    the shapes acting had) from its first stored hidden state gives bit for bit the hidden states stored next (reset
    where an episode starts) and the log-probabilities of the actions taken (epsilon 0: the policy's own); the F2A2
    versions' stored behaviour log-probability vectors are the replayed policies' (read by the ratios)."""
    a, state0, state = prepared(name, **NEEDS.get(name, {}))
    traj = rollout_of(a, state)
    first = np.asarray(traj["first"])
    assert first[5].all() and not first[1:5].any()  # 5-step episodes
    seq = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), traj)  # [E, T, ...]: one sequence per env copy
    params = state0.actor_params

    def replay_all(params, seq):
        def body(h, x):
            obs, avail, first = x
            h, out = a.agent_step(params, h, obs, avail, first)
            return h, (h, out)
        h0 = tuple(h[:, 0] for h in seq["hidden"])
        xs = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), (seq["obs"], seq["avail"], seq["first"]))
        return jax.lax.scan(body, h0, xs)[1]

    h_after, logits = jax.jit(replay_all)(params, seq)  # [T, E, ...]
    for g in range(len(a.groups)):
        reset = first[1:, :, None, None]
        np.testing.assert_array_equal(np.where(reset, 0.0, h_after[g][:-1]), traj["hidden"][g][1:])
    logp = [jax.nn.log_softmax(a.masked_logits(lg, av)) for lg, av in zip(logits, traj["avail"])]
    taken = jnp.concatenate([jnp.take_along_axis(lp, ac[..., None], -1)[..., 0] for lp, ac in zip(logp, traj["actions"])], -1)
    np.testing.assert_array_equal(taken, traj["logp"])
    if name.startswith("f2a2"):  # the behaviour vectors were computed at the carried hidden state, not a zero one
        for lp, stored in zip(logp, traj["behaviour_logp"]):
            np.testing.assert_array_equal(jnp.where(jnp.isfinite(lp), lp, stored), stored)
        assert np.isfinite(np.asarray(traj["behaviour_logp"][0])).all()
    # the learner's unroll (SequenceAgents.unroll) gives the same outputs
    out, _ = jax.jit(lambda p, s: a.unroll(lambda h, o, av, r: a.agent_step(p, h, o, av, r), s, with_next=False))(params, seq)
    np.testing.assert_array_equal(jnp.swapaxes(out[0], 0, 1), logits[0])


def test_f2a2_behaviour_vectors_are_the_epsilon_mixture_acting_drew_from():
    """With epsilon on (0.5 throughout), the behaviour log-probability vectors F2A2 stores for its ratios are the
    mixture's, ``log(eps / |available| + (1 - eps) pi)``, at the carried hidden state: at the action taken they equal
    the stored log-probability of the action (what acting drew from), and they are normalised over the actions."""
    a, _, state = prepared("f2a2_ddpg", **{"algo.epsilon_start": 0.5, "algo.epsilon_end": 0.5})
    traj = rollout_of(a, state)
    vec = traj["behaviour_logp"]
    at_taken = jnp.concatenate([jnp.take_along_axis(v, ac[..., None], -1)[..., 0] for v, ac in zip(vec, traj["actions"])], -1)
    np.testing.assert_allclose(at_taken, traj["logp"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jnp.exp(vec[0]).sum(-1), 1.0, rtol=1e-5)
    assert float(jnp.exp(vec[0]).min()) >= 0.5 / vec[0].shape[-1] - 1e-6  # every available action keeps eps / |A|


def perturb_padding(batch, pad, key):
    """``batch`` with every per-step entry of the padded steps ``pad`` ``[B, L]`` (per-agent batches: ``[N, B, L]``)
    replaced by noise (observations, rewards, flags; actions by another action)."""
    flat_pad = pad.reshape(pad.shape[:-2] + (-1,))
    k1, k2 = jax.random.split(key)

    def noisy(x, p, k):
        if x.dtype == jnp.bool_:
            return jnp.where(p.reshape(p.shape + (1,) * (x.ndim - p.ndim)), ~x, x)
        if jnp.issubdtype(x.dtype, jnp.integer):
            return jnp.where(p.reshape(p.shape + (1,) * (x.ndim - p.ndim)), (x + 1) % 5, x)
        return jnp.where(p.reshape(p.shape + (1,) * (x.ndim - p.ndim)), 100.0 * jax.random.normal(k, x.shape), x)

    out = dict(batch)
    per_step = ("obs", "next_obs", "reward", "actions", "terminated", "truncated", "active", "logp", "behaviour_logp")
    for i, k in enumerate(k for k in per_step if k in batch):
        out[k] = jax.tree.map(lambda x, i=i: noisy(x, flat_pad, jax.random.fold_in(k1, i)), batch[k])
    out["seq"] = dict(batch["seq"], **{k: jax.tree.map(lambda x, i=i: noisy(x, pad, jax.random.fold_in(k2, i)), batch["seq"][k])
                                        for i, k in enumerate(("obs", "next_obs"))})
    return out


def test_episode_batches_start_at_an_episode_and_mark_the_steps_after_its_end_as_padding():
    """``sequences=episodes``: every sequence starts at a stored episode's first step, and with an episode ending at
    its second step (a termination written into the buffer) the steps after it get weight 0 (the flattened batch's
    padding mask is the sequences' ``within_episode``)."""
    a = algo("maac", **{"algo.sequences": "episodes"})
    _, state = filled(a, 9, rollouts=2)
    data = state.buffer.steps.data
    term = data["terminated"].at[1::5].set(True)  # 5-step episodes start at steps 0, 5, 10, ...: end at step 1 of each
    state = state._replace(buffer=state.buffer._replace(steps=state.buffer.steps._replace(data=dict(data, terminated=term))))
    batch = sample(a, state, jax.random.PRNGKey(10))
    assert np.asarray(batch["seq"]["first"])[:, 0].all()
    L = a.cfg.seq_len
    np.testing.assert_array_equal(np.asarray(batch["weight"]).reshape(-1, L), np.broadcast_to(np.arange(L) < 2, (a.cfg.batch_size, L)))


@pytest.mark.parametrize("name", ["maac", "f2a2_sac", pytest.param("matd3", marks=pytest.mark.slow),
                                  pytest.param("f2a2_td3", marks=pytest.mark.slow), pytest.param("f2a2_sac-moa", marks=pytest.mark.slow),
                                  # one batch for all: test_per_agent_sequences_of_one_draw_reduce_to_one_batch covers it by default
                                  pytest.param("f2a2_sac-one", marks=pytest.mark.slow), pytest.param("f2a2_td3-one", marks=pytest.mark.slow)])
def test_padded_steps_add_nothing_to_any_loss_or_gradient(name):
    """Sequences whose last steps are padding (an episode ended before them): noise in every padded entry
    (observations, successors, rewards, actions, flags) leaves the gradient step, its targets and every loss
    unchanged (``-moa``: F2A2-SAC with the simple teammate models, their step too); the same noise on a valid step
    changes them. The F2A2 versions draw one batch of sequences per agent (``-one``: one batch for all); agent ``i``'s
    padding is its own batch's (agent 0's batch padded after step 1, the others' after step 2)."""
    name, _, variant = name.partition("-")
    extra = {"moa": {"algo.moa": True}, "one": {"algo.batch_per_agent": False}}.get(variant, {})
    a, _, state = prepared(name, **NEEDS.get(name, {}), **extra)
    batch = sample(a, state, jax.random.PRNGKey(2))
    shape = batch["seq"]["first"].shape  # [B, L] or per-agent [N, B, L]
    B, L = shape[-2:]
    cut = jnp.full(shape[:-2] + (1, 1), 2)  # the first padded step (per-agent batches: agent 0's batch after step 1)
    cut = cut.at[0].set(1) if len(shape) == 3 else cut
    pad = jnp.broadcast_to(jnp.arange(L) >= cut, shape)  # steps cut.. are padding; step cut - 1 ends the episode
    ends = jnp.broadcast_to(jnp.arange(L) == cut - 1, shape)
    flat = lambda x: x.reshape(shape[:-2] + (B * L,))  # noqa: E731
    batch = dict(batch, weight=flat(~pad), terminated=batch["terminated"] | flat(ends))
    step = jax.jit(a.train_step)
    ref_state, ref_m = step(state, batch, jax.random.PRNGKey(3))
    got_state, got_m = step(state, perturb_padding(batch, pad, jax.random.PRNGKey(4)), jax.random.PRNGKey(3))
    moa = lambda s: s.extra.get("moa") if isinstance(s.extra, dict) else None  # noqa: E731
    for x, y in zip(jax.tree.leaves((ref_state.actor_params, ref_state.critic_params, moa(ref_state))),
                    jax.tree.leaves((got_state.actor_params, got_state.critic_params, moa(got_state)))):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    for k in ("loss/critic", "loss/actor", "loss/moa") if variant == "moa" else ("loss/critic", "loss/actor"):
        np.testing.assert_allclose(ref_m[k], got_m[k], rtol=1e-6)
    valid_too = pad | ends  # the check can fail: noise on a valid step counts
    bad_state, _ = step(state, perturb_padding(batch, valid_too, jax.random.PRNGKey(4)), jax.random.PRNGKey(3))
    # (any critic leaf: Adam's first step moves a leaf by its step size times the gradient's sign, which noise may keep)
    assert any(not np.allclose(x, y) for x, y in zip(jax.tree.leaves(ref_state.critic_params), jax.tree.leaves(bad_state.critic_params)))


@pytest.mark.parametrize("name", ["maac", pytest.param("maddpg", marks=pytest.mark.slow)])
def test_targets_read_the_next_steps_masks(name):
    """The target actors' actions at the successor are drawn with the *next* step's masks: with action 0 unavailable
    at every successor (and available at every step), it has probability 0 in MAAC's target policy and is never
    MADDPG's target action, while the policies at the steps themselves still give it mass."""
    a, _, state = prepared(name)
    batch = sample(a, state, jax.random.PRNGKey(7))
    off = tuple(av.at[..., 0].set(False) for av in batch["next_avail"])
    batch = dict(batch, next_avail=off, seq=dict(batch["seq"], next_avail=tuple(
        av.at[..., 0].set(False) for av in batch["seq"]["next_avail"])))
    if name == "maac":
        _, next_logp = jax.jit(lambda p, b: a.batch_policies(p, b, nxt=True))(state.actor_params, batch)
        _, logp = jax.jit(lambda p, b: a.batch_policies(p, b))(state.actor_params, batch)
        assert float(jnp.exp(next_logp[0][..., 0]).max()) == 0.0 and float(jnp.exp(logp[0][..., 0]).min()) > 0.0
    else:
        vecs = jax.jit(lambda s, b: a.next_action_vectors(s, b, jax.random.PRNGKey(8)))(state, batch)
        assert float(vecs[0][..., 0].max()) == 0.0 and vecs[0].shape[0] == batch["obs"][0].shape[0]


@pytest.mark.parametrize("burn_in,seq_len", [(0, 4), pytest.param(2, 3, marks=pytest.mark.slow)])
def test_no_sequence_leaks_a_hidden_state_across_an_episode_start(burn_in, seq_len):
    """Windows that cross an episode start (5-step episodes, windows of 4 steps from anywhere, or 3 after a burn-in
    of 2): changing the hidden state stored at the window's start changes the outputs before the episode start and
    none from it on (the hidden state is reset there, as while acting)."""
    extra = {"algo.seq_len": seq_len, "algo.burn_in": burn_in, "algo.learning_starts": 12} if burn_in else {}
    a, _, state = prepared("maac", **extra)
    batch = sample(a, state, jax.random.PRNGKey(6))
    seq = batch["seq"]
    src = seq["burn"] if burn_in else seq
    other = dict(src, hidden=tuple(h + 3.0 for h in src["hidden"]))
    changed = dict(seq, burn=other) if burn_in else other
    fn = jax.jit(lambda s: a.unroll(lambda h, o, av, r: a.agent_step(state.actor_params, h, o, av, r), s)[0][0])
    ref, got = np.asarray(fn(seq)), np.asarray(fn(changed))
    # steps at or after the first episode start in the window (or in its burn-in) are unaffected
    first = np.asarray(seq["first"])
    burn_first = np.asarray(seq["burn"]["first"]).any(1) if burn_in else np.zeros(first.shape[0], bool)
    after = (np.cumsum(first, 1) > 0) | burn_first[:, None]
    assert after.any() and (~after).any(), "the windows must cross episode starts and hold steps before them"
    np.testing.assert_array_equal(ref[after], got[after])
    assert not np.allclose(ref[~after], got[~after])


def test_epsilon_schedule_of_the_smax_presets():
    """epsilon 0.5 -> 0.01 linear over the first 50k env steps (the SMAX presets): 0.5, 0.255, 0.01."""
    cfg = build_config("maac", "smax/3m").algo
    eps = [float(epsilon_schedule(cfg, s)) for s in (0, 25_000, 50_000, 80_000)]
    np.testing.assert_allclose(eps, [0.5, 0.255, 0.01, 0.01], rtol=1e-6)
    assert cfg.recurrent and cfg.gru_size == 64 and cfg.sequences == "episodes"
    assert build_config("maac", "mpe/simple_spread").algo.epsilon_start == 0.0  # off elsewhere


def test_epsilon_mixture_never_draws_unavailable_actions_and_logs_the_mixture():
    """A uniform available action with probability eps, else a softmax sample: frequencies within 4 sigma of
    eps/|available| + (1 - eps) pi(a), unavailable actions never drawn (probability 0), and the log-probability
    returned is exactly the mixture's."""
    logits = jnp.array([2.0, 0.5, -1.0, 3.0])
    avail = jnp.array([True, True, True, False])
    logp = jax.nn.log_softmax(jnp.where(avail, logits, -1e10))
    n, eps = 40_000, 0.3
    keys = jax.random.split(jax.random.PRNGKey(0), n)
    random = jax.vmap(lambda k: jax.random.choice(k, 3))(jax.random.split(jax.random.PRNGKey(1), n))
    acts, lps = jax.vmap(lambda k, r: epsilon_mixture(k, logp, avail, r, eps))(keys, random)
    pi = np.exp(np.asarray(logp))
    mix = eps / 3 * np.asarray(avail) + (1 - eps) * pi
    freq = np.bincount(np.asarray(acts), minlength=4) / n
    assert freq[3] == 0.0
    np.testing.assert_allclose(freq, mix, atol=4 * np.sqrt(mix * (1 - mix) / n).max())
    np.testing.assert_allclose(np.exp(np.asarray(lps)), mix[np.asarray(acts)], rtol=1e-6)


@pytest.mark.parametrize("name,overrides,needle", [
    ("maac", {"algo.burn_in": 4}, "algo.burn_in=4 must be shorter than the window algo.seq_len=4"),
    ("maddpg", {"algo.num_envs": 1, "algo.rollout_len": 4, "algo.buffer_size": 16, "algo.batch_size": 8}, "algo.buffer_size=16 cannot hold one batch of sequences"),
    ("maac", {"algo.epsilon_start": 1.5}, "algo.epsilon_start=1.5"),
    ("matd3", {"algo.epsilon_end": -0.1}, "algo.epsilon_end=-0.1"),
    ("maac", {"algo.sequences": "episodes", "algo.burn_in": 1}, "algo.sequences=episodes needs algo.recurrent=true and algo.burn_in=0"),
    ("mamt", {}, "algo.recurrent=true is not available yet for mamt"),
    ("f2a2_sac", {"algo.moa": True, "algo.moa_model": "paper"}, "algo.moa_model=paper does not read sequences"),
    ("f2a2_td3", {"algo.moa": True, "algo.moa_model": "paper"}, "algo.moa_model=paper does not read sequences"),
])
def test_bad_recurrent_settings_are_one_line_config_errors(name, overrides, needle):
    base = {"algo.recurrent": True, "algo.seq_len": 4, "algo.learning_starts": 100}
    with pytest.raises(ConfigError) as err:
        make_algorithm(build_config(name, "mpe/simple_spread", {**base, **overrides}))
    assert needle in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_bad_recurrent_settings_exit_with_code_2_before_compiling(tmp_path, capsys):
    for name, extra in (("maac", ["algo.burn_in=16"]), ("f2a2_td3", ["algo.moa=true", "algo.moa_model=paper"])):
        assert cli.main(["train", name, "mpe/simple_spread", "algo.recurrent=true", *extra, "--out", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert "algo.burn_in=16 must be shorter" in err and "algo.moa_model=paper does not read sequences" in err


@pytest.mark.slow
@pytest.mark.parametrize("name", ["maac", "f2a2_sac", "f2a2_td3"])
def test_recurrent_resume_is_bitwise(name, tmp_path):
    """A recurrent run on whole (padded) episodes with the epsilon mixture, stopped after one chunk and resumed, ends
    bit for bit equal to an uninterrupted run (buffer with the stored hidden states and, for F2A2, behaviour vectors,
    targets, acting hidden state, consensus state)."""
    from test_contract import overrides, resume_is_bitwise

    cfg = build_config(name, "mpe/simple_spread", overrides(
        name, total_steps=48, chunk_updates=2, num_seeds=2, checkpoint_every=1, eval_every=24, eval_episodes=2,
        **{"algo.recurrent": True, "algo.gru_size": 8, "algo.seq_len": 4, "algo.sequences": "episodes",
           "algo.epsilon_start": 0.5, "algo.epsilon_end": 0.01, "algo.epsilon_anneal_end": 40}))
    _, s_full, rows_full = resume_is_bitwise(cfg, tmp_path)
    assert np.abs(np.asarray(s_full.buffer.steps.data["hidden"][0])).max() > 0  # hidden states stored
    assert any(np.isfinite(r.get("loss/actor", np.nan)) for r in rows_full)


@pytest.mark.parametrize("name,extra", [("matd3", {"env.continuous_actions": True, "algo.grad_steps": 2}),
                                        ("maddpg", {"algo.sequences": "episodes", "algo.epsilon_start": 0.5}),
                                        ("maac", {"algo.seq_len": 3, "algo.burn_in": 2, "algo.learning_starts": 12}),
                                        ("f2a2_sac", {"algo.moa": True, "algo.sequences": "episodes", "algo.epsilon_start": 0.5}),
                                        ("f2a2_ddpg", {"algo.moa": True, "algo.seq_len": 3, "algo.burn_in": 2, "algo.learning_starts": 12}),
                                        ("f2a2_td3", {"algo.grad_steps": 3, "algo.sequences": "episodes", "algo.epsilon_start": 0.5})])
def test_every_recurrent_variant_traces(name, extra):
    """Continuous recurrent actors (MATD3), whole episodes with the epsilon mixture (MADDPG, F2A2-SAC, F2A2-TD3), burn-in
    windows (MAAC, F2A2-DDPG) and the simple teammate models (F2A2): the update traces (shapes only, nothing compiled)
    to scalar losses."""
    a = algo(name, **extra)
    _, metrics = jax.eval_shape(a.update, jax.eval_shape(a.init, jax.random.PRNGKey(0)))
    assert metrics["loss/critic"].shape == () and metrics["loss/actor"].shape == ()


def test_successor_unroll_equals_the_exact_next_step_except_after_a_termination():
    """``unroll(successor=True)`` (value decomposition's learner: one step per step) gives the outputs at ``next_obs``
    bit for bit as the exact unroll (an extra step at every step) wherever they are bootstrapped: within an episode
    (``next_obs_t = obs_{t+1}``), at a truncation mid-window (the episode's final observation, not the next stored
    one) and at the window's last step; a terminated step's (never bootstrapped) is the next episode's first."""
    from trustmarl.algos.off_policy.sequences import SequenceAgents

    def step(h, obs, avail, reset):  # a toy recurrent cell: any function of (hidden, input) shows the bookkeeping
        h = jnp.tanh(0.5 * jnp.where(reset[..., None, None], 0.0, h[0]) + obs[0] * avail[0])
        return (h,), (2.0 * h + 1.0,)

    B, L = 3, 6
    rng = np.random.default_rng(0)
    term, trunc = np.zeros((B, L), bool), np.zeros((B, L), bool)
    term[1, 4] = trunc[1, 2] = True  # row 1: truncated at 2, terminated at 4
    term[2, 1] = trunc[2, 5] = True  # row 2: terminated at 1, truncated at the window's last step
    obs = rng.normal(size=(B, L + 1, 1, 2)).astype(np.float32)
    nxt = obs[:, 1:].copy()
    done = term | trunc
    nxt[done] = rng.normal(size=(int(done.sum()), 1, 2))  # an episode's final observation is not the next stored one
    first = np.concatenate([np.zeros((B, 1), bool), done[:, :-1]], 1)
    batch = {"obs": (jnp.asarray(obs[:, :L]),), "next_obs": (jnp.asarray(nxt),), "avail": (jnp.ones((B, L, 1, 2)),),
             "next_avail": (jnp.ones((B, L, 1, 2)),), "first": jnp.asarray(first), "terminated": jnp.asarray(term),
             "truncated": jnp.asarray(trunc), "hidden": (jnp.asarray(rng.normal(size=(B, L, 1, 2)), jnp.float32),)}
    a = object.__new__(SequenceAgents)
    out, exact = jax.jit(lambda b: a.unroll(step, b))(batch)
    out_s, fast = jax.jit(lambda b: a.unroll(step, b, successor=True))(batch)
    np.testing.assert_array_equal(out_s[0], out[0])
    np.testing.assert_array_equal(np.asarray(fast[0])[~term], np.asarray(exact[0])[~term])
    np.testing.assert_array_equal(np.asarray(fast[0])[1, 4], np.asarray(out[0])[1, 5])  # after a termination: the next episode's first
    assert not np.allclose(np.asarray(exact[0])[term], np.asarray(fast[0])[term])


@pytest.mark.slow  # 82 s single process at a load of ~15 (the rollout, train_step and reference compilations)
def test_one_pass_train_step_equals_the_two_pass_loss():
    """A recurrent QMIX gradient step makes one online pass (its loss's unroll also gives the double-Q argmax at o',
    reusing the unroll's next step within an episode); its TD loss equals the loss built the two-pass way: the
    online and target networks each stepped twice per step (at o_t and at o'_t, ``unroll(successor=False)``).
    5-step episodes and windows of 4 steps: the batch holds truncations and episode starts."""
    from trustmarl.algos.off_policy.qlearning import next_values

    a, _, state = prepared("qmix")
    state = state._replace(target_actor_params=jax.tree.map(lambda x: 0.9 * x, state.target_actor_params))
    batch = sample(a, state, jax.random.PRNGKey(3))
    assert bool(batch["truncated"].any()) and bool(batch["first"][:, 1:].any())
    loss = jax.jit(lambda s, b: a.train_step(s, b, jax.random.PRNGKey(4))[1]["loss/td"])(state, batch)

    def two_pass(s, b):
        step = lambda p: lambda h, o, av, r: a.q_step(p, h, o, av, r)  # noqa: E731
        q_on = a.unroll(step(s.actor_params), b)[1]  # exact: one more step at every o'_t
        q_tg = a.unroll(step(s.target_actor_params), b)[1]
        v = a.mix(s.target_critic_params, next_values(q_on, q_tg, True), b["next_state"])
        return a.losses(s.actor_params, s.critic_params, b, a.team(b["reward"]) + b["discount"] * v)[0]

    assert float(loss) == pytest.approx(float(jax.jit(two_pass)(state, batch)), rel=1e-5)
