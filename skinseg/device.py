"""Choosing the device and the fast paths it supports."""
from __future__ import annotations

import random

import numpy as np
import torch


def resolve_device(device=None) -> torch.device:
    """``device`` as a ``torch.device``; by default CUDA when available, else CPU."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """Mixed-precision type for ``device``: bf16 where supported, fp16 on older GPUs, ``None`` (fp32) on CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def describe(device: torch.device) -> str:
    """A human-readable name of the hardware, for labelling results."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import os
    return f"CPU ({os.cpu_count()} cores)"


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) for reproducible model initialisation."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
