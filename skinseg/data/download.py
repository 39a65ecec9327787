"""Download and unpack the official ISIC challenge task-1 (segmentation) archives.

Usage::

    from pathlib import Path
    from skinseg.data.download import download_dataset

    root = download_dataset("2017", Path("data/isic2017"))
    # -> data/isic2017/archives/*.zip and data/isic2017/ISIC-2017_Training_Data/..., etc.
    root = download_dataset("2017", Path("data/isic2017"), compact=True)
    # -> the same folders and ids, images resized to 192x256, no archives kept

Downloads stream to ``<name>.part`` files and resume after an interruption (HTTP ``Range``
with ``If-Range``, so that a file changed on the server is fetched afresh rather than
spliced). Before a download is renamed into place it is checked against the size and
SHA-256 of :data:`ARCHIVES` where those are known, and otherwise the zip archive is tested
member by member; a damaged file is deleted, so that running again heals. Extraction
refuses members that would land outside the target folder, goes into a temporary folder,
and is moved into place only when every member was written. A marker file per archive
makes a second call skip finished work, and the data folder is locked while a download
runs (:mod:`skinseg.lock`). Without internet, put the archives by hand into
``root/"archives"`` and call again; ``base_url`` points the downloader at a mirror instead
of the official bucket.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import stat
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path, PurePosixPath, PureWindowsPath
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..atomic import write_text_atomic
from ..errors import DataError, DownloadError
from ..lock import output_lock
from .isic import IMAGE_EXTENSIONS, LAYOUTS, MASK_SUFFIX, find_pairs, open_image, read_mask, resize_image, resize_mask

__all__ = ["Archive", "ARCHIVES", "COMPACT_SIZE", "check_zip", "download_file", "safe_extract", "compact_extract",
           "download_dataset"]

COMPACT_SIZE = (192, 256)  # (H, W): the models' input, and the size of the book's shared copy
COMPACT_JPEG_QUALITY = 90


@dataclass(frozen=True)
class Archive:
    """One downloadable archive; ``size`` (bytes) and ``sha256`` are checked when not None."""

    filename: str
    url: str
    size: int | None = None
    sha256: str | None = None


_BUCKET = "https://isic-challenge-data.s3.amazonaws.com"


def _archives(year: str, names: list[str]) -> list[Archive]:
    return [Archive(name, f"{_BUCKET}/{year}/{name}") for name in names]


# The sizes (bytes) and SHA-256 digests of the official archives. Those not yet recorded
# are None: they could not be fetched where this table was written (no internet), and a
# value that was not checked against the real file would be worse than none. Until they
# are filled in (from `sha256sum` and `stat -c %s` of a finished download), an archive is
# checked by the server's Content-Length and by testing the zip itself (check_zip).
ARCHIVES: dict[str, list[Archive]] = {
    "2016": _archives("2016", [
        "ISBI2016_ISIC_Part1_Training_Data.zip",
        "ISBI2016_ISIC_Part1_Training_GroundTruth.zip",
        "ISBI2016_ISIC_Part1_Test_Data.zip",
        "ISBI2016_ISIC_Part1_Test_GroundTruth.zip",
    ]),
    "2017": _archives("2017", [
        "ISIC-2017_Training_Data.zip",
        "ISIC-2017_Training_Part1_GroundTruth.zip",
        "ISIC-2017_Validation_Data.zip",
        "ISIC-2017_Validation_Part1_GroundTruth.zip",
        "ISIC-2017_Test_v2_Data.zip",
        "ISIC-2017_Test_v2_Part1_GroundTruth.zip",
    ]),
}


def _sha256(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def check_zip(path: Path, name: str | None = None) -> None:
    """Raise :class:`DownloadError` unless ``path`` is a complete zip archive whose every member
    passes its CRC check (:meth:`zipfile.ZipFile.testzip`). Reads the whole file. ``name``
    (default the file's) is what the message calls it."""
    name = name or Path(path).name
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, OSError) as e:
        raise DownloadError(f"{name} is not a complete zip archive ({e})") from None
    if bad is not None:
        raise DownloadError(f"{name} is damaged: its member {bad!r} fails its CRC check")


def _verified(path: Path, size: int | None, sha256: str | None, verify, name: str) -> str | None:
    """Why ``path`` (called ``name``) fails its checks (size, SHA-256 where known, else ``verify``), or None."""
    got = path.stat().st_size
    if size is not None and got != size:
        return f"{name} has {got} bytes, expected {size}"
    if sha256 is not None:
        actual = _sha256(path)
        return None if actual == sha256.lower() else (f"{name} failed its sha256 check: expected "
                                                      f"{sha256.lower()}, got {actual}")
    if verify is not None:
        try:
            verify(path, name)
        except DownloadError as e:
            return str(e)
    return None


def _sidecar(part: Path) -> Path:
    """Where the validators (ETag, Last-Modified) of a partial download are kept."""
    return part.with_name(part.name + ".json")


def _discard(part: Path) -> None:
    part.unlink(missing_ok=True)
    _sidecar(part).unlink(missing_ok=True)


def _open(url: str, offset: int, timeout: float, dest: Path, if_range: str | None = None):
    headers = {"User-Agent": "skinseg"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if if_range:
            headers["If-Range"] = if_range
    try:
        return urlopen(Request(url, headers=headers), timeout=timeout)
    except HTTPError as e:
        if e.code == 416:
            return e  # the caller decides what "range not satisfiable" means
        raise DownloadError(f"HTTP error {e.code} ({e.reason}) for {url}") from e
    except (URLError, HTTPException, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(
            f"cannot reach {url} ({reason}); this machine seems offline or the server is "
            f"unreachable. You can download the archive by hand into {dest.parent}/ and run again"
        ) from e


def download_file(url: str, dest: Path, *, size: int | None = None, sha256: str | None = None,
                  verify=None, progress: bool = True, timeout: float = 30.0, chunk_size: int = 1 << 20) -> Path:
    """Download ``url`` to ``dest``, resuming a partial ``dest.part`` and verifying it.

    The bytes go to ``<dest>.part``, with the server's ETag or Last-Modified kept beside it
    (``<dest>.part.json``); a leftover ``.part`` is resumed with an HTTP ``Range`` request
    carrying that validator as ``If-Range``, so a server whose file changed sends it whole
    and the download restarts from zero (as it does when the server ignores the range). The
    file is renamed to ``dest`` only after its size and SHA-256 match ``size`` / ``sha256``
    (where given), or, when no SHA-256 is known, ``verify(path, name)`` (e.g. :func:`check_zip`)
    passes. An existing ``dest`` that passes the same checks is returned as is; one that
    fails them is downloaded again.

    Raises:
        DownloadError: offline or unreachable server, HTTP error, truncated transfer (the
            ``.part`` is kept for a later resume), or a file that fails its checks (it is
            deleted, so that the next call downloads it afresh).
    """
    dest = Path(dest)
    if dest.is_file():
        if _verified(dest, size, sha256, verify, dest.name) is None:
            return dest
        dest.unlink()  # a stale or damaged copy: download it afresh
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    if size is not None and offset > size:
        _discard(part)
        offset = 0
    if size is None or offset < size:
        _stream(url, dest, part, offset, progress, timeout, chunk_size)
    got = part.stat().st_size
    if size is not None and got < size:
        raise DownloadError(f"{part.name} is truncated: got {got} bytes, expected {size}; "
                            f"run again to resume the download")
    problem = _verified(part, size, sha256, verify, dest.name)
    if problem is not None:
        _discard(part)
        raise DownloadError(f"{problem}; deleted it, run again to download it afresh")
    os.replace(part, dest)
    _sidecar(part).unlink(missing_ok=True)
    return dest


def _validator(headers) -> dict:
    return {k: headers.get(h) for k, h in (("etag", "ETag"), ("last_modified", "Last-Modified")) if headers.get(h)}


def _stream(url: str, dest: Path, part: Path, offset: int, progress: bool,
            timeout: float, chunk_size: int) -> None:
    stored = {}
    if offset:
        try:
            stored = json.loads(_sidecar(part).read_text())
        except (OSError, ValueError):
            stored = {}
        if stored.get("url") not in (None, url):  # a .part of another address: not ours to continue
            _discard(part)
            return _stream(url, dest, part, 0, progress, timeout, chunk_size)
    resp = _open(url, offset, timeout, dest, if_range=stored.get("etag") or stored.get("last_modified"))
    with resp:
        if resp.status == 416 and not offset:
            raise DownloadError(f"HTTP error 416 (range not satisfiable) for {url}")
        if resp.status == 416:  # nothing left past `offset`: complete, or a stale larger .part
            m = re.search(r"/(\d+)", resp.headers.get("Content-Range", ""))
            if m and int(m.group(1)) == offset:
                return
            _discard(part)
            return _stream(url, dest, part, 0, progress, timeout, chunk_size)
        length = resp.headers.get("Content-Length")
        if resp.status == 206 and offset:
            now = _validator(resp.headers)
            if stored.get("etag") and now.get("etag") and now["etag"] != stored["etag"]:
                _discard(part)  # the server ignored If-Range, but says the file changed
                return _stream(url, dest, part, 0, progress, timeout, chunk_size)
            m = re.match(r"bytes (\d+)-\d+/(\d+|\*)", resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != offset:
                raise DownloadError(f"server answered a bad Content-Range for {url}: "
                                    f"{resp.headers.get('Content-Range')!r}")
            total = int(m.group(2)) if m.group(2) != "*" else None
        else:  # 200: the whole file (no range asked, the range ignored, or the file changed)
            offset = 0
            total = int(length) if length is not None else None
            write_text_atomic(_sidecar(part), json.dumps({"url": url, **_validator(resp.headers)}))
        got = offset
        with open(part, "ab" if offset else "wb") as f, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                desc=dest.name, disable=not progress) as bar:
            try:
                while chunk := resp.read(chunk_size):
                    f.write(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
            except (HTTPException, OSError, socket.timeout) as e:
                raise DownloadError(f"{dest.name}: transfer interrupted after {got} of "
                                    f"{total if total is not None else '?'} bytes ({e}); "
                                    f"run again to resume") from e
    if total is not None and got < total:
        raise DownloadError(f"{dest.name} is truncated: got {got} bytes, expected {total}; "
                            f"the partial file {part.name} is kept, run again to resume")


def _bad_member(info: zipfile.ZipInfo, target: Path) -> bool:
    name = info.filename
    if stat.S_ISLNK(info.external_attr >> 16):
        return True
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive or PurePosixPath(name).is_absolute():
        return True
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return True
    return not (target / name).resolve().is_relative_to(target)


def _move_into_place(source: Path, target: Path) -> None:
    """Move every entry of ``source`` into ``target``, merging folders that exist in both."""
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        there = target / entry.name
        if entry.is_dir() and there.is_dir():
            _move_into_place(entry, there)
        else:
            if there.is_dir():
                shutil.rmtree(there)
            os.replace(entry, there)


def _unpack(zip_path: Path, target: Path, write_members) -> list[Path]:
    """Check every member of ``zip_path``, let ``write_members(zf, infos, tmp)`` write them into a
    temporary folder inside ``target``, and move the result into place; returns the paths written."""
    zip_path, target = Path(zip_path), Path(target)
    if not zip_path.is_file():
        raise DownloadError(f"archive {zip_path} does not exist")
    try:
        with zipfile.ZipFile(zip_path) as zf:
            infos = zf.infolist()
            root = target.resolve()
            for info in infos:
                if _bad_member(info, root):
                    raise DownloadError(f"{zip_path} contains an unsafe member {info.filename!r} "
                                        f"(absolute path, '..' or symlink); nothing was extracted")
            target.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=target, prefix=f".extracting-{zip_path.name}-"))
            try:
                written = write_members(zf, infos, tmp)
                _move_into_place(tmp, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error) as e:
        raise DownloadError(f"{zip_path} is not a valid zip archive ({e}); nothing was extracted. Delete it "
                            f"and run again to download it afresh") from e
    return [target / p for p in written]


def safe_extract(zip_path: Path, target: Path) -> list[Path]:
    """Extract ``zip_path`` into ``target`` and return the paths of the extracted files.

    Every member is checked first: absolute paths, ``..`` components and symlinks are
    refused. The members are written into a temporary folder inside ``target`` and moved
    into place only when all were written, so a damaged member leaves ``target`` as it was.

    Raises:
        DownloadError: naming the archive and the offending member, or a corrupt archive.
    """
    def write(zf, infos, tmp):
        zf.extractall(tmp)
        return [i.filename for i in infos if not i.is_dir()]
    return _unpack(zip_path, target, write)


def _is_mask(name: str) -> bool:
    return name.endswith(tuple(MASK_SUFFIX.values()))


def compact_extract(zip_path: Path, target: Path, size: tuple[int, int] = COMPACT_SIZE,
                    progress: bool = True) -> list[Path]:
    """Extract ``zip_path`` into ``target`` as a compact copy, at the models' input size.

    Images (``X.jpg``) are resized to ``size = (H, W)`` as :func:`~skinseg.data.isic.read_pair`
    resizes them and stored as JPEG (quality 90); masks (``X_segmentation.png``) are
    checked (:func:`~skinseg.data.isic.binary_mask`), resized the same way and stored as 0/255
    PNGs; ``*_superpixels.png`` files are skipped and other files (metadata) kept as they
    are. Folder names and ids stay the official ones, so every reader of the full copy reads
    this one. Members are decoded straight from the archive, without extracting it first,
    and moved into place only when all succeeded (as in :func:`safe_extract`).

    Raises:
        DownloadError: an unsafe member or a corrupt archive.
        DataError: an image or mask that cannot be decoded or is not binary, naming the member.
    """
    def write(zf, infos, tmp):
        written = []
        files = [i for i in infos if not i.is_dir()]
        for info in tqdm(files, desc=f"compact {zip_path.name}", unit="file", disable=not progress):
            name = PurePosixPath(info.filename)
            if name.stem.endswith("_superpixels"):
                continue
            out = tmp / name
            out.parent.mkdir(parents=True, exist_ok=True)
            label = f"{zip_path.name}:{info.filename}"
            with zf.open(info) as f:
                if _is_mask(name.name):
                    Image.fromarray(resize_mask(read_mask(f, label), size) * np.uint8(255)).save(out, format="PNG")
                elif name.suffix.lower() in IMAGE_EXTENSIONS:
                    image = resize_image(open_image(f, "RGB", label), size)
                    fmt = "PNG" if name.suffix.lower() == ".png" else "JPEG"
                    image.save(out, format=fmt, quality=COMPACT_JPEG_QUALITY)
                else:
                    with open(out, "wb") as o:
                        shutil.copyfileobj(f, o)
            written.append(info.filename)
        return written
    return _unpack(zip_path, target, write)


def _check_pairs(root: Path, year: str) -> None:
    """Raise :class:`DownloadError` unless every split of ``year`` pairs images and masks."""
    for split in LAYOUTS[year]:
        try:
            find_pairs(root, year, split)
        except DataError as e:
            raise DownloadError(f"the archives of ISIC {year} were extracted into {root}, but: {e}") from None


def download_dataset(year: str, root: Path, *, base_url: str | None = None, progress: bool = True,
                     keep_archives: bool | None = None, compact: bool = False,
                     size: tuple[int, int] = COMPACT_SIZE) -> Path:
    """Download and extract all task-1 archives of ISIC ``year`` ("2016" or "2017") into ``root``.

    Archives go to ``root/"archives"``; each one is checked (:func:`download_file` with
    :func:`check_zip`) and extracted into ``root`` (giving e.g. ``root/"ISIC-2017_Training_Data"``),
    and a marker ``archives/<name>.extracted`` is written, so a second call skips finished
    work. With ``compact=True`` each archive is stored as a compact copy instead
    (:func:`compact_extract`: images and masks at ``size``, no superpixels; marker
    ``<name>.compact``), which suits Colab. ``keep_archives`` (default: keep them, except
    with ``compact``) deletes each zip once it is extracted. ``base_url`` replaces the URL
    prefix (everything before the file name), for mirrors and tests. ``root`` is locked
    while this runs (:mod:`skinseg.lock`). At the end every split is checked to pair
    images with masks. Returns ``root``.
    """
    year = str(year)
    if year not in ARCHIVES:
        raise DownloadError(f"unknown ISIC year {year!r}; valid years: {', '.join(sorted(ARCHIVES))}")
    root = Path(root)
    keep_archives = not compact if keep_archives is None else keep_archives
    kind = "compact" if compact else "extracted"
    with output_lock(root):
        for stale in root.glob(".extracting-*"):  # left by a killed run; nobody else holds the folder
            shutil.rmtree(stale, ignore_errors=True)
        archive_dir = root / "archives"
        archive_dir.mkdir(parents=True, exist_ok=True)
        for archive in ARCHIVES[year]:
            marker = archive_dir / f"{archive.filename}.{kind}"
            if marker.is_file():
                continue
            url = archive.url if base_url is None else f"{base_url.rstrip('/')}/{archive.filename}"
            zip_path = download_file(url, archive_dir / archive.filename, size=archive.size,
                                     sha256=archive.sha256, verify=check_zip, progress=progress)
            if compact:
                compact_extract(zip_path, root, size, progress=progress)
                note = f"{archive.filename} stored into {root} as a compact copy at {size[0]}x{size[1]} (H x W)\n"
            else:
                safe_extract(zip_path, root)
                note = f"{archive.filename} extracted into {root}\n"
            write_text_atomic(marker, note)
            if not keep_archives:
                zip_path.unlink()
        _check_pairs(root, year)
    return root
