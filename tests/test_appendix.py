"""The appendix and the chapters that link to it: the labels exist, the numbers the prose of
chapters 00 and 01 states are the library's, and every figure of these chapters has an alt text."""
from __future__ import annotations

import re
from pathlib import Path

import jupytext
import pytest

from skinseg.data import tensors
from skinseg.metrics import dice_from_iou

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
APPENDIX = BOOK / "09_appendix_how_this_book_is_made.md"
LABELS = ("appendix-ci", "appendix-profiles", "appendix-slices", "appendix-leakage", "appendix-synthetic",
          "appendix-files", "appendix-own-folders")
FIGURE = re.compile(r"plt\.show\(\)|image_grid\(|plt\.subplots\(|show_top\(|show_pairs\(")


def _prose(path: Path) -> str:
    text = "\n".join(c.source for c in jupytext.read(path).cells if c.cell_type == "markdown")
    return re.sub(r"\s+", " ", text)


def test_the_appendix_has_every_label_and_every_reference_in_the_book_has_a_target():
    text = APPENDIX.read_text()
    assert all(f"({label})=" in text for label in LABELS), [l for l in LABELS if f"({label})=" not in text]
    used = {m for md in BOOK.glob("[0-9][0-9]_*.md") for m in re.findall(r"\{ref\}`(appendix-[a-z-]+)`", md.read_text())}
    assert used and used <= set(LABELS), sorted(used - set(LABELS))


def test_chapter_0_states_the_articles_unet_pair_and_its_inconsistency():
    text = _prose(BOOK / "00_introduction.md")
    iou, dice = 0.7377556, 0.8498270  # the article's U-Net, as printed there (73.77556 %, 84.98270 %)
    assert "| U-Net | 73.77556 % | 84.98270 % |" in text
    bound = dice_from_iou(iou)
    assert bound < dice, (bound, dice)  # no mean over images of per-image Dice can exceed it
    assert f"$2J/(1+J)$ of that IoU is {bound:.5f}, below the Dice" in text


def test_chapter_1_states_the_librarys_colour_constants():
    text = _prose(BOOK / "01_data.md")
    assert f"`MEAN = {tensors.MEAN}` and `STD = {tensors.STD}`" in text
    assert "$(4/3)/(3/4) = 16/9$" in text and abs((4 / 3) / (3 / 4) - 16 / 9) < 1e-12


@pytest.mark.parametrize("name", ["00_introduction", "01_data", "08_your_own_images", "09_appendix_how_this_book_is_made"])
def test_every_figure_has_an_alt_text(name):
    cells = [c for c in jupytext.read(BOOK / f"{name}.md").cells if c.cell_type == "code" and FIGURE.search(c.source)]
    missing = [c.source.splitlines()[0] for c in cells if not c.metadata.get("mystnb", {}).get("image", {}).get("alt")]
    assert cells and not missing, missing
