"""Shared fixtures and helpers: small SYNTHETIC ISIC layouts, an isolated cache, ``python -m skinseg`` runs,
striped masks and a local HTTP server for downloads.

Everything here is small (64x64 images, a handful of files, width 4-8 networks) so that
the whole suite runs in a few minutes on two CPU cores.
"""
from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from skinseg.lab.synthetic import write_isic_layout

REPO = Path(__file__).resolve().parents[1]
SIZE = (64, 64)

# One thread per process: the networks here are tiny, and on a shared machine with two
# cores several threads per process mostly wait for each other (several times slower).
# Child processes get the same setting, which also keeps their arithmetic like ours.
THREADS = "1"
torch.set_num_threads(int(THREADS))


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch, tmp_path_factory):
    """Keep decoded-array caches out of the home folder, ignore a profile set in the shell, and
    restore the data and results folders after every test (``colab.prepare`` sets ``SKINSEG_DATA``
    for the session, as it must on Colab; the chapters that nbval runs later read it)."""
    monkeypatch.setenv("SKINSEG_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.delenv("SKINSEG_PROFILE", raising=False)
    saved = {name: os.environ.get(name) for name in ("SKINSEG_DATA", "SKINSEG_RESULTS")}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def layout_2017(tmp_path_factory) -> Path:
    """A SYNTHETIC ISIC 2017 layout: 8 train, 4 val, 4 test images of 64x64. Read only."""
    return write_isic_layout(tmp_path_factory.mktemp("isic2017"), "2017", n_train=8, n_val=4, n_test=4,
                             size=SIZE, seed=0)


@pytest.fixture(scope="session")
def layout_2016(tmp_path_factory) -> Path:
    """A SYNTHETIC ISIC 2016 layout: 20 training images (16 train + 4 val) and 4 test images. Read only."""
    return write_isic_layout(tmp_path_factory.mktemp("isic2016"), "2016", n_train=20, n_test=4, size=SIZE, seed=1)


@pytest.fixture
def layout_copy(layout_2017, tmp_path) -> Path:
    """A private, writable copy of :func:`layout_2017` for tests that damage it."""
    return Path(shutil.copytree(layout_2017, tmp_path / "data"))


def child_env(cache: Path) -> dict[str, str]:
    """Environment for a ``python -m skinseg`` child process: its own cache, no inherited profile."""
    env = {k: v for k, v in os.environ.items() if k != "SKINSEG_PROFILE"}
    env["SKINSEG_CACHE"] = str(cache)
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = THREADS
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def run_cli(args: list[str], cwd: Path, cache: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m skinseg *args`` and capture its output."""
    return subprocess.run([sys.executable, "-m", "skinseg", *map(str, args)], cwd=cwd, env=child_env(cache),
                          capture_output=True, text=True, timeout=timeout)


def write_striped_mask(path: Path, values: Sequence[int]) -> None:
    """Write a 64x64 mask PNG of vertical stripes, one per value of ``values`` (left to right, equal widths):
    8-bit, or 16-bit where a value exceeds 255. A mask with values such as (0, 1, 2) is not binary."""
    stripes = np.array(values)[np.arange(SIZE[1]) * len(values) // SIZE[1]]
    Image.fromarray(np.tile(stripes, (SIZE[0], 1)).astype(np.uint16 if max(values) > 255 else np.uint8)).save(path)

# ----------------------------------------------------------------------------- a local HTTP server


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.files`` with Range and If-Range (against ``server.etags``) support.

    Names in ``server.truncate`` are cut in half; with ``server.no_length`` no Content-Length
    is sent (the end of the body is the end of the connection); ``ignore_range`` answers 200.
    """

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        srv = self.server
        name = self.path.lstrip("/")
        srv.requests.append((name, self.headers.get("Range")))
        srv.if_ranges.append(self.headers.get("If-Range"))
        body = srv.files.get(name)
        if body is None:
            self.send_error(404)
            return
        etag = srv.etags.get(name)
        m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if_range = self.headers.get("If-Range")
        if m and not srv.ignore_range and (if_range is None or srv.ignore_if_range or if_range == etag):
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
        if etag:
            self.send_header("ETag", etag)
        if not srv.no_length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if name in srv.truncate else body)
        self.close_connection = True


@contextmanager
def serve(files: dict[str, bytes] | None = None) -> Iterator[ThreadingHTTPServer]:
    """An HTTP server on 127.0.0.1, in a thread, serving ``files`` (path without the leading / -> body).

    The server it yields has ``url`` (``http://127.0.0.1:PORT``, no trailing /), the switches of
    :class:`_Handler` to change what it serves (all off), and ``requests``: the (path, Range header)
    of every request, in order (``if_ranges`` holds their If-Range headers).
    """
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.etags, srv.requests, srv.if_ranges, srv.truncate = dict(files or {}), {}, [], [], set()
    srv.ignore_range = srv.ignore_if_range = srv.no_length = False
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


def make_zip(members: dict[str, bytes]) -> bytes:
    """A zip archive (its bytes) holding ``members`` (name -> contents)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def damage_zip(data: bytes) -> bytes:
    """``data`` with one byte of its first member's contents changed: a complete zip that fails its CRC check."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.infolist()[0]
    at = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + info.compress_size // 2
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]

# ----------------------------------------------------------------------------- the book


@dataclass(frozen=True)
class BookBuild:
    """One Jupyter Book build: the HTML folder, the build's log and its exit code."""

    html: Path
    log: str
    returncode: int


@pytest.fixture(scope="session")
def built_book(tmp_path_factory) -> BookBuild:
    """The book built once per test session (warnings as errors, nitpicky), for every test that reads it."""
    out = tmp_path_factory.mktemp("book")
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    result = subprocess.run([str(jupyter_book), "build", str(REPO), "--path-output", str(out), "--warningiserror",
                             "--nitpick", "--keep-going"], capture_output=True, text=True, cwd=REPO)
    return BookBuild(out / "_build" / "html", result.stdout + result.stderr, result.returncode)
