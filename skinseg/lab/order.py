"""The book's experiments and the one order in which GPU slices add their runs.

Each experiment fills ``results/<name>``; :mod:`skinseg.lab.slice` runs the next runs of
:data:`SLICE_ORDER` that fit a slice, and :mod:`skinseg.lab.merge` adds them to the committed
results. Nothing here imports torch, so the command line can list the names at once.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExperimentSpec:
    """One experiment of the book: its results folder ``results/<name>``, data protocol
    (:mod:`skinseg.lab.protocols`), profile (:data:`skinseg.config.PROFILES`) and seeds."""

    name: str
    protocol: str
    profile: str
    seeds: tuple[int, ...]
    label: str


EXPERIMENTS: dict[str, ExperimentSpec] = {spec.name: spec for spec in (
    ExperimentSpec("isic2016_replica", "isic2016-replica", "full", (0, 1, 2),
                   "our recipe on the ISIC 2016 replica"),
    ExperimentSpec("isic2017", "official", "full", (0, 1, 2), "our recipe on ISIC 2017"),
    ExperimentSpec("isic2016_replica_article", "isic2016-replica", "article", (0,),
                   "the article's recipe on the ISIC 2016 replica"),
)}

# The one order in which GPU slices add runs: (experiment, seed), each the U-Net then the
# Attention U-Net. A seed pair on the replica first (about 3x cheaper than on ISIC 2017), then
# one on ISIC 2017, then the article recipe's single runs, then the remaining seeds in turn.
SLICE_ORDER: tuple[tuple[str, int], ...] = (
    ("isic2016_replica", 0), ("isic2017", 0), ("isic2016_replica_article", 0),
    ("isic2016_replica", 1), ("isic2017", 1), ("isic2016_replica", 2), ("isic2017", 2),
)
