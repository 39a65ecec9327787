"""The training-step benchmark, as a CPU smoke run (no timing is asserted)."""
import json

import pytest
import torch

from skinseg.config import PROFILES
from skinseg.lab.bench import (Setting, bench_setting, default_settings, launch_floor, operator_profile, run_benchmark, run_operator_profiles,
                           training_flops_per_image)
from skinseg.models import build_model


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
    # plain first, then the quick batch sizes, then the slow compiled settings, so that a run
    # cut short by a time limit keeps the plain-against-fast comparison
    plain = [Setting("unet", 16, "bf16", True, False), Setting("attention_unet", 16, "bf16", True, False)]
    batches = [Setting(m, b, "bf16", True, False) for b in (32, 64) for m in ("unet", "attention_unet")]
    compiled = [Setting("unet", 16, "bf16", True, True), Setting("attention_unet", 16, "bf16", True, True),
                Setting("unet", 16, "bf16", True, True, "reduce-overhead"),
                Setting("attention_unet", 16, "bf16", True, True, "reduce-overhead")]
    assert settings[:11] == plain + batches + compiled + [Setting("attention_unet", 16, "bf16", True, False,
                                                                   compile_gates=True)]


def test_operator_profile_shows_the_gates_own_operators():
    profiles = {m: operator_profile(Setting(m, 2, "off", False, False), 4, (32, 32), torch.device("cpu"),
                                    steps=1, top=1000) for m in ("unet", "attention_unet")}
    for result in profiles.values():
        ops = result["operators"]
        assert result["clock"] == "cpu" and result["step_ms"] > 0 and result["floor_step_ms"] > 0
        assert sum(op["share"] for op in ops) == pytest.approx(1.0)
        assert [op["ms_per_step"] for op in ops] == sorted((op["ms_per_step"] for op in ops), reverse=True)
        assert any(op["name"] == "aten::convolution_backward" for op in ops)
    # the ψ projection: a 1x1 convolution from F_int = 2 channels to one, only in the gated net
    psi_weight = [1, 2, 1, 1]
    assert any(psi_weight in op["input_shapes"] for op in profiles["attention_unet"]["operators"])
    assert not any(psi_weight in op["input_shapes"] for op in profiles["unet"]["operators"])
    assert len(operator_profile(Setting("unet", 2, "off", False, False), 4, (32, 32), torch.device("cpu"),
                                steps=1, top=3)["operators"]) == 3


def test_run_operator_profiles_writes_one_profile_per_model(tmp_path):
    messages = []
    report = run_operator_profiles(PROFILES["tiny"], "cpu", log=messages.append, out_path=tmp_path / "ops.json")
    assert json.loads((tmp_path / "ops.json").read_text()) == json.loads(json.dumps(report))
    assert [p["model"] for p in report["profiles"]] == ["unet", "attention_unet"]
    assert all(not p["compile"] and len(p["operators"]) == 20 for p in report["profiles"])
    assert messages[0].startswith("unet: ") and messages[-1] == f"wrote {tmp_path / 'ops.json'}"


def test_compiling_only_the_gates(monkeypatch):
    """The setting that compiles the four attention gates and nothing else: each gate is handed
    to torch.compile (here a stand-in that records the call), the step stays eager."""
    compiled = []

    def fake_compile(fn, **options):
        compiled.append(options)
        return fn

    monkeypatch.setattr(torch, "compile", fake_compile)
    setting = Setting("attention_unet", 2, "off", False, False, compile_gates=True)
    result = bench_setting(setting, 4, (32, 32), torch.device("cpu"), warmup=0, steps=1, repeats=1, pool=4)
    assert compiled == [{"mode": "default"}] * 4 and result["compiled"] is False
    assert result["images_per_s"] > 0 and result["compile_stats"] is not None
    with pytest.raises(ValueError, match="not both"):
        bench_setting(Setting("attention_unet", 2, "off", False, True, compile_gates=True), 4, (32, 32),
                      torch.device("cpu"), warmup=0, steps=1, repeats=1, pool=4)


def test_the_launch_floor_runs_the_same_operators_on_a_two_channel_network():
    """launch_floor times a width-2 network on 32x32 images; it only says something about
    launching if that network issues exactly the operators of the real one."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    for model in ("unet", "attention_unet"):
        counts = []
        for width, size in ((2, 32), (8, 64)):
            torch.manual_seed(0)
            net = build_model(model, width)
            with Count() as count:
                net(torch.rand(2, 3, size, size)).mean().backward()
            counts.append(count.ops)
        assert counts[0] == counts[1]
    assert launch_floor(Setting("attention_unet", 2, "off", False, False), torch.device("cpu")) > 0


def test_flops_are_counted_on_meta_as_on_real_tensors():
    from torch.utils.flop_counter import FlopCounterMode

    from skinseg.lab.bench import attention_flops_overhead, training_flops_per_image
    from skinseg.models import build_model

    model = build_model("attention_unet", 4)
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 3, 32, 32)).sum().backward()
    assert training_flops_per_image("attention_unet", 4, (32, 32)) == counter.get_total_flops()
    overhead = attention_flops_overhead()
    assert 0.01 < overhead < 0.03  # the gates' 1x1 convolutions are cheap next to the 3x3 ones
