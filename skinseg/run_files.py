"""The files of a training folder that :func:`skinseg.train.fit` writes, and what a resumed run does
when some were deleted or damaged since: ``history.json`` is rewritten from ``last.pt``, and so is
``best.pt`` where ``last.pt`` holds its weights (the best epoch was the last one); otherwise the
best weights are lost, and the run is refused rather than continued without them."""
from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from .atomic import write_text_atomic
from .checkpoint import save_atomic
from .errors import CheckpointError

LAST, BEST, HISTORY = "last.pt", "best.pt", "history.json"
RESTART = "Use another output folder, or resume=False (--no-resume) to start again"


def save_history(path: Path, history: dict) -> None:
    """``history`` (:meth:`skinseg.train.History.to_dict`) as ``history.json``, unless it holds that already."""
    text = json.dumps(history, indent=1)
    try:
        same = Path(path).read_text() == text
    except (OSError, UnicodeDecodeError):
        same = False
    if not same:
        write_text_atomic(path, text)


def save_best(path: Path, arch: dict, weights: dict, epoch: int, val_iou: float, image_size, trained_on) -> None:
    """``best.pt``: the evaluated (EMA where used) ``weights`` of the best ``epoch``."""
    save_atomic({"arch": arch, "model": weights, "epoch": epoch, "val_iou": val_iou, "image_size": image_size,
                 "trained_on": trained_on}, path)


def restore_run_files(out_dir: Path, state: dict, evaluated: nn.Module) -> None:
    """Rewrite the ``history.json`` and ``best.pt`` of ``out_dir`` that ``state`` (its ``last.pt``,
    loaded into ``evaluated``, the EMA or raw model that is validated) can restore.

    Raises :class:`CheckpointError` if ``best.pt`` is missing and its epoch was not the last one:
    ``last.pt`` does not hold those weights."""
    history = state["history"]
    save_history(out_dir / HISTORY, history)
    best, epoch = out_dir / BEST, history["best_epoch"]
    if best.exists() or epoch is None:
        return
    if epoch != state["epoch"]:
        raise CheckpointError(f"{best} is missing and cannot be restored: it held the weights of epoch {epoch} (the "
                              f"best validation IoU, {history['best_val_iou']:.4f}), and {out_dir / LAST} holds only "
                              f"those of epoch {state['epoch']}. {RESTART}")
    save_best(best, state["arch"], evaluated.state_dict(), epoch, history["best_val_iou"], state["recipe"]["image_size"],
              state.get("trained_on"))


__all__ = ["BEST", "HISTORY", "LAST", "RESTART", "restore_run_files", "save_best", "save_history"]
