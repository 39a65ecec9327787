"""Measuring the levers of the recipe on the validation set (the test set is never loaded): one
model, one seed, one run per variant (:data:`skinseg.lab.variants.VARIANTS`), each compared image
by image with the baseline (the paired interval covers the images, not the seed).

``out_dir/sweep.json``, rewritten after every variant (finished ones are skipped when run again),
holds per variant its changes, best epoch, validation IoU (mean and per image), history and
``vs_baseline``, or its ``error`` if training diverged, and ``recommended`` (:func:`recommend_variant`).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from ..checkpoint import load_model
from ..config import Profile
from ..device import resolve_device, seed_everything
from ..errors import ConfigError, TrainingError
from ..evaluate import binarize, predict_probabilities, score_masks
from ..lock import locks_folder, output_lock
from ..models import MODELS, build_model
from ..train import BEST, fit
from .leakage import training_record
from .plan import budgeted_profile
from .protocols import OFFICIAL, load_protocol_split
from .provenance import environment, write_json
from .result_files import read_json
from .run_errors import run_folder_hint
from .stats import paired_comparison
from .variants import VARIANTS, check_variant_names, with_variants

BASELINE = "baseline"


def describe_changes(changes: dict) -> str:
    """A variant's changes as text: ``{"lr": 3e-4}`` -> ``"lr=0.0003"``, ``{"augment": {"rot90": False}}``
    -> ``"augment=(rot90=False)"``."""
    parts = [f"{key}=({', '.join(f'{k}={v}' for k, v in value.items())})" if isinstance(value, dict)
             else f"{key}={value}" for key, value in changes.items()]
    return ", ".join(parts) or "the profile as it is"


@locks_folder("out_dir")
def run_sweep(data_root, out_dir, profile: Profile, variants=None, *, model: str = "unet", seed: int = 0,
              work_dir=None, device=None, time_budget: float | None = None, progress: bool = True,
              log: Callable[[str], None] = print, protocol: str = OFFICIAL) -> dict:
    """Train ``model`` once per variant of ``profile`` and compare the variants on validation.

    Args:
        variants: names from :data:`skinseg.lab.variants.VARIANTS` (default: all); ``"baseline"`` is
            always included, first, because every variant is compared with it.
        time_budget: seconds for all variants together, which set the number of epochs
            (:func:`skinseg.lab.plan.budgeted_profile`, stored in ``sweep.json`` and reused).

    Returns what is written to ``out_dir/sweep.json``.
    """
    started = time.perf_counter()
    names = list(dict.fromkeys([BASELINE, *check_variant_names(VARIANTS if variants is None else variants)]))
    if model not in MODELS:
        raise ConfigError(f"model must be one of {sorted(MODELS)}, got {model!r}")
    out_dir, device = Path(out_dir), resolve_device(device)
    work_dir = Path(work_dir) if work_dir else Path("runs") / out_dir.name
    train = load_protocol_split(data_root, "train", profile.image_size, protocol=protocol, limit=profile.max_train)
    val = load_protocol_split(data_root, "val", profile.image_size, protocol=protocol, limit=profile.max_val)
    path = out_dir / "sweep.json"
    # only the best epoch's validation images are scored at the end: no TTA views, no test set
    profile, plan = budgeted_profile(profile, time_budget, path, {"train": len(train), "val": len(val), "test": 0},
                                     len(names), device, models=(model,), log=log, evaluation_tta=("none",))
    done = (read_json(path) if path.exists() else {}).get("variants", {})
    report = {"label": profile.label(), "profile": profile.to_dict(), "model": model, "seed": seed,
              "data": {"train": {"source": train.source, "n": len(train)}, "val": {"source": val.source, "n": len(val)}},
              "environment": environment(device), "plan": plan, "variants": {}}
    log(f"{profile.label()}: {model}, seed {seed}, {profile.epochs} epochs per variant, "
        f"{len(train)} training and {len(val)} validation images")
    for name in names:
        if name in done and done[name]["epochs"] == profile.epochs:
            report["variants"][name] = done[name]
            log(f"{name}: already done, skipped")
            continue
        recipe, changes = with_variants(profile, [name]), describe_changes(VARIANTS[name])
        seed_everything(seed)
        run_dir = work_dir / name
        try:
            with output_lock(run_dir), run_folder_hint(run_dir, "sweep"):
                history = fit(build_model(model, recipe.width), train, val, recipe, run_dir, seed=seed, device=device,
                              progress=progress, trained_on=training_record(train))
        except TrainingError as err:  # a lever that makes training diverge is a finding, not the end of the sweep
            report["variants"][name] = {"changes": changes, "epochs": recipe.epochs, "error": str(err)}
            write_json(path, report)
            log(f"{name} ({changes}): FAILED: {err}")
            continue
        best = load_model(run_dir / BEST, device)
        prob = predict_probabilities(best, val.images, batch_size=recipe.eval_batch_size, device=device)
        per_image = score_masks(binarize(prob), val, boundary=False)["iou"]
        report["variants"][name] = {
            "changes": changes, "epochs": recipe.epochs, "best_epoch": history.best_epoch, "val_iou": float(per_image.mean()),
            "per_image_iou": [round(float(v), 6) for v in per_image],
            "train_seconds": sum(r["seconds"] for r in history.records), "history": history.records}
        _compare_with_baseline(report)
        write_json(path, report)
        v = report["variants"][name]
        log(f"{name} ({changes}): best epoch {v['best_epoch']}, val IoU {v['val_iou']:.4f}"
            + (f", vs baseline {v['vs_baseline']['mean_diff']:+.4f} "
               f"[{v['vs_baseline']['ci_low']:+.4f}, {v['vs_baseline']['ci_high']:+.4f}]" if "vs_baseline" in v else ""))
    _compare_with_baseline(report)
    report["recommended"] = recommend_variant(report)
    report["seconds"] = time.perf_counter() - started
    write_json(path, report)
    log(describe_recommendation(report))
    log(f"wrote {path}")
    return report


def recommend_variant(report: dict) -> list[str]:
    """The variant to carry into the experiment: ``[name]`` of the largest mean paired validation difference
    from the baseline among those whose 95 % CI lies above zero, or ``[]`` (keep the baseline); one
    variant, since combinations were not measured."""
    better = {name: v["vs_baseline"] for name, v in report["variants"].items()
              if "vs_baseline" in v and v["vs_baseline"]["ci_low"] > 0}
    return [max(better, key=lambda name: better[name]["mean_diff"])] if better else []


def describe_recommendation(report: dict) -> str:
    """One line: which ``--variant`` the sweep recommends for the experiment, and why."""
    if not report["recommended"]:
        return (f"no variant beat the baseline beyond the noise of {report['data']['val']['n']} validation images: "
                "the experiment keeps the recipe as it is")
    name = report["recommended"][0]
    c = report["variants"][name]["vs_baseline"]
    return (f"carry into the experiment: --variant {name} (validation IoU {c['mean_diff']:+.4f} against the "
            f"baseline, 95 % CI [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}])")


def _compare_with_baseline(report: dict) -> None:
    """Add ``vs_baseline`` (variant - baseline, paired over validation images) to every other variant."""
    base = report["variants"].get(BASELINE, {}).get("per_image_iou")  # None until the baseline ran, or if it failed
    for name, v in report["variants"].items():
        if base is not None and name != BASELINE and "error" not in v:
            v["vs_baseline"] = paired_comparison(base, v["per_image_iou"])
