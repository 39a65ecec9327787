"""Overlap metrics of binary masks.

Conventions (the article's): a prediction is the logit thresholded at 0 (probability 0.5);
an image whose prediction and ground truth are both empty scores IoU = Dice = 1.
"Mean IoU" is the mean over images of the per-image IoU; the *pooled* variants add up
the pixels of all images first; the *thresholded Jaccard* (ISIC 2018) counts a per-image
IoU below 0.65 as 0.

Boundary metrics (:func:`boundary_scores`) judge the outline rather than the area: the
95th-percentile Hausdorff distance (pixels, lower is better) and the boundary F-score at a
tolerance of :data:`BOUNDARY_TOLERANCE` pixels; their empty-mask conventions are given there.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

JACCARD_THRESHOLD = 0.65


def confusion_counts(pred, target) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-image true-positive, false-positive and false-negative pixel counts, three ``(N,)`` int64
    arrays, of boolean or {0, 1} masks ``(N, H, W)`` or ``(N, 1, H, W)`` (numpy arrays or tensors)."""
    return tuple(device_counts(pred, target).cpu().numpy())


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
    """The article's and ISIC's summary scores from per-image counts: ``mean_iou``, ``mean_dice``
    (means over images), ``thresholded_jaccard``, ``pooled_iou``, ``pooled_dice`` and ``n``."""
    iou = iou_from_counts(tp, fp, fn)
    return {
        "mean_iou": float(iou.mean()),
        "mean_dice": float(dice_from_counts(tp, fp, fn).mean()),
        "thresholded_jaccard": thresholded_jaccard(iou),
        "pooled_iou": pooled_iou(tp, fp, fn),
        "pooled_dice": pooled_dice(tp, fp, fn),
        "n": int(len(iou)),
    }


# ----------------------------------------------------------------------------- boundaries

BOUNDARY_TOLERANCE = 2.0  # pixels: the tolerance of the boundary F-score
HD_PERCENTILE = 95.0
_CROSS = ndimage.generate_binary_structure(2, 1)


def boundary_pixels(mask) -> np.ndarray:
    """The boundary of a binary ``(H, W)`` mask: its pixels with a 4-neighbour outside the
    mask (the image's edge counts as outside), as ``(H, W)`` bool. The convention of MONAI's
    ``get_mask_edges``: ``mask XOR binary_erosion(mask)``."""
    m = np.asarray(mask, dtype=bool)
    return m & ~ndimage.binary_erosion(m, structure=_CROSS, border_value=0)


def _boundary_distances(p: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances (pixels) from each boundary pixel of ``p`` to the nearest one of ``t``, and back."""
    rows, cols = np.flatnonzero((p | t).any(1)), np.flatnonzero((p | t).any(0))
    box = np.s_[max(rows[0] - 1, 0):rows[-1] + 2, max(cols[0] - 1, 0):cols[-1] + 2]  # both boundaries lie inside
    bp, bt = boundary_pixels(p)[box], boundary_pixels(t)[box]
    return ndimage.distance_transform_edt(~bt)[bp], ndimage.distance_transform_edt(~bp)[bt]


def boundary_scores(pred, target, *, tolerance: float = BOUNDARY_TOLERANCE,
                    percentile: float = HD_PERCENTILE) -> tuple[np.ndarray, np.ndarray]:
    """Per-image boundary agreement of boolean or {0, 1} masks ``(N, H, W)`` or ``(N, 1, H, W)``:
    ``(hd95, boundary_f)``, two ``(N,)`` float64 (the book's section 4.8 explains both).

    * ``hd95``: the larger of the two directed ``percentile``-th percentiles (:func:`numpy.percentile`)
      of the Euclidean distances, in pixels, from each boundary pixel (:func:`boundary_pixels`) of
      one mask to the nearest of the other; in ``[0, sqrt((H-1)^2 + (W-1)^2)]``, lower is better.
      MONAI's ``compute_hausdorff_distance(percentile=95)`` on non-empty masks.
    * ``boundary_f``: the harmonic mean of the fractions of predicted and of true boundary pixels
      within ``tolerance`` pixels of the other boundary (0 when both are 0); in [0, 1].

    Both masks empty scores ``hd95 = 0``, ``boundary_f = 1``; exactly one empty the worst,
    ``hd95`` = the image's diagonal and ``boundary_f = 0``, so that means stay finite (MONAI
    returns NaN or inf). Raises ``ValueError`` for masks of different or other shapes.
    """
    p = torch.as_tensor(pred).bool().cpu().numpy()
    t = torch.as_tensor(target).bool().cpu().numpy()
    p, t = (a[:, 0] if a.ndim == 4 else a for a in (p, t))
    if p.shape != t.shape or p.ndim != 3:
        raise ValueError(f"pred {p.shape} and target {t.shape} must both be (N, H, W) or (N, 1, H, W) masks")
    n, h, w = p.shape
    hd, bf = np.empty(n), np.empty(n)
    worst = float(np.hypot(h - 1, w - 1))
    for i in range(n):
        p_empty, t_empty = not p[i].any(), not t[i].any()
        if p_empty or t_empty:
            hd[i], bf[i] = (0.0, 1.0) if p_empty and t_empty else (worst, 0.0)
            continue
        to_t, to_p = _boundary_distances(p[i], t[i])
        hd[i] = max(np.percentile(to_t, percentile), np.percentile(to_p, percentile))
        precision, recall = np.mean(to_t <= tolerance), np.mean(to_p <= tolerance)
        bf[i] = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return hd, bf


def hd95_per_image(pred, target) -> np.ndarray:
    """``(N,)`` symmetric 95th-percentile Hausdorff distance in pixels (:func:`boundary_scores`)."""
    return boundary_scores(pred, target)[0]
