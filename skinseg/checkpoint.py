"""Checkpoints: written atomically, loaded with ``weights_only=True``, checked against the model."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from .errors import CheckpointError
from .models import build_model, model_name


def architecture(model: nn.Module) -> dict:
    """``{"model": name, "width": base channels}``: what a checkpoint must match to load."""
    return {"model": model_name(model), "width": int(model.width)}


def save_atomic(obj, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename it over ``path``.

    A crash or kill of the process at any moment leaves either the old file or the new one,
    never half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Load a checkpoint dictionary safely (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for a damaged file
        raise CheckpointError(f"cannot read checkpoint {path}: not a skinseg checkpoint or damaged "
                              f"({str(err).strip().splitlines()[0]})") from None
    if not isinstance(state, dict) or "arch" not in state or "model" not in state:
        raise CheckpointError(f"{path} is not a skinseg checkpoint (expected keys 'arch' and 'model')")
    return state


def check_architecture(state: dict, model: nn.Module, path: Path | str = "checkpoint") -> None:
    """Raise :class:`CheckpointError` unless ``state`` was saved from a model like ``model``."""
    want, got = architecture(model), state["arch"]
    if want != got:
        raise CheckpointError(f"{path} holds a {got['model']} of width {got['width']}, "
                              f"but the model is a {want['model']} of width {want['width']}")


def load_model(path: Path, device="cpu", weights: str = "best") -> nn.Module:
    """Build the model a checkpoint describes and load its weights, in eval mode.

    ``weights``: ``"best"`` (the validation-selected weights, EMA where used) or
    ``"model"`` (the raw weights at the checkpoint's epoch).
    """
    state = load_checkpoint(path)
    arch = state["arch"]
    model = build_model(arch["model"], arch["width"])
    key = weights if weights in state else "model"
    model.load_state_dict(state[key])
    return model.to(device).eval()
