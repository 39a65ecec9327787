"""Byte-identical images within and across the splits of a dataset folder.

A test image that is a copy of a training image measures memory, not segmentation. Archives
assembled from several collections contain such copies; :func:`identical_images` finds them
by the SHA-256 of the image files (a copy re-encoded or resized is not found).
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

import pandas as pd

from ..errors import DataError
from .folders import detect_layout
from .isic import SPLITS
from .loading import split_pairs


def identical_images(root) -> pd.DataFrame:
    """Every group of byte-identical image files among the ``train``, ``val`` and ``test`` splits
    of ``root`` (an ISIC or generic layout; splits it lacks are skipped).

    Returns one row per group with ``ids`` (``"split/id"`` joined by ``" = "``), ``splits``
    (the splits involved, sorted) and ``across`` (True when they are not all one split),
    sorted by ``across`` then ``ids``; empty (with these columns) when there are none.
    """
    root = Path(root)
    layout = detect_layout(root)
    groups: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for split in SPLITS:
        try:
            pairs = split_pairs(root, split, layout)
        except DataError:  # a split this folder does not have
            continue
        for image_id, image, _ in pairs:
            groups[hashlib.sha256(image.read_bytes()).hexdigest()].append((split, image_id))
    rows = [{"ids": " = ".join(f"{s}/{i}" for s, i in members), "splits": ", ".join(sorted({s for s, _ in members})),
             "across": len({s for s, _ in members}) > 1} for members in groups.values() if len(members) > 1]
    table = pd.DataFrame(rows, columns=["ids", "splits", "across"])
    return table.sort_values(["across", "ids"], ascending=[False, True], ignore_index=True)


__all__ = ["identical_images"]
