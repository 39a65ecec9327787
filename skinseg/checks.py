"""Checks of the arguments of the library's public functions: each returns the value (as an array
where one is expected) or raises a one-line :class:`~skinseg.errors.SkinsegError` naming the argument."""
from __future__ import annotations

from numbers import Integral
from pathlib import Path

import numpy as np

from .errors import ConfigError, DataError


def _whole(value, low: int) -> bool:
    """Whether ``value`` is an integer (not a bool) of at least ``low``."""
    return isinstance(value, Integral) and not isinstance(value, bool) and value >= low


def check_images(images, name: str = "images") -> np.ndarray:
    """``images`` as an ``(N, H, W, 3)`` uint8 array with values 0..255.

    Float images are refused, rather than guessed at: [0, 1] images would otherwise be divided
    by 255 a second time."""
    if not isinstance(images, np.ndarray):
        raise DataError(f"{name} must be a numpy array (N, H, W, 3) of uint8, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[-1] != 3:
        raise DataError(f"{name} must be (N, H, W, 3) RGB, got the shape {images.shape}")
    if images.dtype != np.uint8:
        hint = ""
        if images.dtype.kind == "f" and images.size and np.nanmax(images) <= 1.0:
            hint = " (these look like values in [0, 1]: use (images * 255).round().astype(np.uint8))"
        raise DataError(f"{name} must be uint8 with values 0..255, got {images.dtype}{hint}")
    return images


def check_masks(masks, shape: tuple[int, ...], name: str = "masks") -> np.ndarray:
    """``masks`` as an ``(N, H, W)`` uint8 array of ``shape`` with values in {0, 1}."""
    if not isinstance(masks, np.ndarray):
        raise DataError(f"{name} must be a numpy array (N, H, W) of uint8, got {type(masks).__name__}")
    if masks.shape != tuple(shape) or masks.dtype != np.uint8:
        raise DataError(f"{name} must be uint8 (N, H, W) matching the images {tuple(shape)}, "
                        f"got {masks.dtype} {masks.shape}")
    if masks.size and masks.max() > 1:
        raise DataError(f"{name} must hold 0 (background) and 1 (lesion), got values up to {int(masks.max())}"
                        f"{' (a 0/255 mask: use masks // 255)' if masks.max() == 255 else ''}")
    return masks


def check_size(size, name: str = "size") -> tuple[int, int]:
    """``(H, W)``, two positive integers."""
    if (isinstance(size, (str, bytes)) or not hasattr(size, "__len__") or len(size) != 2
            or not all(_whole(s, 1) for s in size)):
        raise ConfigError(f"{name} must be (H, W), two positive integers, got {size!r}")
    return int(size[0]), int(size[1])


def check_limit(limit, name: str = "limit") -> int | None:
    """None, or an integer of at least 1."""
    if limit is not None and not _whole(limit, 1):
        raise ConfigError(f"{name} must be None or an integer of at least 1, got {limit!r}")
    return None if limit is None else int(limit)


def check_paths(paths, name: str) -> list[Path]:
    """A list of paths; a single ``str`` or ``Path`` is refused (it would be read character by character)."""
    if isinstance(paths, (str, bytes, Path)):
        raise ConfigError(f"{name} must be a list of paths, got the single {type(paths).__name__} {str(paths)!r}: "
                          f"write [{str(paths)!r}]")
    try:
        return [Path(p) for p in paths]
    except TypeError:
        raise ConfigError(f"{name} must be a list of paths, got {type(paths).__name__}") from None


def check_positive_int(value, name: str) -> int:
    """An integer of at least 1 (not a bool)."""
    if not _whole(value, 1):
        raise ConfigError(f"{name} must be an integer of at least 1, got {value!r}")
    return int(value)


def check_model(model, name: str = "model"):
    """A torch module (a U-Net or Attention U-Net), not a path or a checkpoint dictionary."""
    from torch import nn

    if not isinstance(model, nn.Module):
        hint = " (load one with skinseg.checkpoint.load_model(path))" if isinstance(model, (str, Path, dict)) else ""
        raise ConfigError(f"{name} must be a torch model, got {type(model).__name__}{hint}")
    return model


__all__ = ["check_images", "check_limit", "check_masks", "check_model", "check_paths",
           "check_positive_int", "check_size"]
