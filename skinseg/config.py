"""All configuration in one place: training profiles and the paths skinseg looks in.

A *profile* is a complete training recipe. ``full`` is the GPU recipe behind the book's
results; ``smoke`` is a small-width, few-image version that runs on two CPU cores in
seconds and whose outputs are always labelled as a CPU smoke run; ``tiny`` is for tests;
``colab`` (a few epochs of the full networks) is for the chapters' training cells on a free
GPU (:func:`notebook_profile`), labelled so that it is never taken for the full recipe.
A *variant* (:data:`VARIANTS`) is a named change to a profile, such as a higher learning
rate: ``python -m skinseg sweep`` compares them on the validation set, and ``--variant``
(:func:`with_variants`) trains with them; their names become part of the profile's label.

Environment variables override the defaults:

* ``SKINSEG_PROFILE``: the profile name (default: ``full`` on CUDA, ``smoke`` otherwise);
* ``SKINSEG_DATA``: the dataset folder (default: see :func:`default_data_dir`);
* ``SKINSEG_RESULTS``: the committed results folder (default: see :func:`results_dir`);
* ``SKINSEG_CACHE``: where decoded arrays are cached (default ``~/.cache/skinseg``).
"""
from __future__ import annotations

import dataclasses
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError


@dataclass(frozen=True)
class AugmentConfig:
    """Random augmentation, applied on the device to image and mask alike (see :mod:`skinseg.data.augment`).

    Angles in degrees; ``scale`` and the colour strengths are relative amounts (0 = off).
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


NO_AUGMENT = AugmentConfig(False, False, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
MODEL_LABELS = {"unet": "U-Net", "attention_unet": "Attention U-Net"}  # the models' names in tables and figures
COMPILE_MODES = ("default", "reduce-overhead")
OPTIMIZERS = {"adamw": "AdamW", "adam": "Adam"}  # a profile's name -> the torch.optim class
SCHEDULES = ("warmup_cosine", "constant")
RECIPE_LABELS = {"full": "full GPU recipe", "article": "article recipe"}  # the profiles that are not reduced

# How the two models are compared on the test set, fixed here before any test image is read and
# the same for both: the primary endpoint is the raw prediction (threshold 0.5, no test-time
# augmentation, no post-processing) of the weights of the epoch with the best validation IoU.
# The secondary endpoint, the TTA and post-processing each run chose on the validation set,
# is reported beside it and never decides the verdict.
ENDPOINTS = {"raw": "raw prediction at the validation-chosen epoch",
             "chosen": "test-time augmentation and post-processing chosen per run on validation"}
PRIMARY_ENDPOINT = "raw"


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


def check_variant_names(names) -> list[str]:
    """``names`` as a list, if all are :data:`VARIANTS`; else a :class:`ConfigError` that lists them."""
    names = list(names)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ConfigError(f"variants must be among {sorted(VARIANTS)}, got {unknown}")
    return names


@dataclass(frozen=True)
class Profile:
    """A complete training and evaluation recipe.

    Attributes:
        name: the profile's name, printed next to every result it produced.
        width: base channels of the models (64 is the article's 64 -> 1024 network).
        image_size: ``(H, W)`` the images are resized to; both divisible by 16.
        epochs, batch_size: the schedule; ``lr`` is the peak learning rate, reached after
            ``warmup_epochs`` of linear warm-up and followed by cosine decay to zero
            (``schedule="warmup_cosine"``), or the learning rate throughout
            (``schedule="constant"``).
        optimizer: ``"adamw"`` (decoupled ``weight_decay``) or ``"adam"``.
        loss: ``"bce_dice"``, ``"dice"`` or ``"dice_pooled"`` (see :mod:`skinseg.losses`).
        ema_decay: decay of the exponential moving average of the weights, or ``None``.
        max_train, max_val, max_test: use only the first N images of a split (``None`` = all).
        tta: test-time augmentation candidates; the one with the best validation IoU is used.
        postprocess: also try keeping the largest connected component with holes filled.
        compile: ``"auto"`` compiles on CUDA only, ``"on"``/``"off"`` force it.
        compile_mode: ``torch.compile``'s mode: ``"default"``, or ``"reduce-overhead"``, which
            also records the compiled step as a CUDA graph and so saves the CPU the work of
            launching every kernel (CUDA only; elsewhere it acts like ``"default"``).
        seeds: the seeds of an experiment.
        variants: the names of the :data:`VARIANTS` this recipe was made with (see
            :func:`with_variants`); they are part of its :meth:`label`.
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
        if self.compile not in ("auto", "on", "off"):
            raise ConfigError(f"compile must be 'auto', 'on' or 'off', got {self.compile!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {tuple(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.compile_mode not in COMPILE_MODES:
            raise ConfigError(f"compile_mode must be one of {COMPILE_MODES}, got {self.compile_mode!r}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must lie in (0, 1) or be None, got {self.ema_decay}")
        check_variant_names(self.variants)

    @property
    def is_smoke(self) -> bool:
        """True for the reduced CPU profiles, whose outputs must say so."""
        return self.name not in RECIPE_LABELS

    def label(self) -> str:
        """A short tag for outputs: says plainly when a result is from a CPU smoke run."""
        extra = "".join(f" + {name}" for name in self.variants)
        if not self.is_smoke:
            return f"{RECIPE_LABELS[self.name]}{extra}"
        if self.name == "colab":
            return f"SHORT GPU RUN (profile 'colab'{extra}: {self.epochs} epochs, not the full recipe)"
        return f"CPU SMOKE RUN (profile {self.name!r}{extra}, not a real result)"

    def replace(self, **changes) -> "Profile":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PROFILES: dict[str, Profile] = {
    # 60 epochs: the 16 epochs of the first H200 experiment stopped while validation IoU was
    # still rising (results/isic2017_16ep); a time budget decides how many runs start, never this
    "full": Profile(name="full", epochs=60),
    "smoke": Profile(name="smoke", width=8, epochs=2, batch_size=8, max_train=64, max_val=16,
                     max_test=32, tta=("none", "flip"), seeds=(0, 1), compile="off",
                     ema_decay=0.9),
    "tiny": Profile(name="tiny", width=4, image_size=(64, 64), epochs=2, batch_size=4, max_train=16,
                    max_val=8, max_test=8, tta=("none", "flip"), seeds=(0,),
                    compile="off", ema_decay=0.5, eval_batch_size=8),
}
# A chapter's training cells on a free GPU (a Colab T4): the full recipe's networks, data and
# schedule shape, but a few epochs, so that a cell takes minutes, not an hour; never a result.
PROFILES["colab"] = PROFILES["full"].replace(name="colab", epochs=4, tta=("none", "flip"), seeds=(0,), compile="off")
# The source article's own training, as far as it says: its Dice loss (sigmoid, summed over the
# whole batch, smooth 1) and no augmentation. It names no optimiser, learning rate, schedule,
# epochs or batch size; those are chosen, not quoted: the plainest defaults (Adam at a constant
# 1e-3, no weight decay, no weight averaging) and the full recipe's epochs, batch size, width and
# input size. Its models are scored as they predict (no test-time augmentation, no
# post-processing), and one seed, as the article reports one run per model.
PROFILES["article"] = PROFILES["full"].replace(
    name="article", optimizer="adam", schedule="constant", lr=1e-3, weight_decay=0.0, warmup_epochs=0.0,
    loss="dice_pooled", ema_decay=None, augment=NO_AUGMENT, tta=("none",), postprocess=False, seeds=(0,))


# Changes to a profile that ``python -m skinseg sweep`` compares on the validation set only
# (the levers of the recipe; the test set is never used to choose among them). An "augment"
# entry names only the augmentation settings it changes.
VARIANTS: dict[str, dict] = {
    "baseline": {},
    "dice_loss": {"loss": "dice"},  # per-image Dice instead of BCE + Dice (the article's pools the batch: "dice_pooled")
    "no_ema": {"ema_decay": None},  # evaluate the raw weights instead of their moving average
    "light_augment": {"augment": {"rotate": 0.0, "scale": 0.0, "translate": 0.0, "contrast": 0.0,
                                  "saturation": 0.0, "hue": 0.0}},  # flips, quarter turns, brightness
    "strong_augment": {"augment": {"rotate": 30.0, "scale": 0.2, "translate": 0.1, "brightness": 0.3,
                                   "contrast": 0.3, "saturation": 0.3, "hue": 0.05}},  # everything stronger
    # a quarter turn of a 192x256 image is stretched back to 192x256 (skinseg.data.augment),
    # which distorts half of the training images; test-time quarter turns are not stretched
    "no_quarter_turns": {"augment": {"rot90": False}},
    "lower_lr": {"lr": 3e-4},
    "higher_lr": {"lr": 3e-3},  # a short schedule may want larger steps
    "batch_32": {"batch_size": 32},
}


def variant_settings(names) -> dict[str, object]:
    """The settings the named :data:`VARIANTS` change together, as ``{"lr": 3e-3, "augment.rot90": False}``.

    Raises :class:`ConfigError` for an unknown name, and for two variants that set the same
    setting to different values (``light_augment`` and ``strong_augment`` both set the rotation).
    """
    names = check_variant_names(names)
    settings: dict[str, object] = {}
    set_by: dict[str, str] = {}
    for name in names:
        changes = dict(VARIANTS[name])
        flat = {f"augment.{k}": v for k, v in changes.pop("augment", {}).items()} | changes
        for key, value in flat.items():
            if key in settings and settings[key] != value:
                raise ConfigError(f"variants {set_by[key]!r} and {name!r} both set {key} "
                                  f"({settings[key]!r} and {value!r}); combine only variants that change different settings")
            settings[key], set_by[key] = value, name
    return settings


def with_variants(profile: "Profile", names) -> "Profile":
    """``profile`` with the changes of the named :data:`VARIANTS` (in any order), and their names
    added to :attr:`Profile.variants`. ``"baseline"`` changes nothing and is not recorded.

    Raises :class:`ConfigError` as :func:`variant_settings` does.
    """
    names = list(dict.fromkeys(names))
    settings = variant_settings(names)
    augment = {k.removeprefix("augment."): v for k, v in settings.items() if k.startswith("augment.")}
    changes = {k: v for k, v in settings.items() if not k.startswith("augment.")}
    if augment:
        changes["augment"] = dataclasses.replace(profile.augment, **augment)
    added = tuple(n for n in names if n != "baseline" and n not in profile.variants)
    return profile.replace(**changes, variants=profile.variants + added)


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


def default_data_dir() -> Path:
    """Where the ISIC data is looked for.

    ``$SKINSEG_DATA`` if set; else the first ``shared/data/isic2017`` found beside the current
    folder or one of its parents (the layout of this project's CI); else ``./data/isic2017``,
    where ``python -m skinseg download`` puts it.
    """
    env = os.environ.get("SKINSEG_DATA")
    if env:
        return Path(env).expanduser()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        candidate = folder / "shared" / "data" / "isic2017"
        if candidate.is_dir():
            return candidate
    return Path("data") / "isic2017"


def results_dir() -> Path:
    """The committed results folder: ``$SKINSEG_RESULTS``, else the first ``results/`` beside the
    current folder or one of its parents (chapters run from ``book/``) that holds a ``README.md``
    (this repository's does; an experiment's folder inside it, such as ``isic2017``, may not
    exist yet)."""
    env = os.environ.get("SKINSEG_RESULTS")
    if env:
        return Path(env).expanduser()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "results" / "README.md").is_file():
            return folder / "results"
    return Path("results")


def cache_dir() -> Path:
    """Where decoded, resized uint8 arrays are cached: ``$SKINSEG_CACHE`` or ``~/.cache/skinseg``."""
    return Path(os.environ.get("SKINSEG_CACHE", Path.home() / ".cache" / "skinseg")).expanduser()
