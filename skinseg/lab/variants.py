"""Variants of a recipe: named changes to a profile, such as a higher learning rate.

``python -m skinseg sweep`` compares them on the validation set (:mod:`skinseg.lab.sweep`), and
``--variant`` (:func:`with_variants`) trains with them; their names become part of the
profile's label.
"""
from __future__ import annotations

import dataclasses

from ..config import Profile
from ..errors import ConfigError

# An "augment" entry names only the augmentation settings it changes.
VARIANTS: dict[str, dict] = {
    "baseline": {},
    "dice_loss": {"loss": "dice"},  # per-image Dice instead of BCE + Dice (the article's pools the batch: "dice_pooled")
    "no_ema": {"ema_decay": None},  # evaluate the raw weights instead of their moving average
    "light_augment": {"augment": {"rotate": 0.0, "scale": 0.0, "translate": 0.0, "contrast": 0.0,
                                  "saturation": 0.0, "hue": 0.0}},  # flips, quarter turns, brightness
    "strong_augment": {"augment": {"rotate": 30.0, "scale": 0.2, "translate": 0.1, "brightness": 0.3,
                                   "contrast": 0.3, "saturation": 0.3, "hue": 0.05}},  # everything stronger
    # the geometry results/isic2017_16ep was trained with: rotations in normalised coordinates,
    # which stretch a 192x256 image (skinseg.data.augment); kept only if validation says it helps
    "stretch_geometry": {"augment": {"geometry": "stretch"}},
    "lower_lr": {"lr": 3e-4},
    "higher_lr": {"lr": 3e-3},  # a short schedule may want larger steps
    "batch_32": {"batch_size": 32},
}


def variant_settings(names) -> dict[str, object]:
    """The settings the named :data:`VARIANTS` change together, as ``{"lr": 3e-3, "augment.rot90": False}``.
    Raises :class:`ConfigError` for an unknown name, and for two variants that set one setting
    to different values."""
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


def with_variants(profile: Profile, names) -> Profile:
    """``profile`` with the changes of the named :data:`VARIANTS` (in any order), and their names
    added to :attr:`Profile.variants` (``"baseline"`` changes nothing and is not recorded).
    Raises :class:`ConfigError` as :func:`variant_settings` does."""
    names = list(dict.fromkeys(names))
    settings = variant_settings(names)
    augment = {k.removeprefix("augment."): v for k, v in settings.items() if k.startswith("augment.")}
    changes = {k: v for k, v in settings.items() if not k.startswith("augment.")}
    if augment:
        changes["augment"] = dataclasses.replace(profile.augment, **augment)
    added = tuple(n for n in names if n != "baseline" and n not in profile.variants)
    return profile.replace(**changes, variants=profile.variants + added)


def check_variant_names(names) -> list[str]:
    """``names`` as a list, if all are :data:`VARIANTS`; else a :class:`ConfigError` that lists them."""
    names = list(names)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ConfigError(f"variants must be among {sorted(VARIANTS)}, got {unknown}")
    return names
