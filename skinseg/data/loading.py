"""Load a split into memory once, decoded and resized, with an on-disk cache."""
from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np

from ..atomic import write_npz_atomic
from ..errors import DataError
from ..paths import cache_dir as default_cache_dir
from .arrays import SegmentationData
from .folders import FOLDERS, detect_layout, find_folder_pairs
from ..checks import check_limit, check_size
from .isic import LAYOUTS, SPLITS, find_pairs, read_pair
from .splits import isic2016_validation_ids

# The folder's own splits; skinseg.lab.protocols adds the article's ISIC 2016 replica.
OFFICIAL = "official"


def split_pairs(root: Path, split: str, year: str) -> list[tuple[str, Path, Path]]:
    """The ``(id, image, mask)`` triples of ``split`` (``train``, ``val`` or ``test``) of the folder's own
    splits; ISIC 2016's ``train`` and ``val`` are the fixed 720/180 split of its training folder
    (:mod:`skinseg.data.splits`)."""
    if year == FOLDERS:
        return find_folder_pairs(root, split)
    if split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}, got {split!r}")
    if year == "2016" and split in ("train", "val"):
        pairs = find_pairs(root, year, "train")
        val_ids = isic2016_validation_ids([p[0] for p in pairs])
        return [p for p in pairs if (p[0] in val_ids) == (split == "val")]
    return find_pairs(root, year, split)


def origin(root: Path, year: str, split: str) -> dict[str, str]:
    """Where a split comes from, which a checkpoint records: ``{"protocol", "dataset", "split", "folder"}``.

    ``dataset`` is ``"ISIC 2017"``, ``"ISIC 2016"`` or ``"folder <name>"`` (``year`` not an ISIC
    year), whatever the split, so that another data set is told from a held-out split; ``folder``
    is the image folder read (``ISIC-2017_Training_Data``, or ``<name>/<split>``).
    """
    if year in LAYOUTS:
        dataset, folder = f"ISIC {year}", LAYOUTS[year]["train" if year == "2016" and split == "val" else split][0]
    else:
        dataset, folder = f"folder {Path(root).name}", f"{Path(root).name}/{split}"
    return {"protocol": OFFICIAL, "dataset": dataset, "split": split, "folder": folder}


def _cache_key(pairs, size) -> str:
    h = hashlib.sha256(repr(size).encode())
    for image_id, image, mask in pairs:
        for path in (image, mask):
            st = path.stat()
            h.update(f"{image_id}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def load_split(root, split: str, size: tuple[int, int] = (192, 256), *, year: str | None = None,
               ids=None, limit: int | None = None, cache: bool = True,
               cache_dir: Path | None = None) -> SegmentationData:
    """Decode a split of an ISIC (or generic, :mod:`skinseg.data.folders`) folder into uint8 arrays, resized to ``size = (H, W)``.

    The arrays are cached in ``cache_dir`` (default ``$SKINSEG_CACHE`` or ``~/.cache/skinseg``),
    keyed by the files' paths, sizes and modification times. ``ids`` keeps only these image ids
    of the split (an id the split lacks raises :class:`DataError`), ``limit`` then the first N
    images (sorted by id). The result's ``source`` names the split (``"ISIC 2017 test"``) and its
    ``origin`` (:func:`origin`) says where the images come from.
    """
    root = Path(root)
    size, limit = check_size(size), check_limit(limit)
    year = year or detect_layout(root)
    pairs = split_pairs(root, split, year)
    if ids is not None:
        wanted = set(ids)
        unknown = sorted(wanted - {p[0] for p in pairs})
        if unknown:
            raise DataError(f"{len(unknown)} of the ids are not in the {split} split of {root}, e.g. {unknown[0]!r}")
        pairs = [p for p in pairs if p[0] in wanted]
    pairs = pairs[:limit]
    name = f"folder {root.name} {split}" if year == FOLDERS else f"ISIC {year} {split}"
    source = name + (f" (first {len(pairs)})" if limit is not None else "")
    where = origin(root, year, split)
    kept_ids = [p[0] for p in pairs]
    cache_file = Path(cache_dir or default_cache_dir()) / f"{'' if year == FOLDERS else 'isic'}{year}_{split}_{size[0]}x{size[1]}_{_cache_key(pairs, size)}.npz"
    if cache and cache_file.exists():
        try:
            with np.load(cache_file) as z:
                if json.loads(str(z["ids"])) == kept_ids:
                    return SegmentationData(z["images"], z["masks"], kept_ids, source, where)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # a truncated or damaged cache file (a killed write, a full disk) is built again below
    images = np.empty((len(pairs), *size, 3), np.uint8)
    masks = np.empty((len(pairs), *size), np.uint8)
    for i, (_, image_path, mask_path) in enumerate(pairs):
        images[i], masks[i] = read_pair(image_path, mask_path, size)
    if cache:
        try:
            write_npz_atomic(cache_file, False, images=images, masks=masks, ids=np.array(json.dumps(kept_ids)))
        except OSError:
            pass  # a read-only home still works, only without the cache
    return SegmentationData(images, masks, kept_ids, source, where)


def load_dataset(root, size: tuple[int, int] = (192, 256), *, limits: dict[str, int | None] | None = None,
                 **kwargs) -> dict[str, SegmentationData]:
    """``{"train": ..., "val": ..., "test": ...}`` of an ISIC folder (see :func:`load_split`)."""
    limits = limits or {}
    return {split: load_split(root, split, size, limit=limits.get(split), **kwargs) for split in SPLITS}
