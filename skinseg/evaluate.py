"""Evaluation: predictions with optional test-time augmentation, post-processing and
per-image metrics."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from torch import nn

from .data.arrays import SegmentationData
from .data.tensors import model_input
from .checks import check_images, check_model, check_positive_int
from .device import autocast, autocast_dtype, resolve_device
from .errors import ConfigError
from .metrics import BOUNDARY_TOLERANCE, boundary_scores, confusion_counts, dice_from_counts, iou_from_counts, summarize_counts

# Each TTA variant lists (k quarter-turns, flip left-right) pairs of the dihedral group, for a
# square image. On a non-square image "d4" keeps the views that fit its frame (tta_views).
TTA = {
    "none": [(0, False)],
    "flip": [(0, False), (0, True)],
    "d4": [(k, f) for k in range(4) for f in (False, True)],
}


def tta_views(tta: str, height: int, width: int) -> list[tuple[int, bool]]:
    """The ``(k quarter turns, flip left-right)`` views of the variant ``tta`` for an image of
    ``height x width`` pixels: :data:`TTA`, except that a non-square image keeps only the turns by
    0° and 180° that training draws there, so ``"d4"`` is then the 4 symmetries of a rectangle."""
    if tta not in TTA:
        raise ConfigError(f"tta must be one of {sorted(TTA)}, got {tta!r}")
    return [(k, f) for k, f in TTA[tta] if height == width or k % 2 == 0]


def _apply(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    x = torch.flip(x, (-1,)) if flip else x
    return torch.rot90(x, k, (-2, -1))


def _undo(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    x = torch.rot90(x, -k, (-2, -1))
    return torch.flip(x, (-1,)) if flip else x


def predict_probabilities(model: nn.Module, images: np.ndarray, *, tta: str = "none", batch_size: int = 32,
                          device=None) -> np.ndarray:
    """Lesion probabilities of ``images``.

    Args:
        model: a trained model (put in eval mode here).
        images: ``(N, H, W, 3)`` uint8, values 0..255 (float images are refused, :func:`skinseg.checks.check_images`).
        tta: ``"none"``, ``"flip"`` (left-right) or ``"d4"`` (the flips and turns training sees,
            :func:`tta_views`); the probabilities of the views are averaged.

    Returns: ``(N, H, W)`` float32 in [0, 1].
    """
    return predict_variants(model, images, (tta,), batch_size=batch_size, device=device)[tta]


@torch.no_grad()
def predict_variants(model: nn.Module, images: np.ndarray, ttas, *, batch_size: int = 32,
                     device=None) -> dict[str, np.ndarray]:
    """:func:`predict_probabilities` for several ``ttas`` at once, each flip or quarter turn of an
    image passed through the model once however many variants use it (``none``, ``flip`` and
    ``d4`` together cost 8 passes on a square image, not 11; 4 on a non-square one). Returns
    ``{tta: (N, H, W) float32 in [0, 1]}``, the same numbers as one call per variant."""
    check_model(model)
    check_images(images)
    check_positive_int(batch_size, "batch_size")
    ttas = list(dict.fromkeys([ttas] if isinstance(ttas, str) else ttas))
    views_of = {t: tta_views(t, *images.shape[1:3]) for t in ttas}  # raises for an unknown name
    device = resolve_device(device)
    model.eval().to(device)
    dtype = autocast_dtype(device)
    views = list(dict.fromkeys(v for t in ttas for v in views_of[t]))
    out = {t: np.empty(images.shape[:3], np.float32) for t in ttas}
    for i in range(0, len(images), batch_size):
        x = model_input(images[i:i + batch_size], device)
        probs = {}
        for k, flip in views:
            with autocast(device, dtype):
                logits = model(_apply(x, k, flip).contiguous())
            probs[k, flip] = _undo(torch.sigmoid(logits.float()), k, flip)
        for t in ttas:
            prob = sum(probs[view] for view in views_of[t])  # in the variant's own order, as one call per variant
            out[t][i:i + batch_size] = (prob / len(views_of[t]))[:, 0].cpu().numpy()
    return out


def largest_component_filled(mask: np.ndarray) -> np.ndarray:
    """Keep the largest 8-connected region of a binary ``(H, W)`` mask and fill its holes, as every
    ISIC ground-truth mask is one region without holes; uint8 in {0, 1}. An empty mask stays empty."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    if n == 0:
        return np.zeros_like(mask, dtype=np.uint8)
    sizes = np.bincount(labels.ravel())[1:]
    return ndimage.binary_fill_holes(labels == 1 + int(sizes.argmax())).astype(np.uint8)


def binarize(probabilities: np.ndarray, postprocess: bool = False) -> np.ndarray:
    """``(N, H, W)`` probabilities -> uint8 masks (threshold 0.5), optionally post-processed."""
    masks = (probabilities > 0.5).astype(np.uint8)
    if postprocess:
        masks = np.stack([largest_component_filled(m) for m in masks])
    return masks


def score_masks(pred: np.ndarray, data: SegmentationData, *, boundary: bool = True) -> pd.DataFrame:
    """Per-image scores of predicted masks against ``data``'s ground truth.

    Returns a DataFrame indexed by image ``id`` with columns ``iou``, ``dice``, ``tp``,
    ``fp``, ``fn``, ``lesion_fraction`` (of the ground truth), ``predicted_fraction``, and the
    boundary scores of :func:`skinseg.metrics.boundary_scores`: ``hd95`` (pixels, lower is
    better) and ``boundary_f`` (at :data:`~skinseg.metrics.BOUNDARY_TOLERANCE` = 2 pixels), left
    out with ``boundary=False`` (3 to 6 ms per image saved where only :func:`summarize` is needed).
    """
    tp, fp, fn = confusion_counts(pred, data.masks)
    table = pd.DataFrame({"id": data.ids, "iou": iou_from_counts(tp, fp, fn), "dice": dice_from_counts(tp, fp, fn),
                          "tp": tp, "fp": fp, "fn": fn, "lesion_fraction": data.lesion_fraction,
                          "predicted_fraction": pred.reshape(len(pred), -1).mean(1)}).set_index("id")
    if boundary:
        table["hd95"], table["boundary_f"] = boundary_scores(pred, data.masks, tolerance=BOUNDARY_TOLERANCE)
    return table


def evaluate_model(model: nn.Module, data: SegmentationData, *, tta: str = "none", postprocess: bool = False,
                   batch_size: int = 32, device=None) -> pd.DataFrame:
    """Per-image metrics of ``model`` on ``data`` (see :func:`score_masks`)."""
    prob = predict_probabilities(model, data.images, tta=tta, batch_size=batch_size, device=device)
    return score_masks(binarize(prob, postprocess), data)


def summarize(per_image: pd.DataFrame) -> dict[str, float]:
    """Mean IoU and Dice over images, thresholded Jaccard and pooled scores of a per-image table."""
    return summarize_counts(per_image["tp"], per_image["fp"], per_image["fn"])
