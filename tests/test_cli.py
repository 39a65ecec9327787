"""The command line, run as ``python -m skinseg`` in child processes: help texts, bad input
(one line on stderr, exit code 2, no traceback) and train -> evaluate -> compare end to end."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from skinseg.cli import build_parser
from skinseg.config import PROFILES
from skinseg.data.synthetic import make_synthetic
from skinseg.device import seed_everything
from skinseg.models import UNet
from skinseg.train import fit

from conftest import child_env, run_cli

COMMANDS = ["download", "info", "train", "evaluate", "compare", "experiment", "sweep", "bench", "synthetic"]
TRAIN_IMAGES = "ISIC-2017_Training_Data"
TRAIN_MASKS = "ISIC-2017_Training_Part1_GroundTruth"
VAL_MASKS = "ISIC-2017_Validation_Part1_GroundTruth"


def test_every_subcommand_is_listed_and_has_help(tmp_path):
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    assert sorted(subparsers.choices) == sorted(COMMANDS)
    top = run_cli(["--help"], tmp_path, tmp_path / "cache")
    assert top.returncode == 0 and all(c in top.stdout for c in COMMANDS)
    for command in COMMANDS:
        result = run_cli([command, "--help"], tmp_path, tmp_path / "cache")
        assert result.returncode == 0, (command, result.stderr)
        assert result.stdout.startswith(f"usage: python -m skinseg {command}"), command
        assert result.stderr == ""


def test_no_command_is_a_usage_error(tmp_path):
    result = run_cli([], tmp_path, tmp_path / "cache")
    assert result.returncode == 2 and "usage:" in result.stderr and "Traceback" not in result.stderr

# ----------------------------------------------------------------------------- bad input


def _damaged_copies(layout: Path, root: Path) -> dict[str, Path]:
    """One copy of the SYNTHETIC layout per kind of damage."""
    copies = {}

    def copy(name):
        copies[name] = Path(shutil.copytree(layout, root / name))
        return copies[name]

    (copy("image_without_mask") / TRAIN_MASKS / "ISIC_0000003_segmentation.png").unlink()
    (copy("mask_without_image") / TRAIN_IMAGES / "ISIC_0000005.jpg").unlink()
    for p in (copy("empty_folder") / TRAIN_IMAGES).iterdir():
        p.unlink()
    Image.fromarray(np.zeros((32, 64), np.uint8)).save(copy("mask_size") / TRAIN_MASKS / "ISIC_0000002_segmentation.png")
    jpeg = copy("corrupt_jpeg") / TRAIN_IMAGES / "ISIC_0000004.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:400])
    png = copy("truncated_png") / VAL_MASKS / "ISIC_0000009_segmentation.png"
    png.write_bytes(png.read_bytes()[:60])
    return copies


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory, layout_2017):
    """Run every bad-input command at once (they are independent) and collect the results.

    Missing checkpoints and checkpoints of another width are the same code paths as the
    cases here and are tested in-process in test_train.py (each command that loads a
    checkpoint imports torch, which costs seconds of CPU per process)."""
    root = tmp_path_factory.mktemp("cli_bad")
    data = _damaged_copies(layout_2017, root)
    text_file = root / "notes.pt"
    text_file.write_text("not a checkpoint\n")
    unet_run = root / "unet_run"
    seed_everything(0)
    tiny = make_synthetic(8, (64, 64), seed=3)
    fit(UNet(width=4), tiny.subset(slice(0, 4)), tiny.subset(slice(4, 8)), PROFILES["tiny"].replace(epochs=1),
        unet_run, progress=False, device="cpu")
    train = ["train", "--profile", "tiny", "--epochs", "1", "--out", root / "out", "--data"]
    cases = {
        "missing_folder": (["info", "--data", root / "nowhere"],
                           ["no ISIC data found in", "ISIC-2017_Training_Data", "ISBI2016_ISIC_Part1_Training_Data",
                            f"python -m skinseg download --year 2017 --data {root / 'nowhere'}"]),
        "missing_folder_train": (train + [root / "nowhere"], ["no ISIC data found", "python -m skinseg download"]),
        "image_without_mask": (["info", "--data", data["image_without_mask"]],
                               ["image(s) without a mask", "ISIC_0000003.jpg", "ISIC_0000003_segmentation.png"]),
        "mask_without_image": (["info", "--data", data["mask_without_image"]],
                               ["mask(s) without an image", "ISIC_0000005_segmentation.png", "ISIC_0000005.jpg"]),
        "empty_folder": (["info", "--data", data["empty_folder"]],
                         [f"empty folder {data['empty_folder'] / TRAIN_IMAGES}", "expected images"]),
        "mask_size": (train + [data["mask_size"]],
                      ["ISIC_0000002_segmentation.png is 64x32", "ISIC_0000002.jpg is 64x64", "same size"]),
        "corrupt_jpeg": (train + [data["corrupt_jpeg"]],
                         [f"cannot read {data['corrupt_jpeg'] / TRAIN_IMAGES / 'ISIC_0000004.jpg'}",
                          "corrupt or truncated"]),
        "truncated_png": (train + [data["truncated_png"]],
                          [f"cannot read {data['truncated_png'] / VAL_MASKS / 'ISIC_0000009_segmentation.png'}",
                           "corrupt or truncated"]),
        "not_a_checkpoint": (["evaluate", "--checkpoint", text_file, "--data", layout_2017],
                             [f"cannot read checkpoint {text_file}", "not a skinseg checkpoint"]),
        "other_architecture": (["train", "--profile", "tiny", "--model", "attention_unet", "--out", unet_run,
                                "--data", layout_2017],
                               [f"{unet_run / 'last.pt'} holds a unet of width 4",
                                "the model is a attention_unet of width 4"]),
        "other_recipe": (["train", "--profile", "tiny", "--model", "unet", "--epochs", "3", "--out", unet_run,
                          "--data", layout_2017],
                         [f"{unet_run / 'last.pt'} was written by a run with another recipe (epochs 1 -> 3)",
                          "--no-resume"]),
        "bad_width": (["train", "--profile", "tiny", "--width", "0", "--data", layout_2017],
                      ["width must be at least 1, got 0"]),
        "clashing_variants": (["experiment", "--profile", "tiny", "--variant", "lower_lr", "higher_lr",
                               "--data", layout_2017], ["variants 'lower_lr' and 'higher_lr' both set lr"]),
        "epochs_and_budget": (["experiment", "--profile", "tiny", "--epochs", "2", "--time-budget", "60",
                               "--data", layout_2017], ["give either --epochs or --time-budget, not both"]),
        "sweep_budget_too_small": (["sweep", "--profile", "tiny", "--time-budget", "1", "--data", layout_2017],
                                   ["time budget of 1 s is too small"]),
        "missing_table": (["compare", root / "a.csv", root / "b.csv"],
                          [f"per-image table {root / 'a.csv'} does not exist", "python -m skinseg evaluate"]),
    }
    processes = {name: subprocess.Popen([sys.executable, "-m", "skinseg", *map(str, args)], cwd=root,
                                        env=child_env(root / "cache"), stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
                 for name, (args, _) in cases.items()}
    results = {}
    for name, process in processes.items():
        out, err = process.communicate(timeout=300)
        results[name] = (process.returncode, out, err, cases[name][1], cases[name][0][0])
    return results


BAD_CASES = ["missing_folder", "missing_folder_train", "image_without_mask", "mask_without_image", "empty_folder",
             "mask_size", "corrupt_jpeg", "truncated_png", "not_a_checkpoint", "other_architecture",
             "other_recipe", "bad_width", "clashing_variants", "epochs_and_budget", "sweep_budget_too_small", "missing_table"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_prints_one_line_and_exits_with_2(bad_runs, case):
    returncode, out, err, expected, command = bad_runs[case]
    assert returncode == 2, (out, err)
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"skinseg {command}: error: ")
    for text in expected:
        assert text in lines[0], (text, lines[0])


def test_bad_profile_from_the_environment(tmp_path, layout_2017):
    env = child_env(tmp_path / "cache")
    env["SKINSEG_PROFILE"] = "huge"
    result = subprocess.run([sys.executable, "-m", "skinseg", "train", "--data", str(layout_2017)], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "skinseg train: error: profile must be one of ['full', 'smoke', 'tiny'], got 'huge' "
        "(from the argument or SKINSEG_PROFILE)"]

# ----------------------------------------------------------------------------- end to end


def _written(stdout: str) -> list[str]:
    """The paths after 'wrote' in a command's output."""
    paths = []
    for line in stdout.splitlines():
        m = re.match(r"wrote (?:SYNTHETIC ISIC \d+ layout to )?(\S+)(?: and (\S+))?$", line)
        if m:
            paths += [p for p in m.groups() if p]
    return paths


def test_synthetic_train_evaluate_compare_end_to_end(tmp_path):
    cache = tmp_path / "cache"

    def cli(*args):
        result = run_cli(list(args), tmp_path, cache)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        return result.stdout

    out = cli("synthetic", "--out", "data", "--n-train", "8", "--n-val", "4", "--n-test", "4")
    assert _written(out) == ["data"]
    assert cli("info", "--data", "data").strip() == "ISIC 2017 in data: train 8, val 4, test 4"

    out = cli("train", "--data", "data", "--profile", "tiny", "--epochs", "2", "--out", "run")
    assert "CPU SMOKE RUN" in out and "8 training and 4 validation images" in out
    assert _written(out) == ["run/best.pt", "run/last.pt", "run/history.json"]
    assert all((tmp_path / p).is_file() for p in _written(out))
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [r["epoch"] for r in history["records"]] == [1, 2]
    assert re.search(r"best epoch [12]: validation IoU \d\.\d{4}", out)

    out = cli("evaluate", "--checkpoint", "run/best.pt", "--data", "data", "--split", "test",
              "--image-size", "64", "64", "--out", "eval/a.csv")
    assert _written(out) == ["eval/a.csv", "eval/a.json"]
    assert out.startswith("ISIC 2017 test: mean_iou ")
    a = pd.read_csv(tmp_path / "eval" / "a.csv", index_col="id")
    assert list(a.index) == [f"ISIC_{k:07d}" for k in range(12, 16)]
    summary = json.loads((tmp_path / "eval" / "a.json").read_text())
    assert summary["n"] == 4 and summary["mean_iou"] == pytest.approx(a["iou"].mean(), abs=1e-5)

    out = cli("evaluate", "--checkpoint", "run/best.pt", "--data", "data", "--image-size", "64", "64",
              "--tta", "d4", "--postprocess", "--out", "eval/b.csv")
    assert _written(out) == ["eval/b.csv", "eval/b.json"]

    out = cli("compare", "eval/a.csv", "eval/b.csv", "--out", "eval/c.json")
    assert _written(out) == ["eval/c.json"]
    assert out.startswith("iou: A ") and "n = 4 images" in out
    result = json.loads((tmp_path / "eval" / "c.json").read_text())
    b = pd.read_csv(tmp_path / "eval" / "b.csv", index_col="id")
    assert result["n"] == 4 and result["mean_diff"] == pytest.approx((b["iou"] - a["iou"]).mean(), abs=1e-5)

    # a metric the tables lack is a clear error too
    bad = run_cli(["compare", "eval/a.csv", "eval/b.csv", "--metric", "hd95"], tmp_path, cache)
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1 and "no column 'hd95'" in bad.stderr
