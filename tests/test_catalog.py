"""``trustmarl/catalog.json`` (what ``--help``, ``list`` and the name checks read without importing JAX) equals
what the registries hold, and every hyperparameter of every algorithm has a one-line description."""

from __future__ import annotations

import json

import pytest

from trustmarl import algos, catalog


def test_catalog_file_is_up_to_date():
    built, saved = catalog.build(), catalog.load()
    assert built == saved, "trustmarl/catalog.json is out of date: run  python -m trustmarl.catalog"


@pytest.mark.parametrize("name", algos.registered_names())
def test_every_hyperparameter_has_a_description(name):
    spec = algos.algo_spec(name)
    if not spec.builtin:
        pytest.skip("registered by a test")
    missing = [k for k, v in catalog.config_keys(spec.config_cls).items() if not v["help"]]
    assert not missing, (f"{name}: add a one-line comment beside these fields of {spec.config_cls.__qualname__} "
                         f"(`trustmarl list --keys {name}` prints it): {missing}")


def test_field_help_reads_inline_comments_along_the_bases():
    import dataclasses

    @dataclasses.dataclass
    class Base:
        a: int = 1  # the a
        b: int = 2  # the b

    @dataclasses.dataclass
    class Child(Base):
        b: int = 3  # a new b
        c: float = 0.5
        d: str = "x#y"  # with a hash in the value

    assert catalog.field_help(Child) == {"a": "the a", "b": "a new b", "d": "with a hash in the value"}
    keys = catalog.config_keys(Child)
    assert keys["b"] == {"default": 3, "help": "a new b"} and keys["c"]["help"] == ""
    assert json.loads(json.dumps(keys)) == keys


def test_a_stale_entry_is_not_trusted(monkeypatch):
    """When a hyperparameter class changed after the catalog was written, the name checks read the class
    itself: an out-of-date catalog makes the command line slower, never wrong."""
    from trustmarl.experiment.config import build_config

    assert catalog.fresh_algorithm("mappo") is not None
    stale = json.loads(json.dumps(catalog.load()))
    entry = stale["algorithms"]["mappo"]
    (path, classes), = entry["sources"].items()
    entry["sources"][path] = {k: "0" * 16 for k in classes}  # as if OnPolicyConfig had been edited
    del entry["keys"]["clip_eps"]  # ... and had gained clip_eps since
    monkeypatch.setattr(catalog, "load", lambda: stale)
    assert catalog.fresh_algorithm("mappo") is None
    assert build_config("mappo", "matrix/proposition1", {"algo.clip_eps": 0.1}).algo.clip_eps == 0.1


def test_every_environment_key_has_a_description():
    from trustmarl.experiment.config import all_env_names, env_key_help

    missing = {}
    for name in all_env_names():
        try:
            keys = env_key_help(name)
        except Exception:  # noqa: BLE001 - an optional package is missing here
            continue
        bad = [k for k, v in keys.items() if not v["help"] or v["help"].startswith("type:")]
        if bad:
            missing[name] = bad
    assert not missing, f"add a one-line comment beside these env fields: {missing}"
