"""Tests of skinseg.data.download against a real HTTP server on 127.0.0.1."""
from __future__ import annotations

import hashlib
import io
import re
import socket
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from skinseg.data import download as dl
from skinseg.errors import DownloadError

NAMES_2017 = [a.filename for a in dl.ARCHIVES["2017"]]


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.files`` with Range support; names in ``server.truncate`` get cut in half."""

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        srv = self.server
        name = self.path.lstrip("/")
        srv.requests.append((name, self.headers.get("Range")))
        body = srv.files.get(name)
        if body is None:
            self.send_error(404)
            return
        m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if m and not srv.ignore_range:
            start = int(m.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            body = body[start:]
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if name in srv.truncate else body)
        self.close_connection = True


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.requests, srv.truncate, srv.ignore_range = {}, [], set(), False
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _fake_archive(filename: str) -> bytes:
    folder = filename.removesuffix(".zip")
    return _zip({f"{folder}/ISIC_0000000.txt": f"{folder} image 0".encode() * 50,
                 f"{folder}/ISIC_0000001.txt": f"{folder} image 1".encode() * 50})


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def served_2017(server):
    for name in NAMES_2017:
        server.files[name] = _fake_archive(name)
    return server


def test_download_dataset_2017_and_second_call_is_noop(served_2017, tmp_path):
    root = tmp_path / "isic2017"
    assert dl.download_dataset("2017", root, base_url=served_2017.url + "/", progress=False) == root
    assert sorted(n for n, _ in served_2017.requests) == sorted(NAMES_2017)
    for name in NAMES_2017:
        folder = root / name.removesuffix(".zip")
        assert (folder / "ISIC_0000000.txt").read_bytes() == f"{folder.name} image 0".encode() * 50
        assert (root / "archives" / name).read_bytes() == served_2017.files[name]
        assert not (root / "archives" / (name + ".part")).exists()
    n_requests = len(served_2017.requests)
    sentinel = root / "ISIC-2017_Training_Data" / "ISIC_0000000.txt"
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
    zip_path.write_bytes(_zip({"good/first.txt": b"fine", member: b"evil"}))
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
    zip_path.write_bytes(_zip({"d/a.txt": b"a", "d/b.txt": b"b"}))
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
