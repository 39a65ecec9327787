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
from .isic import SPLITS, read_pair
from .protocols import OFFICIAL, check_protocol, dataset_label, origin, protocol_pairs


def split_pairs(root: Path, split: str, year: str, protocol: str = OFFICIAL) -> list[tuple[str, Path, Path]]:
    """The ``(id, image, mask)`` triples of ``split`` (``train``, ``val`` or ``test``) under ``protocol``.

    ``"official"``: ISIC 2017 uses its official splits, and ISIC 2016's ``train`` and ``val``
    are the fixed 720/180 split of its training folder (:mod:`skinseg.data.splits`).
    ``"isic2016-replica"``: ISIC 2016's splits rebuilt from an ISIC 2017 folder
    (:mod:`skinseg.data.protocols`). A generic folder (``year`` ``"folders"``) has its own splits.
    """
    if year == FOLDERS:
        if check_protocol(protocol) != OFFICIAL:
            raise DataError(f"the {protocol} protocol reads an ISIC 2017 folder, not the generic folder {root}")
        return find_folder_pairs(root, split)
    return protocol_pairs(root, split, year, protocol)


def _cache_key(pairs, size) -> str:
    h = hashlib.sha256(repr(size).encode())
    for image_id, image, mask in pairs:
        for path in (image, mask):
            st = path.stat()
            h.update(f"{image_id}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def load_split(root, split: str, size: tuple[int, int] = (192, 256), *, year: str | None = None,
               protocol: str = OFFICIAL, limit: int | None = None, cache: bool = True,
               cache_dir: Path | None = None) -> SegmentationData:
    """Decode a split of an ISIC (or generic, :mod:`skinseg.data.folders`) folder into uint8 arrays, resized to ``size = (H, W)``.

    The first call decodes every file and caches the arrays (``cache_dir``, default
    ``$SKINSEG_CACHE`` or ``~/.cache/skinseg``); later calls read the cache, which is keyed
    by the files' paths, sizes and modification times. ``limit`` keeps the first N images
    (sorted by id). ``protocol`` names the split rule (:func:`split_pairs`); the result's
    ``source`` names it too (``"ISIC 2017 test"``, ``"ISIC 2016 replica (...) test"``) and its
    ``origin`` says where the images come from. The dataset folder itself is only read.
    """
    root = Path(root)
    size, limit = check_size(size), check_limit(limit)
    year = year or detect_layout(root)
    pairs = split_pairs(root, split, year, protocol)
    if limit is not None:
        pairs = pairs[:limit]
    name = f"folder {root.name} {split}" if year == FOLDERS else f"{dataset_label(root, year, protocol, size)} {split}"
    source = name + (f" (first {len(pairs)})" if limit is not None else "")
    where = origin(root, year, split, protocol)
    ids = [p[0] for p in pairs]
    cache_file = Path(cache_dir or default_cache_dir()) / f"{'' if year == FOLDERS else 'isic'}{year}_{split}_{size[0]}x{size[1]}_{_cache_key(pairs, size)}.npz"
    if cache and cache_file.exists():
        try:
            with np.load(cache_file) as z:
                if json.loads(str(z["ids"])) == ids:
                    return SegmentationData(z["images"], z["masks"], ids, source, where)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # a truncated or damaged cache file (a killed write, a full disk) is built again below
    images = np.empty((len(pairs), *size, 3), np.uint8)
    masks = np.empty((len(pairs), *size), np.uint8)
    for i, (_, image_path, mask_path) in enumerate(pairs):
        images[i], masks[i] = read_pair(image_path, mask_path, size)
    if cache:
        try:
            write_npz_atomic(cache_file, False, images=images, masks=masks, ids=np.array(json.dumps(ids)))
        except OSError:
            pass  # a read-only home still works, only without the cache
    return SegmentationData(images, masks, ids, source, where)


def load_dataset(root, size: tuple[int, int] = (192, 256), *, limits: dict[str, int | None] | None = None,
                 **kwargs) -> dict[str, SegmentationData]:
    """``{"train": ..., "val": ..., "test": ...}`` of an ISIC folder (see :func:`load_split`; pass
    ``protocol="isic2016-replica"`` for the article's protocol rebuilt from ISIC 2017)."""
    limits = limits or {}
    return {split: load_split(root, split, size, limit=limits.get(split), **kwargs) for split in SPLITS}
