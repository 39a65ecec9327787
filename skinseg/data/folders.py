"""A generic layout for your own data: a folder of images beside a folder of masks.

Two forms are read::

    DIR/images/  + DIR/masks/                  one evaluation set, read as the "test" split
    DIR/train/images/ + DIR/train/masks/       any of train/, val/ and test/, each with
    DIR/val/images/   + DIR/val/masks/         its own images/ and masks/
    DIR/test/images/  + DIR/test/masks/

:func:`find_folder_pairs` pairs the images with their masks. Both are then read as ISIC's are
(:func:`skinseg.data.isic.read_pair`): resized to the model's input, each mask at its image's size.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from ..atomic import write_image_atomic
from ..errors import DataError
from ..images import shown_size
from .arrays import SegmentationData
from .isic import SPLITS, describe_layout, detect_year, visible_files

IMAGE_DIR, MASK_DIR = "images", "masks"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
MASK_EXTENSIONS = (".png", ".bmp")
MASK_SUFFIXES = ("", "_mask", "_segmentation", "_Segmentation", "_lesion")
FOLDERS = "folders"  # the layout's name where an ISIC layout has its year
LAYOUT_HELP = (f"a folder with {IMAGE_DIR}/ + {MASK_DIR}/, or with train/, val/ and test/ subfolders "
               f"that each hold {IMAGE_DIR}/ + {MASK_DIR}/")


def images_in(folder: Path) -> list[Path]:
    """The image files (:data:`IMAGE_EXTENSIONS`) directly inside ``folder``, sorted, less hidden
    files and ISIC's ``*_superpixels`` images."""
    return [p for p in visible_files(folder)
            if p.suffix.lower() in IMAGE_EXTENSIONS and not p.stem.lower().endswith("_superpixels")]


def split_folders(root) -> dict[str, Path]:
    """``{split: folder holding images/ and masks/}`` of a generic layout.

    Raises :class:`DataError` when ``root`` has neither form, or both (``images/`` beside
    ``train/``), or a split folder without one of its two subfolders.
    """
    root = Path(root)
    flat = (root / IMAGE_DIR).is_dir() or (root / MASK_DIR).is_dir()
    split_dirs = {s: root / s for s in SPLITS if (root / s).is_dir()}
    if flat and split_dirs:
        raise DataError(f"{root} has both {IMAGE_DIR}/ or {MASK_DIR}/ and split folders "
                        f"({', '.join(f'{s}/' for s in split_dirs)}): expected one or the other")
    bases = {"test": root} if flat else split_dirs
    if not bases:
        raise DataError(f"no image folders in {root}: expected {LAYOUT_HELP}")
    for base in bases.values():
        for name in (IMAGE_DIR, MASK_DIR):
            if not (base / name).is_dir():
                raise DataError(f"missing folder {base / name}: expected {IMAGE_DIR}/ and {MASK_DIR}/ side by side in {base}")
    return bases


def _refuse_duplicate_stems(files: list[Path], what: str) -> None:
    if twice := sorted(stem for stem, n in Counter(p.stem for p in files).items() if n > 1):
        same = [p.name for p in files if p.stem == twice[0]]
        raise DataError(f"{len(twice)} {what} stem(s) appear with two extensions, e.g. {' and '.join(same)} in "
                        f"{files[0].parent}: keep one file per {what}")


def _pair(images: dict[str, Path], masks: list[Path], image_dir: Path, mask_dir: Path) -> dict[str, Path]:
    """``{image stem: mask}`` by the pairing rules of :func:`find_folder_pairs`."""
    paired: dict[str, Path] = {}
    for mask in masks:
        owners = sorted({mask.stem[: len(mask.stem) - len(s)] for s in MASK_SUFFIXES
                         if mask.stem.lower().endswith(s.lower()) and mask.stem[: len(mask.stem) - len(s)] in images})
        if not owners:
            raise DataError(f"mask {mask} has no image: expected {image_dir}/{mask.stem}.jpg (or .png, ...), "
                            f"or an image whose stem plus one of {', '.join(s for s in MASK_SUFFIXES if s)} "
                            f"is {mask.stem!r}")
        if len(owners) > 1:
            raise DataError(f"mask {mask} could belong to either of {', '.join(images[o].name for o in owners)}: "
                            "rename one of them")
        owner = owners[0]
        if owner in paired:
            raise DataError(f"image {images[owner]} has two masks, {paired[owner].name} and {mask.name} in "
                            f"{mask_dir}: keep one")
        paired[owner] = mask
    if lonely := sorted(images.keys() - paired.keys()):
        raise DataError(f"{len(lonely)} image(s) without a mask, e.g. {images[lonely[0]]}: expected "
                        f"{mask_dir}/{lonely[0]}.png (or {lonely[0]}_mask.png, {lonely[0]}_segmentation.png, ...; "
                        f"PNG or BMP)")
    return paired


def find_folder_pairs(root, split: str = "test") -> list[tuple[str, Path, Path]]:
    """``(id, image_path, mask_path)`` of every image of ``split`` in a generic layout, sorted by id.

    Read are the visible files directly inside ``images/`` (:data:`IMAGE_EXTENSIONS`, without
    ``*_superpixels``) and ``masks/`` (lossless: :data:`MASK_EXTENSIONS`). Mask ``X<suffix>.<ext>``
    belongs to image ``X.<ext>`` for a suffix of :data:`MASK_SUFFIXES` (``X.png``, ``X_mask.png``,
    ``X_lesion.bmp``, ...); the image's stem is its id. Raises :class:`DataError` naming the files
    for a missing split, an empty folder, a JPEG mask, an image without a mask, a mask without an
    image or that could belong to two, an image with two masks, or one stem twice (``X.jpg``, ``X.png``).
    """
    root = Path(root)
    if split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}, got {split!r}")
    bases = split_folders(root)
    if split not in bases:
        where = f"{root}/{split}/{IMAGE_DIR}/ + {MASK_DIR}/" if split != "test" or "train" in bases else str(root)
        raise DataError(f"{root} has no {split!r} split: expected {where}; it has {', '.join(sorted(bases))} "
                        f"({'a single evaluation set is read as test' if set(bases) == {'test'} else LAYOUT_HELP})")
    image_dir, mask_dir = bases[split] / IMAGE_DIR, bases[split] / MASK_DIR
    image_files = images_in(image_dir)
    in_masks = visible_files(mask_dir)
    mask_files = [p for p in in_masks if p.suffix.lower() in MASK_EXTENSIONS]
    if lossy := [p for p in in_masks if p.suffix.lower() in (".jpg", ".jpeg")]:
        raise DataError(f"mask {lossy[0]} is a JPEG: masks must be lossless PNG or BMP files with values "
                        "{0, 1} or {0, 255}")
    if not image_files:
        raise DataError(f"empty folder {image_dir}: expected images ({', '.join(IMAGE_EXTENSIONS)})")
    if not mask_files:
        raise DataError(f"empty folder {mask_dir}: expected masks ({', '.join(MASK_EXTENSIONS)})")
    _refuse_duplicate_stems(image_files, "image")
    _refuse_duplicate_stems(mask_files, "mask")
    images = {p.stem: p for p in image_files}
    paired = _pair(images, mask_files, image_dir, mask_dir)
    return [(stem, images[stem], paired[stem]) for stem in sorted(images)]


def describe_folder(root) -> str:
    """What a generic layout holds, in a few lines: the splits, pair counts, how masks were
    named and the images' sizes (which are all resized to the model's input)."""
    root = Path(root)
    bases = split_folders(root)
    form = (f"{IMAGE_DIR}/ + {MASK_DIR}/, one evaluation set read as the test split" if bases == {"test": root}
            else "split folders " + ", ".join(f"{s}/" for s in bases))
    lines = [f"image folder {root} ({form}):"]
    for split in bases:
        pairs = find_folder_pairs(root, split)
        naming = Counter(repr(mask.stem[len(stem):]) if mask.stem != stem else "same stem" for stem, _, mask in pairs)
        sizes = Counter("{}x{}".format(*shown_size(image)) for _, image, _ in pairs)
        shown = ", ".join(f"{s} ({n})" for s, n in sizes.most_common(4)) + (", ..." if len(sizes) > 4 else "")
        lines.append(f"  {split}: {len(pairs)} image/mask pairs; masks named by "
                     + ", ".join(f"{k} ({n})" for k, n in naming.items()) + f"; image sizes (W x H): {shown}")
    lines.append("  every image and its mask are resized to the model's input, as ISIC images are")
    return "\n".join(lines)


def write_folders(root, data: SegmentationData, split: str | None = None, *, sizes=None,
                  mask_suffix: str = "_mask", mask_format: str = "png", image_format: str = "jpg") -> Path:
    """Write ``data`` in the generic layout: ``root/images/<id>.jpg`` and ``root/masks/<id><mask_suffix>.png``
    (under ``root/<split>/`` if ``split`` is given). Returns the folder holding ``images/``.

    ``sizes``: an optional ``(H, W)`` per image to store it at instead of its array size (image
    resized bilinearly, mask by nearest neighbour), to imitate photographs of any size. Masks
    are stored as 0/255; ``mask_format`` is ``"png"`` or ``"bmp"``, ``image_format`` ``"jpg"`` or
    ``"png"``. Existing files of the same names are overwritten.
    """
    if mask_suffix not in MASK_SUFFIXES:
        raise DataError(f"mask_suffix must be one of {MASK_SUFFIXES}, got {mask_suffix!r}")
    if f".{mask_format}" not in MASK_EXTENSIONS or f".{image_format}" not in (".jpg", ".png"):
        raise DataError(f"mask_format must be png or bmp and image_format jpg or png, got {mask_format!r}, {image_format!r}")
    if split is not None and split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}, got {split!r}")
    sizes = list(sizes) if sizes is not None else [None] * len(data)
    if len(sizes) != len(data):
        raise DataError(f"{len(sizes)} sizes for {len(data)} images")
    base = Path(root) / split if split else Path(root)
    for name in (IMAGE_DIR, MASK_DIR):
        (base / name).mkdir(parents=True, exist_ok=True)
    for image_id, image, mask, size in zip(data.ids, data.images, data.masks, sizes):
        picture, outline = Image.fromarray(image), Image.fromarray(mask * np.uint8(255))
        if size is not None:
            h, w = size
            picture = picture.resize((w, h), Image.Resampling.BILINEAR)
            outline = outline.resize((w, h), Image.Resampling.NEAREST)
        write_image_atomic(base / IMAGE_DIR / f"{image_id}.{image_format}", picture, quality=95)
        write_image_atomic(base / MASK_DIR / f"{image_id}{mask_suffix}.{mask_format}", outline)
    return base


def detect_layout(root) -> str:
    """``"2017"`` or ``"2016"`` for an official ISIC layout, :data:`FOLDERS` for a generic one
    (any of ``images/``, ``masks/``, ``train/``, ``val/``, ``test/`` and no ISIC folder)."""
    root = Path(root)
    try:
        return detect_year(root)
    except DataError:
        if any((root / name).is_dir() for name in (IMAGE_DIR, MASK_DIR, *SPLITS)):
            return FOLDERS
        raise DataError(f"no ISIC data found in {root}, nor images of your own: expected the official layout "
                        f"(ISIC 2017: {describe_layout('2017')}; or ISIC 2016: {describe_layout('2016')}), or "
                        f"{LAYOUT_HELP}. Download ISIC with: python -m skinseg download --year 2017 --data {root}") from None


__all__ = ["FOLDERS", "IMAGE_EXTENSIONS", "LAYOUT_HELP", "MASK_EXTENSIONS", "MASK_SUFFIXES", "describe_folder",
           "detect_layout", "find_folder_pairs", "images_in", "split_folders", "write_folders"]
