"""The book: .md/.ipynb pairing, the share of nbval-checked cells, chapter structure, and a
warning-free Jupyter Book build."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]_*.md"))
IGNORE_MARK = "# NBVAL_IGNORE_OUTPUT"


def _cells(path: Path) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in jupytext.read(path).cells]


def test_there_are_chapters():
    assert len(CHAPTERS) == 7, [c.name for c in CHAPTERS]


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_markdown_and_notebook_are_paired(md: Path):
    ipynb = md.with_suffix(".ipynb")
    assert ipynb.exists(), f"{md.name} has no paired {ipynb.name}"
    assert _cells(md) == _cells(ipynb), f"{md.name} and {ipynb.name} differ: run jupytext --sync {md}"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_structure_and_clean_outputs(md: Path):
    nb = jupytext.read(md.with_suffix(".ipynb"))
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for heading in ("What you will learn", "## Summary", "## Exercises"):
        assert heading in text, f"{md.name} lacks {heading!r}"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.get("execution_count") for c in code if c.outputs), f"{md.name} is not executed"
    for cell in code:
        for out in cell.outputs:
            assert out.output_type != "error", f"{md.name} stores an error output"


def test_half_of_the_output_cells_are_checked(capsys):
    checked = ignored = 0
    for md in CHAPTERS:
        for cell in jupytext.read(md.with_suffix(".ipynb")).cells:
            if cell.cell_type == "code" and cell.outputs:
                if cell.source.lstrip().startswith(IGNORE_MARK):
                    ignored += 1
                else:
                    checked += 1
    with capsys.disabled():
        print(f"\nnbval: {checked} code cells with output are checked, {ignored} ignored "
              f"({100 * checked / max(1, checked + ignored):.0f} % checked)")
    assert checked >= ignored


def test_book_builds_without_warnings(tmp_path):
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    result = subprocess.run([str(jupyter_book), "build", str(ROOT), "--path-output",
                             str(tmp_path), "--warningiserror", "--nitpick", "--keep-going"],
                            capture_output=True, text=True, cwd=ROOT)
    log = result.stdout + result.stderr
    warnings = [line for line in log.splitlines() if "WARNING" in line or "ERROR" in line]
    assert result.returncode == 0 and not warnings, "\n".join(warnings) or log[-3000:]
    assert (tmp_path / "_build" / "html" / "index.html").exists()
