"""Tests of skinseg.data.download against a real HTTP server on 127.0.0.1: resuming, every kind
of damaged download (truncated, without Content-Length, corrupt, changed on the server, bad
members), each healed by running again, and the compact copy."""
from __future__ import annotations

import hashlib
import io
import re
import shutil
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skinseg.data import download as dl
from skinseg.data import load_split
from skinseg.errors import DataError, DownloadError
from skinseg.lab.synthetic import write_isic_layout

from conftest import damage_zip, make_zip, serve

NAMES_2017 = [a.filename for a in dl.ARCHIVES["2017"]]


@pytest.fixture
def server():
    with serve() as srv:
        yield srv


def _archives_of(layout: Path) -> dict[str, bytes]:
    """The official archives (name -> bytes) whose extraction gives ``layout``: one zip per folder."""
    return {f"{folder.name}.zip": make_zip({f"{folder.name}/{p.name}": p.read_bytes()
                                            for p in sorted(folder.iterdir())})
            for folder in sorted(layout.iterdir()) if folder.is_dir()}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def archives_2017(tmp_path_factory) -> dict[str, bytes]:
    """The six ISIC 2017 archives, holding a SYNTHETIC 64x64 layout (with superpixel files)."""
    layout = write_isic_layout(tmp_path_factory.mktemp("layout"), "2017", n_train=3, n_val=2, n_test=2,
                               size=(64, 64), seed=5)
    archives = _archives_of(layout)
    assert sorted(archives) == sorted(NAMES_2017)
    return archives


@pytest.fixture
def served_2017(server, archives_2017):
    server.files.update(archives_2017)
    return server


def _download(server, root: Path, **kwargs) -> Path:
    return dl.download_dataset("2017", root, base_url=server.url, progress=False, **kwargs)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "archives" not in p.parts}


def test_download_dataset_2017_and_second_call_is_noop(served_2017, tmp_path):
    root = tmp_path / "isic2017"
    assert dl.download_dataset("2017", root, base_url=served_2017.url + "/", progress=False) == root
    assert sorted(n for n, _ in served_2017.requests) == sorted(NAMES_2017)
    for name in NAMES_2017:
        with zipfile.ZipFile(io.BytesIO(served_2017.files[name])) as zf:
            for member in zf.namelist():
                assert (root / member).read_bytes() == zf.read(member)
        assert (root / "archives" / name).read_bytes() == served_2017.files[name]
        assert not (root / "archives" / (name + ".part")).exists()
    assert not list(root.glob(".extracting-*")) and not (root / ".skinseg.lock").exists()
    n_requests = len(served_2017.requests)
    sentinel = next((root / "ISIC-2017_Training_Data").glob("*.jpg"))
    sentinel.write_bytes(b"edited by the user")
    dl.download_dataset("2017", root, base_url=served_2017.url, progress=False)
    assert len(served_2017.requests) == n_requests
    assert sentinel.read_bytes() == b"edited by the user"  # not extracted again either


def test_download_dataset_checks_known_hashes_and_can_drop_archives(served_2017, tmp_path, monkeypatch):
    known = [dl.Archive(a.filename, a.url, len(served_2017.files[a.filename]), _sha(served_2017.files[a.filename]))
             for a in dl.ARCHIVES["2017"]]
    monkeypatch.setitem(dl.ARCHIVES, "2017", known)
    root = dl.download_dataset("2017", tmp_path, base_url=served_2017.url, progress=False, keep_archives=False)
    assert all((root / n.removesuffix(".zip")).is_dir() for n in NAMES_2017)
    assert not list((root / "archives").glob("*.zip"))
    n_requests = len(served_2017.requests)
    dl.download_dataset("2017", tmp_path, base_url=served_2017.url, progress=False, keep_archives=False)
    assert len(served_2017.requests) == n_requests  # the markers remember the deleted archives
    # a corrupted mirror is caught through download_dataset as well
    bad = [dl.Archive(known[0].filename, known[0].url, known[0].size, "0" * 64)]
    monkeypatch.setitem(dl.ARCHIVES, "2017", bad)
    with pytest.raises(DownloadError, match="sha256"):
        dl.download_dataset("2017", tmp_path / "other", base_url=served_2017.url, progress=False)

# ----------------------------------------------------------------------------- damaged downloads heal


def test_no_content_length_and_cut_short_is_not_taken_as_finished(served_2017, tmp_path):
    name = NAMES_2017[0]
    served_2017.no_length = True
    served_2017.truncate.add(name)
    root = tmp_path / "isic2017"
    with pytest.raises(DownloadError, match=rf"{re.escape(name)} is not a complete zip archive.*run again"):
        _download(served_2017, root)
    assert not (root / "archives" / name).exists() and not (root / "archives" / (name + ".part")).exists()
    assert not (root / "ISIC-2017_Training_Data").exists()
    served_2017.truncate.clear()  # the connection is good again: the same call heals
    _download(served_2017, root)
    assert (root / "archives" / name).read_bytes() == served_2017.files[name]


def test_corrupt_archive_is_deleted_and_a_rerun_heals(served_2017, tmp_path, archives_2017):
    name = NAMES_2017[1]
    served_2017.files[name] = damage_zip(archives_2017[name])
    root = tmp_path / "isic2017"
    with pytest.raises(DownloadError, match=rf"{re.escape(name)} is damaged: its member .* CRC.*deleted it"):
        _download(served_2017, root)
    assert not (root / "archives" / name).exists()
    assert not (root / "archives" / f"{name}.extracted").exists()
    served_2017.files[name] = archives_2017[name]
    _download(served_2017, root)
    assert (root / "archives" / f"{name}.extracted").is_file()
    # a damaged archive that is already in place (copied by hand, or left by an older version) is fetched again
    (root / "archives" / f"{name}.extracted").unlink()
    (root / "archives" / name).write_bytes(damage_zip(archives_2017[name]))
    n_requests = len(served_2017.requests)
    _download(served_2017, root)
    assert served_2017.requests[n_requests:] == [(name, None)]
    assert (root / "archives" / name).read_bytes() == archives_2017[name]


def test_changed_remote_file_is_not_spliced_on_resume(served_2017, tmp_path, archives_2017):
    name = NAMES_2017[0]
    old, new = archives_2017[name], make_zip({"ISIC-2017_Training_Data/x.txt": b"a new release" * 100})
    served_2017.etags[name] = '"v1"'
    served_2017.files[name] = old
    served_2017.truncate.add(name)
    dest = tmp_path / name
    with pytest.raises(DownloadError, match="truncated"):
        dl.download_file(f"{served_2017.url}/{name}", dest, verify=dl.check_zip, progress=False)
    served_2017.truncate.clear()
    served_2017.files[name], served_2017.etags[name] = new, '"v2"'
    dl.download_file(f"{served_2017.url}/{name}", dest, verify=dl.check_zip, progress=False)
    assert served_2017.requests[-1] == (name, f"bytes={len(old) // 2}-") and served_2017.if_ranges[-1] == '"v1"'
    assert dest.read_bytes() == new and not (tmp_path / f"{name}.part.json").exists()


def test_changed_remote_file_restarts_even_if_the_server_ignores_if_range(served_2017, tmp_path, archives_2017):
    name = NAMES_2017[0]
    old, new = archives_2017[name], archives_2017[NAMES_2017[1]]
    served_2017.files[name], served_2017.etags[name] = old, '"v1"'
    served_2017.truncate.add(name)
    dest = tmp_path / name
    with pytest.raises(DownloadError, match="truncated"):
        dl.download_file(f"{served_2017.url}/{name}", dest, progress=False)
    served_2017.truncate.clear()
    served_2017.ignore_if_range = True
    served_2017.files[name], served_2017.etags[name] = new, '"v2"'
    dl.download_file(f"{served_2017.url}/{name}", dest, progress=False)
    assert [r for _, r in served_2017.requests[-2:]] == [f"bytes={len(old) // 2}-", None]
    assert dest.read_bytes() == new


def test_damaged_member_leaves_the_target_as_it_was(tmp_path, archives_2017):
    name = NAMES_2017[0]
    zip_path = tmp_path / name
    zip_path.write_bytes(damage_zip(archives_2017[name]))
    target = tmp_path / "root"
    (target / "ISIC-2017_Training_Data").mkdir(parents=True)
    (target / "ISIC-2017_Training_Data" / "mine.txt").write_text("kept")
    with pytest.raises(DownloadError, match=rf"{re.escape(name)} is not a valid zip archive.*nothing was extracted"):
        dl.safe_extract(zip_path, target)
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*")) == [
        "ISIC-2017_Training_Data", "ISIC-2017_Training_Data/mine.txt"]


def test_a_killed_extraction_is_cleaned_up_by_the_next_run(served_2017, tmp_path):
    root = tmp_path / "isic2017"
    leftover = root / ".extracting-ISIC-2017_Training_Data.zip-abc123" / "ISIC-2017_Training_Data"
    leftover.mkdir(parents=True)
    (leftover / "half.jpg").write_bytes(b"half")
    _download(served_2017, root)
    assert not list(root.glob(".extracting-*"))
    assert not (root / "ISIC-2017_Training_Data" / "half.jpg").exists()


def test_a_bad_mask_in_an_archive_is_named(served_2017, tmp_path, archives_2017):
    name = "ISIC-2017_Validation_Part1_GroundTruth.zip"
    with zipfile.ZipFile(io.BytesIO(archives_2017[name])) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    first = sorted(members)[0]
    buf = io.BytesIO()
    Image.fromarray(np.full((64, 64), 7, np.uint8)).save(buf, format="PNG")
    members[first] = buf.getvalue()
    served_2017.files[name] = make_zip(members)
    with pytest.raises(DataError, match=rf"{re.escape(name)}:{re.escape(first)} is not a binary mask.*7"):
        _download(served_2017, tmp_path / "compact", compact=True)
    assert not list((tmp_path / "compact").glob("ISIC-2017_Validation_Part1_GroundTruth"))

# ----------------------------------------------------------------------------- the compact copy


@pytest.fixture(scope="module")
def official_layout(tmp_path_factory) -> Path:
    """A SYNTHETIC ISIC 2017 layout as the official archives extract (original sizes, superpixels, metadata)."""
    return write_isic_layout(tmp_path_factory.mktemp("official"), "2017", n_train=5, n_val=2, n_test=2,
                             seed=2, layout="official")


def test_compact_download_matches_the_full_one(server, tmp_path, official_layout):
    server.files.update(_archives_of(official_layout))
    full = _download(server, tmp_path / "full")
    compact = _download(server, tmp_path / "compact", compact=True)
    archives = compact / "archives"
    assert sorted(p.name for p in archives.iterdir()) == sorted(f"{n}.compact" for n in NAMES_2017)
    expected = {k for k in _tree(full) if not k.endswith("_superpixels.png")}
    assert set(_tree(compact)) == expected  # the same folders and file names, no superpixels
    for path in (compact / "ISIC-2017_Training_Data").glob("*.jpg"):
        assert Image.open(path).size == (256, 192)
    for path in (compact / "ISIC-2017_Training_Part1_GroundTruth").glob("*.png"):
        assert set(np.unique(np.asarray(Image.open(path)))) <= {0, 255}
    csv = "ISIC-2017_Training_Data/ISIC-2017_Training_Data_metadata.csv"
    assert _tree(compact)[csv] == _tree(full)[csv]
    for split in ("train", "val", "test"):
        a = load_split(full, split, (192, 256), cache=False)
        b = load_split(compact, split, (192, 256), cache=False)
        assert a.ids == b.ids
        np.testing.assert_array_equal(a.masks, b.masks)  # resized exactly as the reader resizes
        assert np.abs(a.images.astype(int) - b.images.astype(int)).mean() < 2  # JPEG quality 90
    # a second call is a no-op, even without the archives
    n_requests = len(server.requests)
    _download(server, compact, compact=True)
    assert len(server.requests) == n_requests


def test_the_compact_copy_keeps_no_archive_even_after_a_failure(server, tmp_path, official_layout):
    archives = _archives_of(official_layout)
    server.files.update(archives)
    name = NAMES_2017[2]
    server.files[name] = damage_zip(archives[name])
    root = tmp_path / "compact"
    with pytest.raises(DownloadError, match="damaged"):
        _download(server, root, compact=True)
    left = sorted(p.name for p in (root / "archives").iterdir())
    assert left == [f"{n}.compact" for n in NAMES_2017[:2]]  # the finished ones are deleted, the damaged one too
    server.files[name] = archives[name]
    _download(server, root, compact=True)
    assert not list((root / "archives").glob("*.zip")) and len(list((root / "archives").glob("*.compact"))) == 6

# ----------------------------------------------------------------------------- single files


def test_resume_sends_range_and_gives_right_file(served_2017, tmp_path):
    name = NAMES_2017[0]
    data = served_2017.files[name]
    dest = tmp_path / name
    k = len(data) // 3
    (tmp_path / (name + ".part")).write_bytes(data[:k])
    dl.download_file(f"{served_2017.url}/{name}", dest, size=len(data), sha256=_sha(data),
                     progress=False, chunk_size=64)
    assert served_2017.requests == [(name, f"bytes={k}-")]
    assert _sha(dest.read_bytes()) == _sha(data)
    assert not (tmp_path / (name + ".part")).exists()


def test_resume_restarts_when_server_ignores_range(served_2017, tmp_path):
    name = NAMES_2017[0]
    data = served_2017.files[name]
    served_2017.ignore_range = True
    (tmp_path / (name + ".part")).write_bytes(b"garbage!" * 10)
    dest = dl.download_file(f"{served_2017.url}/{name}", tmp_path / name, sha256=_sha(data), progress=False)
    assert served_2017.requests == [(name, "bytes=80-")]
    assert dest.read_bytes() == data


def test_complete_part_answered_416_is_accepted(served_2017, tmp_path):
    name = NAMES_2017[1]
    data = served_2017.files[name]
    (tmp_path / (name + ".part")).write_bytes(data)
    dest = dl.download_file(f"{served_2017.url}/{name}", tmp_path / name, progress=False)
    assert served_2017.requests == [(name, f"bytes={len(data)}-")]
    assert dest.read_bytes() == data


def test_truncated_transfer_keeps_part(served_2017, tmp_path):
    name = NAMES_2017[2]
    data = served_2017.files[name]
    served_2017.truncate.add(name)
    dest = tmp_path / name
    half = len(data) // 2
    with pytest.raises(DownloadError, match=rf"{re.escape(name)}.*truncated.*{half}.*{len(data)}"):
        dl.download_file(f"{served_2017.url}/{name}", dest, progress=False)
    assert not dest.exists()
    assert (tmp_path / (name + ".part")).read_bytes() == data[:half]
    # the server is fixed: the next call resumes from the kept .part
    served_2017.truncate.clear()
    dl.download_file(f"{served_2017.url}/{name}", dest, size=len(data), sha256=_sha(data), progress=False)
    assert served_2017.requests[-1] == (name, f"bytes={half}-")
    assert dest.read_bytes() == data


def test_shorter_than_known_size_is_truncated(served_2017, tmp_path):
    name = NAMES_2017[2]
    data = served_2017.files[name]
    with pytest.raises(DownloadError, match=rf"truncated.*{len(data)}.*{len(data) + 5}"):
        dl.download_file(f"{served_2017.url}/{name}", tmp_path / name, size=len(data) + 5, progress=False)
    assert (tmp_path / (name + ".part")).exists()


def test_sha256_mismatch_deletes_file(served_2017, tmp_path):
    name = NAMES_2017[3]
    data = served_2017.files[name]
    dest = tmp_path / name
    wrong = "ab" * 32
    with pytest.raises(DownloadError, match="sha256") as info:
        dl.download_file(f"{served_2017.url}/{name}", dest, size=len(data), sha256=wrong, progress=False)
    assert wrong in str(info.value) and _sha(data) in str(info.value) and name in str(info.value)
    assert not dest.exists()
    assert not (tmp_path / (name + ".part")).exists()


def test_existing_good_dest_is_not_downloaded_again(served_2017, tmp_path):
    name = NAMES_2017[0]
    data = served_2017.files[name]
    (tmp_path / name).write_bytes(data)
    dl.download_file(f"{served_2017.url}/{name}", tmp_path / name, size=len(data), sha256=_sha(data), progress=False)
    assert served_2017.requests == []


def test_http_error_names_status_and_url(server, tmp_path):
    url = f"{server.url}/missing.zip"
    with pytest.raises(DownloadError, match=rf"404.*{re.escape(url)}"):
        dl.download_file(url, tmp_path / "missing.zip", progress=False)


def test_offline_gives_clear_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/ISIC-2017_Training_Data.zip"
    with pytest.raises(DownloadError, match="offline") as info:
        dl.download_file(url, tmp_path / "a" / "ISIC-2017_Training_Data.zip", progress=False, timeout=2)
    assert url in str(info.value) and "by hand" in str(info.value)


@pytest.mark.parametrize("member", ["../evil.txt", "/abs/evil.txt", "ok/../../evil.txt"])
def test_zip_slip_is_refused_before_writing(tmp_path, member):
    zip_path = tmp_path / "evil.zip"
    zip_path.write_bytes(make_zip({"good/first.txt": b"fine", member: b"evil"}))
    target = tmp_path / "out" / "target"
    with pytest.raises(DownloadError, match=re.escape(member)) as info:
        dl.safe_extract(zip_path, target)
    assert "evil.zip" in str(info.value)
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["evil.zip"]


def test_zip_symlink_member_is_refused(tmp_path):
    zip_path = tmp_path / "link.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(DownloadError, match="link"):
        dl.safe_extract(zip_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_safe_extract_returns_files_and_rejects_corrupt(tmp_path):
    zip_path = tmp_path / "ok.zip"
    zip_path.write_bytes(make_zip({"d/a.txt": b"a", "d/b.txt": b"b"}))
    assert sorted(dl.safe_extract(zip_path, tmp_path / "out")) == [tmp_path / "out/d/a.txt", tmp_path / "out/d/b.txt"]
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"this is not a zip file")
    with pytest.raises(DownloadError, match="bad.zip"):
        dl.safe_extract(bad, tmp_path / "out2")


def test_unknown_year_lists_valid_ones(tmp_path):
    with pytest.raises(DownloadError, match="2016.*2017"):
        dl.download_dataset("2018", tmp_path)
    assert not (tmp_path / "archives").exists()


def test_official_table():
    assert set(dl.ARCHIVES) == {"2016", "2017"}
    assert len(dl.ARCHIVES["2016"]) == 4 and len(dl.ARCHIVES["2017"]) == 6
    for year, archives in dl.ARCHIVES.items():
        for a in archives:
            assert a.url == f"https://isic-challenge-data.s3.amazonaws.com/{year}/{a.filename}"
