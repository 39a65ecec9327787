"""The experiment behind the book, end to end with the ``tiny`` profile on SYNTHETIC ISIC
2017 and ISIC 2016 layouts: every documented file, its contents, and skipping finished runs."""
import json

import numpy as np
import pandas as pd
import pytest

from skinseg.config import PROFILES
from skinseg.data import load_dataset
from skinseg.data.splits import isic2016_validation_ids
from skinseg.errors import ConfigError
from skinseg.lab.display import display_ids
from skinseg.lab.experiment import MODEL_NAMES, psi_epochs, psi_image_indices, run_experiment
from skinseg.lab.results import load_results
from skinseg.lab.variants import with_variants
from skinseg.metrics import iou_per_image

RUNS = [f"{m}_seed0" for m in MODEL_NAMES]


def _run(data_root, tmp_path, profile=PROFILES["tiny"]):
    messages = []
    summary = run_experiment(data_root, tmp_path / "out", profile, work_dir=tmp_path / "work",
                             device="cpu", progress=False, log=messages.append)
    return summary, messages


def _check_outputs(out, summary, data, profile):
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != ".skinseg.lock")
    assert files == sorted(["config.json", "summary.json", "display.npz",
                            *(f"runs/{r}.json" for r in RUNS), *(f"histories/{r}.json" for r in RUNS),
                            *(f"per_image/{r}.csv" for r in RUNS), *(f"predictions/{r}.npz" for r in RUNS),
                            "psi/attention_unet_seed0.npz"])
    test = data["test"]

    config = json.loads((out / "config.json").read_text())
    assert config["profile"]["name"] == "tiny" and config["seeds"] == [0]
    assert config["label"] == profile.label() and "CPU SMOKE RUN" in config["label"]
    assert {s: v["n"] for s, v in config["data"].items()} == {s: len(d) for s, d in data.items()}
    assert config["psi_epochs"] == psi_epochs(profile.epochs) == [1, 2]
    assert config["environment"]["device_type"] == "cpu"

    for run in RUNS:
        record = json.loads((out / "runs" / f"{run}.json").read_text())
        assert record["run"] == run and record["epochs"] == profile.epochs
        assert record["chosen"] in record["validation"]
        assert set(record["validation"]) == {"none", "none+post", "flip", "flip+post"}
        assert record["validation"][record["chosen"]]["mean_iou"] == max(v["mean_iou"] for v in record["validation"].values())
        history = json.loads((out / "histories" / f"{run}.json").read_text())
        assert [r["epoch"] for r in history["records"]] == [1, 2]
        assert history["best_epoch"] == record["best_epoch"]

        table = pd.read_csv(out / "per_image" / f"{run}.csv", index_col="id")
        assert list(table.index) == test.ids
        assert {"iou", "dice", "tp", "fp", "fn", "lesion_fraction", "predicted_fraction", "iou_raw",
                "dice_raw"} <= set(table.columns)
        assert table["iou"].between(0, 1).all()
        assert record["test"]["mean_iou"] == pytest.approx(table["iou"].mean(), abs=1e-5)
        assert record["test_raw"]["mean_iou"] == pytest.approx(table["iou_raw"].mean(), abs=1e-5)
        np.testing.assert_allclose(table["lesion_fraction"], test.lesion_fraction, atol=1e-6)

        assert {"hd95", "boundary_f", "hd95_raw", "boundary_f_raw"} <= set(table.columns)

        # the stored masks of both endpoints are the ones that were scored
        with np.load(out / "predictions" / f"{run}.npz") as z:
            shape = tuple(z["shape"])
            assert shape == (len(test), *profile.image_size)
            assert list(z["ids"]) == test.ids and str(z["chosen"]) == record["chosen"]
            masks = np.unpackbits(z["masks_chosen"], axis=-1, count=shape[-1])
            raw_masks = np.unpackbits(z["masks_raw"], axis=-1, count=shape[-1])
        np.testing.assert_allclose(table["iou"], iou_per_image(masks, test.masks), atol=1e-6)
        np.testing.assert_allclose(table["iou_raw"], iou_per_image(raw_masks, test.masks), atol=1e-6)
        np.testing.assert_allclose(table["predicted_fraction"], masks.reshape(len(test), -1).mean(1), atol=1e-6)
        results = load_results(out)
        model = run.rsplit("_seed", 1)[0]
        assert results.mask_endpoints(model) == ["raw", "chosen"]
        raw = results.predictions(model, endpoint="raw")
        np.testing.assert_array_equal(raw.masks, raw_masks)
        assert raw.describe() == "raw prediction (primary endpoint)"
        chosen = results.predictions(model, endpoint="chosen")
        np.testing.assert_array_equal(chosen.masks, masks)
        assert chosen.describe() == f"{record['chosen']}, the run's choice (secondary endpoint)"

    # the displayed images include the picks on the raw prediction's IoU, the primary endpoint
    tables = [pd.read_csv(out / "per_image" / f"{r}.csv", index_col="id") for r in RUNS]
    shown = load_results(out).display.ids
    raw_picks = display_ids(tables[0].iou_raw, tables[1].iou_raw, [test.ids[i] for i in psi_image_indices(test)])
    assert shown[:len(raw_picks)] == raw_picks
    assert set(display_ids(tables[0].iou, tables[1].iou)) <= set(shown)

    with np.load(out / "psi" / "attention_unet_seed0.npz") as z:
        h, w = profile.image_size
        n = min(12, len(test))
        assert list(z["epochs"]) == [1, 2]
        assert list(z["ids"]) == [test.ids[i] for i in psi_image_indices(test)]
        assert z["psi"].shape == (2, n, sum((h >> k) * (w >> k) for k in range(4)))
        assert z["psi"].dtype == np.uint8
        assert list(z["image_size"]) == [h, w]
        assert 0 < z["psi"].mean() < 255

    stored = json.loads((out / "summary.json").read_text())
    assert stored == json.loads(json.dumps(summary))
    assert [r["run"] for r in summary["runs"]] == RUNS and summary["seeds"] == [0] == summary["planned_seeds"]
    assert summary["primary_endpoint"] == config["evaluation"]["primary_endpoint"] == "raw"
    assert len(config["data_hash"]) == 16 and config["protocol"] == "official"
    assert summary["devices"] == [config["environment"]["device"]]
    for endpoint, column in (("raw", "iou_raw"), ("chosen", "iou")):
        assert set(summary["mean_sd"][endpoint]) == set(MODEL_NAMES)
        assert summary["mean_sd"][endpoint]["unet"]["mean_iou_std"] is None  # one seed has no sd
        for metric in ("iou", "dice"):
            comparison = summary["comparison"][endpoint][metric]
            assert set(comparison["per_seed"]) == {"0"} and comparison["endpoint"] == endpoint
            assert comparison["seed_averaged"]["n"] == len(test) == comparison["two_level"]["n"]
        unet = pd.read_csv(out / "per_image" / "unet_seed0.csv", index_col="id")[column]
        attention = pd.read_csv(out / "per_image" / "attention_unet_seed0.csv", index_col="id")[column]
        iou = summary["comparison"][endpoint]["iou"]
        assert iou["seed_averaged"]["mean_diff"] == pytest.approx((attention - unet).mean(), abs=1e-5)
        assert iou["per_seed"]["0"]["median_diff"] == pytest.approx((attention - unet).median(), abs=1e-5)
        assert iou["two_level"]["mean_diff"] == pytest.approx(iou["seed_averaged"]["mean_diff"])
        assert iou["seed_t"]["n_seeds"] == 1 and iou["seed_t"]["ci_low"] is None  # one seed: no t-interval


def test_experiment_on_isic2017_layout_and_rerun_skips(layout_2017, tmp_path):
    profile = PROFILES["tiny"]
    summary, messages = _run(layout_2017, tmp_path)
    data = load_dataset(layout_2017, profile.image_size)
    _check_outputs(tmp_path / "out", summary, data, profile)
    assert messages[0].startswith(profile.label())
    assert (tmp_path / "work" / "unet_seed0" / "best.pt").is_file()

    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / "runs").iterdir()}
    again, messages = _run(layout_2017, tmp_path)
    assert sum("already done, skipped" in m for m in messages) == 2
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / "runs").iterdir()} == stamps
    assert again["runs"] == summary["runs"]
    assert again["comparison"] == summary["comparison"]


def test_experiment_on_isic2016_layout_uses_the_fixed_split(layout_2016, tmp_path):
    profile = with_variants(PROFILES["tiny"], ["stretch_geometry"])  # a variant is recorded with the results
    summary, _ = _run(layout_2016, tmp_path, profile)
    data = load_dataset(layout_2016, profile.image_size)
    assert len(data["train"]) == 16 and len(data["val"]) == 4 and len(data["test"]) == 4
    assert set(data["val"].ids) == isic2016_validation_ids(data["train"].ids + data["val"].ids)
    _check_outputs(tmp_path / "out", summary, data, profile)
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["profile"]["variants"] == ["stretch_geometry"] and config["profile"]["augment"]["geometry"] == "stretch"
    assert summary["label"] == "CPU SMOKE RUN (profile 'tiny' + stretch_geometry, not a real result)"
    assert config["data"]["val"]["source"].startswith("ISIC 2016 val")
    assert config["data"]["test"]["source"].startswith("ISIC 2016 test")


def test_finished_runs_of_another_recipe_are_not_mixed_in(layout_2017, tmp_path):
    _run(layout_2017, tmp_path)
    with pytest.raises(ConfigError, match=r"holds finished runs of another recipe \(epochs 2 -> 3\)"):
        run_experiment(layout_2017, tmp_path / "out", PROFILES["tiny"].replace(epochs=3), work_dir=tmp_path / "work",
                       device="cpu", progress=False, log=lambda _: None)
    with pytest.raises(ConfigError, match=r"another recipe \(lr 0.001 -> 0.003\)"):  # a variant is another recipe
        run_experiment(layout_2017, tmp_path / "out", with_variants(PROFILES["tiny"], ["higher_lr"]),
                       work_dir=tmp_path / "work", device="cpu", progress=False, log=lambda _: None)
    with pytest.raises(ConfigError, match=r"another model width \(4 -> 8\)"):
        run_experiment(layout_2017, tmp_path / "out", PROFILES["tiny"].replace(width=8), work_dir=tmp_path / "work",
                       device="cpu", progress=False, log=lambda _: None)
    # an evaluation-only change (the test-time augmentation candidates) is not a new recipe, but it
    # changes what each run chose among: another evaluation protocol
    with pytest.raises(ConfigError, match=r"another evaluation protocol \(tta \['none', 'flip'\] -> \['none'\]\)"):
        run_experiment(layout_2017, tmp_path / "out", PROFILES["tiny"].replace(tta=("none",)),
                       work_dir=tmp_path / "work", device="cpu", progress=False, log=lambda _: None)
    with pytest.raises(ConfigError, match=r"another evaluation protocol \(postprocess True -> False\)"):
        run_experiment(layout_2017, tmp_path / "out", PROFILES["tiny"].replace(postprocess=False),
                       work_dir=tmp_path / "work", device="cpu", progress=False, log=lambda _: None)

