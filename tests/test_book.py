"""The book: .md/.ipynb pairing, the share of nbval-checked cells, chapter structure, and a
warning-free Jupyter Book build."""
from __future__ import annotations

from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]_*.md"))
IGNORE_MARK = "# NBVAL_IGNORE_OUTPUT"


def _cells(path: Path) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in jupytext.read(path).cells]


def test_every_chapter_is_in_the_table_of_contents():
    toc = (ROOT / "_toc.yml").read_text()
    assert len(CHAPTERS) >= 8, [c.name for c in CHAPTERS]
    missing = [c.stem for c in CHAPTERS if f"book/{c.stem}" not in toc]
    assert not missing, f"chapters not in _toc.yml: {missing}"


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


def test_book_builds_without_warnings(built_book):
    warnings = [line for line in built_book.log.splitlines() if "WARNING" in line or "ERROR" in line]
    assert built_book.returncode == 0 and not warnings, "\n".join(warnings) or built_book.log[-3000:]
    assert (built_book.html / "index.html").exists()
