"""U-Net and Attention U-Net as built in the source article.

Both take ``(B, 3, H, W)`` float images (H and W divisible by 16) and return
``(B, 1, H, W)`` logits; ``sigmoid(logits) > 0.5`` is the lesion mask.
"""
from __future__ import annotations

import torch
from torch import nn

from .attention import AttentionGate
from .blocks import ConvBlock, UpConvBlock

DEPTH = 5  # encoder levels: width, 2w, 4w, 8w, 16w channels
STRIDE = 2 ** (DEPTH - 1)


class UNet(nn.Module):
    """U-Net with ``width`` base channels (64 in the article: 64 -> 1024).

    Args:
        width: channels of the first level; level ``k`` has ``width * 2**k``.
        in_channels: image channels (3 for RGB).

    ``forward(x)``: ``(B, in_channels, H, W)`` -> logits ``(B, 1, H, W)``. H and W must be
    divisible by 16 (four 2x2 poolings); otherwise a ``ValueError`` says so.
    """

    has_attention = False

    def __init__(self, width: int = 64, in_channels: int = 3) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be a positive number of channels, got {width}")
        self.width, self.in_channels = width, in_channels
        ch = [width * 2 ** k for k in range(DEPTH)]
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.encoder = nn.ModuleList([ConvBlock(in_channels, ch[0])] +
                                     [ConvBlock(ch[k - 1], ch[k]) for k in range(1, DEPTH)])
        # Decoder level k (k = 3..0) upsamples ch[k+1] -> ch[k] and fuses with skip k.
        self.up = nn.ModuleList([UpConvBlock(ch[k + 1], ch[k]) for k in range(DEPTH - 1)])
        self.decoder = nn.ModuleList([ConvBlock(2 * ch[k], ch[k]) for k in range(DEPTH - 1)])
        self.head = nn.Conv2d(ch[0], 1, kernel_size=1)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is ``(B, in_channels, H, W)`` with H, W divisible by 16."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"input must be (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if x.shape[2] % STRIDE or x.shape[3] % STRIDE:
            raise ValueError(f"input height and width must be divisible by {STRIDE}, got "
                             f"{x.shape[2]}x{x.shape[3]}; resize or pad the image first")

    def gate(self, level: int, g: torch.Tensor, skip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The skip as the decoder sees it: unchanged in U-Net."""
        return skip, None

    def forward_with_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and the attention maps of one forward pass.

        Returns ``(logits, psis)``: logits ``(B, 1, H, W)``; ``psis`` lists the gates'
        ``(B, 1, H / 2**k, W / 2**k)`` maps in (0, 1), finest level (k = 0) first. It is empty
        for a plain U-Net.
        """
        self.check_input(x)
        skips = []
        for k, block in enumerate(self.encoder):
            x = block(x if k == 0 else self.pool(x))
            skips.append(x)
        psis: list[torch.Tensor] = []
        for k in reversed(range(DEPTH - 1)):
            g = self.up[k](x)
            skip, psi = self.gate(k, g, skips[k])
            if psi is not None:
                psis.insert(0, psi)
            x = self.decoder[k](torch.cat([skip, g], dim=1))
        return self.head(x), psis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_attention(x)[0]


class AttentionUNet(UNet):
    """U-Net with an additive attention gate on each of the four skip connections.

    The gating signal is the upsampled decoder feature at the skip's resolution, and each
    gate's ``F_int`` is half the skip's channels, as in the article. ``forward_with_attention``
    also returns the four ψ maps.
    """

    has_attention = True

    def __init__(self, width: int = 64, in_channels: int = 3) -> None:
        super().__init__(width, in_channels)
        ch = [width * 2 ** k for k in range(DEPTH)]
        self.gates = nn.ModuleList([AttentionGate(ch[k], ch[k], max(ch[k] // 2, 1)) for k in range(DEPTH - 1)])

    def gate(self, level: int, g: torch.Tensor, skip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.gates[level](g, skip)
