"""Look inside a model: every stage's tensor shapes and parameters, and its receptive field,
measured on the real model with forward hooks during one forward pass."""
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


@torch.no_grad()
def _run(model: nn.Module, input_shape, named_modules) -> list[tuple[str, nn.Module, tuple, object]]:
    """One eval-mode forward pass of zeros of ``input_shape``: ``(name, module, inputs, output)`` of
    each hooked module, in the order they ran; the model is left in the mode it was in."""
    calls, was_training = [], model.training
    handles = [m.register_forward_hook(lambda m, i, o, n=n: calls.append((n, m, i, o))) for n, m in named_modules]
    try:
        model.eval()(torch.zeros(input_shape, device=next(model.parameters()).device))
        return calls
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()


def stage_table(model: nn.Module, input_shape=(1, 3, 192, 256)) -> pd.DataFrame:
    """Every stage of ``model`` in the order it runs, on a zero input of ``input_shape`` ``(B, C, H, W)``.

    Stages are the entries of ``ModuleList`` children (``encoder.0``, ``gates.3``, ...) and the
    other direct children (``pool``, ``head``); one that runs several times gets a row per call
    and its parameters on the first, so ``parameters`` adds up to :func:`count_parameters`.

    Returns: a DataFrame with columns ``stage``, ``block`` (class name), ``input`` and ``output``
    (shapes of the first tensor in and out) and ``parameters`` (int). Raises ``ValueError`` if some
    parameters are in no stage that ran.
    """
    seen, rows = set(), []
    for name, module, inputs, output in _run(model, input_shape, _stages(model)):
        output = output[0] if isinstance(output, (tuple, list)) else output  # a gate returns (x_hat, psi)
        rows.append({"stage": name, "block": type(module).__name__, "input": tuple(inputs[0].shape),
                     "output": tuple(output.shape),
                     "parameters": 0 if id(module) in seen else count_parameters(module)})
        seen.add(id(module))
    table = pd.DataFrame(rows, columns=["stage", "block", "input", "output", "parameters"])
    missing = count_parameters(model) - int(table["parameters"].sum())
    if missing:
        raise ValueError(f"{missing} parameters of {type(model).__name__} are in no stage that ran")
    return table


def receptive_field_table(model: nn.Module, input_shape=(1, 3, 192, 256)) -> pd.DataFrame:
    """The receptive field of ``model``'s output pixels, layer by layer (the textbook formula).

    The spatial layers (convolutions, poolings, upsamplings) are taken in the order they run as
    one chain, the longest path of a U-Net (skips are shortcuts). With ``j`` the input-pixel
    spacing of a layer's input, a kernel ``k`` of dilation ``d`` adds ``(k - 1) * d * j`` to the
    field, and ``j`` is scaled by input size / output size (an upsampling adds nothing).
    Measured fields (:func:`gradient_receptive_field`) scatter a little around this value.

    Returns: a DataFrame with one row per spatial layer: ``layer``, ``type``, ``kernel``
    (``(1, 1)`` for an upsampling), and after the layer ``output`` ``(H, W)``, ``jump`` and ``rf``
    ``(rh, rw)``, both in input pixels.
    """
    named = [(n, m) for n, m in model.named_modules() if isinstance(m, _SPATIAL)]
    jump, rf, rows = np.ones(2), np.ones(2), []
    for name, module, inputs, output in _run(model, input_shape, named):
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
    """``(height, width)`` in input pixels that one output pixel sees (last row of :func:`receptive_field_table`)."""
    table = receptive_field_table(model, input_shape)
    return table["rf"].iloc[-1] if len(table) else (1, 1)


def gradient_receptive_field(model: nn.Module, input_shape=(1, 3, 384, 384), position=None, *,
                             linear: bool = True, seed: int = 0) -> np.ndarray:
    """The measured receptive field of output pixels: ``|d logit[position] / d input|``.

    With ``linear`` the gradient goes through a copy whose ReLUs are the identity and whose
    max-poolings average (every connection then carries gradient); with ``linear=False``, through
    the model itself. The copy runs in eval mode and float64 on seeded noise; ``model`` is unchanged.

    Args:
        input_shape: ``(1, C, H, W)``, larger than the field or the border cuts it.
        position: ``(row, col)`` of the output pixel (the centre if ``None``), or a list of them.

    Returns: ``(H, W)`` float64 >= 0 (``|gradient|`` summed over channels), ``(N, H, W)`` for ``N`` positions.
    """
    net = deepcopy(model).eval().double().cpu()
    for module in list(net.modules()) if linear else []:
        for name, child in module.named_children():
            if isinstance(child, nn.ReLU):
                setattr(module, name, nn.Identity())
            elif isinstance(child, nn.MaxPool2d):
                setattr(module, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding))
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
