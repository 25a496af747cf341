"""``trustmarl sweep``: the YAML format and its expansion, one-line errors before anything starts, a local
sweep in worker processes (a diverging run reported with its config while the others finish), re-running
(finished runs skipped, a killed run resumed to the same result), and the Ray path (a fake Ray in the
default run; a real local Ray in the slow run)."""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import pytest
import yaml

from trustmarl.experiment import cli, runner
from trustmarl.studies import sweep as sweep_mod
from trustmarl.experiment.logger import read_jsonl

HERE = Path(__file__).resolve().parent
EXPERIMENT = HERE.parent / "experiment"  # the dummy algorithm lives beside the experiment tests
ENV = "matrix/proposition1"
# tiny dummy runs: 8 env steps per update, 20 updates in chunks of 5, a checkpoint after every chunk
SMALL = {"total_steps": 160, "chunk_updates": 5, "checkpoint_every": 1}


def call(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(code, out, err, *needles):
    assert code == 2, (code, out, err)
    assert err.startswith("trustmarl: error: ") and err.count("\n") == 1, err
    for n in needles:
        assert n in err, (n, err)


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """A module that registers the dummy algorithm, importable by worker processes (PYTHONPATH)."""
    (tmp_path / "dummy_plugin.py").write_text(
        f"import sys\nsys.path.insert(0, {str(EXPERIMENT)!r})\nimport _dummy\n_dummy.register()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), str(HERE.parents[1])]))
    return "dummy_plugin"


def write_spec(tmp_path, data, name="s.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ---- the format ------------------------------------------------------------------------------------

def test_grid_runs_blocks_labels_and_seed_blocks():
    sw = sweep_mod.parse_sweep({
        "name": "g", "algos": ["dummy"], "envs": [ENV], "seeds": 5, "seed": 10, "seeds_per_run": 2,
        "overrides": SMALL, "grid": {"algo.lr": [0.1, 0.2], "algo.noise": [0.0, 0.5]},
        "runs": [{"algo": "dummy", "env": ENV, "overrides": {"algo.lr": 0.3}, "label": "lr 0.3"}],
    })
    configs = {r.config_id for r in sw.runs}
    assert len(configs) == 5  # 2 x 2 grid + 1 explicit
    assert len(sw.runs) == 15  # 3 seed blocks each: seeds 10-11, 12-13, 14
    blocks = sorted({(r.seed, r.num_seeds) for r in sw.runs})
    assert blocks == [(10, 2), (12, 2), (14, 1)]
    first = [r for r in sw.runs if r.overrides.get("algo.lr") == 0.1 and r.overrides.get("algo.noise") == 0.0]
    assert {r.label for r in first} == {"dummy (lr=0.1, noise=0)"}
    assert first[0].name == "dummy_matrix-proposition1_lr=0.1_noise=0_seeds10-11"
    assert first[0].train_overrides()["total_steps"] == 160 and first[0].train_overrides()["seed"] == 10
    assert {r.label for r in sw.runs if r.overrides.get("algo.lr") == 0.3} == {"lr 0.3"}
    assert len({r.name for r in sw.runs}) == len(sw.runs)


def test_keys_an_algorithm_ignores_are_dropped_and_duplicates_merged():
    # HATRPO ignores algo.clip_eps: a grid over it gives HATRPO one configuration, HAPPO two
    sw = sweep_mod.parse_sweep({"algos": ["happo", "hatrpo"], "env": ENV, "grid": {"algo.clip_eps": [0.1, 0.2]},
                                "overrides": {"total_steps": 128}})
    assert sorted((r.algo, r.overrides.get("algo.clip_eps")) for r in sw.runs) == [
        ("happo", 0.1), ("happo", 0.2), ("hatrpo", None)]
    assert next(r for r in sw.runs if r.algo == "hatrpo").label == "hatrpo"


@pytest.mark.parametrize(
    "data, needles",
    [
        ({"algos": ["dummy"], "envs": [ENV], "bogus": 1}, ["unknown sweep key 'bogus'", "grid"]),
        ({"algos": ["nope"], "envs": [ENV]}, ["unknown algorithm 'nope'", "dummy"]),
        ({"algos": ["dummy"], "envs": ["nope/env"]}, ["unknown environment 'nope/env'", ENV]),
        ({"algos": ["dummy"], "envs": [ENV], "grid": {"algo.lr": []}}, ["'algo.lr'", "empty"]),
        ({"algos": [], "envs": [ENV]}, ["'algos'", "empty"]),
        ({"overrides": {"total_steps": 10}}, ["the sweep has no runs"]),
        ({"algos": ["dummy"], "envs": [ENV], "grid": {"algo.lr": 0.1}}, ["must map to a list"]),
        ({"algos": ["dummy"], "envs": [ENV], "overrides": {"algo.bogus": 1}}, ["unknown key 'algo.bogus'"]),
        ({"algos": ["dummy"], "envs": [ENV], "overrides": {"num_seeds": 3}}, ["'num_seeds'", "'seeds'"]),
        ({"algos": ["dummy"], "envs": [ENV], "seeds": 0}, ["'seeds'=0"]),
        ({"runs": [{"algo": "dummy", "env": ENV, "grdi": {}}]}, ["unknown key 'grdi' in runs[0]"]),
        ({"algos": ["dummy"], "envs": [ENV], "imports": ["no_such_module_xyz"]}, ["cannot import 'no_such_module_xyz'"]),
        ({"algos": ["dummy"], "envs": [ENV], "resources": {"tpu": 1}}, ["unknown resource 'tpu'"]),
    ],
)
def test_bad_sweep_files_are_one_line_and_exit_2_before_anything(capsys, monkeypatch, tmp_path, data, needles):
    monkeypatch.setattr(runner, "build_algorithm", lambda *a, **k: pytest.fail("an algorithm was built"))
    monkeypatch.chdir(tmp_path)
    code, out, err = call(capsys, "sweep", write_spec(tmp_path, data))
    assert_usage_error(code, out, err, *needles)
    assert out == "" and not (tmp_path / "sweeps").exists()


def test_bad_files_and_arguments(capsys, tmp_path):
    assert_usage_error(*call(capsys, "sweep", tmp_path / "missing.yaml"), "does not exist")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    assert_usage_error(*call(capsys, "sweep", tmp_path / "list.yaml"), "must hold a mapping")
    (tmp_path / "bad.yaml").write_text("algos: [dummy\n")
    assert_usage_error(*call(capsys, "sweep", tmp_path / "bad.yaml"), "not valid YAML")
    ok = write_spec(tmp_path, {"algos": ["dummy"], "envs": [ENV]})
    assert_usage_error(*call(capsys, "sweep", ok, "--jobs", "0"), "--jobs 0")
    assert_usage_error(*call(capsys, "sweep", ok, "--ray", "--jobs", "2"), "--jobs applies to local runs")


def test_unreachable_ray_address_is_exit_2_before_anything(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", types.ModuleType("ray"))  # "installed"; never initialised
    spec = write_spec(tmp_path, {"algos": ["dummy"], "envs": [ENV]})
    code, out, err = call(capsys, "sweep", spec, "--out", tmp_path / "sw", "--ray", "127.0.0.1:1")
    assert_usage_error(code, out, err, "cannot reach the Ray cluster at '127.0.0.1:1'")
    assert_usage_error(*call(capsys, "sweep", spec, "--out", tmp_path / "sw", "--ray", "nonsense"), "HOST:PORT")
    assert not (tmp_path / "sw").exists()
    monkeypatch.setitem(sys.modules, "ray", None)  # not installed
    assert_usage_error(*call(capsys, "sweep", spec, "--ray"), "pip install 'trustmarl[ray]'")


def test_dry_run_lists_the_runs(capsys, tmp_path):
    spec = write_spec(tmp_path, {"name": "d", "algos": ["dummy"], "envs": [ENV], "seeds": 2,
                                 "grid": {"algo.lr": [0.1, 0.2]}})
    code, out, _ = call(capsys, "sweep", spec, "--dry-run", "--out", tmp_path / "x")
    assert code == 0 and "2 runs" in out
    assert "trustmarl train dummy matrix/proposition1 algo.lr=0.1 seed=0 num_seeds=2" in out
    assert not (tmp_path / "x").exists()


# ---- running ---------------------------------------------------------------------------------------

def test_local_sweep_reports_a_diverged_run_and_resumes_a_killed_one(capsys, tmp_path, plugin):
    """Two configurations + one that diverges, 2 worker processes. Then: one run is re-made as if killed
    after its first chunk, and the sweep runs again: the finished runs are skipped, the killed one is
    resumed from its checkpoint and ends with exactly the metrics of the uninterrupted run."""
    data = {"name": "local", "imports": [plugin], "algos": ["dummy"], "envs": [ENV], "seeds": 2, "overrides": SMALL,
            "grid": {"algo.lr": [0.1, 0.2]}, "runs": [{"algo": "dummy", "env": ENV, "overrides": {"algo.nan_at": 7}}]}
    spec, out_dir = write_spec(tmp_path, data), tmp_path / "sw"
    code, out, err = call(capsys, "sweep", spec, "--out", out_dir, "--jobs", "2")
    assert code == 1, (out, err)
    index = json.loads((out_dir / "sweep.json").read_text())
    names = [r["name"] for r in index["runs"]]
    status = json.loads((out_dir / "status.json").read_text())
    assert [status[n]["status"] for n in names] == ["completed", "completed", "diverged"]
    assert "loss/actor is nan at update 7" in status[names[2]]["message"]
    assert f"diverged: {names[2]}" in out and "trustmarl train dummy matrix/proposition1" in out and "algo.nan_at=7" in out
    assert "[sweep 2/3 done, 0 running, 1 failed, 0 waiting" in err  # progress lines
    for n in names[:2]:
        s = json.loads((out_dir / "runs" / n / "summary.json").read_text())
        assert (s["status"], s["num_seeds"], s["updates"]) == ("completed", 2, 20)
    assert "SWEEP_RESULT" in (out_dir / "logs" / f"{names[0]}.log").read_text()

    # run 1 "killed" after its first chunk (checkpoint written, no summary); run 0 untouched
    killed = out_dir / "runs" / names[1]
    full_rows = read_jsonl(killed / "metrics.jsonl")
    cfg = runner.load_run_config(killed)
    runner.train(cfg, killed, overwrite=True, progress=False, tensorboard=False, stop_after_chunks=1)
    assert not (killed / "summary.json").exists() and len(read_jsonl(killed / "metrics.jsonl")) == 5
    mtime = (out_dir / "runs" / names[0] / "summary.json").stat().st_mtime_ns

    code, out, err = call(capsys, "sweep", spec, "--out", out_dir, "--jobs", "2")
    assert code == 1  # the diverged run is still reported
    assert "3 runs in" in err and "(1 already completed, 1 diverged (kept), 1 to run, 2 at a time)" in err
    assert (out_dir / "runs" / names[0] / "summary.json").stat().st_mtime_ns == mtime  # skipped
    resumed = read_jsonl(killed / "metrics.jsonl")
    strip = lambda rows: json.dumps([{k: v for k, v in r.items() if k != "wall_time"} for r in rows])  # noqa: E731
    assert len(resumed) == 20 and strip(resumed) == strip(full_rows)  # bitwise-equal continuation (NaN == NaN)
    assert json.loads((killed / "summary.json").read_text())["status"] == "completed"

    # a different sweep in the same directory needs --overwrite
    data["grid"] = {"algo.lr": [0.3]}
    spec2 = write_spec(tmp_path, data, "s2.yaml")
    assert_usage_error(*call(capsys, "sweep", spec2, "--out", out_dir), "holds a different sweep", "--overwrite")
    assert (out_dir / "runs" / names[0]).exists()


class Ref:
    def __init__(self, value):
        self.value = value


class FakeRay(types.ModuleType):
    """Just enough of Ray's API for ``run_ray``: tasks run inline when submitted, in submission order."""

    def __init__(self):
        super().__init__("ray")
        self.inited, self.requests, self.shutdowns = [], [], 0

    def is_initialized(self):
        return bool(self.inited)

    def init(self, **kwargs):
        self.inited.append(kwargs)

    def shutdown(self):
        self.shutdowns += 1

    def remote(self, **resources):
        self.requests.append(resources)

        def wrap(fn):
            return types.SimpleNamespace(remote=lambda *a: Ref(fn(*a)))

        return wrap

    def wait(self, refs, num_returns=1, timeout=None):
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref):
        return ref.value

    def cancel(self, ref):
        pass


def test_ray_path_with_a_fake_ray(capsys, tmp_path, plugin, monkeypatch):
    """Every run becomes one task with the sweep's CPU/GPU request; results land in the sweep directory; a
    run that fails at start is reported and the others finish."""
    fake = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    spec = write_spec(tmp_path, {"name": "r", "imports": [plugin], "algos": ["dummy"], "envs": [ENV],
                                 "overrides": SMALL, "resources": {"cpu": 2, "gpu": 0.5},
                                 "grid": {"algo.lr": [0.1, 0.2]}})
    original = sweep_mod.run_one

    def flaky(sweep_dir, name, progress=False):
        if "lr=0.2" in name:
            raise RuntimeError("worker node lost")
        return original(sweep_dir, name, progress)

    monkeypatch.setattr(sweep_mod, "run_one", flaky)
    code, out, err = call(capsys, "sweep", spec, "--out", tmp_path / "sw", "--ray")
    assert code == 1, err
    assert fake.requests == [{"num_cpus": 2.0, "num_gpus": 0.5, "max_calls": 1}]
    assert fake.inited and "address" not in fake.inited[0] and fake.shutdowns == 1  # a local Ray, started here
    status = json.loads((tmp_path / "sw" / "status.json").read_text())
    ok, bad = "dummy_matrix-proposition1_lr=0.1", "dummy_matrix-proposition1_lr=0.2"
    assert status[ok]["status"] == "completed" and status[bad]["status"] == "failed"
    assert "RuntimeError: worker node lost" in status[bad]["message"]
    assert json.loads((tmp_path / "sw" / "runs" / ok / "summary.json").read_text())["status"] == "completed"
    assert f"failed: {bad}: RuntimeError: worker node lost" in out and "algo.lr=0.2" in out

    fake2 = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake2)
    monkeypatch.setattr(sweep_mod, "run_one", original)
    code, _, err = call(capsys, "sweep", spec, "--out", tmp_path / "sw", "--ray", "auto")
    assert code == 0, err
    assert fake2.inited[0]["address"] == "auto" and len(fake2.requests) == 1
    assert "(1 already completed, 1 to run on Ray)" in err


@pytest.mark.slow
def test_real_local_ray_sweep(capsys, tmp_path, plugin):
    """A local Ray started by the sweep: two tasks, then a re-run that skips both."""
    pytest.importorskip("ray")
    spec = write_spec(tmp_path, {"name": "ray", "imports": [plugin], "algos": ["dummy"], "envs": [ENV], "seeds": 2,
                                 "overrides": SMALL, "grid": {"algo.lr": [0.1, 0.2]}})
    code, out, err = call(capsys, "sweep", spec, "--out", tmp_path / "sw", "--ray")
    assert code == 0, (out, err)
    status = json.loads((tmp_path / "sw" / "status.json").read_text())
    assert [s["status"] for s in status.values()] == ["completed", "completed"]
    for d in (tmp_path / "sw" / "runs").iterdir():
        assert json.loads((d / "summary.json").read_text())["num_seeds"] == 2
    code, out, err = call(capsys, "sweep", spec, "--out", tmp_path / "sw", "--ray")
    assert code == 0 and "(2 already completed, 0 to run on Ray)" in err
