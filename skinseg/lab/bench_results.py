"""Tables from benchmark results (the rows :func:`skinseg.lab.results.load_bench` reads), one device
and torch version at a time: timings are comparable only on the same hardware and software::

    frame = load_bench()              # skinseg.lab.results: every file in results/bench, one row per setting
    latest = latest_bench(frame)      # the newest file's device and torch, newest row per setting
    speedup_table(latest)             # both models side by side, against their plain step
"""
from __future__ import annotations

import pandas as pd

from ..config import MODEL_LABELS
from ..errors import DataError

# The columns that identify one benchmarked setting (skinseg.lab.bench.Setting).
SETTING_KEYS = ("model", "batch_size", "amp", "channels_last", "compile", "compile_mode", "compile_gates")
# The step every speed-up is measured against: what fit() does on a GPU without compiling.
PLAIN_GPU = {"amp": "bf16", "channels_last": True, "compile": False, "compile_gates": False, "batch_size": 16}
PLAIN_CPU = {"amp": "off", "channels_last": False, "compile": False, "compile_gates": False}


def setting_label(amp: str, channels_last: bool, compile: bool, compile_mode: str, batch_size: int,
                  compile_gates: bool = False) -> str:
    """A readable name, for example ``"bf16 + channels_last + compiled with CUDA graphs, batch 16"``."""
    parts = ["fp32" if amp == "off" else amp] + (["channels_last"] if channels_last else [])
    if compile:
        parts.append("compiled with CUDA graphs" if compile_mode == "reduce-overhead" else "compiled")
    if compile_gates:
        parts.append("gates compiled")
    return " + ".join(parts) + f", batch {batch_size}"


def _baseline(frame: pd.DataFrame, plain: dict | None) -> dict:
    return plain if plain is not None else PLAIN_GPU if (frame.device_type == "cuda").all() else PLAIN_CPU


def _matches(rows: pd.DataFrame, setting: dict) -> pd.Series:
    """Which ``rows`` have every value of ``setting``."""
    return (rows[list(setting)] == pd.Series(setting)).all(axis=1)


def latest_bench(frame: pd.DataFrame) -> pd.DataFrame:
    """The measurements of the newest file's (by ``date``, then name) device and torch version, one
    row per setting (the newest), failed settings left out; rows keep their order in ``frame``."""
    ok = frame[frame["error"].isna()] if "error" in frame else frame
    if ok.empty:
        raise DataError("every benchmarked setting failed; there is nothing to show")
    ordered = ok.sort_values(["date", "file"], kind="stable")
    newest = ordered.iloc[-1]
    same = ordered[(ordered.device == newest.device) & (ordered.torch == newest.torch)]
    return same.drop_duplicates(list(SETTING_KEYS), keep="last").sort_index()


def speedup_table(frame: pd.DataFrame, plain: dict | None = None) -> pd.DataFrame:
    """Both models' training throughput in every setting of ``frame`` (the rows of one device,
    :func:`latest_bench`) against their ``plain`` step (a subset of :data:`SETTING_KEYS`; default
    :data:`PLAIN_GPU` on a GPU, :data:`PLAIN_CPU` on a CPU): one row per setting label (plain first,
    then by batch size and speed) with ``"<model> img/s"``, ``"<model> vs plain"``, ``"<model> model
    step ms"`` and ``"Attention / U-Net"`` (the throughput ratio); NaN for a model a setting lacks."""
    if frame.duplicated(list(SETTING_KEYS)).any() or frame.device.nunique() > 1:
        raise ValueError("speedup_table needs one row per setting of one device: pass latest_bench(frame)")
    plain = _baseline(frame, plain)
    table = pd.DataFrame(index=pd.Index(frame.setting.unique(), name="setting"))
    for model, name in MODEL_LABELS.items():
        rows = frame[frame.model == model].set_index("setting")
        base = rows[_matches(rows, plain)].images_per_s
        table[f"{name} img/s"] = rows.images_per_s
        table[f"{name} vs plain"] = rows.images_per_s / base.iloc[0] if len(base) else float("nan")
        table[f"{name} model step ms"] = rows.model_step_ms
    table["Attention / U-Net"] = table["Attention U-Net img/s"] / table["U-Net img/s"]
    first = frame.drop_duplicates("setting").set_index("setting")
    speed = table[["U-Net img/s", "Attention U-Net img/s"]].mean(axis=1)
    order = pd.DataFrame({"plain": ~_matches(first, plain), "batch": first.batch_size, "speed": speed})
    return table.loc[order.sort_values(["plain", "batch", "speed"]).index]


def gate_cost(frame: pd.DataFrame, plain: dict | None = None) -> dict[str, float]:
    """What the gates cost in the ``plain`` setting (default as :func:`speedup_table`) of one
    device's rows (:func:`latest_bench`): ``unet_step_ms``, ``attention_step_ms``,
    ``step_time_change`` (Attention / U-Net step time - 1: +0.24 is a step 24 % longer) and
    ``throughput_change`` (Attention / U-Net images/s - 1: -0.19 for +0.24, as 1 / 1.24 = 0.81)."""
    plain = _baseline(frame, plain)
    rows = frame[_matches(frame, plain)].drop_duplicates("model", keep="last").set_index("model")
    if not {"unet", "attention_unet"} <= set(rows.index):
        raise DataError(f"the benchmark lacks a step of both models in the setting {plain}")
    unet, attention = rows.loc["unet"], rows.loc["attention_unet"]
    return {"unet_step_ms": float(unet.step_ms), "attention_step_ms": float(attention.step_ms),
            "step_time_change": float(attention.step_ms / unet.step_ms - 1),
            "throughput_change": float(attention.images_per_s / unet.images_per_s - 1)}
