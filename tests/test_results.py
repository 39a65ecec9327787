"""Tests of skinseg.lab.results: on the committed GPU results and on a tiny experiment run here."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skinseg.config import get_profile
from skinseg.data import load_split
from skinseg.errors import ConfigError, DataError
from skinseg.evaluate import score_masks, summarize
from skinseg.lab.bench import run_benchmark
from skinseg.lab.experiment import run_experiment
from skinseg.lab.results import Results, load_bench, load_results
from skinseg.lab.synthetic import write_isic_layout

COMMITTED = Path(__file__).resolve().parents[1] / "results"
MODELS = ["unet", "attention_unet"]


# --- the committed results of the GPU experiment ------------------------------------------------

@pytest.fixture(scope="module")
def committed() -> Results:
    return load_results(COMMITTED / "isic2017_16ep")


def test_committed_runs_table_matches_the_run_files(committed):
    runs = committed.runs
    assert committed.models == MODELS and committed.seeds == [0, 1, 2]
    assert list(zip(runs.model, runs.seed)) == [(m, s) for m in MODELS for s in (0, 1, 2)]
    assert committed.device == "NVIDIA H200"
    assert committed.label() == "ISIC 2017 test set (600 images), NVIDIA H200"
    for row in runs.itertuples():
        raw = json.loads((COMMITTED / "isic2017_16ep" / "runs" / f"{row.model}_seed{row.seed}.json").read_text())
        assert row.mean_iou == raw["test"]["mean_iou"] and row.raw_mean_iou == raw["test_raw"]["mean_iou"]
        assert row.chosen == raw["chosen"] and row.best_epoch == raw["best_epoch"] and row.n_test == 600
        assert row.val_iou_chosen == raw["validation"][raw["chosen"]]["mean_iou"]
    # the runs table reproduces the summary's mean +- sd
    for model, group in runs.groupby("model"):
        assert group.mean_iou.mean() == pytest.approx(committed.summary["mean_sd"][model]["mean_iou_mean"])
        assert group.mean_iou.std() == pytest.approx(committed.summary["mean_sd"][model]["mean_iou_std"])


def test_committed_per_image_tables_reproduce_the_run_summaries(committed):
    for row in committed.runs.itertuples():
        table = committed.per_image(row.model, row.seed)
        assert len(table) == 600 and table.index.name == "id" and table.index.is_unique
        assert summarize(table)["mean_iou"] == pytest.approx(row.mean_iou, abs=1e-5)
        assert summarize(table)["thresholded_jaccard"] == pytest.approx(row.thresholded_jaccard, abs=1e-5)
        assert table.iou_raw.mean() == pytest.approx(row.raw_mean_iou, abs=1e-5)
    stacked = committed.per_image_all()
    assert len(stacked) == 6 * 600 and set(stacked.model) == set(MODELS)


def test_committed_histories_are_long_and_mark_the_best_epoch(committed):
    h = committed.histories
    assert len(h) == 6 * 16
    assert {"model", "seed", "epoch", "train_dice", "val_dice", "val_iou", "lr", "best"} <= set(h.columns)
    for row in committed.runs.itertuples():
        run = h[(h.model == row.model) & (h.seed == row.seed)]
        assert list(run.epoch) == list(range(1, 17))
        assert run.loc[run.best, "epoch"].tolist() == [row.best_epoch]
        assert run.val_iou.max() == pytest.approx(row.best_val_iou)


def test_committed_validation_table_marks_one_chosen_variant_per_run(committed):
    v = committed.validation
    assert len(v) == 6 * 6  # 3 TTA variants x with/without post-processing
    chosen = v[v.chosen].set_index(["model", "seed"])
    for row in committed.runs.itertuples():
        assert chosen.loc[(row.model, row.seed), "variant"] == row.chosen
        best = v[(v.model == row.model) & (v.seed == row.seed)].mean_iou.max()
        assert chosen.loc[(row.model, row.seed), "mean_iou"] == best


def test_committed_predictions_unpack_to_the_stored_shape_and_fractions(committed):
    for model in MODELS:
        pred = committed.predictions(model, endpoint="chosen")
        assert pred.endpoint == "chosen" and pred.variant == committed.run(model, 0)["chosen"]
        assert pred.seed == 0 and pred.masks.shape == (600, 192, 256) and pred.masks.dtype == np.uint8
        assert set(np.unique(pred.masks)) == {0, 1}
        table = committed.per_image(model, 0)
        assert pred.ids == table.index.tolist()
        # the stored per-image predicted fraction is the mean of exactly these masks
        np.testing.assert_allclose(pred.masks.reshape(600, -1).mean(1), table.predicted_fraction, atol=1e-6)
        np.testing.assert_array_equal(pred.mask("test_0002"), pred.masks[1])
        # these results keep the run's choice only (d4, flip+post), not the raw prediction
        assert committed.mask_endpoints(model) == ["chosen"]
        with pytest.raises(DataError, match="keeps only the masks of the run's choice"):
            committed.predictions(model, endpoint="raw")
    with pytest.raises(KeyError):
        committed.predictions("unet", endpoint="chosen").mask("no_such_id")
    with pytest.raises(DataError, match="first seed"):
        committed.predictions("unet", seed=1, endpoint="chosen")
    with pytest.raises(ConfigError, match="endpoint must be one of"):
        committed.predictions("unet", endpoint="best")


def test_committed_psi_maps_split_into_four_levels(committed):
    maps = committed.psi()
    assert list(maps.epochs) == [1, 4, 8, 16] and len(maps.ids) == 12
    assert [lv.shape for lv in maps.levels] == [(4, 12, 192 >> k, 256 >> k) for k in range(4)]
    assert all(lv.min() >= 0 and lv.max() <= 1 for lv in maps.levels)


def test_committed_bench_has_every_setting_with_its_device(committed):
    bench = committed.bench()
    assert len(bench) == 8 and set(bench.device) == {"NVIDIA H200"}
    assert set(bench.file) == {"h200_call1.json", "h200_call2.json"}
    assert set(bench.torch) == {"2.11.0+cu130"}
    reports = {f: json.loads((COMMITTED / "bench" / f).read_text()) for f in bench.file.unique()}
    for row in bench.itertuples():
        flops = reports[row.file]["training_flops_per_image"][row.model]
        assert row.tflops == pytest.approx(row.images_per_s * flops / 1e12)
        assert row.peak_fraction == pytest.approx(row.tflops / row.matmul_peak_tflops)
    key = bench.set_index(["model", "amp", "channels_last", "compile"]).images_per_s
    assert key["unet", "bf16", True, False] > key["unet", "off", False, False]
    assert (bench.compile_mode == "default").all()  # written before CUDA graphs were measured
    pd.testing.assert_frame_equal(bench, load_bench(COMMITTED / "bench"))


def test_missing_folders_and_files_raise_data_errors(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path / 'nothing'} holds no finished runs yet"):
        load_results(tmp_path / "nothing")
    (tmp_path / "empty" / "runs").mkdir(parents=True)
    with pytest.raises(DataError, match="holds no finished runs yet"):
        load_results(tmp_path / "empty")
    with pytest.raises(DataError, match="no benchmark files"):
        load_bench(tmp_path / "empty")
    (tmp_path / "empty" / "runs" / "unet_seed0.json").write_text("{}")
    with pytest.raises(DataError, match="config.json"):
        load_results(tmp_path / "empty")
    (tmp_path / "empty" / "config.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_results(tmp_path / "empty")


def test_experiments_are_found_by_name_in_the_results_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("SKINSEG_RESULTS", str(COMMITTED))
    assert load_results("isic2017_16ep").path == COMMITTED / "isic2017_16ep"
    monkeypatch.setenv("SKINSEG_RESULTS", str(tmp_path))
    with pytest.raises(DataError, match=f"{tmp_path / 'isic2017'} holds no finished runs yet"):
        load_results()


# --- a tiny experiment run here on SYNTHETIC data --------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    mp = pytest.MonkeyPatch()
    mp.setenv("SKINSEG_CACHE", str(root / "cache"))
    profile = get_profile("tiny")
    data_root = write_isic_layout(root / "data", "2017", n_train=profile.max_train, n_val=profile.max_val,
                                  n_test=profile.max_test, size=profile.image_size, seed=3)
    summary = run_experiment(data_root, root / "out", profile, seeds=[0, 1], work_dir=root / "work",
                             device="cpu", progress=False, log=lambda _: None)
    test = load_split(data_root, "test", profile.image_size)
    yield load_results(root / "out"), summary, test, profile
    mp.undo()


def test_tiny_results_reproduce_what_run_experiment_returned(tiny):
    res, summary, test, profile = tiny
    assert res.seeds == [0, 1] and res.models == MODELS
    assert "CPU SMOKE RUN" in res.label() and "(8 images)" in res.label()
    assert res.summary == json.loads(json.dumps(summary))
    runs = res.runs
    assert len(runs) == 4 and (runs.epochs == profile.epochs).all()
    for r in summary["runs"]:
        row = runs[(runs.model == r["model"]) & (runs.seed == r["seed"])].iloc[0]
        assert row.mean_iou == r["test"]["mean_iou"] and row.raw_mean_dice == r["test_raw"]["mean_dice"]
        assert row.chosen == r["chosen"] and row.train_seconds == res.run(r["model"], r["seed"])["train_seconds"]
    assert res.seeds_so_far() == "2 seeds" and res.device.startswith("CPU")
    for endpoint in ("raw", "chosen"):
        for metric in ("iou", "dice"):
            assert json.loads(json.dumps(res.comparison(metric, endpoint))) == summary["comparison"][endpoint][metric]
    h = res.histories
    assert len(h) == 4 * profile.epochs and h.groupby(["model", "seed"]).best.sum().eq(1).all()


def test_tiny_predictions_score_like_the_per_image_tables(tiny):
    res, _, test, profile = tiny
    for model in MODELS:
        pred = res.predictions(model, endpoint="chosen")
        assert pred.masks.shape == (profile.max_test, *profile.image_size) and pred.ids == test.ids
        table = res.per_image(model, 0)
        rescored = score_masks(pred.masks, test)
        np.testing.assert_allclose(rescored.iou, table.iou, atol=1e-5)
        np.testing.assert_array_equal(rescored.tp, table.tp)
    with pytest.raises(DataError):
        res.predictions("unet", seed=1, endpoint="raw")  # details are kept for the first seed only
    maps = res.psi()
    assert maps.levels[0].shape[1:] == (len(maps.ids), *profile.image_size)
    with pytest.raises(DataError):
        res.psi("unet")  # a U-Net has no attention gates


def test_tiny_benchmark_file_loads_with_its_device(tmp_path):
    profile = get_profile("tiny")
    run_benchmark(profile, device="cpu", log=lambda _: None, out_path=tmp_path / "bench" / "cpu.json",
                  warmup=0, steps=1, repeats=1, pool=8)
    (tmp_path / "bench" / "cpu_ops.json").write_text('{"profiles": []}')  # an operator profile is not read
    bench = load_bench(tmp_path / "bench")
    assert list(bench.model) == ["unet", "attention_unet"]
    assert (bench.amp == "off").all() and not bench.compile.any()
    assert (bench.compile_mode == "default").all()
    assert bench.device.str.startswith("CPU").all() and (bench.images_per_s > 0).all()
    assert (bench.file == "cpu.json").all() and (bench.matmul_peak_tflops > 0).all()
