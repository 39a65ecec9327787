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
spliced). No size or hash of the official archives is published, so the server's
Content-Length and ETag are recorded on the first request (``<name>.json``) and checked on
every resume and every later call. Before a download is renamed into place it is checked
against the size and SHA-256 of :data:`ARCHIVES` where those are known, and otherwise its
zip directory is read; every member's CRC-32 is checked as extraction reads it, and a
damaged file is deleted, so that running again heals. Extraction refuses members that would
land outside the archive's own folder and archives that would expand past
:data:`MAX_EXPANSION` times their size, goes into a temporary folder, and is moved into
place only when every member was written. A marker per archive (JSON: full or compact copy,
size, the files written, the archive's bytes and ETag) makes a second call skip finished
work once the files it lists are found; the data folder is locked while a download runs
(:mod:`skinseg.lock`). A compact copy never replaces a full one without ``overwrite``. Without internet, put the archives by hand into
``root/"archives"`` and call again; ``base_url`` points the downloader at a mirror instead
of the official bucket.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import socket
import stat
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path, PurePosixPath, PureWindowsPath
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from PIL import Image
from tqdm.auto import tqdm

from ..atomic import write_text_atomic
from ..errors import DataError, DownloadError
from ..lock import output_lock
from .compact import DamagedArchive, compact_members, kept
from .isic import LAYOUTS, find_pairs

__all__ = ["Archive", "ARCHIVES", "COMPACT_SIZE", "MAX_EXPANSION", "check_zip", "check_zip_directory", "completed",
           "download_file", "probe", "safe_extract", "compact_extract", "download_dataset"]

COMPACT_SIZE = (192, 256)  # (H, W): the models' input, and the size of the book's shared copy
# An archive may expand to at most this many times its own size plus EXPANSION_SLACK bytes. The
# official archives hold JPEGs and PNGs, which deflate hardly at all (about 1x); a zip bomb
# expands hundreds of times.
MAX_EXPANSION, EXPANSION_SLACK = 20, 100 << 20
_IGNORED_PREFIX = "__MACOSX/"  # resource forks that macOS zip tools add; never extracted


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


def check_zip_directory(path: Path, name: str | None = None) -> None:
    """Raise :class:`DownloadError` unless ``path`` ends in a readable zip directory (a truncated
    download does not). Reads only the directory: the members' CRCs are checked as they are extracted."""
    name = name or Path(path).name
    try:
        with zipfile.ZipFile(path) as zf:
            zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as e:
        raise DownloadError(f"{name} is not a complete zip archive ({e})") from None


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


def _record(dest: Path) -> Path:
    """Where a finished download keeps what the server said of it: url, bytes, ETag, Last-Modified."""
    return dest.with_name(dest.name + ".json")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


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

    The bytes go to ``<dest>.part``, with the server's Content-Length, ETag and Last-Modified
    kept beside it (``<dest>.part.json``); a leftover ``.part`` is resumed with an HTTP
    ``Range`` request carrying that validator as ``If-Range``, so a server whose file changed
    sends it whole and the download restarts from zero (as it does when the server ignores
    the range, or answers another ETag or total size than recorded). The file is renamed to
    ``dest`` only after its size and SHA-256 match ``size`` / ``sha256`` (where given) and the
    recorded Content-Length, and ``verify(path, name)`` (e.g. :func:`check_zip_directory`)
    passes where no SHA-256 is known; the record moves to ``<dest>.json``. An existing
    ``dest`` that passes the same checks (its record's size included) is returned as is; one
    that fails them is downloaded again.

    Raises:
        DownloadError: offline or unreachable server, HTTP error, truncated transfer (the
            ``.part`` is kept for a later resume), or a file that fails its checks (it is
            deleted, so that the next call downloads it afresh).
    """
    dest = Path(dest)
    if dest.is_file():
        recorded = _read_json(_record(dest)).get("bytes")
        if (recorded is None or recorded == dest.stat().st_size) and _verified(dest, size, sha256, verify,
                                                                                dest.name) is None:
            return dest
        dest.unlink()  # a stale or damaged copy: download it afresh
        _record(dest).unlink(missing_ok=True)
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
    recorded = _read_json(_sidecar(part)).get("bytes")
    problem = (f"{dest.name} has {got} bytes, but the server announced {recorded}"
               if recorded is not None and got != recorded else _verified(part, size, sha256, verify, dest.name))
    if problem is not None:
        _discard(part)
        raise DownloadError(f"{problem}; deleted it, run again to download it afresh")
    os.replace(part, dest)
    if _sidecar(part).is_file():
        os.replace(_sidecar(part), _record(dest))
    return dest


def probe(url: str, seconds: float = 0.0, timeout: float = 30.0) -> tuple[int | None, float | None]:
    """What the server announces for ``url``: its size in bytes (Content-Length, None if not sent),
    and with ``seconds > 0`` the transfer rate in bytes/s measured by reading for about that long
    (nothing is kept). Raises :class:`DownloadError` as :func:`download_file` does."""
    with _open(url, 0, timeout, Path(PurePosixPath(url).name)) as resp:
        length = resp.headers.get("Content-Length")
        size = int(length) if length is not None and length.isdigit() else None
        if seconds <= 0:
            return size, None
        got, start = 0, time.perf_counter()
        try:
            while (elapsed := time.perf_counter() - start) < seconds and (chunk := resp.read(1 << 16)):
                got += len(chunk)
        except (HTTPException, OSError, socket.timeout) as e:
            raise DownloadError(f"{url}: transfer interrupted ({e})") from e
        elapsed = time.perf_counter() - start
    return size, got / elapsed if got and elapsed > 0 else None


def _validator(headers) -> dict:
    return {k: headers.get(h) for k, h in (("etag", "ETag"), ("last_modified", "Last-Modified")) if headers.get(h)}


def _stream(url: str, dest: Path, part: Path, offset: int, progress: bool,
            timeout: float, chunk_size: int) -> None:
    stored = {}
    if offset:
        stored = _read_json(_sidecar(part))
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
            if stored.get("bytes") is not None and total is not None and total != stored["bytes"]:
                _discard(part)  # another size than the first answer announced: the file changed
                return _stream(url, dest, part, 0, progress, timeout, chunk_size)
        else:  # 200: the whole file (no range asked, the range ignored, or the file changed)
            offset = 0
            total = int(length) if length is not None else None
            write_text_atomic(_sidecar(part), json.dumps({"url": url, "bytes": total, **_validator(resp.headers)}))
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


def _check_members(zip_path: Path, infos: list[zipfile.ZipInfo], root: Path, folder: str | None) -> None:
    """Refuse unsafe members, members outside ``folder`` and an archive that expands too far."""
    for info in infos:
        if _bad_member(info, root):
            raise DownloadError(f"{zip_path} contains an unsafe member {info.filename!r} "
                                f"(absolute path, '..' or symlink); nothing was extracted")
        if folder is not None and not info.filename.startswith(f"{folder}/"):
            raise DownloadError(f"{zip_path} does not have the official layout: its member {info.filename!r} is "
                                f"outside {folder}/; nothing was extracted")
    expanded = sum(i.file_size for i in infos)
    limit = MAX_EXPANSION * zip_path.stat().st_size + EXPANSION_SLACK
    if expanded > limit:
        raise DownloadError(f"{zip_path} would expand to {expanded / 1e6:.0f} MB, more than {MAX_EXPANSION} times "
                            f"its size ({limit / 1e6:.0f} MB); refused as a possible zip bomb, nothing was extracted")


def _unpack(zip_path: Path, target: Path, write_members, folder: str | None) -> list[Path]:
    """Check every member of ``zip_path``, let ``write_members(zf, infos, tmp)`` write them into a
    temporary folder inside ``target``, and move the result into place; returns the paths written."""
    zip_path, target = Path(zip_path), Path(target)
    if not zip_path.is_file():
        raise DownloadError(f"archive {zip_path} does not exist")
    try:
        with zipfile.ZipFile(zip_path) as zf:
            infos = [i for i in zf.infolist() if not i.filename.startswith(_IGNORED_PREFIX)]
            _check_members(zip_path, infos, target.resolve(), folder)
            target.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=target, prefix=f".extracting-{zip_path.name}-"))
            try:
                written = write_members(zf, [i for i in infos if not i.is_dir()], tmp)
                _move_into_place(tmp, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except DamagedArchive as e:
        raise DamagedArchive(f"{zip_path} is not a valid zip archive (its member {e.member!r} fails its CRC check); "
                             f"nothing was extracted. Delete it and run again to download it afresh", e.member) from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error) as e:
        member = re.search(r"Bad CRC-32 for file '(.*)'", str(e))
        raise DamagedArchive(f"{zip_path} is not a valid zip archive ({e}); nothing was extracted. Delete it "
                             f"and run again to download it afresh", member.group(1) if member else None) from None
    return [target / p for p in written]


def safe_extract(zip_path: Path, target: Path, folder: str | None = None) -> list[Path]:
    """Extract ``zip_path`` into ``target`` and return the paths of the extracted files.

    Every member is checked first: absolute paths, ``..`` components and symlinks are
    refused, and with ``folder`` every member must lie in ``target/folder`` (as in the official
    archives); an archive that would expand past :data:`MAX_EXPANSION` times its size is
    refused. Each member's CRC is checked as it is written. The members are written into a
    temporary folder inside ``target`` and moved into place only when all were written, so a
    damaged member leaves ``target`` as it was.

    Raises:
        DownloadError: naming the archive and the offending member, or a corrupt archive.
    """
    def write(zf, infos, tmp):
        for info in infos:
            zf.extract(info, tmp)
        return [i.filename for i in infos]
    return _unpack(zip_path, target, write, folder)


def _write_output(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def compact_extract(zip_path: Path, target: Path, size: tuple[int, int] = COMPACT_SIZE,
                    progress: bool = True, folder: str | None = None, workers: int | None = None) -> list[Path]:
    """Extract ``zip_path`` into ``target`` as a compact copy, at the models' input size.

    Images (``X.jpg``) are resized to ``size = (H, W)`` (JPEGs decoded in draft mode, then
    area-averaged as :func:`~skinseg.data.isic.resize_image` does; see
    :mod:`skinseg.data.compact` for the measured difference) and stored as JPEG (quality 90);
    masks (``X_segmentation.png``) are checked (:func:`~skinseg.data.isic.binary_mask`),
    resized as :func:`~skinseg.data.isic.resize_mask` does and stored as 0/255 PNGs;
    ``*_superpixels.png`` files are skipped and other files (metadata) kept as they are. Folder
    names and ids stay the official ones, so every reader of the full copy reads this one.
    Members are decoded straight from the archive by ``workers`` processes (default: the
    cores, at most 4; the output is the same for any number), each member's CRC checked as it
    is read, and moved into place only when all succeeded (as in :func:`safe_extract`, whose
    ``folder`` check applies too).

    Raises:
        DownloadError: an unsafe member, a damaged member (named) or a corrupt archive.
        DataError: an image or mask that cannot be decoded or is not binary, naming the member.
    """
    def write(zf, infos, tmp):
        names = [i.filename for i in infos if kept(i.filename)]
        outputs = compact_members(zip_path, names, size, workers)
        for name, data in tqdm(zip(names, outputs), total=len(names), desc=f"compact {Path(zip_path).name}",
                               unit="file", disable=not progress):
            _write_output(tmp / name, data)
        return names
    return _unpack(zip_path, target, write, folder)

# ----------------------------------------------------------------------------- markers: what a folder holds


def _marker(archive_dir: Path, filename: str, compact: bool) -> Path:
    return archive_dir / f"{filename}.{'compact' if compact else 'extracted'}"


def _marker_holds(path: Path, root: Path) -> bool:
    """Whether marker ``path`` is one this module wrote and every file it lists is in ``root``.

    A marker of an older version (a line of text) holds while its archive's folder is not empty."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return False
    try:
        made = json.loads(text)
    except ValueError:
        folder = root / path.name.rsplit(".zip.", 1)[0]
        return text.startswith(path.name.rsplit(".", 1)[0]) and folder.is_dir() and any(folder.iterdir())
    kind = "compact" if path.suffix == ".compact" else "full"
    files = made.get("files") if isinstance(made, dict) else None
    return (made.get("kind") == kind and isinstance(files, list) and bool(files)
            and all(isinstance(f, str) and (root / f).is_file() for f in files))


def completed(root: Path, year: str, compact: bool) -> bool:
    """Whether ``root`` holds every archive of ISIC ``year`` as a full (``compact=False``) or compact copy,
    by markers whose listed files are all there."""
    archive_dir = Path(root) / "archives"
    return all(_marker_holds(_marker(archive_dir, a.filename, compact), Path(root)) for a in ARCHIVES[str(year)])


def _write_marker(path: Path, compact: bool, size, files: list[Path], root: Path, zip_path: Path) -> None:
    record = _read_json(_record(zip_path))
    made = {"kind": "compact" if compact else "full", "archive": zip_path.name,
            "archive_bytes": zip_path.stat().st_size, "etag": record.get("etag"),
            "size_hw": list(size) if compact else None,
            "bytes": sum(f.stat().st_size for f in files),
            "files": sorted(str(f.relative_to(root)) for f in files)}
    write_text_atomic(path, json.dumps(made, indent=0) + "\n")


def _full_copy(root: Path, year: str, size: tuple[int, int]) -> str | None:
    """What shows that ``root`` holds full-resolution data of ``year`` (a full marker or a large image), or None."""
    archive_dir = root / "archives"
    for archive in ARCHIVES[year]:
        if _marker(archive_dir, archive.filename, False).is_file():
            return f"the marker {archive_dir / (archive.filename + '.extracted')} of a full download"
    for images, _ in LAYOUTS[year].values():
        found = sorted((root / images).iterdir()) if (root / images).is_dir() else []
        for path in (p for p in found if p.suffix.lower() in (".jpg", ".jpeg")):
            try:
                with Image.open(path) as im:
                    if im.size != (size[1], size[0]):
                        return f"{path} at {im.size[0]}x{im.size[1]}"
            except Image.DecompressionBombError:
                return f"{path}, an image too large to be a compact copy"
            except (OSError, SyntaxError):
                continue
    return None


def _check_pairs(root: Path, year: str) -> None:
    """Raise :class:`DownloadError` unless every split of ``year`` pairs images and masks."""
    for split in LAYOUTS[year]:
        try:
            find_pairs(root, year, split)
        except DataError as e:
            raise DownloadError(f"the archives of ISIC {year} were extracted into {root}, but: {e}") from None


def _delete_archive(zip_path: Path) -> None:
    zip_path.unlink(missing_ok=True)
    _record(zip_path).unlink(missing_ok=True)


def _fetch_and_extract(archive: Archive, url: str, root: Path, extract, progress: bool,
                       again: str) -> tuple[Path, list[Path], bool]:
    """Download ``archive`` into ``root/"archives"`` (unless there) and ``extract(zip, root, folder=...)`` it.

    A damaged archive found in place is deleted and downloaded afresh; one that arrived damaged,
    or that is not the official archive, is deleted (never one put there by hand) and refused
    with the command ``again``. Returns the zip's path, the files written and whether the zip
    was put there by hand."""
    dest = root / "archives" / archive.filename
    by_hand = dest.is_file() and not _record(dest).is_file()
    fresh = not dest.is_file()
    zip_path = download_file(url, dest, size=archive.size, sha256=archive.sha256, verify=check_zip_directory,
                             progress=progress)
    try:
        return zip_path, extract(zip_path, root, folder=archive.filename.removesuffix(".zip")), by_hand
    except DamagedArchive as e:
        _delete_archive(zip_path)  # damaged: never worth keeping
        if not fresh:  # found in place: the next download is fresh, so this recurses once at most
            return _fetch_and_extract(archive, url, root, extract, progress, again)
        what = f"its member {e.member!r} fails its CRC check" if e.member else "a member is corrupt"
        raise DownloadError(f"{archive.filename} is damaged: {what}; nothing was extracted; "
                            f"deleted it, run again to download it afresh: {again}") from None
    except DownloadError as e:
        if by_hand:
            raise DownloadError(f"{e}. Replace {zip_path} with the official archive and run again: {again}") from None
        _delete_archive(zip_path)
        raise DownloadError(f"{e}. Deleted it; the server at {url} does not serve the official archive: put "
                            f"the official one into {dest.parent}/ and run again: {again}") from None


def download_dataset(year: str, root: Path, *, base_url: str | None = None, progress: bool = True,
                     keep_archives: bool | None = None, compact: bool = False,
                     size: tuple[int, int] = COMPACT_SIZE, overwrite: bool = False,
                     workers: int | None = None) -> Path:
    """Download and extract all task-1 archives of ISIC ``year`` ("2016" or "2017") into ``root``.

    Archives go to ``root/"archives"``; each one is checked (:func:`download_file` with
    :func:`check_zip_directory`, then every member's CRC as it is extracted) and extracted into
    ``root`` (giving e.g. ``root/"ISIC-2017_Training_Data"``), and a marker
    ``archives/<name>.extracted`` records what was made, so a second call skips finished work
    (a marker whose files are missing is redone). With ``compact=True`` each archive is stored
    as a compact copy instead (:func:`compact_extract`: images and masks at ``size``, no
    superpixels; marker ``<name>.compact``), which suits Colab; on a folder that holds a full
    copy it is refused unless ``overwrite``. ``keep_archives`` (default: keep them, except
    with ``compact``) deletes each zip this function downloaded once it is extracted (an
    archive put there by hand is kept). ``base_url`` replaces the URL prefix (everything
    before the file name), for mirrors and tests. ``workers``: decoding processes of the
    compact copy. ``root`` is locked while this runs (:mod:`skinseg.lock`). At the end every
    split is checked to pair images with masks. Returns ``root``.

    Raises:
        DownloadError: one line naming the archive or folder and what to do.
    """
    year = str(year)
    if year not in ARCHIVES:
        raise DownloadError(f"unknown ISIC year {year!r}; valid years: {', '.join(sorted(ARCHIVES))}")
    root = Path(root)
    keep_archives = not compact if keep_archives is None else keep_archives
    again = (f"python -m skinseg download --year {year} --data {root}" + (" --compact" if compact else "")
             + (f" --base-url {base_url}" if base_url else ""))
    with output_lock(root):
        for stale in root.glob(".extracting-*"):  # left by a killed run; nobody else holds the folder
            shutil.rmtree(stale, ignore_errors=True)
        archive_dir = root / "archives"
        if compact and not completed(root, year, True) and (full := _full_copy(root, year, size)) is not None:
            if not overwrite:
                raise DownloadError(f"{root} holds a full-resolution copy of ISIC {year} ({full}); a compact copy "
                                    f"would replace its images and delete its archives. Use another folder, "
                                    f"or add --overwrite to replace it")
            for archive in ARCHIVES[year]:
                _marker(archive_dir, archive.filename, False).unlink(missing_ok=True)
        archive_dir.mkdir(parents=True, exist_ok=True)
        for archive in ARCHIVES[year]:
            marker = _marker(archive_dir, archive.filename, compact)
            if _marker_holds(marker, root):
                continue
            marker.unlink(missing_ok=True)
            url = archive.url if base_url is None else f"{base_url.rstrip('/')}/{archive.filename}"
            extract = (functools.partial(compact_extract, size=size, progress=progress, workers=workers) if compact
                       else safe_extract)
            zip_path, written, by_hand = _fetch_and_extract(archive, url, root, extract, progress, again)
            other = _marker(archive_dir, archive.filename, not compact)
            _write_marker(marker, compact, size, written, root, zip_path)
            other.unlink(missing_ok=True)  # the files it listed were just replaced
            if not keep_archives and not by_hand:
                _delete_archive(zip_path)
        _check_pairs(root, year)
    return root
