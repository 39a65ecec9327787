"""External test sets: every finished run is scored on them, nothing is selected on them, and
:func:`skinseg.lab.external.external_table` tabulates them."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_cli
from skinseg.config import PROFILES
from skinseg.data import load_split
from skinseg.data.folders import write_folders
from skinseg.errors import ConfigError, LeakageError
from skinseg.lab.experiment import MODEL_NAMES, run_experiment
from skinseg.lab.external import ExternalSets, external_differences, external_summary, external_table, parse_external
from skinseg.lab.results import finished_seeds
from skinseg.lab.stats import compare_tables, read_tables
from skinseg.lab.synthetic import make_synthetic
PROFILE = PROFILES["tiny"].replace(epochs=1)


def _files(folder, pattern):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.glob(pattern))}


def test_every_finished_run_is_scored_and_nothing_is_selected_on_them(layout_2017, tmp_path):
    out, work = tmp_path / "results", tmp_path / "work"
    run_experiment(layout_2017, out, PROFILE, seeds=[0], work_dir=work, device="cpu", progress=False, log=lambda s: None)
    before = _files(out, "runs/*.json") | _files(out, "per_image/*.csv")
    summary_before = json.loads((out / "summary.json").read_text())
    assert external_table(out).empty and list(external_table(out).columns)[:3] == ["set", "model", "seed"]

    clinic = write_folders(tmp_path / "clinic", make_synthetic(5, (64, 64), seed=21), sizes=[(50, 70)] * 5)
    lines = []
    run_experiment(layout_2017, out, PROFILE, seeds=[0], work_dir=work, device="cpu", progress=False,
                   log=lines.append, external={"clinic": clinic})
    # the runs finished by the first call are scored; their own files and the summary do not change
    assert _files(out, "runs/*.json") | _files(out, "per_image/*.csv") == before
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs"] == summary_before["runs"] and summary["comparison"] == summary_before["comparison"]
    assert sum("on external set clinic (5 images)" in line for line in lines) == 2

    config = json.loads((out / "config.json").read_text())
    assert config["external"]["clinic"]["n"] == 5 and config["external"]["clinic"]["folder"] == str(clinic)
    folder = out / "external" / "clinic"
    assert finished_seeds(folder) == [0]
    for model in MODEL_NAMES:
        table = pd.read_csv(folder / "per_image" / f"{model}_seed0.csv", index_col="id")
        own = pd.read_csv(out / "per_image" / f"{model}_seed0.csv", index_col="id")
        assert list(table.columns) == list(own.columns) and len(table) == 5
        run, own_run = (json.loads((f / "runs" / f"{model}_seed0.json").read_text()) for f in (folder, out))
        assert run["chosen"] == own_run["chosen"]
        assert run["test"]["mean_iou"] == pytest.approx(table["iou"].mean())
        # the raw endpoint has every score of the chosen one, as runs/<run>.json does
        assert run["test_raw"].keys() == run["test"].keys() == own_run["test_raw"].keys()
        assert run["test_raw"]["mean_iou"] == pytest.approx(table["iou_raw"].mean())
    comparison = compare_tables(read_tables(folder, [0]), [0], "iou", "raw")
    assert comparison["per_seed"]["0"]["n"] == 5

    table = external_table(out)
    assert list(table[["set", "model", "seed", "n"]].itertuples(index=False, name=None)) == [
        ("clinic", "attention_unet", 0, 5), ("clinic", "unet", 0, 5)]
    assert (table["change"] == table["mean_iou"] - table["own_test_iou"]).all()
    assert table["own_test_iou"].tolist() == [summary["runs"][i]["test_raw"]["mean_iou"] for i in (1, 0)]

    summary_table = external_summary(out)
    assert list(summary_table.index) == [("clinic", "attention_unet"), ("clinic", "unet")]
    assert summary_table["seeds"].tolist() == [1, 1] and summary_table["sd_iou"].isna().all()
    assert summary_table["mean_iou"].tolist() == table["mean_iou"].tolist()
    differences = external_differences(out)
    assert differences[["set", "seeds", "n"]].values.tolist() == [["clinic", 1, 5]]
    assert differences["mean_diff"].iloc[0] == pytest.approx(table["mean_iou"].iloc[0] - table["mean_iou"].iloc[1])
    assert external_differences(tmp_path).empty and external_summary(tmp_path).empty

    # a third call scores nothing again; another folder under the same name is refused
    lines.clear()
    run_experiment(layout_2017, out, PROFILE, seeds=[0], work_dir=work, device="cpu", progress=False,
                   log=lines.append, external={"clinic": clinic})
    assert not any("on external set" in line for line in lines)
    other = write_folders(tmp_path / "other", make_synthetic(5, (64, 64), seed=22))
    with pytest.raises(ConfigError, match="holds scores on other images than .*other"):
        run_experiment(layout_2017, out, PROFILE, seeds=[0], work_dir=work, device="cpu", progress=False,
                       log=lambda s: None, external={"clinic": other})


def test_an_external_set_of_training_images_is_refused(layout_2017, tmp_path):
    train = load_split(layout_2017, "train", PROFILE.image_size, limit=PROFILE.max_train)
    own = write_folders(tmp_path / "own", train)
    with pytest.raises(LeakageError, match=r"^external set own \(.*own\): 8 of the 8 images of folder own test "
                                           r".*\(e\.g\. ISIC_0000000\) are training images of the experiment") as refused:
        ExternalSets({"own": own}, PROFILE, "cpu", train=train)
    assert "\n" not in str(refused.value)
    allowed = write_folders(tmp_path / "clinic", make_synthetic(3, (64, 64), seed=21))
    assert ExternalSets({"clinic": allowed}, PROFILE, "cpu", train=train).describe()["clinic"]["n"] == 3

    cache = tmp_path / "cache"
    result = run_cli(["experiment", "--profile", "tiny", "--epochs", "1", "--seeds", "0", "--data", layout_2017,
                      "--out", tmp_path / "results", "--work-dir", tmp_path / "work", "--external", f"own={own}",
                      "--device", "cpu", "--quiet"], tmp_path, cache)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("skinseg experiment: error: external set own (")
    assert "8 of the 8 images of folder own test" in result.stderr
    assert not (tmp_path / "results" / "external" / "own" / "runs").exists()
    assert not (tmp_path / "results" / "runs").exists() and not (tmp_path / "work").exists(), "refused before training"


def test_parse_external():
    assert parse_external(["ph2=data/ph2", "clinic_b=x"]) == {"ph2": Path("data/ph2"), "clinic_b": Path("x")}
    for bad in (["ph2"], ["=x"], ["a b=x"], ["ph2="]):
        with pytest.raises(ConfigError, match="expected NAME=FOLDER"):
            parse_external(bad)
    with pytest.raises(ConfigError, match="names 'a' twice"):
        parse_external(["a=x", "a=y"])
