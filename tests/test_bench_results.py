"""Benchmark files into tables: one device at a time, the newest measurement of each setting,
both models against their plain step. Reports are written here by hand so that every case
(several machines, repeated settings, failures) is covered; the committed GPU files are read too."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skinseg.errors import DataError
from skinseg.lab.bench_results import PLAIN_GPU, gate_cost, latest_bench, setting_label, speedup_table
from skinseg.lab.results import load_bench

from conftest import run_cli

COMMITTED = Path(__file__).resolve().parents[1] / "results" / "bench"


def _result(model, ips, batch=16, amp="bf16", cl=True, compile=False, mode="default", **extra):
    return {"model": model, "batch_size": batch, "amp": amp, "channels_last": cl, "compile": compile,
            "compile_mode": mode, "compile_gates": False, "images_per_s": ips, "step_ms": 1000 * batch / ips,
            "model_step_ms": 900 * batch / ips, "pipeline_fraction": 0.1, **extra}


def _failed(model, error, **setting):
    """A setting that raised: run_benchmark stores the setting and the error, no timings."""
    return {key: _result(model, 1, **setting)[key] for key in ("model", "batch_size", "amp", "channels_last",
                                                                 "compile", "compile_mode", "compile_gates")} | {"error": error}


def _write(folder, name, results, device="NVIDIA H200", torch="2.11.0+cu130", date=""):
    report = {"device": device, "device_type": "cuda", "torch": torch, "matmul_peak_flops": 7.9e14,
              "training_flops_per_image": {"unet": 2.9e11, "attention_unet": 3.0e11}, "results": results,
              "date": date}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(report))


def test_setting_labels_name_precision_layout_compile_mode_and_batch():
    assert setting_label("off", False, False, "default", 16) == "fp32, batch 16"
    assert setting_label("bf16", True, False, "default", 32) == "bf16 + channels_last, batch 32"
    assert setting_label("bf16", True, True, "default", 16) == "bf16 + channels_last + compiled, batch 16"
    assert (setting_label("bf16", True, True, "reduce-overhead", 16)
            == "bf16 + channels_last + compiled with CUDA graphs, batch 16")


def test_latest_bench_keeps_the_newest_device_and_the_newest_row_of_each_setting(tmp_path):
    folder = tmp_path / "bench"
    _write(folder, "a_old.json", [_result("unet", 600), _result("attention_unet", 500)])  # no date recorded: oldest
    _write(folder, "b_h100.json", [_result("unet", 400)], device="NVIDIA H100 80GB HBM3", date="2026-12-01T10:00:00+00:00")
    _write(folder, "c_new.json", [_result("unet", 700), _result("unet", 650, batch=32),
                                  _failed("attention_unet", "RuntimeError: boom", compile=True)],
           date="2026-12-02T10:00:00+00:00")
    _write(folder, "d_other_torch.json", [_result("unet", 999)], torch="2.12.0+cu130", date="2026-11-30T10:00:00+00:00")
    frame = load_bench(folder)
    assert len(frame) == 7 and frame.error.notna().sum() == 1
    assert frame.groupby("file").date.first().to_dict() == {
        "a_old.json": "", "b_h100.json": "2026-12-01T10:00:00+00:00", "c_new.json": "2026-12-02T10:00:00+00:00",
        "d_other_torch.json": "2026-11-30T10:00:00+00:00"}
    latest = latest_bench(frame)
    assert set(latest.device) == {"NVIDIA H200"} and set(latest.torch) == {"2.11.0+cu130"}
    assert latest.error.isna().all()  # the failed compiled setting is left out
    rows = {(r.model, r.batch_size): (r.images_per_s, r.file) for r in latest.itertuples()}
    assert rows == {("unet", 16): (700, "c_new.json"), ("attention_unet", 16): (500, "a_old.json"),
                    ("unet", 32): (650, "c_new.json")}


def test_latest_bench_refuses_a_folder_of_failures(tmp_path):
    _write(tmp_path, "x.json", [_failed("unet", "RuntimeError: out of memory")])
    with pytest.raises(DataError, match="every benchmarked setting failed"):
        latest_bench(load_bench(tmp_path))


def test_speedup_table_compares_each_model_with_its_own_plain_step(tmp_path):
    _write(tmp_path, "x.json", [_result("unet", 700), _result("attention_unet", 560),
                                _result("unet", 1050, compile=True), _result("attention_unet", 840, compile=True),
                                _result("unet", 1200, compile=True, mode="reduce-overhead"),
                                _result("unet", 350, amp="off", cl=False), _result("unet", 760, batch=32)])
    table = speedup_table(latest_bench(load_bench(tmp_path)))
    assert list(table.index) == ["bf16 + channels_last, batch 16", "fp32, batch 16",
                                 "bf16 + channels_last + compiled, batch 16",
                                 "bf16 + channels_last + compiled with CUDA graphs, batch 16",
                                 "bf16 + channels_last, batch 32"]
    plain, compiled = table.iloc[0], table.loc["bf16 + channels_last + compiled, batch 16"]
    assert plain["U-Net vs plain"] == 1 and plain["Attention U-Net vs plain"] == 1
    assert plain["Attention / U-Net"] == pytest.approx(0.8)
    assert compiled["U-Net vs plain"] == pytest.approx(1.5) and compiled["Attention U-Net vs plain"] == pytest.approx(1.5)
    assert compiled["U-Net model step ms"] == pytest.approx(900 * 16 / 1050)
    graphs = table.loc["bf16 + channels_last + compiled with CUDA graphs, batch 16"]
    assert graphs["U-Net vs plain"] == pytest.approx(1200 / 700)
    assert np.isnan(graphs["Attention U-Net img/s"]) and np.isnan(graphs["Attention / U-Net"])  # not measured


def test_speedup_table_wants_one_row_per_setting_of_one_device(tmp_path):
    _write(tmp_path, "a.json", [_result("unet", 700)])
    _write(tmp_path, "b.json", [_result("unet", 710)], device="NVIDIA H100 80GB HBM3")
    with pytest.raises(ValueError, match="latest_bench"):
        speedup_table(load_bench(tmp_path))


def test_committed_gpu_benchmark_table():
    frame = load_bench(COMMITTED)
    latest = latest_bench(frame)
    assert len(latest) == len(frame) == 8  # two calls on one machine, no setting measured twice
    table = speedup_table(latest)
    assert table.index[0] == "bf16 + channels_last, batch 16"
    plain = frame[(frame[list(PLAIN_GPU)] == pd.Series(PLAIN_GPU)).all(axis=1)].set_index("model").images_per_s
    compiled = table.loc["bf16 + channels_last + compiled, batch 16"]
    ips = frame[frame.compile].set_index("model").images_per_s
    assert compiled["U-Net vs plain"] == pytest.approx(ips["unet"] / plain["unet"])
    assert compiled["Attention U-Net vs plain"] == pytest.approx(ips["attention_unet"] / plain["attention_unet"])
    assert np.isnan(table.loc["bf16, batch 16", "Attention U-Net img/s"])  # measured for the U-Net only


def test_bench_command_prints_the_table(tmp_path):
    out = tmp_path / "cpu.json"
    result = run_cli(["bench", "--profile", "tiny", "--out", str(out), "--steps", "1", "--repeats", "1"],
                     tmp_path, tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    assert "CPU SMOKE RUN" in result.stdout and "each model against its plain step" in result.stdout
    row = next(line for line in result.stdout.splitlines() if line.startswith("fp32, batch 4"))
    assert len(row.split()) == 3 + 7  # the label's three words and seven numbers
    assert json.loads(out.read_text())["date"]


def test_gate_cost_tells_step_time_from_throughput(tmp_path):
    _write(tmp_path, "x.json", [_result("unet", 700), _result("attention_unet", 560),
                                _result("unet", 1050, compile=True)])
    cost = gate_cost(latest_bench(load_bench(tmp_path)))
    assert cost["unet_step_ms"] == pytest.approx(1000 * 16 / 700)
    assert cost["step_time_change"] == pytest.approx(0.25)  # 700 / 560: a step a quarter longer ...
    assert cost["throughput_change"] == pytest.approx(-0.20)  # ... is a fifth fewer images per second
    _write(tmp_path / "one", "x.json", [_result("unet", 700)])
    with pytest.raises(DataError, match="lacks a step of both models"):
        gate_cost(latest_bench(load_bench(tmp_path / "one")))
