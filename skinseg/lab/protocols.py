"""Named data protocols: which images of a folder form the train, val and test splits.

``official``: the folder's own splits (:func:`skinseg.data.loading.split_pairs`).

``isic2016-replica``: the source article's ISIC 2016 protocol (900 training images split 4:1,
379 test images) rebuilt from the ISIC 2016 ids an ISIC 2017 *training* folder holds (the
official id lists ship as ``isic2016_ids.csv``: ``isic_id``, ``isic2016_split``). The training
ids present are split by the fixed 4:1 rule of :mod:`skinseg.data.splits`; chapter 01 shows
how the replica differs from the original.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
from pathlib import Path

from ..checks import check_size
from ..data import loading
from ..data.arrays import SegmentationData
from ..data.folders import FOLDERS, detect_layout
from ..data.isic import LAYOUTS, SPLITS, find_pairs
from ..data.loading import OFFICIAL
from ..data.splits import isic2016_validation_ids
from ..errors import DataError

REPLICA = "isic2016-replica"
PROTOCOLS = (OFFICIAL, REPLICA)
REPLICA_DATASET = "ISIC 2016 replica"
ID_LIST = Path(__file__).with_name("isic2016_ids.csv")

Pair = tuple[str, Path, Path]


def check_protocol(protocol: str) -> str:
    """``protocol`` if it is one of :data:`PROTOCOLS`, else a :class:`DataError` that lists them."""
    if protocol not in PROTOCOLS:
        raise DataError(f"protocol must be one of {list(PROTOCOLS)}, got {protocol!r}")
    return protocol


@functools.cache
def isic2016_ids() -> dict[str, tuple[str, ...]]:
    """The official ISIC 2016 task-1 id lists: ``{"train": 900 ids, "test": 379 ids}``, sorted."""
    with ID_LIST.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return {split: tuple(sorted(r["isic_id"] for r in rows if r["isic2016_split"] == split))
            for split in ("train", "test")}


def replica_present(root: Path, year: str = "2017") -> dict[str, list[Pair]]:
    """The ISIC 2017 training pairs whose ids are on the ISIC 2016 ``train`` and ``test`` lists."""
    if year != "2017":
        raise DataError(f"the {REPLICA} protocol reads an ISIC 2017 folder, but {root} holds ISIC {year} "
                        f"(for ISIC 2016's own splits use --protocol {OFFICIAL})")
    pairs = find_pairs(root, "2017", "train")
    wanted = {split: set(ids) for split, ids in isic2016_ids().items()}
    return {split: [p for p in pairs if p[0] in ids] for split, ids in wanted.items()}


def replica_pairs(root: Path, split: str, year: str = "2017") -> list[Pair]:
    """The ``(id, image, mask)`` triples of the replica's ``split``."""
    if split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}, got {split!r}")
    present = replica_present(root, year)
    key = "test" if split == "test" else "train"
    if not present[key]:
        raise DataError(f"{Path(root) / LAYOUTS['2017']['train'][0]} holds none of the {len(isic2016_ids()[key])} "
                        f"ISIC 2016 {key} ids, so the {REPLICA} protocol has no {split} split there")
    if split == "test":
        return present["test"]
    val_ids = isic2016_validation_ids([p[0] for p in present["train"]])
    return [p for p in present["train"] if (p[0] in val_ids) == (split == "val")]


def protocol_pairs(root: Path, split: str, year: str, protocol: str = OFFICIAL) -> list[Pair]:
    """The ``(id, image, mask)`` triples of ``split`` of the folder ``root`` under ``protocol``."""
    if check_protocol(protocol) == OFFICIAL:
        return loading.split_pairs(root, split, year)
    if year == FOLDERS:
        raise DataError(f"the {protocol} protocol reads an ISIC 2017 folder, not the generic folder {root}")
    return replica_pairs(root, split, year)


def replica_counts(root: Path) -> dict[str, int]:
    """How much of ISIC 2016 the replica rebuilds from ``root``: ids present of the official lists,
    and the sizes of its three splits (``train``, ``val``, ``test``)."""
    present = replica_present(root)
    official = isic2016_ids()
    n_val = len(isic2016_validation_ids([p[0] for p in present["train"]]))
    return {"train_present": len(present["train"]), "train_official": len(official["train"]),
            "test_present": len(present["test"]), "test_official": len(official["test"]),
            "train": len(present["train"]) - n_val, "val": n_val, "test": len(present["test"])}


def dataset_label(root: Path, year: str, protocol: str = OFFICIAL, size: tuple[int, int] = (192, 256)) -> str:
    """What a protocol's data is called in every output: ``"ISIC 2017"``, or for the replica, for
    example, ``"ISIC 2016 replica (746/900 train, 305/379 test, ISIC 2017 masks at 256x192)"``,
    with the counts found in ``root`` and the ``size = (H, W)`` the masks are used at."""
    if check_protocol(protocol) == OFFICIAL:
        return f"ISIC {year}"
    c = replica_counts(root)
    return (f"{REPLICA_DATASET} ({c['train_present']}/{c['train_official']} train, "
            f"{c['test_present']}/{c['test_official']} test, ISIC 2017 masks at {size[1]}x{size[0]})")


def origin(root: Path, year: str, split: str, protocol: str = OFFICIAL) -> dict[str, str]:
    """Where a split's images come from: :func:`skinseg.data.loading.origin` for the official
    splits, ``dataset`` ``"ISIC 2016 replica"`` and ``folder`` ISIC 2017's training folder for the replica."""
    if check_protocol(protocol) == OFFICIAL:
        return loading.origin(root, year, split)
    return {"protocol": protocol, "dataset": REPLICA_DATASET, "split": split, "folder": LAYOUTS["2017"]["train"][0]}


def load_protocol_split(root, split: str, size: tuple[int, int] = (192, 256), *, protocol: str = OFFICIAL,
                        year: str | None = None, limit: int | None = None, **kwargs) -> SegmentationData:
    """:func:`skinseg.data.load_split` of ``split`` under ``protocol``; the replica's split is
    read from ISIC 2017's training folder and its ``source`` (``"ISIC 2016 replica (...) test"``)
    and ``origin`` name the replica."""
    if check_protocol(protocol) == OFFICIAL:
        return loading.load_split(root, split, size, year=year, limit=limit, **kwargs)
    ids = [p[0] for p in protocol_pairs(Path(root), split, year or detect_layout(root), protocol)]
    data = loading.load_split(root, "train", size, year="2017", ids=ids, limit=limit, **kwargs)
    source = f"{dataset_label(root, '2017', protocol, check_size(size))} {split}"
    return dataclasses.replace(data, source=source + (f" (first {len(data)})" if limit is not None else ""),
                               origin=origin(root, "2017", split, protocol))


def load_protocol_dataset(root, size: tuple[int, int] = (192, 256), *, limits: dict[str, int | None] | None = None,
                          **kwargs) -> dict[str, SegmentationData]:
    """``{"train": ..., "val": ..., "test": ...}``: :func:`load_protocol_split` of each split."""
    limits = limits or {}
    return {split: load_protocol_split(root, split, size, limit=limits.get(split), **kwargs) for split in SPLITS}
