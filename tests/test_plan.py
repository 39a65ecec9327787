"""Time budgets: the cost model, its errors, a real CPU measurement, the sweep's epoch plan,
and an experiment whose budget decides how many whole runs start (never their epochs)."""
import json

import pytest
import torch

import skinseg.lab.plan as plan_module
from skinseg.config import PROFILES
from skinseg.data import load_dataset
from skinseg.errors import ConfigError
from skinseg.lab.experiment import run_experiment
from skinseg.lab.plan import RunCosts, cost_model, describe_plan, measure_training_step, plan_epochs

SIZES = {"train": 2000, "val": 150, "test": 600}
CPU = torch.device("cpu")


def fake_measure(rates, compile_seconds=0.0):
    return lambda name, profile, device: {"images_per_s": rates[name], "compile_seconds": compile_seconds}


def test_plan_follows_the_cost_model():
    profile = PROFILES["full"]  # tta none, flip, d4: 8 distinct views for validation and for the test set
    rates = {"unet": 1000.0, "attention_unet": 500.0}
    plan = plan_epochs(profile, 600, SIZES, 3, CPU, measure=fake_measure(rates, compile_seconds=10.0))
    unet, attention = plan["models"]["unet"], plan["models"]["attention_unet"]
    assert unet["epoch_seconds"] == pytest.approx(2000 / 1000 + 150 / 2000)
    assert attention["epoch_seconds"] == pytest.approx(2000 / 500 + 150 / 1000)
    assert unet["run_seconds"] == pytest.approx(8 + 10 + (150 + 600) * 8 / 2000)
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
    assert text.splitlines()[-1] == "3 runs of each of 2 models: 24 epochs fit 600 s (estimate 583 s)"


@pytest.mark.parametrize("budget", [0, -5, 30])
def test_a_budget_without_room_for_one_epoch_is_an_error(budget):
    with pytest.raises(ConfigError, match="time budget"):
        plan_epochs(PROFILES["full"], budget, SIZES, 3, CPU, measure=fake_measure({"unet": 500, "attention_unet": 400}))


def test_measure_training_step_on_cpu():
    result = measure_training_step("attention_unet", PROFILES["tiny"], CPU)
    assert result["images_per_s"] > 0 and result["compile_seconds"] == 0.0


def test_a_time_budget_decides_how_many_whole_runs_start_never_the_epochs(layout_2017, tmp_path, monkeypatch):
    profile = PROFILES["tiny"]
    monkeypatch.setattr(plan_module, "measure_training_step", fake_measure({"unet": 1e3, "attention_unet": 0.2}))
    limits = {"train": profile.max_train, "val": profile.max_val, "test": profile.max_test}
    sizes = {k: len(v) for k, v in load_dataset(layout_2017, profile.image_size, limits=limits).items()}
    costs = RunCosts(profile, sizes, CPU, log=lambda _: None)
    unet, attention = costs.estimate("unet"), costs.estimate("attention_unet")
    model = cost_model("unet", profile, sizes, CPU, fake_measure({"unet": 1e3}))
    assert unet == pytest.approx(profile.epochs * model["epoch_seconds"] + model["run_seconds"])
    assert 8 <= unet < 10 and attention > 100  # RUN_SECONDS is the fixed part of a fast run

    messages = []
    kwargs = dict(work_dir=tmp_path / "work", device="cpu", progress=False, log=messages.append)
    summary = run_experiment(layout_2017, tmp_path / "out", profile, time_budget=unet + 20, **kwargs)
    assert [r["run"] for r in summary["runs"]] == ["unet_seed0"] and summary["seeds"] == []
    assert summary["comparison"] == {} and summary["runs"][0]["epochs"] == profile.epochs  # all of its epochs
    assert any(m.startswith(f"attention_unet seed 0: not started, it needs about {attention:.0f} s") for m in messages)
    assert messages[-1].endswith("(0 of 1 seeds finished)")

    summary = run_experiment(layout_2017, tmp_path / "out", profile, **kwargs)  # a later call adds the rest
    assert [r["run"] for r in summary["runs"]] == ["unet_seed0", "attention_unet_seed0"] and summary["seeds"] == [0]

    # on the same hardware, a finished run's wall time is the cost of the next one
    measured = RunCosts(profile, sizes, CPU, earlier=[tmp_path / "out"])
    wall = json.loads((tmp_path / "out" / "runs" / "unet_seed0.json").read_text())["wall_seconds"]
    assert measured.estimate("unet") == wall
    assert RunCosts(profile.replace(epochs=3), sizes, CPU, earlier=[tmp_path / "out"],
                    log=lambda _: None).estimate("unet") != wall  # another number of epochs is not comparable
