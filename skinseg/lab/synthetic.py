"""SYNTHETIC dermoscopy-like images with exact lesion masks, for tests, the CLI and demos.

Nothing here is real data. An image has a shaded, noisy skin-toned background, one pigmented
lesion with an irregular border (about 3 % to 50 % of the image) and variegated colour, a few dark
hairs (not in the mask, as in the ISIC ground truth) and sometimes a dermatoscope vignette. The
mask is exact: 1 where a pixel's centre lies inside the lesion.
"""
from __future__ import annotations

import math
import numbers
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..atomic import write_image_atomic, write_text_atomic
from ..config import check_image_size
from ..data.arrays import SegmentationData
from ..data.isic import LAYOUTS, MASK_SUFFIX
from ..errors import ConfigError

__all__ = ["LAYOUT_KINDS", "ORIGINAL_SIZES", "make_synthetic", "write_isic_layout"]

# RGB colours on the 0..255 scale.
_SKIN_TONES = np.array([[242, 208, 188], [234, 192, 168], [226, 178, 150], [214, 164, 134], [196, 146, 114],
                        [232, 186, 170]], dtype=np.float32)
_LIGHT_BROWN = np.array([178, 122, 88], dtype=np.float32)
_BROWN = np.array([138, 88, 60], dtype=np.float32)
_DARK_BROWN = np.array([82, 52, 38], dtype=np.float32)
_BLUE_GREY = np.array([112, 116, 138], dtype=np.float32)
_HAIR = np.array([38, 28, 24], dtype=np.float32)
_ANGLES = 2048  # angles at which a lesion's border radius is tabulated
# (height, width) of the images of an "official" layout, in turn: sizes of the official ISIC
# archives (W x H 1022x767, 767x576, 1024x683, 600x450, a portrait one), none a multiple of 16.
ORIGINAL_SIZES = ((767, 1022), (576, 767), (683, 1024), (450, 600), (767, 576))
LAYOUT_KINDS = ("compact", "official")


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def _smooth_matrix(n: int, cells: int) -> np.ndarray:
    """``(n, cells + 2)`` weights that spread ``cells + 2`` control values smoothly over n samples."""
    x = (np.arange(n, dtype=np.float32) + 0.5) / n
    c = (np.arange(-1, cells + 1, dtype=np.float32) + 0.5) / cells
    w = np.exp(-0.5 * ((x[:, None] - c[None, :]) * cells) ** 2)
    return w / w.sum(axis=1, keepdims=True)


def _field(rng: np.random.Generator, shape: tuple[int, int], cells: int, channels: int = 1) -> np.ndarray:
    """Smooth random fields ``(channels, H, W)``, zero mean and unit std each, with ``cells``
    control points along the longer side."""
    h, w = shape
    ny, nx = max(1, round(cells * h / max(h, w))), max(1, round(cells * w / max(h, w)))
    grid = rng.standard_normal((channels, ny + 2, nx + 2)).astype(np.float32)
    out = np.einsum("hk,ckw->chw", _smooth_matrix(h, ny), grid @ np.ascontiguousarray(_smooth_matrix(w, nx).T))
    out -= out.mean(axis=(1, 2), keepdims=True)
    out /= out.std(axis=(1, 2), keepdims=True) + 1e-6
    return out


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _stamp(target: np.ndarray, ys: np.ndarray, xs: np.ndarray, width: int) -> None:
    """Set ``target`` to 1 at the points, with a square footprint of ``width`` pixels."""
    offsets = np.arange(width)
    yi, xi = np.broadcast_arrays(np.round(ys).astype(np.int64)[:, None, None] + offsets[:, None],
                                 np.round(xs).astype(np.int64)[:, None, None] + offsets)
    keep = (yi >= 0) & (yi < target.shape[0]) & (xi >= 0) & (xi < target.shape[1])
    target[yi[keep], xi[keep]] = 1.0


def _colour(rgb) -> np.ndarray:
    return np.asarray(rgb, np.float32).reshape(3, 1, 1)


def _lesion(rng: np.random.Generator, y: np.ndarray, x: np.ndarray):
    """The blob on the pixel grid ``y, x`` as ``(mask, depth, inside, centre)``: ``mask`` bool ``(H, W)``;
    ``depth`` float32 ``(H, W)`` in [0, 1], 0 on and outside the border and 1 at the centre; ``inside``
    float32, roughly the distance in pixels inside the border (negative outside); ``centre`` ``(y, x)``."""
    h, w = y.shape
    fraction = math.exp(rng.uniform(math.log(0.03), math.log(0.5)))
    r0 = math.sqrt(fraction * h * w / math.pi)
    margin = 0.6 * r0
    cy = rng.uniform(min(margin, h / 2), max(h - margin, h / 2))
    cx = rng.uniform(min(margin, w / 2), max(w - margin, w / 2))
    angle = rng.uniform(0, math.pi)
    aspect = math.exp(0.5 * rng.uniform(math.log(0.7), math.log(1.45)))
    dy, dx = y - np.float32(cy), x - np.float32(cx)
    u = dx * np.float32(math.cos(angle) / aspect) + dy * np.float32(math.sin(angle) / aspect)
    v = dy * np.float32(math.cos(angle) * aspect) - dx * np.float32(math.sin(angle) * aspect)
    rho = np.sqrt(u * u + v * v)
    theta = np.arctan2(v, u)

    # The radius in polar coordinates: a few coarse lobes and a fine ragged edge, tabulated over
    # _ANGLES angles and looked up per pixel.
    ks = np.r_[2:8, 9:19]
    amps = rng.uniform(0, 1, 6) / ks[:6] ** 1.1
    amps *= rng.uniform(0.12, 0.42) / amps.sum()
    amps = np.concatenate([amps, rng.uniform(0, rng.uniform(0.002, 0.012), 10)])
    phases = rng.uniform(0, 2 * np.pi, ks.size)
    table = r0 * (1.0 + amps @ np.cos(ks[:, None] * np.linspace(-np.pi, np.pi, _ANGLES + 1) + phases[:, None]))
    index = ((theta + np.float32(np.pi)) * np.float32(_ANGLES / (2 * np.pi)) + np.float32(0.5)).astype(np.intp)
    radius = table.astype(np.float32)[index]

    mask = rho < radius
    if not mask.any():  # only conceivable at the smallest sizes
        mask[min(max(round(cy), 0), h - 1), min(max(round(cx), 0), w - 1)] = True
    depth = np.maximum(np.float32(1.0) - rho / radius, np.float32(0.0))
    inside = (radius - rho) * np.float32(min(aspect, 1 / aspect))
    return mask, depth, inside, (cy, cx)


def _draw(shape: tuple[int, int], seed_sequence: np.random.SeedSequence) -> tuple[np.ndarray, np.ndarray]:
    """One image as ``(uint8 (H, W, 3) RGB, uint8 (H, W) mask in {0, 1})``."""
    rng = np.random.default_rng(seed_sequence)
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)

    # Skin: a tone between two neighbours of the palette, smooth shading and redness.
    i = int(rng.integers(len(_SKIN_TONES)))
    j = min(i + 1, len(_SKIN_TONES) - 1)
    skin = _SKIN_TONES[i] + rng.uniform(0, 1) * (_SKIN_TONES[j] - _SKIN_TONES[i])
    skin = _colour(skin * rng.uniform(0.9, 1.04) + rng.normal(0, 4, 3))
    low = _field(rng, shape, int(rng.integers(3, 6)), 2)
    grain = _field(rng, shape, int(rng.integers(28, 48)))[0]
    shade = (np.float32(1.0) + np.float32(rng.uniform(0.02, 0.06)) * low[0]
             + np.float32(rng.uniform(0.008, 0.02)) * grain)
    red = np.float32(rng.uniform(0.0, 10.0)) * np.maximum(low[1], np.float32(0))
    image = skin * shade + _colour([1.0, -0.7, -0.3]) * red

    # Lesion colour: a base brown, darker patches, blue-grey areas, dots and a dark core.
    mask, depth, inside, (cy, cx) = _lesion(rng, y, x)
    tone = rng.uniform(0, 1.4)
    base = _LIGHT_BROWN + min(tone, 1) * (_BROWN - _LIGHT_BROWN) + max(tone - 1, 0) * (_DARK_BROWN - _BROWN)
    base = _colour(base * rng.uniform(0.85, 1.08) + rng.normal(0, 2.5, 3))
    patches = _field(rng, shape, int(rng.integers(6, 14)), 3)
    dark = _smoothstep((patches[0] - np.float32(rng.uniform(-0.6, 0.9))) * np.float32(1.2))
    dark *= np.float32(rng.uniform(0.6, 1.0))
    lesion = base + dark * (_colour(_DARK_BROWN) - base)
    if rng.uniform() < 0.4:
        blue = _smoothstep((patches[1] - np.float32(rng.uniform(0.2, 1.2))) * np.float32(1.5))
        blue *= np.float32(rng.uniform(0.5, 0.9)) * _smoothstep(depth * np.float32(3.0))
        lesion += blue * (_colour(_BLUE_GREY) - lesion)
    core = np.float32(1.0) - np.float32(rng.uniform(0.1, 0.45)) * depth ** np.float32(rng.uniform(0.8, 2.0))
    lesion *= core * (np.float32(1.0) + np.float32(0.06) * patches[2])
    if rng.uniform() < 0.35:
        ys, xs = np.nonzero(mask & (depth > 0.15))
        if ys.size:
            pick = rng.integers(0, ys.size, int(rng.integers(4, 22)))
            dots = np.zeros((h, w), np.float32)
            _stamp(dots, ys[pick], xs[pick], int(rng.integers(1, 3)))
            dots = np.clip(ndimage.gaussian_filter(dots, 1.0) * np.float32(4.0), 0, 0.8)
            lesion += dots * (_colour(_DARK_BROWN * 0.6) - lesion)

    # Opacity: antialiased at the exact border, a fuzzy or sharp rim, fully opaque inside.
    edge = np.clip(inside + np.float32(0.5), 0.0, 1.0)
    rim = rng.uniform(0.45, 0.8)
    ramp = _smoothstep(depth * np.float32(1 / rng.uniform(0.05, 0.4)))
    image += edge * (np.float32(rim) + np.float32(1 - rim) * ramp) * (lesion - image)

    # Hairs: quadratic Bezier curves, about half of them through the lesion.
    n_hairs = 0 if rng.uniform() < 0.3 else int(rng.integers(1, 9))
    if n_hairs:
        hairs = np.zeros((h, w), np.float32)
        side = max(h, w)
        for _ in range(n_hairs):
            length = rng.uniform(0.3, 1.1) * side
            direction = rng.uniform(0, 2 * np.pi)
            d = np.array([math.sin(direction), math.cos(direction)])
            if rng.uniform() < 0.5:
                middle = np.array([cy, cx]) + rng.normal(0, 0.1 * side, 2)
            else:
                middle = np.array([rng.uniform(0, h), rng.uniform(0, w)])
            bend = middle + np.array([-d[1], d[0]]) * rng.normal(0, 0.15) * length
            t = np.linspace(0, 1, int(length * 2.5))[:, None]
            pts = (1 - t) ** 2 * (middle - d * length / 2) + 2 * (1 - t) * t * bend + t ** 2 * (middle + d * length / 2)
            _stamp(hairs, pts[:, 0], pts[:, 1], 1 if rng.uniform() < 0.6 else 2)
        hairs = np.clip(ndimage.gaussian_filter(hairs, 0.6) * np.float32(1.6), 0, 0.92)
        image += hairs * (_colour(_HAIR * rng.uniform(0.6, 1.4)) - image)

    # Dermatoscope vignette: dark corners outside a circle (never within 0.72 of the half diagonal).
    if rng.uniform() < 0.35:
        radius = np.hypot(x - (w - 1) / 2, y - (h - 1) / 2) / np.float32(np.hypot(h / 2, w / 2))
        start = rng.uniform(0.72, 0.92)
        width = rng.uniform(0.03, 0.15)
        dim = _smoothstep((radius - np.float32(start)) * np.float32(1 / width))
        image *= np.float32(1.0) - np.float32(rng.uniform(0.6, 0.97)) * dim

    # Mild sensor noise (uniform, standard deviation 1 to 4 grey levels).
    noise = rng.random((3, h, w), dtype=np.float32) - np.float32(0.5)
    image += np.float32(rng.uniform(1.0, 4.0) * math.sqrt(12)) * noise
    np.clip(image + np.float32(0.5), 0, 255, out=image)
    return image.astype(np.uint8).transpose(1, 2, 0), mask.astype(np.uint8)


def make_synthetic(n: int, size: tuple[int, int] = (192, 256), seed: int = 0) -> SegmentationData:
    """Draw ``n`` (>= 1) SYNTHETIC images of ``size`` ``(height, width)`` (each a multiple of 16, >= 16)
    from ``seed`` (>= 0): the same arguments give identical arrays, and image ``i`` does not depend on ``n``.

    Returns :class:`SegmentationData` with ``images`` ``(n, H, W, 3)`` uint8 RGB in 0..255, ``masks``
    ``(n, H, W)`` uint8 in {0, 1} (1 = lesion, never empty), ids ``synth_0000``, ... and ``source =
    "SYNTHETIC lesions (seed S)"``; raises :class:`ConfigError` for an invalid argument.
    """
    n = _check_int("n", n, 1)
    size = check_image_size(size, "size")
    seed = _check_int("seed", seed, 0)
    pairs = [_draw(size, child) for child in np.random.SeedSequence(seed).spawn(n)]
    return SegmentationData(np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]),
                            [f"synth_{i:04d}" for i in range(n)], f"SYNTHETIC lesions (seed {seed})")


def write_isic_layout(root, year: str = "2017", n_train: int = 8, n_val: int = 4, n_test: int = 4,
                      size: tuple[int, int] = (192, 256), seed: int = 0, layout: str = "compact") -> Path:
    """Write SYNTHETIC images into ``root`` (created if missing) in the folder layout of an official
    ISIC archive of ``year`` (:data:`skinseg.data.isic.LAYOUTS`; 2016 has no validation split, so
    ``n_val`` is ignored): RGB JPEGs (quality 95), masks 8-bit PNGs in {0, 255}, ``n_*`` >= 1 per
    split, ``size`` and ``seed`` as for :func:`make_synthetic` (the same arguments write identical pixels).

    ``layout="compact"``: every image at ``size``, ids ``ISIC_0000000``, ``ISIC_0000001``, ... across
    the splits in the order train, validation, test (image ``k`` is image ``k`` of
    ``make_synthetic(n, size, seed)``), and for 2017 one ``*_superpixels.png`` per ``*_Data`` folder,
    which readers must skip. ``layout="official"``: as the archives extract: image ``k`` at
    ``ORIGINAL_SIZES[k % 5]`` (``size`` is ignored), ids neither consecutive nor from 0
    (``ISIC_0012000``, ``ISIC_0012013``, ...), and for 2017 a ``_superpixels.png`` beside every image
    and a ``<folder>_metadata.csv`` in every ``*_Data`` folder.

    Returns ``root`` as a :class:`~pathlib.Path`; raises :class:`ConfigError` for an invalid argument.
    """
    from PIL import Image

    year = str(year)
    if year not in LAYOUTS:
        raise ConfigError(f"year must be '2016' or '2017', got {year!r}")
    if layout not in LAYOUT_KINDS:
        raise ConfigError(f"layout must be one of {LAYOUT_KINDS}, got {layout!r}")
    asked = {"train": n_train, "val": n_val, "test": n_test}
    counts = {split: _check_int(f"n_{split}", asked[split], 1) for split in LAYOUTS[year]}
    size = check_image_size(size, "size")
    seed = _check_int("seed", seed, 0)
    official = layout == "official"
    children = np.random.SeedSequence(seed).spawn(sum(counts.values()))
    root = Path(root)
    start = 0
    for split, (data_dir, truth_dir) in LAYOUTS[year].items():  # the atomic writes create the folders
        rng = np.random.default_rng([seed, start])  # the official metadata's ages and sexes
        rows = []
        for k in range(start, start + counts[split]):
            stem = f"ISIC_{12000 + 13 * k:07d}" if official else f"ISIC_{k:07d}"
            image, mask = _draw(ORIGINAL_SIZES[k % len(ORIGINAL_SIZES)] if official else size, children[k])
            write_image_atomic(root / data_dir / f"{stem}.jpg", Image.fromarray(image, "RGB"), quality=95)
            write_image_atomic(root / truth_dir / f"{stem}{MASK_SUFFIX[year]}", Image.fromarray(mask * np.uint8(255), "L"))
            if year == "2017" and (official or k == start):
                write_image_atomic(root / data_dir / f"{stem}_superpixels.png",
                                   Image.fromarray(_superpixels(image.shape[:2], k), "RGB"))
            rows.append(f"{stem},{5 * int(rng.integers(4, 17))},{rng.choice(['female', 'male'])}")
        if year == "2017" and official:
            write_text_atomic(root / data_dir / f"{data_dir}_metadata.csv", "\n".join(["image_id,age_approximate,sex", *rows]) + "\n")
        start += counts[split]
    return root


def _superpixels(shape: tuple[int, int], offset: int) -> np.ndarray:
    """A stand-in for the ISIC 2017 superpixel files: ``(H, W, 3)`` uint8, label in R + 256 * G."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w]
    labels = (y // 16) * ((w + 15) // 16) + (x // 16) + offset
    return np.stack([labels % 256, labels // 256 % 256, np.zeros_like(labels)], axis=-1).astype(np.uint8)
