"""Readers for the official ISIC 2016 and 2017 task-1 folder layouts.

Images ``X.jpg`` pair with masks ``X_segmentation.png`` (2017) or ``X_Segmentation.png``
(2016) by file stem; ids are not assumed to look like ``ISIC_xxxxxxx``. The
``*_superpixels.png`` files of the real archives are skipped.

Masks are binary images with the values 0 and 255, or 0 and 1 (8 or 16 bits). A 0/255
mask with grey edges (JPEG artefacts, an earlier resize) is binarised at 127 with a
warning; any other mask (a label map, a grey-level image) is refused, naming the values found.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataError

LAYOUTS: dict[str, dict[str, tuple[str, str]]] = {
    "2017": {
        "train": ("ISIC-2017_Training_Data", "ISIC-2017_Training_Part1_GroundTruth"),
        "val": ("ISIC-2017_Validation_Data", "ISIC-2017_Validation_Part1_GroundTruth"),
        "test": ("ISIC-2017_Test_v2_Data", "ISIC-2017_Test_v2_Part1_GroundTruth"),
    },
    "2016": {
        "train": ("ISBI2016_ISIC_Part1_Training_Data", "ISBI2016_ISIC_Part1_Training_GroundTruth"),
        "test": ("ISBI2016_ISIC_Part1_Test_Data", "ISBI2016_ISIC_Part1_Test_GroundTruth"),
    },
}
MASK_SUFFIX = {"2017": "_segmentation.png", "2016": "_Segmentation.png"}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
SPLITS = ("train", "val", "test")


def describe_layout(year: str) -> str:
    """One line naming the folders of ``year``'s official layout."""
    return ", ".join(f"{images}/ + {masks}/" for images, masks in LAYOUTS[year].values())


def missing_data_message(root: Path) -> str:
    return (f"no ISIC data found in {root}: expected the official layout "
            f"(ISIC 2017: {describe_layout('2017')}; or ISIC 2016: {describe_layout('2016')}). "
            f"Download it with: python -m skinseg download --year 2017 --data {root}")


def detect_year(root: Path) -> str:
    """``"2017"`` or ``"2016"``, from which official folders exist under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(missing_data_message(root))
    for year, splits in LAYOUTS.items():
        if (root / splits["train"][0]).is_dir() or (root / splits["test"][0]).is_dir():
            return year
    raise DataError(missing_data_message(root))


def find_pairs(root: Path, year: str, folder_split: str) -> list[tuple[str, Path, Path]]:
    """``(id, image_path, mask_path)`` for every image of an official split folder, sorted by id.

    Raises :class:`DataError` for a missing or empty folder, an image without a mask, a
    mask without an image or an image stem present twice (``X.jpg`` and ``X.png``), naming the files.
    """
    root = Path(root)
    if folder_split not in LAYOUTS[year]:
        raise DataError(f"ISIC {year} has no {folder_split!r} split; it has {sorted(LAYOUTS[year])}")
    image_dir, mask_dir = (root / name for name in LAYOUTS[year][folder_split])
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            raise DataError(f"missing folder {folder}. " + missing_data_message(root))
    suffix = MASK_SUFFIX[year]
    images: dict[str, Path] = {}
    for p in sorted(image_dir.iterdir()):
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.stem.endswith("_superpixels"):
            if p.stem in images:
                raise DataError(f"image {p.stem} is there twice, as {images[p.stem].name} and {p.name} "
                                f"in {image_dir}: keep one of them")
            images[p.stem] = p
    masks = {p.name[: -len(suffix)]: p for p in mask_dir.iterdir() if p.name.endswith(suffix)}
    if not images:
        raise DataError(f"empty folder {image_dir}: expected images X.jpg")
    if not masks:
        raise DataError(f"empty folder {mask_dir}: expected masks X{suffix}")
    if images.keys() - masks.keys():
        lonely = sorted(images.keys() - masks.keys())
        raise DataError(f"{len(lonely)} image(s) without a mask, e.g. {images[lonely[0]]}: "
                        f"expected {mask_dir / (lonely[0] + suffix)}")
    if masks.keys() - images.keys():
        lonely = sorted(masks.keys() - images.keys())
        raise DataError(f"{len(lonely)} mask(s) without an image, e.g. {masks[lonely[0]]}: "
                        f"expected {image_dir / (lonely[0] + '.jpg')}")
    return [(stem, images[stem], masks[stem]) for stem in sorted(images)]


def open_image(source: Path | BinaryIO, mode: str | None = "RGB", name: Path | str | None = None) -> Image.Image:
    """Decode an image file (a path, or an open binary file named ``name`` in messages), converted to ``mode``.

    Raises :class:`DataError` naming the file for a corrupt or truncated image.
    """
    try:
        with Image.open(source) as im:
            im.load()
            return im.convert(mode) if mode else im.copy()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(f"cannot read {name or source}: corrupt or truncated image file ({err})") from None


# Modes whose pixel values are the stored numbers; anything else (RGB, LA, F, ...) is read as grey levels.
_RAW_MASK_MODES = ("1", "L", "P", "I", "I;16", "I;16L", "I;16B")
# A 0/255 mask with grey edges: at most this fraction of its pixels lie in the grey band.
_GREY_BAND, _MAX_GREY_FRACTION = (32, 223), 0.10


def _describe_values(values: np.ndarray) -> str:
    shown = ", ".join(str(int(v)) for v in values[:8])
    return f"{{{shown}{', ...' if len(values) > 8 else ''}}} ({len(values)} distinct)"


def binary_mask(values: np.ndarray, path: Path | str) -> np.ndarray:
    """A stored mask as ``(H, W)`` uint8 in {0, 1} (1 = lesion).

    ``values``: the ``(H, W)`` integer pixel values as stored (uint8, uint16 or int32).
    {0, 1} and {0, 255} are binary as they are. An 8-bit mask whose other values are
    grey edges (at most 10 % of pixels between 32 and 223, and some pixel at least 128) is
    binarised at 127 with a warning. Anything else raises :class:`DataError` naming
    ``path`` and the values found.
    """
    values = np.asarray(values)
    if values.dtype.kind not in "biu" or values.ndim != 2:
        raise DataError(f"mask {path} must be one channel of integers, got {values.dtype} {values.shape}")
    flat = values.ravel()
    if values.dtype.kind != "b" and flat.size and flat.min() >= 0 and flat.max() <= 65535:
        counts = np.bincount(flat.astype(np.int64, copy=False), minlength=256)
        found = np.flatnonzero(counts)
    else:
        counts, found = None, np.unique(flat)
    if np.isin(found, (0, 1)).all():
        return values.astype(np.uint8)
    if np.isin(found, (0, 255)).all():
        return (values == 255).astype(np.uint8)
    if counts is not None and found[-1] <= 255 and found[-1] >= 128:
        grey = counts[_GREY_BAND[0]:_GREY_BAND[1] + 1].sum() / flat.size
        if grey <= _MAX_GREY_FRACTION:
            warnings.warn(f"mask {path} has grey edges (values {_describe_values(found)}); binarised at 127",
                          stacklevel=3)
            return (values > 127).astype(np.uint8)
    raise DataError(f"mask {path} is not a binary mask: it has the values {_describe_values(found)}; expected "
                    f"0 and 255 (or 0 and 1), where a 0/255 mask with a few grey edge pixels is binarised at 127")


def read_mask(source: Path | BinaryIO, name: Path | str | None = None) -> np.ndarray:
    """Decode a mask file (a path, or an open binary file named ``name``) into ``(H, W)`` uint8
    in {0, 1} (see :func:`binary_mask`)."""
    im = open_image(source, None, name)
    values = np.asarray(im if im.mode in _RAW_MASK_MODES else im.convert("L"))
    return binary_mask(values, name or source)


def resize_image(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``image`` resized to ``size = (H, W)``: area-averaging to shrink, bilinear to enlarge."""
    h, w = size
    if image.size == (w, h):
        return image
    return image.resize((w, h), Image.Resampling.BOX if image.size[0] >= w else Image.Resampling.BILINEAR)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(h, w)`` {0, 1} mask -> ``(H, W)`` uint8 {0, 1}: bilinear interpolation, thresholded at one half."""
    h, w = size
    if mask.shape == (h, w):
        return mask.astype(np.uint8)
    resized = np.asarray(Image.fromarray((mask * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BILINEAR))
    return (resized > 127).astype(np.uint8)


def read_pair(image_path: Path, mask_path: Path, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Decode one image and its mask and resize both to ``size = (H, W)``.

    Returns ``(image, mask)``: ``(H, W, 3)`` uint8 RGB and ``(H, W)`` uint8 in {0, 1}
    (:func:`resize_image`, :func:`resize_mask`; masks are checked by :func:`binary_mask`).
    """
    image = open_image(image_path)
    mask = read_mask(mask_path)
    if mask.shape != (image.size[1], image.size[0]):
        raise DataError(f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but its image {image_path} "
                        f"is {image.size[0]}x{image.size[1]} (W x H): they must be the same size")
    return np.asarray(resize_image(image, size), dtype=np.uint8), resize_mask(mask, size)
