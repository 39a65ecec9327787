"""Sphinx extension: serve MathJax 3 from the built book itself, so that every formula is
typeset without a network (a classroom, a zip of the site, a browser offline).

``_config.yml`` points ``mathjax_path`` at ``mathjax/tex-mml-chtml.js`` (relative to the
site's ``_static``), and after an HTML build this copies that file and the components it
loads (TeX input, the CommonHTML output with its fonts, the menu and the accessibility
extensions) from the MathJax 3 copy of the ``django-static-mathjax`` package
(``requirements.txt``) into ``_static/mathjax``.
"""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

ENTRY = "tex-mml-chtml.js"
# What tex-mml-chtml.js may load at run time, relative to MathJax's es5 folder; the speech
# engine (sre, 4 MB) is left out: it loads only when a reader turns on speech in the menu.
COMPONENTS = ("input", "output/chtml", "ui", "a11y", "adaptors")


def packaged_mathjax() -> Path:
    """The es5 folder of the installed MathJax 3 copy; ``RuntimeError`` if it is not installed."""
    spec = importlib.util.find_spec("mathjax")
    es5 = Path(spec.origin).parent / "static" / "mathjax" / "es5" if spec and spec.origin else None
    if es5 is None or not (es5 / ENTRY).is_file():
        raise RuntimeError("MathJax 3 is not installed: pip install django-static-mathjax (see requirements.txt)")
    return es5


def copy_mathjax(target: Path) -> Path:
    """Copy the entry script and :data:`COMPONENTS` into ``target``; returns ``target / ENTRY``."""
    source = packaged_mathjax()
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / ENTRY, target / ENTRY)
    for part in COMPONENTS:
        shutil.copytree(source / part, target / part, dirs_exist_ok=True)
    return target / ENTRY


def _on_build_finished(app, exception) -> None:
    if exception is None and app.builder.format == "html":
        copy_mathjax(Path(app.outdir) / "_static" / "mathjax")


def _check_path(app, config) -> None:
    if config.mathjax_path != f"mathjax/{ENTRY}":
        raise RuntimeError(f"offline_mathjax serves mathjax/{ENTRY}, but mathjax_path is {config.mathjax_path!r}")
    packaged_mathjax()  # fail at the start of a build, not after it


def setup(app):
    app.connect("config-inited", _check_path)
    app.connect("build-finished", _on_build_finished)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
