"""Byte-identical images within and across the splits of a dataset folder.

A test image that is a copy of a training image measures memory, not segmentation. Archives
assembled from several collections contain such copies; :func:`identical_groups` finds them
by the SHA-256 of the image files (a copy re-encoded or resized is not found), and
:func:`identical_images` tabulates them.
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

import pandas as pd

from ..data.folders import FOLDERS, detect_layout, split_folders
from ..data.isic import SPLITS
from ..data.loading import split_pairs


def identical_groups(root) -> list[list[tuple[str, str]]]:
    """Every group of byte-identical image files among the splits of ``root``: an ISIC layout's
    ``train``, ``val`` and ``test``, or the splits a generic layout has.

    Returns the groups (two or more ``(split, id)`` pairs each, sorted), sorted; empty when
    there are none. A split that cannot be paired (an image without a mask, ...) raises its
    :class:`~skinseg.errors.DataError`.
    """
    root = Path(root)
    layout = detect_layout(root)
    splits = [s for s in SPLITS if s in split_folders(root)] if layout == FOLDERS else SPLITS
    by_hash: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for split in splits:
        for image_id, image, _ in split_pairs(root, split, layout):
            by_hash[hashlib.sha256(image.read_bytes()).hexdigest()].append((split, image_id))
    return sorted(sorted(members) for members in by_hash.values() if len(members) > 1)


def identical_images(root) -> pd.DataFrame:
    """:func:`identical_groups` of ``root`` as a table, one row per group: ``ids`` (``"split/id"``
    joined by ``" = "``), ``splits`` (sorted) and ``across`` (True when they are not all one
    split), sorted by ``across`` then ``ids``; empty (with these columns) when there are none."""
    rows = [{"ids": " = ".join(f"{s}/{i}" for s, i in members), "splits": ", ".join(sorted({s for s, _ in members})),
             "across": len({s for s, _ in members}) > 1} for members in identical_groups(root)]
    table = pd.DataFrame(rows, columns=["ids", "splits", "across"])
    return table.sort_values(["across", "ids"], ascending=[False, True], ignore_index=True)
