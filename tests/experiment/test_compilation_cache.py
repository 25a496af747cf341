"""The command line's persistent compilation cache (``TRUSTMARL_COMPILATION_CACHE``): a second run with the same
settings loads every program it stores and adds none, with the same numbers; ``off`` stores nothing; a folder that
cannot be created is one line and exit 2 before anything is built."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import pytest
from jaxcache import _reset_cache

from trustmarl import compilation
from trustmarl.experiment import cli

ENV = "matrix/proposition1"
SMALL = ["total_steps=160", "chunk_updates=3", "num_seeds=2", "checkpoint_every=2", "seed=5", "--no-progress"]
_ENV = ("JAX_COMPILATION_CACHE_DIR", "JAX_COMPILATION_CACHE_MAX_SIZE")
_KEYS = ("jax_compilation_cache_dir", "jax_compilation_cache_max_size", "jax_persistent_cache_min_compile_time_secs")


@pytest.fixture
def no_cache():
    """No cache configured (the module-wide test cache is set aside and restored after the test)."""
    old = {k: getattr(jax.config, k) for k in _KEYS}
    old_env = {k: os.environ.pop(k, None) for k in _ENV}
    jax.config.update("jax_compilation_cache_dir", None)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # the dummy's programs compile in < 1 s
    _reset_cache()
    yield
    for k, v in old.items():
        jax.config.update(k, v)
    for k, v in old_env.items():
        os.environ.pop(k, None)
        if v is not None:
            os.environ[k] = v
    _reset_cache()


def entries(folder: Path) -> set[str]:
    return {p.name for p in folder.rglob("*") if p.is_file()}


def final(run_dir: Path) -> list:
    return [json.loads(line)["episode_return"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_second_run_loads_every_program_and_computes_the_same(no_cache, monkeypatch, tmp_path, capsys):
    cache = tmp_path / "cache"
    monkeypatch.setenv(compilation.CACHE_ENV, str(cache))
    assert cli.main(["train", "dummy", ENV, *SMALL, "--out", str(tmp_path / "a")]) == 0
    assert jax.config.jax_compilation_cache_dir == str(cache)
    assert jax.config.jax_compilation_cache_max_size == compilation.CACHE_MAX_BYTES
    assert os.environ["JAX_COMPILATION_CACHE_DIR"] == str(cache)  # what a sweep's worker processes inherit
    first = entries(cache)
    assert first, "the first run stored no program"
    assert cli.main(["train", "dummy", ENV, *SMALL, "--out", str(tmp_path / "b")]) == 0
    assert entries(cache) == first  # every program of the second run came from the cache
    assert final(tmp_path / "a") == final(tmp_path / "b")
    capsys.readouterr()


def test_off_stores_nothing(no_cache, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv(compilation.CACHE_ENV, "off")
    assert cli.main(["eval", str(tmp_path / "missing")]) == 2  # a command that fails: no cache folder either way
    assert jax.config.jax_compilation_cache_dir is None and not (tmp_path / "xdg").exists()
    monkeypatch.delenv(compilation.CACHE_ENV)
    assert compilation.default_cache_dir() == str(tmp_path / "xdg" / "trustmarl" / "jax")
    capsys.readouterr()


def test_unusable_folder_is_one_line_exit_2_before_building(no_cache, monkeypatch, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv(compilation.CACHE_ENV, str(blocker / "cache"))
    code = cli.main(["train", "dummy", ENV, *SMALL, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("trustmarl: error: ")
    assert f"TRUSTMARL_COMPILATION_CACHE={blocker / 'cache'}" in err and "'off'" in err
    assert not (tmp_path / "run").exists() and jax.config.jax_compilation_cache_dir is None


def test_a_cache_jax_already_has_is_kept(no_cache, monkeypatch, tmp_path):
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "theirs"))
    monkeypatch.setenv(compilation.CACHE_ENV, str(tmp_path / "ours"))
    assert compilation.enable_compilation_cache() == str(tmp_path / "theirs")
    assert not (tmp_path / "ours").exists()


def test_before_jax_is_imported_the_settings_reach_jax_through_its_environment(tmp_path):
    """The command line enables the cache before JAX is imported (errors stay fast): JAX reads the settings then."""
    import subprocess
    import sys

    code = ("import sys; from trustmarl.compilation import enable_compilation_cache as e; f = e(); "
            "assert 'jax' not in sys.modules; import jax; "
            "print(f, jax.config.jax_compilation_cache_dir, jax.config.jax_compilation_cache_max_size)")
    env = {**os.environ, compilation.CACHE_ENV: str(tmp_path / "c"), "JAX_PLATFORMS": "cpu"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(tmp_path / "c")] * 2 + [str(compilation.CACHE_MAX_BYTES)]
