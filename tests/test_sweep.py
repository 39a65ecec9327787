"""Comparing recipe variants on the validation set: the file it writes, the paired statistics,
skipping finished variants, and that the test set is never read."""
import json
import shutil

import numpy as np
import pytest

from skinseg.config import PROFILES, AugmentConfig
from skinseg.data import load_split
from skinseg.errors import ConfigError
from skinseg.lab.sweep import describe_changes, describe_recommendation, recommend_variant, run_sweep
from skinseg.lab.variants import VARIANTS, variant_settings, with_variants


def test_sweep_compares_variants_on_validation_without_the_test_set(layout_copy, tmp_path):
    for folder in layout_copy.glob("ISIC-2017_Test_v2_*"):  # a sweep must not need the test set
        shutil.rmtree(folder)
    profile = PROFILES["tiny"]
    messages = []
    kwargs = dict(work_dir=tmp_path / "work", device="cpu", progress=False, log=messages.append)
    report = run_sweep(layout_copy, tmp_path / "out", profile, ["no_ema", "lower_lr"], **kwargs)
    assert json.loads((tmp_path / "out" / "sweep.json").read_text()) == json.loads(json.dumps(report))
    assert list(report["variants"]) == ["baseline", "no_ema", "lower_lr"]  # baseline first, always
    assert "CPU SMOKE RUN" in report["label"] and report["model"] == "unet" and report["plan"] is None
    val = load_split(layout_copy, "val", profile.image_size, limit=profile.max_val)
    assert report["data"]["val"]["n"] == len(val) and "test" not in report["data"]
    base = np.array(report["variants"]["baseline"]["per_image_iou"])
    for name in ("no_ema", "lower_lr"):
        v = report["variants"][name]
        assert len(v["per_image_iou"]) == len(val) and v["epochs"] == profile.epochs
        assert v["val_iou"] == pytest.approx(np.mean(v["per_image_iou"]), abs=1e-5)
        assert v["vs_baseline"]["mean_diff"] == pytest.approx(np.mean(np.array(v["per_image_iou"]) - base), abs=1e-5)
        assert v["vs_baseline"]["ci_low"] <= v["vs_baseline"]["mean_diff"] <= v["vs_baseline"]["ci_high"]
        assert [r["epoch"] for r in v["history"]] == [1, 2]
    assert report["variants"]["lower_lr"]["changes"] == "lr=0.0003"
    assert report["variants"]["lower_lr"]["history"][0]["lr"] < report["variants"]["baseline"]["history"][0]["lr"]
    assert messages[-1] == f"wrote {tmp_path / 'out' / 'sweep.json'}"
    assert report["recommended"] == recommend_variant(report)
    assert messages[-2] == describe_recommendation(report)

    messages.clear()
    again = run_sweep(layout_copy, tmp_path / "out", profile, ["no_ema", "lower_lr"], **kwargs)
    assert sum("already done, skipped" in m for m in messages) == 3
    assert again["variants"] == report["variants"]


def test_a_variant_that_diverges_is_recorded_and_the_sweep_goes_on(layout_copy, tmp_path, monkeypatch):
    import skinseg.lab.sweep as sweep_module
    from skinseg.errors import TrainingError
    monkeypatch.setitem(VARIANTS, "diverges", {"lr": 123.0})
    real_fit = sweep_module.fit

    def fit(model, train, val, recipe, *args, **kwargs):
        if recipe.lr == 123.0:  # what fit raises when the loss stops being finite
            raise TrainingError("the training loss became nan in epoch 1 (lr 123.0, loss 'bce_dice'). Lower the learning rate.")
        return real_fit(model, train, val, recipe, *args, **kwargs)

    monkeypatch.setattr(sweep_module, "fit", fit)
    messages = []
    report = run_sweep(layout_copy, tmp_path / "out", PROFILES["tiny"], ["diverges", "no_ema"], work_dir=tmp_path / "work",
                       device="cpu", progress=False, log=messages.append)
    failed = report["variants"]["diverges"]
    assert failed["error"].startswith("the training loss became nan") and failed["changes"] == "lr=123.0"
    assert "vs_baseline" not in failed and "per_image_iou" not in failed
    assert "vs_baseline" in report["variants"]["no_ema"]  # the variant after it still ran and was compared
    assert any(m.startswith("diverges (lr=123.0): FAILED") for m in messages)
    assert json.loads((tmp_path / "out" / "sweep.json").read_text())["variants"]["diverges"] == failed


def test_unknown_variant_or_model_is_a_config_error(layout_2017, tmp_path):
    with pytest.raises(ConfigError, match=r"variants must be among .*'no_ema'.*got \['fast'\]"):
        run_sweep(layout_2017, tmp_path, PROFILES["tiny"], ["fast"])
    with pytest.raises(ConfigError, match="model must be one of"):
        run_sweep(layout_2017, tmp_path, PROFILES["tiny"], ["no_ema"], model="resnet")


def test_every_variant_is_a_valid_profile():
    for name in VARIANTS:
        changed = with_variants(PROFILES["full"], [name])
        assert (changed == PROFILES["full"]) == (name == "baseline")
        assert changed.variants == (() if name == "baseline" else (name,))


def test_variants_combine_setting_by_setting_and_are_named_in_the_label():
    full = PROFILES["full"]
    both = with_variants(full, ["higher_lr", "stretch_geometry", "higher_lr", "baseline"])
    assert both.lr == 3e-3 and both.augment == AugmentConfig(geometry="stretch") and both.epochs == full.epochs
    assert both.variants == ("higher_lr", "stretch_geometry")
    assert both.label() == "full GPU recipe + higher_lr + stretch_geometry"
    assert with_variants(PROFILES["tiny"], ["no_ema"]).label() == (
        "CPU SMOKE RUN (profile 'tiny' + no_ema, not a real result)")
    # an augmentation variant changes only its own settings of the profile's augmentation
    light = with_variants(full.replace(augment=AugmentConfig(flips=False)), ["light_augment", "stretch_geometry"])
    assert light.augment == AugmentConfig(flips=False, rotate=0.0, scale=0.0, translate=0.0,
                                          contrast=0.0, saturation=0.0, hue=0.0, geometry="stretch")
    assert variant_settings(["stretch_geometry", "batch_32"]) == {"augment.geometry": "stretch", "batch_size": 32}


def test_variants_that_set_the_same_setting_or_unknown_names_are_refused():
    with pytest.raises(ConfigError, match=r"variants 'light_augment' and 'strong_augment' both set augment.rotate "
                                          r"\(0.0 and 30.0\); combine only variants that change different settings"):
        with_variants(PROFILES["full"], ["light_augment", "strong_augment"])
    with pytest.raises(ConfigError, match=r"variants 'lower_lr' and 'higher_lr' both set lr"):
        with_variants(PROFILES["full"], ["lower_lr", "higher_lr"])
    with pytest.raises(ConfigError, match=r"variants must be among .*got \['fast'\]"):
        with_variants(PROFILES["full"], ["fast"])


def _comparison(mean_diff, ci_low, ci_high):
    return {"vs_baseline": {"mean_diff": mean_diff, "ci_low": ci_low, "ci_high": ci_high}}


def test_the_recommended_variant_beat_the_baseline_beyond_the_noise():
    report = {"data": {"val": {"n": 150}}, "variants": {
        "baseline": {},
        "higher_lr": _comparison(0.012, 0.004, 0.020),
        "no_ema": _comparison(0.020, -0.001, 0.041),  # larger, but its interval includes zero
        "batch_32": _comparison(0.006, 0.001, 0.011),
        "lower_lr": {"error": "the training loss became nan"}}}
    report["recommended"] = recommend_variant(report)
    assert report["recommended"] == ["higher_lr"]
    assert describe_recommendation(report) == (
        "carry into the experiment: --variant higher_lr (validation IoU +0.0120 against the baseline, "
        "95 % CI [+0.0040, +0.0200])")
    del report["variants"]["higher_lr"], report["variants"]["batch_32"]
    report["recommended"] = recommend_variant(report)
    assert report["recommended"] == []
    assert describe_recommendation(report) == (
        "no variant beat the baseline beyond the noise of 150 validation images: the experiment keeps the recipe as it is")


def test_describe_changes_lists_only_what_differs():
    assert describe_changes({}) == "the profile as it is"
    assert describe_changes({"lr": 3e-4, "ema_decay": None}) == "lr=0.0003, ema_decay=None"
    assert describe_changes(VARIANTS["light_augment"]) == (
        "augment=(rotate=0.0, scale=0.0, translate=0.0, contrast=0.0, saturation=0.0, hue=0.0)")
