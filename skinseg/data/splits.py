"""The fixed ISIC 2016 training/validation split.

ISIC 2016 has no validation split; the article split its 900 training images 4:1 into
720/180. We fix one such split forever by a rule that depends on the image id alone: the
validation images are the fifth of the ids whose ``sha256("skinseg-isic2016-val:" + id)`` is
smallest. The rule (and so the split) never changes between versions; ``tests`` pin it.
"""
from __future__ import annotations

import hashlib

SALT = "skinseg-isic2016-val:"
VALIDATION_FRACTION = 0.2


def _key(image_id: str) -> str:
    return hashlib.sha256((SALT + image_id).encode()).hexdigest()


def isic2016_validation_ids(train_ids: list[str]) -> set[str]:
    """The ids of the validation fifth of ISIC 2016's training images (180 of 900)."""
    n_val = round(len(train_ids) * VALIDATION_FRACTION)
    return set(sorted(train_ids, key=_key)[:n_val])
