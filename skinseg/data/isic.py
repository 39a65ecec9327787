"""Readers for the official ISIC 2016 and 2017 task-1 folder layouts.

Images ``X.jpg`` pair with masks ``X_segmentation.png`` (2017) or ``X_Segmentation.png``
(2016) by file stem; ids are not assumed to look like ``ISIC_xxxxxxx``. The
``*_superpixels.png`` files of the real archives are skipped.

Masks with values other than 0 and 255 (JPEG artefacts, resized masks) are binarised at
127 with a warning rather than rejected.
"""
from __future__ import annotations

import warnings
from pathlib import Path

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

    Raises :class:`DataError` for a missing or empty folder, an image without a mask or a
    mask without an image, naming the files.
    """
    root = Path(root)
    if folder_split not in LAYOUTS[year]:
        raise DataError(f"ISIC {year} has no {folder_split!r} split; it has {sorted(LAYOUTS[year])}")
    image_dir, mask_dir = (root / name for name in LAYOUTS[year][folder_split])
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            raise DataError(f"missing folder {folder}. " + missing_data_message(root))
    suffix = MASK_SUFFIX[year]
    images = {p.stem: p for p in image_dir.iterdir()
              if p.suffix.lower() in IMAGE_EXTENSIONS and not p.stem.endswith("_superpixels")}
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


def _open(path: Path, mode: str) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert(mode)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(f"cannot read {path}: corrupt or truncated image file ({err})") from None


def read_pair(image_path: Path, mask_path: Path, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Decode one image and its mask and resize both to ``size = (H, W)``.

    Returns ``(image, mask)``: ``(H, W, 3)`` uint8 RGB and ``(H, W)`` uint8 in {0, 1}.
    The image is resized with area-averaging, the mask with bilinear interpolation
    followed by thresholding at one half.
    """
    image = _open(image_path, "RGB")
    mask = _open(mask_path, "L")
    if mask.size != image.size:
        raise DataError(f"mask {mask_path} is {mask.size[0]}x{mask.size[1]} but its image {image_path} "
                        f"is {image.size[0]}x{image.size[1]} (W x H): they must be the same size")
    m = np.asarray(mask)
    if not np.isin(m, (0, 255)).all():
        warnings.warn(f"mask {mask_path} has values other than 0 and 255; binarised at 127", stacklevel=2)
    m = np.where(m > 127, 255, 0).astype(np.uint8)
    h, w = size
    if image.size != (w, h):
        image = image.resize((w, h), Image.Resampling.BOX if image.size[0] >= w else Image.Resampling.BILINEAR)
        m = np.asarray(Image.fromarray(m).resize((w, h), Image.Resampling.BILINEAR))
    return np.asarray(image, dtype=np.uint8), (m > 127).astype(np.uint8)
