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
