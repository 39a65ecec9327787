"""The edges of :func:`skinseg.train.fit`: its arguments, checked before any work, and the files of
its folder (``last.pt``, ``best.pt``, ``history.json``)."""
from __future__ import annotations

import json
import zipfile
from numbers import Integral
from pathlib import Path

from torch import nn

from .atomic import write_text_atomic
from .checkpoint import save_atomic
from .checks import check_limit
from .config import Profile
from .data.arrays import SegmentationData
from .errors import CheckpointError, ConfigError, DataError
from .paths import BEST, HISTORY, LAST

RESTART = "Use another output folder, or resume=False (--no-resume) to start again"


def check_fit_arguments(train, val, profile, out_dir, seed, stop_after) -> tuple[int, int | None]:
    """``seed`` and ``stop_after`` as Python integers, once the arguments of :func:`skinseg.train.fit`
    are checked: ``train`` and ``val`` non-empty :class:`~skinseg.data.arrays.SegmentationData`,
    ``profile`` a :class:`~skinseg.config.Profile`, ``out_dir`` None or a folder (not a file),
    ``seed`` an integer >= 0 and ``stop_after`` None or an integer >= 1 (one-line
    :class:`ConfigError` or :class:`DataError` naming the argument)."""
    for name, data in (("train", train), ("val", val)):
        if not isinstance(data, SegmentationData):
            raise ConfigError(f"{name} must be a SegmentationData (from skinseg.data.load_split, or "
                              f"SegmentationData(images, masks)), got {type(data).__name__}")
        if len(data) == 0:
            raise DataError(f"{name} holds no images ({data.source or 'SegmentationData'}): fit needs at least one")
    if not isinstance(profile, Profile):
        hint = " (get one with skinseg.config.get_profile(name))" if isinstance(profile, str) else ""
        raise ConfigError(f"profile must be a skinseg.config.Profile, got {type(profile).__name__}{hint}")
    if out_dir is not None:
        if not isinstance(out_dir, (str, Path)):
            raise ConfigError(f"out_dir must be None or a folder path, got {type(out_dir).__name__}")
        if Path(out_dir).exists() and not Path(out_dir).is_dir():
            raise ConfigError(f"out_dir {out_dir} is a file: expected a folder for last.pt, best.pt and history.json")
    if not isinstance(seed, Integral) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be an integer of at least 0, got {seed!r}")
    return int(seed), check_limit(stop_after, "stop_after")


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
    """Rewrite ``history.json`` from ``state`` (``last.pt``, loaded into ``evaluated``, the EMA or
    raw model that is validated), and a missing or damaged ``best.pt`` where the best epoch was the
    last one; otherwise those weights are lost and :class:`CheckpointError` refuses the resume."""
    history = state["history"]
    save_history(out_dir / HISTORY, history)
    best, epoch = out_dir / BEST, history["best_epoch"]
    if epoch is None or (best.is_file() and zipfile.is_zipfile(best)):  # torch.save writes a zip archive
        return
    if epoch != state["epoch"]:
        raise CheckpointError(f"{best} is {'damaged' if best.exists() else 'missing'} and cannot be restored: it "
                              f"held the weights of epoch {epoch} (the best validation IoU, "
                              f"{history['best_val_iou']:.4f}), and {out_dir / LAST} holds only those of epoch "
                              f"{state['epoch']}. {RESTART}")
    save_best(best, state["arch"], evaluated.state_dict(), epoch, history["best_val_iou"],
              state["recipe"]["image_size"], state.get("trained_on"))


__all__ = ["BEST", "HISTORY", "LAST", "RESTART", "check_fit_arguments", "restore_run_files", "save_best",
           "save_history"]
