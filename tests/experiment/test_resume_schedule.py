"""``--resume RUN total_steps=N`` continues a run: without an annealed schedule it ends bitwise equal to a run
trained for N steps from the start; with a learning rate annealed over the run's length it refuses in one
line naming ``--rescale-schedule``, and with that option the schedule is the one of an N-step run."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import _dummy
from trustmarl.experiment import cli, runner
from trustmarl.experiment.config import ConfigError, build_config
from trustmarl.experiment.logger import read_jsonl
from trustmarl.experiment.runner import load_run_state, resume_config, train

BASE = {"total_steps": 8 * 6, "chunk_updates": 3, "num_seeds": 2, "checkpoint_every": 1, "seed": 1}


@dataclasses.dataclass
class AnnealedConfig(_dummy.DummyConfig):
    name: str = "dummy_annealed"
    anneal_lr: bool = True  # the step size falls linearly to 0 over the run's updates


class Annealed(_dummy.DummyAlgorithm):
    """The dummy with its step size annealed like ``algos.agents.linear_decay``: ``lr * (1 - u / total_updates)``
    at the u-th update (u = 0, 1, ...), logged as ``diag/lr_scale``."""

    def learn(self, state, traj):
        scale = jnp.maximum(0.0, 1.0 - state.update / self.total_updates) if self.cfg.anneal_lr else 1.0
        old = state.params
        state, metrics = super().learn(state, traj)
        params = old + scale * (state.params - old)
        return state._replace(params=params), {**metrics, "diag/lr_scale": jnp.asarray(scale, jnp.float32)}


def _register():
    from trustmarl.algos import algo_names, register_algo

    if "dummy_annealed" not in algo_names():
        register_algo("dummy_annealed", AnnealedConfig, Annealed, "test: the dummy with an annealed step size",
                      family="test", action_kinds=("discrete",))


def run(cfg, out, **kw):
    return train(cfg, out, progress=False, tensorboard=False, **kw)


def leaves_equal(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True)
               for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def test_longer_total_steps_without_annealing_continues_bitwise(tmp_path):
    _register()
    cfg = build_config("dummy_annealed", "matrix/proposition1", {**BASE, "algo.anneal_lr": False})
    run(cfg, tmp_path / "short")
    run(resume_config(tmp_path / "short", {"total_steps": 8 * 10}), tmp_path / "short", resume=True)
    run(build_config("dummy_annealed", "matrix/proposition1", {**BASE, "algo.anneal_lr": False, "total_steps": 80}),
        tmp_path / "long")
    assert leaves_equal(load_run_state(tmp_path / "short")[2], load_run_state(tmp_path / "long")[2])
    assert [r["update"] for r in read_jsonl(tmp_path / "short" / "metrics.jsonl")] == list(range(1, 11))


def test_annealed_run_refuses_a_new_length_unless_rescaled(tmp_path, capsys, monkeypatch):
    _register()
    run(build_config("dummy_annealed", "matrix/proposition1", BASE), tmp_path / "run")  # 6 updates, finished
    scales = [r["diag/lr_scale"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl")]
    assert scales == pytest.approx([1 - u / 6 for u in range(6)])

    built = []
    real_build = runner.build_algorithm
    monkeypatch.setattr(runner, "build_algorithm", lambda cfg, *a: built.append(cfg) or real_build(cfg, *a))
    with pytest.raises(ConfigError, match="--rescale-schedule") as err:
        run(resume_config(tmp_path / "run", {"total_steps": 8 * 12}), tmp_path / "run", resume=True)
    assert "algo.anneal_lr=true" in str(err.value) and "update 6" in str(err.value) and "\n" not in str(err.value)
    assert not built  # refused before anything was built
    code = cli.main(["train", "--resume", str(tmp_path / "run"), "total_steps=96", "--no-progress"])
    _, stderr = capsys.readouterr()
    assert code == 2 and stderr.count("\n") == 1 and "--rescale-schedule" in stderr

    # the same length continues as it was; --rescale-schedule follows the schedule of a 12-update run
    code = cli.main(["train", "--resume", str(tmp_path / "run"), "total_steps=96", "--rescale-schedule", "--no-progress"])
    assert code == 0
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["update"] for r in rows] == list(range(1, 13))
    assert [r["diag/lr_scale"] for r in rows[6:]] == pytest.approx([1 - u / 12 for u in range(6, 12)])
    assert load_run_state(tmp_path / "run")[3]["total_updates"] == 12


def test_rescale_schedule_needs_resume(capsys):
    code = cli.main(["train", "dummy", "matrix/proposition1", "--rescale-schedule"])
    assert code == 2 and "--rescale-schedule applies to --resume" in capsys.readouterr().err
