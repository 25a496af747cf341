"""One run over several devices (run key ``devices``): the seed axis sharded over a mesh, each device running
the chunk program on its own seeds. On CPU, ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` gives four
host devices; they share this machine's cores, so these tests prove correctness, not speed. The device count
is fixed when JAX starts, hence the subprocess."""

from __future__ import annotations

import textwrap

import pytest

from trustmarl.experiment.config import build_config
from trustmarl.validation import ConfigError
from fourdevices import run_on_four_devices

SCRIPT = textwrap.dedent(r"""
    import sys
    from pathlib import Path

    import jax
    import numpy as np

    jax.config.update("jax_compilation_cache_dir", sys.argv[2])  # the same programs compile once
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

    from trustmarl.algos.base import init_seeds
    from trustmarl.experiment.backends import _Chunks, build_algorithm, init_sharded, seed_keys, seed_mesh
    from trustmarl.experiment.config import build_config
    from trustmarl.experiment.logger import read_jsonl
    from trustmarl.experiment.runner import load_run_state, resume_config, train
    from fourdevices import train_on_one_and_four

    out = Path(sys.argv[1])
    assert jax.device_count() == 4
    ov = {"num_seeds": 4, "total_steps": 48, "chunk_updates": 2, "eval_every": 24, "eval_episodes": 2,
          "algo.num_envs": 2, "algo.rollout_len": 4, "algo.hidden_sizes": [8], "algo.epochs": 1,
          "algo.minibatches": 1, "env.n_agents": 2, "env.max_cycles": 5}
    bits = lambda t: [np.asarray(x).tobytes() for x in jax.tree.leaves(t)]
    close = lambda a, b: all(np.allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-5, equal_nan=True)
                             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

    # 1. sharded init equals one-device init bit for bit; each device's program on its seed equals that seed
    # trained alone to float tolerance (the partitioned module is compiled and fused on its own)
    cfg = build_config("mappo", "mpe/simple_spread", {**ov, "devices": 4})
    algo = build_algorithm(cfg)
    mesh = seed_mesh(4)
    state = init_sharded(algo, seed_keys(cfg), mesh)
    single = init_seeds(algo, seed_keys(cfg))
    assert bits(state) == bits(single), "sharded init differs from one-device init"
    assert all(x.sharding.spec == jax.sharding.PartitionSpec("seeds") for x in jax.tree.leaves(state))
    state, m = _Chunks(algo, 2, mesh=mesh)(state, 2)
    assert all(len(x.sharding.device_set) == 4 and x.sharding.spec == jax.sharding.PartitionSpec("seeds")
               for x in jax.tree.leaves(state))
    one = _Chunks(algo, 2)
    for i in range(4):
        s_i, m_i = one(jax.tree.map(lambda x: x[i:i + 1], single), 2)
        assert close(s_i, jax.tree.map(lambda x: x[i:i + 1], state)), f"seed {i}: state differs"
        assert close(m_i, jax.tree.map(lambda x: x[i:i + 1], m)), f"seed {i}: metrics differ"
    assert not close(jax.tree.map(lambda x: x[:1], state), jax.tree.map(lambda x: x[1:2], state))  # seeds differ

    if sys.argv[3] == "direct":
        print("OK")
        sys.exit(0)

    # 2. through the runner: 4 devices equal 1 device to float tolerance (the 1-device program vmaps 4 seeds,
    # XLA:CPU may pick other kernels for a batch of 4 than of 1), metrics and evaluations included; then
    # 3. resume 4 -> 1 and 1 -> 4: checkpoints hold host arrays; the resumed run continues on the other count
    s1, s4, r1, r4 = train_on_one_and_four(out, "mappo", "mpe/simple_spread", ov, close)
    assert [r["env_steps"] for r in r1] == [r["env_steps"] for r in r4]
    assert np.allclose([r.get("eval/return", 0) for r in r1], [r.get("eval/return", 0) for r in r4], atol=1e-4)
    print("OK")
""")


def _run(tmp_path, part: str):
    run_on_four_devices(SCRIPT, tmp_path, part)


def test_seeds_sharded_over_four_host_devices(tmp_path):
    """Sharded init, leaf shardings, and each device's program on its seed against that seed alone."""
    _run(tmp_path, "direct")


@pytest.mark.slow  # four short training runs and two resumes on 4 host devices
def test_runs_on_four_devices_equal_one_and_resume_across_counts(tmp_path):
    _run(tmp_path, "runner")


@pytest.mark.parametrize("devices,message", [
    (0, "devices=0 must be an integer >= 1 dividing num_seeds, or auto"),
    ("two", "devices='two' must be an integer >= 1"),
    (3, "devices=3 must divide num_seeds=4"),
])
def test_bad_device_keys_are_one_line(devices, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_config("mappo", "mpe/simple_spread", {"num_seeds": 4, "devices": devices})


def test_more_devices_than_available_is_refused_before_anything_is_built(tmp_path):
    from trustmarl.experiment.runner import train

    cfg = build_config("mappo", "mpe/simple_spread", {"num_seeds": 64, "devices": 64})
    with pytest.raises(ConfigError, match=r"devices=64: this machine has \d+ cpu device\(s\); use devices=auto"):
        train(cfg, tmp_path / "run", progress=False, tensorboard=False)
    assert not (tmp_path / "run").exists()


def test_auto_takes_the_most_devices_dividing_num_seeds():
    from trustmarl.experiment.backends import resolve_devices

    assert resolve_devices(build_config("mappo", "mpe/simple_spread", {"num_seeds": 3, "devices": "auto"})) == 1
