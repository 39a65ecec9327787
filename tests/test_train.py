"""Training on CPU: a smoke run that learns, resuming after a real ``kill -9``, NaN losses,
the learning-rate schedule, the weight EMA, and checkpoints that do not fit the model."""
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from torch import nn

import skinseg.step as step_module
import skinseg.train as train_module
from skinseg.checkpoint import check_architecture, load_checkpoint, load_model, save_atomic
from skinseg.config import NO_AUGMENT, PROFILES
from skinseg.device import seed_everything
from skinseg.errors import CheckpointError, ConfigError, DataError, TrainingError
from skinseg.lab.synthetic import make_synthetic
from skinseg.losses import bce_dice_loss
from skinseg.metrics import dice_per_image
from skinseg.models import AttentionUNet, UNet, build_model
from skinseg.train import BEST, HISTORY, LAST, ExponentialMovingAverage, History, fit, learning_rate

from conftest import child_env

TIMING_KEYS = {"seconds", "images_per_s"}


@pytest.fixture(scope="module")
def tiny_data():
    """16 training and 8 validation SYNTHETIC images of 64x64."""
    data = make_synthetic(24, (64, 64), seed=0)
    return data.subset(slice(0, 16)), data.subset(slice(16, 24))


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory, tiny_data):
    """Checkpoints of a 1-epoch U-Net of width 4."""
    out = tmp_path_factory.mktemp("trained")
    seed_everything(0)
    profile = PROFILES["tiny"].replace(epochs=1)
    fit(UNet(width=4), tiny_data[0].subset(slice(0, 8)), tiny_data[1], profile, out, progress=False, device="cpu")
    return out

# ----------------------------------------------------------------------------- learning


def test_smoke_run_learns_and_beats_trivial_predictors():
    data = make_synthetic(40, (64, 64), seed=0)
    train, val = data.subset(slice(0, 32)), data.subset(slice(32, 40))
    profile = PROFILES["tiny"].replace(width=8, epochs=8, batch_size=8, lr=3e-3, warmup_epochs=0.5,
                                       augment=NO_AUGMENT, ema_decay=None)
    seed_everything(0)
    history = fit(build_model("unet", 8), train, val, profile, None, seed=0, progress=False, device="cpu")
    losses = [r["train_loss"] for r in history.records]
    assert len(losses) == 8 and all(math.isfinite(x) for x in losses)
    assert losses[-1] < 0.9 * losses[0]
    all_background = dice_per_image(np.zeros_like(val.masks), val.masks).mean()
    all_foreground = dice_per_image(np.ones_like(val.masks), val.masks).mean()
    final = history.records[-1]["val_dice"]
    assert final > max(all_background, all_foreground) + 0.1, (final, all_background, all_foreground)
    assert history.best_val_iou == max(r["val_iou"] for r in history.records)
    assert history.records[history.best_epoch - 1]["val_iou"] == history.best_val_iou
    assert history.meta["label"].startswith("CPU SMOKE RUN") and history.meta["model"] == {"model": "unet", "width": 8}


def test_checkpoints_history_and_load_model(trained_dir, tiny_data):
    for name in (LAST, BEST, HISTORY):
        assert (trained_dir / name).is_file()
    assert not list(trained_dir.glob("*.tmp"))
    history = History.load(trained_dir / HISTORY)
    assert [r["epoch"] for r in history.records] == [1]
    assert set(history.records[0]) == {"epoch", "train_loss", "train_dice", "train_iou", "val_loss", "val_dice",
                                       "val_iou", "lr", "seconds", "images_per_s"}
    last = load_checkpoint(trained_dir / LAST)
    assert last["epoch"] == 1 and last["arch"] == {"model": "unet", "width": 4}
    assert History.from_dict(last["history"]).to_dict() == history.to_dict()
    model = load_model(trained_dir / BEST)
    assert type(model) is UNet and model.width == 4 and not model.training
    best = load_checkpoint(trained_dir / BEST)
    for k, v in model.state_dict().items():
        assert torch.equal(v, best["model"][k])
    raw = load_model(trained_dir / LAST, weights="model")
    assert torch.equal(raw.state_dict()["head.weight"], last["model"]["head.weight"])


_KILLED_RUN = textwrap.dedent("""
    import sys, time
    from skinseg.config import PROFILES
    from skinseg.lab.synthetic import make_synthetic
    from skinseg.device import seed_everything
    from skinseg.models import build_model
    from skinseg.train import fit

    data = make_synthetic(24, (64, 64), seed=0)
    profile = PROFILES["tiny"].replace(epochs=4)

    def on_epoch_end(epoch, model):
        if epoch == 2:  # epoch 2 is trained and validated but not saved when the test kills us here
            print("waiting", flush=True)
            time.sleep(600)

    seed_everything(0)
    fit(build_model("attention_unet", 4), data.subset(slice(0, 16)), data.subset(slice(16, 24)), profile,
        sys.argv[1], seed=7, progress=False, device="cpu", on_epoch_end=on_epoch_end)
""")


def test_resume_after_kill_matches_an_uninterrupted_run(tmp_path, tiny_data):
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-c", _KILLED_RUN, str(killed)], cwd=tmp_path,
                               env=child_env(tmp_path / "cache"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while True:
            history_file = killed / HISTORY
            if history_file.exists() and json.loads(history_file.read_text())["records"]:
                break
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the training process wrote no epoch in time"
            time.sleep(0.1)
        line = process.stdout.readline()  # inside epoch 2, after epoch 1 was saved
        assert line == b"waiting\n", (line, process.stderr.read() if process.poll() is not None else "")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    assert load_checkpoint(killed / LAST)["epoch"] == 1
    assert [r["epoch"] for r in History.load(killed / HISTORY).records] == [1]

    profile = PROFILES["tiny"].replace(epochs=4)
    train, val = tiny_data
    seed_everything(123)  # a different initialisation: resuming must replace it
    resumed = fit(build_model("attention_unet", 4), train, val, profile, killed, seed=7, progress=False,
                  device="cpu")
    seed_everything(0)
    reference_dir = tmp_path / "reference"
    reference = fit(build_model("attention_unet", 4), train, val, profile, reference_dir, seed=7, progress=False,
                    device="cpu")

    assert [r["epoch"] for r in resumed.records] == [1, 2, 3, 4]
    assert resumed.best_epoch == reference.best_epoch
    assert resumed.best_val_iou == pytest.approx(reference.best_val_iou, abs=1e-6)
    assert resumed.meta == reference.meta
    for a, b in zip(resumed.records, reference.records):
        assert set(a) == set(b)
        for key in set(a) - TIMING_KEYS:
            assert np.allclose(a[key], b[key], rtol=1e-4, atol=1e-6), (a["epoch"], key, a[key], b[key])
    assert History.load(killed / HISTORY).to_dict()["records"][-1]["epoch"] == 4
    a, b = load_checkpoint(killed / LAST), load_checkpoint(reference_dir / LAST)
    for key in ("model", "ema"):
        for name, tensor in a[key].items():
            if tensor.is_floating_point():
                assert torch.allclose(tensor, b[key][name], rtol=1e-3, atol=1e-5), (key, name)
    assert a["ema_updates"] == b["ema_updates"] == 16


def test_stop_after_then_resume_in_process(tmp_path, tiny_data):
    profile = PROFILES["tiny"].replace(epochs=2)
    train, val = tiny_data[0].subset(slice(0, 8)), tiny_data[1].subset(slice(0, 4))
    seed_everything(0)
    first = fit(UNet(4), train, val, profile, tmp_path, progress=False, device="cpu", stop_after=1)
    assert [r["epoch"] for r in first.records] == [1]
    second = fit(UNet(4), train, val, profile, tmp_path, progress=False, device="cpu")
    assert [r["epoch"] for r in second.records] == [1, 2]
    assert second.records[0] == first.records[0]
    third = fit(UNet(4), train, val, profile, tmp_path, progress=False, device="cpu")  # nothing left to do
    assert third.records == second.records

# ----------------------------------------------------------------------------- failures


def test_nan_loss_raises_training_error_and_keeps_the_last_good_checkpoint(tmp_path, tiny_data, monkeypatch):
    train, val = tiny_data[0].subset(slice(0, 8)), tiny_data[1].subset(slice(0, 4))
    profile = PROFILES["tiny"].replace(epochs=3)
    steps_per_epoch = len(train) // profile.batch_size

    class NaNAfterFirstEpoch(nn.Module):
        calls = 0

        def forward(self, logits, target):
            loss = bce_dice_loss(logits, target)
            if torch.is_grad_enabled():  # a training step (validation runs without gradients)
                self.calls += 1
                if self.calls > steps_per_epoch:
                    return loss * float("nan")
            return loss

    monkeypatch.setattr(train_module, "build_loss", lambda name: NaNAfterFirstEpoch())
    with pytest.raises(TrainingError) as info:
        fit(UNet(4), train, val, profile, tmp_path, progress=False, device="cpu")
    message = str(info.value)
    assert "became nan in epoch 2" in message and "Lower the learning rate" in message
    assert f"last good checkpoint is {tmp_path / LAST}" in message
    assert load_checkpoint(tmp_path / LAST)["epoch"] == 1
    assert len(History.load(tmp_path / HISTORY).records) == 1


def test_diverging_learning_rate_raises_training_error(tmp_path, tiny_data):
    train, val = tiny_data[0].subset(slice(0, 8)), tiny_data[1].subset(slice(0, 4))
    profile = PROFILES["tiny"].replace(lr=1e30, epochs=2, augment=NO_AUGMENT)
    with pytest.raises(TrainingError, match=r"training loss became (nan|inf).*lr 1e\+30.*Lower the learning rate"):
        fit(UNet(4), train, val, profile, tmp_path, progress=False, device="cpu")
    assert not (tmp_path / LAST).exists()  # nothing good to keep


def test_checkpoint_of_another_architecture_or_width(trained_dir, tiny_data, tmp_path):
    state = load_checkpoint(trained_dir / LAST)
    check_architecture(state, UNet(4))  # the right model passes
    with pytest.raises(CheckpointError, match="holds a unet of width 4, but the model is a attention_unet of width 4"):
        check_architecture(state, AttentionUNet(4), trained_dir / LAST)
    with pytest.raises(CheckpointError, match="holds a unet of width 4, but the model is a unet of width 8"):
        check_architecture(state, UNet(8), trained_dir / LAST)
    out = shutil.copytree(trained_dir, tmp_path / "run")
    profile = PROFILES["tiny"].replace(epochs=2)
    with pytest.raises(CheckpointError, match=f"{out / LAST} holds a unet of width 4"):
        fit(AttentionUNet(4), *tiny_data, profile, out, progress=False, device="cpu")
    with pytest.raises(CheckpointError, match="unet of width 8"):
        fit(UNet(8), *tiny_data, profile, out, progress=False, device="cpu")


@pytest.mark.parametrize("content", ["text", "tensor", "dict", "truncated"])
def test_non_checkpoint_files_are_rejected(tmp_path, trained_dir, content):
    path = tmp_path / "model.pt"
    if content == "text":
        path.write_text("not a checkpoint\n")
    elif content == "tensor":
        torch.save(torch.zeros(3), path)
    elif content == "dict":
        torch.save({"weights": torch.zeros(3)}, path)
    else:
        data = (trained_dir / BEST).read_bytes()
        path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)
    with pytest.raises(CheckpointError):
        load_model(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_save_atomic_replaces_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "sub" / "x.pt"
    save_atomic({"a": torch.ones(2)}, path)
    save_atomic({"a": torch.zeros(2)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.zeros(2))
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.pt"]


# ----------------------------------------------------------------------------- schedule and EMA


def test_learning_rate_warmup_then_cosine():
    peak, total, warmup = 1e-3, 100, 10
    lrs = [learning_rate(s, total, warmup, peak) for s in range(total + 1)]
    assert lrs[0] == pytest.approx(peak / warmup)
    assert lrs[4] == pytest.approx(peak * 5 / warmup)
    assert lrs[warmup - 1] == pytest.approx(peak) and lrs[warmup] == pytest.approx(peak)
    assert all(a < b for a, b in zip(lrs[:warmup - 1], lrs[1:warmup]))  # rising linearly
    assert all(a >= b for a, b in zip(lrs[warmup:], lrs[warmup + 1:]))  # then falling
    assert lrs[warmup + 45] == pytest.approx(peak / 2)  # half-way through the cosine
    assert lrs[warmup + 15] == pytest.approx(peak * 0.5 * (1 + math.cos(math.pi * 15 / 90)))
    assert lrs[total] == pytest.approx(0.0, abs=1e-15)
    assert learning_rate(total + 50, total, warmup, peak) == pytest.approx(0.0, abs=1e-15)


def test_learning_rate_constant_schedule_and_unknown_schedule_refused():
    peak, total, warmup = 1e-3, 100, 10
    assert [learning_rate(s, total, warmup, peak, "constant") for s in (0, 5, warmup, total)] == [peak] * 4
    assert learning_rate(3, total, warmup, peak) == learning_rate(3, total, warmup, peak, schedule="warmup_cosine")
    with pytest.raises(ConfigError, match="'step_decay'"):
        learning_rate(3, total, warmup, peak, "step_decay")


def test_exponential_moving_average():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = ExponentialMovingAverage(model, decay=0.9)
    before = {k: v.clone() for k, v in ema.model.state_dict().items()}
    assert not ema.model.training and not any(p.requires_grad for p in ema.model.parameters())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model.train()(torch.randn(8, 3))  # moves the BatchNorm statistics and its batch counter
    live = model.state_dict()
    ema.update(model)
    d = min(0.9, 2 / 11)  # the ramp (1 + t) / (10 + t) at t = 1 is below the decay
    for k, v in ema.model.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v, d * before[k] + (1 - d) * live[k])
        else:
            assert torch.equal(v, before[k])  # integer buffers are not averaged
    for _ in range(200):
        ema.update(model)
    # after many updates the average has converged on the (now fixed) weights, at the full decay
    for k, v in ema.model.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v, live[k], atol=1e-6, rtol=0)
    assert ema.updates == 201
    assert min(0.9, (1 + ema.updates) / (10 + ema.updates)) == 0.9


def test_ema_follows_replaced_buffers_and_another_model():
    """The EMA finds its tensors once; a buffer that the live model replaces later (as
    ``model.to()`` or ``model.double()`` do) must still be averaged, and another live model
    must not be averaged through the first one's tensors."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = ExponentialMovingAverage(model, decay=0.5)
    ema.update(model)
    model[1].running_mean = torch.full((2,), 4.0)  # a new tensor object in the module's buffers
    ema.update(model)
    d = min(0.5, 3 / 12)
    torch.testing.assert_close(ema.model[1].running_mean, (1 - d) * torch.full((2,), 4.0))
    other = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    with torch.no_grad():
        other[0].weight.fill_(2.0)
    before = ema.model[0].weight.clone()
    ema.update(other)
    d = min(0.5, 4 / 13)
    torch.testing.assert_close(ema.model[0].weight, d * before + (1 - d) * torch.full((2, 3), 2.0))
    with pytest.raises(ValueError, match="EMA averages a Sequential; got a Linear"):
        ema.update(nn.Linear(3, 2))


# ----------------------------------------------------------------------------- torch.compile


def _one_step(monkeypatch, compile_fn, **options):
    monkeypatch.setattr(torch, "compile", compile_fn)
    torch.manual_seed(0)
    model = build_model("unet", 4)
    cpu = torch.device("cpu")
    step = step_module.TrainStep(model, step_module.build_optimizer(model, 1e-3, 0.0, cpu), bce_dice_loss, cpu,
                                  **options)
    x, y = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)), torch.ones(2, 1, 32, 32)
    return step, float(step.update(x, y)[0])


def test_compile_passes_the_mode_to_torch_compile(monkeypatch):
    modes = []

    def recording_compile(fn, mode=None):
        modes.append(mode)
        return fn

    step, _ = _one_step(monkeypatch, recording_compile, compile="on", compile_mode="reduce-overhead")
    assert modes == ["reduce-overhead"] and step.compiled
    _one_step(monkeypatch, recording_compile, compile="auto")  # auto on a CPU: no compiling
    assert modes == ["reduce-overhead"]


def test_a_failing_compiler_falls_back_to_eager_with_a_warning(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    _, eager_loss = _one_step(monkeypatch, lambda fn, mode=None: fn, compile="off")
    with pytest.warns(UserWarning, match=r"torch.compile failed \(RuntimeError: no C\+\+ compiler\); training in eager"):
        step, loss = _one_step(monkeypatch, lambda fn, mode=None: broken, compile="on")
    assert not step.compiled and loss == eager_loss


def test_profile_rejects_an_unknown_compile_mode():
    with pytest.raises(ConfigError, match="compile_mode must be one of .*'reduce-overhead'.*got 'fastest'"):
        PROFILES["tiny"].replace(compile_mode="fastest")


def test_resuming_with_another_recipe_or_seed_is_refused(tmp_path, tiny_data):
    train, val = tiny_data
    profile = PROFILES["tiny"].replace(epochs=3)
    fit(build_model("unet", profile.width), train, val, profile, tmp_path, progress=False, stop_after=1)
    for changed, kwargs, text in [(profile.replace(epochs=5), {}, "epochs 3 -> 5"),
                                  (profile.replace(lr=1e-2), {}, "lr 0.001 -> 0.01"),
                                  (profile, {"seed": 4}, "seed 0 -> 4")]:
        with pytest.raises(CheckpointError, match=rf"{tmp_path / LAST} was written by a run with another "
                                                  rf"recipe \({text}\)"):
            fit(build_model("unet", profile.width), train, val, changed, tmp_path, progress=False, **kwargs)
    # the same recipe resumes, and a fresh start is still possible
    history = fit(build_model("unet", profile.width), train, val, profile, tmp_path, progress=False)
    assert [r["epoch"] for r in history.records] == [1, 2, 3]
    history = fit(build_model("unet", profile.width), train, val, profile.replace(epochs=1), tmp_path,
                  progress=False, resume=False)
    assert [r["epoch"] for r in history.records] == [1]


def _profile_of(ema: bool):
    return PROFILES["tiny"].replace(epochs=1, ema_decay=0.5 if ema else None)


@pytest.mark.parametrize("ema", [True, False])
def test_a_rerun_of_a_finished_training_restores_a_deleted_history_and_best_checkpoint(tmp_path, tiny_data, ema):
    """The best epoch was the last one: last.pt holds its evaluated weights (the EMA where used)."""
    train, val = tiny_data[0].subset(slice(0, 8)), tiny_data[1].subset(slice(0, 4))
    seed_everything(0)
    first = fit(UNet(4), train, val, _profile_of(ema), tmp_path, progress=False, device="cpu")
    assert first.best_epoch == 1
    best, history, last = (torch.load(tmp_path / BEST, weights_only=True), (tmp_path / HISTORY).read_text(),
                           (tmp_path / LAST).read_bytes())
    (tmp_path / BEST).unlink()
    (tmp_path / HISTORY).unlink()
    again = fit(UNet(4), train, val, _profile_of(ema), tmp_path, progress=False, device="cpu")
    assert again.records == first.records
    assert (tmp_path / HISTORY).read_text() == history and (tmp_path / LAST).read_bytes() == last
    restored = torch.load(tmp_path / BEST, weights_only=True)
    assert sorted(restored) == sorted(best) and all(restored[k] == best[k] for k in best if k != "model")
    assert restored["model"].keys() == best["model"].keys()
    assert all(torch.equal(restored["model"][k], best["model"][k]) for k in best["model"])
    # a damaged history.json or best.pt is rewritten too; an intact folder is left alone
    (tmp_path / HISTORY).write_text('{"records": [')
    (tmp_path / BEST).write_bytes((tmp_path / BEST).read_bytes()[:100])
    fit(UNet(4), train, val, _profile_of(ema), tmp_path, progress=False, device="cpu")
    assert (tmp_path / HISTORY).read_text() == history
    rewritten = torch.load(tmp_path / BEST, weights_only=True)["model"]
    assert all(torch.equal(v, best["model"][k]) for k, v in rewritten.items())
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    fit(UNet(4), train, val, _profile_of(ema), tmp_path, progress=False, device="cpu")
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == stamps


def test_a_deleted_best_checkpoint_of_an_earlier_epoch_is_named_as_lost(tmp_path, tiny_data):
    """last.pt holds only the last epoch's weights: the best ones of an earlier epoch cannot come back."""
    train, val = tiny_data[0].subset(slice(0, 8)), tiny_data[1].subset(slice(0, 4))
    profile = PROFILES["tiny"].replace(epochs=3)
    seed_everything(0)
    fit(UNet(4), train, val, profile, tmp_path, progress=False, device="cpu", stop_after=2)
    state = torch.load(tmp_path / LAST, weights_only=True)
    first = state["history"]["records"][0]
    # as a run whose validation IoU fell in epoch 2 leaves it
    state["history"].update(best_epoch=1, best_val_iou=first["val_iou"])
    save_atomic(state, tmp_path / LAST)
    last = (tmp_path / LAST).read_bytes()
    (tmp_path / BEST).unlink()
    (tmp_path / HISTORY).unlink()
    for stop_after in (2, None):  # nothing left to train, or epoch 3 left: refused before any training
        with pytest.raises(CheckpointError) as info:
            fit(UNet(4), train, val, profile, tmp_path, progress=False, device="cpu", stop_after=stop_after)
        assert str(info.value) == (
            f"{tmp_path / BEST} is missing and cannot be restored: it held the weights of epoch 1 (the best "
            f"validation IoU, {first['val_iou']:.4f}), and {tmp_path / LAST} holds only those of epoch 2. "
            "Use another output folder, or resume=False (--no-resume) to start again")
    assert not (tmp_path / BEST).exists() and (tmp_path / LAST).read_bytes() == last
    (tmp_path / BEST).write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match=f"{tmp_path / BEST} is damaged and cannot be restored"):
        fit(UNet(4), train, val, profile, tmp_path, progress=False, device="cpu")
    assert (tmp_path / BEST).read_text() == "not a checkpoint"
    assert json.loads((tmp_path / HISTORY).read_text()) == state["history"]  # what could be restored was
    history = fit(UNet(4), train, val, profile, tmp_path, progress=False, device="cpu", resume=False)
    assert (tmp_path / BEST).exists() and [r["epoch"] for r in history.records] == [1, 2, 3]


def test_fit_refuses_bad_arguments_before_any_work(tmp_path, tiny_data):
    train, val = tiny_data[0].subset(slice(0, 4)), tiny_data[1].subset(slice(0, 4))
    profile = PROFILES["tiny"].replace(epochs=1)
    empty = train.subset(slice(0, 0))
    a_file = tmp_path / "notes.txt"
    a_file.write_text("the user's notes\n")
    cases = [
        ({"stop_after": 0}, ConfigError, "stop_after must be None or an integer of at least 1, got 0"),
        ({"stop_after": -2}, ConfigError, "stop_after must be None or an integer of at least 1, got -2"),
        ({"stop_after": 1.5}, ConfigError, "stop_after must be None or an integer of at least 1, got 1.5"),
        ({"stop_after": True}, ConfigError, "stop_after must be None or an integer of at least 1, got True"),
        ({"seed": "0"}, ConfigError, "seed must be an integer of at least 0, got '0'"),
        ({"seed": 1.0}, ConfigError, "seed must be an integer of at least 0, got 1.0"),
        ({"seed": -1}, ConfigError, "seed must be an integer of at least 0, got -1"),
        ({"train": (train.images, train.masks)}, ConfigError, "train must be a SegmentationData (from "
         "skinseg.data.load_split, or SegmentationData(images, masks)), got tuple"),
        ({"val": None}, ConfigError, "val must be a SegmentationData"),
        ({"train": empty}, DataError, "train holds no images (SYNTHETIC"),
        ({"val": empty}, DataError, "val holds no images"),
        ({"profile": "tiny"}, ConfigError, "profile must be a skinseg.config.Profile, got str "
         "(get one with skinseg.config.get_profile(name))"),
        ({"profile": profile.to_dict()}, ConfigError, "profile must be a skinseg.config.Profile, got dict"),
        ({"out_dir": a_file}, ConfigError, f"out_dir {a_file} is a file: expected a folder"),
        ({"out_dir": 3}, ConfigError, "out_dir must be None or a folder path, got int"),
    ]
    for changes, error, message in cases:
        model = UNet(4)
        weights = {k: v.clone() for k, v in model.state_dict().items()}
        arguments = {"train": train, "val": val, "profile": profile, "out_dir": tmp_path / "run", **changes}
        with pytest.raises(error) as info:
            fit(model, progress=False, device="cpu", **arguments)
        assert message in str(info.value) and "\n" not in str(info.value), (changes, str(info.value))
        assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())  # not trained
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"] and a_file.read_text() == "the user's notes\n"
    # the edge values that are allowed
    history = fit(UNet(4), train, val, profile.replace(epochs=2), tmp_path / "run", seed=np.int64(3), stop_after=1,
                  progress=False, device="cpu")
    assert [r["epoch"] for r in history.records] == [1]


# ----------------------------------------------------------------------------- no waiting for the GPU


def test_normalize_builds_its_constants_once_per_device_and_dtype():
    from skinseg.data.tensors import MEAN, STD, _channel_stats, normalize
    x = torch.rand(2, 3, 4, 5, dtype=torch.float64)
    expected = (x - torch.tensor(MEAN, dtype=torch.float64).view(1, 3, 1, 1)) / torch.tensor(STD, dtype=torch.float64).view(1, 3, 1, 1)
    torch.testing.assert_close(normalize(x), expected)
    first = _channel_stats(torch.device("cpu"), torch.float32)
    normalize(torch.rand(1, 3, 2, 2))
    assert all(a is b for a, b in zip(first, _channel_stats(torch.device("cpu"), torch.float32)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_training_step_never_waits_for_the_gpu():
    """Everything fit() does per batch (index, augment, step, EMA, running scores) must queue GPU
    work without synchronising, so that the CPU can run ahead of the GPU."""
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = build_model("attention_unet", 4).to(device)
    optimizer = step_module.build_optimizer(model, 1e-3, 0.0, device)
    step = step_module.TrainStep(model, optimizer, bce_dice_loss, device, PROFILES["full"].augment, compile="off")
    ema = ExponentialMovingAverage(model, 0.99)
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, device=device)
    masks = (torch.rand(8, 1, 32, 32, device=device) > 0.5).to(torch.uint8)
    generator = torch.Generator(device=device).manual_seed(0)
    order = torch.randperm(8, device=device)
    scores = torch.zeros(2, device=device)
    for i in range(3):  # the first step may set things up (cuDNN autotuning, constants); the others may not wait
        torch.cuda.set_sync_debug_mode("error" if i else "default")
        try:
            idx = order[:4]
            loss, logits, target = step(images[idx], masks[idx], generator)
            ema.update(model)
            scores += train_module._batch_scores(logits, target)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss)
