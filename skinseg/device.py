"""Choosing the device and the fast paths it supports."""
from __future__ import annotations

import os
import random

import numpy as np
import torch

from .errors import ConfigError


def resolve_device(device=None) -> torch.device:
    """``device`` as a ``torch.device``; by default CUDA when available, else CPU.

    Raises :class:`~skinseg.errors.ConfigError` for a device that is not ``cpu``, ``cuda``,
    ``cuda:N`` or ``mps``, or that this machine does not have.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        resolved = None
    if resolved is None or resolved.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device must be cpu, cuda, cuda:N or mps, got {str(device)!r}")
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"device {str(device)!r} asked for, but this machine has no usable CUDA GPU "
                              f"(torch {torch.__version__}); use cpu")
        if resolved.index is not None and resolved.index >= count:
            raise ConfigError(f"device {str(device)!r} asked for, but this machine has {count} CUDA GPU(s): "
                              f"cuda:0 to cuda:{count - 1}")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {str(device)!r} asked for, but MPS is not available on this machine; use cpu")
    return resolved


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """Mixed-precision type for ``device``: bf16 where supported, fp16 on older GPUs, ``None`` (fp32) on CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None):
    """The mixed-precision context of a forward pass: ``dtype`` (from :func:`autocast_dtype`), or fp32 for ``None``."""
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def describe(device: torch.device) -> str:
    """A human-readable name of the hardware, for labelling results."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({os.cpu_count()} cores)"


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) for reproducible model initialisation."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
