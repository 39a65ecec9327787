"""Where a result came from: the hardware and software, and a fingerprint of the data.

Also :func:`write_json`, the lab's one way to write a JSON file (atomically, :mod:`skinseg.atomic`).
"""
from __future__ import annotations

import datetime
import hashlib
import json
import platform
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..atomic import write_text_atomic
from ..data import SegmentationData
from ..device import describe


def environment(device: torch.device) -> dict:
    """The hardware and software a result came from."""
    return {"device": describe(device), "device_type": device.type, "torch": torch.__version__,
            "cuda": torch.version.cuda, "python": platform.python_version(), "skinseg": __version__,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def write_json(path: Path, obj) -> None:
    """Write ``obj`` as indented JSON, atomically (a temporary file renamed over ``path``)."""
    write_text_atomic(path, json.dumps(obj, indent=1))


def data_fingerprint(data: dict[str, SegmentationData]) -> str:
    """SHA-256 (first 16 hex digits) of every split's ids, images and masks as loaded: two calls
    trained and tested on the same pixels have the same fingerprint, whatever folder they read."""
    h = hashlib.sha256()
    for split in sorted(data):
        d = data[split]
        h.update(f"{split}|{len(d)}|{'|'.join(d.ids)}|{d.images.shape}".encode())
        h.update(np.ascontiguousarray(d.images).data)
        h.update(np.ascontiguousarray(d.masks).data)
    return h.hexdigest()[:16]
