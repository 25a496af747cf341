"""One seed's env copies split into blocks (run key ``env_blocks``), the blocks sharded over devices.

Each block rolls out its own env copies and samples its own minibatches; gradients, value-normaliser and
advantage statistics and episode counts are reduced over all blocks, so the parameters stay equal in every
block. On one device the blocks are a ``vmap``; on D devices a ``shard_map`` over the mesh axis ``envs`` runs
``env_blocks / D`` of them on each device: the same program. The device count is fixed when JAX starts, hence
the subprocess (``XLA_FLAGS=--xla_force_host_platform_device_count=4``: four host devices sharing this
machine's cores, so correctness, not speed)."""

from __future__ import annotations

import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trustmarl.experiment import cli, runner
from fourdevices import run_on_four_devices

ENV = "matrix/proposition1"  # a one-step matrix game: every step ends an episode, and the programs compile quickly
OV = {"num_seeds": 2, "algo.num_envs": 4, "algo.rollout_len": 4, "algo.hidden_sizes": [8], "algo.epochs": 1,
      "algo.minibatches": 1}


OFF = {"algo.hidden_sizes": [8], "algo.num_envs": 4, "algo.rollout_len": 4, "algo.batch_size": 8, "algo.learning_starts": 8,
       "algo.grad_steps": 2, "algo.reward_norm": True, "env.n_agents": 2, "env.max_cycles": 5}


@pytest.mark.parametrize("name, env, ov, episodes", [
    ("mappo", ENV, OV, 16),  # one-step episodes: every step of the 4 blocks ends one
    pytest.param("happo", ENV, OV, 16, marks=pytest.mark.slow),  # 30 s more
    # 4 copies x 4 steps stored >= learning_starts=8 only counting all blocks; MPE episodes of 5 steps
    pytest.param("maddpg", "mpe/simple_spread", OFF, 0, marks=pytest.mark.slow),
    pytest.param("hatrpo", ENV, {k: v for k, v in OV.items() if k not in ("algo.epochs", "algo.minibatches")}, 16,
                 marks=pytest.mark.slow),
    pytest.param("coma", ENV, OV, 16, marks=pytest.mark.slow),
    # QMIX at its preset: each block samples its own part of the buffer; the TD loss over all blocks' samples
    pytest.param("qmix", "mpe/simple_spread", {**OFF, "algo.reward_norm": False, "algo.learning_starts": 0}, 0,
                 marks=pytest.mark.slow),
    pytest.param("mamt", "mpe/simple_spread", {**OFF, "algo.critic_hidden": 8, "algo.attention_heads": 2, "algo.trd_hidden": 8}, 0,
                 marks=pytest.mark.slow),
])
def test_blocks_keep_parameters_and_statistics_equal(name, env, ov, episodes):
    """One update of 4 blocks of one env copy each, vmapped by hand: every leaf without an env axis (parameters,
    optimiser states, value normaliser, counters, key) is the same in all blocks, the parameters moved, and the
    episode count is that of all blocks. Fails when a reduction over env copies skips the block axis."""
    from trustmarl.algos.base import ENV_BLOCK_AXIS
    from trustmarl.experiment.backends import block_algorithm, build_algorithm, env_axes
    from trustmarl.experiment.config import build_config

    cfg = build_config(name, env, {**ov, "env_blocks": 4})
    algo = build_algorithm(cfg)
    axes = env_axes(algo, 4)
    state = jax.jit(algo.init)(jax.random.PRNGKey(0))
    split = jax.tree.map(lambda x, a: x if a < 0 else jnp.moveaxis(x.reshape(x.shape[:a] + (4, 1) + x.shape[a + 1:]), a, 0),
                         state, axes)
    in_axes = jax.tree.map(lambda a: None if a < 0 else 0, axes)
    part = block_algorithm(algo, 4)
    out, m = jax.jit(jax.vmap(part.update, in_axes=(in_axes,), axis_name=ENV_BLOCK_AXIS))(split)
    assert len([a for a in jax.tree.leaves(axes) if a >= 0]) > 0
    for x, a, x0 in zip(jax.tree.leaves(out), jax.tree.leaves(axes), jax.tree.leaves(state)):
        x = np.asarray(x)
        if a < 0:  # bitwise: all-reduced values are the same in every block
            assert all(np.array_equal(x[0], x[b], equal_nan=True) for b in range(1, 4)), (x0.shape, x)
    params = np.concatenate([np.asarray(p).ravel() for p in jax.tree.leaves(jax.tree.map(lambda x: x[0], out.actor_params))])
    assert not np.allclose(params, np.concatenate([np.asarray(p).ravel() for p in jax.tree.leaves(state.actor_params)]))
    assert int(m["env_steps"][0]) == 4 * 4 and int(m["episodes"][0]) == episodes  # the episodes of all blocks


def test_block_keys_differ_per_block_and_are_unchanged_outside():
    from trustmarl.algos.base import ENV_BLOCK_AXIS, block_key

    key = jax.random.PRNGKey(3)
    keys = np.asarray(jax.vmap(lambda _: block_key(key), axis_name=ENV_BLOCK_AXIS)(jnp.arange(4)))
    assert len({k.tobytes() for k in keys}) == 4
    assert np.array_equal(keys[2], np.asarray(jax.random.fold_in(key, 2)))
    assert np.array_equal(np.asarray(block_key(key)), np.asarray(key))


SCRIPT = textwrap.dedent(r"""
    import sys
    from pathlib import Path

    import jax
    import numpy as np

    jax.config.update("jax_compilation_cache_dir", sys.argv[2])  # the same programs compile once
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

    from trustmarl.algos.base import init_seeds
    from trustmarl.experiment.backends import _Chunks, build_algorithm, env_axes, env_mesh, init_blocks, seed_keys, shard_blocks
    from trustmarl.experiment.config import build_config
    from trustmarl.experiment.logger import read_jsonl
    from trustmarl.experiment.runner import load_run_state, resume_config, train
    from fourdevices import train_on_one_and_four

    P = jax.sharding.PartitionSpec
    out = Path(sys.argv[1])
    assert jax.device_count() == 4
    env = "matrix/proposition1"  # one-step episodes; small programs
    ov = {"num_seeds": 2, "total_steps": 64, "chunk_updates": 2, "algo.num_envs": 4, "algo.rollout_len": 4,
          "algo.hidden_sizes": [8], "algo.epochs": 1, "algo.minibatches": 1, "env_blocks": 4, "eval_every": 32,
          "eval_episodes": 2}
    close = lambda a, b: all(np.allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6, equal_nan=True)
                             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    host = lambda t: jax.tree.map(np.asarray, t)

    if sys.argv[3] in ("direct", "maddpg"):
        name, episodes = "mappo", 2 * 2 * 16
        if sys.argv[3] == "maddpg":  # MPE episodes of 5 steps: one per copy in 8 steps; 16 stored before learning
            name, env, episodes = "maddpg", "mpe/simple_spread", 2 * 4
            ov = {**ov, "algo.batch_size": 8, "algo.learning_starts": 16, "algo.grad_steps": 1, "env.n_agents": 2,
                  "env.max_cycles": 5}
            del ov["algo.epochs"], ov["algo.minibatches"]
        cfg = build_config(name, env, {**ov, "devices": 4})
        algo = build_algorithm(cfg)
        axes = env_axes(algo, 4)
        mesh = env_mesh(4)
        state0 = host(init_seeds(algo, seed_keys(cfg)))
        four, one = _Chunks(algo, 2, mesh=mesh, blocks=4), _Chunks(algo, 2, blocks=4)
        # (b) env leaves split over the 4 devices on their env axis (after the seed axis), the rest replicated;
        # each device initialises its part: the one-device initial state bit for bit
        s4 = init_blocks(algo, seed_keys(cfg), mesh, axes)
        assert [x.tobytes() for x in jax.tree.leaves(host(s4))] == [x.tobytes() for x in jax.tree.leaves(state0)]
        for x, a in zip(jax.tree.leaves(s4), jax.tree.leaves(axes)):
            assert x.sharding.spec == (P() if a < 0 else P(*([None] * (a + 1)), "envs")), (x.shape, a, x.sharding)
            assert len(x.sharding.device_set) == 4
        s4, m4 = four(s4, 2)
        for x, a in zip(jax.tree.leaves(s4), jax.tree.leaves(axes)):
            assert x.sharding.spec == (P() if a < 0 else P(*([None] * (a + 1)), "envs")), (x.shape, a, x.sharding)
            if a < 0:  # replicated leaves: each device holds its own copy, all equal (all-reduced gradients)
                copies = [np.asarray(sh.data) for sh in x.addressable_shards]
                assert all(np.array_equal(copies[0], c, equal_nan=True) for c in copies[1:]), ("devices differ", x.shape)
        # (a) 4 devices equal the 4 blocks vmapped on one device to float tolerance (XLA compiles and fuses the
        # per-device program for 1 block, the one-device program for a batch of 4: other kernels, other rounding)
        s1, m1 = one(state0, 2)
        assert close(s4, s1), "4 devices differ from 4 vmapped blocks on one device"
        assert close(m4, m1), "metrics differ"
        assert np.asarray(m1["env_steps"]).tolist() == [[16, 32]] * 2 and int(np.asarray(m1["episodes"]).sum()) == episodes
        # (c) continuing on the other device count from host arrays: 4 -> 1 and 1 -> 4, against 2 chunks on each
        a4, _ = four(shard_blocks(host(s4), mesh, axes), 2)
        a1, _ = one(host(s1), 2)
        b1, _ = one(host(s4), 2)
        b4, _ = four(shard_blocks(host(s1), mesh, axes), 2)
        assert close(a4, a1) and close(b1, a1) and close(b4, a4), "a continuation on another device count differs"
        print("OK")
        sys.exit(0)

    # (c) through the runner: a run stopped on 4 devices resumes on 1 and the other way round
    s1, s4, r1, r4 = train_on_one_and_four(out, "mappo", env, ov, close)
    assert np.allclose([r["episode_return"] for r in r1 if "episode_return" in r],
                       [r["episode_return"] for r in r4 if "episode_return" in r], atol=1e-5, equal_nan=True)
    assert np.allclose([r.get("eval/return", 0) for r in r1], [r.get("eval/return", 0) for r in r4], atol=1e-4)
    assert any("eval/return" in r for r in r4)  # evaluation runs on the state sharded over the envs mesh
    print("OK")
""")


def _run(tmp_path, part: str):
    run_on_four_devices(SCRIPT, tmp_path, part)


def test_env_blocks_on_four_devices_equal_one_and_continue_across_counts(tmp_path):
    """Shardings, 4 devices against 4 vmapped blocks on one, and continuing 4 -> 1 and 1 -> 4 from host arrays."""
    _run(tmp_path, "direct")


@pytest.mark.slow  # the off-policy engine: as above, with MADDPG (replay buffers split on their env axis)
def test_maddpg_env_blocks_on_four_devices_equal_one(tmp_path):
    _run(tmp_path, "maddpg")


@pytest.mark.slow  # four short training runs and two resumes on 4 host devices
def test_env_block_runs_resume_across_device_counts(tmp_path):
    _run(tmp_path, "runner")


@pytest.mark.parametrize("argv, needles", [
    (["env_blocks=3"], ["env_blocks=3 must divide algo.num_envs=4"]),
    (["env_blocks=0"], ["env_blocks=0 must be an integer >= 1"]),
    (["env_blocks=4", "devices=3"], ["devices=3 must divide env_blocks=4"]),
    (["env_blocks=64", "devices=64", "algo.num_envs=64"], ["devices=64: this machine has", "dividing env_blocks=64"]),
    (["env_blocks=4", "algo.minibatches=8"], ["env_blocks=4: algo.minibatches=8 must divide each block's samples",
                                              "=4"]),
    (["env_blocks=2", "--algo", "matrl"], ["env_blocks=2: matrl does not split its env copies into blocks"]),
    # a descendant of an algorithm with env blocks (MAAC) refuses them until it declares them itself
    (["env_blocks=2", "--algo", "f2a2_sac"], ["env_blocks=2: f2a2_sac does not split its env copies into blocks"]),
    (["env_blocks=2", "--algo", "maac", "algo.recurrent=true"], ["env_blocks=2: maac with recurrent=true does not split"]),
    (["env_blocks=4", "--algo", "maddpg", "algo.batch_size=6"], ["env_blocks=4 must divide algo.batch_size=6"]),
    (["env_blocks=2", "--env", "sisl/pursuit"], ["env_blocks=2: host environments (sisl/pursuit)", "env_blocks=1"]),
])
def test_bad_env_block_keys_are_one_line_and_exit_2(capsys, tmp_path, argv, needles):
    algo, env = "mappo", "mpe/simple_spread"
    keys = []
    it = iter(argv)
    for a in it:
        if a == "--algo":
            algo = next(it)
        elif a == "--env":
            env = next(it)
        else:
            keys.append(a)
    base = [] if env != "mpe/simple_spread" else ["algo.num_envs=4", "algo.rollout_len=4"]
    code = cli.main(["train", algo, env, *base, *keys, "--out", str(tmp_path / "run")])
    out, err = capsys.readouterr()
    assert code == 2 and err.startswith("trustmarl: error: ") and err.count("\n") == 1, err
    for n in needles:
        assert n in err, (n, err)
    assert not (tmp_path / "run").exists()


def test_env_blocks_is_not_resumable_but_devices_is():
    assert "env_blocks" not in runner.RESUMABLE_KEYS and "devices" in runner.RESUMABLE_KEYS


@pytest.mark.parametrize("masked", [False, True])
def test_normalisers_over_blocks_equal_the_whole_batch(masked):
    """Value-normaliser and advantage moments summed over blocks (``total``) equal those of the whole batch."""
    from trustmarl.trust.normalize import normalize_advantages, value_norm_init, value_norm_update

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(2.0, 3.0, (4, 8, 3)), jnp.float32)  # [T, E, K]
    mask = jnp.asarray(rng.random((4, 8, 3)) > 0.3, jnp.float32) if masked else None
    total = lambda a: jax.lax.psum(jnp.sum(a), "b")  # noqa: E731
    halves = lambda a: jnp.moveaxis(a.reshape(4, 2, 4, 3), 1, 0)  # noqa: E731  two blocks of 4 env copies
    whole = lambda a: jnp.moveaxis(a, 0, 1).reshape(4, 8, 3)  # noqa: E731
    m = None if mask is None else halves(mask)
    adv = jax.vmap(lambda a, k: normalize_advantages(a, k, total=total), axis_name="b")(halves(x), m)
    np.testing.assert_allclose(whole(adv), normalize_advantages(x, mask), rtol=1e-5, atol=1e-6)
    vn = jax.vmap(lambda a, k: value_norm_update(value_norm_init(0.9), a, k, total=total), axis_name="b")(halves(x), m)
    ref = value_norm_update(value_norm_init(0.9), x, mask)
    for got, want in zip(vn, ref):
        np.testing.assert_allclose(got[0], want, rtol=1e-5)
        np.testing.assert_allclose(got[1], want, rtol=1e-5)


def test_replay_reward_statistics_over_blocks_equal_the_whole_buffer():
    """``field_mean_std`` with ``combine`` (a psum over blocks) equals the statistics of the whole buffer."""
    from trustmarl import replay

    rng = np.random.default_rng(1)
    buf = replay.init({"r": jnp.zeros((3,))}, 6, 8)  # capacity 6, 8 env copies, 3 agents
    for t in range(4):  # 4 of 6 slots filled
        buf = replay.insert(buf, {"r": jnp.asarray(rng.normal(1.0, 2.0, (1, 8, 3)), jnp.float32)})
    ref = replay.field_mean_std(buf, buf.data["r"])
    halves = buf._replace(data=jax.tree.map(lambda d: jnp.moveaxis(d.reshape(6, 2, 4, 3), 1, 0), buf.data))
    got = jax.vmap(lambda d: replay.field_mean_std(buf, d, combine=lambda x: jax.lax.psum(x, "b")), axis_name="b")(
        halves.data["r"])
    for g, w in zip(got, ref):
        np.testing.assert_allclose(g[0], w, rtol=1e-5)
        np.testing.assert_allclose(g[1], w, rtol=1e-5)
    assert not np.allclose(replay.field_mean_std(buf, halves.data["r"][0])[0], ref[0])  # one block alone differs
