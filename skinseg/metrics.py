"""Overlap metrics of binary masks.

Conventions (the article's): a prediction is the logit thresholded at 0 (probability 0.5);
an image whose prediction and ground truth are both empty scores IoU = Dice = 1.
"Mean IoU" is the mean over images of the per-image IoU; the *pooled* variants add up
the pixels of all images first; the *thresholded Jaccard* (ISIC 2018) counts a per-image
IoU below 0.65 as 0.
"""
from __future__ import annotations

import numpy as np
import torch

JACCARD_THRESHOLD = 0.65


def confusion_counts(pred, target) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-image true-positive, false-positive and false-negative pixel counts.

    Args:
        pred, target: boolean or {0, 1} masks of shape ``(N, H, W)`` or ``(N, 1, H, W)``
            (numpy arrays or tensors).

    Returns: three int64 arrays of shape ``(N,)``.
    """
    tp, fp, fn = device_counts(pred, target).cpu().numpy()
    return tp, fp, fn


def device_counts(pred, target) -> torch.Tensor:
    """:func:`confusion_counts` as one ``(3, N)`` int64 tensor left where ``pred`` is (no copy to the CPU)."""
    p = torch.as_tensor(pred).bool().flatten(1)
    t = torch.as_tensor(target).bool().flatten(1)
    if p.shape != t.shape:
        raise ValueError(f"pred {tuple(p.shape)} and target {tuple(t.shape)} must have the same shape")
    return torch.stack([(p & t).sum(1), (p & ~t).sum(1), (~p & t).sum(1)])


def iou_from_counts(tp, fp, fn) -> np.ndarray:
    """IoU = tp / (tp + fp + fn) element-wise, 1.0 where the denominator is 0. Values in [0, 1]."""
    tp, fp, fn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn))
    union = tp + fp + fn
    return np.where(union > 0, tp / np.maximum(union, 1), 1.0)


def dice_from_counts(tp, fp, fn) -> np.ndarray:
    """Dice = 2 tp / (2 tp + fp + fn) element-wise, 1.0 where the denominator is 0. Values in [0, 1]."""
    tp, fp, fn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn))
    denominator = 2 * tp + fp + fn
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 1.0)


def iou_per_image(pred, target) -> np.ndarray:
    """``(N,)`` per-image IoU (Jaccard index) of binary masks, in [0, 1]."""
    return iou_from_counts(*confusion_counts(pred, target))


def dice_per_image(pred, target) -> np.ndarray:
    """``(N,)`` per-image Dice (F1) of binary masks, in [0, 1]."""
    return dice_from_counts(*confusion_counts(pred, target))


def dice_from_iou(iou):
    """Dice = 2J / (1 + J): exact for a single image, not for means over images."""
    iou = np.asarray(iou, dtype=np.float64)
    return 2 * iou / (1 + iou)


def thresholded_jaccard(iou, threshold: float = JACCARD_THRESHOLD) -> float:
    """Mean of the per-image IoU with values below ``threshold`` set to 0 (ISIC 2018's score)."""
    iou = np.asarray(iou, dtype=np.float64)
    return float(np.where(iou >= threshold, iou, 0.0).mean())


def pooled_iou(tp, fp, fn) -> float:
    """IoU of all images' pixels added together (large lesions weigh more)."""
    return float(iou_from_counts(np.sum(tp), np.sum(fp), np.sum(fn)))


def pooled_dice(tp, fp, fn) -> float:
    """Dice of all images' pixels added together."""
    return float(dice_from_counts(np.sum(tp), np.sum(fp), np.sum(fn)))


def summarize_counts(tp, fp, fn) -> dict[str, float]:
    """The article's and ISIC's summary scores from per-image counts.

    Returns ``mean_iou``, ``mean_dice`` (means over images), ``thresholded_jaccard``,
    ``pooled_iou``, ``pooled_dice`` and ``n``.
    """
    iou = iou_from_counts(tp, fp, fn)
    return {
        "mean_iou": float(iou.mean()),
        "mean_dice": float(dice_from_counts(tp, fp, fn).mean()),
        "thresholded_jaccard": thresholded_jaccard(iou),
        "pooled_iou": pooled_iou(tp, fp, fn),
        "pooled_dice": pooled_dice(tp, fp, fn),
        "n": int(len(iou)),
    }
