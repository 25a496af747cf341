"""Off-policy runs sized to the run: the buffer holds what the run stores (unless set), checkpoints hold
its filled part in a file of their own that only resuming reads, and a resume of another length refits it."""

from __future__ import annotations

import shutil

import jax
import numpy as np
import pytest
from jaxcache import compilation_cache

from trustmarl import replay
from trustmarl.algos import make_algorithm
from trustmarl.experiment.backends import build_algorithm
from trustmarl.experiment.checkpoint import CheckpointError, read_meta
from trustmarl.experiment.config import build_config
from trustmarl.experiment.runner import evaluate_run, load_run_state, train

TINY = {"algo.hidden_sizes": [8], "algo.num_envs": 2, "algo.rollout_len": 4, "algo.batch_size": 8,
        "algo.learning_starts": 8, "algo.grad_steps": 1, "env.n_agents": 2, "env.max_cycles": 5,
        "chunk_updates": 2, "checkpoint_every": 1, "eval_every": 0}
KW = dict(progress=False, tensorboard=False)


def test_buffer_is_sized_to_the_run_unless_set():
    cfg = build_config("maddpg", "mpe/simple_spread", {"total_steps": 30_000})
    assert cfg.algo.buffer_size == 0
    a = make_algorithm(cfg, total_updates=30_000 // 96)
    assert a.capacity * a.num_envs == (30_000 // 96) * 96  # every transition the run stores, no more
    assert make_algorithm(cfg, total_updates=10**6).capacity == 1_000_000 // 12  # at most the papers' 1e6
    explicit = build_config("maddpg", "mpe/simple_spread", {"total_steps": 30_000, "algo.buffer_size": 1_000_000})
    assert make_algorithm(explicit, total_updates=312).capacity == 1_000_000 // 12  # set explicitly: as given


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A MADDPG run of 6 updates (auto-sized buffer: 24 steps per copy) stopped after its first chunk."""
    root = tmp_path_factory.mktemp("offpolicy_ckpt")
    with compilation_cache(root / "cache"):
        cfg = build_config("maddpg", "mpe/simple_spread", {**TINY, "total_steps": 48})
        train(cfg, root / "run", stop_after_chunks=1, **KW)
        yield root


def test_checkpoint_holds_the_filled_part_beside_the_policy(stopped):
    ckpt = stopped / "run" / "checkpoints"
    assert sorted(p.name for p in ckpt.glob("*.npz")) == ["last.npz", "resume_0000002.npz"]  # older ones removed
    core = read_meta(ckpt / "last.npz")
    assert not any(".buffer" in leaf["path"] for leaf in core["leaves"])  # the policy file has no buffer
    bulk = read_meta(ckpt / core["counters"]["resume_file"])
    shapes = {leaf["path"]: leaf["shape"] for leaf in bulk["leaves"]}
    obs = [s for p, s in shapes.items() if "'obs'" in p][0]
    assert obs[:3] == [1, 8, 2]  # 1 seed, the 8 steps stored per copy (of 24), 2 copies
    state = load_run_state(stopped / "run")[2]
    assert jax.tree.leaves(state.buffer.steps.data)[0].shape[1] == 24 and int(state.buffer.steps.size[0]) == 8
    assert load_run_state(stopped / "run", policy_only=True)[2].buffer is None


def test_eval_reads_the_policy_alone_and_resume_needs_the_buffer(stopped, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(stopped / "run", run)
    (run / "checkpoints" / "resume_0000002.npz").unlink()
    res = evaluate_run(run, episodes=2)  # never opens the buffer file
    assert np.isfinite(res["mean_return"])
    with pytest.raises(CheckpointError, match="resume_0000002.npz"):
        train(None, run, resume=True, **KW)


def test_resume_with_a_longer_run_grows_the_buffer(stopped, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(stopped / "run", run)
    with compilation_cache(stopped / "cache"):
        cfg = build_config("maddpg", "mpe/simple_spread", {**TINY, "total_steps": 64})
        summary = train(cfg, run, resume=True, **KW)
    assert summary["status"] == "completed" and summary["updates"] == 8
    state = load_run_state(run)[2]
    assert jax.tree.leaves(state.buffer.steps.data)[0].shape[1] == 32 and int(state.buffer.steps.size[0]) == 32
    first = np.asarray(state.buffer.steps.data["obs"][0])[0, :8]
    assert np.abs(first).sum() > 0  # the steps stored before the resume are kept, in order


def test_progress_fields_come_from_the_engine():
    """The off-policy engine names its own progress fields (the runner knows none of them)."""
    a = make_algorithm(build_config("maddpg", "mpe/simple_spread", {"total_steps": 960}), total_updates=10)
    assert a.progress_postfix({"progress/warmup": 1.0, "progress/buffer": 0.25, "diag/learning": 0.0}) == {
        "warm-up": "on", "buffer": "25%", "learning": "waiting"}
    assert a.progress_postfix({"progress/warmup": 0.0, "progress/buffer": 1.0, "diag/learning": 1.0}) == {"buffer": "100%"}


def test_deterministic_evaluation_is_on_by_default_for_the_family():
    """The off-policy papers report the deterministic policy's return over 10 test episodes: the family
    evaluates it every 10k env steps unless told otherwise; other families keep it off."""
    for algo in ("maddpg", "matd3", "maac"):
        cfg = build_config(algo, "mpe/simple_spread", {})
        assert (cfg.eval_every, cfg.eval_episodes) == (10_000, 10), algo
    assert build_config("maddpg", "mpe/simple_spread", {"eval_every": 0}).eval_every == 0  # the user wins
    assert build_config("mappo", "mpe/simple_spread", {}).eval_every == 0


def test_engine_batches_are_those_of_a_buffer_holding_every_field_per_step():
    """The buffer stores each observation once (5-step episodes: the sparse layout) and actions as int8,
    yet a batch equals, bit for bit and dtype for dtype, the one drawn with the same key from a buffer
    holding every transition field per step (the layout before)."""
    cfg = build_config("maddpg", "mpe/simple_spread", {**{k: v for k, v in TINY.items() if k.startswith(("algo.", "env."))},
                                                       "algo.buffer_size": 24})
    a = make_algorithm(cfg, total_updates=10)
    state = a.init(jax.random.PRNGKey(0))  # eager: bitwise jax.jit(a.init)'s state, without its compile
    full = replay.init(a.example_transition(state.last), a.capacity, a.num_envs)
    buf = a.init_buffer(a.example_transition(state.last))
    assert buf.steps.data["actions"][0].dtype == np.int8 and "next" not in buf.steps.data  # sparse, compact
    rollout, sample = jax.jit(a.rollout), jax.jit(a.draw, static_argnums=2)
    for i in range(5):  # 5 x 4 steps into 12 per copy: wraps around
        state, traj, _ = rollout(state)
        full = replay.insert(full, traj)
        step, nxt = a.split_transition(traj)
        buf = replay.insert_transitions(buf, step, nxt, traj["terminated"] | traj["truncated"])
        key = jax.random.PRNGKey(i)
        want, got = replay.sample(full, key, 32), sample(buf, key, 32)
        assert jax.tree.structure(want) == jax.tree.structure(got)
        for x, y in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
            assert x.dtype == y.dtype and np.asarray(x).tobytes() == np.asarray(y).tobytes()
    assert replay.transitions_nbytes(buf) < 0.8 * replay.nbytes(full)  # here 1 final per 3 steps; 1 per 25 on MPE


def test_integer_observations_are_stored_in_the_dtype_the_env_declares():
    """SISL pursuit's observations are counts 0..30 (its preset declares uint8): the buffer stores them as
    uint8 (a quarter of float32) and batches give them back as float32, exactly."""
    pytest.importorskip("pettingzoo")
    from trustmarl.rollout.host import placeholder_timestep

    cfg = build_config("maddpg", "sisl/pursuit", {"algo.num_envs": 2, "algo.rollout_len": 4, "algo.buffer_size": 16,
                                                  "algo.hidden_sizes": [8], "env.n_pursuers": 2, "env.n_evaders": 2})
    a = build_algorithm(cfg)  # a host env: its description from one copy
    assert a.env.obs_storage == "uint8"
    last = placeholder_timestep(a.env, (a.num_envs,))
    buf = a.init_buffer(a.example_transition(last))
    assert buf.steps.data["obs"][0].dtype == np.uint8 and buf.steps.data["next"]["obs"][0].dtype == np.uint8
    counts = np.random.default_rng(0).integers(0, 31, (4, 2) + last.obs[0].shape[1:]).astype(np.float32)
    traj = {**jax.tree.map(lambda x: np.zeros((4, 2) + np.shape(x), np.asarray(x).dtype), a.example_transition(last)),
            "obs": (counts,), "next_obs": (counts + 1,)}
    step, nxt = a.split_transition(traj)
    buf = replay.insert_transitions(buf, step, nxt, np.zeros((4, 2), bool))
    batch = a.draw(buf, jax.random.PRNGKey(0), 64)
    assert batch["obs"][0].dtype == np.float32 and set(np.unique(batch["obs"][0])) <= set(np.unique(counts))
    np.testing.assert_array_equal(batch["next_obs"][0], batch["obs"][0] + 1)


def test_policy_of_a_single_file_checkpoint_loads_whatever_its_buffer_layout(stopped, tmp_path):
    """A checkpoint written before the buffer had a file of its own (everything in last.npz, an older buffer
    layout) still gives its policy to eval/render/load_policy; resuming it is refused in one line."""
    from trustmarl.experiment.checkpoint import save_checkpoint

    run = tmp_path / "run"
    shutil.copytree(stopped / "run", run)
    state, counters = load_run_state(stopped / "run")[2:]
    legacy = state._replace(buffer={"data": {"next_obs": np.zeros((1, 3)), "obs": np.ones((1, 3))}, "pos": np.zeros(1)})
    for f in (run / "checkpoints").glob("*.npz"):
        f.unlink()
    save_checkpoint(run / "checkpoints" / "last.npz", legacy, {k: v for k, v in counters.items() if k != "resume_file"})
    policy_state = load_run_state(run, policy_only=True)[2]
    assert policy_state.buffer is None
    pairs = zip(jax.tree.leaves(policy_state.actor_params), jax.tree.leaves(state.actor_params))
    assert all(np.array_equal(a, b) for a, b in pairs)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_run_state(run)
