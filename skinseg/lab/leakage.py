"""The guard against scoring a model on images it was trained on.

A checkpoint records its training data (:func:`training_record`); before a ``val`` or ``test``
split is scored, :func:`check_held_out` refuses it when some of its images are training images
of the model, when they come from the model's training folder under another split rule (the
ISIC 2016 replica's val and test are ISIC 2017 *training* images), or when the checkpoint does
not record its training data and the split was carved out of an official training folder.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from ..data.arrays import SegmentationData
from ..data.isic import LAYOUTS
from ..errors import LeakageError

HELD_OUT = ("val", "test")
TRAINING_FOLDERS = {splits["train"][0] for splits in LAYOUTS.values()}


def ids_digest(ids) -> str:
    """A short SHA-256 of a set of image ids (order does not matter)."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]


def training_record(train: SegmentationData, *, with_ids: bool = True) -> dict:
    """What a checkpoint stores about its training data: ``{"protocol", "dataset", "split", "folder",
    "source", "n", "ids_sha256"}`` and, with ``with_ids``, the ``ids`` themselves."""
    record = {**train.origin, "source": train.source, "n": len(train), "ids_sha256": ids_digest(train.ids)}
    if with_ids:
        record["ids"] = list(train.ids)
    return record


def check_held_out(trained_on: dict | None, data: SegmentationData, model: str = "the model") -> str:
    """Refuse to score ``model`` on ``data`` if ``data`` is not held out from its training data.

    Args:
        trained_on: the model's :func:`training_record` (from its checkpoint), or ``None``.
        data: the split to be scored; only ``val`` and ``test`` splits (by ``data.origin``) are checked.
        model: how the model is named in the message, e.g. the checkpoint's path.

    Returns: a one-line note saying what the score is (held-out or cross-data-set). Raises
    :class:`LeakageError`.
    """
    where = data.origin
    if where.get("split") not in HELD_OUT:
        return f"scored on {data.source}"
    if trained_on is None:
        if where.get("folder") in TRAINING_FOLDERS:
            raise LeakageError(f"{model} does not record its training data (an older checkpoint), and the "
                               f"{data.source} images come from the training folder {where['folder']}: nothing "
                               "rules out that it was trained on them. Retrain it, or score it on a split "
                               "of its own data set")
        return f"scored on {data.source} (the checkpoint does not record its training data)"
    seen = sorted(set(data.ids) & set(trained_on.get("ids", ())))
    if seen:
        raise LeakageError(f"{len(seen)} of the {len(data)} images of {data.source} (e.g. {seen[0]}) are training "
                           f"images of {model}, trained on {trained_on['source']}: their score would measure "
                           "memory, not generalisation")
    same_folder = trained_on.get("folder") == where.get("folder")
    if same_folder and trained_on.get("protocol") != where.get("protocol"):
        raise LeakageError(f"{model} was trained on {trained_on['source']}, and the {data.source} images come "
                           f"from the same folder {where['folder']} under another split rule, so it may have "
                           f"been trained on them. Score it on a held-out split of {trained_on['protocol']!r} "
                           "data, or train it on this protocol")
    if trained_on["dataset"] != where["dataset"]:
        return f"cross-data-set score: trained on {trained_on['source']}, scored on {data.source}"
    return f"held-out score: trained on {trained_on['source']}, scored on {data.source}"


def check_checkpoint(path: Path | str, data: SegmentationData) -> str:
    """:func:`check_held_out` for the model in the checkpoint at ``path`` (the note, or a :class:`LeakageError`)."""
    from ..checkpoint import load_checkpoint

    return check_held_out(load_checkpoint(path).get("trained_on"), data, model=f"checkpoint {path}")
