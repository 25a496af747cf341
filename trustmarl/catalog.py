"""The index of the built-in algorithms and JAX-native environments, readable without importing JAX.

``trustmarl --help``, ``trustmarl list``, the name checks of ``train`` and their error messages answer
from ``catalog.json`` (package data) instead of importing every algorithm and environment module, which
pulls in JAX and takes seconds. The registries (:mod:`trustmarl.algos`, :mod:`trustmarl.envs.registry`)
stay the source of truth: the file is written from them by ``python -m trustmarl.catalog`` and
``tests/test_catalog.py`` fails, naming that command, when it differs from what they register.

Each hyperparameter's one-line description is the inline comment beside its field in the config
dataclass (``actor_lr: float = 5e-4  # Adam step size of the actors``), looked up along the class's
bases (:func:`field_help`).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

CATALOG_FILE = Path(__file__).with_name("catalog.json")
_FIELD_LINE = re.compile(r"^\s+(\w+)\s*:")


@functools.lru_cache(maxsize=1)
def load() -> dict[str, Any]:
    """``{"algorithms": {name: {...}}, "environments": {name: {...}}}``; empty when the file is missing."""
    try:
        return json.loads(CATALOG_FILE.read_text())
    except (OSError, ValueError):
        return {"algorithms": {}, "environments": {}}


def algorithms() -> dict[str, dict[str, Any]]:
    return load()["algorithms"]


def environments() -> dict[str, dict[str, Any]]:
    return load()["environments"]


def fresh_algorithm(name: str) -> dict[str, Any] | None:
    """The catalog entry of ``name`` if the hyperparameter classes it was written from are unchanged (their
    source text is hashed; nothing is imported), else ``None``: callers then read the class itself, so a
    checkout whose catalog is out of date is slower, never wrong."""
    entry = algorithms().get(name)
    if entry is None:
        return None
    root = Path(__file__).resolve().parent.parent
    for rel, classes in entry.get("sources", {}).items():
        try:
            text = (root / rel).read_text()
        except OSError:
            return None
        if {q: _class_digest(text, q) for q in classes} != classes:
            return None
    return entry


def _class_digest(module_text: str, qualname: str) -> str | None:
    """A hash of the source of top-level class ``qualname`` in ``module_text`` (``None`` if it is not there)."""
    import ast
    import hashlib

    for node in ast.parse(module_text).body:
        if isinstance(node, ast.ClassDef) and node.name == qualname:
            segment = ast.get_source_segment(module_text, node) or ""
            return hashlib.sha1(segment.encode()).hexdigest()[:16]
    return None


def _sources(cls: type) -> dict[str, dict[str, str]]:
    """``{module path relative to the package's parent: {class: hash}}`` of ``cls`` and its dataclass bases."""
    root = Path(__file__).resolve().parent.parent
    out: dict[str, dict[str, str]] = {}
    for klass in inspect.getmro(cls):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        path = Path(inspect.getfile(klass)).resolve()
        digest = _class_digest(path.read_text(), klass.__qualname__)
        out.setdefault(path.relative_to(root).as_posix(), {})[klass.__qualname__] = digest
    return dict(sorted(out.items()))


# ---- hyperparameter descriptions -----------------------------------------------------------------

def field_help(cls: type) -> dict[str, str]:
    """``{field: one-line description}`` from the inline comments of the dataclass ``cls`` and its bases
    (the most derived class that comments a field wins); fields without a comment are left out."""
    out: dict[str, str] = {}
    for klass in reversed(inspect.getmro(cls)):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        own = set(getattr(klass, "__annotations__", {}))
        lines = source.splitlines()
        for row, comment in _comments(source).items():
            m = _FIELD_LINE.match(lines[row - 1])
            if m and m.group(1) in own:
                out[m.group(1)] = comment
    return out


def _comments(source: str) -> dict[int, str]:
    """``{line number: comment text}`` of the comments that end a line of code (not whole-line comments)."""
    import io
    import tokenize

    out: dict[int, str] = {}
    code_rows: set[int] = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(textwrap.dedent(source)).readline):
            if tok.type == tokenize.COMMENT and tok.start[0] in code_rows:
                parts = [p.strip() for p in tok.string.split("#")[1:]]  # "# type: ignore[...]  # text"
                text = next((p for p in parts if p and not p.startswith(("type:", "noqa", "pragma"))), "")
                if text:
                    out[tok.start[0]] = text
            elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.COMMENT):
                code_rows.add(tok.start[0])
    except (tokenize.TokenError, IndentationError):
        pass
    return out


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def config_keys(cls: type) -> dict[str, dict[str, Any]]:
    """``{key: {"default": ..., "help": ...}}`` for the fields of a hyperparameter dataclass (not ``name``,
    not the keys it declares ``UNUSED``)."""
    helps = field_help(cls)
    unused = getattr(cls, "UNUSED", {})
    out = {}
    for f in dataclasses.fields(cls):
        if f.name == "name" or f.name in unused:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            continue
        out[f.name] = {"default": _plain(default), "help": helps.get(f.name, "")}
    return out


def env_keys(name: str) -> dict[str, dict[str, Any]]:
    """``{key: {"default": ..., "help": ...}}`` of a JAX-native environment (imports its module)."""
    from trustmarl.envs import registry

    factory = registry.env_factory(name)
    helps = field_help(factory) if inspect.isclass(factory) and dataclasses.is_dataclass(factory) else {}
    return {k: {"default": _plain(v), "help": helps.get(k, "")} for k, v in registry.env_defaults(name).items()}


# ---- building the file from the registries ---------------------------------------------------------

def build() -> dict[str, Any]:
    """The catalog of the algorithms and JAX-native environments registered by the package itself."""
    from trustmarl import algos
    from trustmarl.envs import registry

    out: dict[str, Any] = {"algorithms": {}, "environments": {}}
    for name in algos.registered_names():
        spec = algos.algo_spec(name)
        if not spec.builtin:
            continue  # registered by a user module in this process
        cls = spec.config_cls
        out["algorithms"][name] = {
            "description": spec.description, "family": spec.family, "action_kinds": list(spec.action_kinds),
            "config": f"{cls.__module__}:{cls.__qualname__}",
            "keys": config_keys(cls), "unused": dict(getattr(cls, "UNUSED", {})), "sources": _sources(cls),
        }
    for name in registry.registered_names():
        factory = registry.env_factory(name)
        if not getattr(factory, "__module__", "").startswith("trustmarl."):
            continue
        try:
            keys = env_keys(name)
        except Exception:  # noqa: BLE001 - an optional package is missing: keys are read when needed
            keys = None
        out["environments"][name] = {"description": registry.describe(name), "keys": keys}
    return json.loads(json.dumps(out))  # tuples -> lists, as read back


def main(argv: list[str] | None = None) -> int:
    """``python -m trustmarl.catalog``: write ``catalog.json``; ``--check``: exit 1 if it is out of date."""
    argv = sys.argv[1:] if argv is None else argv
    data = build()
    text = json.dumps(data, indent=1) + "\n"
    if "--check" in argv:
        current = CATALOG_FILE.read_text() if CATALOG_FILE.is_file() else ""
        if current != text:
            print(f"{CATALOG_FILE} is out of date; run: python -m trustmarl.catalog", file=sys.stderr)
            return 1
        return 0
    CATALOG_FILE.write_text(text)
    print(f"wrote {CATALOG_FILE}: {len(data['algorithms'])} algorithms, {len(data['environments'])} environments")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
