"""Tests of skinseg.data.download against a real HTTP server on 127.0.0.1: resuming, every kind
of damaged download (truncated, without Content-Length, corrupt, changed on the server, bad
members), each healed by running again, and the compact copy."""
from __future__ import annotations

import hashlib
import json
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

# ----------------------------------------------------------------------------- decoding: draft mode, workers, CRCs


def _photo(w: int, h: int, seed: int) -> bytes:
    """A SYNTHETIC w x h photo with a hard-edged dark lesion and pixel noise, as JPEG quality 95."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    lesion = ((xx - w / 2) / (w / 4)) ** 2 + ((yy - h / 2) / (h / 3)) ** 2 < 1
    image = np.where(lesion[..., None], [110, 70, 55], [215, 170, 150]) + rng.integers(-18, 19, (h, w, 1))
    buf = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def test_draft_decoding_stays_within_the_stated_difference_from_a_full_decode():
    from skinseg.data.compact import decode_image
    from skinseg.data.isic import resize_image
    from skinseg.images import read_image

    data = _photo(3008, 2000, seed=0)  # decoded at 1/4: 752x500, the smallest scale >= 2 x 256x192
    fast = np.asarray(decode_image(data, (192, 256), "photo.jpg"), dtype=int)
    full = np.asarray(resize_image(read_image(io.BytesIO(data))[0], (192, 256)), dtype=int)
    diff = np.abs(fast - full)
    assert fast.shape == (192, 256, 3) and diff.any()  # draft mode was used: not the full decode
    assert diff.mean() < 1 and diff.max() <= 40  # the bound stated in skinseg.data.compact


def test_the_compact_copy_reads_members_as_a_viewer_shows_them():
    """EXIF orientation applied to images (draft-decoded) and masks (fast path bypassed), other modes refused by name."""
    from skinseg.data.compact import compact_mask, decode_image
    from skinseg.data.isic import resize_image
    from skinseg.errors import DataError
    from skinseg.images import read_image

    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: a viewer shows it rotated a quarter turn, H and W swapped
    stored = Image.open(io.BytesIO(_photo(2000, 3008, seed=1)))
    buf = io.BytesIO()
    stored.save(buf, format="JPEG", quality=95, exif=exif)
    fast = np.asarray(decode_image(buf.getvalue(), (192, 256), "turned.jpg"), dtype=int)
    full = np.asarray(resize_image(read_image(io.BytesIO(buf.getvalue()))[0], (192, 256)), dtype=int)
    assert np.abs(fast - full).mean() < 1  # the bound of skinseg.data.compact, the photo upright
    mask = np.zeros((40, 30), np.uint8)
    mask[:10] = 255  # the top rows as stored are the right-hand columns as shown
    buf = io.BytesIO()
    Image.fromarray(mask).save(buf, format="PNG", exif=exif)
    shown = compact_mask(buf.getvalue(), (30, 40), "turned_segmentation.png")
    assert shown.shape == (30, 40) and shown[:, -10:].all() and not shown[:, :-10].any()
    buf = io.BytesIO()
    Image.new("CMYK", (32, 32)).save(buf, format="JPEG")
    with pytest.raises(DataError, match="cmyk.jpg.*CMYK"):
        decode_image(buf.getvalue(), (16, 16), "cmyk.jpg")


def test_the_workers_give_the_same_files_in_the_same_order_as_one(tmp_path, official_layout):
    archives = _archives_of(official_layout)
    zip_path = tmp_path / "ISIC-2017_Training_Data.zip"
    zip_path.write_bytes(archives[zip_path.name])
    one = dl.compact_extract(zip_path, tmp_path / "one", progress=False, workers=1)
    two = dl.compact_extract(zip_path, tmp_path / "two", progress=False, workers=2)
    assert [p.relative_to(tmp_path / "one") for p in one] == [p.relative_to(tmp_path / "two") for p in two]
    assert _tree(tmp_path / "one") == _tree(tmp_path / "two") and len(one) == 6  # 5 images and the metadata


@pytest.mark.parametrize("workers", [1, 2])
def test_a_damaged_member_is_named_and_nothing_is_written(tmp_path, archives_2017, workers):
    name = NAMES_2017[0]
    zip_path = tmp_path / name
    zip_path.write_bytes(damage_zip(archives_2017[name]))
    first = zipfile.ZipFile(zip_path).namelist()[0]
    target = tmp_path / "root"
    target.mkdir()
    with pytest.raises(DownloadError, match=rf"{re.escape(name)} is not a valid zip archive \(its member "
                                            rf"'{re.escape(first)}' fails its CRC check\); nothing was extracted"):
        dl.compact_extract(zip_path, target, progress=False, workers=workers)
    assert list(target.iterdir()) == []


def test_the_compact_copy_reads_each_archive_once(server, tmp_path, official_layout, monkeypatch):
    server.files.update(_archives_of(official_layout))
    monkeypatch.setattr(dl, "check_zip", lambda *a: pytest.fail("a separate pass over the archive"))
    monkeypatch.setattr(zipfile.ZipFile, "testzip", lambda *a: pytest.fail("a separate pass over the archive"))
    assert dl.completed(_download(server, tmp_path / "c", compact=True), "2017", compact=True)

# ----------------------------------------------------------------------------- state checked, never trusted


def _cli(args, capsys) -> tuple[int, str]:
    from skinseg.cli import main

    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return code, err


def _cli_ok(args) -> int:
    from skinseg.cli import main

    return main([str(a) for a in args])


def _everything(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_compact_never_replaces_a_full_copy_without_overwrite(served_2017, tmp_path, capsys):
    root = _download(served_2017, tmp_path / "isic2017")
    marker = json.loads((root / "archives" / f"{NAMES_2017[0]}.extracted").read_text())
    assert marker["kind"] == "full" and marker["archive_bytes"] == len(served_2017.files[NAMES_2017[0]])
    assert all((root / f).is_file() for f in marker["files"]) and marker["bytes"] > 0
    before = _everything(root)
    code, err = _cli(["download", "--compact", "--data", root, "--base-url", served_2017.url, "--quiet"], capsys)
    assert code == 2 and "holds a full-resolution copy of ISIC 2017" in err and "--overwrite" in err
    assert _everything(root) == before  # one line, exit 2, no traceback, the folder byte-identical
    code = _cli_ok(["download", "--compact", "--overwrite", "--data", root, "--base-url", served_2017.url, "--quiet"])
    assert code == 0 and dl.completed(root, "2017", compact=True) and not dl.completed(root, "2017", compact=False)
    assert not list((root / "archives").glob("*.extracted"))


def test_a_full_copy_extracted_by_hand_is_not_replaced_either(tmp_path, server, official_layout):
    root = Path(shutil.copytree(official_layout, tmp_path / "by_hand"))  # no markers, no archives
    server.files.update(_archives_of(official_layout))
    before = _everything(root)
    with pytest.raises(DownloadError, match=r"holds a full-resolution copy.*at 1022x767"):
        _download(server, root, compact=True)
    assert _everything(root) == before


def test_a_marker_whose_files_are_gone_or_that_is_not_ours_is_redone(served_2017, tmp_path):
    root = _download(served_2017, tmp_path / "isic2017")
    gone = next((root / "ISIC-2017_Validation_Data").glob("*.jpg"))
    gone.unlink()
    (root / "archives" / f"{NAMES_2017[0]}.extracted").write_text("{}")  # a marker made by hand
    n_requests = len(served_2017.requests)
    _download(served_2017, root)
    assert gone.is_file() and dl.completed(root, "2017", compact=False)
    assert len(served_2017.requests) == n_requests  # the archives are kept: nothing downloaded again


def test_a_short_resume_of_a_file_first_sent_without_its_length_is_kept_for_another_try(tmp_path):
    body = make_zip({f"m{i}.bin": bytes(range(256)) * (i + 40) for i in range(20)})
    with serve({"a.zip": body}) as server:
        server.no_length = True  # the first reply had no Content-Length: its .part.json records no size
        dest = tmp_path / "a.zip"
        part = tmp_path / "a.zip.part"
        part.write_bytes(body[:1000])
        (tmp_path / "a.zip.part.json").write_text(json.dumps({"url": f"{server.url}/a.zip", "bytes": None}))
        server.truncate.add("a.zip")  # the resume ends early without an error
        with pytest.raises(DownloadError, match="a.zip is truncated: .* expected %d; .* kept" % len(body)):
            dl.download_file(f"{server.url}/a.zip", dest, verify=dl.check_zip_directory, progress=False)
        assert 1000 < part.stat().st_size < len(body)
        server.truncate.clear()
        assert dl.download_file(f"{server.url}/a.zip", dest, verify=dl.check_zip_directory,
                                progress=False).read_bytes() == body


def test_a_text_marker_of_an_earlier_version_holds_while_its_folder_has_files(served_2017, tmp_path):
    root = _download(served_2017, tmp_path / "isic2017")
    for archive in NAMES_2017:  # earlier versions wrote one line of text
        (root / "archives" / f"{archive}.extracted").write_text(f"{archive} extracted\n")
    assert dl.completed(root, "2017", compact=False) and not dl.completed(root, "2017", compact=True)
    for f in (root / NAMES_2017[0].removesuffix(".zip")).iterdir():
        f.unlink()
    assert not dl.completed(root, "2017", compact=False)
    (root / "archives" / f"{NAMES_2017[1]}.extracted").write_text("something else\n")
    assert not dl._holds(root, NAMES_2017[1], False)


@pytest.mark.parametrize("member", ["archives/ISIC-2017_Training_Data.zip.extracted", "elsewhere/ISIC_0000000.jpg",
                                    "ISIC_0000000.jpg"], ids=["fakes a marker", "another folder", "no folder"])
def test_an_archive_with_another_layout_is_refused_with_a_command_that_works(served_2017, tmp_path, archives_2017,
                                                                             capsys, member):
    name = NAMES_2017[0]
    served_2017.files[name] = make_zip({member: b"{}", "ISIC-2017_Training_Data/x.csv": b"a"})
    root = tmp_path / "isic2017"
    code, err = _cli(["download", "--data", root, "--base-url", served_2017.url, "--quiet"], capsys)
    assert code == 2 and f"its member {member!r} is outside ISIC-2017_Training_Data/" in err
    assert not (root / "archives" / f"{name}.extracted").exists() and not (root / "archives" / name).exists()
    assert not (root / "ISIC-2017_Training_Data").exists() and not (root / "elsewhere").exists()
    command = re.search(r"run again: python -m skinseg (.*)$", err.strip()).group(1).split()
    served_2017.files[name] = archives_2017[name]  # the official archive: the command given heals the folder
    (root / "archives" / name).write_bytes(archives_2017[name])
    assert command[-2:] == ["--base-url", served_2017.url] and _cli_ok([*command, "--quiet"]) == 0
    assert dl.completed(root, "2017", compact=False)


def test_an_archive_put_there_by_hand_is_never_deleted(served_2017, tmp_path, archives_2017):
    root = tmp_path / "isic2017"
    bad = make_zip({"somewhere/else.txt": b"mine"})
    (root / "archives").mkdir(parents=True)
    (root / "archives" / NAMES_2017[0]).write_bytes(bad)
    with pytest.raises(DownloadError, match=r"Replace .* with the official archive and run again: python -m skinseg"):
        _download(served_2017, root, compact=True)
    assert (root / "archives" / NAMES_2017[0]).read_bytes() == bad


def test_an_archive_that_expands_too_far_is_refused(served_2017, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(dl, "EXPANSION_SLACK", 0)
    name = NAMES_2017[0]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ISIC-2017_Training_Data/a.csv", b"\0" * (4 << 20))
    served_2017.files[name] = buf.getvalue()  # about 4 kB that would expand to 4 MB
    root = tmp_path / "isic2017"
    code, err = _cli(["download", "--data", root, "--base-url", served_2017.url, "--quiet"], capsys)
    assert code == 2 and "would expand to 4 MB, more than 20 times its size" in err and "zip bomb" in err
    assert not (root / "ISIC-2017_Training_Data").exists()


def test_the_servers_size_and_etag_are_recorded_and_checked_on_resume(served_2017, tmp_path, archives_2017):
    name = NAMES_2017[0]
    old, new = archives_2017[name], archives_2017[NAMES_2017[2]]
    assert len(old) != len(new)
    served_2017.files[name], served_2017.etags[name] = old, '"same"'
    served_2017.truncate.add(name)
    dest = tmp_path / name
    with pytest.raises(DownloadError, match="truncated"):
        dl.download_file(f"{served_2017.url}/{name}", dest, progress=False)
    assert json.loads((tmp_path / f"{name}.part.json").read_text())["bytes"] == len(old)
    served_2017.truncate.clear()
    served_2017.files[name] = new  # another file under the same ETag: its size gives it away
    dl.download_file(f"{served_2017.url}/{name}", dest, progress=False)
    assert [r for _, r in served_2017.requests[-2:]] == [f"bytes={len(old) // 2}-", None]
    assert dest.read_bytes() == new
    assert json.loads((tmp_path / f"{name}.json").read_text()) == {"url": f"{served_2017.url}/{name}",
                                                                   "bytes": len(new), "etag": '"same"'}
    dest.write_bytes(new[:-1] + b"\0\0")  # a finished download whose size no longer matches the server's
    dl.download_file(f"{served_2017.url}/{name}", dest, progress=False)
    assert dest.read_bytes() == new and served_2017.requests[-1] == (name, None)
