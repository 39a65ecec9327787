"""Readers for the official ISIC 2016 and 2017 task-1 folder layouts.

Images ``X.jpg`` pair with masks ``X_segmentation.png`` (2017) or ``X_Segmentation.png``
(2016) by file stem; ids are not assumed to look like ``ISIC_xxxxxxx``. The
``*_superpixels.png`` files of the real archives are skipped, and so are hidden files (``.X.jpg``,
macOS ``._X.jpg``); extensions are matched whatever their case. Images and masks are read as a
viewer shows them, by the rules of :mod:`skinseg.images`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError
from ..images import read_image, read_mask

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


def visible_files(folder: Path) -> list[Path]:
    """The files directly inside ``folder``, sorted, without hidden ones (``.X``, macOS ``._X``)."""
    return [p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")]


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
    for p in visible_files(image_dir):
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.stem.lower().endswith("_superpixels"):
            if p.stem in images:
                raise DataError(f"image {p.stem} is there twice, as {images[p.stem].name} and {p.name} "
                                f"in {image_dir}: keep one of them")
            images[p.stem] = p
    masks: dict[str, Path] = {}
    for p in visible_files(mask_dir):
        if p.name.lower().endswith(suffix.lower()):
            stem = p.name[: -len(suffix)]
            if stem in masks:
                raise DataError(f"mask {stem} is there twice, as {masks[stem].name} and {p.name} in {mask_dir}: "
                                "keep one of them")
            masks[stem] = p
    if not images:
        raise DataError(f"empty folder {image_dir}: expected images X.jpg")
    if not masks:
        raise DataError(f"empty folder {mask_dir}: expected masks X{suffix}")
    if lonely := sorted(images.keys() - masks.keys()):
        raise DataError(f"{len(lonely)} image(s) without a mask, e.g. {images[lonely[0]]}: "
                        f"expected {mask_dir / (lonely[0] + suffix)}")
    if lonely := sorted(masks.keys() - images.keys()):
        raise DataError(f"{len(lonely)} mask(s) without an image, e.g. {masks[lonely[0]]}: "
                        f"expected {image_dir / (lonely[0] + '.jpg')}")
    return [(stem, images[stem], masks[stem]) for stem in sorted(images)]


def resize_image(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``image`` resized to ``size = (H, W)``: area-averaging to shrink, bilinear to enlarge."""
    h, w = size
    if image.size == (w, h):
        return image
    return image.resize((w, h), Image.Resampling.BOX if image.size[0] >= w else Image.Resampling.BILINEAR)


# Masks many times larger than the target are first box-reduced by an integer factor that leaves
# at least this many pixels per target pixel (Pillow's reducing_gap): on masks of 1022x767 to
# 6688x4439 pixels, 2.5x faster than one bilinear pass, and at most 3 of 49,152 pixels differ.
MASK_REDUCING_GAP = 2.0


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(h, w)`` {0, 1} mask -> ``(H, W)`` uint8 {0, 1}: bilinear interpolation (after an integer
    box reduction for large masks, :data:`MASK_REDUCING_GAP`), thresholded at one half."""
    h, w = size
    if mask.shape == (h, w):
        return mask.astype(np.uint8)
    resized = np.asarray(Image.fromarray((mask * 255).astype(np.uint8)).resize(
        (w, h), Image.Resampling.BILINEAR, reducing_gap=MASK_REDUCING_GAP))
    return (resized > 127).astype(np.uint8)


def read_pair(image_path: Path, mask_path: Path, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Decode one image and its mask and resize both to ``size = (H, W)``.

    Returns ``(image, mask)``: ``(H, W, 3)`` uint8 RGB and ``(H, W)`` uint8 in {0, 1}
    (:func:`resize_image`, :func:`resize_mask`; masks are checked by :func:`skinseg.images.binary_mask`).
    """
    image, (w, h) = read_image(image_path)
    mask = read_mask(mask_path)
    if mask.shape != (h, w):
        raise DataError(f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but its image {image_path} "
                        f"is {w}x{h} (W x H, as a viewer shows them): they must be the same size")
    return np.asarray(resize_image(image, size), dtype=np.uint8), resize_mask(mask, size)
