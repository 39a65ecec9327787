"""The two building blocks shared by U-Net and Attention U-Net."""
from __future__ import annotations

from torch import nn


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions (bias on, padding 1), each followed by BatchNorm and ReLU.

    ``(B, in_channels, H, W) -> (B, out_channels, H, W)``. With padding 1 the spatial size
    is kept, which is why the article's crop-before-concatenate step does nothing.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=True),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=True),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class UpConvBlock(nn.Sequential):
    """Nearest-neighbour x2 upsampling, then a 3x3 convolution, BatchNorm and ReLU.

    ``(B, in_channels, H, W) -> (B, out_channels, 2H, 2W)``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=True),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


def conv_bn(in_channels: int, out_channels: int) -> nn.Sequential:
    """A 1x1 convolution (bias on) followed by BatchNorm: the gate's linear maps."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=True),
                         nn.BatchNorm2d(out_channels))


def count_parameters(module: nn.Module) -> int:
    """The number of trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


