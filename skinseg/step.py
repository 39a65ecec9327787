"""One training step, :class:`TrainStep`, with the fast paths it may take; :func:`skinseg.train.fit`
and the benchmark (:mod:`skinseg.lab.bench`) run the same code."""
from __future__ import annotations

import warnings
from typing import Callable

import torch
from torch import nn

from .config import NO_AUGMENT, OPTIMIZERS, AugmentConfig
from .data.augment import augment_batch
from .data.tensors import normalize, to_unit_float
from .device import autocast, autocast_dtype


def compile_enabled(compile: str, device: torch.device) -> bool:
    """Whether a ``compile`` setting (``"auto"``, ``"on"``, ``"off"``) compiles on ``device``: auto means CUDA only."""
    return compile == "on" or (compile == "auto" and device.type == "cuda")


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, device: torch.device,
                    kind: str = "adamw") -> torch.optim.Optimizer:
    """AdamW (or Adam) over ``model``'s parameters; on CUDA the fused update (a few kernels for all)."""
    return getattr(torch.optim, OPTIMIZERS[kind])(model.parameters(), lr=lr, weight_decay=weight_decay,
                                                  fused=device.type == "cuda")


class TrainStep:
    """One optimisation step: augment, normalise, forward, loss, backward, update; shared by
    :func:`fit` and the benchmark. ``amp``: ``"auto"`` (bf16/fp16 on CUDA, fp32 on CPU), ``"off"``,
    ``"bf16"`` or ``"fp16"``; ``channels_last``: ``"auto"`` (CUDA), ``"on"``, ``"off"``; ``compile``:
    ``"auto"`` (CUDA), ``"on"``, ``"off"`` (a failing compiler falls back to eager with a warning);
    ``compile_mode``: ``"default"`` or ``"reduce-overhead"`` (the step replayed as a CUDA graph)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable,
                 device: torch.device, augment: AugmentConfig = NO_AUGMENT, amp: str = "auto",
                 channels_last: str = "auto", compile: str = "auto", compile_mode: str = "default") -> None:
        self.model, self.optimizer, self.loss_fn, self.device, self.augment = model, optimizer, loss_fn, device, augment
        cuda = device.type == "cuda"
        if cuda:
            torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
        self.dtype = {"auto": autocast_dtype(device), "off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]
        self.memory_format = torch.channels_last if channels_last == "on" or (channels_last == "auto" and cuda) \
            else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)
        self.compiled = compile_enabled(compile, device)
        self._mark_step = self.compiled and compile_mode == "reduce-overhead" and cuda  # each replay is a new step
        self._forward = torch.compile(self._forward_loss, mode=compile_mode) if self.compiled else self._forward_loss

    def _forward_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast(self.device, self.dtype):
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
        """One step on a uint8 batch; returns ``(loss, logits, target)`` without waiting for the device."""
        x, y = self.prepare(images_uint8, masks_uint8, generator)
        return (*self.update(x, y), y)

    def update(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward, loss, backward and optimiser step on a prepared batch; returns the detached ``(loss, logits)``."""
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
