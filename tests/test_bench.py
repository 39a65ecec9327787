"""The training-step benchmark, as a CPU smoke run (no timing is asserted)."""
import json

import torch

from skinseg.bench import Setting, default_settings, run_benchmark, training_flops_per_image
from skinseg.config import PROFILES


def test_run_benchmark_on_cpu_writes_json(tmp_path):
    profile = PROFILES["tiny"]
    device = torch.device("cpu")
    settings = default_settings(device, profile)
    assert settings == [Setting("unet", profile.batch_size, "off", False, False),
                        Setting("attention_unet", profile.batch_size, "off", False, False)]
    messages = []
    out = tmp_path / "bench" / "cpu.json"
    report = run_benchmark(profile, device, settings, log=messages.append, out_path=out,
                           warmup=1, steps=2, repeats=1, pool=8)
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert report["label"].startswith("CPU SMOKE RUN")
    assert report["width"] == 4 and report["image_size"] == [64, 64]
    assert report["matmul_peak_flops"] > 0
    assert len(report["results"]) == 2
    for result, setting in zip(report["results"], settings):
        assert "error" not in result, result
        assert result["model"] == setting.model and result["batch_size"] == setting.batch_size
        assert result["images_per_s"] > 0 and result["step_ms"] > 0 and result["tflops"] > 0
        assert 0 <= result["pipeline_fraction"] <= 1
        assert result["compiled"] is False
    assert len(messages) == 3  # the header, then one line per setting


def test_training_flops_grow_with_width_and_attention():
    small = training_flops_per_image("unet", 4, (32, 32))
    assert small > 0
    # the convolutions dominate: doubling the width roughly quadruples the work
    assert 3.0 < training_flops_per_image("unet", 8, (32, 32)) / small < 4.5
    assert training_flops_per_image("attention_unet", 4, (32, 32)) > small
    # and the work is proportional to the number of pixels
    assert training_flops_per_image("unet", 4, (64, 32)) == 2 * small


def test_gpu_grid_covers_precision_layout_batch_and_both_compile_modes():
    settings = default_settings(torch.device("cuda"), PROFILES["full"])  # only builds the list
    for model in ("unet", "attention_unet"):
        mine = [s for s in settings if s.model == model]
        eager16 = {(s.amp, s.channels_last) for s in mine if s.batch_size == 16 and not s.compile}
        assert eager16 == {("off", False), ("off", True), ("bf16", False), ("bf16", True)}
        assert {s.batch_size for s in mine if not s.compile} == {16, 32, 64}
        assert {s.compile_mode for s in mine if s.compile} == {"default", "reduce-overhead"}
    assert len(set(settings)) == len(settings)
    # plain against fast first, so that a run cut short by a time limit keeps the comparison
    assert settings[:6] == [Setting("unet", 16, "bf16", True, False), Setting("attention_unet", 16, "bf16", True, False),
                            Setting("unet", 16, "bf16", True, True), Setting("attention_unet", 16, "bf16", True, True),
                            Setting("unet", 16, "bf16", True, True, "reduce-overhead"),
                            Setting("attention_unet", 16, "bf16", True, True, "reduce-overhead")]
