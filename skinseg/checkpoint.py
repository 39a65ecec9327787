"""Checkpoints: written atomically, loaded with ``weights_only=True``, checked against the model."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .atomic import write_atomic
from .device import resolve_device
from .errors import CheckpointError, ConfigError
from .models import MODELS, build_model, model_name


def architecture(model: nn.Module) -> dict:
    """``{"model": name, "width": base channels}``: what a checkpoint must match to load."""
    return {"model": model_name(model), "width": int(model.width)}


def save_atomic(obj, path: Path) -> None:
    """``torch.save`` through :func:`skinseg.atomic.write_atomic`: a crash leaves the old file or the new one."""
    write_atomic(path, lambda f: torch.save(obj, f))


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Load a checkpoint dictionary safely (``weights_only=True``); :class:`CheckpointError` naming
    ``path`` for a missing, empty or damaged file, a file that is not a skinseg checkpoint, and an
    ``arch`` that is missing or not ``{"model": one of skinseg.models.MODELS, "width": a positive int}``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): the run that wrote it was cut short; "
                              f"train again or use another checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for a damaged file
        detail = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"cannot read checkpoint {path}: not a skinseg checkpoint or damaged "
                              f"({detail})") from None
    if not isinstance(state, dict) or "arch" not in state or not isinstance(state.get("model"), dict):
        raise CheckpointError(f"{path} is not a skinseg checkpoint (expected keys 'arch' and 'model')")
    arch = state["arch"]
    if not (isinstance(arch, dict) and arch.get("model") in MODELS and type(arch.get("width")) is int
            and arch["width"] >= 1):
        raise CheckpointError(f"{path} has a bad 'arch' field: expected {{'model': one of {sorted(MODELS)}, "
                              f"'width': a positive int}}, got {arch!r}")
    return state


def check_architecture(state: dict, model: nn.Module, path: Path | str = "checkpoint") -> None:
    """Raise :class:`CheckpointError` unless ``state``'s ``arch`` and weights (:func:`check_weights`) fit ``model``."""
    want, got = architecture(model), state["arch"]
    if want != got:
        raise CheckpointError(f"{path} holds a {got['model']} of width {got['width']}, "
                              f"but the model is a {want['model']} of width {want['width']}")
    check_weights(state, model, path, keys=("model", "ema"))


def check_weights(state: dict, model: nn.Module, path: Path | str = "checkpoint", keys=("model",)) -> None:
    """Raise :class:`CheckpointError` unless ``state[key]`` (for each of ``keys`` present) has
    exactly ``model``'s tensor names and shapes, i.e. agrees with the checkpoint's ``arch``."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for key in keys:
        weights = state.get(key)
        if key != "model" and not weights:
            continue  # an optional entry, e.g. no EMA
        if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
            raise CheckpointError(f"{path}: its {key!r} entry is not a dictionary of tensors")
        stored = {k: tuple(v.shape) for k, v in weights.items()}
        missing, extra = sorted(expected.keys() - stored.keys()), sorted(stored.keys() - expected.keys())
        wrong = sorted(k for k in expected.keys() & stored.keys() if expected[k] != stored[k])
        if missing or extra or wrong:
            arch = state["arch"]
            detail = "; ".join(part for part in (
                f"{len(missing)} missing, e.g. {missing[0]}" if missing else "",
                f"{len(extra)} unexpected, e.g. {extra[0]}" if extra else "",
                f"{len(wrong)} of another shape, e.g. {wrong[0]} {stored[wrong[0]]} instead of {expected[wrong[0]]}"
                if wrong else "") if part)
            raise CheckpointError(f"{path}: the {key!r} weights do not match its arch ({arch['model']} of width "
                                  f"{arch['width']}): {detail}")


def load_model(path: Path, device="cpu", weights: str = "best") -> nn.Module:
    """The model a checkpoint describes with its ``weights``, in eval mode: ``"best"`` (the
    validation-selected weights, EMA where used) or ``"model"`` (the raw weights of its epoch)."""
    return model_from_state(load_checkpoint(path), path, device, weights)


def model_from_state(state: dict, path: Path | str = "checkpoint", device="cpu", weights: str = "best") -> nn.Module:
    """:func:`load_model` for a checkpoint already read by :func:`load_checkpoint` (``path`` names it in errors)."""
    if weights not in ("best", "model"):
        raise ConfigError(f"weights must be 'best' or 'model', got {weights!r}")
    arch = state["arch"]
    model = build_model(arch["model"], arch["width"])
    key = weights if weights in state else "model"
    check_weights(state, model, path, keys=(key,))
    model.load_state_dict(state[key])
    return (model.to(resolve_device(device)) if device is not None else model).eval()  # ConfigError for a bad device
