"""The additive soft-attention gate of Attention U-Net (Oktay et al., 2018)."""
from __future__ import annotations

import torch
from torch import nn

from .blocks import conv_bn


class AttentionGate(nn.Module):
    r"""Additive attention on a skip connection.

    .. math::
        \psi = \sigma\big(\mathrm{BN}(W_\psi\, \mathrm{ReLU}(\mathrm{BN}(W_g g) + \mathrm{BN}(W_x x)))\big),
        \qquad \hat x = \psi \cdot x

    Args:
        gate_channels: channels ``F_g`` of the gating signal ``g``.
        skip_channels: channels ``F_l`` of the skip feature ``x``.
        inter_channels: ``F_int``, the width of the joint space (the article uses ``F_l / 2``).

    Shapes: ``g`` is ``(B, F_g, H, W)`` and ``x`` is ``(B, F_l, H, W)`` at the same
    resolution (the gating signal is the upsampled decoder feature). :meth:`forward`
    returns ``(x_hat, psi)`` with ``x_hat`` shaped like ``x`` and ``psi`` ``(B, 1, H, W)``
    in (0, 1).
    """

    def __init__(self, gate_channels: int, skip_channels: int, inter_channels: int) -> None:
        super().__init__()
        self.W_g = conv_bn(gate_channels, inter_channels)
        self.W_x = conv_bn(skip_channels, inter_channels)
        self.psi = nn.Sequential(conv_bn(inter_channels, 1), nn.Sigmoid())
        self.relu = nn.ReLU(inplace=True)

    def forward(self, g: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        psi = self.psi(self.relu(self.W_g(g) + self.W_x(x)))
        return x * psi, psi
