"""The in-memory form of a segmentation split."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..checks import check_images, check_masks
from ..errors import DataError


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
            (:func:`skinseg.data.loading.origin`, :func:`skinseg.lab.protocols.origin`); empty for data made in memory. A
            checkpoint records its training data's origin, and :mod:`skinseg.lab.leakage` checks it.
    """

    images: np.ndarray
    masks: np.ndarray
    ids: list[str] = field(default_factory=list)
    source: str = ""
    origin: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Raises :class:`~skinseg.errors.DataError` for arrays of another shape, dtype or range
        (float images, 0/255 masks) and ids that are not one string per image."""
        check_images(self.images)
        check_masks(self.masks, self.images.shape[:3])
        if isinstance(self.ids, (str, bytes)):
            raise DataError(f"ids must be a list of strings, got the single string {self.ids!r}")
        self.ids = list(self.ids) if len(self.ids) else [f"{i:05d}" for i in range(len(self.images))]
        if len(self.ids) != len(self.images):
            raise DataError(f"{len(self.ids)} ids for {len(self.images)} images")

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
