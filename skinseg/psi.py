"""The attention maps ψ of a trained Attention U-Net, as the experiment stores them in ``psi/<run>.npz``:

* ``epochs``: ``(E,)`` int; ``ids``: ``(N,)`` str, the test images; ``image_size``: ``(2,)`` int ``(H, W)``;
* ``psi``: ``(E, N, L)`` uint8, ``round(255 ψ)``: the four levels flattened in C order and
  concatenated, finest first (``H x W``, ``H/2 x W/2``, ...; ``L = 65280`` at 192x256).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.stats import rankdata

N_LEVELS = 4


def level_shapes(image_size: tuple[int, int], n_levels: int = N_LEVELS) -> list[tuple[int, int]]:
    """``[(H, W), (H/2, W/2), ...]``: the spatial shape of each gate's ψ, finest first."""
    h, w = (int(s) for s in image_size)
    if h % 2 ** (n_levels - 1) or w % 2 ** (n_levels - 1) or h <= 0 or w <= 0:
        raise ValueError(f"image_size must be positive multiples of {2 ** (n_levels - 1)}, got {tuple(image_size)}")
    return [(h >> k, w >> k) for k in range(n_levels)]


def unflatten_levels(flat: np.ndarray, image_size: tuple[int, int], n_levels: int = N_LEVELS) -> list[np.ndarray]:
    """Split ``(..., L)`` stored maps into ``n_levels`` float32 arrays ``(..., H / 2**k, W / 2**k)``
    (uint8 is divided by 255). Raises ``ValueError`` if ``L`` does not match ``image_size``."""
    shapes = level_shapes(image_size, n_levels)
    sizes = [h * w for h, w in shapes]
    if flat.shape[-1] != sum(sizes):
        raise ValueError(f"stored maps have {flat.shape[-1]} values per image, but {n_levels} levels of an "
                         f"image of {tuple(image_size)} need {sum(sizes)} ({' + '.join(map(str, sizes))})")
    values = flat.astype(np.float32) / 255 if flat.dtype == np.uint8 else flat.astype(np.float32)
    parts = np.split(values, np.cumsum(sizes)[:-1], axis=-1)
    return [part.reshape(*flat.shape[:-1], *shape) for part, shape in zip(parts, shapes)]


def psi_maps(model, images: np.ndarray, device) -> list[np.ndarray]:
    """The gates' ψ of ``(N, H, W, 3)`` uint8 images under an Attention U-Net: one
    ``(N, H / 2**k, W / 2**k)`` float array in [0, 1] per level ``k``, finest first."""
    import torch

    from .data.tensors import model_input

    with torch.no_grad():
        _, psis = model.eval().to(device).forward_with_attention(model_input(images, device))
    return [p[:, 0].float().cpu().numpy() for p in psis]


def flatten_levels(levels: list[np.ndarray]) -> np.ndarray:
    """The inverse of :func:`unflatten_levels`: float maps in [0, 1] -> ``(..., L)`` uint8, ``round(255 ψ)``."""
    flat = np.concatenate([np.asarray(a, np.float64).reshape(*a.shape[:-2], -1) for a in levels], axis=-1)
    return np.clip(np.round(flat * 255), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class PsiMaps:
    """ψ maps of ``N`` images (``ids``) at ``E`` epochs (``epochs``, increasing) of images of ``image_size``.

    ``levels``: float32 in [0, 1], level ``k`` of shape ``(E, N, H / 2**k, W / 2**k)``; level 0 is
    the gate on the finest skip connection. ``source``: where the maps were read from.
    """

    epochs: np.ndarray
    ids: list[str]
    levels: list[np.ndarray]
    image_size: tuple[int, int]
    source: str = ""

    def __post_init__(self) -> None:
        shapes = level_shapes(self.image_size, len(self.levels))
        for k, (a, shape) in enumerate(zip(self.levels, shapes)):
            if a.shape != (len(self.epochs), len(self.ids), *shape):
                raise ValueError(f"level {k} must be (E, N, h, w) = {(len(self.epochs), len(self.ids), *shape)}, "
                                 f"got {a.shape}")

    @property
    def n_epochs(self) -> int:
        return len(self.epochs)

    @property
    def n_images(self) -> int:
        return len(self.ids)

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    def epoch_index(self, epoch: int) -> int:
        """The position of ``epoch`` in :attr:`epochs` (``ValueError`` if it was not stored)."""
        where = np.flatnonzero(np.asarray(self.epochs) == epoch)
        if not len(where):
            raise ValueError(f"no maps at epoch {epoch}; stored epochs: {list(map(int, self.epochs))}")
        return int(where[0])

    def image_index(self, image: int | str) -> int:
        """The position of an image given by id or by position."""
        if isinstance(image, str):
            if image not in self.ids:
                raise ValueError(f"no maps of image {image!r}; stored ids: {list(self.ids)}")
            return self.ids.index(image)
        if not -self.n_images <= image < self.n_images:
            raise ValueError(f"image index {image} out of range for {self.n_images} images")
        return int(image) % self.n_images

    def map(self, level: int, image: int | str, epoch: int | None = None) -> np.ndarray:
        """One ψ map, ``(H / 2**level, W / 2**level)`` float32 in [0, 1]; ``epoch`` defaults to the last."""
        if not 0 <= level < self.n_levels:
            raise ValueError(f"level must be 0..{self.n_levels - 1}, got {level}")
        e = self.n_epochs - 1 if epoch is None else self.epoch_index(epoch)
        return self.levels[level][e, self.image_index(image)]


def load_psi(path) -> PsiMaps:
    """Read a ``psi/<run>.npz`` file (layout in the module docstring); ``ValueError`` if it is not one."""
    path = Path(path)
    with np.load(path) as z:
        missing = {"epochs", "ids", "psi", "image_size"} - set(z.files)
        if missing:
            raise ValueError(f"{path} is not a ψ file: it lacks {sorted(missing)}")
        epochs, ids, flat = z["epochs"].astype(int), [str(i) for i in z["ids"]], z["psi"]
        image_size = tuple(int(s) for s in z["image_size"])
    if flat.ndim != 3 or flat.shape[:2] != (len(epochs), len(ids)):
        raise ValueError(f"psi must be (E, N, L) = ({len(epochs)}, {len(ids)}, L), got {flat.shape}")
    return PsiMaps(epochs, ids, unflatten_levels(flat, image_size), image_size, str(path))


def upsample_to(psi: np.ndarray, size: tuple[int, int], mode: str = "nearest") -> np.ndarray:
    """Resize maps ``(..., h, w)`` to ``(..., H, W)`` = ``size`` (float32, within the input's range).

    ``"nearest"`` repeats each value over the block of pixels it stands for; ``"bilinear"``
    interpolates as ``torch.nn.functional.interpolate(align_corners=False)``.
    """
    psi = np.asarray(psi, np.float32)
    h, w = psi.shape[-2:]
    H, W = (int(s) for s in size)
    if mode == "nearest":
        rows = np.minimum((np.arange(H) + 0.5) * h / H, h - 1).astype(int)
        cols = np.minimum((np.arange(W) + 0.5) * w / W, w - 1).astype(int)
        return psi[..., rows[:, None], cols[None, :]]
    if mode == "bilinear":
        import torch

        t = torch.from_numpy(np.ascontiguousarray(psi)).reshape(-1, 1, h, w)
        out = torch.nn.functional.interpolate(t, size=(H, W), mode="bilinear", align_corners=False)
        return out.reshape(*psi.shape[:-2], H, W).numpy()
    raise ValueError(f"mode must be 'nearest' or 'bilinear', got {mode!r}")


def overlay(image: np.ndarray, psi: np.ndarray, opacity: float = 0.6, cmap: str = "magma",
            mask: np.ndarray | None = None, outline_colour: str | None = None) -> np.ndarray:
    """``image`` (``(H, W, 3)`` uint8) with the ``(h, w)`` map ``psi`` in [0, 1] drawn over it: ``(H, W, 3)`` uint8.

    The colour map spans the fixed range [0, 1]; ``opacity`` 0 shows the image alone, 1 the map
    alone. A ``mask`` (``(H, W)`` in {0, 1}) is outlined in ``outline_colour`` (default the ground-truth green).
    """
    import matplotlib

    from .plots import TRUTH_COLOUR, draw_outline

    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must lie in [0, 1], got {opacity}")
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be (H, W, 3), got {image.shape}")
    full = np.clip(upsample_to(psi, image.shape[:2]), 0.0, 1.0)
    colours = matplotlib.colormaps[cmap](full)[..., :3]
    shown = (1 - opacity) * image.astype(np.float32) / 255 + opacity * colours
    rgb = np.round(shown * 255).astype(np.uint8)
    if mask is not None:
        draw_outline(rgb, mask, outline_colour or TRUTH_COLOUR)
    return rgb


def lesion_auc(psi_full: np.ndarray, mask: np.ndarray) -> float:
    """The probability that a random lesion pixel has a higher ψ than a random background pixel
    (``(H, W)`` ``psi_full`` and ``mask``; ties count one half), in [0, 1]; ``nan`` without both kinds of pixel."""
    inside = mask.astype(bool).ravel()
    n_in, n_out = int(inside.sum()), int((~inside).sum())
    if n_in == 0 or n_out == 0:
        return float("nan")
    ranks = rankdata(psi_full.ravel())
    return float((ranks[inside].sum() - n_in * (n_in + 1) / 2) / (n_in * n_out))


def psi_statistics(maps: PsiMaps, masks: np.ndarray, rim_width: int = 16, low: float = 0.1,
                   high: float = 0.9) -> pd.DataFrame:
    """How each map relates to its lesion (``masks``: ``(N, H, W)`` in {0, 1}, in the order of ``maps.ids``).

    One row per (epoch, level, image) of the map upsampled to ``(H, W)`` by nearest neighbour:
    ``epoch``, ``level``, ``id``, ``lesion_fraction``; ``mean``, ``std``, ``min``, ``max`` of ψ;
    ``inside``, ``outside`` (mean ψ on lesion and background), ``contrast`` = inside - outside, ``rim``
    (mean ψ on the background within ``rim_width`` pixels of the lesion), ``auc`` (:func:`lesion_auc`),
    ``closed``, ``open`` (fraction where ψ < ``low``, > ``high``). Means over nothing are ``nan``.
    """
    masks = np.asarray(masks)
    if masks.shape != (maps.n_images, *maps.image_size):
        raise ValueError(f"masks must be (N, H, W) = {(maps.n_images, *maps.image_size)}, got {masks.shape}")

    def mean_on(values: np.ndarray, where: np.ndarray) -> float:
        return float(values[where].mean()) if where.any() else float("nan")

    lesions = masks.astype(bool)
    rims = [ndimage.binary_dilation(m, iterations=rim_width) & ~m if m.any() else np.zeros_like(m)
            for m in lesions]
    rows = []
    for e, epoch in enumerate(maps.epochs):
        for level in range(maps.n_levels):
            for i, image_id in enumerate(maps.ids):
                full = upsample_to(maps.levels[level][e, i], maps.image_size)
                lesion = lesions[i]
                inside, outside = mean_on(full, lesion), mean_on(full, ~lesion)
                rows.append({"epoch": int(epoch), "level": level, "id": image_id,
                             "lesion_fraction": float(lesion.mean()), "mean": float(full.mean()),
                             "std": float(full.std()), "min": float(full.min()), "max": float(full.max()),
                             "inside": inside, "outside": outside, "contrast": inside - outside,
                             "rim": mean_on(full, rims[i]), "auc": lesion_auc(full, lesion),
                             "closed": float((full < low).mean()), "open": float((full > high).mean())})
    return pd.DataFrame(rows)


__all__ = ["N_LEVELS", "PsiMaps", "flatten_levels", "lesion_auc", "level_shapes", "load_psi", "overlay",
           "psi_maps", "psi_statistics", "unflatten_levels", "upsample_to"]
