"""The members of an ISIC archive as a compact copy: decoded at reduced size, in a small process pool.

Each member is read whole from the zip first, so that its CRC-32 is checked as it is read
(:meth:`zipfile.ZipFile.read` raises at the end of a damaged member); a separate pass over
the archive is not needed. JPEGs are decoded with Pillow's draft mode (DCT scaling) to the
smallest scale of 1/1, 1/2, 1/4 or 1/8 that is still at least twice the target in both
directions, then area-averaged to the target as :func:`~skinseg.data.isic.resize_image`
resizes a full decode. Entropy decoding costs the same at every scale, so a smaller bound
(1x) gains little (measured: 1.16 s instead of 1.26 s for 32 images). The 192x256 uint8
result differs from the full decode's, per image, by (of 255):

* 30 ISIC 2017 test images of the shared copy, enlarged (bicubic) to the official sizes
  1022x767 ... 6688x4439 and stored at quality 95: mean absolute difference at most 0.70
  (0.22 on average), maximum 19;
* 32 SYNTHETIC photos with a hard-edged lesion and pixel noise (``scripts/bench_data_prep.py``):
  mean at most 0.91, maximum 36, at the lesion's edge, where the two decodes place the
  area average's borders a fraction of a pixel apart.

``tests/test_download.py`` checks a bound of mean < 1 and maximum <= 40 on such an image.
1022x767 images (less than twice 256x192 in a direction) are decoded in full, unchanged.
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

from ..errors import DownloadError
from ..images import MAX_PIXELS, as_rgb, decode
from .isic import IMAGE_EXTENSIONS, MASK_REDUCING_GAP, MASK_SUFFIX, read_mask, resize_image, resize_mask

COMPACT_JPEG_QUALITY = 90
DRAFT_FACTOR = 2  # decode JPEGs at no less than twice the target: the area average then hides the DCT scaling


class DamagedArchive(DownloadError):
    """A member of an archive fails its CRC check; ``member`` names it."""

    def __init__(self, message: str, member: str | None) -> None:
        super().__init__(message, member)
        self.member = member

    def __str__(self) -> str:
        return self.args[0]


def default_workers() -> int:
    """Decoding processes: the cores this process may use, at most 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def decode_image(data: bytes, size: tuple[int, int], name: str) -> Image.Image:
    """An encoded image (``data``) as an RGB image of ``size = (H, W)``, JPEGs decoded in draft mode.

    The image is read as a viewer shows it (:mod:`skinseg.images`: EXIF orientation applied,
    every mode converted to RGB or refused). Raises :class:`DataError` naming ``name`` for a
    corrupt, truncated, too large or unsupported image.
    """
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


def _is_mask(name: str) -> bool:
    return name.lower().endswith(tuple(suffix.lower() for suffix in MASK_SUFFIX.values()))


def kept(name: str) -> bool:
    """Whether member ``name`` has a counterpart in the compact copy (the superpixel files do not)."""
    return not PurePosixPath(name).stem.endswith("_superpixels")


def convert_member(data: bytes, name: str, size: tuple[int, int], label: str) -> bytes:
    """The compact copy of one member (its bytes): masks as 0/255 PNGs at ``size``, images as JPEG
    (quality 90) or PNG at ``size``, other files unchanged. ``label`` names it in errors."""
    path = PurePosixPath(name)
    out = io.BytesIO()
    if _is_mask(path.name):
        Image.fromarray(compact_mask(data, size, label) * np.uint8(255)).save(out, format="PNG")
    elif path.suffix.lower() in IMAGE_EXTENSIONS:
        fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
        decode_image(data, size, label).save(out, format=fmt, quality=COMPACT_JPEG_QUALITY)
    else:
        return data
    return out.getvalue()


_OPEN: dict[str, zipfile.ZipFile] = {}  # each worker's open archive


def _read(zip_path: str, name: str) -> bytes:
    zf = _OPEN.get(zip_path)
    if zf is None:
        zf = _OPEN[zip_path] = zipfile.ZipFile(zip_path)
    try:
        return zf.read(name)
    except zipfile.BadZipFile as e:
        raise DamagedArchive(f"{Path(zip_path).name} is damaged: its member {name!r} fails its CRC check ({e})",
                             name) from None


def _job(job: tuple[str, str, tuple[int, int]]) -> bytes:
    zip_path, name, size = job
    return convert_member(_read(zip_path, name), name, size, f"{Path(zip_path).name}:{name}")


def compact_members(zip_path: Path, names: list[str], size: tuple[int, int],
                    workers: int | None = None) -> Iterator[bytes]:
    """The compact copy of each member of ``names`` (:func:`convert_member`), in the order of ``names``.

    ``workers`` processes (default :func:`default_workers`) decode the members; with 1 they
    are decoded in this process. The output is the same for any number of workers.

    Raises:
        DamagedArchive: a member fails its CRC check.
        DataError: an image or mask that cannot be decoded or is not binary, naming the member.
    """
    workers = default_workers() if workers is None else workers
    jobs = [(str(zip_path), name, tuple(size)) for name in names]
    if workers <= 1 or len(jobs) <= 1:
        try:
            yield from map(_job, jobs)
        finally:
            _close()
        return
    # fork where there is one: the workers need nothing but this module, and start at once
    context = get_context("fork" if "fork" in get_all_start_methods() else None)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_close)
    try:
        yield from pool.map(_job, jobs, chunksize=1)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _close() -> None:
    while _OPEN:
        _OPEN.popitem()[1].close()


__all__ = ["COMPACT_JPEG_QUALITY", "DRAFT_FACTOR", "DamagedArchive", "compact_members", "convert_member",
           "decode_image", "default_workers", "kept"]
