"""The documentation site builds with ``mkdocs build --strict`` (no broken links, every page in the nav),
and its generated reference pages list every algorithm key and environment of the registries."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_mkdocs_build_strict_and_generated_reference(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "NO_MKDOCS_2_WARNING": "1", "JAX_PLATFORMS": "cpu"}
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    site = tmp_path / "site"
    for page in ("quickstart", "concepts", "sweeps", "reports", "reproductions", "writing_an_algorithm",
                 "algorithms/hatrpo", "reproductions/hatrpo-figure1", "reference/config", "reference/cli"):
        assert (site / page / "index.html").is_file(), page
    config = (site / "reference" / "config" / "index.html").read_text()
    cli = (site / "reference" / "cli" / "index.html").read_text()
    from trustmarl import algos
    from trustmarl.experiment.config import all_env_names

    for name in algos.algo_names():
        cls = algos.algo_config_class(name)
        if not cls.__module__.startswith("trustmarl."):
            continue  # registered by another test in this process (the docs build sees the package's own)
        assert f"Algorithm <code>{name}</code>" in config
        for f in dataclasses.fields(cls):
            if f.name != "name" and f.name not in getattr(cls, "UNUSED", {}):
                assert f"algo.{f.name}" in config, (name, f.name)
    for env in all_env_names():
        assert f"<code>{env}</code>" in config
    for command in ("train", "eval", "list", "check-env", "sweep", "report", "reproduce"):
        assert f"trustmarl {command}" in cli
    # the maths renders offline: MathJax and its fonts are in the site, nothing is loaded from elsewhere
    mj = site / "javascripts" / "mathjax"
    assert (mj / "tex-mml-chtml.js").stat().st_size > 500_000
    assert list((mj / "output" / "chtml" / "fonts" / "woff-v2").glob("MathJax_Main-Regular.woff"))
    external = re.compile(r"""<(?:script|link|img)[^>]+(?:src|href)=["'](?:https?:)?//""")
    for page in site.rglob("*.html"):
        text = page.read_text()
        assert not external.search(text), (page, external.search(text).group(0))
        if "arithmatex" in text:
            assert "javascripts/mathjax/tex-mml-chtml.js" in text, page
    # nested lists render as nested lists
    home = (site / "index.html").read_text()
    assert re.search(r"<code>trustmarl\.trust</code>[^<]*(?:</p>)?\s*<ul>\s*<li>ratios and clip rules", home), \
        "the home page's nested list is flat"
    for name in _builtin_algorithms():
        assert (site / "algorithms" / name / "index.html").is_file(), name


# ---- docs that cannot drift (cheap: no build) ----------------------------------------------------------

import ast  # noqa: E402
import importlib  # noqa: E402
import io  # noqa: E402
import re  # noqa: E402
import tokenize  # noqa: E402

USER_TEXT = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
DOTTED = re.compile(r"\btrustmarl(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
# internal labels of the design notes, meaningless to a reader: cite papers by authors and year instead
BANNED = re.compile(r"seed[ _-]?00\d|\bspecs?\b|§|\[rec\]", re.IGNORECASE)
FIVE_PAPERS = ("Li et al. 2022", "Kuba et al. 2022", "Wen et al. 2021", "Li et al. 2023", "Sun et al. 2023")


def _resolves(path: str) -> bool:
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for p in parts[i:]:
            if not hasattr(obj, p):
                return False
            obj = getattr(obj, p)
        return True
    return False


def test_every_dotted_path_in_the_docs_imports():
    stale = {}
    for f in USER_TEXT:
        for m in DOTTED.finditer(f.read_text()):
            path = m.group(0)
            if not _resolves(path):
                stale.setdefault(path, set()).add(str(f.relative_to(ROOT)))
    assert not stale, f"stale trustmarl.* names in the docs: {stale}"


def test_every_file_path_in_the_docs_exists():
    paths = re.compile(r"\b(?:trustmarl|tests|benchmarks|examples|docs)/[A-Za-z0-9_./-]+\.(?:py|md|yaml|json|png)\b")
    missing = {p for f in USER_TEXT for p in paths.findall(f.read_text()) if not (ROOT / p).exists()}
    assert not missing, missing


def _builtin_algorithms() -> list[str]:
    from trustmarl import algos

    return [n for n in algos.algo_names() if algos.algo_spec(n).builtin]


def test_home_page_and_overview_list_every_algorithm_with_a_page():
    import yaml as _yaml

    names = set(_builtin_algorithms())
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in ("index.md", "algorithms/index.md"):
        listed = set(re.findall(r"^\| \[?`([a-z0-9_]+)`", (ROOT / "docs" / page).read_text(), re.M))
        assert listed == names, (page, sorted(names - listed), sorted(listed - names))
    for name in names:
        path = ROOT / "docs" / "algorithms" / f"{name}.md"
        assert path.is_file(), f"no page docs/algorithms/{name}.md"
        text = path.read_text()
        assert "| Equation | Code |" in text and "$" in text, f"{name}: equations beside the code"
        assert f"algorithms/{name}.md" in nav, f"{name}'s page is not in the mkdocs nav"
    assert _yaml.safe_load(nav)  # still valid YAML


def test_maths_is_served_by_the_site_not_a_cdn():
    import yaml as _yaml

    config = _yaml.safe_load((ROOT / "mkdocs.yml").read_text().replace("!!python", "#"))
    assets = list(config.get("extra_javascript", [])) + list(config.get("extra_css", []))
    assert assets and not any("://" in str(a) or str(a).startswith("//") for a in assets), assets
    assert "docs/hooks/mathjax.py" in config["hooks"] and config["theme"].get("font") is False
    assert "site/" in (ROOT / ".gitignore").read_text().split()


def test_nested_lists_are_indented_by_four_spaces():
    """Python-Markdown nests a list only when it is indented by 4 spaces; 2 or 3 flatten it."""
    bad = []
    for f in USER_TEXT:
        fence = False
        for i, line in enumerate(f.read_text().splitlines(), 1):
            if line.lstrip().startswith(("```", "~~~")):
                fence = not fence
            elif not fence and re.match(r"^ {1,3}([-*+]|\d+\.) ", line):
                bad.append(f"{f.relative_to(ROOT)}:{i}")
    assert not bad, bad


def test_no_control_characters_from_mangled_latex():
    """A LaTeX command written through a non-raw Python string loses its backslash to an escape (``\\varepsilon``
    -> vertical tab + "arepsilon", ``\\rho`` -> carriage return + "ho"): the maths renders as garbage."""
    bad = [f"{f.relative_to(ROOT)}:{i}" for f in USER_TEXT
           for i, line in enumerate(f.read_bytes().split(b"\n"), 1) if re.search(rb"[\x00-\x09\x0b-\x1f]", line)]
    assert not bad, bad


def test_references_map_the_five_papers_and_reproductions_are_all_listed():
    refs = (ROOT / "docs" / "references.md").read_text()
    for cite in FIVE_PAPERS:
        assert f"| {cite} |" in refs, cite
    from trustmarl.studies.reproduce import reproduction_names

    page = (ROOT / "docs" / "reproductions.md").read_text()
    assert all(f"| `{n}` |" in page for n in reproduction_names()), reproduction_names()


def _user_visible_cli_text() -> str:
    import contextlib

    from trustmarl.experiment import cli

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        for argv in (["list"], ["list", "--keys"], ["reproduce", "--list"]):
            assert cli.main(argv) == 0
    parser = cli._parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return out.getvalue() + parser.format_help() + "".join(p.format_help() for p in sub.choices.values())


def _code_text(path: Path) -> list[tuple[int, str]]:
    """Docstrings (module, class, function) and comments of a Python file, with their line numbers."""
    src = path.read_text()
    out = [(tok.start[0], tok.string) for tok in tokenize.generate_tokens(io.StringIO(src).readline)
           if tok.type == tokenize.COMMENT]
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                out.append((getattr(node, "lineno", 1), doc))
    return out


def test_no_internal_labels_where_a_user_reads():
    """No "seed 00x", "spec", "§" or "[rec]" in the docs, the README, the CLI's listings and help, the
    registered descriptions, or the docstrings and comments of the package and examples: papers are cited
    by authors and year (docs/references.md)."""
    hits = []
    for f in [*USER_TEXT, ROOT / "mkdocs.yml"]:
        for i, line in enumerate(f.read_text().splitlines(), 1):
            if BANNED.search(line):
                hits.append(f"{f.relative_to(ROOT)}:{i}: {line.strip()[:100]}")
    for line in _user_visible_cli_text().splitlines():
        if BANNED.search(line):
            hits.append(f"CLI: {line.strip()[:100]}")
    for f in [*sorted((ROOT / "trustmarl").rglob("*.py")), *sorted((ROOT / "examples").rglob("*.py"))]:
        for lineno, text in _code_text(f):
            for m in BANNED.finditer(text):
                hits.append(f"{f.relative_to(ROOT)}:{lineno}: ...{text[max(0, m.start() - 40):m.end() + 40].strip()}...")
    assert not hits, "internal labels a user would read:\n" + "\n".join(hits)
