"""The experiment behind the book: both models, several seeds, one recipe, every artifact.

Each run trains with :func:`skinseg.train.fit`, picks test-time augmentation and post-processing on
the validation set, and only then scores the test set, on both endpoints (:data:`skinseg.lab.endpoints.ENDPOINTS`);
an interrupted run resumes from its checkpoint in ``work_dir``. ``out_dir`` gets small files only::

    config.json           profile, recipe, seeds, data protocol and hash, evaluation protocol, environment
    runs/<run>.json       best epoch, validation table, test summaries, timing, hardware
    histories/<run>.json  the training history
    per_image/<run>.csv   test metrics per image (iou, dice: the run's choice; iou_raw, dice_raw: raw)
    psi/<run>.npz         ψ maps of fixed test images at several epochs (first seed)
    predictions/<run>.npz bit-packed test masks masks_raw and masks_chosen (first seed)
    display.npz           the shown test images (skinseg.lab.display)
    summary.json          mean ± sd and paired comparisons per endpoint, from the finished runs
    external/<name>/      scores on an external test set (skinseg.lab.external)
"""
from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ..atomic import write_atomic, write_npz_atomic, write_text_atomic
from ..checkpoint import load_model
from ..config import Profile
from ..data import SegmentationData
from ..device import resolve_device, seed_everything
from ..errors import ConfigError
from ..evaluate import binarize, predict_variants, score_masks, summarize
from ..lock import locks_folder, output_lock
from ..models import build_model
from ..psi import flatten_levels, psi_maps
from ..train import BEST, fit, recipe_changes, training_recipe
from .display import store_display_of_run
from .endpoints import EvalSetting, evaluate_endpoints, evaluation_protocol
from .external import ExternalSets
from .leakage import training_record
from .plan import RunCosts
from .protocols import OFFICIAL, load_protocol_dataset
from .provenance import data_fingerprint, environment, write_json
from .result_files import read_json
from .results import MODEL_NAMES, finished_seeds
from .run_errors import run_folder_hint
from .stats import compare_tables, read_tables

N_PSI_IMAGES = 12


def psi_epochs(epochs: int) -> list[int]:
    """The epochs at which ψ maps are stored: the first, a few along the way, and the last."""
    return sorted({1, max(1, epochs // 10), max(1, epochs // 4), max(1, epochs // 2), epochs})


def psi_image_indices(test: SegmentationData, n: int = N_PSI_IMAGES) -> np.ndarray:
    """``n`` fixed test images spread evenly over the range of lesion sizes."""
    order = np.argsort(test.lesion_fraction, kind="stable")
    return order[np.linspace(0, len(order) - 1, min(n, len(order))).round().astype(int)]


def folder_mismatch(folder: Path, new: dict) -> str | None:
    """What makes the runs of the ``config.json`` dict ``new`` unfit to join the finished runs in ``folder``
    (another recipe, width, data or evaluation protocol, dataset), or ``None`` (also for no finished run)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file() or not any((folder / "runs").glob("*.json")):
        return None
    stored = read_json(folder / "config.json")
    if changed := recipe_changes(stored["recipe"], new["recipe"]):
        return f"another recipe ({'; '.join(changed)})"
    old, now = stored["evaluation"], new["evaluation"]
    for what, before, after in (("another model width", stored["profile"]["width"], new["profile"]["width"]),
                                ("another data protocol", stored["protocol"], new["protocol"]),
                                ("another dataset (data hash)", stored["data_hash"], new["data_hash"]),
                                ("another primary endpoint", old["primary_endpoint"], now["primary_endpoint"])):
        if before != after:
            return f"{what} ({before} -> {after})"
    for key in ("tta", "postprocess"):  # the candidates of each run's own choice
        if old[key] != now[key]:
            return f"another evaluation protocol ({key} {old[key]!r} -> {now[key]!r})"
    return None


RUN_SCORES = ("run", "model", "seed", "epochs", "best_epoch", "best_val_iou", "chosen", "test_raw", "test")


def write_summary(out_dir: Path) -> dict:
    """Write and return ``out_dir/summary.json``, computed from the finished runs' files only (so that
    runs added by several calls or merged from archives give what one call would).

    Keys: ``label``, ``primary_endpoint``, ``seeds`` (those with a finished run of every model),
    ``planned_seeds``, ``devices``, ``runs`` (each run's scores, no timings), ``mean_sd`` (sd ``None``
    for one seed) and ``comparison`` (empty before a seed is complete), keyed by endpoint, then model or metric.
    """
    out_dir = Path(out_dir)
    config = read_json(out_dir / "config.json")
    seeds = finished_seeds(out_dir, MODEL_NAMES)
    records = sorted((read_json(p) for p in (out_dir / "runs").glob("*.json")),
                     key=lambda r: (r["seed"], MODEL_NAMES.index(r["model"])))
    runs = [{k: r.get(k) for k in RUN_SCORES} | {"device": r["environment"]["device"]} for r in records]
    complete = [r for r in runs if r["seed"] in seeds]
    tables = read_tables(out_dir, seeds, MODEL_NAMES)  # per-image, of the complete seeds
    mean_sd, comparison = {"raw": {}, "chosen": {}}, {}
    for endpoint, key in (("raw", "test_raw"), ("chosen", "test")):
        if not seeds:  # no seed with every model finished: nothing to summarize yet
            continue
        for model in MODEL_NAMES:
            values = pd.DataFrame([r[key] for r in complete if r["model"] == model])
            mean_sd[endpoint][model] = {
                f"{k}_{s}": (float(getattr(values[k], s)()) if s == "mean" or len(values) > 1 else None)
                for k in ("mean_iou", "mean_dice", "thresholded_jaccard") for s in ("mean", "std")}
        comparison[endpoint] = {metric: compare_tables(tables, seeds, metric, endpoint) for metric in ("iou", "dice")}
    summary = {"label": config["label"], "primary_endpoint": config["evaluation"]["primary_endpoint"],
               "seeds": seeds, "planned_seeds": config["seeds"], "devices": sorted({r["device"] for r in complete}),
               "runs": runs, "mean_sd": mean_sd, "comparison": comparison}
    write_json(out_dir / "summary.json", summary)
    return summary


class ExperimentRunner:
    """One experiment folder being filled: its data loaded once, its ``config.json`` written, and
    its runs trained one by one (:meth:`run`), each a whole run or nothing.

    Args:
        data_root: the dataset folder; ``protocol`` (:mod:`skinseg.lab.protocols`) which of its images form the splits.
        out_dir: the results folder; :class:`ConfigError` if it holds finished runs :func:`folder_mismatch` refuses.
        seeds: the planned seeds (default: the profile's); the first keeps predictions and ψ maps.
        external: ``{name: folder}`` of external test sets (:mod:`skinseg.lab.external`).
        committed: results folders with earlier runs (a slice's), also searched for the display images' tables.
    """

    def __init__(self, data_root, out_dir, profile: Profile, *, seeds=None, protocol: str = OFFICIAL,
                 work_dir=None, device=None, progress: bool = True, log: Callable[[str], None] = print,
                 external=None, committed=()) -> None:
        self.out_dir, self.profile, self.progress, self.log = Path(out_dir), profile, progress, log
        self.committed = [Path(f) for f in committed]
        self.seeds = list(profile.seeds if seeds is None else seeds)
        self.work_dir = Path(work_dir) if work_dir else Path("runs") / self.out_dir.name
        self.device = resolve_device(device)
        self.data = load_protocol_dataset(data_root, profile.image_size, protocol=protocol,
                                          limits={"train": profile.max_train, "val": profile.max_val, "test": profile.max_test})
        self.psi_index = psi_image_indices(self.data["test"])
        self.external = ExternalSets(external, profile, self.device, log, train=self.data["train"])
        self.config = {"profile": profile.to_dict(), "recipe": training_recipe(profile), "label": profile.label(),
                       "seeds": self.seeds, "models": list(MODEL_NAMES), "protocol": protocol,
                       "data": {split: {"source": d.source, "n": len(d)} for split, d in self.data.items()},
                       "data_hash": data_fingerprint(self.data), "evaluation": evaluation_protocol(profile),
                       "data_root": str(data_root), "environment": environment(self.device),
                       "psi_epochs": psi_epochs(profile.epochs)}
        if self.external:
            self.config["external"] = self.external.describe()
        if problem := folder_mismatch(self.out_dir, self.config):
            raise ConfigError(f"{self.out_dir} holds finished runs of {problem}; "
                              "use another output folder, or delete it to start again")
        write_json(self.out_dir / "config.json", self.config)
        log(f"{profile.label()} on {self.config['environment']['device']}: "
            + ", ".join(f"{k} {v['n']}" for k, v in self.config["data"].items()))
        self.external.score_finished(self.out_dir, self.work_dir)  # runs finished by earlier calls

    @property
    def sizes(self) -> dict[str, int]:
        """The number of ``train``, ``val`` and ``test`` images."""
        return {k: len(v) for k, v in self.data.items()}

    def done(self, model_name: str, seed: int) -> bool:
        return (self.out_dir / "runs" / f"{model_name}_seed{seed}.json").exists()

    def run(self, model_name: str, seed: int) -> dict:
        """Train, select and evaluate one run (resuming its checkpoint in ``work_dir``); returns its summary."""
        started = time.perf_counter()
        data, profile, device, out_dir = self.data, self.profile, self.device, self.out_dir
        run, keep_details = f"{model_name}_seed{seed}", seed == self.seeds[0]
        run_dir = self.work_dir / run
        seed_everything(seed)
        model = build_model(model_name, profile.width)
        psi_at = set(psi_epochs(profile.epochs)) if (keep_details and model.has_attention) else set()
        psi_images, psi_ids = data["test"].images[self.psi_index], [data["test"].ids[i] for i in self.psi_index]

        def snapshot(epoch: int, evaluated) -> None:
            if epoch in psi_at:
                psi = flatten_levels(psi_maps(evaluated, psi_images, device))
                write_atomic(run_dir / f"psi_epoch{epoch:03d}.npy", lambda f: np.save(f, psi))

        with output_lock(run_dir), run_folder_hint(run_dir, "experiment"):
            history = fit(model, data["train"], data["val"], profile, run_dir, seed=seed, device=device,
                          progress=self.progress, on_epoch_end=snapshot, trained_on=training_record(data["train"]))
        write_json(out_dir / "histories" / f"{run}.json", history.to_dict())

        evaluation_started = time.perf_counter()
        best = load_model(run_dir / BEST, device)
        val_probs = predict_variants(best, data["val"].images, profile.tta, batch_size=profile.eval_batch_size, device=device)
        settings = [EvalSetting(tta, post) for tta in val_probs for post in ((False, True) if profile.postprocess else (False,))]
        validation = {s.label: summarize(score_masks(binarize(val_probs[s.tta], s.postprocess), data["val"], boundary=False))
                      for s in settings}
        chosen = EvalSetting.parse(max(validation, key=lambda k: validation[k]["mean_iou"]))

        # the test set is read from here on: the primary endpoint (raw) and the run's own choice
        table, raw, masks, raw_masks = evaluate_endpoints(best, data["test"], chosen,
                                                          batch_size=profile.eval_batch_size, device=device)
        write_text_atomic(out_dir / "per_image" / f"{run}.csv", table.to_csv(float_format="%.6f"))
        if keep_details:
            write_npz_atomic(out_dir / "predictions" / f"{run}.npz", ids=np.array(data["test"].ids),
                             masks_raw=np.packbits(raw_masks, axis=-1), masks_chosen=np.packbits(masks, axis=-1),
                             chosen=np.array(chosen.label), shape=np.array(masks.shape))
        if psi_at:
            epochs = sorted(e for e in psi_at if (run_dir / f"psi_epoch{e:03d}.npy").exists())
            write_npz_atomic(out_dir / "psi" / f"{run}.npz", epochs=np.array(epochs), ids=np.array(psi_ids),
                             psi=np.stack([np.load(run_dir / f"psi_epoch{e:03d}.npy") for e in epochs]),
                             image_size=np.array(profile.image_size))
        summary = {"run": run, "model": model_name, "seed": seed, "best_epoch": history.best_epoch,
                   "best_val_iou": history.best_val_iou, "validation": validation, "chosen": chosen.label,
                   "test_raw": summarize(raw), "test": summarize(table),
                   "train_seconds": sum(r["seconds"] for r in history.records),  # also right for a resumed run
                   "evaluation_seconds": time.perf_counter() - evaluation_started,
                   "wall_seconds": time.perf_counter() - started, "epochs": profile.epochs,
                   "median_images_per_s": float(np.median([r["images_per_s"] for r in history.records])),
                   "environment": environment(device)}
        write_json(out_dir / "runs" / f"{run}.json", summary)
        self.external.score_finished(out_dir, self.work_dir)
        if keep_details:  # the shown test images' pixels, once both models' predictions exist
            store_display_of_run(out_dir, data["test"], seed, psi_ids, folders=[out_dir, *self.committed])
        self.log(f"{model_name} seed {seed}: best epoch {summary['best_epoch']}, val IoU {summary['best_val_iou']:.4f}, "
                 f"test IoU {summary['test_raw']['mean_iou']:.4f} raw, {summary['test']['mean_iou']:.4f} "
                 f"({summary['chosen']}), {summary['train_seconds']:.0f} s training, "
                 f"{summary['evaluation_seconds']:.0f} s evaluation, {summary['wall_seconds']:.0f} s in all")
        return summary


def budget_allows(run_cost: float, left: float | None, log: Callable[[str], None], name: str) -> bool:
    """Whether a run expected to take ``run_cost`` seconds fits the ``left`` seconds of a budget
    (``None``: no budget); logs a refusal."""
    if left is None or run_cost <= left:
        return True
    log(f"{name}: not started, it needs about {run_cost:.0f} s and {max(left, 0):.0f} s are left")
    return False


@locks_folder("out_dir")
def run_experiment(data_root, out_dir, profile: Profile, *, seeds=None, work_dir=None, device=None,
                   progress: bool = True, log: Callable[[str], None] = print, time_budget: float | None = None,
                   protocol: str = OFFICIAL, run_cost: Callable[[str], float] | None = None,
                   external=None) -> dict:
    """Run the (seed, model) pairs in order (seed by seed, U-Net first), skipping finished runs, and write
    the module docstring's files; returns :func:`write_summary`. With ``time_budget`` (seconds) a run starts
    only if ``run_cost(model_name)`` (default :class:`skinseg.lab.plan.RunCosts`) fits the time left; the
    first that does not ends the call, so runs accumulate in order, whole."""
    started = time.perf_counter()
    runner = ExperimentRunner(data_root, out_dir, profile, seeds=seeds, protocol=protocol, work_dir=work_dir,
                              device=device, progress=progress, log=log, external=external)
    if time_budget is not None and run_cost is None:
        run_cost = RunCosts(profile, runner.sizes, runner.device, earlier=[runner.out_dir], log=log).estimate
    for seed, model_name in itertools.product(runner.seeds, MODEL_NAMES):
        if runner.done(model_name, seed):
            log(f"{model_name} seed {seed}: already done, skipped")
            continue
        left = None if time_budget is None else time_budget - (time.perf_counter() - started)
        if not budget_allows(run_cost(model_name) if run_cost else 0.0, left, log, f"{model_name} seed {seed}"):
            break
        runner.run(model_name, seed)
    summary = write_summary(runner.out_dir)
    log(f"wrote {runner.out_dir / 'summary.json'} ({len(summary['seeds'])} of {len(summary['planned_seeds'])} seeds finished)")
    return summary
