"""A plain download: every chapter runs on data laid out as the official ISIC 2017 archives extract.

``python -m skinseg download`` without ``--compact`` extracts the official archives as they are:
test images with ISIC ids at their original sizes, unlike the 192x256 compact copy that Colab
readers get (:func:`skinseg.colab.prepare` downloads with ``compact=True``) and the copy beside
this repository. This executes every chapter of book/ in a fresh kernel, as nbval does but
without comparing outputs, against a SYNTHETIC dataset in that layout (``python -m skinseg
synthetic --layout official``: ISIC-style ids, superpixel files and metadata beside the images,
sizes such as 1022x767), with the ``tiny`` profile (the layout is under test, not the recipe),
and asserts that none raises. Each chapter's time is printed.
"""
from __future__ import annotations

import time
from pathlib import Path

import jupytext
import nbclient
import pytest

from skinseg.config import PROFILES
from skinseg.lab.synthetic import write_isic_layout

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]_*.md"))
TIMEOUT = 1200  # seconds per cell, as scripts/execute_chapter.py
TINY = PROFILES["tiny"]


@pytest.fixture(scope="module")
def official_2017(tmp_path_factory) -> Path:
    """SYNTHETIC ISIC 2017 in the official layout: as many images as the tiny profile uses."""
    return write_isic_layout(tmp_path_factory.mktemp("official") / "isic2017", "2017", n_train=TINY.max_train,
                             n_val=TINY.max_val, n_test=TINY.max_test, seed=0, layout="official")


def test_the_fixture_is_in_the_official_layout(official_2017):
    from PIL import Image

    test = official_2017 / "ISIC-2017_Test_v2_Data"
    images = sorted(test.glob("ISIC_*[0-9].jpg"))
    assert len(images) == TINY.max_test and len(list(test.glob("*_superpixels.png"))) == TINY.max_test
    sizes = set()
    for path in images:
        with Image.open(path) as image:
            sizes.add(image.size)
    assert (1022, 767) in sizes and (256, 192) not in sizes


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_runs_on_the_official_layout(md: Path, official_2017, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SKINSEG_DATA", str(official_2017))
    monkeypatch.setenv("SKINSEG_PROFILE", TINY.name)
    monkeypatch.setenv("SKINSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = jupytext.read(md)
    started = time.perf_counter()
    client = nbclient.NotebookClient(notebook, timeout=TIMEOUT, kernel_name="python3", store_widget_state=False,
                                     resources={"metadata": {"path": str(md.parent)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:
        pytest.fail(f"{md.name} raised on the official ISIC 2017 layout:\n{str(err)[-3000:]}")
    with capsys.disabled():
        print(f"\n{md.name}: executed on the official layout in {time.perf_counter() - started:.0f} s")
