"""The training recipes (profiles) and the facts they rest on.

``full`` is the GPU recipe behind the book's results; ``smoke`` a small version for two CPU cores,
always labelled a CPU smoke run; ``tiny`` is for tests; ``colab`` (the full networks for a few
epochs) for the chapters' training cells on a free GPU (:func:`notebook_profile`); ``article`` the
source article's own training, as far as it says. ``SKINSEG_PROFILE`` names the profile.
"""
from __future__ import annotations

import dataclasses
import numbers
import os
from dataclasses import dataclass, field

from .errors import ConfigError


GEOMETRIES = ("rigid", "stretch")


@dataclass(frozen=True)
class AugmentConfig:
    """Random augmentation, applied on the device to image and mask alike (see :mod:`skinseg.data.augment`).

    Angles in degrees; ``scale`` and the colour strengths are relative amounts (0 = off).
    ``geometry``: ``"rigid"`` (rotations in pixels, quarter turns only on square images) or
    ``"stretch"`` (rotations in normalised coordinates, as ``results/isic2017_16ep`` was trained).
    """

    flips: bool = True
    rot90: bool = True
    rotate: float = 15.0
    scale: float = 0.10
    translate: float = 0.05
    brightness: float = 0.20
    contrast: float = 0.20
    saturation: float = 0.20
    hue: float = 0.03
    geometry: str = "rigid"

    def __post_init__(self) -> None:
        if self.geometry not in GEOMETRIES:
            raise ConfigError(f"augment geometry must be one of {GEOMETRIES}, got {self.geometry!r}")


NO_AUGMENT = AugmentConfig(False, False, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
MODEL_LABELS = {"unet": "U-Net", "attention_unet": "Attention U-Net"}  # the models' names in tables and figures
COMPILE_MODES = ("default", "reduce-overhead")
OPTIMIZERS = {"adamw": "AdamW", "adam": "Adam"}  # a profile's name -> the torch.optim class
SCHEDULES = ("warmup_cosine", "constant")
RECIPE_LABELS = {"full": "full GPU recipe", "article": "article recipe"}  # the profiles that are not reduced
SHORT_GPU_PROFILE = "colab"  # the full networks for a few epochs: a GPU run, but not a result

INPUT_MULTIPLE = 16  # the networks pool four times (skinseg.models.unet.STRIDE)


def check_image_size(size, name: str = "image_size") -> tuple[int, int]:
    """``size`` as ``(height, width)`` if both are positive multiples of :data:`INPUT_MULTIPLE`, else a
    :class:`ConfigError` naming ``name``."""
    expected = f"two integers (height, width), each a positive multiple of {INPUT_MULTIPLE}"
    try:
        height, width = size
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be {expected}, got {size!r}") from None
    if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < INPUT_MULTIPLE or v % INPUT_MULTIPLE
           for v in (height, width)):
        raise ConfigError(f"{name} must be {expected}, got {tuple(size)!r}")
    return int(height), int(width)


@dataclass(frozen=True)
class Profile:
    """A complete training and evaluation recipe.

    Attributes:
        name: the profile's name, printed next to every result it produced.
        width: base channels of the models (64 is the article's 64 -> 1024 network).
        image_size: ``(H, W)`` the images are resized to; both multiples of 16.
        epochs, batch_size, seeds: the schedule's length, the images per step, an experiment's seeds.
        lr: the peak learning rate, reached after ``warmup_epochs`` of linear warm-up and followed
            by cosine decay to zero (``schedule="warmup_cosine"``), or constant (``"constant"``).
        optimizer: ``"adamw"`` (decoupled ``weight_decay``) or ``"adam"``.
        loss: ``"bce_dice"``, ``"dice"`` or ``"dice_pooled"`` (see :mod:`skinseg.losses`).
        ema_decay: decay in (0, 1) of the moving average of the weights, or ``None``.
        max_train, max_val, max_test: use only the first N images of a split (``None`` = all).
        tta: test-time augmentation candidates; the one with the best validation IoU is used.
        postprocess: also try keeping the largest connected component with holes filled.
        compile: ``"auto"`` compiles on CUDA only; ``compile_mode`` ``"reduce-overhead"`` also
            records CUDA graphs (CUDA only; elsewhere it acts like ``"default"``).
        variants: the variants it was made with (:func:`skinseg.lab.variants.with_variants`).
    """

    name: str
    width: int = 64
    image_size: tuple[int, int] = (192, 256)
    epochs: int = 40
    batch_size: int = 16
    optimizer: str = "adamw"
    schedule: str = "warmup_cosine"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    loss: str = "bce_dice"
    ema_decay: float | None = 0.995
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    max_train: int | None = None
    max_val: int | None = None
    max_test: int | None = None
    tta: tuple[str, ...] = ("none", "flip", "d4")
    postprocess: bool = True
    compile: str = "auto"
    compile_mode: str = "default"
    seeds: tuple[int, ...] = (0, 1, 2)
    eval_batch_size: int = 32
    variants: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_image_size(self.image_size)
        for key in ("width", "epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be at least 1, got {getattr(self, key)}")
        for key, allowed in (("compile", ("auto", "on", "off")), ("optimizer", tuple(OPTIMIZERS)),
                             ("schedule", SCHEDULES), ("compile_mode", COMPILE_MODES)):
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{key} must be one of {allowed}, got {getattr(self, key)!r}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must lie in (0, 1) or be None, got {self.ema_decay}")

    @property
    def is_smoke(self) -> bool:
        """True for the reduced CPU profiles (smaller networks, fewer images), whose outputs must say so."""
        return self.name not in RECIPE_LABELS and self.name != SHORT_GPU_PROFILE

    def label(self) -> str:
        """A short tag for outputs: says plainly when a result is from a CPU smoke run."""
        extra = "".join(f" + {name}" for name in self.variants)
        if self.name in RECIPE_LABELS:
            return f"{RECIPE_LABELS[self.name]}{extra}"
        if self.name == SHORT_GPU_PROFILE:
            return f"SHORT GPU RUN (profile {self.name!r}{extra}: {self.epochs} epochs, not the full recipe)"
        return f"CPU SMOKE RUN (profile {self.name!r}{extra}, not a real result)"

    def replace(self, **changes) -> "Profile":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PROFILES: dict[str, Profile] = {
    # 60 epochs: validation IoU still rose when the 16 epochs of results/isic2017_16ep stopped
    "full": Profile(name="full", epochs=60),
    "smoke": Profile(name="smoke", width=8, epochs=2, batch_size=8, max_train=64, max_val=16,
                     max_test=32, tta=("none", "flip"), seeds=(0, 1), compile="off",
                     ema_decay=0.9),
    "tiny": Profile(name="tiny", width=4, image_size=(64, 64), epochs=2, batch_size=4, max_train=16,
                    max_val=8, max_test=8, tta=("none", "flip"), seeds=(0,),
                    compile="off", ema_decay=0.5, eval_batch_size=8),
}
# A chapter's training cells on a free GPU: the full networks for a few epochs; never a result.
PROFILES[SHORT_GPU_PROFILE] = PROFILES["full"].replace(name=SHORT_GPU_PROFILE, epochs=4, tta=("none", "flip"), seeds=(0,), compile="off")
# The source article's training as far as it says: its Dice loss (summed over the batch, smooth 1),
# no augmentation, no TTA or post-processing, one run per model. The optimiser, learning rate,
# schedule, epochs and batch size it does not name: chosen as the plainest (constant Adam 1e-3).
PROFILES["article"] = PROFILES["full"].replace(
    name="article", optimizer="adam", schedule="constant", lr=1e-3, weight_decay=0.0, warmup_epochs=0.0,
    loss="dice_pooled", ema_decay=None, augment=NO_AUGMENT, tta=("none",), postprocess=False, seeds=(0,))


def get_profile(name: str | None = None) -> Profile:
    """The profile ``name``; without one, ``$SKINSEG_PROFILE``, else ``full`` on CUDA and ``smoke`` otherwise."""
    if name is None:
        name = os.environ.get("SKINSEG_PROFILE")
    if name is None:
        import torch

        name = "full" if torch.cuda.is_available() else "smoke"
    if name not in PROFILES:
        raise ConfigError(f"profile must be one of {sorted(PROFILES)}, got {name!r} "
                          "(from the argument or SKINSEG_PROFILE)")
    return PROFILES[name]


def notebook_profile() -> Profile:
    """The profile of the chapters' training cells: ``$SKINSEG_PROFILE`` if set, else ``colab``
    on CUDA (minutes on a free GPU) and ``smoke`` elsewhere. The full recipe is an explicit
    choice (``SKINSEG_PROFILE=full`` or ``get_profile("full")``)."""
    import torch

    if os.environ.get("SKINSEG_PROFILE"):
        return get_profile()
    return get_profile("colab" if torch.cuda.is_available() else "smoke")


