"""Download and unpack the official ISIC challenge task-1 (segmentation) archives.

Usage::

    root = download_dataset("2017", Path("data/isic2017"))  # archives/*.zip, ISIC-2017_Training_Data/, ...
    root = download_dataset("2017", Path("data/isic2017"), compact=True)  # images at 192x256, no archives kept

Downloads resume, checked against the server's recorded Content-Length and ETag; extraction
checks every member and changes nothing unless all were written; a damaged file is deleted, so
running again heals; a JSON marker per archive lists the files made, so a second call skips
finished work. Without internet, put the archives by hand into ``root/"archives"``.
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
from .compact import compact_members, kept
from .isic import LAYOUTS, find_pairs

__all__ = ["Archive", "ARCHIVES", "COMPACT_SIZE", "MAX_EXPANSION", "check_zip", "check_zip_directory", "completed",
           "download_file", "probe", "safe_extract", "compact_extract", "download_dataset"]

COMPACT_SIZE = (192, 256)  # (H, W): the models' input, and the size of the book's shared copy
# An archive may expand to at most this many times its size plus EXPANSION_SLACK bytes: the official
# archives' JPEGs and PNGs deflate hardly at all (about 1x); a zip bomb expands hundreds of times.
MAX_EXPANSION, EXPANSION_SLACK = 20, 100 << 20


class DamagedArchive(DownloadError):
    """An archive is corrupt, or a member fails its CRC check; ``reason`` says which, naming the member."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Archive:
    """One downloadable archive; ``size`` (bytes) and ``sha256`` are checked when not None."""

    filename: str
    url: str
    size: int | None = None
    sha256: str | None = None


_NAMES = {
    "2016": [
        "ISBI2016_ISIC_Part1_Training_Data.zip",
        "ISBI2016_ISIC_Part1_Training_GroundTruth.zip",
        "ISBI2016_ISIC_Part1_Test_Data.zip",
        "ISBI2016_ISIC_Part1_Test_GroundTruth.zip",
    ],
    "2017": [
        "ISIC-2017_Training_Data.zip",
        "ISIC-2017_Training_Part1_GroundTruth.zip",
        "ISIC-2017_Validation_Data.zip",
        "ISIC-2017_Validation_Part1_GroundTruth.zip",
        "ISIC-2017_Test_v2_Data.zip",
        "ISIC-2017_Test_v2_Part1_GroundTruth.zip",
    ],
}
# No size or SHA-256 of the official archives is published or could be measured here (no internet):
# until they are filled in, the server's Content-Length and the zip itself are checked.
ARCHIVES: dict[str, list[Archive]] = {year: [Archive(name, f"https://isic-challenge-data.s3.amazonaws.com/{year}/{name}")
                                             for name in names] for year, names in _NAMES.items()}


def check_zip(path: Path, name: str | None = None, *, members: bool = True) -> None:
    """Raise :class:`DownloadError` unless ``path`` (called ``name``, default the file's) is a complete
    zip archive: its directory readable and, with ``members``, every member passing its CRC check
    (reads the whole file)."""
    name = name or Path(path).name
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip() if members else None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, OSError) as e:
        raise DownloadError(f"{name} is not a complete zip archive ({e})") from None
    if bad is not None:
        raise DownloadError(f"{name} is damaged: its member {bad!r} fails its CRC check")


# Reads only the directory (a truncated download has none); the CRCs are checked as members are extracted.
check_zip_directory = functools.partial(check_zip, members=False)


def _problem(path: Path, announced: int | None, size: int | None, sha256: str | None, verify, name: str) -> str | None:
    """Why ``path`` (called ``name``) fails its checks (the server's ``announced`` bytes, ``size``, SHA-256
    where known, else ``verify``), or None."""
    got = path.stat().st_size
    if announced not in (None, got):
        return f"{name} has {got} bytes, but the server announced {announced}"
    if size is not None and got != size:
        return f"{name} has {got} bytes, expected {size}"
    if sha256 is not None:
        with open(path, "rb") as f:
            actual = hashlib.file_digest(f, "sha256").hexdigest()
        return None if actual == sha256.lower() else (f"{name} failed its sha256 check: expected "
                                                      f"{sha256.lower()}, got {actual}")
    if verify is not None:
        try:
            verify(path, name)
        except DownloadError as e:
            return str(e)
    return None


def _json(path: Path) -> Path:
    """Where ``path`` keeps what the server said of it (url, bytes, ETag, Last-Modified) or what was made."""
    return path.with_name(path.name + ".json")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _discard(path: Path) -> None:
    path.unlink(missing_ok=True)
    _json(path).unlink(missing_ok=True)


def _open(url: str, offset: int, timeout: float, dest: Path, if_range: str | None = None):
    headers = {"User-Agent": "skinseg"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if if_range:
            headers["If-Range"] = if_range
    try:
        return urlopen(Request(url, headers=headers), timeout=timeout)
    except HTTPError as e:
        if e.code == 416 and offset:
            return e  # the caller decides what "range not satisfiable" means
        raise DownloadError(f"HTTP error {e.code} ({e.reason}) for {url}") from e
    except (URLError, HTTPException, OSError, ValueError) as e:
        raise DownloadError(
            f"cannot reach {url} ({getattr(e, 'reason', e)}); this machine seems offline or the server is "
            f"unreachable. You can download the archive by hand into {dest.parent}/ and run again"
        ) from e


def download_file(url: str, dest: Path, *, size: int | None = None, sha256: str | None = None,
                  verify=None, progress: bool = True, timeout: float = 30.0, chunk_size: int = 1 << 20) -> Path:
    """Download ``url`` to ``dest``, resuming a partial ``<dest>.part`` and verifying it.

    The server's Content-Length, ETag and Last-Modified are kept in ``<dest>.part.json`` (then
    ``<dest>.json``); a resume sends ``If-Range`` and restarts when the file changed. ``dest``
    is kept only when it matches the recorded Content-Length, ``size`` and ``sha256`` (where
    given), else ``verify(path, name)``; an existing ``dest`` that does is returned as is.

    Raises:
        DownloadError: offline or unreachable server, HTTP error, truncated transfer (the
            ``.part`` is kept for a later resume), or a file that fails its checks (deleted).
    """
    dest = Path(dest)
    if dest.is_file():
        if _problem(dest, _read_json(_json(dest)).get("bytes"), size, sha256, verify, dest.name) is None:
            return dest
        _discard(dest)  # a stale or damaged copy: download it afresh
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    if (size is not None and offset > size) or _read_json(_json(part)).get("url") not in (None, url):
        _discard(part)  # too long, or a .part of another address
        offset = 0
    if size is None or offset < size:
        _stream(url, dest, part, offset, progress, timeout, chunk_size)
    got = part.stat().st_size
    recorded = _read_json(_json(part)).get("bytes")
    expected = size if size is not None else recorded
    if expected is not None and got < expected:
        raise DownloadError(f"{dest.name} is truncated: got {got} bytes, expected {expected}; "
                            f"the partial file {part.name} is kept, run again to resume")
    if (problem := _problem(part, recorded, size, sha256, verify, dest.name)) is not None:
        _discard(part)
        raise DownloadError(f"{problem}; deleted it, run again to download it afresh")
    os.replace(part, dest)
    if _json(part).is_file():
        os.replace(_json(part), _json(dest))
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
            while time.perf_counter() - start < seconds and (chunk := resp.read(1 << 16)):
                got += len(chunk)
        except (HTTPException, OSError, socket.timeout) as e:
            raise DownloadError(f"{url}: transfer interrupted ({e})") from e
        elapsed = time.perf_counter() - start
    return size, got / elapsed if got and elapsed > 0 else None


def _stream(url: str, dest: Path, part: Path, offset: int, progress: bool, timeout: float, chunk_size: int) -> None:
    """Append the bytes past ``offset`` to ``part``, or write the whole file there when it changed."""
    stored = _read_json(_json(part)) if offset else {}
    with _open(url, offset, timeout, dest, if_range=stored.get("etag") or stored.get("last_modified")) as resp:
        total = None
        if offset and resp.status == 416:  # nothing left past `offset`: complete, or a stale larger .part
            m = re.search(r"/(\d+)", resp.headers.get("Content-Range", ""))
            if m and int(m.group(1)) == offset:
                return
            changed = True
        elif offset and resp.status == 206:
            m = re.match(r"bytes (\d+)-\d+/(\d+|\*)", resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != offset:
                raise DownloadError(f"server answered a bad Content-Range for {url}: "
                                    f"{resp.headers.get('Content-Range')!r}")
            total = int(m.group(2)) if m.group(2) != "*" else None
            etag = resp.headers.get("ETag")
            # the server ignored If-Range but says the file changed, or gives another size than at first
            changed = ((stored.get("etag") and etag and etag != stored["etag"])
                       or None not in (stored.get("bytes"), total) and total != stored["bytes"])
            if not changed and stored.get("bytes") is None and total is not None:  # a short resume stays resumable
                write_text_atomic(_json(part), json.dumps({**stored, "url": url, "bytes": total}))
        else:  # 200: the whole file (no range asked, the range ignored, or the file changed)
            changed = offset = 0
            length = resp.headers.get("Content-Length")
            total = int(length) if length is not None else None
            headers = {"etag": resp.headers.get("ETag"), "last_modified": resp.headers.get("Last-Modified")}
            write_text_atomic(_json(part), json.dumps({"url": url, "bytes": total,
                                                       **{k: v for k, v in headers.items() if v}}))
        if changed:
            _discard(part)
            return _stream(url, dest, part, 0, progress, timeout, chunk_size)
        with open(part, "ab" if offset else "wb") as f, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                desc=dest.name, disable=not progress) as bar:
            try:
                while chunk := resp.read(chunk_size):
                    f.write(chunk)
                    bar.update(len(chunk))
            except (HTTPException, OSError, socket.timeout) as e:
                raise DownloadError(f"{dest.name}: transfer interrupted after {f.tell()} of "
                                    f"{total if total is not None else '?'} bytes ({e}); run again to resume") from e


def _check_members(zip_path: Path, infos: list[zipfile.ZipInfo], root: Path, folder: str | None) -> None:
    """Refuse unsafe members (absolute, ``..``, symlink, resolving outside ``root``), members outside
    ``folder`` and an archive that expands past :data:`MAX_EXPANSION`."""
    for info in infos:
        name = PureWindowsPath(info.filename)  # reads both / and \ as separators
        if (stat.S_ISLNK(info.external_attr >> 16) or name.anchor or ".." in name.parts
                or not (root / info.filename).resolve().is_relative_to(root)):
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


def _write_output(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


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


def safe_extract(zip_path: Path, target: Path, folder: str | None = None, convert=None,
                 progress: bool = False, keep=None) -> list[Path]:
    """Extract ``zip_path`` into ``target`` and return the paths of the extracted files.

    Absolute paths, ``..`` and symlinks are refused; with ``folder`` every member must lie in
    ``target/folder`` (as in the official archives). Each member's CRC is checked as it is
    read, and ``target`` changes only once every member was written. ``keep(name)`` says which
    files to extract (default: all); ``convert(names)`` gives what to write for each of them, in
    order (default: its bytes).

    Raises:
        DownloadError: naming the archive and the offending member, an archive that would expand
            past :data:`MAX_EXPANSION` times its size (a possible zip bomb), or a corrupt archive.
    """
    zip_path, target = Path(zip_path), Path(target)
    if not zip_path.is_file():
        raise DownloadError(f"archive {zip_path} does not exist")
    try:
        with zipfile.ZipFile(zip_path) as zf:
            infos = [i for i in zf.infolist() if not i.filename.startswith("__MACOSX/")]  # macOS resource forks
            _check_members(zip_path, infos, target.resolve(), folder)
            names = [i.filename for i in infos if not i.is_dir() and (keep is None or keep(i.filename))]
            outputs = map(zf.read, names) if convert is None else convert(names)  # each read checks its CRC
            target.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=target, prefix=f".extracting-{zip_path.name}-"))
            try:
                for name, data in tqdm(zip(names, outputs), total=len(names), desc=f"extract {zip_path.name}",
                                       unit="file", disable=not progress):
                    _write_output(tmp / name, data)
                _move_into_place(tmp, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error) as e:
        crc = re.search(r"Bad CRC-32 for file '(.*)'", str(e))
        why = f"its member {crc.group(1)!r} fails its CRC check" if crc else str(e)
        raise DamagedArchive(f"{zip_path} is not a valid zip archive ({why}); nothing was extracted. Delete it "
                             f"and run again to download it afresh", why) from None
    return [target / name for name in names]


def compact_extract(zip_path: Path, target: Path, size: tuple[int, int] = COMPACT_SIZE,
                    progress: bool = True, folder: str | None = None, workers: int | None = None) -> list[Path]:
    """Extract ``zip_path`` into ``target`` as a compact copy, as :func:`safe_extract` does.

    Images become ``size = (H, W)`` JPEGs, masks 0/255 PNGs at ``size``; superpixel files are
    skipped, others kept (:func:`skinseg.data.compact.convert_member`); names stay the official
    ones. ``workers`` processes decode (default: the cores, at most 4; same output for any number).

    Raises:
        DownloadError: an unsafe member, a damaged member (named) or a corrupt archive.
        DataError: an image or mask that cannot be decoded or is not binary, naming the member.
    """
    return safe_extract(zip_path, target, folder, lambda names: compact_members(zip_path, names, size, workers),
                        progress, keep=kept)


def _marker(root: Path, filename: str, compact: bool) -> Path:
    return root / "archives" / f"{filename}.{'compact' if compact else 'extracted'}"


def _holds(root: Path, filename: str, compact: bool) -> bool:
    """Whether the marker of archive ``filename`` is one this module wrote and every file it lists is in ``root``.

    A marker of an earlier version (a line of text naming the archive) holds while the archive's
    folder is not empty, so that a copy kept on a Drive is not downloaded again."""
    marker = _marker(root, filename, compact)
    try:
        text = marker.read_text()
    except (OSError, UnicodeDecodeError):
        return False
    if not text.lstrip().startswith("{"):
        folder = root / filename.removesuffix(".zip")
        return text.startswith(filename) and folder.is_dir() and any(folder.iterdir())
    made = _read_json(marker)
    files = made.get("files")
    return (made.get("kind") == ("compact" if compact else "full") and isinstance(files, list) and bool(files)
            and all(isinstance(f, str) and (root / f).is_file() for f in files))


def completed(root: Path, year: str, compact: bool) -> bool:
    """Whether ``root`` holds every archive of ISIC ``year`` as a full (``compact=False``) or compact copy,
    by markers whose listed files are all there."""
    return all(_holds(Path(root), archive.filename, compact) for archive in ARCHIVES[str(year)])


def _full_copy(root: Path, year: str, size: tuple[int, int]) -> str | None:
    """What shows that ``root`` holds full-resolution data of ``year`` (a full marker or a large image), or None."""
    for archive in ARCHIVES[year]:
        if (marker := _marker(root, archive.filename, False)).is_file():
            return f"the marker {marker} of a full download"
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


def _fetch_and_extract(archive: Archive, url: str, root: Path, extract, progress: bool,
                       again: str) -> tuple[Path, list[Path], bool]:
    """Download ``archive`` into ``root/"archives"`` (unless there) and ``extract(zip, root, folder=...)`` it;
    returns the zip's path, the files written and whether the zip was put there by hand (never deleted)."""
    dest = root / "archives" / archive.filename
    by_hand, fresh = dest.is_file() and not _json(dest).is_file(), not dest.is_file()
    zip_path = download_file(url, dest, size=archive.size, sha256=archive.sha256, verify=check_zip_directory,
                             progress=progress)
    try:
        return zip_path, extract(zip_path, root, folder=archive.filename.removesuffix(".zip")), by_hand
    except DamagedArchive as e:
        _discard(zip_path)  # damaged: never worth keeping
        if not fresh:  # found in place: the next download is fresh, so this recurses once at most
            return _fetch_and_extract(archive, url, root, extract, progress, again)
        raise DownloadError(f"{archive.filename} is damaged: {e.reason}; nothing was extracted; "
                            f"deleted it, run again to download it afresh: {again}") from None
    except DownloadError as e:
        if by_hand:
            raise DownloadError(f"{e}. Replace {zip_path} with the official archive and run again: {again}") from None
        _discard(zip_path)
        raise DownloadError(f"{e}. Deleted it; the server at {url} does not serve the official archive: put "
                            f"the official one into {dest.parent}/ and run again: {again}") from None


def download_dataset(year: str, root: Path, *, base_url: str | None = None, progress: bool = True,
                     keep_archives: bool | None = None, compact: bool = False,
                     size: tuple[int, int] = COMPACT_SIZE, overwrite: bool = False,
                     workers: int | None = None) -> Path:
    """Download and extract all task-1 archives of ISIC ``year`` ("2016" or "2017") into ``root``; returns ``root``.

    Archives go to ``root/"archives"`` and are extracted into ``root`` by :func:`safe_extract`, or
    with ``compact=True`` by :func:`compact_extract` at ``size`` (refused over a full copy unless
    ``overwrite``; ``workers``: its decoding processes). ``keep_archives`` (default: not with
    ``compact``) keeps the zips downloaded (one put there by hand is always kept); ``base_url``
    replaces the URL prefix (mirrors, tests). ``root`` is locked while this runs, and every split
    is checked to pair images with masks.

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
        if compact and not completed(root, year, True) and (full := _full_copy(root, year, size)) is not None:
            if not overwrite:
                raise DownloadError(f"{root} holds a full-resolution copy of ISIC {year} ({full}); a compact copy "
                                    f"would replace its images and delete its archives. Use another folder, "
                                    f"or add --overwrite to replace it")
            for archive in ARCHIVES[year]:
                _marker(root, archive.filename, False).unlink(missing_ok=True)
        (root / "archives").mkdir(parents=True, exist_ok=True)
        extract = (functools.partial(compact_extract, size=size, progress=progress, workers=workers) if compact
                   else safe_extract)
        for archive in ARCHIVES[year]:
            marker = _marker(root, archive.filename, compact)
            if _holds(root, archive.filename, compact):
                continue
            marker.unlink(missing_ok=True)
            url = archive.url if base_url is None else f"{base_url.rstrip('/')}/{archive.filename}"
            zip_path, written, by_hand = _fetch_and_extract(archive, url, root, extract, progress, again)
            made = {"kind": "compact" if compact else "full", "archive": zip_path.name,
                    "archive_bytes": zip_path.stat().st_size, "etag": _read_json(_json(zip_path)).get("etag"),
                    "size_hw": list(size) if compact else None, "bytes": sum(f.stat().st_size for f in written),
                    "files": sorted(str(f.relative_to(root)) for f in written)}
            write_text_atomic(marker, json.dumps(made, indent=0) + "\n")
            _marker(root, archive.filename, not compact).unlink(missing_ok=True)  # the files it listed were replaced
            if not keep_archives and not by_hand:
                _discard(zip_path)
        for split in LAYOUTS[year]:
            try:
                find_pairs(root, year, split)
            except DataError as e:
                raise DownloadError(f"the archives of ISIC {year} were extracted into {root}, but: {e}") from None
    return root
