"""Chapter 6 re-executes with however many converged seeds exist: here 1 and 3, made by tiny
runs on SYNTHETIC data (``SKINSEG_RESULTS`` points at them; the 16-epoch lesson is the
committed one). Plain execution, as nbval runs it, without comparing outputs, which depend
on the results; it must not raise, and it must say how many seeds exist."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import jupytext
import nbclient
import pytest

from skinseg.config import PROFILES
from skinseg.lab.experiment import MODEL_NAMES, run_experiment, write_summary

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "book" / "06_test_comparison.md"
SEEDS = [0, 1, 2]


@pytest.fixture(scope="module")
def three_seeds(layout_2017, tmp_path_factory):
    out = tmp_path_factory.mktemp("chapter6") / "three" / "isic2017"
    run_experiment(layout_2017, out, PROFILES["tiny"], seeds=SEEDS, work_dir=out.parent / "work", device="cpu",
                   progress=False, log=lambda _: None)
    return out


def _results_root(folder: Path) -> Path:
    """``folder``'s parent as a results root, beside the committed 16-epoch lesson and benchmarks."""
    for name in ("isic2017_16ep", "bench"):
        link = folder.parent / name
        if not link.exists():
            link.symlink_to(ROOT / "results" / name, target_is_directory=True)
    return folder.parent


def _one_seed_copy(three: Path, target: Path) -> Path:
    """The first seed of ``three`` alone: what a slice that finished one seed pair leaves."""
    target.mkdir(parents=True)
    for path in three.rglob("*"):
        if path.is_file() and (path.parent == three or any(f"{m}_seed0." in path.name for m in MODEL_NAMES)):
            if path.name not in ("summary.json", ".skinseg.lock"):
                (target / path.relative_to(three)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target / path.relative_to(three))
    write_summary(target)
    return target


def _execute(results_root: Path, monkeypatch, data: Path) -> str:
    monkeypatch.setenv("SKINSEG_RESULTS", str(results_root))
    monkeypatch.setenv("SKINSEG_DATA", str(data))
    notebook = jupytext.read(CHAPTER)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(CHAPTER.parent)}}).execute()
    return "\n".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs)


@pytest.mark.parametrize("n_seeds", [1, 3])
def test_chapter_6_executes_with_the_seeds_that_exist(n_seeds, three_seeds, layout_2017, tmp_path, monkeypatch):
    folder = three_seeds if n_seeds == 3 else _one_seed_copy(three_seeds, tmp_path / "one" / "isic2017")
    assert json.loads((folder / "summary.json").read_text())["seeds"] == SEEDS[:n_seeds]
    text = _execute(_results_root(folder), monkeypatch, layout_2017)
    so_far = "3 seeds" if n_seeds == 3 else "1 of 3 seeds so far"
    assert f"results/isic2017: {so_far} of both models" in text
    assert "CPU SMOKE RUN" in text  # the tiny runs say what they are
    assert "our recipe on the replica" not in text or "not yet run on a GPU" in text
    assert f"Attention U-Net − U-Net on raw predictions" in text and f"({so_far})" in text
