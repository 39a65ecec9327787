"""The test images the book displays, stored with the results that show them, so that a reader
without the data can draw them: ``display.npz`` beside ``summary.json`` holds ``ids`` ``(N,)`` str,
``images`` ``(N, H, W, 3)`` uint8 RGB at the model's input size, ``masks`` the ground truth
bit-packed along the width (:func:`numpy.packbits`) and ``shape`` ``(N, H, W)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import write_npz_atomic
from ..errors import DataError
from ..models import MODELS
from .result_files import array_names, read_arrays, read_table

FILE_NAME = "display.npz"
# Quantiles of the U-Net's per-image IoU whose image is kept (position int(q * (n - 1)) in the sorted IoUs)
QUANTILES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
N_EXTREMES = 5  # the best, the worst and the most disputed images kept of each kind


def display_ids(unet_iou: pd.Series, attention_iou: pd.Series, psi_ids=()) -> list[str]:
    """The ids of the test images to store, in a fixed order without repeats, from one seed's per-image
    test IoU of each model (indexed by id): the ``psi_ids``; the U-Net's image at each of :data:`QUANTILES`
    and the one closest to its median; the :data:`N_EXTREMES` lowest and highest by the mean IoU of both
    models; and the :data:`N_EXTREMES` with the largest absolute difference."""
    if not unet_iou.index.equals(attention_iou.index):
        raise DataError("the two models' per-image tables name different test images")
    ids = list(psi_ids)
    ranked = unet_iou.sort_values(kind="stable")
    ids += [ranked.index[int(q * (len(ranked) - 1))] for q in QUANTILES]
    ids.append((unet_iou - unet_iou.median()).abs().idxmin())
    mean = ((unet_iou + attention_iou) / 2).sort_values(kind="stable")
    ids += list(mean.index[:N_EXTREMES]) + list(mean.index[-N_EXTREMES:])
    ids += list((attention_iou - unet_iou).abs().sort_values(ascending=False, kind="stable").index[:N_EXTREMES])
    return [str(i) for i in dict.fromkeys(ids)]


@dataclass(frozen=True)
class DisplayImages:
    """Stored test images with their ground truth, read from ``source``: ``N`` ``ids``, ``images``
    ``(N, H, W, 3)`` uint8 RGB in 0..255 and ``masks`` ``(N, H, W)`` bool, True on the lesion."""

    ids: list[str]
    images: np.ndarray
    masks: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        return len(self.ids)

    def image(self, image_id: str) -> tuple[np.ndarray, np.ndarray]:
        """``(image (H, W, 3) uint8, mask (H, W) bool)`` of one id; :class:`DataError` if it is not stored."""
        return tuple(a[0] for a in self.select([image_id]))

    def select(self, ids) -> tuple[np.ndarray, np.ndarray]:
        """``(images (K, H, W, 3) uint8, masks (K, H, W) bool)`` of ``ids``, in their order."""
        ids = list(ids)
        if missing := [i for i in ids if i not in self.ids]:
            raise DataError(f"{self.source}: test image {missing[0]!r} is not among the {len(self.ids)} stored "
                            f"display images (stored: {', '.join(self.ids[:4])}, ...)")
        where = [self.ids.index(i) for i in ids]
        return self.images[where], self.masks[where]


def write_display(path, ids, images: np.ndarray, masks: np.ndarray) -> Path:
    """Write ``display.npz`` of ``ids``, ``images`` ``(N, H, W, 3)`` uint8 and ``masks`` ``(N, H, W)`` in {0, 1}."""
    ids, images, masks = [str(i) for i in ids], np.asarray(images), np.asarray(masks)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or len(images) != len(ids):
        raise DataError(f"display images must be ({len(ids)}, H, W, 3) uint8, got {images.shape} {images.dtype}")
    if masks.shape != images.shape[:3]:
        raise DataError(f"display masks must be {images.shape[:3]}, got {masks.shape}")
    write_npz_atomic(Path(path), ids=np.array(ids), images=images, masks=np.packbits(masks.astype(bool), axis=-1),
                     shape=np.array(masks.shape))
    return Path(path)


def load_display(path) -> DisplayImages:
    """Read a ``display.npz``; :class:`DataError` naming the file if it is missing or not one."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"results file {path} is missing: these results keep no display images "
                        "(written by the experiment since it stores them; draw from local data instead)")
    if missing := {"ids", "images", "masks", "shape"} - array_names(path):
        raise DataError(f"{path} is not a display-images file: it lacks {sorted(missing)}")
    z = read_arrays(path, ("shape", "masks", "images", "ids"))
    masks = unpack_masks(z["masks"], z["shape"], path).astype(bool)
    if z["images"].shape[:3] != masks.shape:
        raise DataError(f"{path}: images {z['images'].shape} do not match the stored shape {masks.shape}")
    return DisplayImages([str(i) for i in z["ids"]], z["images"], masks, str(path))


def unpack_masks(packed: np.ndarray, shape, path) -> np.ndarray:
    """Masks bit-packed along the width as ``shape`` ``(N, H, W)``, uint8 in {0, 1};
    :class:`DataError` naming ``path`` when they do not have that shape."""
    shape = tuple(int(v) for v in shape)
    masks = np.unpackbits(packed, axis=-1)[..., :shape[-1]]
    if masks.shape != shape:
        raise DataError(f"{path}: unpacked masks have shape {masks.shape}, expected {shape}")
    return masks


def store_display(out_dir, test, unet_iou: pd.Series, attention_iou: pd.Series, psi_ids=()) -> Path:
    """Pick :func:`display_ids` and write their pixels from ``test`` (a
    :class:`~skinseg.data.SegmentationData` holding them) to ``out_dir/display.npz``."""
    return _store_ids(out_dir, test, display_ids(unet_iou, attention_iou, psi_ids))


def _store_ids(out_dir, test, ids) -> Path:
    if missing := [i for i in ids if i not in test.ids]:
        raise DataError(f"{test.source} lacks test image {missing[0]!r} that the results name")
    where = [test.ids.index(i) for i in ids]
    return write_display(Path(out_dir) / FILE_NAME, ids, test.images[where], test.masks[where])


def store_display_of_run(out_dir, test, seed: int, psi_ids=(), folders=None) -> Path | None:
    """:func:`store_display` of the ``per_image/<model>_seed<seed>.csv`` tables of both models, each from
    the first of ``folders`` (default ``[out_dir]``) that has it; ``None`` until both exist. The images are
    :func:`display_ids` of the raw prediction's IoU (``iou_raw``), then of the run's choice (``iou``)."""
    folders = [Path(out_dir)] if folders is None else [Path(f) for f in folders]
    tables = [next((t for t in (f / "per_image" / f"{m}_seed{seed}.csv" for f in folders) if t.is_file()), None)
              for m in MODELS]
    if None in tables:
        return None
    unet, attention = (read_table(t) for t in tables)
    ids = [i for column in ("iou_raw", "iou") if column in unet and column in attention
           for i in display_ids(unet[column], attention[column], psi_ids)]
    return _store_ids(out_dir, test, list(dict.fromkeys(ids)))


__all__ = ["DisplayImages", "FILE_NAME", "display_ids", "load_display", "store_display", "store_display_of_run",
           "unpack_masks", "write_display"]
