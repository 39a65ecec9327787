"""Choosing the number of epochs that lets an experiment fit a time budget.

The throughput of each model's real training step (the profile's precision, memory format
and compile setting) is measured on the device first; the number of epochs then follows
from a simple cost model of one run:

* per epoch: the training images at the measured rate, plus the validation images at
  ``INFERENCE_SPEEDUP`` times that rate (a forward pass costs about a third of a training step);
* per run: the first epoch's warm-up (cuDNN tries its algorithms), compiling (measured),
  and the evaluation: every validation image once per test-time-augmentation view to
  choose the views, and the test images through the chosen (at most eight) views.

The plan is an estimate, printed and stored next to the results together with the time
the experiment really took.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

import torch

from .bench import Setting, bench_setting
from .config import Profile
from .errors import ConfigError
from .train import compile_enabled

INFERENCE_SPEEDUP = 2.0  # conservative: inference runs about 3x the images/s of a training step
RUN_SECONDS = 8.0  # per run: warm-up epoch, loading the best weights, post-processing, writing files
TTA_VIEWS = {"none": 1, "flip": 2, "d4": 8}


def measure_training_step(model_name: str, profile: Profile, device: torch.device) -> dict:
    """Images/s and compile seconds of ``model_name``'s training step as :func:`~skinseg.train.fit`
    runs it with ``profile`` on ``device`` (a short benchmark on synthetic batches)."""
    cuda = device.type == "cuda"
    setting = Setting(model_name, profile.batch_size, "auto", cuda, compile_enabled(profile.compile, device),
                      profile.compile_mode)  # as fit() does
    result = bench_setting(setting, profile.width, profile.image_size, device, warmup=3, steps=10, repeats=2,
                           pool=max(64, profile.batch_size))
    return {"images_per_s": result["images_per_s"], "compile_seconds": result["compile_seconds"]}


def plan_epochs(profile: Profile, budget_seconds: float, sizes: dict[str, int], runs_per_model: int,
                device: torch.device, models=("unet", "attention_unet"),
                measure: Callable[[str, Profile, torch.device], dict] | None = None) -> dict:
    """The largest number of epochs with which ``runs_per_model`` runs of every model (one per seed,
    say) fit ``budget_seconds``.

    Args:
        sizes: the number of ``train``, ``val`` and ``test`` images (``test`` 0 when a run is not tested).
        measure: ``(model_name, profile, device) -> {"images_per_s", "compile_seconds"}``
            (default :func:`measure_training_step`).

    Returns a dict with ``epochs``, the estimated ``seconds``, and per model the measured
    ``images_per_s``, ``compile_seconds``, ``epoch_seconds`` and ``run_seconds`` (the fixed part).
    Raises :class:`ConfigError` when not even one epoch fits.
    """
    if budget_seconds <= 0:
        raise ConfigError(f"time budget must be a positive number of seconds, got {budget_seconds}")
    measure = measure or measure_training_step
    views = sum(TTA_VIEWS[t] for t in profile.tta)
    per_model, epoch_seconds, fixed_seconds = {}, 0.0, 0.0
    for name in models:
        m = measure(name, profile, device)
        ips, inference = m["images_per_s"], INFERENCE_SPEEDUP * m["images_per_s"]
        epoch = sizes["train"] / ips + sizes["val"] / inference
        run = RUN_SECONDS + m["compile_seconds"] + (sizes["val"] * views + sizes["test"] * (1 + max(
            TTA_VIEWS[t] for t in profile.tta))) / inference
        per_model[name] = {**m, "epoch_seconds": epoch, "run_seconds": run}
        epoch_seconds += runs_per_model * epoch
        fixed_seconds += runs_per_model * run
    epochs = math.floor((budget_seconds - fixed_seconds) / epoch_seconds)
    if epochs < 1:
        raise ConfigError(f"time budget of {budget_seconds:.0f} s is too small: one epoch of every run needs "
                          f"about {fixed_seconds + epoch_seconds:.0f} s on {device}")
    return {"budget_seconds": budget_seconds, "epochs": epochs, "seconds": fixed_seconds + epochs * epoch_seconds,
            "runs_per_model": runs_per_model, "models": per_model}


def budgeted_profile(profile: Profile, budget_seconds: float | None, json_path: Path, sizes: dict[str, int],
                     runs_per_model: int, device: torch.device, models=("unet", "attention_unet"),
                     log: Callable[[str], None] = print, evaluation_tta: tuple[str, ...] | None = None
                     ) -> tuple[Profile, dict | None]:
    """``(profile, plan)`` for a run that may have a time budget.

    Without a budget: the profile as it is and no plan. With one: the plan an earlier call
    stored in ``json_path`` for the same budget (so that a resumed run keeps its schedule),
    else a new :func:`plan_epochs` (its evaluation costed with ``evaluation_tta`` if given);
    the profile gets the plan's epochs. The plan is logged either way.
    """
    if budget_seconds is None:
        return profile, None
    plan = stored_plan(json_path, budget_seconds)
    if plan is None:
        costed = profile if evaluation_tta is None else profile.replace(tta=evaluation_tta)
        plan = plan_epochs(costed, budget_seconds, sizes, runs_per_model, device, models=models)
        log(describe_plan(plan))
    else:
        log(f"{plan['epochs']} epochs, as planned by the earlier call for {plan['budget_seconds']:.0f} s")
    return profile.replace(epochs=plan["epochs"]), plan


def stored_plan(json_path: Path, budget_seconds: float) -> dict | None:
    """The ``"plan"`` an earlier call stored in ``json_path`` for the same budget, if any: reusing it
    keeps the schedule of a resumed run."""
    if not json_path.exists():
        return None
    plan = json.loads(json_path.read_text()).get("plan")
    return plan if plan and plan["budget_seconds"] == budget_seconds else None


def describe_plan(plan: dict) -> str:
    """One line per model and a last line with the choice."""
    lines = [f"{name}: {m['images_per_s']:.0f} img/s, {m['epoch_seconds']:.1f} s per epoch, "
             f"{m['run_seconds']:.0f} s per run besides the epochs" + (
                 f" (compiling {m['compile_seconds']:.0f} s)" if m["compile_seconds"] else "")
             for name, m in plan["models"].items()]
    n = plan["runs_per_model"]
    runs = f"{n} run{'s' if n != 1 else ''} of " + (f"each of {len(plan['models'])} models" if len(plan["models"]) > 1
                                                    else next(iter(plan["models"])))
    lines.append(f"{runs}: {plan['epochs']} epochs fit "
                 f"{plan['budget_seconds']:.0f} s (estimate {plan['seconds']:.0f} s)")
    return "\n".join(lines)
