"""Comparing the two models over the finished runs of an experiment.

Both models are scored on the same test images with several training seeds each. The
comparison is Attention U-Net (B) minus U-Net (A), image by image:

* per seed: :func:`skinseg.evaluate.paired_comparison` (bootstrap over images, Wilcoxon test,
  wins) and the median difference;
* seed-averaged: the same, on each image's score averaged over the seeds;
* two-level: a bootstrap that resamples seeds *and* images (:func:`two_level_bootstrap`), so
  that its interval also covers the randomness of training, which the per-image interval of
  fixed trained networks cannot see.

Every comparison is made on one *endpoint* (:data:`skinseg.lab.endpoints.ENDPOINTS`): the primary
one, fixed in the configuration before any test image is read, or the secondary per-run
choice of test-time augmentation and post-processing.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..evaluate import paired_comparison
from ..models import MODELS
from .endpoints import ENDPOINTS
from .result_files import read_table

MODEL_A, MODEL_B = MODELS  # "unet", "attention_unet"


def endpoint_column(metric: str, endpoint: str) -> str:
    """The per-image CSV column of ``metric`` (``"iou"`` or ``"dice"``) at ``endpoint``."""
    if endpoint not in ENDPOINTS:
        raise ConfigError(f"endpoint must be one of {sorted(ENDPOINTS)}, got {endpoint!r}")
    return f"{metric}_raw" if endpoint == "raw" else metric


def two_level_bootstrap(diffs: np.ndarray, *, n_boot: int = 10_000, seed: int = 0,
                        confidence: float = 0.95) -> dict[str, float]:
    """Bootstrap interval of the mean of ``diffs``, resampling seeds and images.

    Args:
        diffs: ``(S, N)`` paired differences (B - A) of ``S`` seeds on the same ``N`` images.

    Each replicate draws ``S`` seeds and ``N`` images with replacement (the same images for every
    seed, as the test set is shared) and takes the mean difference over them. With one seed it
    is the per-image bootstrap. Returns ``mean_diff``, ``ci_low``, ``ci_high``, ``n_seeds``, ``n``.
    """
    d = np.asarray(diffs, dtype=np.float64)
    if d.ndim != 2 or d.shape[1] < 2:
        raise ValueError(f"diffs must be (seeds, images) with at least 2 images, got shape {d.shape}")
    s, n = d.shape
    rng = np.random.default_rng(seed)
    image_weights = rng.multinomial(n, np.full(n, 1 / n), size=n_boot) / n  # (n_boot, N)
    seed_weights = rng.multinomial(s, np.full(s, 1 / s), size=n_boot) / s  # (n_boot, S)
    boot = np.einsum("bs,sb->b", seed_weights, d @ image_weights.T)
    alpha = (1 - confidence) / 2
    return {"n_seeds": s, "n": n, "mean_diff": float(d.mean()), "ci_low": float(np.quantile(boot, alpha)),
            "ci_high": float(np.quantile(boot, 1 - alpha))}


def compare_tables(tables: dict[tuple[str, int], pd.DataFrame], seeds, metric: str = "iou",
                   endpoint: str = "raw") -> dict:
    """Per-seed, seed-averaged and two-level comparisons of B against A.

    Args:
        tables: per-image tables (:func:`skinseg.evaluate.score_masks` plus ``iou_raw``,
            ``dice_raw``) keyed by ``(model, seed)``, indexed by image id.

    Returns ``{"metric", "endpoint", "per_seed": {"<seed>": paired_comparison + median_diff},
    "seed_averaged": ..., "two_level": two_level_bootstrap}``.
    """
    column = endpoint_column(metric, endpoint)
    seeds = list(seeds)
    scores = {(m, s): tables[m, s][column] for m in (MODEL_A, MODEL_B) for s in seeds}
    ids = scores[MODEL_A, seeds[0]].index
    for key, series in scores.items():
        if not series.index.equals(ids):
            raise ConfigError(f"per-image table of {key[0]} seed {key[1]} has other test images than "
                              f"{MODEL_A} seed {seeds[0]}; runs of one experiment must share one test set")
    per_seed = {}
    for s in seeds:
        result = paired_comparison(scores[MODEL_A, s], scores[MODEL_B, s])
        result["median_diff"] = float((scores[MODEL_B, s] - scores[MODEL_A, s]).median())
        per_seed[str(s)] = result
    averaged = {m: pd.concat([scores[m, s] for s in seeds], axis=1).mean(axis=1) for m in (MODEL_A, MODEL_B)}
    seed_averaged = paired_comparison(averaged[MODEL_A], averaged[MODEL_B])
    seed_averaged["median_diff"] = float((averaged[MODEL_B] - averaged[MODEL_A]).median())
    diffs = np.stack([(scores[MODEL_B, s] - scores[MODEL_A, s]).to_numpy() for s in seeds])
    return {"metric": metric, "endpoint": endpoint, "per_seed": per_seed, "seed_averaged": seed_averaged,
            "two_level": two_level_bootstrap(diffs)}


def read_tables(folder: Path, seeds, models=(MODEL_A, MODEL_B)) -> dict[tuple[str, int], pd.DataFrame]:
    """The per-image tables ``folder/per_image/<model>_seed<seed>.csv``, keyed by ``(model, seed)``."""
    return {(m, s): read_table(Path(folder) / "per_image" / f"{m}_seed{s}.csv")
            for m in models for s in seeds}
