"""The in-memory form of a segmentation split."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SegmentationData:
    """A split held as uint8 arrays.

    Attributes:
        images: ``(N, H, W, 3)`` uint8 RGB, values 0..255.
        masks: ``(N, H, W)`` uint8, values in {0, 1} (1 = lesion).
        ids: ``N`` image ids (file stems such as ``ISIC_0000000`` or ``test_0001``).
        source: a human-readable description of where the data came from, for instance
            ``"ISIC 2017 test"`` or ``"SYNTHETIC lesions (seed 0)"``; plots and tables print it.
        origin: where the images were read from, ``{"protocol", "dataset", "split", "folder"}``
            (:func:`skinseg.data.protocols.origin`); empty for data made in memory. A
            checkpoint records its training data's origin, and :mod:`skinseg.lab.leakage` checks it.
    """

    images: np.ndarray
    masks: np.ndarray
    ids: list[str] = field(default_factory=list)
    source: str = ""
    origin: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, H, W, 3), got {self.images.dtype} {self.images.shape}")
        if self.masks.shape != self.images.shape[:3] or self.masks.dtype != np.uint8:
            raise ValueError(f"masks must be uint8 (N, H, W) matching images {self.images.shape[:3]}, "
                             f"got {self.masks.dtype} {self.masks.shape}")
        if not self.ids:
            self.ids = [f"{i:05d}" for i in range(len(self.images))]
        if len(self.ids) != len(self.images):
            raise ValueError(f"{len(self.ids)} ids for {len(self.images)} images")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index) -> "SegmentationData":
        """The images at ``index`` (a slice, or a sequence of integer positions)."""
        if isinstance(index, slice):
            ids = self.ids[index]
        else:
            index = np.asarray(index, dtype=np.int64)
            ids = [self.ids[i] for i in index]
        return SegmentationData(self.images[index], self.masks[index], ids, self.source, self.origin)

    @property
    def lesion_fraction(self) -> np.ndarray:
        """``(N,)`` float, the fraction of each image's pixels that are lesion, in [0, 1]."""
        return self.masks.mean(axis=(1, 2))
