"""Training: :func:`fit`, the loop around :class:`~skinseg.step.TrainStep`.

AdamW with linear warm-up then cosine decay (or, as a profile chooses, Adam at a constant
learning rate); mixed precision (bf16 where supported, else fp16 with gradient scaling, fp32
on CPU); channels_last and ``torch.compile`` on CUDA; an exponential moving average (EMA) of
the weights; validation every epoch, with the best epoch chosen on validation IoU only; an
atomic checkpoint every epoch that ``resume`` continues from.

Randomness (shuffling, augmentation) is drawn from generators seeded by ``(seed, epoch)``,
so a resumed run repeats exactly what an uninterrupted one would have done.
"""
from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from .checkpoint import architecture, check_architecture, load_checkpoint, save_atomic
from .config import SCHEDULES, Profile
from .data.arrays import SegmentationData
from .data.tensors import normalize, to_device_tensors, to_unit_float
from .device import autocast, resolve_device
from .errors import CheckpointError, ConfigError, TrainingError
from .losses import build_loss
from .metrics import device_counts, dice_from_counts, iou_from_counts
from .step import TrainStep, build_optimizer
from .train_edges import BEST, HISTORY, LAST, RESTART, check_fit_arguments, restore_run_files, save_best, save_history


@dataclass
class History:
    """What :func:`fit` returns and saves as ``history.json``: ``records`` has one dict per epoch
    (``epoch``, ``train_loss``, ``train_dice``, ``train_iou`` on augmented batches, ``val_loss``,
    ``val_dice``, ``val_iou`` of the evaluated weights, ``lr``, ``seconds``, ``images_per_s``)."""

    records: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    best_val_iou: float = -1.0
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"records": self.records, "best_epoch": self.best_epoch, "best_val_iou": self.best_val_iou,
                "meta": self.meta}

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        return cls(list(d["records"]), d["best_epoch"], d["best_val_iou"], dict(d["meta"]))

    def save(self, path: Path) -> None:
        save_history(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> "History":
        return cls.from_dict(json.loads(Path(path).read_text()))


def learning_rate(step: int, total_steps: int, warmup_steps: int, peak: float,
                  schedule: str = "warmup_cosine") -> float:
    """The learning rate of ``step`` (0-based). ``"warmup_cosine"``: linear warm-up to ``peak`` over
    ``warmup_steps``, then cosine decay to 0 at ``total_steps``. ``"constant"``: ``peak`` throughout."""
    if schedule not in SCHEDULES:
        raise ConfigError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if schedule == "constant":
        return peak
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class ExponentialMovingAverage:
    """EMA of every floating-point tensor of a model's state (parameters and BatchNorm statistics).

    The decay ramps up as ``min(decay, (1 + t) / (10 + t))`` so that early averages are not
    dominated by the random initialisation."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay, self.updates = decay, 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        averaged, live = self.model.state_dict(), model.state_dict()
        if averaged.keys() != live.keys():
            raise ValueError(f"the EMA averages a {type(self.model).__name__}; got a {type(model).__name__}")
        for name, tensor in averaged.items():
            if tensor.is_floating_point():  # not BatchNorm's batch counter
                tensor.lerp_(live[name], 1 - d)


def scores(counts: list[torch.Tensor], prefix: str) -> dict[str, float]:
    """Mean per-image Dice and IoU from a list of :func:`~skinseg.metrics.device_counts`."""
    tp, fp, fn = torch.cat(counts, 1).cpu().numpy()
    return {f"{prefix}_dice": float(dice_from_counts(tp, fp, fn).mean()),
            f"{prefix}_iou": float(iou_from_counts(tp, fp, fn).mean())}


@torch.no_grad()
def validate(model: nn.Module, images: torch.Tensor, masks: torch.Tensor, loss_fn: Callable, batch_size: int = 32,
             dtype: torch.dtype | None = None, memory_format=torch.contiguous_format) -> dict[str, float]:
    """Mean per-image ``val_dice`` and ``val_iou`` (threshold 0.5) and mean ``val_loss`` on uint8 tensors."""
    model.eval()
    counts, losses = [], []
    for i in range(0, len(images), batch_size):
        x = normalize(to_unit_float(images[i:i + batch_size])).contiguous(memory_format=memory_format)
        y = masks[i:i + batch_size].float()
        with autocast(x.device, dtype):
            logits = model(x).float()
        losses.append(loss_fn(logits, y) * len(x))
        counts.append(device_counts(logits > 0, y > 0.5))
    return {"val_loss": float(torch.stack(losses).sum()) / len(images), **scores(counts, "val")}


def fit(model: nn.Module, train: SegmentationData, val: SegmentationData, profile: Profile,
        out_dir: Path | str | None = None, *, seed: int = 0, resume: bool = True, device=None,
        progress: bool = True, on_epoch_end: Callable[[int, nn.Module], None] | None = None,
        stop_after: int | None = None, trained_on: dict | None = None) -> History:
    """Train ``model`` on ``train`` (uint8 arrays, moved to ``device`` whole) with ``profile``'s
    recipe, validating on ``val`` every epoch.

    ``out_dir`` receives ``last.pt`` every epoch, ``best.pt`` (best validation IoU) and
    ``history.json``; ``None`` keeps nothing. With ``resume`` a ``last.pt`` there is continued, if
    written with the same recipe and seed (else a :class:`CheckpointError`). ``seed`` seeds
    shuffling and augmentation (seed the initialisation yourself). ``on_epoch_end(epoch, evaluated)``
    runs after validation; ``stop_after`` ends early (to show resuming). ``trained_on``, a
    record of the training images (:func:`skinseg.lab.leakage.training_record`), is kept in the
    checkpoints. After ``fit``, ``model`` holds the last raw weights; ``best.pt`` the chosen ones.
    A resumed run rewrites a deleted ``history.json`` or ``best.pt`` from ``last.pt`` where it can
    (:func:`skinseg.train_edges.restore_run_files`), and refuses to go on without the best weights."""
    seed, stop_after = check_fit_arguments(train, val, profile, out_dir, seed, stop_after)  # before any work
    device, out_dir = resolve_device(device), Path(out_dir) if out_dir is not None else None
    model.to(device)
    loss_fn = build_loss(profile.loss)
    optimizer = build_optimizer(model, profile.lr, profile.weight_decay, device, profile.optimizer)
    step = TrainStep(model, optimizer, loss_fn, device, profile.augment, compile=profile.compile,
                     compile_mode=profile.compile_mode)
    ema = ExponentialMovingAverage(model, profile.ema_decay) if profile.ema_decay else None
    evaluated = ema.model if ema else model  # validated, and kept as best.pt
    recipe = training_recipe(profile, seed, trained_on)
    history = History(meta={"profile": profile.name, "seed": seed, "model": architecture(model),
                            "trained_on": {k: v for k, v in trained_on.items() if k != "ids"} if trained_on else None,
                            "device": str(device), "label": profile.label()})
    start = 1
    if resume and out_dir is not None and (out_dir / LAST).exists():
        state = load_checkpoint(out_dir / LAST, map_location=device)
        check_architecture(state, model, out_dir / LAST)
        changed = recipe_changes(state.get("recipe", {}), recipe)
        if changed:
            raise CheckpointError(f"{out_dir / LAST} was written by a run with another recipe ({'; '.join(changed)}); "
                                  f"resuming would mix the two. {RESTART}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step.scaler.load_state_dict(state["scaler"])
        if ema:
            ema.model.load_state_dict(state["ema"])
            ema.updates = state["ema_updates"]
        history, start = History.from_dict(state["history"]), state["epoch"] + 1
        restore_run_files(out_dir, state, evaluated)

    images, masks = to_device_tensors(train.images, train.masks, device)
    val_images, val_masks = to_device_tensors(val.images, val.masks, device)
    n, bs = len(images), min(profile.batch_size, len(images))
    steps = n // bs
    warmup = max(1, round(profile.warmup_epochs * steps))
    for epoch in range(start, min(profile.epochs, stop_after or profile.epochs) + 1):
        started = time.perf_counter()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(_epoch_seed(seed, epoch, 0))).to(device)
        augment = torch.Generator(device=device).manual_seed(_epoch_seed(seed, epoch, 1))
        losses, counts = [], []
        for i in tqdm(range(steps), desc=f"epoch {epoch}/{profile.epochs}", disable=not progress, leave=False):
            lr = learning_rate((epoch - 1) * steps + i, steps * profile.epochs, warmup, profile.lr, profile.schedule)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = order[i * bs:(i + 1) * bs]
            loss, logits, target = step(images[batch], masks[batch], augment)
            if ema:
                ema.update(model)
            losses.append(loss)
            counts.append(device_counts(logits > 0, target > 0.5))
        train_loss = float(torch.stack(losses).sum()) / steps
        if not math.isfinite(train_loss):
            kept = f"; the last good checkpoint is {out_dir / LAST}" if out_dir and epoch > 1 else ""
            raise TrainingError(f"the training loss became {train_loss} in epoch {epoch} (lr {profile.lr}, "
                                f"loss {profile.loss!r}){kept}. Lower the learning rate.")
        record = {"epoch": epoch, "train_loss": train_loss, **scores(counts, "train"),
                  **validate(evaluated, val_images, val_masks, loss_fn, profile.eval_batch_size, step.dtype,
                             step.memory_format), "lr": lr}
        record["seconds"] = time.perf_counter() - started
        record["images_per_s"] = steps * bs / record["seconds"]
        history.records.append(record)
        improved = record["val_iou"] > history.best_val_iou
        if improved:
            history.best_epoch, history.best_val_iou = epoch, record["val_iou"]
        if progress:
            tqdm.write(f"epoch {epoch:3d}  loss {train_loss:.4f}  train dice {record['train_dice']:.4f}  val dice "
                       f"{record['val_dice']:.4f}  val IoU {record['val_iou']:.4f}  {record['images_per_s']:.0f} img/s"
                       + ("  *" if improved else ""))
        if on_epoch_end is not None:
            on_epoch_end(epoch, evaluated)
        if out_dir is not None:
            if improved:
                save_best(out_dir / BEST, architecture(model), evaluated.state_dict(), epoch, record["val_iou"],
                          recipe["image_size"], trained_on)
            save_atomic({"arch": architecture(model), "model": model.state_dict(),
                         "ema": ema.model.state_dict() if ema else {}, "ema_updates": ema.updates if ema else 0,
                         "optimizer": optimizer.state_dict(), "scaler": step.scaler.state_dict(), "epoch": epoch,
                         "history": history.to_dict(), "recipe": recipe, "trained_on": trained_on}, out_dir / LAST)
            history.save(out_dir / HISTORY)
    model.eval()
    return history


def _epoch_seed(seed: int, epoch: int, stream: int) -> int:
    return (seed * 1_000_003 + epoch * 101 + stream) % (2 ** 63)


RECIPE_FIELDS = ("image_size", "epochs", "batch_size", "optimizer", "schedule", "lr", "weight_decay", "warmup_epochs",
                 "loss", "ema_decay", "augment", "max_train")


def training_recipe(profile: Profile, seed: int | None = None, trained_on: dict | None = None) -> dict:
    """What a resumed run must share with the run that wrote the checkpoint: the fields of ``profile``
    that change the training and, if given, the seed and the training images' digest."""
    recipe = {k: v for k, v in profile.to_dict().items() if k in RECIPE_FIELDS}
    if seed is not None:
        recipe["seed"] = seed
    if trained_on is not None:
        recipe["training_images"] = f"{trained_on['source']}, {trained_on['n']} images, {trained_on['ids_sha256']}"
    return json.loads(json.dumps(recipe))  # tuples as lists, as stored


def recipe_changes(stored: dict, recipe: dict) -> list[str]:
    """``"key old -> new"`` for every key of ``recipe`` whose value in ``stored`` differs."""
    return [f"{k} {stored.get(k)!r} -> {recipe[k]!r}" for k in recipe if stored.get(k) != recipe[k]]
