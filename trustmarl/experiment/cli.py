"""The ``trustmarl`` command line.

    trustmarl train ALGO ENV [key=value ...] [--out DIR] [--config FILE] [--preset NAME] [--overwrite] [--no-progress]
    trustmarl train --resume RUN_DIR [total_steps=N]
    trustmarl eval RUN_DIR [--episodes N] [--stochastic] [--render [GIF]]
    trustmarl list [--keys [NAME]]
    trustmarl check-env ENV [env.key=value ...] [--seed S]
    trustmarl sweep SWEEP.yaml [--out DIR] [--jobs N] [--ray [ADDRESS]] [--overwrite] [--dry-run]
    trustmarl report DIR [DIR ...] [--out DIR] [--metric NAME]
    trustmarl reproduce NAME [--tier smoke|cpu|full] [--out DIR]  |  trustmarl reproduce --list

Bad input (unknown algorithm, environment or key, wrong type, out-of-range value, bad run
directory) prints one line ``trustmarl: error: ...`` on stderr and exits with code 2 before
anything is compiled. A run whose losses become NaN/inf exits with code 3; a host environment that
raises (``HostEnvError``) exits with code 4 (the run stays resumable); Ctrl-C saves a checkpoint of
the last completed chunk and exits with code 130.

ENV is the same string for ``train``, ``eval`` (through the saved config) and ``check-env``: a
JAX-native env (``mpe/simple_spread``), a host env preset (``pettingzoo/simple_spread``,
``sisl/multiwalker``, ``mamujoco/halfcheetah_2x3``, ...), or an import path ``module.path:Attr`` to
your own JAX-native env class (its dataclass fields as ``env.*`` keys) or to a PettingZoo Parallel
API env factory (its keyword arguments as ``env.*`` keys; ``pettingzoo:module.path:attr`` also works).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from trustmarl.validation import ConfigError

# Nothing here imports JAX: ``--help``, ``list`` and argument errors answer in a fraction of a second
# (benchmarks/bench_cli.py); the modules that train, evaluate or report are imported by their command.

EXIT_OK, EXIT_USAGE, EXIT_DIVERGED, EXIT_ENV_ERROR, EXIT_INTERRUPTED = 0, 2, 3, 4, 130
TIERS = ("smoke", "cpu", "full")  # trustmarl.studies.reproduce.TIERS (a test keeps them equal)


class UsageError(Exception):
    """Bad command-line input; reported as one line and exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        raise UsageError(message)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str):
        super().__init__(prog, max_help_position=30, width=100)


def _wrap(text: str) -> str:
    import textwrap

    return textwrap.fill(text, width=100)


def _epilog(*examples: str, notes: str = "") -> str:
    text = "examples:\n" + "\n".join(f"  {e}" for e in examples)
    return text + (f"\n\n{notes}" if notes else "")


def _run_keys_help() -> str:
    from trustmarl.experiment.config import run_key_help

    helps = run_key_help()
    lines = ["run keys (key=value; `trustmarl list --keys` shows algo.* and env.* keys):"]
    for k, v in _run_keys().items():
        lines.append(f"  {k}={_show(v)}".ljust(30) + f" {helps.get(k, '')}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="trustmarl", description=_wrap("Multi-agent RL with trust-region methods (JAX)."),
                formatter_class=_Formatter,
                epilog=_epilog("trustmarl train mappo mpe/simple_spread total_steps=1000000",
                               "trustmarl eval runs/<run> --episodes 100",
                               notes=_wrap("`trustmarl COMMAND --help` documents each command; docs/experiments.md the "
                                           "rest. Compiled programs are cached in ~/.cache/trustmarl/jax "
                                           "(TRUSTMARL_COMPILATION_CACHE=DIR or off): a run started again with the same "
                                           "settings starts in seconds.")))
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    t = sub.add_parser(
        "train", help="train ALGO on ENV (or resume a run)", formatter_class=_Formatter,
        usage="trustmarl train ALGO ENV [key=value ...] [options]\n       trustmarl train --resume RUN_DIR [total_steps=N] [--rescale-schedule]",
        description=_wrap("Train ALGO (`trustmarl list`, or module.path:Class for an algorithm of your own) on ENV "
                    "(`trustmarl list`, or module.path:Attr for an environment of your own). Settings: dataclass "
                    "defaults < packaged presets < --preset < --config < key=value."),
        epilog=_epilog("trustmarl train happo mpe/simple_spread algo.clip_eps=0.1 num_seeds=4 --out runs/happo",
                       "trustmarl train --resume runs/happo total_steps=4000000 --rescale-schedule",
                       "trustmarl train examples.iql:IQL mpe/simple_spread total_steps=200000",
                       notes=_run_keys_help()))
    t.add_argument("args", nargs="*", metavar="ALGO ENV [key=value ...]",
                   help="algorithm, environment and overrides: run keys (below), algo.KEY=VALUE, env.KEY=VALUE")
    t.add_argument("--out", type=Path, metavar="DIR", help="run directory (default runs/<algo>_<env>_<time>)")
    t.add_argument("--config", type=Path, metavar="FILE", help="YAML file of settings (applied before key=value)")
    t.add_argument("--preset", metavar="NAME", help="a named preset variant on top of the defaults, e.g. "
                   "'paper' for a paper's exact settings (files configs/<algo>/<...>.NAME.yaml)")
    t.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    t.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR from its last "
                   "checkpoint; only total_steps, devices (and env.num_workers) may change")
    t.add_argument("--rescale-schedule", action="store_true",
                   help="with --resume and a new total_steps on a run that anneals its learning rate "
                        "(algo.anneal_lr=true): continue on the schedule of a run of the new length, "
                        "lr*(1 - update/new_updates), instead of refusing")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")

    e = sub.add_parser(
        "eval", help="evaluate the last checkpoint of a run", formatter_class=_Formatter,
        description=_wrap("Evaluate the last checkpoint of RUN_DIR on fresh episodes of every seed (greedy actions unless "
                    "--stochastic) and print the mean team return, each agent's return and the env's outcomes."),
        epilog=_epilog("trustmarl eval runs/happo --episodes 100", "trustmarl eval runs/happo --render episode.gif",
                       "trustmarl eval runs/isac_battle --env map_size=125"))
    e.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory written by `trustmarl train`")
    e.add_argument("--episodes", type=int, default=None, metavar="N", help="episodes per seed (default: the run's eval_episodes)")
    e.add_argument("--stochastic", action="store_true", help="sample actions instead of the greedy/mean action")
    e.add_argument("--render", nargs="?", const="", default=None, metavar="FILE",
                   help="also record one episode of seed 0 (default RUN_DIR/episode.gif; a .mp4 FILE writes a "
                        "video when imageio[ffmpeg] is installed); headless")
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    e.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="evaluate on the run's env with this key changed, no training (transfer, e.g. "
                        "--env map_size=125 for MAgent2 battle); a policy that does not fit is refused")

    ls = sub.add_parser(
        "list", help="algorithms, environments and their hyperparameters", formatter_class=_Formatter,
        description=_wrap("List the algorithms and environments, or with --keys the hyperparameters of one of them "
                    "(each with its default and a one-line description)."),
        epilog=_epilog("trustmarl list", "trustmarl list --keys happo", "trustmarl list --keys mpe/simple_spread"))
    ls.add_argument("--keys", nargs="?", const="all", metavar="NAME",
                    help="the hyperparameter keys of NAME (an algorithm, environment or import path; all if omitted)")

    c = sub.add_parser(
        "check-env", help="check an environment (yours or a registered one) against the contract",
        formatter_class=_Formatter,
        description=_wrap("Check ENV against the environment contract (spaces, shapes, dtypes, reset/step, "
                    "determinism); ENV as for train: a registered name, module.path:Attr or pettingzoo:module.path:attr."),
        epilog=_epilog("trustmarl check-env my_pkg.my_env:MyEnv env.size=7", "trustmarl check-env sisl/pursuit --seed 3"))
    c.add_argument("env", metavar="ENV", help="the environment to check")
    c.add_argument("overrides", nargs="*", metavar="env.key=value", help="the environment's hyperparameters")
    c.add_argument("--seed", type=int, default=0, help="seed of the checked episodes (default 0)")
    _add_study_parsers(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if os.getcwd() not in sys.path and "" not in sys.path:  # import paths of your own modules resolve from here,
        sys.path.insert(0, os.getcwd())  # as with `python -m trustmarl`
    try:
        args = _parse(argv)
    except UsageError as e:
        return _error(str(e))
    except SystemExit as e:  # --help
        return int(e.code or 0)
    try:
        if args.command != "list":  # every command that compiles: its programs are loaded next time (same numbers)
            from trustmarl.compilation import enable_compilation_cache

            enable_compilation_cache()
        commands = {"train": _train, "eval": _eval, "list": _list, "check-env": _check_env, **_STUDY_COMMANDS}
        return commands[args.command](args)
    except BrokenPipeError:  # `trustmarl list | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except (ConfigError, UsageError) as e:
        return _error(str(e))
    except Exception as e:
        if _is(e, "trustmarl.experiment.checkpoint", "CheckpointError"):
            return _error(str(e))
        if _is(e, "trustmarl.envs.base", "RenderError"):
            return _error(f"cannot render: {e}")
        if _is(e, "trustmarl.envs.host", "HostEnvError"):  # an env copy failed while building/resetting
            print(f"trustmarl: error: host environment failed: {e}", file=sys.stderr)
            return EXIT_ENV_ERROR
        raise


def _is(exc: BaseException, module: str, name: str) -> bool:
    """``isinstance(exc, module.name)`` without importing ``module`` (if it was never imported, ``exc`` is not one)."""
    cls = getattr(sys.modules.get(module), name, None)
    return cls is not None and isinstance(exc, cls)


def _parse(argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; ``train`` accepts key=value items before and after its options."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "train":
        args.args += [a for a in extra if not a.startswith("-")]
        extra = [a for a in extra if a.startswith("-")]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _error(message: str) -> int:
    print(f"trustmarl: error: {' '.join(str(message).split())}", file=sys.stderr)
    return EXIT_USAGE


# ---- train ---------------------------------------------------------------------------------------

def default_out_dir(algo: str, env: str) -> Path:
    env = env.replace("/", "_").replace(":", "_")
    return Path("runs") / f"{algo}_{env}_{time.strftime('%Y%m%d-%H%M%S')}"


def _check_run_dir(path: Path) -> None:
    """The checks of ``runner.load_run_config`` that need no JAX (its messages), made before importing the runner."""
    if not path.is_dir():
        raise UsageError(f"run directory {str(path)!r} does not exist")
    if not (path / "config.yaml").is_file():
        raise UsageError(f"{str(path)!r} is not a trustmarl run directory (no config.yaml)")


def _train(args) -> int:
    from trustmarl.experiment.config import build_config, parse_overrides

    if args.resume is not None:
        if args.config is not None or args.out is not None or args.overwrite or args.preset is not None:
            raise UsageError("--resume cannot be combined with --config, --preset, --out or --overwrite")
        bad = [a for a in args.args if "=" not in a]
        if bad:
            raise UsageError(f"with --resume only key=value overrides are allowed, got {bad[0]!r}")
        _check_run_dir(args.resume)
        from trustmarl.experiment import runner

        cfg = runner.resume_config(args.resume, parse_overrides(args.args))
        return _run(runner, cfg, args.resume, resume=True, args=args)
    if args.rescale_schedule:
        raise UsageError("--rescale-schedule applies to --resume RUN_DIR total_steps=N only")
    if len(args.args) < 2 or "=" in args.args[0] or "=" in args.args[1]:
        raise UsageError("train needs ALGO and ENV (e.g. trustmarl train mappo mpe/simple_spread), or --resume RUN_DIR")
    algo, env, *rest = args.args
    cfg = build_config(algo, env, parse_overrides(rest), args.config, preset=args.preset)
    out = args.out if args.out is not None else default_out_dir(cfg.algo.name, env)
    from trustmarl.experiment import runner

    return _run(runner, cfg, out, resume=False, args=args)


def _run(runner, cfg, out: Path, resume: bool, args) -> int:
    kwargs = {"rescale_schedule": True} if resume and args.rescale_schedule else {}
    try:
        summary = runner.train(cfg, out, resume=resume, overwrite=args.overwrite, progress=not args.no_progress,
                               **kwargs)
    except KeyboardInterrupt:
        print(f"trustmarl: interrupted; continue with: trustmarl train --resume {out}", file=sys.stderr)
        return EXIT_INTERRUPTED
    status = summary.get("status")
    return EXIT_DIVERGED if status == "diverged" else EXIT_ENV_ERROR if status == "env_error" else EXIT_OK


# ---- eval ----------------------------------------------------------------------------------------

def _eval(args) -> int:
    if args.episodes is not None and args.episodes < 1:
        raise UsageError(f"--episodes {args.episodes} must be >= 1")
    if args.render:
        suffix = Path(args.render).suffix.lower()
        if suffix not in (".gif", ".mp4"):
            raise UsageError(f"--render {args.render}: the file name must end in .gif or .mp4")
        import importlib.util

        if suffix == ".mp4" and not all(importlib.util.find_spec(m) for m in ("imageio", "imageio_ffmpeg")):
            raise UsageError("--render *.mp4 needs imageio with ffmpeg: pip install 'imageio[ffmpeg]' (or name a .gif file)")
    _check_run_dir(args.run_dir)
    from trustmarl.experiment.runner import evaluate_run

    from trustmarl.experiment.config import parse_overrides

    env_params = {k.removeprefix("env."): v for k, v in parse_overrides(args.env).items()}
    if env_params and args.render is not None:
        raise UsageError("--render records the run's own env; leave out --env")
    res = evaluate_run(args.run_dir, episodes=args.episodes, deterministic=not args.stochastic, env_params=env_params)
    if args.json:
        print(json.dumps(res))
        return EXIT_OK
    mode = "deterministic" if res["deterministic"] else "stochastic"
    per_seed = ", ".join(f"{r:.4g}" for r in res["per_seed_return"])
    per_agent = ", ".join(f"{r:.4g}" for r in res["mean_return_per_agent"])
    outcomes = "".join(
        f"; {k[len('mean_'):].replace('_', ' ')} {res[k]:.3g}" for k in sorted(res)
        if k.startswith("mean_") and k not in ("mean_return", "mean_return_sum", "mean_return_per_agent", "mean_length")
    )
    print(
        f"{res['algo']} on {res['env']}{''.join(f' {k}={v}' for k, v in res['env_params'].items())} at update {res['update']} ({res['env_steps']} env steps): "
        f"mean return {res['mean_return']:.4g} over {res['episodes']} {mode} episodes per seed "
        f"(per seed: {per_seed}); per agent [{per_agent}], sum over agents {res['mean_return_sum']:.4g}; "
        f"mean length {res['mean_length']:.4g}{outcomes}"
    )
    if args.render is not None:
        from trustmarl.experiment.runner import render_run

        out = render_run(args.run_dir, args.render or None, deterministic=not args.stochastic)
        every = f", every {out['stride']}th step" if out["stride"] > 1 else ""
        print(f"episode of {out['steps']} steps (return {out['return']:.4g}) written to {out['path']}: "
              f"{out['frames']} frames at {out['fps']:.3g} fps{every}")
    return EXIT_OK


# ---- list ----------------------------------------------------------------------------------------

def _list(args) -> int:
    """Names, descriptions and keys come from :mod:`trustmarl.catalog` (no JAX) for the built-in algorithms and
    environments; only an import path, or a name registered in this process, is looked up in its module."""
    from trustmarl import algos, catalog
    from trustmarl.experiment import config as config_mod

    algo_names, env_names = algos.algo_names(), config_mod.all_env_names()
    describe = config_mod.describe_env

    if args.keys is None:
        print("algorithms:")
        for n in algo_names:
            print(f"  {n:24s} {algos.describe_algo(n)}")
        print(f"  {'MODULE:CLASS':24s} your own algorithm by import path (registered with trustmarl.algos.register_algo)")
        print("environments:")
        for n in env_names:
            print(f"  {n:24s} {describe(n)}")
        print(f"  {'MODULE:ATTR':24s} your own env by import path: a trustmarl MultiAgentEnv class, or a "
              "PettingZoo Parallel env factory (also written pettingzoo:MODULE:ATTR)")
        print("run keys: " + ", ".join(_run_keys()))
        print("hyperparameters: trustmarl list --keys NAME")
        return EXIT_OK
    names = algo_names + env_names if args.keys == "all" else [args.keys]
    shown_algo = False
    for name in names:
        if name in algo_names or _is_algorithm_path(name):
            entry = catalog.fresh_algorithm(name)
            if entry is None:
                spec = algos.algo_spec(name)  # an import path, or registered in this process: read its class
                entry = {"description": spec.description, "keys": catalog.config_keys(spec.config_cls),
                         "unused": dict(getattr(spec.config_cls, "UNUSED", {}))}
                name = spec.name
            print(f"{name} (algorithm): {entry['description']}")
            _print_keys("algo.", entry["keys"])
            if entry["unused"]:
                print(f"  (not used by {name}: {', '.join('algo.' + k for k in entry['unused'])})")
            shown_algo = True
        elif name in env_names or config_mod.is_known_env(name):
            print(f"{name} (environment): {describe(name)}")
            keys = config_mod.env_key_help(name)
            _print_keys("env.", keys)
            if config_mod.is_host(name):
                from trustmarl.envs.host import registry as host_registry

                if host_registry.is_generic(name):
                    print("  (any other env.KEY=VALUE is passed to the factory as a keyword argument)")
        else:
            raise UsageError(
                f"unknown name {name!r}; choose an algorithm ({', '.join(algo_names)}) "
                f"or an environment ({', '.join(env_names)})"
            )
    if shown_algo:
        print("(algorithm defaults; presets in trustmarl/configs/<algo>[/<env>].yaml may override them)")
    if args.keys == "all":
        from trustmarl.experiment.config import run_key_help

        print("run keys:")
        _print_keys("", {k: {"default": v, "help": run_key_help().get(k, "")} for k, v in _run_keys().items()})
    return EXIT_OK


def _is_algorithm_path(name: str) -> bool:
    """An import path that names a registered algorithm (importing its module); else an environment's."""
    from trustmarl import algos

    if not algos.is_import_path(name):
        return False
    try:
        algos.algo_spec(name)
    except ConfigError:
        return False
    return True


def _print_keys(prefix: str, keys: dict[str, dict[str, Any]]) -> None:
    """One line per key: ``  algo.clip_eps = 0.2   the PPO clip range (Schulman et al. 2017)``."""
    width = max((len(prefix + k) + len(_show(v["default"])) for k, v in keys.items()), default=0) + 5
    for k, v in keys.items():
        text = f"  {prefix}{k} = {_show(v['default'])}"
        print(f"{text.ljust(width)} {v['help']}".rstrip() if v.get("help") else text)


def _dataclass_defaults(cls) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out[f.name] = f.default_factory()  # type: ignore[misc]
    return out


def _run_keys() -> dict[str, Any]:
    from trustmarl.experiment.config import RunConfig

    d = _dataclass_defaults(RunConfig)
    return {k: v for k, v in d.items() if k not in ("algo", "env")}


def _show(v: Any) -> str:
    return json.dumps(list(v) if isinstance(v, tuple) else v) if not isinstance(v, str) else v


# ---- check-env -----------------------------------------------------------------------------------

def _check_env(args) -> int:
    """Check ENV (any name ``train`` accepts, with ``env.*`` overrides) against the contract; 0 if OK, 1 if not."""
    from trustmarl.envs import checker
    from trustmarl.envs import registry
    from trustmarl.envs.host import registry as host_registry
    from trustmarl.experiment import config as config_mod
    from trustmarl.experiment.config import parse_overrides

    name = args.env
    kind = config_mod.env_kind(name)  # one line + exit 2 for an unknown name
    overrides = parse_overrides(args.overrides)
    bad = [k for k in overrides if not k.startswith("env.")]
    if bad:
        raise UsageError(f"check-env takes env.key=value overrides only, got {bad[0]!r}")
    env_cfg = config_mod.EnvConfig(name, {k[4:]: v for k, v in overrides.items()})
    config_mod.validate_env(env_cfg)
    if kind == "jax":
        env = registry.make(name, **env_cfg.params)
    else:
        params = {k: v for k, v in env_cfg.params.items() if k != "num_workers"}
        try:
            env = host_registry.make_factory(name, params)()
        except Exception as e:  # noqa: BLE001 - the user wants to know why building failed
            print(f"{name}: 1 problem(s) found:\n  - could not build the environment: {type(e).__name__}: {e}")
            return 1
    return checker.report(name, checker.check_env(env, seed=args.seed))


# ---- sweep, report, reproduce (trustmarl.studies.sweep / report / reproduce) -----------------------

def _add_study_parsers(sub) -> None:
    """Subcommands for studies over many runs: ``sweep``, ``report`` and ``reproduce``."""
    s = sub.add_parser(
        "sweep", help="run a grid of algorithms x environments x overrides x seeds from a YAML file",
        formatter_class=_Formatter,
        description=_wrap("Run every configuration of SWEEP.yaml (algos x envs x grid, seeds vmapped in one run per "
                    "configuration), --jobs at a time or as Ray tasks. Running it again skips finished runs and "
                    "resumes killed ones. The file format: docs/sweeps.md."),
        epilog=_epilog("trustmarl sweep compare.yaml --jobs 2", "trustmarl sweep compare.yaml --dry-run",
                       "trustmarl sweep compare.yaml --ray auto"))
    s.add_argument("spec", type=Path, metavar="SWEEP.yaml", help="the sweep file (keys: name, algos, envs, seeds, "
                   "overrides, grid, runs, imports, resources)")
    s.add_argument("--out", type=Path, metavar="DIR", help="sweep directory (default sweeps/<name>)")
    s.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="runs at a time, each in its own process (default: half the CPU cores, at least 1)")
    s.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run each run as a Ray task: no ADDRESS starts a local Ray; 'auto' or HOST:PORT joins a cluster")
    s.add_argument("--overwrite", action="store_true", help="replace an existing sweep directory and start afresh (without it, the same sweep continues)")
    s.add_argument("--dry-run", action="store_true", help="validate the file and list the runs; start nothing")

    r = sub.add_parser(
        "report", help="learning curves, final-performance table and diagnostics of runs or sweeps",
        formatter_class=_Formatter,
        description=_wrap("Compare runs: learning curves with 95% bootstrap bands over seeds, mean/IQM of the final "
                    "scores with 95% CIs, probability of improvement, per-agent returns and trust-region diagnostics; "
                    "PNG/SVG figures, Markdown, one HTML page and marl-eval JSON (docs/reports.md). Intervals need "
                    "at least 5 seeds per configuration to be reliable."),
        epilog=_epilog("trustmarl report sweeps/compare", "trustmarl report runs/a runs/b --metric sum --out report"))
    r.add_argument("dirs", type=Path, nargs="+", metavar="DIR", help="run directories, sweep directories or folders of runs")
    r.add_argument("--out", type=Path, metavar="DIR", help="report directory (default: DIR/report for one DIR, else report/)")
    r.add_argument("--metric", default=None, metavar="NAME",
                   help="compared metric: team, sum, eval, eval_sum, win_rate or a column name (default: the win rate, "
                        "else the evaluation return, else the team return)")
    r.add_argument("--title", default=None, help="title of the report")
    r.add_argument("--reps", type=int, default=2000, metavar="N", help="bootstrap resamples (default 2000, at least 100)")

    p = sub.add_parser(
        "reproduce", help="small-scale reproductions of the papers' headline experiments", formatter_class=_Formatter,
        usage="trustmarl reproduce NAME [--tier {smoke,cpu,full}] [options]\n       trustmarl reproduce --list",
        description=_wrap("Run one of the papers' headline experiments at a tier and write its report, the paper's "
                    "numbers beside ours (docs/reproductions.md); running it again continues."),
        epilog=_epilog("trustmarl reproduce --list", "trustmarl reproduce hatrpo-figure1 --tier cpu"))
    p.add_argument("name", nargs="?", metavar="NAME", help="a reproduction (trustmarl reproduce --list)")
    p.add_argument("--list", action="store_true", help="list the reproductions: paper, figure, tiers and their measured times")
    p.add_argument("--tier", default="smoke", choices=TIERS,
                   help="smoke (minutes), cpu (a 2-core machine, at most a few hours) or full (paper scale); default smoke")
    p.add_argument("--out", type=Path, metavar="DIR", help="output directory (default reproductions/<name>-<tier>)")
    p.add_argument("--jobs", type=int, default=None, metavar="N", help="runs at a time (default: half the CPU cores, at least 1)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory of another tier")

    x = sub.add_parser(
        "crossplay", help="play two runs' kept checkpoints against each other (two-player games)",
        formatter_class=_Formatter,
        description=_wrap("Player 0 from every kept checkpoint of RUN_A (train with checkpoint_keep=K) against player 1 "
                    "from every kept checkpoint of RUN_B, N episodes per pair: the matrix of player 0's mean return "
                    "(JSON, CSV), a heat map (PNG) and how transitive it is (Wen et al. 2021, Figure 6)."),
        epilog=_epilog("trustmarl train matrl matrix/matching_pennies checkpoint_keep=20 total_steps=200000 --out runs/a",
                       "trustmarl crossplay runs/matrl runs/il --episodes 20 --out crossplay/matrl_vs_il"))
    x.add_argument("run_a", type=Path, metavar="RUN_A", help="run whose checkpoints play agent 0")
    x.add_argument("run_b", type=Path, metavar="RUN_B", help="run whose checkpoints play agent 1")
    x.add_argument("--episodes", type=int, default=20, metavar="N", help="episodes per checkpoint pair (default 20)")
    x.add_argument("--out", type=Path, metavar="DIR", help="output directory (default RUN_A/crossplay_<RUN_B name>)")
    x.add_argument("--seed-a", type=int, default=0, metavar="S", help="which of RUN_A's training seeds plays (default 0)")
    x.add_argument("--seed-b", type=int, default=0, metavar="S", help="which of RUN_B's training seeds plays (default 0)")
    x.add_argument("--deterministic", action="store_true", help="greedy/mean actions instead of samples")


def _default_jobs() -> int:
    import os

    return max(1, (os.cpu_count() or 2) // 2)


def _sweep(args) -> int:
    from trustmarl.studies import sweep as sweep_mod

    if args.ray is not None and args.jobs is not None:
        raise UsageError("--jobs applies to local runs; with --ray, Ray schedules the runs by their resources")
    jobs = _default_jobs() if args.jobs is None else args.jobs
    if jobs < 1:
        raise UsageError(f"--jobs {jobs} must be >= 1")
    sw = sweep_mod.load_sweep(args.spec)
    out = args.out if args.out is not None else Path("sweeps") / sw.name
    if args.dry_run:
        print(f"sweep {sw.name!r}: {len(sw.runs)} runs -> {out}")
        for r in sw.runs:
            print(f"  {r.name}: {sweep_mod.format_overrides({'algo': r.algo, 'env': r.env, **r.train_overrides()})}")
        return EXIT_OK
    if args.ray is not None:
        sweep_mod.check_ray_address(args.ray)
    try:
        res = sweep_mod.run_sweep(sw, out, jobs=jobs, use_ray=args.ray is not None, ray_address=args.ray,
                                  overwrite=args.overwrite, spec_text=args.spec.read_text())
    except KeyboardInterrupt:
        print(f"trustmarl: sweep interrupted; continue with: trustmarl sweep {args.spec} --out {out}", file=sys.stderr)
        return EXIT_INTERRUPTED
    done = sum(1 for s in res["runs"].values() if s == "completed")
    print(f"sweep {sw.name!r}: {done}/{len(res['runs'])} runs completed in {out}")
    for f in res["failed"]:
        print(f"  {f['status']}: {f['name']}: {f['message']}\n    config: {sweep_mod.format_overrides(f['config'])}")
    if res["failed"]:
        print(f"re-run `trustmarl sweep {args.spec} --out {out}` to retry failed and resume interrupted runs "
              f"(diverged runs are kept; delete their directory to run them again)")
        return 1
    print(f"report: trustmarl report {out}")
    return EXIT_OK


def _report(args) -> int:
    from trustmarl.studies import report as report_mod

    if args.reps < 100:
        raise UsageError(f"--reps {args.reps} must be >= 100")
    runs = report_mod.load_runs(args.dirs)  # ReportError (a ConfigError) for anything that is not a run
    out = args.out if args.out is not None else (args.dirs[0] / "report" if len(args.dirs) == 1 else Path("report"))
    res = report_mod.write_report(runs, out, metric=args.metric, title=args.title, reps=args.reps)
    print(f"report of {len(runs)} runs ({res['metric']}: {res['metric_reason']}) written to {out}: "
          + ", ".join(Path(f).name for f in res["files"]))
    return EXIT_OK


def _require_report_extra(command: str, modules: tuple[str, ...] = ("matplotlib", "rliable")) -> None:
    """A command that ends by drawing its report: refuse it before any work when the ``report`` extra is missing
    (otherwise hours of training end in an ImportError)."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"{command} writes its report with {' and '.join(modules)} ({', '.join(missing)} not installed): "
                         "pip install 'trustmarl[report]'")


def _reproduce(args) -> int:
    from trustmarl.studies import reproduce as repro

    if args.list:
        if args.name:
            raise UsageError("--list takes no NAME")
        print(repro.format_list())
        return EXIT_OK
    if not args.name:
        raise UsageError(f"reproduce needs NAME (one of: {', '.join(repro.reproduction_names())}) or --list")
    jobs = _default_jobs() if args.jobs is None else args.jobs
    if jobs < 1:
        raise UsageError(f"--jobs {jobs} must be >= 1")
    _require_report_extra("trustmarl reproduce")
    try:
        res = repro.reproduce(args.name, args.tier, args.out, jobs=jobs, overwrite=args.overwrite)
    except KeyboardInterrupt:
        print("trustmarl: interrupted; run the same command again to continue", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(repro.format_verdict(res))
    print(f"{args.name} ({args.tier}) done in {res['wall_seconds']:.0f}s; report: {res.get('report', res['out_dir'])}")
    return EXIT_OK


def _crossplay(args) -> int:
    from trustmarl.studies import crossplay as cp

    _require_report_extra("trustmarl crossplay", ("matplotlib",))  # the heat map, drawn after every pair is played
    out = args.out if args.out is not None else args.run_a / f"crossplay_{args.run_b.name}"
    res = cp.crossplay(args.run_a, args.run_b, args.episodes, out, args.seed_a, args.seed_b, args.deterministic)
    print(cp.format_result(res))
    print(f"written to {out}: " + ", ".join(Path(f).name for f in res["files"]))
    return EXIT_OK


_STUDY_COMMANDS = {"sweep": _sweep, "report": _report, "reproduce": _reproduce, "crossplay": _crossplay}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
