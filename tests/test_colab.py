"""The Colab helpers: data downloaded once (kept on a Drive if asked) and training cells that
say what they will cost. The download itself is tested in test_download.py; here it is
replaced by a stand-in that writes a SYNTHETIC compact copy and the markers of a finished one."""
import os
from pathlib import Path

import pytest

from skinseg import colab
from skinseg.config import PROFILES
from skinseg.data import load_split
from skinseg.data.download import ARCHIVES
from skinseg.data.synthetic import write_isic_layout


@pytest.fixture
def downloads(monkeypatch):
    calls = []

    def fake_download(year, root, *, compact, base_url=None):
        calls.append(Path(root))
        write_isic_layout(root, year, n_train=2, n_val=1, n_test=1, size=(32, 32))
        (root / "archives").mkdir(parents=True, exist_ok=True)
        for archive in ARCHIVES[year]:
            (root / "archives" / f"{archive.filename}.compact").write_text("done\n")
        (root / ".lock").write_text("")  # what skinseg.lock leaves; a Drive copy must not carry it
        return root

    monkeypatch.setattr(colab, "download_dataset", fake_download)
    monkeypatch.setenv("SKINSEG_DATA", "")  # so that the prepare() below cannot leak its value to later tests
    monkeypatch.delenv("SKINSEG_DATA")
    return calls


def test_prepare_downloads_once_per_session(downloads, tmp_path):
    root = colab.prepare(local_root=tmp_path / "content", log=lambda *_: None)
    assert root == tmp_path / "content" / "isic2017" and colab.is_complete(root)
    assert colab.prepare(local_root=tmp_path / "content", log=lambda *_: None) == root
    assert downloads == [root]
    assert os.environ["SKINSEG_DATA"] == str(root)


def test_a_copy_kept_on_the_drive_saves_the_next_session_its_download(downloads, tmp_path):
    drive = tmp_path / "drive" / "MyDrive"
    mounted = []
    messages = []
    first = colab.prepare(drive=True, local_root=tmp_path / "session1", drive_root=drive,
                          mount=lambda: mounted.append(drive.mkdir(parents=True)), log=messages.append)
    kept = drive / colab.DRIVE_FOLDER / "isic2017"
    assert mounted and first == tmp_path / "session1" / "isic2017" and colab.is_complete(kept)
    assert not (kept / ".lock").exists() and not kept.with_name("isic2017.partial").exists()
    assert "kept on the Drive" in messages[-1]
    second = colab.prepare(drive=True, local_root=tmp_path / "session2", drive_root=drive,
                           mount=lambda: pytest.fail("the Drive is mounted already"), log=messages.append)
    assert second == kept and len(downloads) == 1 and "nothing is downloaded" in messages[-1]
    assert load_split(second, "test", (32, 32), cache=False).ids == load_split(first, "test", (32, 32), cache=False).ids


def test_a_partial_drive_copy_is_not_used(downloads, tmp_path):
    drive = tmp_path / "MyDrive"
    (drive / colab.DRIVE_FOLDER / "isic2017" / "archives").mkdir(parents=True)  # an earlier copy cut short
    root = colab.prepare(drive=True, local_root=tmp_path / "s", drive_root=drive, log=lambda *_: None)
    assert root == tmp_path / "s" / "isic2017" and len(downloads) == 1
    assert colab.is_complete(drive / colab.DRIVE_FOLDER / "isic2017")


def test_training_estimate_from_a_measured_step():
    profile = PROFILES["colab"]

    def measure(model_name, profile, device):
        return {"images_per_s": {"unet": 80.0, "attention_unet": 64.0}[model_name], "compile_seconds": 0.0}

    estimate = colab.training_estimate(profile, {"train": 2000, "val": 150}, "cpu", measure=measure)
    unet = profile.epochs * (2000 / 80 + 150 / (2 * 80))
    assert estimate["seconds"]["unet"] == pytest.approx(unet)
    assert estimate["images_per_s"] == {"unet": 80.0, "attention_unet": 64.0}
    total = sum(estimate["seconds"].values())
    assert estimate["text"].startswith(f"about {total / 60:.0f} min on this CPU")
    assert "SHORT GPU RUN (profile 'colab'" in estimate["text"] and "not the full recipe" in estimate["text"]


def _first_code_cells() -> dict[str, str]:
    import jupytext

    book = Path(__file__).resolve().parents[1] / "book"
    return {md.name: next(c.source for c in jupytext.read(md).cells if c.cell_type == "code")
            for md in sorted(book.glob("[0-9][0-9]_*.md"))}


def _run_as_ipython(source: str, shell: list) -> None:
    from IPython.core.inputtransformer2 import TransformerManager

    class Shell:
        def system(self, command):
            shell.append(command)

    exec(TransformerManager().transform_cell(source), {"get_ipython": Shell})


def test_every_chapter_starts_with_one_colab_cell_that_prepares_the_compact_copy(monkeypatch):
    import sys
    import types

    cells = _first_code_cells()
    assert len(cells) >= 9 and len(set(cells.values())) == 1, "the chapters' first cells differ"
    source = next(iter(cells.values()))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    shell, prepared, folders = [], [], []
    monkeypatch.setattr(colab, "prepare", lambda year, drive: prepared.append((year, drive)))
    monkeypatch.setattr(os, "chdir", folders.append)
    _run_as_ipython(source, shell)
    assert shell == prepared == folders == [], "outside Colab the first cell must do nothing"

    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(os.path, "isdir", lambda path: False)  # a fresh Colab session
    _run_as_ipython(source, shell)
    assert [c.split()[0:2] for c in shell] == [["git", "clone"], ["pip", "install"]]
    assert prepared == [("2017", False)], "the Drive copy is opt-in; the data is the compact ISIC 2017"
    assert folders == ["/content/skinseg/book"]
