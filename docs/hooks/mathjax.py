"""MkDocs hook: serve MathJax from the site itself, so the maths renders offline (no CDN).

The MathJax 3 files come from the ``django-static-mathjax`` package (a copy of MathJax with no
dependencies; installed by the ``docs`` and ``test`` extras): the combined ``tex-mml-chtml.js``
component, its CommonHTML fonts, and the pieces it loads on demand (TeX extensions, the menu,
accessibility), about 4 MB, are added to the build as ``javascripts/mathjax/...``.
"""

from __future__ import annotations

from pathlib import Path

SITE_DIR = "javascripts/mathjax"
ENTRY = "tex-mml-chtml.js"
ON_DEMAND = ("output/chtml/", "input/tex/extensions/", "ui/", "a11y/")


def mathjax_root() -> Path:
    """The ``es5`` folder of the installed MathJax copy."""
    try:
        import mathjax
    except ImportError:
        from mkdocs.exceptions import PluginError

        raise PluginError("the documentation's maths needs MathJax: pip install -e '.[docs]' "
                          "(the django-static-mathjax package)") from None
    return Path(mathjax.__file__).resolve().parent / "static" / "mathjax" / "es5"


def asset_paths() -> list[str]:
    root = mathjax_root()
    out = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and (rel == ENTRY or rel.startswith(ON_DEMAND)):
            out.append(rel)
    return out


def on_files(files, config):
    from mkdocs.structure.files import File

    root = mathjax_root()
    for rel in asset_paths():
        files.append(File.generated(config, f"{SITE_DIR}/{rel}", abs_src_path=str(root / rel)))
    return files
