"""Random augmentation on the device, applied identically to images and masks.

Batched torch code (no torchvision), so it runs on the GPU next to the model. One
``grid_sample`` applies all the geometry (flips, turns, a small rotation, scaling and
translation), filling uncovered corners by reflection; colour jitter (brightness, contrast,
saturation, hue) touches the image only.

``geometry = "rigid"`` (the default) rotates in pixels, so a round lesion stays round, and on a
non-square image draws quarter turns from the two that fit its frame, 0° and 180° (with the
flips: the four views of the test-time augmentation ``"d4"``). ``"stretch"`` rotates in
``F.affine_grid``'s normalised coordinates, which distorts non-square images; the runs of
``results/isic2017_16ep`` were trained so. Chapter 1 of the book shows both.

``config``: the recipe's :class:`skinseg.config.AugmentConfig`, or anything with its fields.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _uniform(n: int, amount: float, generator: torch.Generator, device) -> torch.Tensor:
    return (torch.rand(n, generator=generator, device=device) * 2 - 1) * amount


def random_affine(n: int, config, generator: torch.Generator, device, *,
                  size: tuple[int, int]) -> torch.Tensor:
    """``(n, 2, 3)`` affine matrices in normalised coordinates (for ``F.affine_grid``) of random
    flips, turns, rotations, scalings and translations of images of ``size = (H, W)`` pixels.

    With ``config.geometry == "rigid"`` the rotation is rigid in pixels (``D^-1 R D`` with
    ``D = diag(W, H)``) and quarter turns are 0° or 180° unless ``H == W``.
    """
    height, width = size
    rigid = config.geometry == "rigid"
    angle = torch.deg2rad(_uniform(n, config.rotate, generator, device))
    if config.rot90:
        turns = torch.randint(0, 4, (n,), generator=generator, device=device)
        if rigid and height != width:
            turns = 2 * (turns % 2)  # a quarter turn would not fit the frame: 0 or 180 degrees
        angle = angle + turns * (math.pi / 2)
    scale = 1 + _uniform(n, config.scale, generator, device)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    aspect = width / height if rigid else 1.0
    theta = torch.stack([torch.stack([cos, -sin / aspect], 1), torch.stack([sin * aspect, cos], 1)], 1)
    if config.flips:
        flip = torch.where(torch.rand(n, 2, generator=generator, device=device) < 0.5, -1.0, 1.0)
        theta = theta * flip[:, None, :]
    shift = torch.stack([_uniform(n, 2 * config.translate, generator, device) for _ in range(2)], 1)
    return torch.cat([theta, shift[:, :, None]], 2)


def _hue_matrix(delta: torch.Tensor) -> torch.Tensor:
    """``(n, 3, 3)`` RGB matrices that turn the hue by ``delta`` (fractions of a full turn) about the grey axis."""
    a = delta * 2 * math.pi
    cos, sin = torch.cos(a), torch.sin(a)
    k = torch.full_like(a, 1 / 3)
    s3 = math.sqrt(1 / 3)
    rows = [[cos + k * (1 - cos), k * (1 - cos) - s3 * sin, k * (1 - cos) + s3 * sin],
            [k * (1 - cos) + s3 * sin, cos + k * (1 - cos), k * (1 - cos) - s3 * sin],
            [k * (1 - cos) - s3 * sin, k * (1 - cos) + s3 * sin, cos + k * (1 - cos)]]
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


def colour_jitter(images: torch.Tensor, config, generator: torch.Generator) -> torch.Tensor:
    """Random brightness, contrast, saturation and hue. ``(B, 3, H, W)`` in [0, 1] -> same."""
    n, device = images.shape[0], images.device
    x = images
    if config.hue:
        m = _hue_matrix(_uniform(n, config.hue, generator, device)).to(x.dtype)
        x = torch.einsum("bij,bjhw->bihw", m, x)
    if config.saturation:
        grey = x.mean(1, keepdim=True)
        x = grey + (x - grey) * (1 + _uniform(n, config.saturation, generator, device)).view(n, 1, 1, 1)
    if config.contrast:
        mean = x.mean((1, 2, 3), keepdim=True)
        x = mean + (x - mean) * (1 + _uniform(n, config.contrast, generator, device)).view(n, 1, 1, 1)
    if config.brightness:
        x = x * (1 + _uniform(n, config.brightness, generator, device)).view(n, 1, 1, 1)
    return x.clamp(0, 1)


def augment_batch(images: torch.Tensor, masks: torch.Tensor, config,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a batch: ``images`` ``(B, 3, H, W)`` float in [0, 1] and ``masks`` ``(B, 1, H, W)``
    float in {0, 1} -> augmented ``(images, masks)`` of the same shapes and ranges. ``generator``
    is a ``torch.Generator`` on the images' device; the same state gives the same augmentation.
    """
    n = images.shape[0]
    if config.flips or config.rot90 or config.rotate or config.scale or config.translate:
        theta = random_affine(n, config, generator, images.device, size=tuple(images.shape[-2:])).to(images.dtype)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        both = torch.cat([images, masks.to(images.dtype)], 1)
        both = F.grid_sample(both, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        images, masks = both[:, :3], (both[:, 3:] > 0.5).to(masks.dtype)
    return colour_jitter(images, config, generator), masks
