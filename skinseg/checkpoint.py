"""Checkpoints: written atomically, loaded with ``weights_only=True``, checked against the model."""
from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Callable

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


class BackgroundWriter:
    """Runs file writes in one background thread, so that training goes on while they happen.

    :meth:`submit` takes a list of ``(write, path)`` pairs, where ``write(path)`` writes one
    file (atomically, e.g. with :func:`save_atomic`); they run in order. A new submission
    first waits for the previous one, so at most one batch of writes is in flight, and
    :meth:`wait` (call it before returning) waits for the last and re-raises its error as a
    :class:`CheckpointError`. What is submitted must not change afterwards: pass copies.
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: tuple[Path, BaseException] | None = None

    def submit(self, writes: list[tuple[Callable[[Path], None], Path]]) -> None:
        self.wait()
        self._thread = threading.Thread(target=self._run, args=(writes,), name="skinseg-checkpoint")
        self._thread.start()

    def _run(self, writes) -> None:
        for write, path in writes:
            try:
                write(path)
            except BaseException as err:  # noqa: BLE001 - handed to the training thread by wait()
                self._error = (Path(path), err)
                return

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            (path, err), self._error = self._error, None
            raise CheckpointError(f"could not write {path}: {type(err).__name__}: {err}") from err


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
