"""The members of an ISIC archive as a compact copy: decoded at reduced size, in a small process pool.

Each member is read whole (:meth:`zipfile.ZipFile.read` checks its CRC-32 at the end). JPEGs
are decoded in Pillow's draft mode at the smallest DCT scale (1/1 ... 1/8) still at least
twice the target, then area-averaged as :func:`~skinseg.data.isic.resize_image` resizes a
full decode. Measured against the full decode, per 192x256 uint8 image (of 255): mean
absolute difference at most 0.70 on 30 ISIC 2017 test images enlarged to the official sizes,
0.91 on SYNTHETIC hard-edged photos (maximum 36, at the edge); ``tests/test_download.py``
checks mean < 1 and maximum <= 40.
"""
from __future__ import annotations

import io
import os
import warnings
import zipfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..images import MAX_PIXELS, as_rgb, decode
from .isic import IMAGE_EXTENSIONS, MASK_REDUCING_GAP, MASK_SUFFIX, read_mask, resize_image, resize_mask

COMPACT_JPEG_QUALITY = 90
DRAFT_FACTOR = 2  # decode JPEGs at no less than twice the target: the area average then hides the DCT scaling


def default_workers() -> int:
    """Decoding processes: the cores this process may use, at most 4."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(4, cores))


def decode_image(data: bytes, size: tuple[int, int], name: str) -> Image.Image:
    """An encoded image (``data``) as an RGB image of ``size = (H, W)``, JPEGs decoded in draft mode, read
    as a viewer shows it (:mod:`skinseg.images`). Raises :class:`DataError` naming ``name`` for a corrupt,
    truncated, too large or unsupported image."""
    h, w = size
    image, _ = decode(io.BytesIO(data), name, draft=(DRAFT_FACTOR * w, DRAFT_FACTOR * h))
    return resize_image(as_rgb(image, name), size)


def compact_mask(data: bytes, size: tuple[int, int], name: str) -> np.ndarray:
    """A mask file (``data``) as ``(H, W)`` uint8 in {0, 1} at ``size``: the same array as
    ``resize_mask(read_mask(...), size)``, found faster for the usual 8-bit 0/255 or 0/1 masks
    (Pillow's histogram instead of a count in NumPy; no copy of the full-size mask)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.mode == "L" and im.size[0] * im.size[1] <= MAX_PIXELS:
                im.load()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # "Corrupt EXIF data"
                    turned = im.getexif().get(0x0112, 1) != 1  # then read_mask orients it
                found = {v for v, count in enumerate(im.histogram()) if count}
                if not turned and (found <= {0, 255} or found <= {0, 1}):
                    scaled = im if found <= {0, 255} else im.point(lambda v: v * 255)
                    h, w = size
                    if scaled.size != (w, h):
                        scaled = scaled.resize((w, h), Image.Resampling.BILINEAR, reducing_gap=MASK_REDUCING_GAP)
                    return (np.asarray(scaled) > 127).astype(np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError):
        pass  # read_mask names the file
    return resize_mask(read_mask(io.BytesIO(data), name), size)


def kept(name: str) -> bool:
    """Whether member ``name`` has a counterpart in the compact copy (the superpixel files do not)."""
    return not PurePosixPath(name).stem.endswith("_superpixels")


def convert_member(data: bytes, name: str, size: tuple[int, int], label: str) -> bytes:
    """The compact copy of one member (its bytes): masks as 0/255 PNGs at ``size``, images as JPEG
    (quality 90) or PNG at ``size``, other files unchanged. ``label`` names it in errors."""
    path = PurePosixPath(name)
    out = io.BytesIO()
    if path.name.lower().endswith(tuple(suffix.lower() for suffix in MASK_SUFFIX.values())):
        Image.fromarray(compact_mask(data, size, label) * np.uint8(255)).save(out, format="PNG")
    elif path.suffix.lower() in IMAGE_EXTENSIONS:
        fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
        decode_image(data, size, label).save(out, format=fmt, quality=COMPACT_JPEG_QUALITY)
    else:
        return data
    return out.getvalue()


_OPEN: dict[str, zipfile.ZipFile] = {}  # each worker's open archive


def _job(job: tuple[str, str, tuple[int, int]]) -> bytes:
    zip_path, name, size = job
    if zip_path not in _OPEN:
        _OPEN[zip_path] = zipfile.ZipFile(zip_path)
    return convert_member(_OPEN[zip_path].read(name), name, size, f"{Path(zip_path).name}:{name}")


def compact_members(zip_path: Path, names: list[str], size: tuple[int, int],
                    workers: int | None = None) -> Iterator[bytes]:
    """The compact copy of each member of ``names`` (:func:`convert_member`), in their order, decoded
    by ``workers`` processes (default :func:`default_workers`; 1: in this process; same output for any).

    Raises:
        zipfile.BadZipFile: a member fails its CRC check (the message names it).
        DataError: an image or mask that cannot be decoded or is not binary, naming the member.
    """
    workers = default_workers() if workers is None else workers
    jobs = [(str(zip_path), name, tuple(size)) for name in names]
    pool = None
    if workers > 1 and len(jobs) > 1:  # fork where there is one: the workers need only this module, and start at once
        context = get_context("fork" if "fork" in get_all_start_methods() else None)
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_close)
    try:
        yield from (pool.map(_job, jobs, chunksize=1) if pool else map(_job, jobs))
    finally:
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)
        _close()


def _close() -> None:
    while _OPEN:
        _OPEN.popitem()[1].close()


__all__ = ["COMPACT_JPEG_QUALITY", "DRAFT_FACTOR", "compact_members", "convert_member",
           "decode_image", "default_workers", "kept"]
