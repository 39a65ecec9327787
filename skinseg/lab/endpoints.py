"""The evaluation protocol: how the two models are compared on the test set, and the scoring of
a run at both endpoints."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from torch import nn

from ..config import Profile
from ..data.arrays import SegmentationData
from ..errors import ConfigError
from ..evaluate import TTA, binarize, predict_variants, score_masks

# Fixed before any test image is read: the primary endpoint (threshold 0.5, no TTA, no
# post-processing) decides the verdict; the secondary is reported beside it.
ENDPOINTS = {"raw": "raw prediction at the validation-chosen epoch",
             "chosen": "test-time augmentation and post-processing chosen per run on validation"}
PRIMARY_ENDPOINT = "raw"

# The per-image scores also kept for the raw prediction, as "<column>_raw".
RAW_COLUMNS = ("iou", "dice", "hd95", "boundary_f")


def evaluation_protocol(profile: Profile) -> dict:
    """How a run is scored: the primary endpoint and the candidates of the secondary, per-run choice."""
    return {"primary_endpoint": PRIMARY_ENDPOINT, "threshold": 0.5, "tta": list(profile.tta),
            "postprocess": profile.postprocess}


@dataclass(frozen=True)
class EvalSetting:
    """How probabilities become a mask: a test-time augmentation (a :data:`skinseg.evaluate.TTA` name) and, with
    ``postprocess``, the largest region with its holes filled. Result files name it by its
    :attr:`label`, such as ``"none"`` or ``"d4+post"``; :meth:`parse` reads a label back."""

    tta: str = "none"
    postprocess: bool = False

    def __post_init__(self) -> None:
        if self.tta not in TTA:
            raise ConfigError(f"tta must be one of {sorted(TTA)}, got {self.tta!r}")

    @property
    def label(self) -> str:
        return self.tta + ("+post" if self.postprocess else "")

    @classmethod
    def parse(cls, label: str) -> "EvalSetting":
        tta, plus, post = label.partition("+")
        if plus and post != "post":
            raise ConfigError(f"an evaluation setting is a TTA name, optionally with '+post', got {label!r}")
        return cls(tta, bool(plus))


def evaluate_endpoints(model: nn.Module, data: SegmentationData, chosen: EvalSetting, *, batch_size: int = 32,
                       device=None) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    """``(table, raw, masks, raw_masks)``: ``table``, the :func:`score_masks` table at ``chosen`` (a run's
    validation choice) plus ``iou_raw``, ``dice_raw``, ``hd95_raw`` and ``boundary_f_raw`` of the raw
    prediction (the columns of an experiment's ``per_image/<run>.csv``); ``raw``, the table of the raw
    prediction; and the ``(N, H, W)`` uint8 masks in {0, 1} scored at ``chosen`` (the secondary
    endpoint) and raw (the primary endpoint). Both share their views (:func:`predict_variants`)."""
    probs = predict_variants(model, data.images, ("none", chosen.tta), batch_size=batch_size, device=device)
    raw_masks = binarize(probs["none"])
    raw = score_masks(raw_masks, data)
    masks = binarize(probs[chosen.tta], chosen.postprocess)
    table = score_masks(masks, data)
    for column in RAW_COLUMNS:
        table[f"{column}_raw"] = raw[column]
    return table, raw, masks, raw_masks
