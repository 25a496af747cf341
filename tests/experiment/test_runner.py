"""Training runs with the dummy algorithm: files, metrics, summary, determinism, exact resume,
directory safety, divergence handling and evaluation; plus one short real MAPPO run."""

from __future__ import annotations

import ast
import csv
import json
import math
import re
import shutil
from pathlib import Path

import _dummy
import jax
import numpy as np
import pytest
import yaml

from trustmarl.experiment import runner
from trustmarl.experiment.checkpoint import load_checkpoint
from trustmarl.experiment.config import ConfigError
from trustmarl.experiment.logger import MetricsLogger, read_jsonl
from trustmarl.experiment.backends import make_backend
from trustmarl.experiment.runner import RunDirError, evaluate_run, load_run_state, resume_config, train

# 20 updates of 8 steps; chunks of 3 (the last one has 2: the remainder path); 2 seeds.
BASE = {"total_steps": 160, "chunk_updates": 3, "num_seeds": 2, "checkpoint_every": 2, "seed": 3}
N_UPDATES = 20


def cfg_of(**kw):
    return _dummy.config(**{**BASE, **kw})


def run(cfg, out, **kw):
    return train(cfg, out, progress=kw.pop("progress", False), tensorboard=kw.pop("tensorboard", False), **kw)


def without_wall(rows):
    return [{k: v for k, v in r.items() if k != "wall_time"} for r in rows]


def same_rows(a, b) -> bool:
    """Equal rows (NaN equal to NaN), ignoring wall time."""
    a, b = without_wall(a), without_wall(b)
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(x[k] == y[k] or (_isnan(x[k]) and _isnan(y[k])) for k in x) for x, y in zip(a, b)
    )


def _isnan(v) -> bool:
    return isinstance(v, float) and math.isnan(v)


def final_state(run_dir: Path):
    _, _, state, counters = load_run_state(run_dir)
    return state, counters


def bitwise_equal(x, y) -> bool:
    lx, ly = jax.tree_util.tree_leaves(x), jax.tree_util.tree_leaves(y)
    return len(lx) == len(ly) and all(np.asarray(a).tobytes() == np.asarray(b).tobytes() for a, b in zip(lx, ly))


@pytest.fixture(scope="module")
def run_a(tmp_path_factory):
    """One uninterrupted reference run (with TensorBoard)."""
    out = tmp_path_factory.mktemp("runs") / "a"
    summary = run(cfg_of(), out, tensorboard=True)
    return out, summary


@pytest.fixture(scope="module")
def reference(run_a):
    """Per-seed metrics and final parameters from calling ``update`` one at a time (no vmap, no scan)."""
    cfg = cfg_of()
    algo = _dummy.DummyAlgorithm(_env(), cfg.algo)
    update = jax.jit(algo.update)
    metrics, params = [], []
    for key in jax.random.split(jax.random.PRNGKey(cfg.seed), cfg.num_seeds):
        state, seed_metrics = algo.init(key), []
        for _ in range(N_UPDATES):
            state, m = update(state)
            seed_metrics.append(jax.device_get(m))
        metrics.append(seed_metrics)
        params.append(np.asarray(state.params))
    return metrics, np.stack(params)


def _env():
    from trustmarl.envs import make

    return make("matrix/proposition1")


# ---- files and metrics ---------------------------------------------------------------------------

def test_run_directory_layout(run_a):
    out, summary = run_a
    assert (out / "config.yaml").is_file() and (out / "summary.json").is_file()
    assert (out / "checkpoints" / "last.npz").is_file() and (out / "checkpoints" / "last.json").is_file()
    events = list((out / "tb").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 100
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved == cfg_of().to_dict()
    assert runner.load_run_config(out).to_dict() == cfg_of().to_dict()
    assert json.loads((out / "summary.json").read_text())["final_return"] == pytest.approx(summary["final_return"])


def read_tensorboard(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Scalars of a TensorBoard event file (TFRecord framing: length, crc, event, crc)."""
    from tensorboardX.proto import event_pb2

    data, pos, out = path.read_bytes(), 0, {}
    while pos < len(data):
        (n,) = np.frombuffer(data[pos:pos + 8], dtype="<u8")
        event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + int(n)])
        pos += 12 + int(n) + 4
        for v in event.summary.value:
            out.setdefault(v.tag, []).append((event.step, v.simple_value))
    return out


def test_tensorboard_has_aggregate_scalars(run_a):
    out, _ = run_a
    (events,) = (out / "tb").glob("events.out.tfevents.*")
    scalars = read_tensorboard(events)
    rows = read_jsonl(out / "metrics.jsonl")
    assert set(scalars) == {"episode_return", "episode_return_sum", "episode_length", "episodes", "loss/actor", "loss/critic"}
    assert [s for s, _ in scalars["loss/actor"]] == [r["env_steps"] for r in rows]
    assert [v for _, v in scalars["loss/actor"]] == pytest.approx([r["loss/actor"] for r in rows], rel=1e-6)
    finite = [r for r in rows if not math.isnan(r["episode_return"])]
    assert [s for s, _ in scalars["episode_return"]] == [r["env_steps"] for r in finite]


def test_metrics_rows_match_per_seed_reference(run_a, reference):
    out, _ = run_a
    ref, _ = reference
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["update"] for r in rows] == list(range(1, N_UPDATES + 1))
    assert [r["env_steps"] for r in rows] == [8 * u for u in range(1, N_UPDATES + 1)]
    for t, row in enumerate(rows):
        per_seed = [float(ref[k][t]["episode_return"]) for k in range(2)]
        ended = (t + 1) % 4 != 3
        assert math.isnan(row["episode_return"]) == (not ended)
        for k in range(2):
            assert row[f"episode_return/seed_{k}"] == pytest.approx(per_seed[k], rel=1e-5, nan_ok=True)
        if ended:
            assert row["episode_return"] == pytest.approx(np.mean(per_seed), rel=1e-5)
        assert row["loss/actor"] == pytest.approx(np.mean([ref[k][t]["loss/actor"] for k in range(2)]), rel=1e-5)
        assert row["episodes"] == (2.0 if ended else 0.0)
        ratio = np.mean([ref[k][t]["diag/ratio_per_agent"] for k in range(2)], axis=0)
        for i in range(4):
            assert row[f"diag/ratio_per_agent/agent_{i}"] == pytest.approx(ratio[i], rel=1e-5)
        assert "diag/ratio_per_agent" not in row


def test_metrics_nan_aware_over_seeds(tmp_path):
    """A seed without a finished episode does not turn the mean into NaN."""
    from trustmarl.experiment.logger import chunk_rows

    # 3 seeds x 2 updates
    metrics = {"episode_return": np.array([[1.0, np.nan], [np.nan, np.nan], [3.0, np.nan]]),
               "episode_win_rate": np.array([[1.0, np.nan], [np.nan, np.nan], [0.5, np.nan]]),
               "env_steps": np.array([[4, 8]] * 3)}
    rows = chunk_rows({k: np.asarray(v) for k, v in metrics.items()}, first_update=10, wall_time=1.5)
    # env outcomes (``episode_*``) are averaged like the return, with a column per seed
    assert rows[0]["episode_win_rate"] == pytest.approx(0.75) and rows[0]["episode_win_rate/seed_2"] == 0.5
    assert math.isnan(rows[1]["episode_win_rate"])
    assert [r["update"] for r in rows] == [11, 12]
    assert rows[0]["episode_return"] == pytest.approx(2.0) and math.isnan(rows[1]["episode_return"])
    assert math.isnan(rows[0]["episode_return/seed_1"]) and rows[0]["episode_return/seed_2"] == 3.0
    assert [r["env_steps"] for r in rows] == [4, 8] and rows[1]["wall_time"] == 1.5


def test_csv_equals_jsonl(run_a):
    out, _ = run_a
    rows = read_jsonl(out / "metrics.jsonl")
    with open(out / "metrics.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows)
    for r, c in zip(rows, table):
        assert list(c) == list(r)
        for k, v in r.items():
            assert float(c[k]) == pytest.approx(v, nan_ok=True)


def test_summary_values(run_a, reference):
    out, s = run_a
    _, params = reference
    rows = read_jsonl(out / "metrics.jsonl")
    seeds = np.array([[r[f"episode_return/seed_{k}"] for k in range(2)] for r in rows])
    # windows of 10% = 2 updates; update 19 has no finished episode (NaN), so the last window is update 20
    assert s["final_return_per_seed"] == pytest.approx(list(seeds[-1]))
    assert s["final_return"] == pytest.approx(seeds[-1].mean())
    assert s["initial_return_per_seed"] == pytest.approx(list(seeds[:2].mean(axis=0)))
    assert s["initial_return"] == pytest.approx(seeds[:2].mean())
    assert s["final_return"] > s["initial_return"]  # the dummy moves its parameters towards zero
    assert (s["status"], s["algo"], s["env"], s["num_seeds"], s["updates"], s["env_steps"]) == (
        "completed", "dummy", "matrix/proposition1", 2, N_UPDATES, 8 * N_UPDATES)
    assert s["steps_per_second"] == pytest.approx(2 * 8 * N_UPDATES / s["wall_seconds"])
    assert s["steady_steps_per_second"] > 0 and s["run_dir"] == str(out)
    state, counters = final_state(out)
    assert counters["update"] == N_UPDATES and counters["env_steps"] == 8 * N_UPDATES
    np.testing.assert_allclose(np.asarray(state.params), params, rtol=1e-5)


def test_result_is_printed(tmp_path, capsys):
    out = tmp_path / "p"
    s = run(cfg_of(total_steps=40), out, keep_checkpoints=True, progress=True)
    printed, bar = capsys.readouterr()
    assert "40.0/40.0" in bar and "ret=n/a" not in bar and "ret=" in bar  # tqdm: env steps of one seed and the current mean return
    assert sorted(p.name for p in (out / "checkpoints").glob("*.npz")) == [
        "last.npz", "update_0000000.npz", "update_0000005.npz"]
    assert f"{s['initial_return']:.4g} -> {s['final_return']:.4g}" in printed
    assert f"run saved to {out}" in printed


def test_progress_bar_shows_compiling_moves_in_one_chunk_and_keeps_the_return(tmp_path, capsys):
    """The first chunk's compilation is named; a run that fits in one chunk goes in tenths, so the bar
    moves; a chunk in which no episode ended (the dummy's every 4th update) shows the last return, not n/a."""
    run(cfg_of(total_steps=8 * 10, chunk_updates=10), tmp_path / "one", progress=True)
    bar = capsys.readouterr().err
    assert "compiling the first chunk" in bar
    assert len(set(re.findall(r"\b(\d+(?:\.\d+)?)/80\.0", bar))) >= 10  # 8, 16, ..., 80 env steps
    assert "ret=n/a" not in bar and "ret=" in bar
    rows = read_jsonl(tmp_path / "one" / "metrics.jsonl")
    assert len(rows) == 10 and math.isnan(rows[2]["episode_return"])  # update 3: no episode ended


def test_runner_names_no_algorithm_or_environment_metric():
    """What the bar shows beyond the return comes from the algorithm (``progress_postfix``) and the env's
    outcomes (``episode_<key>``); the runner lists no off-policy or SMAX metric names."""
    tree = ast.parse(Path(runner.__file__).read_text())
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and n.body and isinstance(n.body[0], ast.Expr)}
    strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
               and id(n) not in docstrings]
    for name in ("progress/", "warm", "win", "buffer"):
        assert not [s for s in strings if name in s], name
def test_checkpoint_keep_keeps_the_state_after_every_kth_update(run_a, tmp_path):
    """``checkpoint_keep=4`` with chunks of 3: chunks end at every 4th update, the kept checkpoint of update 8
    is the final state of a run of 8 updates, and the metrics are those of the run without it."""
    out_a, _ = run_a
    out = tmp_path / "keep"
    run(cfg_of(checkpoint_keep=4), out)
    kept = sorted(p.name for p in (out / "checkpoints").glob("update_*.npz"))
    assert kept == [f"update_{u:07d}.npz" for u in (4, 8, 12, 16, 20)]
    assert same_rows(read_jsonl(out / "metrics.jsonl"), read_jsonl(out_a / "metrics.jsonl"))
    short = tmp_path / "eight"
    run(cfg_of(total_steps=64), short)
    template = make_backend(cfg_of(), _dummy.DummyAlgorithm(_env(), cfg_of().algo)).template()
    state8, counters8 = load_checkpoint(out / "checkpoints" / "update_0000008.npz", template)
    want, _ = final_state(short)
    assert counters8["update"] == 8 and bitwise_equal(state8.params, want.params)
    for bad in (0, -2):
        with pytest.raises(ConfigError, match=rf"checkpoint_keep={bad!r} must be an integer >= 1"):
            cfg_of(checkpoint_keep=bad).validate()
    with pytest.raises(ConfigError, match=r"checkpoint_keep=1.5 must be an integer"):
        cfg_of(checkpoint_keep=1.5)


# ---- determinism and resume ----------------------------------------------------------------------

def test_same_config_gives_identical_run_and_overwrite_replaces(run_a, tmp_path):
    out_a, _ = run_a
    copy = tmp_path / "copy"
    shutil.copytree(out_a, copy)
    (copy / "stale.txt").write_text("from an old run")
    run(cfg_of(), copy, overwrite=True)
    assert not (copy / "stale.txt").exists()
    assert same_rows(read_jsonl(copy / "metrics.jsonl"), read_jsonl(out_a / "metrics.jsonl"))
    assert bitwise_equal(final_state(copy)[0], final_state(out_a)[0])


def test_other_seed_differs(run_a, tmp_path):
    run(cfg_of(seed=4, total_steps=24), tmp_path / "s4")
    rows = read_jsonl(tmp_path / "s4" / "metrics.jsonl")
    assert not same_rows(rows, read_jsonl(run_a[0] / "metrics.jsonl")[:3])


def test_killed_run_resumes_exactly(run_a, tmp_path):
    out_a, summary_a = run_a
    out = tmp_path / "b"
    stopped = run(cfg_of(), out, stop_after_chunks=5)  # "killed" after 5 chunks: checkpoint at chunk 4
    assert stopped["status"] == "stopped" and stopped["updates"] == 15
    assert json.loads((out / "checkpoints" / "last.json").read_text())["update"] == 12
    assert len(read_jsonl(out / "metrics.jsonl")) == 15 and not (out / "summary.json").exists()

    summary = run(None, out, resume=True)
    rows = read_jsonl(out / "metrics.jsonl")
    assert same_rows(rows, read_jsonl(out_a / "metrics.jsonl"))
    with open(out / "metrics.csv", newline="") as f:
        assert [int(r["update"]) for r in csv.DictReader(f)] == list(range(1, N_UPDATES + 1))
    assert bitwise_equal(final_state(out)[0], final_state(out_a)[0])
    assert summary["final_return"] == summary_a["final_return"] and summary["updates"] == N_UPDATES


def test_interrupt_saves_last_chunk_and_resumes_exactly(run_a, tmp_path, monkeypatch):
    out_a, _ = run_a
    out = tmp_path / "c"
    calls = {"n": 0}
    original = MetricsLogger.write

    def write(self, rows):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        original(self, rows)

    monkeypatch.setattr(MetricsLogger, "write", write)
    with pytest.raises(KeyboardInterrupt):
        run(cfg_of(checkpoint_every=100), out)
    monkeypatch.undo()
    assert json.loads((out / "checkpoints" / "last.json").read_text())["update"] == 9
    run(cfg_of(checkpoint_every=100), out, resume=True)
    assert same_rows(read_jsonl(out / "metrics.jsonl"), read_jsonl(out_a / "metrics.jsonl"))
    assert bitwise_equal(final_state(out)[0], final_state(out_a)[0])


def test_donated_state_interrupted_mid_chunk_resumes_from_its_last_checkpoint(run_a, tmp_path, monkeypatch, capsys):
    """A state with bulky data (replay buffers) is donated to its chunk, which updates it in place: Ctrl-C
    during a chunk cannot save the state the chunk took over. The run names its last checkpoint and
    resumes from it exactly."""
    out_a, _ = run_a
    out = tmp_path / "d"
    calls = {"n": 0}
    original = MetricsLogger.write

    def write(self, rows):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        original(self, rows)

    monkeypatch.setattr(_dummy.DummyAlgorithm, "split_bulk", lambda self, state: (state, None))  # "has bulk"
    monkeypatch.setattr(MetricsLogger, "write", write)
    with pytest.raises(KeyboardInterrupt):
        run(cfg_of(checkpoint_every=2), out)
    monkeypatch.setattr(MetricsLogger, "write", original)
    assert "the last checkpoint is at update 6" in capsys.readouterr().err  # chunk 3's state went to chunk 4
    assert json.loads((out / "checkpoints" / "last.json").read_text())["update"] == 6
    run(None, out, resume=True)
    assert same_rows(read_jsonl(out / "metrics.jsonl"), read_jsonl(out_a / "metrics.jsonl"))
    assert bitwise_equal(final_state(out)[0], final_state(out_a)[0])


def test_resume_can_extend_total_steps(run_a, tmp_path):
    out = tmp_path / "ext"
    shutil.copytree(run_a[0], out)
    cfg = resume_config(out, {"total_steps": 200})
    summary = run(cfg, out, resume=True)
    rows = read_jsonl(out / "metrics.jsonl")
    assert summary["updates"] == 25 and [r["update"] for r in rows] == list(range(1, 26))
    assert same_rows(rows[:N_UPDATES], read_jsonl(run_a[0] / "metrics.jsonl"))
    assert yaml.safe_load((out / "config.yaml").read_text())["total_steps"] == 200
    with pytest.raises(ConfigError, match="already at update 25"):
        run(resume_config(out, {"total_steps": 80}), out, resume=True)


def test_resume_errors(run_a, tmp_path):
    out_a, _ = run_a
    with pytest.raises(RunDirError, match="does not exist"):
        run(None, tmp_path / "missing", resume=True)
    (tmp_path / "plain").mkdir()
    with pytest.raises(RunDirError, match="not a trustmarl run directory"):
        run(None, tmp_path / "plain", resume=True)
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(out_a / "config.yaml", partial / "config.yaml")
    with pytest.raises(RunDirError, match="no checkpoint"):
        run(None, partial, resume=True)
    with pytest.raises(ConfigError, match="algo.lr"):
        run(cfg_of(**{"algo.lr": 0.5}), out_a, resume=True)
    with pytest.raises(ConfigError, match="cannot change algo.lr when resuming"):
        resume_config(out_a, {"algo.lr": 0.5})


def test_existing_directories_are_protected(run_a, tmp_path):
    out_a, _ = run_a
    before = (out_a / "metrics.jsonl").read_bytes()
    with pytest.raises(RunDirError, match="already exists"):
        run(cfg_of(), out_a)
    assert (out_a / "metrics.jsonl").read_bytes() == before
    other = tmp_path / "notes"
    other.mkdir()
    (other / "thesis.tex").write_text("precious")
    with pytest.raises(RunDirError, match="refusing to delete"):
        run(cfg_of(), other, overwrite=True)
    assert (other / "thesis.tex").read_text() == "precious"


def test_checkpoint_of_another_algorithm_is_rejected(run_a, tmp_path):
    from trustmarl.experiment.checkpoint import CheckpointError

    cfg = cfg_of(**{"env.n_agents": 2})
    algo = _dummy.DummyAlgorithm(runner_env(cfg), cfg.algo)
    with pytest.raises(CheckpointError, match=r"\.params has shape \(2, 4, 3\), expected \(2, 2, 3\)"):
        load_checkpoint(run_a[0] / "checkpoints" / "last.npz", make_backend(cfg, algo).template())


def runner_env(cfg):
    from trustmarl.envs import make

    return make(cfg.env.name, **cfg.env.params)


def test_checkpoint_cadence_adapts_to_the_write_time(tmp_path, monkeypatch, capsys):
    """Periodic checkpoints every checkpoint_every chunks or checkpoint_seconds after the last, whichever
    is first, never sooner than 20x the last write's duration (<= 5% of the run); large ones are reported."""
    def saved(name):
        return sorted(p.name for p in (tmp_path / name / "checkpoints").glob("update_*.npz"))

    monkeypatch.setattr(runner, "LARGE_CHECKPOINT", 1)  # every checkpoint counts as large: reported
    monkeypatch.setattr(runner, "WRITE_SHARE", 1e-9)  # every write "takes" far longer than the run
    monkeypatch.setattr(runner, "THROTTLE_ABOVE", 0.0)  # however small
    run(cfg_of(checkpoint_every=1, checkpoint_seconds=0), tmp_path / "slow", keep_checkpoints=True)
    assert saved("slow") == ["update_0000000.npz", f"update_{N_UPDATES:07d}.npz"]  # the first and the last only
    err = capsys.readouterr().err
    assert "checkpoint at update 0: 0 MB in " in err and f"checkpoint at update {N_UPDATES}:" in err
    monkeypatch.setattr(runner, "WRITE_SHARE", 0.05)
    monkeypatch.setattr(runner, "THROTTLE_ABOVE", 0.5)
    run(cfg_of(checkpoint_every=1, checkpoint_seconds=3600), tmp_path / "chunks", keep_checkpoints=True)
    assert len(saved("chunks")) == 1 + 7  # every one of 7 chunks of 3, 3, ..., 2
    run(cfg_of(checkpoint_every=100, checkpoint_seconds=0), tmp_path / "seconds", keep_checkpoints=True)
    assert len(saved("seconds")) == 1 + 7  # checkpoint_seconds=0: time-based, after every chunk
    run(cfg_of(checkpoint_every=100, checkpoint_seconds=3600), tmp_path / "neither", keep_checkpoints=True)
    assert len(saved("neither")) == 2  # update 0 and the end


# ---- divergence ----------------------------------------------------------------------------------

def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path, capsys):
    out = tmp_path / "nan"
    summary = run(cfg_of(**{"algo.nan_at": 8, "checkpoint_every": 5}), out)
    assert summary["status"] == "diverged" and summary["updates"] == 6
    assert "loss/actor is nan at update 8 (seed 0)" in summary["message"]
    assert "training diverged: loss/actor is nan at update 8" in capsys.readouterr().err
    assert json.loads((out / "summary.json").read_text())["status"] == "diverged"
    state, counters = final_state(out)
    assert counters["update"] == 6 and np.isfinite(np.asarray(state.params)).all()


def test_find_divergence_names_first_bad_metric():
    m = {"loss/a": np.ones((2, 4)), "loss/b": np.ones((2, 4, 3)), "diag/x": np.full((2, 4), np.nan)}
    assert runner.find_divergence(m, 0) is None  # diagnostics may be NaN
    m["loss/b"][1, 2, 1] = np.inf
    m["loss/a"][0, 3] = np.nan
    assert runner.find_divergence(m, 10) == "loss/b is inf at update 13 (seed 1)"


# ---- evaluation ----------------------------------------------------------------------------------

def test_evaluate_run(tmp_path):
    """Each seed's deterministic policy (agent k plays argmax params[k]) gets the climbing game's payoff
    of that joint action; per-agent returns and the sum over agents follow; sampling differs."""
    from trustmarl.envs.matrix import CLIMBING_GAME

    out = tmp_path / "climb"
    run(_dummy.config("matrix/custom", **{**BASE, "num_seeds": 4, "seed": 5}), out)
    state, _ = final_state(out)
    joint = np.argmax(np.asarray(state.params)[:, :, :3], axis=-1)  # [seeds, 2 agents]
    expected = [CLIMBING_GAME[a][b] for a, b in joint]
    assert len(set(expected)) > 1  # the seeds' policies differ: a per-seed mix-up would show
    res = evaluate_run(out, episodes=5)
    assert res["per_seed_return"] == pytest.approx(expected)
    assert res["mean_return"] == pytest.approx(np.mean(expected))
    assert res["mean_return_per_agent"] == pytest.approx([np.mean(expected)] * 2)
    assert res["mean_return_sum"] == pytest.approx(2 * np.mean(expected)) and res["mean_length"] == 1.0
    assert (res["episodes"], res["deterministic"], res["update"]) == (5, True, N_UPDATES)
    noisy = evaluate_run(out, episodes=40, deterministic=False)
    assert noisy["per_seed_return"] != pytest.approx(expected)


def test_periodic_evaluations_compile_once(tmp_path, monkeypatch):
    """Every evaluation of a run reuses one compiled acting program and env stepper (a fresh one per
    evaluation took seconds each: periodic evaluation would cost far more than 5% of a run)."""
    traced = {"n": 0}
    original = _dummy.DummyAlgorithm.eval_actions

    def counting(self, *args, **kwargs):
        traced["n"] += 1  # runs once per trace (compilation), not per call
        return original(self, *args, **kwargs)

    monkeypatch.setattr(_dummy.DummyAlgorithm, "eval_actions", counting)
    summary = run(cfg_of(eval_every=16, eval_episodes=2), tmp_path / "evals")
    rows = read_jsonl(tmp_path / "evals" / "metrics.jsonl")
    assert len([r for r in rows if "eval/return" in r]) == 10 and summary["status"] == "completed"
    assert traced["n"] == 1


# ---- a real algorithm ----------------------------------------------------------------------------

def test_real_mappo_run_resumes_exactly(tmp_path):
    from trustmarl.experiment.config import build_config

    overrides = {
        "total_steps": 4 * 16, "chunk_updates": 2, "num_seeds": 2, "checkpoint_every": 1,
        "algo.num_envs": 4, "algo.rollout_len": 4, "algo.epochs": 1, "algo.minibatches": 2,
        "algo.hidden_sizes": [8], "env.n_agents": 2,
    }
    cfg = build_config("mappo", "matrix/proposition1", overrides)
    full = run(cfg, tmp_path / "full")
    run(cfg, tmp_path / "part", stop_after_chunks=1)
    run(None, tmp_path / "part", resume=True)
    assert full["updates"] == 4 and full["status"] == "completed"
    rows = read_jsonl(tmp_path / "full" / "metrics.jsonl")
    assert any(k.startswith("loss/") for k in rows[0])
    assert same_rows(read_jsonl(tmp_path / "part" / "metrics.jsonl"), rows)
    assert bitwise_equal(final_state(tmp_path / "part")[0], final_state(tmp_path / "full")[0])


def test_last_short_chunk_reuses_the_compiled_chunk():
    """A run's shorter last chunk runs through the same program (no second compilation) and gives the
    same state and metrics as that many plain updates."""
    from trustmarl.algos import make_algorithm
    from trustmarl.algos.base import init_seeds
    from trustmarl.experiment.config import build_config
    from trustmarl.experiment.backends import _Chunks

    cfg = build_config("mappo", "matrix/proposition1", {"algo.num_envs": 4, "algo.rollout_len": 2, "algo.minibatches": 1,
                                                        "algo.epochs": 1, "algo.hidden_sizes": [8]})
    algo = make_algorithm(cfg, total_updates=5)
    state = init_seeds(algo, jax.random.split(jax.random.PRNGKey(0), 2))
    chunks = _Chunks(algo, 3)
    s3, m3 = chunks(state, 3)
    s2, m2 = chunks(s3, 2)
    assert chunks._fn._cache_size() == 1
    assert np.shape(m3["episode_return"]) == (2, 3) and np.shape(m2["episode_return"]) == (2, 2)
    ref = jax.jit(jax.vmap(lambda s: jax.lax.scan(lambda c, _: algo.update(c), s, None, length=5)))
    s_ref, m_ref = ref(state)
    for a, b in zip(jax.tree.leaves(s2.actor_params), jax.tree.leaves(s_ref.actor_params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert int(s2.update[0]) == 5
    np.testing.assert_allclose(np.asarray(m2["loss/value"]), np.asarray(m_ref["loss/value"])[:, 3:], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="a chunk runs 1..3 updates"):
        chunks(state, 4)
