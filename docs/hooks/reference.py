"""MkDocs hook: generate the reference pages from the code, so they cannot drift from it.

- ``reference/cli.md``: the help of every ``trustmarl`` subcommand (``trustmarl.experiment.cli._parser``);
- ``reference/config.md``: the run keys (``RunConfig``), every algorithm's ``algo.*`` keys with their
  defaults and types (``trustmarl.algos.algo_config_class``, including the keys an algorithm ignores
  and why), and every environment's ``env.*`` keys (``trustmarl.experiment.config.env_defaults``);
- ``reference/registry.md``: the registered algorithms, environments and reproductions.

Run by ``mkdocs build`` (``hooks:`` in ``mkdocs.yml``); ``python docs/hooks/reference.py DIR`` writes the
same pages into DIR.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # build from a checkout without installing
    sys.path.insert(0, str(ROOT))


def _show(v) -> str:
    if isinstance(v, str):
        return f"`{v}`"
    return f"`{json.dumps(list(v) if isinstance(v, tuple) else v)}`"


def _type(t) -> str:
    s = getattr(t, "__name__", None) if not typing.get_args(t) else None
    return s or str(t).replace("typing.", "")


def cli_page() -> str:
    from trustmarl.experiment import cli

    parser = cli._parser()
    out = ["# Command line", "",
           "Generated from `trustmarl.experiment.cli` when the documentation is built.", "",
           "```text", parser.format_help().rstrip(), "```", ""]
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, p in sub.choices.items():
        out += [f"## `trustmarl {name}`", "", "```text", p.format_help().rstrip(), "```", ""]
    return "\n".join(out)


def config_page() -> str:
    from trustmarl import algos
    from trustmarl.experiment import config as config_mod

    hints = typing.get_type_hints(config_mod.RunConfig)
    out = ["# Configuration keys", "",
           "Generated from the config dataclasses and the environment registry when the documentation is built. "
           "Defaults are the dataclass defaults; the presets in `trustmarl/configs/<algo>.yaml` and "
           "`trustmarl/configs/<algo>/<env family or task>.yaml` override some of them (`trustmarl list --keys NAME`).",
           "", "## Run keys", "", "| key | default | type |", "|---|---|---|"]
    for f in dataclasses.fields(config_mod.RunConfig):
        if f.name in ("algo", "env"):
            continue
        out.append(f"| `{f.name}` | {_show(f.default)} | {_type(hints[f.name])} |")
    out.append("")
    for name in algos.algo_names():
        cls = algos.algo_config_class(name)
        types = typing.get_type_hints(cls)
        unused = getattr(cls, "UNUSED", {})
        choices = getattr(cls, "CHOICES", {})
        out += [f"## Algorithm `{name}`", "", algos.describe_algo(name), "",
                f"Config class `{cls.__module__}.{cls.__qualname__}`.", "",
                "| key | default | type | allowed |", "|---|---|---|---|"]
        for f in dataclasses.fields(cls):
            if f.name == "name" or f.name in unused:
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            allowed = ", ".join(f"`{c}`" for c in choices.get(f.name, ()))
            out.append(f"| `algo.{f.name}` | {_show(default)} | {_type(types[f.name])} | {allowed} |")
        presets = sorted(p.relative_to(config_mod.PRESET_DIR.parent).as_posix()
                         for p in [config_mod.PRESET_DIR / f"{name}.yaml", *sorted((config_mod.PRESET_DIR / name).glob("*.yaml"))]
                         if p.exists())
        out.append("")
        if unused:
            out += ["Keys it inherits but does not use (setting one is an error):", ""]
            out += [f"- `algo.{k}`: {why}" for k, why in unused.items()]
            out.append("")
        if presets:
            out += ["Presets: " + ", ".join(f"`trustmarl/{p}`" for p in presets), ""]
    out += ["## Environment keys", ""]
    for env in config_mod.all_env_names():
        try:
            keys = config_mod.env_defaults(env)
        except Exception as e:  # noqa: BLE001 - an optional package missing in this build
            out += [f"### `{env}`", "", f"(keys unavailable in this build: {type(e).__name__})", ""]
            continue
        out += [f"### `{env}`", ""]
        if keys:
            out += ["| key | default |", "|---|---|"] + [f"| `env.{k}` | {_show(v)} |" for k, v in keys.items()] + [""]
        else:
            out += ["No keys.", ""]
    return "\n".join(out)


def registry_page() -> str:
    from trustmarl import algos
    from trustmarl.envs import registry
    from trustmarl.envs.host import registry as host_registry
    from trustmarl.experiment import config as config_mod
    from trustmarl.studies import reproduce

    out = ["# Registered algorithms, environments and reproductions", "",
           "Generated from the registries when the documentation is built (`trustmarl list`, "
           "`trustmarl reproduce --list`). Optional environment families appear when their extra is installed.",
           "", "## Algorithms", "", "| name | description |", "|---|---|"]
    out += [f"| `{n}` | {algos.describe_algo(n)} |" for n in algos.algo_names()]
    out += ["", "## Environments", "", "| name | description |", "|---|---|"]
    for n in config_mod.all_env_names():
        d = host_registry.describe(n) if host_registry.is_host_env(n) else registry.describe(n)
        out.append(f"| `{n}` | {d} |")
    out += ["", "## Reproductions", "", "| name | paper | figure | smoke | cpu | full |", "|---|---|---|---|---|---|"]
    for n in reproduce.reproduction_names():
        r = reproduce.get_reproduction(n)
        out.append(f"| `{n}` | {r.paper} | {r.figure} | " + " | ".join(r.tiers.get(t, "-") for t in reproduce.TIERS) + " |")
    return "\n".join(out) + "\n"


PAGES = {"reference/cli.md": cli_page, "reference/config.md": config_page, "reference/registry.md": registry_page}


def on_files(files, config):
    """Add the generated pages to the build (mkdocs >= 1.6)."""
    from mkdocs.structure.files import File

    for uri, make in PAGES.items():
        files.append(File.generated(config, uri, content=make()))
    return files


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "reference_pages")
    for uri, make in PAGES.items():
        path = target / uri
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(make())
        print(path)
