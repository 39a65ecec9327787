"""Reading an experiment's results folder (written by :func:`skinseg.lab.experiment.run_experiment`).

The chapters read the committed GPU results through this module only: :func:`load_results` (default
``results/isic2017``) gives :class:`Results`, with one row per run (``runs``) or epoch (``histories``),
the per-image tables, the stored masks, ψ maps and display images, and the benchmark (:func:`load_bench`).
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError
from ..models import MODELS
from ..paths import results_dir
from ..psi import PsiMaps, load_psi
from .bench_results import setting_label
from .display import FILE_NAME as DISPLAY_FILE, DisplayImages, load_display, unpack_masks
from .endpoints import ENDPOINTS
from .result_files import array_names, read_arrays, read_json, read_table
from .stats import compare_tables, read_tables

MODEL_NAMES = tuple(MODELS)  # ("unet", "attention_unet"): U-Net first
# The test summaries of a run's "test" (its chosen variant) and "test_raw" (the raw prediction).
SUMMARY_KEYS = ("mean_iou", "mean_dice", "thresholded_jaccard", "pooled_iou", "pooled_dice")


def finished_seeds(folder: Path, models=MODEL_NAMES) -> list[int]:
    """The seeds for which ``folder/runs`` holds a finished run of every one of ``models``, in order."""
    seeds = {int(p.stem.rsplit("_seed", 1)[1]) for p in (Path(folder) / "runs").glob(f"{models[0]}_seed*.json")}
    return sorted(s for s in seeds if all((Path(folder) / "runs" / f"{m}_seed{s}.json").is_file() for m in models))


@dataclass(frozen=True)
class Predictions:
    """Predicted test masks of one run.

    Attributes:
        model, seed, ids: the run and its ``N`` test image ids, in the order of ``masks``.
        masks: ``(N, H, W)`` uint8 in {0, 1} (1 = lesion) at ``endpoint``.
        endpoint: ``"raw"`` (primary: threshold 0.5, no TTA or post-processing) or ``"chosen"``.
        variant: the TTA/post-processing variant the masks come from (``"none"`` for raw).
    """

    model: str
    seed: int
    ids: list[str]
    masks: np.ndarray
    endpoint: str = "chosen"
    variant: str = ""

    def describe(self) -> str:
        """What the masks are, for captions: ``"d4+post, the run's choice (secondary endpoint)"``."""
        raw = self.endpoint == "raw"
        return "raw prediction (primary endpoint)" if raw else f"{self.variant}, the run's choice (secondary endpoint)"

    def __len__(self) -> int:
        return len(self.ids)

    def mask(self, image_id: str) -> np.ndarray:
        """The ``(H, W)`` mask of one image id."""
        try:
            return self.masks[self.ids.index(image_id)]
        except ValueError:
            raise KeyError(f"no prediction for image id {image_id!r}") from None


def shown_path(folder: Path) -> str:
    """How messages name a results folder: ``results/<name>`` inside this repository's, else as given."""
    root, path = results_dir().resolve(), Path(folder).resolve()
    if root.name == "results" and path.is_relative_to(root):
        return f"results/{path.relative_to(root).as_posix()}"
    return str(folder)


class Results:
    """One experiment folder ``path`` with its ``config`` and ``summary`` (``config.json``, ``summary.json``);
    open it with :func:`load_results`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not (self.path / "runs").is_dir() or not any((self.path / "runs").glob("*.json")):
            raise DataError(f"results folder {shown_path(self.path)} holds no finished runs yet "
                            "(not yet run on a GPU; see results/README.md)")
        self.config = read_json(self.path / "config.json")
        self.summary = read_json(self.path / "summary.json")
        self.models = list(self.config["models"])
        self.planned_seeds = [int(s) for s in self.config["seeds"]]
        self._comparisons: dict[tuple[str, str], dict] = {}
        self.seeds = finished_seeds(self.path, self.models)
        if not self.seeds:
            raise DataError(f"results folder {shown_path(self.path)} holds no seed with a finished run of every model "
                            f"({', '.join(self.models)}) yet")

    def seeds_so_far(self) -> str:
        """``"2 of 3 seeds so far"``, or ``"3 seeds"`` when every planned seed is finished."""
        n, planned = len(self.seeds), len(self.planned_seeds)
        return f"{n} seed{'s' if n != 1 else ''}" if n >= planned else f"{n} of {planned} seeds so far"

    def __repr__(self) -> str:
        env = self.config.get("environment", {})
        folder = f"{self.path.parent.name}/{self.path.name}"  # not the absolute path: outputs must not depend on it
        return (f"Results({folder!r}: {len(self.models)} models x {len(self.seeds)} seeds, "
                f"{self.config['profile']['epochs']} epochs, {env.get('device', '?')})")

    @property
    def device(self) -> str:
        """The hardware of the finished runs, for labels (``"NVIDIA H200"``; several joined by " and ")."""
        return " and ".join(self.summary["devices"])

    @property
    def primary_endpoint(self) -> str:
        """The endpoint the comparison is judged on, as the experiment's ``config.json`` fixed it."""
        return self.config["evaluation"]["primary_endpoint"]

    def comparison(self, metric: str = "iou", endpoint: str | None = None) -> dict:
        """Attention U-Net minus U-Net on the finished seeds at ``endpoint`` (default :attr:`primary_endpoint`),
        :func:`skinseg.lab.stats.compare_tables` of the per-image tables."""
        key = (metric, endpoint or self.primary_endpoint)
        if key not in self._comparisons:  # a bootstrap per seed: computed once per folder
            self._comparisons[key] = compare_tables(read_tables(self.path, self.seeds, self.models), self.seeds, *key)
        return copy.deepcopy(self._comparisons[key])

    def _pairs(self):
        """``(model, seed)`` of every finished run, model by model."""
        return itertools.product(self.models, self.seeds)

    def label(self) -> str:
        """``"<data> test set (N images), <device>"``, or the smoke-run label for a reduced profile."""
        test = self.config["data"]["test"]
        text = f"{test['source']} set ({test['n']} images), {self.device}"
        return text if self.config["profile"]["name"] == "full" else f"{self.config['label']}: {text}"

    def run(self, model: str, seed: int) -> dict:
        """The raw ``runs/<model>_seed<seed>.json`` of one run."""
        return read_json(self.path / "runs" / f"{model}_seed{seed}.json")

    @cached_property
    def runs(self) -> pd.DataFrame:
        """One row per run: ``model``, ``seed``, ``best_epoch``, ``best_val_iou``, ``chosen`` (the variant
        picked on validation), ``val_iou_chosen``, the test :data:`SUMMARY_KEYS` of the chosen variant and,
        prefixed ``raw_``, of the raw prediction, ``n_test``, ``epochs``, ``train_seconds``, ``median_images_per_s``."""
        rows = []
        for model, seed in self._pairs():
            r = self.run(model, seed)
            rows.append({"model": model, "seed": seed, "best_epoch": r["best_epoch"], "best_val_iou": r["best_val_iou"],
                         "chosen": r["chosen"], "val_iou_chosen": r["validation"][r["chosen"]]["mean_iou"],
                         **{k: r["test"][k] for k in SUMMARY_KEYS}, **{f"raw_{k}": r["test_raw"][k] for k in SUMMARY_KEYS},
                         "n_test": r["test"]["n"], "epochs": r.get("epochs"), "train_seconds": r["train_seconds"],
                         "median_images_per_s": r["median_images_per_s"]})
        return pd.DataFrame(rows)

    @cached_property
    def validation(self) -> pd.DataFrame:
        """One row per (model, seed, variant) with the validation summaries of every TTA and
        post-processing variant, and ``chosen`` (True for the variant the run used)."""
        rows = []
        for model, seed in self._pairs():
            r = self.run(model, seed)
            rows += [{"model": model, "seed": seed, "variant": variant, **{k: scores[k] for k in SUMMARY_KEYS},
                      "chosen": variant == r["chosen"]} for variant, scores in r["validation"].items()]
        return pd.DataFrame(rows)

    @cached_property
    def histories(self) -> pd.DataFrame:
        """One row per (model, seed, epoch) with every column of the training history (``train_loss``, ...,
        ``val_iou``, ``lr``, ``seconds``, ``images_per_s``) and ``best`` (True at the run's best epoch)."""
        frames = []
        for model, seed in self._pairs():
            h = read_json(self.path / "histories" / f"{model}_seed{seed}.json")
            frame = pd.DataFrame([{"model": model, "seed": seed, **r} for r in h["records"]])
            frames.append(frame.assign(best=frame["epoch"] == h["best_epoch"]))
        return pd.concat(frames, ignore_index=True)

    def per_image(self, model: str, seed: int) -> pd.DataFrame:
        """Test metrics per image of one run, indexed by ``id``: ``iou``, ``dice`` (chosen variant),
        ``tp``, ``fp``, ``fn``, ``lesion_fraction``, ``predicted_fraction``, ``iou_raw``, ``dice_raw``."""
        return read_table(self.path / "per_image" / f"{model}_seed{seed}.csv")

    def per_image_all(self) -> pd.DataFrame:
        """Every run's per-image table stacked, with ``model`` and ``seed`` columns (long format)."""
        return pd.concat([self.per_image(m, s).reset_index().assign(model=m, seed=s) for m, s in self._pairs()],
                         ignore_index=True)

    def _seed_of(self, folder: str, model: str, seed: int | None) -> tuple[Path, int]:
        seed = self.seeds[0] if seed is None else seed  # detailed artifacts are kept for the first seed only
        path = self.path / folder / f"{model}_seed{seed}.npz"
        if not path.is_file():
            raise DataError(f"results file {path} is missing (only the first seed keeps {folder})")
        return path, seed

    def mask_endpoints(self, model: str, seed: int | None = None) -> list[str]:
        """The endpoints whose test masks are stored for ``model`` (default: the first seed). A file with
        only ``masks`` holds the run's choice, also the raw prediction when the run chose ``"none"``."""
        path, seed = self._seed_of("predictions", model, seed)
        files = array_names(path)
        if "masks" in files:  # the older layout: the run's choice only
            return ["raw", "chosen"] if self.run(model, seed)["chosen"] == "none" else ["chosen"]
        return [e for e in ENDPOINTS if f"masks_{e}" in files]

    def predictions(self, model: str, seed: int | None = None, *, endpoint: str) -> Predictions:
        """The unpacked test masks of ``model`` (default: the first seed) at ``endpoint`` (``"raw"`` or
        ``"chosen"``); :class:`DataError` when the file lacks them (:meth:`mask_endpoints`)."""
        if endpoint not in ENDPOINTS:
            raise ConfigError(f"endpoint must be one of {sorted(ENDPOINTS)}, got {endpoint!r}")
        path, seed = self._seed_of("predictions", model, seed)
        chosen = self.run(model, seed)["chosen"]
        if endpoint not in self.mask_endpoints(model, seed):
            raise DataError(f"{shown_path(path)} keeps only the masks of the run's choice ({chosen}, the secondary "
                            "endpoint), not the raw prediction: it was written before raw masks were stored; "
                            "use endpoint='chosen' and say so")
        key = "masks" if "masks" in array_names(path) else f"masks_{endpoint}"
        z = read_arrays(path, ("shape", "ids", key))
        return Predictions(model, seed, [str(i) for i in z["ids"]], unpack_masks(z[key], z["shape"], path), endpoint,
                           "none" if endpoint == "raw" else chosen)

    def psi(self, model: str = "attention_unet", seed: int | None = None) -> PsiMaps:
        """The stored ψ maps of ``model`` (default: the first seed), read by :func:`skinseg.psi.load_psi`."""
        return load_psi(self._seed_of("psi", model, seed)[0])

    @cached_property
    def display(self) -> DisplayImages:
        """The stored test images the results show (``display.npz``, :mod:`skinseg.lab.display`)."""
        return load_display(self.path / DISPLAY_FILE)

    def display_image(self, image_id: str) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`DisplayImages.image` of the stored test images (not the local data)."""
        return self.display.image(image_id)

    def display_images(self, ids) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`DisplayImages.select` of the stored test images."""
        return self.display.select(ids)

    def bench(self, folder: Path | str | None = None) -> pd.DataFrame:
        """The benchmark files (default: ``bench/`` beside this folder), see :func:`load_bench`."""
        return load_bench(self.path.parent / "bench" if folder is None else folder)


# The experiments' folders in results/ (see results/README.md).
CONVERGED = "isic2017"  # the full recipe at convergence on ISIC 2017
EARLY_STOP = "isic2017_16ep"  # stopped after 16 epochs: kept as a lesson


def results_path(name: Path | str | None = None) -> Path:
    """The folder of an experiment: ``name`` as a path if it holds a separator (or is a Path),
    else ``results_dir() / name`` (default :data:`CONVERGED`)."""
    if name is None:
        name = CONVERGED
    if isinstance(name, Path) or "/" in name or "\\" in name:
        return Path(name)
    return results_dir() / name


def load_results(name: Path | str | None = None) -> Results:
    """Open an experiment's results folder (:func:`results_path`; default :data:`CONVERGED`);
    :class:`DataError` naming the folder when it does not exist or holds no finished runs."""
    return Results(results_path(name))


def load_bench(folder: Path | str | None = None) -> pd.DataFrame:
    """Every ``*.json`` of :func:`skinseg.lab.bench.run_benchmark` in ``folder`` (default ``results/bench``)
    but operator profiles (``*_ops.json``), one row per measured setting.

    Columns: the setting (``model``, ``batch_size``, ``amp``, ``channels_last``, ``compile``, ``compile_mode``,
    ``compile_gates``) and its ``setting`` label, ``images_per_s``, ``step_ms``, ``model_step_ms``,
    ``pipeline_fraction``, ``compile_seconds``, ``compiled``, ``tflops``, ``peak_fraction`` (of the file's
    matmul peak), ``error`` where a setting failed, and per file ``device``, ``torch``, ``device_type``,
    ``matmul_peak_tflops``, ``date`` (ISO time; empty where not recorded) and ``file``.
    """
    folder = Path(folder) if folder is not None else results_dir() / "bench"
    files = sorted(f for f in folder.glob("*.json") if not f.name.endswith("_ops.json"))
    if not files:
        raise DataError(f"no benchmark files (*.json) in {folder}")
    return pd.concat([report_frame(read_json(path), path.name) for path in files], ignore_index=True)


def report_frame(report: dict, file: str = "") -> pd.DataFrame:
    """One benchmark report (the dict :func:`skinseg.lab.bench.run_benchmark` returns) as the rows
    :func:`load_bench` gives for its file, named ``file``."""
    frame = pd.DataFrame(report["results"])
    if "error" not in frame:
        frame["error"] = None
    frame["setting"] = [setting_label(r.amp, r.channels_last, r.compile, r.compile_mode, r.batch_size, r.compile_gates)
                        for r in frame.itertuples()]
    return frame.assign(device=report["device"], torch=report["torch"], device_type=report["device_type"],
                        matmul_peak_tflops=report["matmul_peak_flops"] / 1e12, date=report["date"], file=file)
