"""Comparing the two models over the finished runs of an experiment: Attention U-Net (B) minus
U-Net (A), image by image, per seed (:func:`paired_comparison`), on the seed-averaged scores,
and across seeds (:func:`seed_t_interval`, :func:`two_level_bootstrap`), at one endpoint
(:data:`skinseg.lab.endpoints.ENDPOINTS`).

U-Net seed ``s`` is paired with Attention U-Net seed ``s``: both runs see the same training
images in the same order with the same augmentation draws (:func:`skinseg.train.fit` seeds its
generators from ``(seed, epoch)``), and :func:`skinseg.device.seed_everything` seeds the
initialisation, so every layer the two networks share starts with the same weights (the
Attention U-Net builds its gates after the U-Net's layers).
"""
from __future__ import annotations

from pathlib import Path

import math

import numpy as np
import pandas as pd
from scipy import stats

from ..checks import check_positive_int
from ..errors import ConfigError, DataError
from ..models import MODELS
from .endpoints import ENDPOINTS
from .result_files import read_table

MODEL_A, MODEL_B = MODELS  # "unet", "attention_unet"


def paired_scores(a, b) -> tuple[np.ndarray, np.ndarray]:
    """``a`` and ``b`` as paired float64 score vectors (Series aligned on their index), or a
    :class:`~skinseg.errors.DataError` naming the fault: no common ids, duplicated ids, text, NaN,
    another length or shape, fewer than two pairs."""
    if isinstance(a, pd.Series) != isinstance(b, pd.Series):
        raise DataError("a and b must both be pandas Series (paired by their index) or both arrays (paired by order)")
    if isinstance(a, pd.Series):
        for label, s in (("a", a), ("b", b)):
            twice = s.index[s.index.duplicated()]
            if len(twice):
                raise DataError(f"{label} has {len(twice)} duplicated id(s), e.g. {twice[0]!r}: one score per image")
        if not len(a.index.intersection(b.index)):
            raise DataError(f"a and b have no image id in common (a: {len(a)} ids, e.g. {a.index[0] if len(a) else None!r}; "
                            f"b: {len(b)} ids, e.g. {b.index[0] if len(b) else None!r})")
        a, b = a.align(b, join="inner")
    arrays = []
    for label, s in (("a", a), ("b", b)):
        try:
            arrays.append(np.asarray(s, dtype=np.float64))
        except (TypeError, ValueError):
            raise DataError(f"{label} must hold numbers, got {np.asarray(s).dtype} values such as "
                            f"{np.asarray(s).ravel()[:1].tolist()}") from None
    a, b = arrays
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise DataError(f"a and b must be paired 1-d score arrays of equal length >= 2, got {a.shape} and {b.shape}")
    for label, s in (("a", a), ("b", b)):
        if not np.isfinite(s).all():
            raise DataError(f"{label} has {int((~np.isfinite(s)).sum())} missing or infinite score(s) (NaN or inf), "
                            f"e.g. at position {int(np.flatnonzero(~np.isfinite(s))[0])}")
    return a, b


def paired_comparison(a, b, *, n_boot: int = 10_000, seed: int = 0, confidence: float = 0.95) -> dict[str, float]:
    """Compare two models' per-image scores on the same images.

    Args:
        a, b: per-image scores of model A and model B, in the same image order, or pandas Series
            aligned on their index (:func:`paired_scores`).

    Returns: ``n``, ``mean_a``, ``mean_b``, ``mean_diff`` (B - A), its percentile bootstrap
    ``ci_low``/``ci_high`` (resampling images), the two-sided Wilcoxon signed-rank
    ``p_wilcoxon``, and ``b_better`` / ``a_better``: how many images each model wins.
    """
    a, b = paired_scores(a, b)
    check_positive_int(n_boot, "n_boot")
    if not isinstance(confidence, float) or not 0 < confidence < 1:
        raise ConfigError(f"confidence must be a number between 0 and 1 (0.95 for 95 %), got {confidence!r}")
    diff = b - a
    rng = np.random.default_rng(seed)
    boot = diff[rng.integers(0, len(diff), size=(n_boot, len(diff)))].mean(1)
    p = float(stats.wilcoxon(diff).pvalue) if np.any(diff != 0) else 1.0
    return {"n": int(len(diff)), "mean_a": float(a.mean()), "mean_b": float(b.mean()),
            "mean_diff": float(diff.mean()), **_interval(boot, confidence), "p_wilcoxon": p,
            "b_better": int((diff > 0).sum()), "a_better": int((diff < 0).sum())}


def _interval(boot: np.ndarray, confidence: float) -> dict[str, float]:
    """The percentile interval of the bootstrap replicates ``boot``: ``ci_low``, ``ci_high``."""
    alpha = (1 - confidence) / 2
    return {"ci_low": float(np.quantile(boot, alpha)), "ci_high": float(np.quantile(boot, 1 - alpha))}


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
    return {"n_seeds": s, "n": n, "mean_diff": float(d.mean()), **_interval(boot, confidence)}


def seed_t_interval(diffs: np.ndarray, *, confidence: float = 0.95) -> dict:
    """Student-t interval of the mean difference across seeds.

    Args:
        diffs: ``(S, N)`` paired differences (B - A) of ``S`` seeds on the same ``N`` images.

    Each seed's mean over the images is one observation; the interval is their mean
    ± ``t(1 - alpha/2, S - 1)`` × their standard deviation (``ddof=1``) / sqrt(S). With 3 seeds
    it is wide, and still wider than :func:`two_level_bootstrap`, which shrinks the seed
    variance to ``(S - 1) / S`` of it (chapter 06).

    Returns ``n_seeds``, ``df``, ``seed_means`` (list of ``S`` floats), ``sd_seeds``,
    ``mean_diff``, ``ci_low``, ``ci_high`` (``None`` for the last four that need 2 seeds).
    """
    d = np.asarray(diffs, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] < 1 or d.shape[1] < 1:
        raise ValueError(f"diffs must be (seeds, images), got shape {d.shape}")
    means = d.mean(1)
    s = len(means)
    result = {"n_seeds": s, "df": s - 1, "seed_means": [float(m) for m in means], "mean_diff": float(means.mean()),
              "sd_seeds": None, "ci_low": None, "ci_high": None}
    if s >= 2:
        sd = float(means.std(ddof=1))
        half = float(stats.t.ppf(1 - (1 - confidence) / 2, s - 1)) * sd / math.sqrt(s)
        result.update(sd_seeds=sd, ci_low=result["mean_diff"] - half, ci_high=result["mean_diff"] + half)
    return result


def format_p(p: float, *, prefix: str = "p = ") -> str:
    """A p-value for printing, in scientific notation with 2 significant digits:
    ``format_p(3.2e-05) == "p = 3.2e-05"``, ``format_p(0.41) == "p = 4.1e-01"``; never rounded
    to ``0.0000``. A p-value that underflowed to 0 prints as ``p < 2.2e-308``. ``prefix=""``
    gives the bare number, for table cells."""
    p = float(p)
    if not 0 <= p <= 1:
        raise ValueError(f"a p-value must lie in [0, 1], got {p}")
    if p == 0:
        return f"{prefix.replace('= ', '')}< {np.finfo(float).tiny:.1e}"
    return f"{prefix}{p:.1e}"


def compare_tables(tables: dict[tuple[str, int], pd.DataFrame], seeds, metric: str = "iou",
                   endpoint: str = "raw") -> dict:
    """Per-seed, seed-averaged and two-level comparisons of B against A.

    Args:
        tables: per-image tables (:func:`skinseg.evaluate.score_masks` plus ``iou_raw``,
            ``dice_raw``) keyed by ``(model, seed)``, indexed by image id.

    Returns ``{"metric", "endpoint", "per_seed": {"<seed>": paired_comparison + median_diff},
    "seed_averaged": ..., "two_level": two_level_bootstrap, "seed_t": seed_t_interval}``.
    """
    column = endpoint_column(metric, endpoint)
    seeds = list(seeds)
    lacking = [key for key, table in tables.items() if column not in table]
    if lacking:
        raise ConfigError(f"per-image table of {lacking[0][0]} seed {lacking[0][1]} has no column {column!r} "
                          "(results written before it was recorded)")
    ids = tables[MODEL_A, seeds[0]].index
    for m, s in ((m, s) for m in (MODEL_A, MODEL_B) for s in seeds):
        if not tables[m, s].index.equals(ids):
            raise ConfigError(f"per-image table of {m} seed {s} has other test images than "
                              f"{MODEL_A} seed {seeds[0]}; runs of one experiment must share one test set")
    a, b = _scores(tables, seeds, metric, endpoint).values()
    diffs = np.stack([(b[s] - a[s]).to_numpy() for s in seeds])
    return {"metric": metric, "endpoint": endpoint,
            "per_seed": {str(s): _with_median(a[s], b[s]) for s in seeds},
            "seed_averaged": _with_median(a.mean(axis=1), b.mean(axis=1)),
            "two_level": two_level_bootstrap(diffs), "seed_t": seed_t_interval(diffs)}


def _with_median(a: pd.Series, b: pd.Series) -> dict:
    """:func:`paired_comparison` of ``a`` and ``b`` plus ``median_diff`` (B - A)."""
    return {**paired_comparison(a, b), "median_diff": float((b - a).median())}


def read_tables(folder: Path, seeds, models=(MODEL_A, MODEL_B)) -> dict[tuple[str, int], pd.DataFrame]:
    """The per-image tables ``folder/per_image/<model>_seed<seed>.csv``, keyed by ``(model, seed)``."""
    return {(m, s): read_table(Path(folder) / "per_image" / f"{m}_seed{s}.csv")
            for m in models for s in seeds}


# Lesion-size groups: the share of the image the ground-truth lesion covers.
SIZE_EDGES = (0.0, 0.05, 0.10, 0.20, 0.40, 1.0)


def _scores(tables, seeds, metric: str, endpoint: str) -> dict[str, pd.DataFrame]:
    """``{model: (images x seeds) DataFrame}`` of ``metric`` at ``endpoint``."""
    column = endpoint_column(metric, endpoint)
    return {m: pd.concat({s: tables[m, s][column] for s in seeds}, axis=1) for m in (MODEL_A, MODEL_B)}


def large_losses(tables, seeds, metric: str = "iou", endpoint: str = "raw", margin: float = 0.2) -> dict[int, list[str]]:
    """Per seed, the ids of the images where B (Attention U-Net) scores more than ``margin``
    below A (U-Net) on ``metric`` at ``endpoint``, worst first. ``tables`` as in
    :func:`compare_tables`."""
    a, b = _scores(tables, seeds, metric, endpoint).values()
    diffs = {s: (b[s] - a[s]).sort_values(kind="stable") for s in seeds}
    return {s: [str(i) for i in diff.index[diff < -margin]] for s, diff in diffs.items()}


def by_lesion_size(tables, seeds, metric: str = "iou", endpoint: str = "raw", edges=SIZE_EDGES) -> pd.DataFrame:
    """Mean ``metric`` at ``endpoint`` by lesion-size group, each image's score averaged over
    ``seeds`` first. Groups by the ground truth's ``lesion_fraction`` in ``edges`` (the lowest
    edge included). Returns one row per group (index ``"0-5 %"``, ...) with ``images``, one column
    per model (:data:`MODEL_A`, :data:`MODEL_B`) and ``difference`` (B - A)."""
    scores = _scores(tables, seeds, metric, endpoint)
    names = [f"{100 * a:.0f}-{100 * b:.0f} %" for a, b in zip(edges[:-1], edges[1:])]
    group = pd.cut(tables[MODEL_A, seeds[0]].lesion_fraction, list(edges), labels=names, include_lowest=True)
    table = pd.DataFrame({"images": group.value_counts(sort=False)})
    for m in (MODEL_A, MODEL_B):
        table[m] = scores[m].mean(axis=1).groupby(group, observed=False).mean()
    table["difference"] = table[MODEL_B] - table[MODEL_A]
    table.index.name = "lesion covers"
    return table


def seed_spread(runs: pd.DataFrame, column: str = "raw_mean_iou") -> pd.Series:
    """Per model, the largest minus the smallest ``column`` over its seeds, from a table with one
    row per run and ``model``, ``seed`` columns (:attr:`skinseg.lab.results.Results.runs`)."""
    return runs.groupby("model", sort=False)[column].agg(lambda v: v.max() - v.min())
