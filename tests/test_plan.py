"""Fitting the experiment into a time budget: the cost model, its errors, a real CPU
measurement, and an experiment that plans its epochs and keeps the plan when resumed."""
import json

import pytest
import torch

import skinseg.plan as plan_module
from skinseg.config import PROFILES
from skinseg.data import load_dataset
from skinseg.errors import ConfigError
from skinseg.experiment import run_experiment
from skinseg.plan import describe_plan, measure_training_step, plan_epochs

SIZES = {"train": 2000, "val": 150, "test": 600}
CPU = torch.device("cpu")


def fake_measure(rates, compile_seconds=0.0):
    return lambda name, profile, device: {"images_per_s": rates[name], "compile_seconds": compile_seconds}


def test_plan_follows_the_cost_model():
    profile = PROFILES["full"]  # tta none, flip, d4: 11 validation views, test through <= 8 + 1 raw
    rates = {"unet": 1000.0, "attention_unet": 500.0}
    plan = plan_epochs(profile, 600, SIZES, 3, CPU, measure=fake_measure(rates, compile_seconds=10.0))
    unet, attention = plan["models"]["unet"], plan["models"]["attention_unet"]
    assert unet["epoch_seconds"] == pytest.approx(2000 / 1000 + 150 / 2000)
    assert attention["epoch_seconds"] == pytest.approx(2000 / 500 + 150 / 1000)
    assert unet["run_seconds"] == pytest.approx(8 + 10 + (150 * 11 + 600 * 9) / 2000)
    fixed = 3 * (unet["run_seconds"] + attention["run_seconds"])
    per_epoch = 3 * (unet["epoch_seconds"] + attention["epoch_seconds"])
    assert plan["epochs"] == int((600 - fixed) // per_epoch) == 24
    assert plan["seconds"] == pytest.approx(fixed + 24 * per_epoch) and plan["seconds"] <= 600
    assert plan_epochs(profile, 600, SIZES, 1, CPU, measure=fake_measure(rates))["epochs"] > 3 * plan["epochs"]
    single = plan_epochs(profile, 600, SIZES, 2, CPU, models=("unet",), measure=fake_measure(rates))
    one = plan_epochs(profile, 600, SIZES, 1, CPU, measure=fake_measure(rates))
    assert describe_plan(one).splitlines()[-1].startswith("1 run of each of 2 models: ")
    assert list(single["models"]) == ["unet"] and describe_plan(single).splitlines()[-1].startswith("2 runs of unet: ")
    text = describe_plan(plan)
    assert "unet: 1000 img/s" in text and "(compiling 10 s)" in text
    assert text.splitlines()[-1] == "3 runs of each of 2 models: 24 epochs fit 600 s (estimate 588 s)"


@pytest.mark.parametrize("budget", [0, -5, 30])
def test_a_budget_without_room_for_one_epoch_is_an_error(budget):
    with pytest.raises(ConfigError, match="time budget"):
        plan_epochs(PROFILES["full"], budget, SIZES, 3, CPU, measure=fake_measure({"unet": 500, "attention_unet": 400}))


def test_measure_training_step_on_cpu():
    result = measure_training_step("attention_unet", PROFILES["tiny"], CPU)
    assert result["images_per_s"] > 0 and result["compile_seconds"] == 0.0


def test_experiment_with_a_time_budget_stores_and_reuses_its_plan(layout_2017, tmp_path, monkeypatch):
    profile = PROFILES["tiny"].replace(epochs=7)  # the plan, not the profile, sets the epochs
    monkeypatch.setattr(plan_module, "measure_training_step", fake_measure({"unet": 100.0, "attention_unet": 100.0}))
    limits = {"train": profile.max_train, "val": profile.max_val, "test": profile.max_test}
    sizes = {k: len(v) for k, v in load_dataset(layout_2017, profile.image_size, limits=limits).items()}
    rate = fake_measure({"unet": 100.0, "attention_unet": 100.0})
    budget = plan_epochs(profile, 1000, sizes, 1, CPU, measure=rate)
    budget = 2.5 * sum(m["epoch_seconds"] for m in budget["models"].values()) + sum(
        m["run_seconds"] for m in budget["models"].values())
    expected = plan_epochs(profile, budget, sizes, 1, CPU, measure=rate)
    assert expected["epochs"] == 2
    messages = []
    kwargs = dict(work_dir=tmp_path / "work", device="cpu", progress=False, log=messages.append, time_budget=budget)
    summary = run_experiment(layout_2017, tmp_path / "out", profile, **kwargs)
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["plan"] == json.loads(json.dumps(expected))
    assert config["profile"]["epochs"] == 2 and all(r["epochs"] == 2 for r in summary["runs"])
    assert describe_plan(expected) in messages
    assert summary["seconds"] > 0 and all(r["wall_seconds"] >= r["train_seconds"] for r in summary["runs"])

    # a second call (say, after an interruption) keeps the schedule, even if the device got faster
    monkeypatch.setattr(plan_module, "measure_training_step", fake_measure({"unet": 1e4, "attention_unet": 1e4}))
    messages.clear()
    run_experiment(layout_2017, tmp_path / "out", profile, **kwargs)
    assert f"2 epochs, as planned by the earlier call for {budget:.0f} s" in messages
    assert json.loads((tmp_path / "out" / "config.json").read_text())["plan"]["epochs"] == 2
