"""Every key an algorithm inherits but does not read is refused before anything is built: one line on
stderr, exit code 2, for every registered algorithm (the catalog's ``UNUSED`` lists, read by the CLI
without importing JAX) and through :func:`build_config` (the algorithm's own config class)."""

from __future__ import annotations

import pytest

from trustmarl.algos import algo_config_class, algo_names
from trustmarl.experiment import cli
from trustmarl.experiment.config import ConfigError, build_config

CASES = [(algo, key) for algo in algo_names() for key in sorted(getattr(algo_config_class(algo), "UNUSED", {}))]


def test_matrl_refuses_the_time_aware_critic():
    """MATRL's critics never read the episode time: a ConfigError before compiling, not a ValueError while tracing."""
    with pytest.raises(ConfigError, match="algo.critic_time is not used by matrl"):
        build_config("matrl", "matrix/matching_pennies", {"algo.critic_time": True})
    assert ("matrl", "critic_time") in CASES


@pytest.mark.parametrize("algo", sorted({a for a, _ in CASES}))
def test_every_unused_key_is_one_line_and_exit_2(algo, capsys):
    for key in [k for a, k in CASES if a == algo]:
        code = cli.main(["train", algo, "matrix/matching_pennies", f"algo.{key}=1"])
        _, err = capsys.readouterr()
        assert code == 2, (algo, key)
        assert err.count("\n") == 1 and f"algo.{key} is not used by {algo}" in err, err
        with pytest.raises(ConfigError, match=f"algo.{key} is not used by {algo}"):
            build_config(algo, "matrix/matching_pennies", {f"algo.{key}": 1})


def _flipped_bool_keys(algo: str) -> list[str]:
    import dataclasses

    cls = algo_config_class(algo)
    unused = getattr(cls, "UNUSED", {})
    return [f.name for f in dataclasses.fields(cls) if isinstance(f.default, bool) and f.name not in unused]


@pytest.mark.slow
@pytest.mark.parametrize("algo", algo_names())
def test_every_inherited_switch_is_supported_or_refused(algo):
    """Each boolean key an algorithm accepts, flipped from its default, is either refused with a ConfigError
    or traces through the algorithm's init and update (no error while tracing: what MATRL's inherited
    critic_time used to give)."""
    import dataclasses

    import jax

    from trustmarl.algos import make_algorithm

    cls = algo_config_class(algo)
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    for key in _flipped_bool_keys(algo):
        try:
            cfg = build_config(algo, "matrix/matching_pennies", {f"algo.{key}": not defaults[key], "algo.num_envs": 2,
                                                                 "algo.rollout_len": 2})
        except ConfigError:
            continue
        a = make_algorithm(cfg, total_updates=2)
        state = jax.eval_shape(a.init, jax.random.PRNGKey(0))
        jax.eval_shape(a.update, state)
