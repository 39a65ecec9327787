"""External test sets: datasets an experiment only evaluates on, and never selects on.

An experiment names them (``python -m skinseg experiment --external ph2=data/ph2``): the test split of a
folder, refused if it holds training images (:mod:`skinseg.lab.leakage`). Every finished run is scored on
each with its own weights and validation-chosen setting, in the experiment folder's layout::

    external/<name>/dataset.json         the folder, its source label, image count and data hash
    external/<name>/runs/<run>.json      the run's scores on it (test_raw, test)
    external/<name>/per_image/<run>.csv  per-image table, the columns of per_image/<run>.csv
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import pandas as pd

from ..atomic import write_text_atomic
from ..checkpoint import load_checkpoint, model_from_state
from ..config import Profile
from ..data import SegmentationData, load_split
from ..errors import ConfigError, LeakageError
from ..evaluate import summarize
from ..train import BEST
from .endpoints import PRIMARY_ENDPOINT, EvalSetting, evaluate_endpoints
from .leakage import check_held_out, training_record
from .provenance import data_fingerprint, write_json
from .result_files import read_json, read_table
from .results import finished_seeds
from .stats import compare_tables, endpoint_column, read_tables

EXTERNAL = "external"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def parse_external(specs) -> dict[str, Path]:
    """``["ph2=data/ph2", ...]`` -> ``{"ph2": Path("data/ph2")}``; :class:`ConfigError` for a bad entry."""
    sets: dict[str, Path] = {}
    for spec in specs or ():
        name, sep, folder = str(spec).partition("=")
        if not sep or not folder or not _NAME.fullmatch(name):
            raise ConfigError(f"--external {spec!r}: expected NAME=FOLDER, NAME of letters, digits, '_', '-' or '.'")
        if name in sets:
            raise ConfigError(f"--external names {name!r} twice")
        sets[name] = Path(folder)
    return sets


class ExternalSets:
    """The external test sets ``{name: folder}`` of one experiment call, each folder's ``test`` split loaded
    once at the profile's size and ``max_test``, so that bad folders fail before any training; a set not
    held out from ``train`` (or, before scoring, from a run's checkpoint) raises :class:`LeakageError`."""

    def __init__(self, sets: dict[str, Path] | None, profile: Profile, device, log: Callable[[str], None] = print,
                 train: SegmentationData | None = None):
        self.profile, self.device, self.log = profile, device, log
        self.folders = dict(sets or {})
        self.data = {name: load_split(folder, "test", profile.image_size, limit=profile.max_test)
                     for name, folder in self.folders.items()}
        if train is not None:
            record = training_record(train, with_ids=True)
            for name in self.data:
                self._check(record, name, "the experiment's models")
        self.described = {name: {"folder": str(self.folders[name]), "source": d.source, "n": len(d),
                                 "data_hash": data_fingerprint({"test": d})} for name, d in self.data.items()}

    def __bool__(self) -> bool:
        return bool(self.data)

    def describe(self) -> dict:
        """``{name: {"folder", "source", "n", "data_hash"}}``, as stored in ``config.json`` and ``dataset.json``."""
        return self.described

    def _check(self, trained_on: dict | None, name: str, model: str) -> None:
        """:func:`~skinseg.lab.leakage.check_held_out` of set ``name``, its error naming the set."""
        try:
            check_held_out(trained_on, self.data[name], model=model)
        except LeakageError as err:
            raise LeakageError(f"external set {name} ({self.folders[name]}): {err}") from None

    def score_finished(self, out_dir, work_dir) -> None:
        """Score every finished run of ``out_dir`` (``runs/<run>.json``) not yet scored on a set, with
        the checkpoint ``work_dir/<run>/best.pt`` and the run's ``chosen`` setting."""
        out_dir, work_dir = Path(out_dir), Path(work_dir)
        for name, data in self.data.items():
            folder = out_dir / EXTERNAL / name
            stored = folder / "dataset.json"
            if stored.exists() and read_json(stored).get("data_hash") != self.described[name]["data_hash"]:
                raise ConfigError(f"{folder} holds scores on other images than {self.folders[name]} "
                                  "(data hash differs); use another name for this set")
            write_json(stored, self.described[name])
            for run_file in sorted((out_dir / "runs").glob("*.json")):
                run = read_json(run_file)
                if (folder / "per_image" / f"{run['run']}.csv").exists():
                    continue
                checkpoint = work_dir / run["run"] / BEST
                if not checkpoint.is_file():
                    self.log(f"{run['run']} not scored on {name}: its checkpoint {checkpoint} is not here")
                    continue
                state = load_checkpoint(checkpoint)
                self._check(state.get("trained_on"), name, f"checkpoint {checkpoint}")
                model = model_from_state(state, checkpoint, self.device)
                table, raw, *_ = evaluate_endpoints(model, data, EvalSetting.parse(run["chosen"]),
                                                    batch_size=self.profile.eval_batch_size, device=self.device)
                write_json(folder / "runs" / f"{run['run']}.json", {k: run[k] for k in ("run", "model", "seed", "chosen")}
                           | {"test_raw": summarize(raw), "test": summarize(table)})
                write_text_atomic(folder / "per_image" / f"{run['run']}.csv", table.to_csv(float_format="%.6f"))
                self.log(f"{run['run']} on external set {name} ({len(data)} images): "
                         f"mean IoU {table['iou_raw'].mean():.4f} raw, {table['iou'].mean():.4f} ({run['chosen']})")


def external_table(folder, endpoint: str = PRIMARY_ENDPOINT) -> pd.DataFrame:
    """Every run's mean IoU and Dice on each external set of the experiment in ``folder`` at ``endpoint``: one
    row per (``set``, ``model``, ``seed``) with ``source``, ``n``, ``mean_iou``, ``mean_dice``, ``own_test_iou``
    (on the experiment's test set) and ``change`` (the difference); empty, with these columns, before any."""
    folder, rows = Path(folder), []
    iou, dice = (endpoint_column(m, endpoint) for m in ("iou", "dice"))
    for dataset in sorted((folder / EXTERNAL).glob("*/dataset.json")):
        described = read_json(dataset)
        for run_file in sorted((dataset.parent / "runs").glob("*.json")):
            run = read_json(run_file)
            table = read_table(dataset.parent / "per_image" / f"{run['run']}.csv")
            own = read_table(folder / "per_image" / f"{run['run']}.csv")
            rows.append({"set": dataset.parent.name, "model": run["model"], "seed": run["seed"],
                         "source": described["source"], "n": len(table), "mean_iou": table[iou].mean(),
                         "mean_dice": table[dice].mean(), "own_test_iou": own[iou].mean()})
    table = pd.DataFrame(rows, columns=["set", "model", "seed", "source", "n", "mean_iou", "mean_dice", "own_test_iou"])
    return table.assign(change=table["mean_iou"] - table["own_test_iou"])


def external_summary(folder, endpoint: str = PRIMARY_ENDPOINT) -> pd.DataFrame:
    """:func:`external_table` per external set and model, over the seeds: ``seeds``, ``n``,
    ``mean_iou`` and ``sd_iou`` (mean and standard deviation over seeds of each run's mean IoU;
    ``sd_iou`` is NaN for one seed), ``own_test_iou`` and ``change`` (means over seeds)."""
    return external_table(folder, endpoint).groupby(["set", "model"]).agg(
        seeds=("seed", "count"), n=("n", "first"), mean_iou=("mean_iou", "mean"), sd_iou=("mean_iou", "std"),
        own_test_iou=("own_test_iou", "mean"), change=("change", "mean"))


def external_differences(folder, metric: str = "iou", endpoint: str = PRIMARY_ENDPOINT) -> pd.DataFrame:
    """Attention U-Net minus U-Net on each external set, over the seeds with both models scored: one row per
    set with ``seeds``, ``n``, ``mean_diff``, ``ci_low``, ``ci_high`` (the 95 % two-level bootstrap over seeds
    and images, :func:`skinseg.lab.stats.two_level_bootstrap`), ``b_better`` and ``a_better`` (images won, seed-averaged)."""
    rows = []
    for dataset in sorted(Path(folder).glob(f"{EXTERNAL}/*/dataset.json")):
        seeds = finished_seeds(dataset.parent)
        if not seeds:
            continue
        result = compare_tables(read_tables(dataset.parent, seeds), seeds, metric, endpoint)
        two, averaged = result["two_level"], result["seed_averaged"]
        rows.append({"set": dataset.parent.name, "seeds": len(seeds), "n": two["n"], "mean_diff": two["mean_diff"],
                     "ci_low": two["ci_low"], "ci_high": two["ci_high"], "b_better": averaged["b_better"],
                     "a_better": averaged["a_better"]})
    return pd.DataFrame(rows, columns=["set", "seeds", "n", "mean_diff", "ci_low", "ci_high", "b_better", "a_better"])


__all__ = ["EXTERNAL", "ExternalSets", "external_differences", "external_summary", "external_table", "parse_external"]
