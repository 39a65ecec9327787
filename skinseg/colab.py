"""The chapters on Colab: the data downloaded once (:func:`prepare`, the compact copy of ISIC 2017,
optionally kept on the reader's Google Drive), after saying how long that takes (:func:`announce`).
How long a training cell takes is said by :func:`skinseg.lab.plan.training_estimate`.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

from .data.download import ARCHIVES, completed, download_dataset, probe

LOCAL_ROOT = Path("/content/data")
DRIVE_ROOT = Path("/content/drive/MyDrive")  # where Colab mounts the reader's Google Drive
DRIVE_FOLDER = "skinseg"  # the folder on the Drive that holds the kept copies
IMAGES = {"2017": 2750, "2016": 1279}  # images (with their masks) in all of a year's archives
# CPU seconds per image of a compact copy's local work (all but the network), measured on SYNTHETIC
# archives of the official sizes by scripts/bench_data_prep.py (results/bench_cpu/data_prep_after.json, "cpu").
COMPACT_SECONDS_PER_IMAGE = 0.0975


def _mount_drive() -> None:
    from google.colab import drive  # only importable on Colab

    drive.mount(str(DRIVE_ROOT.parent))


def is_complete(root: Path, year: str = "2017") -> bool:
    """Whether ``root`` holds a finished compact download of ``year`` (every archive's marker, and the files it lists)."""
    return completed(root, year, compact=True)


def _minutes(seconds: float) -> str:
    return f"about {seconds / 60:.0f} min" if seconds >= 90 else f"about {seconds:.0f} s"


def announce(year: str = "2017", base_url: str | None = None, seconds: float = 3.0) -> str:
    """One line that says, before a download starts, how much ISIC ``year`` downloads and how long it
    will take: the archives' sizes as the server announces them, the transfer rate measured now over
    about ``seconds`` (reading the start of the largest archive, which is not kept), and the local work
    at :data:`COMPACT_SECONDS_PER_IMAGE`."""
    year = str(year)
    urls = [a.url if base_url is None else f"{base_url.rstrip('/')}/{a.filename}" for a in ARCHIVES[year]]
    sizes = [probe(url)[0] for url in urls]
    known = [s for s in sizes if s is not None]
    total = sum(known)
    largest = urls[sizes.index(max(known))] if known else urls[0]
    rate = probe(largest, seconds)[1]
    local = IMAGES[year] * COMPACT_SECONDS_PER_IMAGE
    size_text = f"{total / 1e9:.1f} GB" if total >= 1e8 else f"{total / 1e6:.1f} MB"
    head = (f"ISIC {year}: {size_text} to download ({len(urls)} archives"
            + (f", {len(urls) - len(known)} of unknown size" if len(known) < len(urls) else "") + ")")
    work = (f"then {_minutes(local)} to make the compact copy of {IMAGES[year]} images "
            f"(at most {COMPACT_SECONDS_PER_IMAGE:.2f} s per image, measured as CPU time)")
    if rate is None:
        return f"{head}; the transfer rate could not be measured; {work}"
    return (f"{head}: at {rate / 1e6:.0f} MB/s, measured now, {_minutes(total / rate)}, {work}; "
            f"{_minutes(total / rate + local)} in all")


def prepare(year: str = "2017", *, drive: bool = False, local_root: Path | str = LOCAL_ROOT,
            drive_root: Path | str = DRIVE_ROOT, mount: Callable[[], None] | None = None,
            base_url: str | None = None, log: Callable[[str], None] = print) -> Path:
    """Make ISIC ``year`` ready for the chapters and point ``$SKINSEG_DATA`` at it; returns its folder.

    The compact copy goes to ``local_root/isic<year>``. With ``drive=True`` (opt-in) Google Drive
    is mounted; a complete local copy is still used first, else a complete copy in
    ``drive_root/skinseg/isic<year>``, and a local copy is copied there for the next session.

    Args:
        mount: mounts the Drive (default: :func:`google.colab.drive.mount`); for tests.
        base_url: a mirror of the archives (see :func:`~skinseg.data.download.download_dataset`).
    """
    year = str(year)
    local = Path(local_root) / f"isic{year}"
    kept = Path(drive_root) / DRIVE_FOLDER / f"isic{year}"
    if drive and not Path(drive_root).is_dir():
        (mount or _mount_drive)()
    # A complete local copy wins, so that every chapter of a session reads one folder (the array cache is keyed by path)
    if not is_complete(local, year):
        if drive and is_complete(kept, year):
            log(f"ISIC {year}: the compact copy kept on the Drive is used ({kept}); nothing is downloaded")
            os.environ["SKINSEG_DATA"] = str(kept)
            return kept
        log(announce(year, base_url) + (". A copy kept on the Drive (drive=True) saves this in every later session"
                                        if not drive else ""))
        download_dataset(year, local, compact=True, base_url=base_url)
    if drive and not is_complete(kept, year):
        partial = kept.with_name(kept.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(local, partial, ignore=shutil.ignore_patterns(".*"))  # lock files stay behind
        shutil.rmtree(kept, ignore_errors=True)
        partial.rename(kept)
        log(f"ISIC {year}: compact copy kept on the Drive for the next session ({kept})")
    os.environ["SKINSEG_DATA"] = str(local)
    return local


__all__ = ["COMPACT_SECONDS_PER_IMAGE", "DRIVE_FOLDER", "DRIVE_ROOT", "IMAGES", "LOCAL_ROOT", "announce", "is_complete",
           "prepare"]
