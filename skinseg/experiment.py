"""The experiment behind the book: both models, several seeds, one recipe, every artifact.

For each seed and model it trains with :func:`skinseg.train.fit`, picks the epoch with the
best validation IoU, picks test-time augmentation and post-processing on the validation
set, and only then scores the test set. It writes small files only (no weights) under
``out_dir``; checkpoints go to ``work_dir``. Finished runs are skipped when it is run
again, and an interrupted run resumes from its last checkpoint.

``out_dir`` layout::

    config.json        the profile, seeds, data and the environment (GPU, torch)
    runs/<run>.json    per run: best epoch, validation table, test summaries, timing
    histories/<run>.json
    per_image/<run>.csv  test metrics keyed by image id (columns iou, dice, ...)
    psi/<run>.npz      ψ maps of fixed test images at several epochs (first seed, uint8)
    predictions/<run>.npz  predicted test masks (first seed, bit-packed)
    summary.json       per-seed table, mean ± sd, paired comparisons
"""
from __future__ import annotations

import datetime
import json
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from . import __version__
from .checkpoint import load_model
from .config import Profile
from .data import SegmentationData, load_dataset
from .data.tensors import model_input
from .device import describe, resolve_device, seed_everything
from .errors import ConfigError
from .evaluate import binarize, predict_probabilities, paired_comparison, score_masks, summarize
from .models import MODELS, build_model
from .plan import budgeted_profile
from .psi import flatten_levels
from .train import BEST, fit, recipe_changes, training_recipe

MODEL_NAMES = tuple(MODELS)  # ("unet", "attention_unet")
N_PSI_IMAGES = 12


def psi_epochs(epochs: int) -> list[int]:
    """The epochs at which ψ maps are stored: the first, a few along the way, and the last."""
    return sorted({1, max(1, epochs // 10), max(1, epochs // 4), max(1, epochs // 2), epochs})


def psi_image_indices(test: SegmentationData, n: int = N_PSI_IMAGES) -> np.ndarray:
    """``n`` fixed test images spread evenly over the range of lesion sizes."""
    order = np.argsort(test.lesion_fraction, kind="stable")
    return order[np.linspace(0, len(order) - 1, min(n, len(order))).round().astype(int)]


def environment(device: torch.device) -> dict:
    """The hardware and software a result came from."""
    return {"device": describe(device), "device_type": device.type, "torch": torch.__version__,
            "cuda": torch.version.cuda, "python": platform.python_version(), "skinseg": __version__,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def write_json(path: Path, obj) -> None:
    """Write ``obj`` as indented JSON, atomically (a temporary file renamed over ``path``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(path)


def _collect_psi(model, images: np.ndarray, device) -> np.ndarray:
    """ψ maps of ``images`` flattened level by level into one uint8 vector per image (see :mod:`skinseg.psi`)."""
    with torch.no_grad():
        _, psis = model.eval().forward_with_attention(model_input(images, device))
    return flatten_levels([p[:, 0].float().cpu().numpy() for p in psis])


def run_one(model_name: str, seed: int, data: dict[str, SegmentationData], profile: Profile, out_dir: Path,
            work_dir: Path, device, progress: bool, keep_details: bool, psi_index: np.ndarray) -> dict:
    """Train, select and evaluate one model with one seed; returns the run's summary."""
    started = time.perf_counter()
    run = f"{model_name}_seed{seed}"
    run_dir = work_dir / run
    run_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(seed)
    model = build_model(model_name, profile.width)
    psi_at = set(psi_epochs(profile.epochs)) if (keep_details and model.has_attention) else set()
    psi_images = data["test"].images[psi_index]

    def snapshot(epoch: int, evaluated) -> None:
        if epoch in psi_at:
            np.save(run_dir / f"psi_epoch{epoch:03d}.npy", _collect_psi(evaluated, psi_images, device))

    history = fit(model, data["train"], data["val"], profile, run_dir, seed=seed, device=device,
                  progress=progress, on_epoch_end=snapshot)
    train_seconds = sum(r["seconds"] for r in history.records)  # also right for a resumed run
    write_json(out_dir / "histories" / f"{run}.json", history.to_dict())

    best = load_model(run_dir / BEST, device)
    validation = {}
    for tta in profile.tta:
        prob = predict_probabilities(best, data["val"].images, tta=tta, batch_size=profile.eval_batch_size, device=device)
        for post in ((False, True) if profile.postprocess else (False,)):
            validation[f"{tta}{'+post' if post else ''}"] = summarize(score_masks(binarize(prob, post), data["val"]))
    chosen = max(validation, key=lambda k: validation[k]["mean_iou"])
    tta, post = chosen.split("+")[0], chosen.endswith("+post")

    prob_raw = predict_probabilities(best, data["test"].images, batch_size=profile.eval_batch_size, device=device)
    raw = score_masks(binarize(prob_raw), data["test"])
    prob = prob_raw if tta == "none" else predict_probabilities(best, data["test"].images, tta=tta,
                                                                 batch_size=profile.eval_batch_size, device=device)
    masks = binarize(prob, post)
    table = score_masks(masks, data["test"])
    table["iou_raw"], table["dice_raw"] = raw["iou"], raw["dice"]
    (out_dir / "per_image").mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / "per_image" / f"{run}.csv", float_format="%.6f")

    if keep_details:
        (out_dir / "predictions").mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out_dir / "predictions" / f"{run}.npz", ids=np.array(data["test"].ids),
                            masks=np.packbits(masks, axis=-1), shape=np.array(masks.shape))
        if psi_at:
            epochs = sorted(e for e in psi_at if (run_dir / f"psi_epoch{e:03d}.npy").exists())
            (out_dir / "psi").mkdir(parents=True, exist_ok=True)
            np.savez_compressed(out_dir / "psi" / f"{run}.npz", epochs=np.array(epochs),
                                ids=np.array([data["test"].ids[i] for i in psi_index]),
                                psi=np.stack([np.load(run_dir / f"psi_epoch{e:03d}.npy") for e in epochs]),
                                image_size=np.array(profile.image_size))
    summary = {"run": run, "model": model_name, "seed": seed, "best_epoch": history.best_epoch,
               "best_val_iou": history.best_val_iou, "validation": validation, "chosen": chosen,
               "test_raw": summarize(raw), "test": summarize(table), "train_seconds": train_seconds,
               "wall_seconds": time.perf_counter() - started, "epochs": profile.epochs,
               "median_images_per_s": float(np.median([r["images_per_s"] for r in history.records]))}
    write_json(out_dir / "runs" / f"{run}.json", summary)
    return summary


def _check_same_recipe(out_dir: Path, profile: Profile) -> None:
    """Refuse to add runs of one recipe to finished runs of another in the same ``out_dir``."""
    config_path = out_dir / "config.json"
    if not config_path.exists() or not any((out_dir / "runs").glob("*.json")):
        return
    changed = recipe_changes(json.loads(config_path.read_text())["profile"], training_recipe(profile))
    if changed:
        raise ConfigError(f"{out_dir} holds finished runs of another recipe ({'; '.join(changed)}); "
                          "use another output folder, or delete it to start again")


def compare_runs(out_dir: Path, seeds, metric: str = "iou") -> dict:
    """Per-seed and seed-averaged paired comparisons of Attention U-Net (B) against U-Net (A)."""
    tables = {(m, s): pd.read_csv(out_dir / "per_image" / f"{m}_seed{s}.csv", index_col="id")
              for m in MODEL_NAMES for s in seeds}
    per_seed = {str(s): paired_comparison(tables["unet", s][metric], tables["attention_unet", s][metric])
                for s in seeds}
    averaged = {m: pd.concat([tables[m, s][metric] for s in seeds], axis=1).mean(axis=1) for m in MODEL_NAMES}
    return {"metric": metric, "per_seed": per_seed,
            "seed_averaged": paired_comparison(averaged["unet"], averaged["attention_unet"])}


def run_experiment(data_root, out_dir, profile: Profile, *, seeds=None, work_dir=None, device=None,
                   progress: bool = True, log: Callable[[str], None] = print,
                   time_budget: float | None = None) -> dict:
    """Run every (seed, model) pair and write the artifacts listed in the module docstring.

    With ``time_budget`` (seconds) the number of epochs is not the profile's but the largest
    that lets all runs fit the budget on this device (:func:`skinseg.plan.plan_epochs`); the
    plan is stored in ``config.json``, and a later call with the same ``out_dir`` reuses it,
    so that an interrupted experiment resumes with the same schedule.

    Returns the summary that is also written to ``out_dir/summary.json``.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    seeds = list(profile.seeds if seeds is None else seeds)
    work_dir = Path(work_dir) if work_dir else Path("runs") / out_dir.name
    device = resolve_device(device)
    data = load_dataset(data_root, profile.image_size,
                        limits={"train": profile.max_train, "val": profile.max_val, "test": profile.max_test})
    psi_index = psi_image_indices(data["test"])
    profile, plan = budgeted_profile(profile, time_budget, out_dir / "config.json", {k: len(v) for k, v in data.items()},
                                     len(seeds), device, log=log)
    _check_same_recipe(out_dir, profile)
    config = {"profile": profile.to_dict(), "label": profile.label(), "seeds": seeds, "models": list(MODEL_NAMES),
              "data": {split: {"source": d.source, "n": len(d)} for split, d in data.items()},
              "data_root": str(data_root), "environment": environment(device), "psi_epochs": psi_epochs(profile.epochs),
              "plan": plan}
    write_json(out_dir / "config.json", config)
    log(f"{profile.label()} on {config['environment']['device']}: "
        + ", ".join(f"{k} {v['n']}" for k, v in config["data"].items()))
    runs = []
    for seed in seeds:
        for model_name in MODEL_NAMES:
            done = out_dir / "runs" / f"{model_name}_seed{seed}.json"
            if done.exists():
                runs.append(json.loads(done.read_text()))
                log(f"{model_name} seed {seed}: already done, skipped")
                continue
            summary = run_one(model_name, seed, data, profile, out_dir, work_dir, device, progress,
                              keep_details=seed == seeds[0], psi_index=psi_index)
            runs.append(summary)
            log(f"{model_name} seed {seed}: best epoch {summary['best_epoch']}, val IoU {summary['best_val_iou']:.4f}, "
                f"test IoU {summary['test']['mean_iou']:.4f} ({summary['chosen']}), {summary['train_seconds']:.0f} s training, "
                f"{summary['wall_seconds']:.0f} s in all")
    table = pd.DataFrame([{"model": r["model"], "seed": r["seed"], **r["test"]} for r in runs])
    spread = table.groupby("model")[["mean_iou", "mean_dice", "thresholded_jaccard"]].agg(["mean", "std"])
    result = {"label": profile.label(), "environment": config["environment"], "runs": runs,
              "mean_sd": {m: {f"{k}_{s}": float(spread.loc[m, (k, s)]) for k in ("mean_iou", "mean_dice",
                          "thresholded_jaccard") for s in ("mean", "std")} for m in spread.index},
              "comparison_iou": compare_runs(out_dir, seeds, "iou"),
              "comparison_dice": compare_runs(out_dir, seeds, "dice"),
              "seconds": time.perf_counter() - started}
    write_json(out_dir / "summary.json", result)
    log(f"wrote {out_dir / 'summary.json'}")
    return result
