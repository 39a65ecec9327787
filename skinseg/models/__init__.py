"""Segmentation models: :class:`UNet` and :class:`AttentionUNet`."""
from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from .attention import AttentionGate
from .blocks import ConvBlock, UpConvBlock, count_parameters
from .unet import AttentionUNet, UNet

MODELS = {"unet": UNet, "attention_unet": AttentionUNet}


def build_model(name: str, width: int = 64) -> nn.Module:
    """A fresh model by name: ``"unet"`` or ``"attention_unet"``, with ``width`` base channels."""
    if name not in MODELS:
        raise ConfigError(f"model must be one of {sorted(MODELS)}, got {name!r}")
    return MODELS[name](width=width)


def model_name(model: nn.Module) -> str:
    """The registry name of ``model`` (inverse of :func:`build_model`)."""
    for name, cls in MODELS.items():
        if type(model) is cls:
            return name
    raise ConfigError(f"unknown model class {type(model).__name__}")


__all__ = ["AttentionGate", "AttentionUNet", "ConvBlock", "MODELS", "UNet", "UpConvBlock",
           "build_model", "count_parameters", "model_name"]
