"""Studies built from training runs: sweeps (``sweep``), reports with interval estimates (``report``)
and the papers' reproductions (``reproduce``, ``matrl_grid``).

The layers of trustmarl depend one way: ``studies`` -> ``experiment`` (one run: config, runner,
backends, checkpoints, logger, CLI) -> ``algos`` -> ``envs``. Nothing below imports this package
(the CLI imports it lazily, when a study command runs).
"""
