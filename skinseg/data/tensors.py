"""Between uint8 arrays and model inputs."""
from __future__ import annotations

import numpy as np
import torch

# Per-channel mean and standard deviation of the ISIC 2017 training images (0..1 scale).
MEAN = (0.708, 0.592, 0.547)
STD = (0.153, 0.161, 0.176)


def to_device_tensors(images: np.ndarray, masks: np.ndarray, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, H, W, 3)`` and ``(N, H, W)`` uint8 arrays -> ``(N, 3, H, W)`` and ``(N, 1, H, W)`` uint8 tensors on ``device``.

    The whole split stays uint8 on the device (2000 images at 192x256 take 295 MB), so
    batches need no copies from the host.
    """
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(np.ascontiguousarray(masks)).to(device)[:, None]
    return x, y


def model_input(images: np.ndarray, device="cpu") -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 numpy images -> the standardised ``(N, 3, H, W)`` float32 input of the models."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2)
    return normalize(to_unit_float(x))


def to_unit_float(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, 3, H, W)`` -> float32 in [0, 1]."""
    return images_uint8.float().div_(255)


_CHANNEL_STATS: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}


def _channel_stats(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """:data:`MEAN` and :data:`STD` as ``(1, 3, 1, 1)`` tensors, made once per device and dtype: a copy
    from the host would wait for every queued GPU kernel to finish, in every training step."""
    key = (device, dtype)
    if key not in _CHANNEL_STATS:
        _CHANNEL_STATS[key] = (torch.tensor(MEAN, device=device, dtype=dtype).view(1, 3, 1, 1),
                               torch.tensor(STD, device=device, dtype=dtype).view(1, 3, 1, 1))
    return _CHANNEL_STATS[key]


def normalize(images: torch.Tensor) -> torch.Tensor:
    """Float ``(B, 3, H, W)`` in [0, 1] -> the standardised input the models take (about zero mean, unit variance)."""
    mean, std = _channel_stats(images.device, images.dtype)
    return (images - mean) / std
