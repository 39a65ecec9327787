"""Images and masks read as a photo viewer shows them: EXIF orientation applied, to masks as to images.

* Images: RGB, grey (``L``, ``1``), palette (``P``) and 16-bit grey (``I;16``, ``I`` within 0..65535,
  scaled by 1/257) become RGB; a fully opaque alpha channel is dropped. Refused by name:
  transparent pixels, CMYK, floating-point (``F``) and integers past 16 bits.
* Masks (:func:`binary_mask`): 0 (background) and at most one other value, the lesion: 1 or 255
  (or 65535 in a 16-bit file); anything else (grey edges, JPEG noise, 0/128) is refused, naming
  the file and the values found. Colour masks are read as grey when their three channels agree.
* Size: past :data:`MAX_PIXELS` pixels an image is refused before it is decoded; past
  :data:`LARGE_PIXELS` it is decoded at a reduced size (a JPEG by 1/2, 1/4 or 1/8 while decoding,
  other formats halved after) to at most :data:`LARGE_PIXELS`.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import DataError

MAX_PIXELS = 150_000_000   # past this, an image is refused (below Pillow's own error at 179 million)
LARGE_PIXELS = 40_000_000  # past this, an image is decoded at a reduced size

_OPAQUE_ALPHA = {"RGBA": "RGB", "LA": "L", "PA": "P"}
_WIDE = ("I", "I;16", "I;16L", "I;16B", "I;16N")  # integer modes past 8 bits


def _turned(im: Image.Image) -> bool:
    """Whether the EXIF orientation of ``im`` swaps its width and height."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Corrupt EXIF data"
        return im.getexif().get(0x0112, 1) in (5, 6, 7, 8)


def _open(source, name) -> Image.Image:
    """The image object, its size checked before anything is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)  # "Corrupt EXIF data": read without it
            im = Image.open(source)
    except Image.DecompressionBombError:
        raise DataError(f"cannot read {name}: more than {MAX_PIXELS:,} pixels (the limit for an image)") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(f"cannot read {name}: corrupt or truncated image file ({err})") from None
    w, h = im.size
    if w * h > MAX_PIXELS:
        im.close()
        raise DataError(f"cannot read {name}: {w}x{h} is {w * h:,} pixels, more than {MAX_PIXELS:,} "
                        "(the limit for an image); shrink it first")
    return im


def decode(source: Path | BinaryIO, name: Path | str | None = None, *, reduce: bool = True,
           draft: tuple[int, int] | None = None) -> tuple[Image.Image, tuple[int, int]]:
    """Decode an image file (a path, or an open binary file named ``name`` in messages) as a viewer shows it.

    Returns ``(image, (W, H))``: the decoded, oriented image in its stored mode and the size a
    viewer shows (after orientation, before any reduction). With ``reduce``, an image of more
    than :data:`LARGE_PIXELS` pixels comes back smaller (see the module docstring). ``draft``,
    ``(W, H)`` as shown, lets a JPEG be decoded at the smallest DCT scale that is at least
    that large (the compact copy of a download decodes so).
    Raises :class:`DataError` naming the file for a corrupt, truncated or too large image.
    """
    name = name or source
    im = _open(source, name)
    try:
        with im:
            w, h = im.size
            scale = 1
            while reduce and w * h / scale ** 2 > LARGE_PIXELS:
                scale *= 2
            target = (-(-w // scale), -(-h // scale)) if scale > 1 else None
            if draft is not None:
                wanted = draft[::-1] if _turned(im) else tuple(draft)
                target = wanted if target is None or wanted[0] * wanted[1] < target[0] * target[1] else target
            if target is not None and im.format == "JPEG":
                im.draft(im.mode, target)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                warnings.simplefilter("ignore", UserWarning)  # "Corrupt EXIF data": read without it
                im.load()
                turned = _turned(im)  # read after loading: a PNG may keep its EXIF after the pixels
                oriented = ImageOps.exif_transpose(im)
            if oriented is im:
                oriented = im.copy()
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(f"cannot read {name}: corrupt or truncated image file ({err})") from None
    shown = (h, w) if turned else (w, h)
    while reduce and oriented.size[0] * oriented.size[1] > LARGE_PIXELS:
        oriented = oriented.reduce(2)
    return oriented, shown


def _16_bits(im: Image.Image, what: str) -> np.ndarray:
    """The pixel values of a wide integer image as uint16, or :class:`DataError` for values past 16 bits."""
    values = np.asarray(im)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise DataError(f"{what} has values past 16 bits ({values.min()}..{values.max()}); expected 8 or 16 bits")
    return values.astype(np.uint16)


def _drop_opaque_alpha(im: Image.Image, name) -> Image.Image:
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in _OPAQUE_ALPHA:
        alpha = np.asarray(im.getchannel("A"))
        if alpha.size and alpha.min() < 255:
            raise DataError(f"cannot read {name}: it has transparent pixels ({im.mode} with alpha below 255); "
                            "save it without transparency (RGB)")
        im = im.convert(_OPAQUE_ALPHA[im.mode])
    return im


def as_rgb(im: Image.Image, name) -> Image.Image:
    """A decoded image (:func:`decode`) as 8-bit RGB, or :class:`DataError` naming its mode."""
    im = _drop_opaque_alpha(im, name)
    if im.mode in _WIDE:
        im = Image.fromarray((_16_bits(im, f"cannot read {name}: a {im.mode} image") // 257).astype(np.uint8), "L")
    if im.mode in ("RGB", "L", "1", "P"):
        return im.convert("RGB")
    raise DataError(f"cannot read {name}: images in mode {im.mode} are not supported"
                    f"{' (CMYK: convert it to RGB first)' if im.mode == 'CMYK' else ''}; "
                    "expected RGB, grey, palette, 16-bit grey, or any of these with an opaque alpha channel")


def mask_values(im: Image.Image, name) -> np.ndarray:
    """A decoded mask's ``(H, W)`` pixel values as a viewer shows them (uint8, or uint16 for 16 bits)."""
    im = _drop_opaque_alpha(im, name)
    if im.mode == "1":
        return np.asarray(im, dtype=np.uint8)
    if im.mode == "P":
        im = im.convert("RGB")
    if im.mode == "RGB":
        rgb = np.asarray(im)
        if not ((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()):
            raise DataError(f"mask {name} is a colour image: expected one channel (grey) with 0 for background "
                            "and 255 (or 1) for the lesion")
        return rgb[..., 0].copy()
    if im.mode == "L":
        return np.asarray(im)
    if im.mode in _WIDE:
        return _16_bits(im, f"mask {name}")
    raise DataError(f"mask {name} is a {im.mode} image: expected one channel (grey, 8 or 16 bits) "
                    "with 0 for background and 255 (or 1) for the lesion")


def binary_mask(values: np.ndarray, path: Path | str) -> np.ndarray:
    """A stored mask as ``(H, W)`` uint8 in {0, 1} (1 = lesion).

    ``values``: the ``(H, W)`` integer (or bool) pixel values as stored. 0 is background; the
    lesion is one other value, 1 or 255 (or 65535 in a 16-bit mask). Any other set of values
    raises :class:`DataError` naming ``path`` and the values found: one rule, whatever the
    lesion's size.
    """
    values = np.asarray(values)
    if values.dtype.kind not in "biu" or values.ndim != 2:
        raise DataError(f"mask {path} must be one channel of integers, got {values.dtype} {values.shape}")
    if values.dtype.kind == "b":
        return values.astype(np.uint8)
    flat = values.ravel()
    if flat.size and flat.min() >= 0 and flat.max() <= 65535:
        found = np.flatnonzero(np.bincount(flat.astype(np.int64, copy=False)))
    else:
        found = np.unique(flat)
    lesion = [v for v in found.tolist() if v != 0]
    if not lesion:
        return np.zeros(values.shape, np.uint8)
    allowed = (1, 255, 65535) if values.dtype.itemsize > 1 else (1, 255)
    if len(lesion) == 1 and lesion[0] in allowed:
        return (values == lesion[0]).astype(np.uint8)
    shown = ", ".join(str(int(v)) for v in found[:8]) + (", ..." if len(found) > 8 else "")
    raise DataError(f"mask {path} is not a binary mask: it has the values {{{shown}}} ({len(found)} distinct); "
                    "expected 0 and 255 (or 0 and 1): 0 for background and one lesion value; threshold grey edges or "
                    "JPEG noise yourself before using it")


def shown_size(path: Path | str) -> tuple[int, int]:
    """``(W, H)`` of an image file as a viewer shows it (EXIF orientation applied), without decoding it."""
    with _open(path, path) as im:
        w, h = im.size
        return (h, w) if _turned(im) else (w, h)


def read_image(source: Path | BinaryIO, name: Path | str | None = None, *, reduce: bool = True) -> tuple[Image.Image, tuple[int, int]]:
    """``(RGB image, (W, H) as a viewer shows it)``; see :func:`decode` and :func:`as_rgb`."""
    im, shown = decode(source, name, reduce=reduce)
    return as_rgb(im, name or source), shown


def read_mask(source: Path | BinaryIO, name: Path | str | None = None) -> np.ndarray:
    """A mask file as ``(H, W)`` uint8 in {0, 1}, oriented as a viewer shows it (:func:`binary_mask`)."""
    im, _ = decode(source, name, reduce=False)
    return binary_mask(mask_values(im, name or source), name or source)


__all__ = ["LARGE_PIXELS", "MAX_PIXELS", "as_rgb", "binary_mask", "decode", "mask_values", "read_image", "read_mask", "shown_size"]
