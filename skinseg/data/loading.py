"""Load a split into memory once, decoded and resized, with an on-disk cache."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ..config import cache_dir as default_cache_dir
from ..errors import DataError
from .arrays import SegmentationData
from .isic import SPLITS, detect_year, find_pairs, read_pair
from .splits import isic2016_validation_ids


def split_pairs(root: Path, split: str, year: str) -> list[tuple[str, Path, Path]]:
    """The ``(id, image, mask)`` triples of ``split`` (``train``, ``val`` or ``test``).

    ISIC 2017 uses its official splits. ISIC 2016's ``train`` and ``val`` are the fixed
    720/180 split of its training folder (:mod:`skinseg.data.splits`).
    """
    if split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}, got {split!r}")
    if year == "2016" and split in ("train", "val"):
        pairs = find_pairs(root, year, "train")
        val_ids = isic2016_validation_ids([p[0] for p in pairs])
        return [p for p in pairs if (p[0] in val_ids) == (split == "val")]
    return find_pairs(root, year, split)


def _cache_key(pairs, size) -> str:
    h = hashlib.sha256(repr(size).encode())
    for image_id, image, mask in pairs:
        for path in (image, mask):
            st = path.stat()
            h.update(f"{image_id}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def _save_atomic(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_split(root, split: str, size: tuple[int, int] = (192, 256), *, year: str | None = None,
               limit: int | None = None, cache: bool = True, cache_dir: Path | None = None) -> SegmentationData:
    """Decode a split of an ISIC folder into uint8 arrays, resized to ``size = (H, W)``.

    The first call decodes every file and caches the arrays (``cache_dir``, default
    ``$SKINSEG_CACHE`` or ``~/.cache/skinseg``); later calls read the cache, which is keyed
    by the files' paths, sizes and modification times. ``limit`` keeps the first N images
    (sorted by id). The dataset folder itself is only read.
    """
    root = Path(root)
    year = year or detect_year(root)
    pairs = split_pairs(root, split, year)
    if limit is not None:
        pairs = pairs[:limit]
    source = f"ISIC {year} {split}" + (f" (first {len(pairs)})" if limit is not None else "")
    ids = [p[0] for p in pairs]
    cache_file = Path(cache_dir or default_cache_dir()) / f"isic{year}_{split}_{size[0]}x{size[1]}_{_cache_key(pairs, size)}.npz"
    if cache and cache_file.exists():
        with np.load(cache_file) as z:
            if json.loads(str(z["ids"])) == ids:
                return SegmentationData(z["images"], z["masks"], ids, source)
    images = np.empty((len(pairs), *size, 3), np.uint8)
    masks = np.empty((len(pairs), *size), np.uint8)
    for i, (_, image_path, mask_path) in enumerate(pairs):
        images[i], masks[i] = read_pair(image_path, mask_path, size)
    if cache:
        try:
            _save_atomic(cache_file, images=images, masks=masks, ids=np.array(json.dumps(ids)))
        except OSError:
            pass  # a read-only home still works, only without the cache
    return SegmentationData(images, masks, ids, source)


def load_dataset(root, size: tuple[int, int] = (192, 256), *, limits: dict[str, int | None] | None = None,
                 **kwargs) -> dict[str, SegmentationData]:
    """``{"train": ..., "val": ..., "test": ...}`` of an ISIC folder (see :func:`load_split`)."""
    limits = limits or {}
    return {split: load_split(root, split, size, limit=limits.get(split), **kwargs) for split in SPLITS}
