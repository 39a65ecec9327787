"""Look inside a model: every stage's tensor shapes and parameters, and its receptive field.

Everything here is measured on the real model: shapes come from forward hooks during one
forward pass, parameter counts from the modules' own parameters, and the receptive field
from the kernel sizes of the layers that ran and the sizes of the tensors between them.
"""
from __future__ import annotations

from copy import deepcopy

import numpy as np
import pandas as pd
import torch
from torch import nn

from .blocks import count_parameters

# The layers that change where an output pixel looks in the input.
_SPATIAL = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.Upsample)


def _stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's stages: each entry of a ``ModuleList`` child, and every other direct child."""
    stages = []
    for name, child in model.named_children():
        if isinstance(child, nn.ModuleList):
            stages += [(f"{name}.{i}", m) for i, m in enumerate(child)]
        else:
            stages.append((name, child))
    return stages


def _shape(value) -> tuple[int, ...]:
    """The shape of a tensor, or of the first tensor of a tuple (a gate returns ``(x_hat, psi)``)."""
    if isinstance(value, (tuple, list)):
        value = value[0]
    return tuple(value.shape)


class _Recorder:
    """Forward hooks that append ``(name, module, inputs, output)`` in the order modules run."""

    def __init__(self, named_modules) -> None:
        self.calls: list[tuple[str, nn.Module, tuple, object]] = []
        self.handles = [m.register_forward_hook(self._hook(n)) for n, m in named_modules]

    def _hook(self, name):
        def hook(module, inputs, output):
            self.calls.append((name, module, inputs, output))
        return hook

    def __enter__(self) -> "_Recorder":
        return self

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()


@torch.no_grad()
def _run(model: nn.Module, input_shape, named_modules) -> list:
    """One eval-mode forward pass of zeros of ``input_shape``; the hooked calls in order."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        with _Recorder(named_modules) as recorder:
            model(torch.zeros(input_shape, device=device))
        return recorder.calls
    finally:
        model.train(was_training)


def stage_table(model: nn.Module, input_shape=(1, 3, 192, 256)) -> pd.DataFrame:
    """Every stage of ``model`` in the order it runs, with its tensor shapes and parameters.

    The stages are the entries of the model's ``ModuleList`` children (``encoder.0``,
    ``up.3``, ``decoder.3``, ``gates.3``, ...) and its other direct children (``pool``,
    ``head``). A stage that runs several times (the parameter-free ``pool``) gets one row
    per call; its parameters are counted on its first row only, so the ``parameters``
    column adds up to :func:`count_parameters` of the model.

    Args:
        model: an ``nn.Module`` such as :class:`~skinseg.models.UNet`; it is run once in
            eval mode without gradients and left in the mode it was in.
        input_shape: ``(B, C, H, W)`` of the zero input.

    Returns: a DataFrame with columns ``stage`` (name), ``block`` (class name), ``input``
    (shape of the first input tensor), ``output`` (shape of the output, the first tensor for
    a stage that returns several) and ``parameters`` (int).
    """
    calls = _run(model, input_shape, _stages(model))
    seen: set[int] = set()
    rows = []
    for name, module, inputs, output in calls:
        first = id(module) not in seen
        seen.add(id(module))
        rows.append({"stage": name, "block": type(module).__name__, "input": tuple(inputs[0].shape),
                     "output": _shape(output), "parameters": count_parameters(module) if first else 0})
    table = pd.DataFrame(rows, columns=["stage", "block", "input", "output", "parameters"])
    missing = count_parameters(model) - int(table["parameters"].sum())
    if missing:
        raise ValueError(f"{missing} parameters of {type(model).__name__} are in no stage that ran")
    return table


def receptive_field_table(model: nn.Module, input_shape=(1, 3, 192, 256)) -> pd.DataFrame:
    """The receptive field of ``model``'s output pixels, layer by layer.

    The spatial layers (convolutions, poolings, upsamplings) are taken in the order they run
    and treated as one chain, which is the longest path through an encoder-decoder whose
    skip connections are shortcuts: U-Net and Attention U-Net (their gates' 1x1 convolutions
    add nothing). Along the chain, with ``j`` the distance in input pixels between two
    neighbouring positions of a layer's input and ``r`` the receptive field so far,

    * a layer with kernel ``k`` and dilation ``d`` gives ``r += (k - 1) * d * j``;
    * the layer's output spacing is ``j * (input size / output size)``: doubled by a 2x2
      pooling, halved by a x2 upsampling (which itself adds nothing: each output pixel
      copies one input pixel).

    This is the textbook formula. With stride-2 poolings and x2 upsamplings the exact field
    of a pixel also depends on where it sits relative to the coarse grids (a window of an even
    number of fine positions covers ``n / 2`` or ``n / 2 + 1`` coarse ones), so measured
    fields (:func:`gradient_receptive_field`) scatter a little around this value.

    Returns: a DataFrame with one row per spatial layer: ``layer`` (module name), ``type``,
    ``kernel`` (``(kh, kw)``, ``(1, 1)`` for an upsampling), ``output`` (``(H, W)`` after
    the layer), ``jump`` (``(jh, jw)`` in input pixels, after the layer) and ``rf``
    (``(rh, rw)`` in input pixels, after the layer).
    """
    named = [(n, m) for n, m in model.named_modules() if isinstance(m, _SPATIAL)]
    calls = _run(model, input_shape, named)
    jump = np.ones(2)
    rf = np.ones(2)
    rows = []
    for name, module, inputs, output in calls:
        if isinstance(module, nn.Upsample):
            kernel, dilation = np.ones(2), np.ones(2)
        else:
            kernel = np.broadcast_to(np.asarray(module.kernel_size), 2).astype(float)
            dilation = np.broadcast_to(np.asarray(getattr(module, "dilation", 1)), 2).astype(float)
        rf = rf + (kernel - 1) * dilation * jump
        size_in = np.asarray(inputs[0].shape[-2:], dtype=float)
        size_out = np.asarray(output.shape[-2:], dtype=float)
        jump = jump * size_in / size_out
        rows.append({"layer": name, "type": type(module).__name__, "kernel": tuple(int(k) for k in kernel),
                     "output": tuple(int(s) for s in size_out), "jump": tuple(float(j) for j in jump),
                     "rf": tuple(int(round(r)) for r in rf)})
    return pd.DataFrame(rows, columns=["layer", "type", "kernel", "output", "jump", "rf"])


def receptive_field(model: nn.Module, input_shape=(1, 3, 192, 256)) -> tuple[int, int]:
    """``(height, width)`` in input pixels of the region one output pixel can see
    (the last row of :func:`receptive_field_table`)."""
    table = receptive_field_table(model, input_shape)
    return table["rf"].iloc[-1] if len(table) else (1, 1)


def _linearized(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every ReLU made the identity and every max-pooling an average
    pooling of the same window: the same connections, but every one of them carries gradient."""
    copy = deepcopy(model)
    for module in copy.modules():
        for name, child in module.named_children():
            if isinstance(child, nn.ReLU):
                setattr(module, name, nn.Identity())
            elif isinstance(child, nn.MaxPool2d):
                setattr(module, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding))
    return copy


def gradient_receptive_field(model: nn.Module, input_shape=(1, 3, 384, 384), position=None, *,
                             linear: bool = True, seed: int = 0) -> np.ndarray:
    """The measured receptive field of output pixels: ``|d logit[position] / d input|``.

    A check of :func:`receptive_field` that knows nothing about kernels or strides: the input
    pixels an output pixel depends on are those with a non-zero gradient. With ``linear``
    (the default) the gradient is taken through a copy of the model whose ReLUs are the
    identity and whose max-poolings are average poolings of the same window, so a pixel
    counts whenever a chain of connections reaches it, whatever the weights; with
    ``linear=False`` it is the gradient of the model itself (ReLUs and max-poolings then
    cut some paths). The copy runs in eval mode and float64 on seeded Gaussian noise; the
    model is not changed.

    Args:
        input_shape: ``(1, C, H, W)``; choose H and W larger than the field, or the image
            border cuts it.
        position: ``(row, col)`` of the output pixel (the centre if ``None``), or a list of
            them, measured together in one batched pass (eval mode keeps the images of a
            batch independent).

    Returns: ``(H, W)`` float64 >= 0, the gradient's absolute value summed over channels,
    or ``(N, H, W)`` for a list of ``N`` positions.
    """
    net = _linearized(model) if linear else deepcopy(model)
    net.eval().double().cpu()
    generator = torch.Generator().manual_seed(seed)
    single = position is None or isinstance(position[0], (int, np.integer))
    positions = [position] if single else list(position)
    x = torch.randn(input_shape, generator=generator, dtype=torch.float64)
    x = x.expand(len(positions), *x.shape[1:]).clone().requires_grad_(True)
    out = net(x)
    centre = (out.shape[2] // 2, out.shape[3] // 2)
    picked = [out[i, 0, p[0], p[1]] for i, p in enumerate(centre if p is None else p for p in positions)]
    torch.stack(picked).sum().backward()
    fields = x.grad.abs().sum(1).numpy()
    return fields[0] if single else fields


def extent(mask: np.ndarray) -> tuple[int, int]:
    """``(height, width)`` of the bounding box of the non-zero pixels of a 2-D array (0, 0 if none)."""
    rows, cols = np.nonzero(mask)
    if len(rows) == 0:
        return 0, 0
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
