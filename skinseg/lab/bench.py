"""Training-step throughput of both models over a grid of batch sizes, precisions, memory formats
and ``torch.compile`` settings (median of timed repeats after a warm-up), with the achieved
TFLOP/s against a matrix-multiply peak measured in the same run.
"""
from __future__ import annotations

import functools
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..config import COMPILE_MODES, AugmentConfig, Profile
from ..device import describe, resolve_device
from ..losses import build_loss
from ..models import MODELS, build_model
from ..step import TrainStep, build_optimizer
from .provenance import write_json


@dataclass(frozen=True)
class Setting:
    """One benchmarked configuration."""

    model: str
    batch_size: int
    amp: str  # "bf16" / "fp16" / "off" (fp32) / "auto" (as fit() chooses)
    channels_last: bool
    compile: bool
    compile_mode: str = "default"  # or "reduce-overhead": the compiled step replayed as a CUDA graph
    compile_gates: bool = False  # an eager step whose attention gates alone are compiled (fused)


def training_flops_per_image(model_name: str, width: int, image_size: tuple[int, int]) -> float:
    """FLOPs (2 per multiply-add) of one forward and backward pass of one image, counted by torch
    on the ``meta`` device (only shapes flow: nothing is computed or allocated)."""
    with torch.device("meta"):
        model = build_model(model_name, width)
        x = torch.empty(1, 3, *image_size)
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    return float(counter.get_total_flops())


@functools.lru_cache(maxsize=None)
def attention_flops_overhead(width: int = 64, image_size: tuple[int, int] = (192, 256)) -> float:
    """How many more FLOPs Attention U-Net's training step does than U-Net's, as a fraction
    (0.0165 = +1.65 %): the figure the book and the README give."""
    return (training_flops_per_image("attention_unet", width, image_size)
            / training_flops_per_image("unet", width, image_size) - 1)


def matmul_peak(device: torch.device, size: int | None = None, repeats: int = 10) -> float:
    """Measured matrix-multiply FLOP/s: bf16 on a GPU, fp32 on a CPU."""
    cuda = device.type == "cuda"
    size = size or (8192 if cuda else 1024)
    dtype = torch.bfloat16 if cuda else torch.float32
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    _time(lambda: a @ b, device, 3, 1)  # warm-up
    return 2 * size ** 3 / _time(lambda: a @ b, device, repeats, 1)


def _time(fn, device: torch.device, steps: int, repeats: int) -> float:
    """Median seconds per call of ``fn`` over ``repeats`` blocks of ``steps`` calls."""
    results = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            for _ in range(steps):
                fn()
            end.record()
            torch.cuda.synchronize()
            results.append(start.elapsed_time(end) / 1000 / steps)
        else:
            t0 = time.perf_counter()  # not timeit: it turns the garbage collector off, which training does not
            for _ in range(steps):
                fn()
            results.append((time.perf_counter() - t0) / steps)
    return statistics.median(results)


def _training_step(setting: Setting, width: int, image_size: tuple[int, int], device: torch.device, pool: int):
    """A fresh model's :class:`TrainStep`, ``pool`` random uint8 images and masks on ``device``, a generator."""
    torch.manual_seed(0)
    model = build_model(setting.model, width).to(device)
    if setting.compile_gates:
        if setting.compile:
            raise ValueError(f"{setting}: compile the whole step or its gates, not both")
        for gate in model.gates:  # each gate's elementwise chain becomes a few fused kernels
            gate.compile(mode=setting.compile_mode)
    step = TrainStep(model, build_optimizer(model, 1e-4, 1e-4, device), build_loss("bce_dice"), device, AugmentConfig(),
                     amp=setting.amp, channels_last="on" if setting.channels_last else "off",
                     compile="on" if setting.compile else "off", compile_mode=setting.compile_mode)
    images = torch.randint(0, 256, (pool, 3, *image_size), dtype=torch.uint8, device=device)
    masks = (torch.rand(pool, 1, *image_size, device=device) > 0.7).to(torch.uint8)
    return step, images, masks, torch.Generator(device=device).manual_seed(0)


def bench_setting(setting: Setting, width: int, image_size: tuple[int, int], device: torch.device,
                  warmup: int = 3, steps: int = 10, repeats: int = 3, pool: int = 256) -> dict:
    """Time one setting: the setting plus ``images_per_s``, ``step_ms``, ``model_step_ms``, ``compile_seconds``,
    ``pipeline_fraction`` (share of the step spent indexing and augmenting) and ``compile_stats`` (compiled)."""
    compiling = setting.compile or setting.compile_gates
    if compiling:  # a cold start for each compiled setting, and counters of its own
        from torch._dynamo.utils import counters

        torch._dynamo.reset()
        counters.clear()
    step, images, masks, generator = _training_step(setting, width, image_size, device, pool)
    bs = setting.batch_size
    fixed_x, fixed_y = step.prepare(images[:bs], masks[:bs], generator)

    def full_step():  # what fit() does per batch: index the resident set, augment, step
        idx = torch.randint(0, pool, (bs,), device=device, generator=generator)
        step(images[idx], masks[idx], generator)

    t0 = time.perf_counter()
    full_step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    compile_seconds = time.perf_counter() - t0 if compiling else 0.0
    for _ in range(warmup):
        full_step()
    full = _time(full_step, device, steps, repeats)
    alone = _time(lambda: step.update(fixed_x, fixed_y), device, steps, repeats)  # one prepared batch
    # what TorchDynamo captured: more than one graph means recompiling, graph breaks split the step
    stats = {"graphs": counters["stats"]["unique_graphs"], "graph_breaks": sum(counters["graph_break"].values()),
             "frames": counters["frames"]["total"]} if compiling else None
    return {**asdict(setting), "images_per_s": bs / full, "step_ms": 1000 * full,
            "model_step_ms": 1000 * alone, "pipeline_fraction": max(0.0, 1 - alone / full),
            "compile_seconds": compile_seconds, "compiled": step.compiled, "compile_stats": stats}


def operator_profile(setting: Setting, width: int, image_size: tuple[int, int], device: torch.device,
                     steps: int = 5, top: int = 20) -> dict:
    """Where the time of a model step goes: the setting plus ``step_ms`` (the profiled total per step,
    GPU busy time on a GPU, CPU time on a CPU, over ``steps`` steps after a warm-up), ``floor_step_ms``
    (:func:`launch_floor`) and the ``top`` ``operators`` by their own time, per operator and input
    shapes: ``name``, ``input_shapes``, ``ms_per_step``, ``share`` of the total and ``calls_per_step``."""
    from torch.profiler import ProfilerActivity, profile

    step, images, masks, generator = _training_step(setting, width, image_size, device, setting.batch_size)
    x, y = step.prepare(images, masks, generator)
    cuda = device.type == "cuda"
    for _ in range(3):
        step.update(x, y)
    if cuda:
        torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else []), record_shapes=True) as prof:
        for _ in range(steps):
            step.update(x, y)
        if cuda:
            torch.cuda.synchronize()
    events = prof.key_averages(group_by_input_shape=True)
    own = (lambda e: e.self_device_time_total) if cuda else (lambda e: e.self_cpu_time_total)  # microseconds
    total = sum(own(e) for e in events)
    return {**asdict(setting), "clock": "gpu" if cuda else "cpu", "step_ms": total / 1000 / steps,
            "floor_step_ms": launch_floor(setting, device),
            "operators": [{"name": e.key, "input_shapes": [shape for shape in e.input_shapes if shape], "ms_per_step": own(e) / 1000 / steps,
                           "share": own(e) / total, "calls_per_step": e.count / steps} for e in sorted(events, key=own, reverse=True)[:top]]}


def launch_floor(setting: Setting, device: torch.device) -> float:
    """Wall-clock ms of ``setting``'s model step with two channels at the first level on 32x32 images:
    the same operators, each almost free, so on a GPU what is left is the cost of issuing them."""
    return bench_setting(setting, 2, (32, 32), device, warmup=3, steps=10, repeats=3, pool=setting.batch_size)["model_step_ms"]


def run_operator_profiles(profile: Profile, device=None, settings: list[Setting] | None = None,
                          log=print, out_path=None) -> dict:
    """:func:`operator_profile` of the first eager setting of each model in ``settings`` (default
    :func:`default_settings`), logged and, with ``out_path``, written as JSON."""
    device = resolve_device(device)
    eager = [s for s in settings or default_settings(device, profile) if not (s.compile or s.compile_gates)]
    plain: dict[str, Setting] = {}  # the first eager setting of each model
    for s in eager:
        plain.setdefault(s.model, s)
    report = {"device": describe(device), "torch": torch.__version__, "width": profile.width,
              "image_size": list(profile.image_size), "profiles": []}
    for setting in plain.values():
        ops = operator_profile(setting, profile.width, profile.image_size, device)
        report["profiles"].append(ops)
        log(f"{setting.model}: {ops['step_ms']:.1f} ms of {ops['clock'].upper()} time per step "
            f"(the same operators on a 2-channel, 32x32 network: {ops['floor_step_ms']:.1f} ms); the largest:")
        for op in ops["operators"][:8]:
            log(f"  {op['ms_per_step']:7.2f} ms {100 * op['share']:5.1f} %  {op['name']} {str(op['input_shapes'])[:70]}")
    if out_path is not None:
        write_json(out_path, report)
        log(f"wrote {out_path}")
    return report


def time_book_tests(root: Path | str = ".") -> dict:
    """Wall-clock seconds of ``pytest --nbval`` over the book's chapters (re-executes them on this machine)."""
    t0 = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env", "-q", "book"],
                            cwd=root, capture_output=True, text=True)
    return {"seconds": time.perf_counter() - t0, "returncode": result.returncode,
            "summary": (result.stdout.strip().splitlines() or [""])[-1]}


def default_settings(device: torch.device, profile: Profile, models=tuple(MODELS),
                     batch_sizes=(16, 32, 64), compile_batch_sizes=(16,)) -> list[Setting]:
    """The grid on a GPU, most telling first so that a run cut short keeps them: the plain bf16 +
    channels_last step at batch 16, then at the other ``batch_sizes``; compiled (default mode and
    CUDA graphs) at ``compile_batch_sizes``, then Attention U-Net with only its gates compiled;
    fp32 and channels_last off at batch 16. On a CPU: the profile's batch in fp32, eager."""
    if device.type != "cuda":
        return [Setting(m, profile.batch_size, "off", False, False) for m in models]
    grid = [Setting(m, 16, "bf16", True, False) for m in models]
    grid += [Setting(m, b, "bf16", True, False) for b in batch_sizes if b != 16 for m in models]
    grid += [Setting(m, b, "bf16", True, True, mode) for mode in COMPILE_MODES for m in models for b in compile_batch_sizes]
    grid += [Setting(m, b, "bf16", True, False, compile_gates=True) for m in models if m == "attention_unet"
             for b in compile_batch_sizes]
    return grid + [Setting(m, 16, amp, cl, False) for m in models
                   for amp, cl in (("off", False), ("off", True), ("bf16", False))]


def run_benchmark(profile: Profile, device=None, settings: list[Setting] | None = None,
                  log=print, out_path=None, **timing) -> dict:
    """Benchmark ``settings`` (default :func:`default_settings`) and return a JSON-ready dict,
    also written to ``out_path`` (if given) after every setting: an interrupted run keeps what it measured."""
    device = resolve_device(device)
    settings = settings or default_settings(device, profile)
    peak = matmul_peak(device)
    flops = {m: training_flops_per_image(m, profile.width, profile.image_size) for m in {s.model for s in settings}}
    log(f"{describe(device)}; torch {torch.__version__}; matmul peak {peak / 1e12:.1f} TFLOP/s; "
        f"width {profile.width}, {profile.image_size[0]}x{profile.image_size[1]}; "
        + ", ".join(f"{m} {f / 1e9:.1f} GFLOP/image" for m, f in flops.items()))
    report = {"device": describe(device), "device_type": device.type, "torch": torch.__version__,
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "profile": profile.name, "label": describe(device) if device.type == "cuda" else f"CPU SMOKE RUN on {describe(device)}",
              "width": profile.width, "image_size": list(profile.image_size),
              "matmul_peak_flops": peak, "training_flops_per_image": flops, "results": []}
    for s in settings:
        try:
            r = bench_setting(s, profile.width, profile.image_size, device, **timing)
        except Exception as err:  # noqa: BLE001 - a failing setting is reported, the rest go on
            r = {**asdict(s), "error": f"{type(err).__name__}: {err}"}
            log(f"{s}: FAILED {r['error']}")
        else:
            r["tflops"] = r["images_per_s"] * flops[s.model] / 1e12
            r["peak_fraction"] = r["images_per_s"] * flops[s.model] / peak
            log(f"{s.model:15s} b{s.batch_size:<3d} {s.amp:5s} cl={int(s.channels_last)} "
                f"compile={s.compile_mode if s.compile else 'gates' if s.compile_gates else 'off'}: "
                f"{r['images_per_s']:8.1f} img/s  {r['tflops']:6.1f} TFLOP/s  {100 * r['peak_fraction']:5.1f} % of peak  "
                f"pipeline {100 * r['pipeline_fraction']:4.1f} %"
                + (f"  compile {r['compile_seconds']:.0f} s" if s.compile or s.compile_gates else ""))
        report["results"].append(r)
        if out_path is not None:
            write_json(out_path, report)
    return report
