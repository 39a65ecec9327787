"""Segmentation losses on logits.

All take ``logits`` of shape ``(B, 1, H, W)`` (any real values) and ``target`` of the same
shape with values in {0, 1}, and return a scalar tensor.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    r"""``1 - mean_b (2 \sum p t + s) / (\sum p + \sum t + s)`` with ``p = sigmoid(logits)``.

    The sums run over each image's pixels and the result is averaged over the batch, so
    every image weighs the same, like the per-image metrics. ``smooth`` = 1 as in the
    article; it keeps the loss defined (and 0) for an empty mask predicted empty. Value
    in [0, 1).
    """
    p = torch.sigmoid(logits.float()).flatten(1)
    t = target.float().flatten(1)
    dice = (2 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)
    return 1 - dice.mean()


def pooled_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    r"""The article's Dice loss: ``1 - (2 \sum p t + s) / (\sum p + \sum t + s)`` with
    ``p = sigmoid(logits)`` and the sums over every pixel of the whole batch, ``smooth`` = 1.

    Pooled over the batch, large lesions weigh more than small ones (unlike
    :func:`soft_dice_loss`, where every image weighs the same). Value in [0, 1).
    """
    p = torch.sigmoid(logits.float())
    t = target.float()
    return 1 - (2 * (p * t).sum() + smooth) / (p.sum() + t.sum() + smooth)


def bce_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Binary cross-entropy (mean over pixels) plus :func:`soft_dice_loss`. Value >= 0."""
    bce = F.binary_cross_entropy_with_logits(logits.float(), target.float())
    return bce + soft_dice_loss(logits, target, smooth)


class DiceLoss(nn.Module):
    """Module form of :func:`soft_dice_loss`."""

    def __init__(self, smooth: float = 1.0) -> None:
        super().__init__()
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return soft_dice_loss(logits, target, self.smooth)


class PooledDiceLoss(DiceLoss):
    """Module form of :func:`pooled_dice_loss`."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return pooled_dice_loss(logits, target, self.smooth)


class BCEDiceLoss(DiceLoss):
    """Module form of :func:`bce_dice_loss`."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return bce_dice_loss(logits, target, self.smooth)


LOSSES = {"dice": DiceLoss, "dice_pooled": PooledDiceLoss, "bce_dice": BCEDiceLoss}


def build_loss(name: str) -> nn.Module:
    """A loss module by name: ``"dice"`` (per image), ``"dice_pooled"`` (the article's) or ``"bce_dice"``."""
    if name not in LOSSES:
        raise ConfigError(f"loss must be one of {sorted(LOSSES)}, got {name!r}")
    return LOSSES[name]()
