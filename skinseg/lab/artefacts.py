"""Screening scores for the artefacts of dermoscopy images (vignettes, hairs, ink marks), to
rank a split and look at its most affected images; not validated classifiers. The thresholds
suit the book's 256x192 ISIC copy (rescale ``size`` for other resolutions).

The ``*_score`` functions take ``(N, H, W, 3)`` uint8 RGB images (0..255) and return ``(N,)``
float64 scores in [0, 1].
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

# Images are processed in chunks of this many, to bound the memory of the temporaries.
_CHUNK = 128


def _check(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    return images


def _in_chunks(function, images: np.ndarray) -> np.ndarray:
    """``function`` of the (checked) ``images``, :data:`_CHUNK` images at a time, concatenated."""
    images = _check(images)
    return np.concatenate([function(images[i:i + _CHUNK]) for i in range(0, max(len(images), 1), _CHUNK)])


def luminance(images: np.ndarray) -> np.ndarray:
    """Grey levels of ``(N, H, W, 3)`` uint8 RGB images: ``(N, H, W)`` uint8, 0..255.

    Uses the ITU-R BT.601 weights 0.299, 0.587, 0.114 in integer arithmetic (77, 150, 29 / 256).
    """
    images = _check(images)
    x = images.astype(np.uint16)
    return ((x[..., 0] * 77 + x[..., 1] * 150 + x[..., 2] * 29 + 128) >> 8).astype(np.uint8)


def corner_region(shape: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` bool map of the pixels outside the ellipse inscribed in an ``H x W`` image (about
    21 % of it), the corners a dermatoscope's round field of view leaves dark."""
    h, w = shape
    y = (np.arange(h) + 0.5 - h / 2) / (h / 2)
    x = (np.arange(w) + 0.5 - w / 2) / (w / 2)
    return y[:, None] ** 2 + x[None, :] ** 2 > 1.0


def vignette_score(images: np.ndarray, dark: int = 50) -> np.ndarray:
    """The fraction of each image's corner pixels (:func:`corner_region`) darker than the grey
    level ``dark`` (0..255): near 1 for a black circular vignette, near 0 without one."""
    corners = corner_region(_check(images).shape[1:3])
    return _in_chunks(lambda chunk: (luminance(chunk)[:, corners] < dark).mean(axis=1), images)


def black_hat(images: np.ndarray, size: int = 9) -> np.ndarray:
    """Morphological black-hat of the grey levels: ``closing(grey) - grey``, ``(N, H, W)`` uint8.

    The closing (a dilation followed by an erosion with a ``size x size`` square) fills in
    dark structures narrower than ``size`` pixels, so the difference is large on thin dark
    lines and dots (hairs, ruler ticks, pen strokes, fine pigment network) and near zero on
    smooth skin and on dark areas wider than ``size`` (most of a lesion).
    """
    def hat(chunk):
        grey = luminance(chunk)
        return ndimage.grey_closing(grey, size=(1, size, size)) - grey
    return _in_chunks(hat, images)


def hair_score(images: np.ndarray, size: int = 9, threshold: int = 25) -> np.ndarray:
    """The fraction of each image's pixels whose :func:`black_hat` (structures up to ``size``
    pixels wide) exceeds ``threshold`` grey levels. Dense hair gives 0.1 or more, clean skin about
    0.01; pigment network, ruler ticks and ink lines count too."""
    return _in_chunks(lambda chunk: (black_hat(chunk, size) > threshold).mean(axis=(1, 2)), images)


def ink_mask(images: np.ndarray, margin: int = 35) -> np.ndarray:
    """``(N, H, W)`` bool map of violet pixels, such as surgical-marker (gentian violet) ink: blue
    exceeds green by at least 30 and by ``margin`` more than the image's median (which absorbs a
    bluish colour cast), and red exceeds green by at least 10 (skin has red > green > blue)."""
    def violet(chunk):
        x = chunk.astype(np.int16)
        r, g, b = x[..., 0], x[..., 1], x[..., 2]
        blue_green = b - g
        typical = np.median(blue_green[:, ::4, ::4], axis=(1, 2), keepdims=True) if len(x) else 0  # no median of nothing
        return (blue_green - typical > margin) & (blue_green > 30) & (r - g > 10)
    return _in_chunks(violet, images)


def ink_score(images: np.ndarray, margin: int = 35) -> np.ndarray:
    """The fraction of each image's pixels that :func:`ink_mask` calls violet: ``(N,)`` in [0, 1]."""
    return _in_chunks(lambda chunk: ink_mask(chunk, margin).mean(axis=(1, 2)), images)
