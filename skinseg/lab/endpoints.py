"""The evaluation protocol: how the two models are compared on the test set."""
from __future__ import annotations

from ..config import Profile

# How the two models are compared on the test set, fixed here before any test image is read and
# the same for both: the primary endpoint is the raw prediction (threshold 0.5, no test-time
# augmentation, no post-processing) of the weights of the epoch with the best validation IoU.
# The secondary endpoint, the TTA and post-processing each run chose on the validation set,
# is reported beside it and never decides the verdict.
ENDPOINTS = {"raw": "raw prediction at the validation-chosen epoch",
             "chosen": "test-time augmentation and post-processing chosen per run on validation"}
PRIMARY_ENDPOINT = "raw"


def evaluation_protocol(profile: Profile) -> dict:
    """How a run is scored: the primary endpoint and the candidates of the secondary, per-run choice."""
    return {"primary_endpoint": PRIMARY_ENDPOINT, "threshold": 0.5, "tta": list(profile.tta),
            "postprocess": profile.postprocess}
