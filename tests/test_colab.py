"""The Colab helpers: data downloaded once (kept on a Drive if asked) and training cells that
say what they will cost. The download itself is tested in test_download.py; here it is
replaced by a stand-in that writes a SYNTHETIC compact copy and the markers of a finished one."""
import json
import math
import os
import re
from pathlib import Path

import pytest

from skinseg import colab
from skinseg.config import PROFILES
from skinseg.data import load_split
from skinseg.data.download import ARCHIVES
from skinseg.lab import plan
from skinseg.lab.synthetic import write_isic_layout
from skinseg.lock import LOCK_NAME


@pytest.fixture
def downloads(monkeypatch):
    calls = []

    def fake_download(year, root, *, compact, base_url=None):
        calls.append(Path(root))
        write_isic_layout(root, year, n_train=2, n_val=1, n_test=1, size=(32, 32))
        (root / "archives").mkdir(parents=True, exist_ok=True)
        for archive in ARCHIVES[year]:  # markers as download_dataset writes them: the files each archive gave
            folder = root / archive.filename.removesuffix(".zip")
            files = sorted(str(p.relative_to(root)) for p in folder.iterdir())
            (root / "archives" / f"{archive.filename}.compact").write_text(json.dumps({"kind": "compact",
                                                                                       "files": files}))
        (root / LOCK_NAME).write_text("")  # what skinseg.lock leaves; a Drive copy must not carry it
        return root

    monkeypatch.setattr(colab, "download_dataset", fake_download)
    monkeypatch.setattr(colab, "announce", lambda year, base_url: f"ISIC {year}: what it downloads")
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
    assert not (kept / LOCK_NAME).exists() and not kept.with_name("isic2017.partial").exists()
    assert "kept on the Drive" in messages[-1]
    second = colab.prepare(drive=True, local_root=tmp_path / "session2", drive_root=drive,
                           mount=lambda: pytest.fail("the Drive is mounted already"), log=messages.append)
    assert second == kept and len(downloads) == 1 and "nothing is downloaded" in messages[-1]
    assert load_split(second, "test", (32, 32), cache=False).ids == load_split(first, "test", (32, 32), cache=False).ids


@pytest.mark.parametrize("kept_before", [False, True], ids=["fresh Drive", "Drive copy from an earlier session"])
def test_the_chapters_of_one_session_read_one_folder(downloads, tmp_path, kept_before):
    # Two folders would make the array cache miss: each chapter would decode the images again.
    drive = tmp_path / "MyDrive"
    drive.mkdir()  # mounted
    if kept_before:
        colab.prepare(drive=True, local_root=tmp_path / "earlier", drive_root=drive, log=lambda *_: None)
    first, second = (colab.prepare(drive=True, local_root=tmp_path / "s", drive_root=drive, log=lambda *_: None)
                     for _ in range(2))
    assert first == second and os.environ["SKINSEG_DATA"] == str(first)
    assert len(downloads) == 1 and colab.is_complete(drive / colab.DRIVE_FOLDER / "isic2017")


def test_a_complete_local_copy_is_used_and_kept_on_the_drive(downloads, tmp_path):
    local = colab.prepare(local_root=tmp_path / "s", log=lambda *_: None)
    drive = tmp_path / "MyDrive"
    drive.mkdir()  # mounted
    assert colab.prepare(drive=True, local_root=tmp_path / "s", drive_root=drive, log=lambda *_: None) == local
    assert len(downloads) == 1 and colab.is_complete(drive / colab.DRIVE_FOLDER / "isic2017")


def test_a_copy_whose_files_are_gone_is_not_complete(downloads, tmp_path):
    root = colab.prepare(local_root=tmp_path / "s", log=lambda *_: None)
    next((root / "ISIC-2017_Test_v2_Data").glob("*.jpg")).unlink()
    assert not colab.is_complete(root)
    colab.prepare(local_root=tmp_path / "s", log=lambda *_: None)
    assert len(downloads) == 2 and colab.is_complete(root)


def test_the_wait_is_said_before_the_download_starts(tmp_path, monkeypatch):
    from conftest import serve

    sizes = {a.filename: 1000 * (k + 1) for k, a in enumerate(ARCHIVES["2017"])}
    said = []
    monkeypatch.setattr(colab, "download_dataset", lambda *a, **k: said.append("download started"))
    with serve({name: b"x" * n for name, n in sizes.items()}) as server:
        monkeypatch.setattr(colab, "is_complete", lambda root, year="2017": False)
        colab.prepare(local_root=tmp_path, base_url=server.url, log=said.append)
    total = sum(sizes.values())
    assert said[-1] == "download started" and len(said) == 2
    m = re.match(rf"ISIC 2017: {total / 1e6:.1f} MB to download \(6 archives\): at \d+ MB/s, measured now, about "
                 rf"\d+ s, then about (\d+) min to make the compact copy of 2750 images \(at most (\d\.\d\d) s per image", said[0])
    assert m, said[0]
    assert float(m.group(2)) == pytest.approx(colab.COMPACT_SECONDS_PER_IMAGE, abs=0.005)
    assert int(m.group(1)) == round(2750 * colab.COMPACT_SECONDS_PER_IMAGE / 60)
    assert "Drive" in said[0]


def test_the_stated_local_rate_is_the_benchmarks():
    bench = json.loads((Path(__file__).resolve().parents[1] / "results" / "bench_cpu" / "data_prep_after.json").read_text())
    assert colab.COMPACT_SECONDS_PER_IMAGE == bench["seconds_per_image"]["cpu"]


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

    estimate = plan.training_estimate(profile, {"train": 2000, "val": 150}, "cpu", measure=measure)
    unet = profile.epochs * (2000 / 80 + 150 / (2 * 80))
    assert estimate["seconds"]["unet"] == pytest.approx(unet)
    assert estimate["images_per_s"] == {"unet": 80.0, "attention_unet": 64.0}
    total = sum(estimate["seconds"].values())
    assert estimate["text"].startswith(f"about {total / 60:.0f} min on this CPU")
    assert "SHORT GPU RUN (profile 'colab'" in estimate["text"] and "not the full recipe" in estimate["text"]


def _chapters() -> dict[str, tuple[str, str]]:
    """Each chapter's first code cell and the rest of its code."""
    import jupytext

    book = Path(__file__).resolve().parents[1] / "book"
    chapters = {}
    for md in sorted(book.glob("[0-9][0-9]_*.md")):
        code = [c.source for c in jupytext.read(md).cells if c.cell_type == "code"]
        chapters[md.stem] = (code[0], "\n".join(code[1:]))
    return chapters


def _run_as_ipython(source: str, shell: list) -> None:
    from IPython.core.inputtransformer2 import TransformerManager

    class Shell:
        def system(self, command):
            shell.append(command)

    exec(TransformerManager().transform_cell(source), {"get_ipython": Shell})


NEEDS_DATA = re.compile(r"^NEEDS_DATA = (True|False)  #.*$", re.M)


def test_every_chapter_starts_with_one_colab_cell_that_differs_only_in_whether_it_reads_the_data():
    chapters = _chapters()
    assert len(chapters) >= 9
    assert all(len(NEEDS_DATA.findall(first)) == 1 for first, _ in chapters.values()), "a NEEDS_DATA line each"
    assert len({NEEDS_DATA.sub("", first) for first, _ in chapters.values()}) == 1, "the chapters' first cells differ"
    for name, (first, rest) in chapters.items():
        if NEEDS_DATA.search(first).group(1) == "False":  # on Colab such a chapter finds no images
            assert not re.search(r"\bload_(split|dataset)\(", rest), f"{name} reads images: NEEDS_DATA = True"
    reading = sorted(name for name, (first, _) in chapters.items() if NEEDS_DATA.search(first).group(1) == "True")
    assert reading == ["01_data", "05_training", "08_your_own_images"]


@pytest.mark.parametrize("needs_data", [True, False])
def test_the_colab_cell_installs_and_prepares_the_compact_copy_only_on_colab(needs_data, monkeypatch):
    import sys
    import types

    source = NEEDS_DATA.sub(f"NEEDS_DATA = {needs_data}", _chapters()["01_data"][0])
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
    # the Drive copy is opt-in; the data is the compact ISIC 2017, fetched only where it is read
    assert prepared == ([("2017", False)] if needs_data else [])
    assert folders == ["/content/skinseg/book"]


def test_chapter_0_states_the_benchmarks_rate():
    text = " ".join((Path(__file__).resolve().parents[1] / "book" / "00_introduction.md").read_text().split())
    rate = colab.COMPACT_SECONDS_PER_IMAGE
    assert f"at most about {math.ceil(colab.IMAGES['2017'] * rate / 60)} minutes to make the compact copy" in text
    assert f"({rate:.2f} CPU seconds per image" in text and "2,750 images" in text
