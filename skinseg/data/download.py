"""Download and unpack the official ISIC challenge task-1 (segmentation) archives.

Usage::

    from pathlib import Path
    from skinseg.data.download import download_dataset

    root = download_dataset("2017", Path("data/isic2017"))
    # -> data/isic2017/archives/*.zip and data/isic2017/ISIC-2017_Training_Data/..., etc.

Downloads stream to ``<name>.part`` files, resume after an interruption (HTTP ``Range``),
are checked against the expected size and SHA-256 where those are known, and only then
renamed into place. Extraction refuses members that would land outside the target folder.
A marker file per extracted archive makes a second call skip finished work. Without
internet, put the archives by hand into ``root/"archives"`` and call again; ``base_url``
points the downloader at a mirror instead of the official bucket.
"""
from __future__ import annotations

import hashlib
import os
import re
import socket
import stat
import zipfile
import zlib
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path, PurePosixPath, PureWindowsPath
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from tqdm.auto import tqdm

from skinseg.errors import DownloadError

__all__ = ["Archive", "ARCHIVES", "download_file", "safe_extract", "download_dataset"]


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


# Sizes and SHA-256 digests of the real archives are left as None: they could not be
# fetched when this table was written (no internet), so for these archives only the
# Content-Length announced by the server is checked. Fill them in to enable full checks.
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


def _ok(path: Path, size: int | None, sha256: str | None) -> bool:
    """Whether ``path`` has the expected size and hash (where known); changes nothing."""
    if size is not None and path.stat().st_size != size:
        return False
    return sha256 is None or _sha256(path) == sha256.lower()


def _check(path: Path, size: int | None, sha256: str | None) -> None:
    """Raise DownloadError unless ``path`` has the expected size and hash (where known)."""
    got = path.stat().st_size
    if size is not None and got < size:
        raise DownloadError(f"{path.name} is truncated: got {got} bytes, expected {size}; "
                            f"run again to resume the download")
    if size is not None and got != size:
        path.unlink()
        raise DownloadError(f"{path.name} has {got} bytes, expected {size}; deleted it")
    if sha256 is not None:
        actual = _sha256(path)
        if actual != sha256.lower():
            path.unlink()
            raise DownloadError(f"{path.name} failed its sha256 check: expected {sha256.lower()}, "
                                f"got {actual}; deleted it, run again to download it afresh")


def _open(url: str, offset: int, timeout: float, dest: Path):
    headers = {"User-Agent": "skinseg"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urlopen(Request(url, headers=headers), timeout=timeout)
    except HTTPError as e:
        if e.code == 416:
            return e  # the caller decides what "range not satisfiable" means
        raise DownloadError(f"HTTP error {e.code} ({e.reason}) for {url}") from e
    except (URLError, HTTPException, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(
            f"cannot reach {url} ({reason}); this machine seems offline or the server is "
            f"unreachable. You can download the archive by hand into {dest.parent}/ and run again"
        ) from e


def download_file(url: str, dest: Path, *, size: int | None = None, sha256: str | None = None,
                  progress: bool = True, timeout: float = 30.0, chunk_size: int = 1 << 20) -> Path:
    """Download ``url`` to ``dest``, resuming a partial ``dest.part`` and verifying it.

    The bytes go to ``<dest>.part``; a leftover ``.part`` is resumed with an HTTP ``Range``
    request (restarted from zero if the server ignores the range). The file is renamed to
    ``dest`` only after its size and SHA-256 match ``size`` / ``sha256`` (where given) and the
    server's Content-Length. An existing ``dest`` that passes the checks is returned as is.

    Raises:
        DownloadError: offline or unreachable server, HTTP error, truncated transfer (the
            ``.part`` is kept for a later resume) or checksum mismatch (the file is deleted).
    """
    dest = Path(dest)
    if dest.is_file():
        if _ok(dest, size, sha256):
            return dest
        dest.unlink()  # a stale or damaged copy: download it afresh
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    if size is not None and offset > size:
        part.unlink()
        offset = 0
    if size is None or offset < size:
        _stream(url, dest, part, offset, progress, timeout, chunk_size)
    _check(part, size, sha256)
    os.replace(part, dest)
    return dest


def _stream(url: str, dest: Path, part: Path, offset: int, progress: bool,
            timeout: float, chunk_size: int) -> None:
    resp = _open(url, offset, timeout, dest)
    with resp:
        if resp.status == 416 and not offset:
            raise DownloadError(f"HTTP error 416 (range not satisfiable) for {url}")
        if resp.status == 416:  # nothing left past `offset`: complete, or a stale larger .part
            m = re.search(r"/(\d+)", resp.headers.get("Content-Range", ""))
            if m and int(m.group(1)) == offset:
                return
            part.unlink(missing_ok=True)
            return _stream(url, dest, part, 0, progress, timeout, chunk_size)
        length = resp.headers.get("Content-Length")
        if resp.status == 206 and offset:
            m = re.match(r"bytes (\d+)-\d+/(\d+|\*)", resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != offset:
                raise DownloadError(f"server answered a bad Content-Range for {url}: "
                                    f"{resp.headers.get('Content-Range')!r}")
            total = int(m.group(2)) if m.group(2) != "*" else None
        else:  # 200: the server ignored the range (or there was none), start from zero
            offset = 0
            total = int(length) if length is not None else None
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


def safe_extract(zip_path: Path, target: Path) -> list[Path]:
    """Extract ``zip_path`` into ``target`` and return the paths of the extracted files.

    Every member is checked first: absolute paths, ``..`` components and symlinks are
    refused, and nothing is written if any member is bad.

    Raises:
        DownloadError: naming the archive and the offending member, or a corrupt archive.
    """
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
            zf.extractall(target)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error) as e:
        raise DownloadError(f"{zip_path} is not a valid zip archive ({e}); delete it and "
                            f"download it again") from e
    return [target / i.filename for i in infos if not i.is_dir()]


def download_dataset(year: str, root: Path, *, base_url: str | None = None,
                     progress: bool = True, keep_archives: bool = True) -> Path:
    """Download and extract all task-1 archives of ISIC ``year`` ("2016" or "2017") into ``root``.

    Archives go to ``root/"archives"``; each one is extracted into ``root`` (giving e.g.
    ``root/"ISIC-2017_Training_Data"``) and a marker ``archives/<name>.extracted`` is written,
    so a second call skips finished work. ``base_url`` replaces the URL prefix (everything
    before the file name), for mirrors and tests. With ``keep_archives=False`` each zip is
    deleted once extracted. Returns ``root``.
    """
    year = str(year)
    if year not in ARCHIVES:
        raise DownloadError(f"unknown ISIC year {year!r}; valid years: {', '.join(sorted(ARCHIVES))}")
    root = Path(root)
    archive_dir = root / "archives"
    archive_dir.mkdir(parents=True, exist_ok=True)
    for archive in ARCHIVES[year]:
        marker = archive_dir / f"{archive.filename}.extracted"
        if marker.is_file():
            continue
        url = archive.url if base_url is None else f"{base_url.rstrip('/')}/{archive.filename}"
        zip_path = download_file(url, archive_dir / archive.filename, size=archive.size,
                                 sha256=archive.sha256, progress=progress)
        safe_extract(zip_path, root)
        marker.write_text(f"{archive.filename} extracted into {root}\n")
        if not keep_archives:
            zip_path.unlink()
    return root
