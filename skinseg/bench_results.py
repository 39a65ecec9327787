"""Reading benchmark files (written by :func:`skinseg.bench.run_benchmark`) into tables.

A benchmark folder collects files from several calls, perhaps on several machines. Timings
are comparable only when they come from the same hardware and software, so the tables here
take one device and torch version at a time::

    frame = load_bench()              # every file in results/bench, one row per setting
    latest = latest_bench(frame)      # the newest file's device and torch, newest row per setting
    speedup_table(latest)             # both models side by side, against their plain step
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .config import results_dir
from .errors import DataError

# The columns that identify one benchmarked setting (skinseg.bench.Setting).
SETTING_KEYS = ("model", "batch_size", "amp", "channels_last", "compile", "compile_mode", "compile_gates")
# The step every speed-up is measured against: what fit() does on a GPU without compiling.
PLAIN_GPU = {"amp": "bf16", "channels_last": True, "compile": False, "compile_gates": False, "batch_size": 16}
PLAIN_CPU = {"amp": "off", "channels_last": False, "compile": False, "compile_gates": False}
MODEL_COLUMNS = {"unet": "U-Net", "attention_unet": "Attention U-Net"}


def setting_label(amp: str, channels_last: bool, compile: bool, compile_mode: str, batch_size: int,
                  compile_gates: bool = False) -> str:
    """A readable name, for example ``"bf16 + channels_last + compiled with CUDA graphs, batch 16"``."""
    parts = ["fp32" if amp == "off" else amp] + (["channels_last"] if channels_last else [])
    if compile:
        parts.append("compiled with CUDA graphs" if compile_mode == "reduce-overhead" else "compiled")
    if compile_gates:
        parts.append("gates compiled")
    return " + ".join(parts) + f", batch {batch_size}"


def _read_report(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"benchmark file {path} is not valid JSON ({err})") from None


def load_bench(folder: Path | str | None = None) -> pd.DataFrame:
    """Every ``*.json`` written by :func:`skinseg.bench.run_benchmark` in ``folder`` (default
    ``results/bench``), one row per measured setting; operator profiles (``*_ops.json``) are
    left out.

    Columns: the setting (``model``, ``batch_size``, ``amp``, ``channels_last``, ``compile``,
    ``compile_mode``, ``compile_gates``; files written before the last two were measured get
    ``"default"`` and ``False``) and its
    ``setting`` label (:func:`setting_label`), ``images_per_s``, ``step_ms``, ``model_step_ms``,
    ``pipeline_fraction``, ``compile_seconds``, ``compiled``, ``tflops``, ``peak_fraction`` (of
    that file's measured matmul peak), ``error`` where a setting failed (else missing), and
    per file ``device``, ``device_type``, ``torch``, ``matmul_peak_tflops``, ``date`` (ISO
    time of the run; empty for files written before it was recorded) and ``file``.
    """
    folder = Path(folder) if folder is not None else results_dir() / "bench"
    files = sorted(f for f in folder.glob("*.json") if not f.name.endswith("_ops.json"))
    if not files:
        raise DataError(f"no benchmark files (*.json) in {folder}")
    return pd.concat([report_frame(_read_report(path), path.name) for path in files], ignore_index=True)


def report_frame(report: dict, file: str = "") -> pd.DataFrame:
    """One benchmark report (the dict :func:`skinseg.bench.run_benchmark` returns) as the rows
    :func:`load_bench` gives for its file, named ``file``."""
    frame = pd.DataFrame(report["results"])
    frame["compile_mode"] = frame["compile_mode"].fillna("default") if "compile_mode" in frame else "default"
    frame["compile_gates"] = frame["compile_gates"].fillna(False).astype(bool) if "compile_gates" in frame else False
    if "error" not in frame:
        frame["error"] = None
    frame["setting"] = [setting_label(r.amp, r.channels_last, r.compile, r.compile_mode, r.batch_size, r.compile_gates)
                        for r in frame.itertuples()]
    frame["device"], frame["torch"] = report["device"], report["torch"]
    frame["device_type"] = report["device_type"]
    frame["matmul_peak_tflops"] = report["matmul_peak_flops"] / 1e12
    frame["date"] = report.get("date", "")
    frame["file"] = file
    return frame


def latest_bench(frame: pd.DataFrame) -> pd.DataFrame:
    """The measurements to show: those of the newest file's device and torch version, one row
    per setting (the newest, where several files measured it), failed settings left out.

    Files are ordered by their ``date``, then by name. Rows keep their order in ``frame``.
    """
    ok = frame[frame["error"].isna()] if "error" in frame else frame
    if ok.empty:
        raise DataError("every benchmarked setting failed; there is nothing to show")
    ordered = ok.sort_values(["date", "file"], kind="stable")
    newest = ordered.iloc[-1]
    same = ordered[(ordered.device == newest.device) & (ordered.torch == newest.torch)]
    return same.drop_duplicates(list(SETTING_KEYS), keep="last").sort_index()


def speedup_table(frame: pd.DataFrame, plain: dict | None = None) -> pd.DataFrame:
    """Both models' training throughput in every setting of ``frame``, against their plain step.

    Args:
        frame: the rows of one device, as :func:`latest_bench` gives them.
        plain: the baseline setting (a subset of :data:`SETTING_KEYS`); default
            :data:`PLAIN_GPU` (bf16 + channels_last, eager, batch 16) on a GPU and
            :data:`PLAIN_CPU` (fp32, eager) on a CPU.

    Returns: one row per setting label (plain first, then by batch size and speed), with
    ``"<model> img/s"``, ``"<model> vs plain"`` (its throughput over its own plain step's),
    ``"<model> model step ms"`` for U-Net and Attention U-Net, and ``"Attention / U-Net"``
    (the throughput ratio). A setting measured for one model only has NaN for the other.
    """
    if frame.duplicated(list(SETTING_KEYS)).any() or frame.device.nunique() > 1:
        raise ValueError("speedup_table needs one row per setting of one device: pass latest_bench(frame)")
    if plain is None:
        plain = PLAIN_GPU if (frame.device_type == "cuda").all() else PLAIN_CPU
    table = pd.DataFrame(index=pd.Index(frame.setting.unique(), name="setting"))
    for model, name in MODEL_COLUMNS.items():
        rows = frame[frame.model == model].set_index("setting")
        base = rows[(rows[list(plain)] == pd.Series(plain)).all(axis=1)].images_per_s
        table[f"{name} img/s"] = rows.images_per_s
        table[f"{name} vs plain"] = rows.images_per_s / base.iloc[0] if len(base) else float("nan")
        table[f"{name} model step ms"] = rows.model_step_ms
    table["Attention / U-Net"] = table["Attention U-Net img/s"] / table["U-Net img/s"]
    first = frame.drop_duplicates("setting").set_index("setting")
    is_plain = (first[list(plain)] == pd.Series(plain)).all(axis=1)
    speed = table[["U-Net img/s", "Attention U-Net img/s"]].mean(axis=1)
    order = pd.DataFrame({"plain": ~is_plain, "batch": first.batch_size, "speed": speed})
    return table.loc[order.sort_values(["plain", "batch", "speed"]).index]
