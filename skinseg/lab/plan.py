"""What a time budget may decide: which whole runs start (:class:`RunCosts`), never how long a run
trains; only the recipe sweep, on validation, lets :func:`plan_epochs` choose its epochs. Both
cost a run with :func:`cost_model`, from each model's training step measured on the device.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Callable

import torch

from ..config import Profile
from ..device import describe
from ..errors import ConfigError
from ..models import MODELS
from ..step import compile_enabled
from .bench import Setting, bench_setting
from .result_files import read_json

INFERENCE_SPEEDUP = 2.0  # conservative: inference runs about 3x the images/s of a training step
RUN_SECONDS = 8.0  # per run: warm-up epoch, loading the best weights, post-processing, writing files
TTA_VIEWS = {"none": 1, "flip": 2, "d4": 8}


def measure_training_step(model_name: str, profile: Profile, device: torch.device, *, steps: int = 10,
                          repeats: int = 2) -> dict:
    """Images/s and compile seconds of ``model_name``'s training step as :func:`~skinseg.train.fit`
    runs it with ``profile`` on ``device`` (a short benchmark on synthetic batches: the best of
    ``repeats`` timings of ``steps`` steps each)."""
    setting = Setting(model_name, profile.batch_size, "auto", device.type == "cuda",  # as fit() does
                      compile_enabled(profile.compile, device), profile.compile_mode)
    result = bench_setting(setting, profile.width, profile.image_size, device, warmup=3, steps=steps, repeats=repeats,
                           pool=max(64, profile.batch_size))
    return {"images_per_s": result["images_per_s"], "compile_seconds": result["compile_seconds"]}


def cost_model(model_name: str, profile: Profile, sizes: dict[str, int], device: torch.device,
               measure: Callable[[str, Profile, torch.device], dict] | None = None) -> dict:
    """The measured training step of ``model_name`` and what it predicts: ``images_per_s``,
    ``compile_seconds``, ``epoch_seconds`` (training, and validation at ``INFERENCE_SPEEDUP`` times
    the rate) and ``run_seconds`` (the fixed part: warm-up, compiling, scoring the evaluation views).
    ``sizes`` holds the number of ``train``, ``val`` and ``test`` images (``test`` 0 for an untested
    run); ``measure(model_name, profile, device) -> {"images_per_s", "compile_seconds"}`` defaults
    to :func:`measure_training_step`.
    """
    m = (measure or measure_training_step)(model_name, profile, device)
    views = max(TTA_VIEWS[t] for t in profile.tta)  # nested variants share their views (predict_variants)
    inference = INFERENCE_SPEEDUP * m["images_per_s"]
    epoch = sizes["train"] / m["images_per_s"] + sizes["val"] / inference
    run = RUN_SECONDS + m["compile_seconds"] + (sizes["val"] + sizes["test"]) * views / inference
    return {**m, "epoch_seconds": epoch, "run_seconds": run}


def plan_epochs(profile: Profile, budget_seconds: float, sizes: dict[str, int], runs_per_model: int,
                device: torch.device, models=tuple(MODELS),
                measure: Callable[[str, Profile, torch.device], dict] | None = None) -> dict:
    """The largest number of epochs with which ``runs_per_model`` runs of every model (one per seed,
    say) fit ``budget_seconds`` (``sizes`` and ``measure`` as for :func:`cost_model`).

    Returns ``budget_seconds``, ``epochs``, the estimated ``seconds``, ``runs_per_model`` and per model
    (``models``) :func:`cost_model`'s figures; raises :class:`ConfigError` when not even one epoch fits.
    """
    if budget_seconds <= 0:
        raise ConfigError(f"time budget must be a positive number of seconds, got {budget_seconds}")
    per_model = {name: cost_model(name, profile, sizes, device, measure) for name in models}
    epoch_seconds = sum(runs_per_model * m["epoch_seconds"] for m in per_model.values())
    fixed_seconds = sum(runs_per_model * m["run_seconds"] for m in per_model.values())
    epochs = math.floor((budget_seconds - fixed_seconds) / epoch_seconds)
    if epochs < 1:
        raise ConfigError(f"time budget of {budget_seconds:.0f} s is too small: one epoch of every run needs "
                          f"about {fixed_seconds + epoch_seconds:.0f} s on {device}")
    return {"budget_seconds": budget_seconds, "epochs": epochs, "seconds": fixed_seconds + epochs * epoch_seconds,
            "runs_per_model": runs_per_model, "models": per_model}


def budgeted_profile(profile: Profile, budget_seconds: float | None, json_path: Path, sizes: dict[str, int],
                     runs_per_model: int, device: torch.device, models=tuple(MODELS),
                     log: Callable[[str], None] = print, evaluation_tta: tuple[str, ...] | None = None
                     ) -> tuple[Profile, dict | None]:
    """``(profile, plan)``: without a budget the profile as it is and ``None``; with one, the profile
    with the epochs of the ``"plan"`` an earlier call stored in ``json_path`` for the same budget (a
    resumed run keeps its schedule), else of a new, logged :func:`plan_epochs` (its evaluation
    costed with ``evaluation_tta`` if given)."""
    if budget_seconds is None:
        return profile, None
    plan = read_json(json_path).get("plan") if json_path.exists() else None
    if not plan or plan["budget_seconds"] != budget_seconds:
        costed = profile if evaluation_tta is None else profile.replace(tta=evaluation_tta)
        plan = plan_epochs(costed, budget_seconds, sizes, runs_per_model, device, models=models)
        log(describe_plan(plan))
    else:
        log(f"{plan['epochs']} epochs, as planned by the earlier call for {plan['budget_seconds']:.0f} s")
    return profile.replace(epochs=plan["epochs"]), plan


def describe_plan(plan: dict) -> str:
    """One line per model and a last line with the choice."""
    lines = [f"{name}: {m['images_per_s']:.0f} img/s, {m['epoch_seconds']:.1f} s per epoch, "
             f"{m['run_seconds']:.0f} s per run besides the epochs" + (
                 f" (compiling {m['compile_seconds']:.0f} s)" if m["compile_seconds"] else "")
             for name, m in plan["models"].items()]
    n = plan["runs_per_model"]
    runs = f"{n} run{'s' if n != 1 else ''} of " + (f"each of {len(plan['models'])} models" if len(plan["models"]) > 1
                                                    else next(iter(plan["models"])))
    lines.append(f"{runs}: {plan['epochs']} epochs fit {plan['budget_seconds']:.0f} s (estimate {plan['seconds']:.0f} s)")
    return "\n".join(lines)


class RunCosts:
    """:meth:`estimate`: the wall seconds of one whole run of a model with ``profile`` on ``device``, the
    longest of an earlier finished run with the same epochs on the same hardware in the ``runs/`` of
    the ``earlier`` results folders (read afresh each time), else ``profile.epochs`` epochs and the
    fixed part of :func:`cost_model` (``sizes`` and ``measure`` as there)."""

    def __init__(self, profile: Profile, sizes: dict[str, int], device: torch.device, *, earlier=(),
                 measure: Callable[[str, Profile, torch.device], dict] | None = None,
                 log: Callable[[str], None] = print) -> None:
        self.profile, self.sizes, self.device = profile, sizes, torch.device(device)
        self.device_name = describe(self.device)
        self.earlier, self.measure, self.log = [Path(f) for f in earlier], measure, log
        self.estimated: dict[str, float] = {}

    def estimate(self, model_name: str) -> float:
        runs = [read_json(path) for folder in self.earlier for path in (folder / "runs").glob(f"{model_name}_seed*.json")]
        measured = [float(r["wall_seconds"]) for r in runs if "wall_seconds" in r and r.get("epochs") == self.profile.epochs
                    and r.get("environment", {}).get("device") == self.device_name]
        if measured:
            return max(measured)
        if model_name not in self.estimated:
            m = cost_model(model_name, self.profile, self.sizes, self.device, self.measure)
            self.estimated[model_name] = self.profile.epochs * m["epoch_seconds"] + m["run_seconds"]
            self.log(f"{model_name}: {m['images_per_s']:.0f} img/s measured, so about {self.estimated[model_name]:.0f} s "
                     f"per run of {self.profile.epochs} epochs on {self.device_name} (no earlier run to go by)")
        return self.estimated[model_name]


def training_estimate(profile: Profile, sizes: dict[str, int], device: torch.device | str,
                      models=tuple(MODELS), measure=None) -> dict:
    """Seconds that :func:`skinseg.train.fit` will take for each of ``models`` with ``profile`` on
    ``sizes["train"]`` and ``sizes["val"]`` images, from :func:`cost_model` with a short step measured
    now (or ``measure``): ``{"seconds": {model: s}, "images_per_s": {model: rate}, "text": "about 6 min ..."}``."""
    device = torch.device(device)
    if measure is None:  # a few steps: enough for minutes-scale advice, cheap before a training cell
        measure = functools.partial(measure_training_step, steps=4, repeats=1)
    costs = {name: cost_model(name, profile, {**sizes, "test": 0}, device, measure) for name in models}
    seconds = {name: profile.epochs * c["epoch_seconds"] + c["compile_seconds"] for name, c in costs.items()}
    rates = {name: c["images_per_s"] for name, c in costs.items()}
    total = sum(seconds.values())
    when = f"about {total / 60:.0f} min" if total >= 90 else f"about {total:.0f} s"
    text = (f"{when} on this {describe(device)} for {' and '.join(models)} ({profile.label()}, "
            f"{profile.epochs} epochs of {sizes['train']} images; measured: "
            + ", ".join(f"{n} {r:.0f} img/s" for n, r in rates.items()) + ")")
    return {"seconds": seconds, "images_per_s": rates, "text": text}
