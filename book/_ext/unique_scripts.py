"""Sphinx extension: every page includes each of its scripts once.

Under Jupyter Book 1.x the inline configuration scripts of sphinx-thebe and
sphinx-togglebutton are added to every page twice (their ``env-before-read-docs`` handlers
run twice in one build). The second ``const THEBE_JS_URL = ...`` is a JavaScript error on
every page ("Identifier has already been declared"); this keeps only the first copy of any
script that appears more than once with the same file and attributes.
"""
from __future__ import annotations


def _key(script) -> tuple:
    # an inline script is registered once with filename None and once with "": the same script
    return getattr(script, "filename", script) or "", tuple(sorted(getattr(script, "attributes", {}).items()))


def _drop_repeats(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if scripts:
        seen = set()
        context["script_files"] = [s for s in scripts if not (_key(s) in seen or seen.add(_key(s)))]


def setup(app):
    app.connect("html-page-context", _drop_repeats, priority=900)  # after the themes added theirs
    return {"parallel_read_safe": True, "parallel_write_safe": True}
