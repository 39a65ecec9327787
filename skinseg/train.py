"""Training: one :func:`fit` for the command line and the chapters.

AdamW with linear warm-up then cosine decay (or, as a profile chooses, Adam at a constant
learning rate); mixed precision (bf16 where supported, else
fp16 with gradient scaling, fp32 on CPU); channels_last and ``torch.compile`` on CUDA; an
exponential moving average (EMA) of the weights; validation every epoch, with the best
epoch chosen on validation IoU only; an atomic checkpoint every epoch that ``resume``
continues from, written by a background thread while the next epoch trains.

Randomness (shuffling, augmentation) is drawn from generators seeded by ``(seed, epoch)``,
so a resumed run repeats exactly what an uninterrupted one would have done.
"""
from __future__ import annotations

import copy
import functools
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from .atomic import write_text_atomic
from .checkpoint import BackgroundWriter, architecture, check_architecture, load_checkpoint, save_atomic
from .config import NO_AUGMENT, SCHEDULES, AugmentConfig, Profile
from .data.arrays import SegmentationData
from .data.augment import augment_batch
from .data.tensors import normalize, to_device_tensors, to_unit_float
from .device import autocast_dtype, resolve_device
from .errors import CheckpointError, ConfigError, TrainingError
from .leakage import training_record
from .lock import locks_folder
from .losses import build_loss
from .metrics import dice_from_counts, iou_from_counts

LAST = "last.pt"
BEST = "best.pt"
HISTORY = "history.json"


@dataclass
class History:
    """What :func:`fit` returns and saves as ``history.json``.

    ``records`` has one dict per epoch with ``epoch``, ``train_loss``, ``train_dice``,
    ``train_iou`` (on augmented batches), ``val_loss``, ``val_dice``, ``val_iou`` (mean
    per-image, of the weights that are evaluated: the EMA where used), ``lr``, ``seconds``
    and ``images_per_s``.
    """

    records: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    best_val_iou: float = -1.0
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"records": self.records, "best_epoch": self.best_epoch,
                "best_val_iou": self.best_val_iou, "meta": self.meta}

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        return cls(list(d["records"]), d["best_epoch"], d["best_val_iou"], dict(d.get("meta", {})))

    def save(self, path: Path) -> None:
        write_text_atomic(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: Path) -> "History":
        return cls.from_dict(json.loads(Path(path).read_text()))


def learning_rate(step: int, total_steps: int, warmup_steps: int, peak: float,
                  schedule: str = "warmup_cosine") -> float:
    """The learning rate of ``step`` (0-based) under ``schedule`` (one of :data:`~skinseg.config.SCHEDULES`).

    ``"warmup_cosine"``: linear warm-up to ``peak`` over ``warmup_steps``, then cosine decay
    to 0 at ``total_steps``. ``"constant"``: ``peak`` at every step.
    """
    if schedule not in SCHEDULES:
        raise ConfigError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if schedule == "constant":
        return peak
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _epoch_seed(seed: int, epoch: int, stream: int) -> int:
    return (seed * 1_000_003 + epoch * 101 + stream) % (2 ** 63)


class ExponentialMovingAverage:
    """EMA of every floating-point tensor of a model's state (parameters and BatchNorm statistics).

    The decay ramps up as ``min(decay, (1 + t) / (10 + t))`` so that early averages are not
    dominated by the random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay, self.updates = decay, 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self._slots: tuple[nn.Module, list] | None = None  # (the live model, its slots paired with the EMA's)

    def _pairs(self, model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The EMA's and ``model``'s floating-point tensors, in matching order.

        Walking the modules costs milliseconds of CPU per step, so where each tensor lives
        (its module's parameter or buffer dict, and its name) is found once; reading the
        tensors through those dicts each step also sees buffers that ``model.to()`` replaced."""
        if self._slots is None or self._slots[0] is not model:
            ema_slots, live_slots = _float_slots(self.model), _float_slots(model)
            if list(ema_slots) != list(live_slots):
                raise ValueError(f"the EMA averages a {type(self.model).__name__}; "
                                 f"got a {type(model).__name__} with other parameters and buffers")
            self._slots = (model, list(zip(ema_slots.values(), live_slots.values())))
        pairs = self._slots[1]
        return [store[k] for (store, k), _ in pairs], [store[k] for _, (store, k) in pairs]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(*self._pairs(model), 1 - d)


def _float_slots(model: nn.Module) -> dict[str, tuple[dict, str]]:
    """Where every floating-point parameter and buffer of ``model`` lives, by qualified name:
    ``(store, name)`` with ``store[name]`` the tensor (its module's ``_parameters`` or ``_buffers``)."""
    return {f"{prefix}.{name}".lstrip("."): (store, name)
            for prefix, module in model.named_modules() for store in (module._parameters, module._buffers)
            for name, tensor in store.items() if tensor is not None and tensor.is_floating_point()}


def compile_enabled(compile: str, device: torch.device) -> bool:
    """Whether a ``compile`` setting (``"auto"``, ``"on"``, ``"off"``) compiles on ``device``: auto means CUDA only."""
    return compile == "on" or (compile == "auto" and device.type == "cuda")


OPTIMIZERS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, device: torch.device,
                    kind: str = "adamw") -> torch.optim.Optimizer:
    """AdamW (or, with ``kind="adam"``, Adam) over ``model``'s parameters; on CUDA its fused
    update (a few kernels for all parameters)."""
    return OPTIMIZERS[kind](model.parameters(), lr=lr, weight_decay=weight_decay, fused=device.type == "cuda")


class TrainStep:
    """One optimisation step: augment, normalise, forward, loss, backward, update.

    Holds the fast-path choices, so that :func:`fit` and the benchmark run the same code.

    Args:
        model: the network, already on ``device``.
        optimizer: its optimiser.
        loss_fn: ``(logits, target) -> scalar``.
        augment: the augmentation recipe (``NO_AUGMENT`` to switch it off).
        amp: ``"auto"`` (bf16/fp16 on CUDA, fp32 on CPU), ``"off"``, ``"bf16"`` or ``"fp16"``.
        channels_last: ``"auto"`` (on for CUDA), ``"on"`` or ``"off"``.
        compile: ``"auto"`` (CUDA only), ``"on"`` or ``"off"``; if compiling fails, the step
            falls back to eager mode with a warning.
        compile_mode: ``"default"`` or ``"reduce-overhead"`` (compiled step replayed as a CUDA graph).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable,
                 device: torch.device, augment: AugmentConfig = NO_AUGMENT, amp: str = "auto",
                 channels_last: str = "auto", compile: str = "auto", compile_mode: str = "default") -> None:
        self.model, self.optimizer, self.loss_fn, self.device, self.augment = model, optimizer, loss_fn, device, augment
        cuda = device.type == "cuda"
        if cuda:
            torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
        self.dtype = {"auto": autocast_dtype(device), "off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]
        self.memory_format = torch.channels_last if (channels_last == "on" or (channels_last == "auto" and cuda)) \
            else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)
        self.compiled = compile_enabled(compile, device)
        # CUDA graphs replay into fixed output buffers: each step must be marked as a new one.
        self._mark_step = self.compiled and compile_mode == "reduce-overhead" and cuda
        self._forward = torch.compile(self._forward_loss, mode=compile_mode) if self.compiled else self._forward_loss

    def _forward_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            logits = self.model(normalize(x))
        return self.loss_fn(logits, y), logits.detach()

    def prepare(self, images_uint8: torch.Tensor, masks_uint8: torch.Tensor,
                generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 batch -> augmented float ``(x, y)`` in [0, 1] and {0, 1}, in the model's memory format."""
        x, y = to_unit_float(images_uint8), masks_uint8.float()
        if generator is not None:
            x, y = augment_batch(x, y, self.augment, generator)
        return x.contiguous(memory_format=self.memory_format), y

    def __call__(self, images_uint8: torch.Tensor, masks_uint8: torch.Tensor,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run one step on a uint8 batch; returns ``(loss, logits, target)`` without synchronising."""
        x, y = self.prepare(images_uint8, masks_uint8, generator)
        loss, logits = self.update(x, y)
        return loss, logits, y

    def update(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward, loss, backward and optimiser step on a prepared batch (see :meth:`prepare`).

        Returns the detached ``(loss, logits)``."""
        self.model.train()
        if self._mark_step:
            torch.compiler.cudagraph_mark_step_begin()
        try:
            loss, logits = self._forward(x, y)
        except Exception as err:  # noqa: BLE001 - any compiler failure falls back to eager
            if not self.compiled:
                raise
            warnings.warn(f"torch.compile failed ({type(err).__name__}: {err}); training in eager mode", stacklevel=2)
            self.compiled, self._mark_step, self._forward = False, False, self._forward_loss
            loss, logits = self._forward(x, y)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach(), logits


@torch.no_grad()
def validate(model: nn.Module, images: torch.Tensor, masks: torch.Tensor, loss_fn: Callable,
             batch_size: int = 32, dtype: torch.dtype | None = None,
             memory_format=torch.contiguous_format) -> dict[str, float]:
    """Mean per-image ``val_dice`` and ``val_iou`` (threshold 0.5) and mean ``val_loss`` on uint8 tensors."""
    model.eval()
    counts, losses = [], []
    for i in range(0, len(images), batch_size):
        x = normalize(to_unit_float(images[i:i + batch_size])).contiguous(memory_format=memory_format)
        y = masks[i:i + batch_size].float()
        with torch.autocast(x.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(x).float()
        losses.append(loss_fn(logits, y) * len(x))
        counts.append(_device_counts(logits, y))
    tp, fp, fn = torch.cat(counts, 1).cpu().numpy()
    return {"val_loss": float(torch.stack(losses).sum()) / len(images),
            "val_dice": float(dice_from_counts(tp, fp, fn).mean()),
            "val_iou": float(iou_from_counts(tp, fp, fn).mean())}


def _device_counts(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(3, B)`` per-image tp, fp, fn of ``logits > 0`` against ``target``, left on the device."""
    p, t = (logits > 0).flatten(1), (target > 0.5).flatten(1)
    return torch.stack([(p & t).sum(1), (p & ~t).sum(1), (~p & t).sum(1)])


def _batch_scores(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum over the batch of per-image (dice, iou), as a device tensor (no synchronisation)."""
    tp, fp, fn = _device_counts(logits, target).float()
    dice = torch.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn).clamp(min=1), 1.0)
    iou = torch.where(tp + fp + fn > 0, tp / (tp + fp + fn).clamp(min=1), 1.0)
    return torch.stack([dice.sum(), iou.sum()])


@locks_folder("out_dir")
def fit(model: nn.Module, train: SegmentationData, val: SegmentationData, profile: Profile,
        out_dir: Path | str | None = None, *, seed: int = 0, resume: bool = True, device=None,
        progress: bool = True, on_epoch_end: Callable[[int, nn.Module], None] | None = None,
        stop_after: int | None = None) -> History:
    """Train ``model`` on ``train``, validating on ``val`` every epoch.

    Args:
        model: a :class:`~skinseg.models.UNet` or :class:`~skinseg.models.AttentionUNet`.
        train, val: the splits, as uint8 arrays (moved to ``device`` once, as a whole).
        profile: the recipe (epochs, batch size, learning rate, loss, augmentation, EMA, compile).
        out_dir: where ``last.pt`` (every epoch), ``best.pt`` (best validation IoU) and
            ``history.json`` go; ``None`` keeps nothing on disk. It is locked while ``fit``
            runs: another process that trains into it stops with a
            :class:`~skinseg.errors.FolderInUseError` (:mod:`skinseg.lock`).
        seed: seeds shuffling and augmentation (seed the model's initialisation yourself,
            with :func:`skinseg.device.seed_everything`, before building it).
        resume: continue from ``out_dir/last.pt`` if it exists. It must have been written with
            the same recipe (:func:`training_recipe`) and seed; otherwise a
            :class:`~skinseg.errors.CheckpointError` says what differs.
        device: default CUDA when available, else CPU.
        progress: show ``tqdm`` progress bars.
        on_epoch_end: called as ``on_epoch_end(epoch, evaluated_model)`` after validation
            (``evaluated_model`` is the EMA model where used).
        stop_after: stop after this epoch (for demonstrations of resuming).

    Returns: the :class:`History`. After it, ``model`` holds the last epoch's raw weights;
    the validation-selected weights are in ``best.pt``
    (:func:`skinseg.checkpoint.load_model`).
    """
    device = resolve_device(device)
    out_dir = Path(out_dir) if out_dir is not None else None
    model.to(device)
    loss_fn = build_loss(profile.loss)
    optimizer = build_optimizer(model, profile.lr, profile.weight_decay, device, profile.optimizer)
    step_fn = TrainStep(model, optimizer, loss_fn, device, profile.augment, compile=profile.compile,
                        compile_mode=profile.compile_mode)
    ema = ExponentialMovingAverage(model, profile.ema_decay) if profile.ema_decay else None
    evaluated = ema.model if ema else model
    recipe = training_recipe(profile, seed)

    trained_on = training_record(train)  # in every checkpoint, for skinseg.leakage
    history = History(meta={"profile": profile.name, "seed": seed, "model": architecture(model),
                            "trained_on": training_record(train, with_ids=False),
                            "device": str(device), "label": profile.label()})
    start_epoch = 1
    if resume and out_dir is not None and (out_dir / LAST).exists():
        state = load_checkpoint(out_dir / LAST, map_location=device)
        check_architecture(state, model, out_dir / LAST)
        _check_recipe(state, recipe, out_dir / LAST)
        _check_training_data(state, trained_on, out_dir / LAST)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step_fn.scaler.load_state_dict(state["scaler"])
        if ema:
            ema.model.load_state_dict(state["ema"])
            ema.updates = state["ema_updates"]
        history = History.from_dict(state["history"])
        start_epoch = state["epoch"] + 1

    images, masks = to_device_tensors(train.images, train.masks, device)
    val_images, val_masks = to_device_tensors(val.images, val.masks, device)
    n, bs = len(images), min(profile.batch_size, len(images))
    steps_per_epoch = n // bs
    total_steps = steps_per_epoch * profile.epochs
    warmup_steps = max(1, round(profile.warmup_epochs * steps_per_epoch))
    last_epoch = min(profile.epochs, stop_after or profile.epochs)

    writer = BackgroundWriter() if out_dir is not None else None
    try:
        for epoch in range(start_epoch, last_epoch + 1):
            t0 = time.perf_counter()
            order = torch.randperm(n, generator=torch.Generator().manual_seed(_epoch_seed(seed, epoch, 0))).to(device)
            aug_gen = torch.Generator(device=device).manual_seed(_epoch_seed(seed, epoch, 1))
            loss_sum = torch.zeros((), device=device)
            score_sum = torch.zeros(2, device=device)
            bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{profile.epochs}", disable=not progress, leave=False)
            for i in bar:
                step = (epoch - 1) * steps_per_epoch + i
                lr = learning_rate(step, total_steps, warmup_steps, profile.lr, profile.schedule)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                idx = order[i * bs:(i + 1) * bs]
                loss, logits, target = step_fn(images[idx], masks[idx], aug_gen)
                if ema:
                    ema.update(model)
                loss_sum += loss
                score_sum += _batch_scores(logits, target)
            train_loss = float(loss_sum) / steps_per_epoch
            if not math.isfinite(train_loss):
                where = f"; the last good checkpoint is {out_dir / LAST}" if out_dir and epoch > 1 else ""
                raise TrainingError(f"the training loss became {train_loss} in epoch {epoch} "
                                    f"(lr {profile.lr}, loss {profile.loss!r}){where}. Lower the learning rate.")
            train_dice, train_iou = (score_sum / (steps_per_epoch * bs)).tolist()
            scores = validate(evaluated, val_images, val_masks, loss_fn, profile.eval_batch_size,
                              step_fn.dtype, step_fn.memory_format)
            seconds = time.perf_counter() - t0
            record = {"epoch": epoch, "train_loss": train_loss, "train_dice": train_dice, "train_iou": train_iou,
                      **scores, "lr": lr, "seconds": seconds, "images_per_s": steps_per_epoch * bs / seconds}
            history.records.append(record)
            improved = scores["val_iou"] > history.best_val_iou
            if improved:
                history.best_epoch, history.best_val_iou = epoch, scores["val_iou"]
            if progress:
                tqdm.write(f"epoch {epoch:3d}  loss {train_loss:.4f}  train dice {train_dice:.4f}  "
                           f"val dice {scores['val_dice']:.4f}  val IoU {scores['val_iou']:.4f}  "
                           f"{record['images_per_s']:.0f} img/s" + ("  *" if improved else ""))
            if on_epoch_end is not None:
                on_epoch_end(epoch, evaluated)
            if writer is not None:
                writer.submit(_checkpoint_writes(out_dir, model, ema, optimizer, step_fn, epoch,
                                                 scores["val_iou"] if improved else None, history, recipe, trained_on))
    finally:
        if writer is not None:
            writer.wait()
    model.eval()
    return history


# Recipe fields added after checkpoints and results were first written, with the value every
# earlier run had, so that those runs still compare (and resume) as what they were.
ADDED_RECIPE_FIELDS = {"optimizer": "adamw", "schedule": "warmup_cosine"}
RECIPE_FIELDS = ("image_size", "epochs", "batch_size", "optimizer", "schedule", "lr", "weight_decay", "warmup_epochs",
                 "loss", "ema_decay", "augment", "max_train")


def training_recipe(profile: Profile, seed: int | None = None) -> dict:
    """What a resumed run must share with the run that wrote the checkpoint: the fields of
    ``profile`` that change the training (the schedule, the data, the loss) and, if given, the seed."""
    recipe = {k: v for k, v in profile.to_dict().items() if k in RECIPE_FIELDS}
    if seed is not None:
        recipe["seed"] = seed
    return json.loads(json.dumps(recipe))  # tuples as lists, as stored


def recipe_changes(stored: dict, recipe: dict) -> list[str]:
    """``"key old -> new"`` for every key of ``recipe`` whose value in ``stored`` differs."""
    stored = {**ADDED_RECIPE_FIELDS, **stored}
    return [f"{k} {stored.get(k)!r} -> {recipe[k]!r}" for k in recipe if stored.get(k) != recipe[k]]


def _check_training_data(state: dict, trained_on: dict, path: Path) -> None:
    stored = state.get("trained_on")
    if stored is not None and stored["ids_sha256"] != trained_on["ids_sha256"]:
        raise CheckpointError(f"{path} was trained on other images ({stored['source']}, {stored['n']} images) than "
                              f"{trained_on['source']} ({trained_on['n']} images); resuming would mix the two. "
                              "Use another output folder, or resume=False (--no-resume) to start again")


def _check_recipe(state: dict, recipe: dict, path: Path) -> None:
    stored = state.get("recipe")
    if stored is None:  # written before checkpoints recorded their recipe
        return
    changed = recipe_changes(stored, recipe)
    if changed:
        raise CheckpointError(f"{path} was written by a run with another recipe ({'; '.join(changed)}); "
                              "resuming would mix the two. Use another output folder, or resume=False "
                              "(--no-resume) to start again")


def _cpu_copy(obj):
    """A copy of ``obj`` (nested dicts, lists and tensors) with every tensor copied to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True).contiguous()
    if isinstance(obj, dict):
        return {k: _cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copy(v) for v in obj)
    return obj


def _cpu_state(model: nn.Module) -> dict:
    return _cpu_copy(model.state_dict())


def _checkpoint_writes(out_dir: Path, model: nn.Module, ema, optimizer, step_fn: TrainStep, epoch: int,
                       best_val_iou: float | None, history: History, recipe: dict, trained_on: dict | None = None) -> list:
    """The files of one epoch, as ``(write, path)`` pairs for :class:`BackgroundWriter`: ``best.pt`` when
    the epoch improved (``best_val_iou`` given), then ``last.pt`` and ``history.json``. Both
    checkpoints hold ``trained_on``, the :func:`skinseg.leakage.training_record` of the training data.

    Everything is copied to the CPU here, so that training can change the live tensors while
    the files are written.
    """
    arch, snapshot = architecture(model), History.from_dict(copy.deepcopy(history.to_dict()))
    model_state = _cpu_state(model)
    ema_state = _cpu_state(ema.model) if ema else {}
    writes = []
    if best_val_iou is not None:  # the evaluated weights: the EMA's where there is one
        best = {"arch": arch, "model": ema_state if ema else model_state, "epoch": epoch, "val_iou": best_val_iou,
                "image_size": recipe["image_size"],  # the input size predict and evaluate resize to
                "trained_on": trained_on}
        writes.append((functools.partial(save_atomic, best), out_dir / BEST))
    last = {"arch": arch, "model": model_state, "ema": ema_state,
            "ema_updates": ema.updates if ema else 0, "optimizer": _cpu_copy(optimizer.state_dict()),
            "scaler": step_fn.scaler.state_dict(), "epoch": epoch, "history": snapshot.to_dict(),
            "recipe": recipe, "trained_on": trained_on}
    writes.append((functools.partial(save_atomic, last), out_dir / LAST))
    writes.append((snapshot.save, out_dir / HISTORY))
    return writes
