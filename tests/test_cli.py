"""The command line, run as ``python -m skinseg`` in child processes (and, for most bad input,
through its entry point :func:`skinseg.cli.main` in this process): help texts, bad input (one
line on stderr, exit code 2, no traceback) and train -> evaluate -> compare end to end."""
import hashlib
import io
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from skinseg.cli import build_parser, main
from skinseg.config import PROFILES
from skinseg.device import seed_everything
from skinseg.lab.synthetic import make_synthetic
from skinseg.lock import LOCK_NAME
from skinseg.models import UNet
from skinseg.train import fit

from conftest import child_env, damage_zip, make_zip, run_cli, serve, write_striped_mask

COMMANDS = ["download", "info", "train", "evaluate", "predict", "compare", "merge", "experiment", "sweep", "slice", "bench", "synthetic"]
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


# ----------------------------------------------------------------------------- bad input

# Every bad input a user can give, as (name, command line, texts that the one line on stderr
# must contain). Each runs as `python -m skinseg ...` (through skinseg.cli.main in this process,
# but those of IN_CHILD_PROCESSES in their own) and must end with exit code 2, exactly one line
# on stderr and no traceback. Add new cases here. Placeholders:
# {root} a scratch folder, {layout} a good SYNTHETIC ISIC 2017 layout, {run}, {run_a}, {run_b}
# folders with a trained width-4 unet, {<damage>} a copy of the layout damaged as DAMAGES says,
# {<file>} the files that FILES writes, {server} a local HTTP server (see SERVED) and
# {closed} an address where nothing listens (write a literal brace twice).
TRAIN = ["train", "--profile", "tiny", "--epochs", "1", "--out", "{root}/out", "--data"]
EVALUATE = ["evaluate", "--checkpoint", "{run}/best.pt", "--data", "{layout}"]
BAD_INPUTS = [
    # the data folder and its files
    ("missing_folder", ["info", "--data", "{root}/nowhere"],
     ["no ISIC data found in", "ISIC-2017_Training_Data", "ISBI2016_ISIC_Part1_Training_Data",
      "python -m skinseg download --year 2017 --data {root}/nowhere"]),
    ("missing_folder_train", TRAIN + ["{root}/nowhere"], ["no ISIC data found", "python -m skinseg download"]),
    ("image_without_mask", ["info", "--data", "{image_without_mask}"],
     ["image(s) without a mask", "ISIC_0000003.jpg", "ISIC_0000003_segmentation.png"]),
    ("mask_without_image", ["info", "--data", "{mask_without_image}"],
     ["mask(s) without an image", "ISIC_0000005_segmentation.png", "ISIC_0000005.jpg"]),
    ("empty_folder", ["info", "--data", "{empty_folder}"], ["empty folder {empty_folder}/" + TRAIN_IMAGES, "expected images"]),
    ("same_stem_twice", ["info", "--data", "{same_stem_twice}"],
     ["image ISIC_0000003 is there twice", "ISIC_0000003.jpg", "ISIC_0000003.png"]),
    ("train_over_a_foreign_history", ["train", "--profile", "tiny", "--epochs", "1", "--out", "{foreign_run}", "--data",
                                      "{layout}"],
     ["{foreign_run}/history.json exists and was not written by this command", "--overwrite"]),
    ("mask_size", TRAIN + ["{mask_size}"], ["ISIC_0000002_segmentation.png is 64x32", "ISIC_0000002.jpg is 64x64", "same size"]),
    ("corrupt_jpeg", TRAIN + ["{corrupt_jpeg}"], ["cannot read {corrupt_jpeg}/" + TRAIN_IMAGES + "/ISIC_0000004.jpg",
                                                  "corrupt or truncated"]),
    ("truncated_png", TRAIN + ["{truncated_png}"], ["cannot read {truncated_png}/" + VAL_MASKS + "/ISIC_0000009_segmentation.png",
                                                    "corrupt or truncated"]),
    ("label_map_mask", TRAIN + ["{label_map_mask}"],
     ["{label_map_mask}/" + TRAIN_MASKS + "/ISIC_0000001_segmentation.png is not a binary mask", "{{0, 1, 2}}"]),
    ("grey_level_mask", TRAIN + ["{grey_level_mask}"],
     ["{grey_level_mask}/" + TRAIN_MASKS + "/ISIC_0000001_segmentation.png is not a binary mask", "{{0, 128, 255}}"]),
    ("mixed_lesion_values", TRAIN + ["{mixed_lesion_values}"],
     ["{mixed_lesion_values}/" + TRAIN_MASKS + "/ISIC_0000001_segmentation.png is not a binary mask", "{{0, 1, 255}}"]),
    ("small_grey_lesion", TRAIN + ["{small_grey_lesion}"],
     ["{small_grey_lesion}/" + TRAIN_MASKS + "/ISIC_0000001_segmentation.png is not a binary mask", "{{0, 128}}"]),
    ("transparent_image", TRAIN + ["{transparent_image}"],
     ["cannot read {transparent_image}/" + TRAIN_IMAGES + "/ISIC_0000004.png", "transparent pixels"]),
    ("cmyk_image", TRAIN + ["{cmyk_image}"], ["cannot read {cmyk_image}/" + TRAIN_IMAGES + "/ISIC_0000004.jpg", "mode CMYK"]),
    ("huge_image", TRAIN + ["{huge_image}"],
     ["cannot read {huge_image}/" + TRAIN_IMAGES + "/ISIC_0000004.png", "169,000,000 pixels, more than 150,000,000"]),
    ("compare_no_common_ids", ["compare", "{tab_good}", "{tab_other_ids}"],
     ["{tab_good} and {tab_other_ids} score different images: 3 only in {tab_good} (e.g. a)", "0 in both"]),
    ("compare_no_id_column", ["compare", "{tab_good}", "{tab_no_id}"], ["{tab_no_id} has no column 'id'"]),
    ("compare_text_in_scores", ["compare", "{tab_good}", "{tab_text}"],
     ["{tab_text}: column 'iou' holds text, e.g. 'n/a' for id 'b'"]),
    ("compare_duplicated_ids", ["compare", "{tab_good}", "{tab_twice}"], ["{tab_twice} has 1 duplicated id(s), e.g. 'a'"]),
    ("compare_missing_score", ["compare", "{tab_good}", "{tab_nan}"],
     ["{tab_nan}: column 'iou' has 1 missing or infinite score(s), e.g. for id 'c'"]),
    ("compare_not_a_table", ["compare", "{tab_good}", "{empty_pt}"], ["cannot read per-image table {empty_pt}"]),
    ("predict_huge_image", ["predict", "--checkpoint", "{run}/best.pt", "--out", "{root}/predicted_huge",
                            "{huge_image}/" + TRAIN_IMAGES + "/ISIC_0000004.png"],
     ["cannot read {huge_image}/" + TRAIN_IMAGES + "/ISIC_0000004.png", "more than 150,000,000"]),
    ("synthetic_over_real_images", ["synthetic", "--out", "{layout}"],
     ["{layout}/ISIC-2017_Training_Data exists and was not written by this command", "--overwrite"]),
    ("slice_archive_over_a_foreign_file", ["slice", "--profile", "tiny", "--archive", "{text_file}", "--data", "{layout}"],
     ["{text_file} exists and was not written by this command", "--overwrite"]),
    ("missing_table", ["compare", "{root}/a.csv", "{root}/b.csv"],
     ["per-image table {root}/a.csv does not exist", "python -m skinseg evaluate"]),
    # your own images (the pairing rules of skinseg.data.folders are tested in test_folders.py)
    ("own_folder_without_masks", ["info", "--data", "{own_folder_without_masks}"],
     ["missing folder {own_folder_without_masks}/masks", "images/ and masks/ side by side"]),
    ("predict_missing_image", ["predict", "--checkpoint", "{run}/best.pt", "{root}/nowhere.jpg"],
     ["image or folder {root}/nowhere.jpg does not exist"]),
    ("predict_folder_without_images", ["predict", "--checkpoint", "{run}/best.pt", "{layout}"],
     ["no images (.jpg", "in folder {layout}"]),
    ("predict_psi_on_unet", ["predict", "--checkpoint", "{run}/best.pt", "--psi", "--out", "{root}/predicted",
                             "{layout}/ISIC-2017_Test_v2_Data"], ["psi maps need an Attention U-Net, but {run}/best.pt holds a U-Net"]),
    # outputs never replace inputs, nor files that another command wrote
    ("evaluate_out_is_the_checkpoint", ["evaluate", "--checkpoint", "{run_c}/best.pt", "--data", "{layout}", "--out",
                                        "{run_c}/best.pt"],
     ["output {run_c}/best.pt is also an input of this command", "choose another --out"]),
    ("evaluate_out_in_the_masks", EVALUATE + ["--out", "{layout}/ISIC-2017_Test_v2_Part1_GroundTruth/ISIC_0000012_segmentation.png"],
     ["would be written into the input folder {layout}/ISIC-2017_Test_v2_Part1_GroundTruth"]),
    ("evaluate_out_is_a_foreign_file", EVALUATE + ["--out", "{text_file}"],
     ["{text_file} exists and was not written by this command", "--overwrite"]),
    ("evaluate_table_is_its_summary", EVALUATE + ["--out", "{root}/scores.json"],
     ["two outputs of this command are the same file {root}/scores.json"]),
    ("compare_out_is_an_input", ["compare", "{text_file}", "{root}/b.csv", "--out", "{text_file}"],
     ["output {text_file} is also an input of this command"]),
    ("predict_into_its_images", ["predict", "--checkpoint", "{run}/best.pt", "--out", "{test_images}", "{test_images}"],
     ["would be written into the input folder {test_images}"]),
    ("predict_over_a_foreign_file", ["predict", "--checkpoint", "{run}/best.pt", "--out", "{foreign}", "{test_images}"],
     ["{foreign}/ISIC_0000012_mask.png exists and was not written by this command", "--overwrite"]),
    ("predict_over_a_foreign_table", ["predict", "--checkpoint", "{run}/best.pt", "--out", "{foreign_table}", "{test_images}"],
     ["{foreign_table}/predictions.csv exists and was not written by predict", "--overwrite"]),
    ("train_out_is_the_data", ["train", "--profile", "tiny", "--out", "{layout}", "--data", "{layout}"],
     ["--out {layout} would write into the data folder {layout}, among the images and masks", "choose another --out"]),
    ("train_out_in_the_images", ["train", "--profile", "tiny", "--out", "{layout}/" + TRAIN_IMAGES + "/run", "--data",
                                 "{layout}"], ["would write into the data folder {layout}/" + TRAIN_IMAGES]),
    ("train_out_is_another_image_folder", ["train", "--profile", "tiny", "--out", "{test_images}", "--data", "{layout}"],
     ["--out {test_images} would write into the data folder {test_images}"]),
    ("experiment_out_is_the_data", ["experiment", "--profile", "tiny", "--out", "{layout}", "--data", "{layout}"],
     ["--out {layout} would write into the data folder {layout}"]),
    ("experiment_out_is_an_external_set", ["experiment", "--profile", "tiny", "--external", "ph2={mask_size}", "--out",
                                           "{mask_size}", "--data", "{layout}"],
     ["--out {mask_size} would write into the data folder {mask_size}"]),
    ("experiment_work_dir_in_the_masks", ["experiment", "--profile", "tiny", "--out", "{root}/exp_masks", "--work-dir",
                                          "{layout}/" + TRAIN_MASKS, "--data", "{layout}"],
     ["--work-dir {layout}/" + TRAIN_MASKS + " would write into the data folder {layout}/" + TRAIN_MASKS]),
    ("sweep_out_is_the_data", ["sweep", "--profile", "tiny", "--out", "{layout}", "--data", "{layout}"],
     ["--out {layout} would write into the data folder {layout}"]),
    ("slice_work_dir_is_the_data", ["slice", "--profile", "tiny", "--archive", "{root}/s.tgz", "--work-dir", "{layout}",
                                    "--data", "{layout}"], ["--work-dir {layout} would write into the data folder {layout}"]),
    ("slice_archive_in_the_images", ["slice", "--profile", "tiny", "--archive", "{test_images}/s.tgz", "--data", "{layout}"],
     ["--archive {test_images}/s.tgz would write into the data folder {test_images}"]),
    ("bench_out_is_a_checkpoint", ["bench", "--profile", "tiny", "--out", "{run_c}/best.pt"],
     ["{run_c}/best.pt exists and was not written by this command", "--overwrite"]),
    ("bench_out_in_the_images", ["bench", "--profile", "tiny", "--out", "{test_images}/bench.json"],
     ["--out {test_images}/bench.json would write into the data folder {test_images}"]),
    ("external_not_name_folder", ["experiment", "--profile", "tiny", "--external", "ph2", "--data", "{layout}"],
     ["--external 'ph2': expected NAME=FOLDER"]),
    ("external_missing_folder", ["experiment", "--profile", "tiny", "--out", "{root}/ext", "--external",
                                 "ph2={root}/nowhere", "--data", "{layout}"], ["no ISIC data found in {root}/nowhere"]),
    # files skinseg wrote itself, damaged since
    ("experiment_damaged_config", ["experiment", "--profile", "tiny", "--out", "{damaged_results}", "--data", "{layout}"],
     ["results file {damaged_results}/config.json is damaged: not valid JSON"]),
    # checkpoints
    ("missing_checkpoint", ["evaluate", "--checkpoint", "{root}/missing.pt"],
     ["argument --checkpoint: expected an existing file, got '{root}/missing.pt' (no such file)"]),
    ("checkpoint_is_a_folder", ["evaluate", "--checkpoint", "{root}"], ["argument --checkpoint", "a folder"]),
    ("not_a_checkpoint", ["evaluate", "--checkpoint", "{text_file}", "--data", "{layout}"],
     ["cannot read checkpoint {text_file}", "not a skinseg checkpoint"]),
    ("empty_checkpoint", ["evaluate", "--checkpoint", "{empty_pt}", "--data", "{layout}"],
     ["checkpoint {empty_pt} is empty (0 bytes)"]),
    ("checkpoint_without_arch", ["evaluate", "--checkpoint", "{no_arch_pt}", "--data", "{layout}"],
     ["{no_arch_pt} is not a skinseg checkpoint (expected keys 'arch' and 'model')"]),
    ("checkpoint_with_unknown_arch", ["evaluate", "--checkpoint", "{bad_arch_pt}", "--data", "{layout}"],
     ["{bad_arch_pt} has a bad 'arch' field", "'vgg16'"]),
    ("checkpoint_with_arch_unlike_weights", ["evaluate", "--checkpoint", "{mismatch_pt}", "--data", "{layout}"],
     ["{mismatch_pt}: the 'model' weights do not match its arch (attention_unet of width 4)", "missing"]),
    ("other_architecture", ["train", "--profile", "tiny", "--model", "attention_unet", "--out", "{run_a}", "--data",
                            "{layout}"], ["{run_a}/last.pt holds a unet of width 4", "the model is a attention_unet of width 4"]),
    ("experiment_run_of_another_recipe", ["experiment", "--profile", "tiny", "--epochs", "2", "--out", "{root}/exp_out",
                                          "--work-dir", "{exp_work}", "--data", "{layout}"],
     ["{exp_work}/unet_seed0/last.pt", "Delete {exp_work}/unet_seed0 to start this run again, or give experiment "
      "another --work-dir"]),
    ("other_recipe", ["train", "--profile", "tiny", "--model", "unet", "--epochs", "3", "--out", "{run_b}", "--data", "{layout}"],
     ["{run_b}/last.pt was written by a run with another recipe (epochs 1 -> 3; training_images None -> ", "--no-resume"]),
    # options
    ("width_zero", ["train", "--width", "0"], ["argument --width: expected an integer from 1 to 512, got '0'"]),
    ("width_absurd", ["train", "--width", "100000"], ["argument --width: expected an integer from 1 to 512, got '100000'"]),
    ("epochs_zero", ["train", "--epochs", "0"], ["argument --epochs: expected an integer of at least 1, got '0'"]),
    ("epochs_not_a_number", ["experiment", "--epochs", "ten"], ["argument --epochs: expected an integer, got 'ten'"]),
    ("batch_size_negative", ["sweep", "--batch-size", "-4"], ["argument --batch-size: expected an integer of at least 1"]),
    ("limit_zero", EVALUATE + ["--limit", "0"], ["argument --limit: expected an integer of at least 1, got '0'"]),
    ("limit_negative", EVALUATE + ["--limit", "-1"], ["argument --limit: expected an integer of at least 1, got '-1'"]),
    ("image_size_zero", EVALUATE + ["--image-size", "0", "256"], ["argument --image-size: expected a multiple of 16", "got '0'"]),
    ("image_size_not_multiple_of_16", EVALUATE + ["--image-size", "100", "256"], ["argument --image-size", "got '100'"]),
    ("image_size_one_number", EVALUATE + ["--image-size", "192"], ["argument --image-size: expected 2 arguments"]),
    ("out_is_a_folder", EVALUATE + ["--out", "{root}"], ["argument --out: expected a file name to write, got the folder '{root}'"]),
    ("compare_out_is_a_folder", ["compare", "{root}/a.csv", "{root}/b.csv", "--out", "{root}"], ["argument --out", "the folder"]),
    ("train_out_is_a_file", ["train", "--out", "{text_file}"],
     ["argument --out: expected a folder to write into, got the existing file '{text_file}'"]),
    ("out_inside_a_file", ["experiment", "--out", "{text_file}/results"], ["argument --out", "but {text_file} is a file"]),
    ("device_unknown", ["train", "--device", "tpu"], ["argument --device: device must be cpu, cuda, cuda:N or mps, got 'tpu'"]),
    ("device_not_on_this_machine", EVALUATE + ["--device", "cuda:99"], ["argument --device: device 'cuda:99' asked for"]),
    ("time_budget_negative", ["experiment", "--time-budget", "-5"], ["argument --time-budget: expected a positive number, got '-5'"]),
    ("time_budget_nan", ["sweep", "--time-budget", "nan"], ["argument --time-budget: expected a positive number, got 'nan'"]),
    ("seeds_negative", ["experiment", "--seeds", "0", "-1"], ["argument --seeds: expected an integer of at least 0, got '-1'"]),
    ("bench_steps_zero", ["bench", "--steps", "0"], ["argument --steps: expected an integer of at least 1"]),
    ("synthetic_no_images", ["synthetic", "--n-train", "0"], ["argument --n-train: expected an integer of at least 1"]),
    ("unknown_choice", EVALUATE + ["--tta", "d8"], ["argument --tta: invalid choice: 'd8'"]),
    ("unknown_option", ["train", "--learning-rate", "3"], ["unrecognized arguments: --learning-rate 3"]),
    ("unknown_command", ["fit"], ["argument command: invalid choice: 'fit'"]),
    ("no_command", [], ["the following arguments are required: command", "python -m skinseg --help"]),
    ("clashing_variants", ["experiment", "--profile", "tiny", "--variant", "lower_lr", "higher_lr", "--data", "{layout}"],
     ["variants 'lower_lr' and 'higher_lr' both set lr"]),
    ("epochs_and_budget", ["sweep", "--profile", "tiny", "--epochs", "2", "--time-budget", "60", "--data", "{layout}"],
     ["give either --epochs or --time-budget, not both"]),
    ("sweep_budget_too_small", ["sweep", "--profile", "tiny", "--time-budget", "1", "--data", "{layout}"],
     ["time budget of 1 s is too small"]),
    # downloads
    ("base_url_malformed", ["download", "--base-url", "htp//mirror"], ["argument --base-url: expected a URL", "'htp//mirror'"]),
    ("base_url_without_host", ["download", "--base-url", "https://"], ["argument --base-url: expected a URL"]),
    ("download_into_a_file", ["download", "--data", "{text_file}"], ["argument --data: expected a folder to write into"]),
    ("download_offline", ["download", "--quiet", "--base-url", "{closed}", "--data", "{root}/dl_offline"],
     ["cannot reach {closed}/ISIC-2017_Training_Data.zip", "by hand"]),
    ("download_corrupt_archive", ["download", "--quiet", "--base-url", "{server}/corrupt", "--data", "{root}/dl_corrupt"],
     ["ISIC-2017_Training_Data.zip is damaged", "CRC", "deleted it, run again"]),
    ("download_cut_short_without_length", ["download", "--quiet", "--base-url", "{server}/short", "--data", "{root}/dl_short"],
     ["ISIC-2017_Training_Data.zip is not a complete zip archive", "deleted it, run again"]),
    ("download_unsafe_member", ["download", "--quiet", "--base-url", "{server}/unsafe", "--data", "{root}/dl_unsafe"],
     ["ISIC-2017_Training_Data.zip contains an unsafe member '../evil.txt'", "nothing was extracted"]),
]


# Cases that run as real child processes, so that the process path stays tested (the exit code
# of `python -m skinseg`, what reaches its stderr, warnings printed on import): an argparse
# error, a SkinsegError and a download.
IN_CHILD_PROCESSES = {"width_zero", "missing_folder", "download_corrupt_archive"}


def _set_mask(values):
    def damage(copy: Path) -> None:
        write_striped_mask(copy / TRAIN_MASKS / "ISIC_0000001_segmentation.png", values)
    return damage


def _truncate(path: str, keep: int):
    def damage(copy: Path) -> None:
        (copy / path).write_bytes((copy / path).read_bytes()[:keep])
    return damage


def _small_lesion(path: Path, value: int) -> None:
    mask = np.zeros((64, 64), np.uint8)
    mask[30:33, 30:33] = value
    Image.fromarray(mask).save(path)


def _replace_image(copy: Path, extension: str, image: Image.Image) -> None:
    (copy / TRAIN_IMAGES / "ISIC_0000004.jpg").unlink()
    image.save(copy / TRAIN_IMAGES / f"ISIC_0000004.{extension}")


def _digests(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, but for the cache and the downloads' folders."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*")
            if p.is_file() and not p.relative_to(root).parts[0].startswith(("cache", "dl_"))}


DAMAGES = {  # copies of the SYNTHETIC layout, each damaged in one way
    "image_without_mask": lambda c: (c / TRAIN_MASKS / "ISIC_0000003_segmentation.png").unlink(),
    "mask_without_image": lambda c: (c / TRAIN_IMAGES / "ISIC_0000005.jpg").unlink(),
    "empty_folder": lambda c: [p.unlink() for p in (c / TRAIN_IMAGES).iterdir()],
    "same_stem_twice": lambda c: Image.open(c / TRAIN_IMAGES / "ISIC_0000003.jpg").save(c / TRAIN_IMAGES / "ISIC_0000003.png"),
    "mask_size": lambda c: Image.fromarray(np.zeros((32, 64), np.uint8)).save(
        c / TRAIN_MASKS / "ISIC_0000002_segmentation.png"),
    "corrupt_jpeg": _truncate(f"{TRAIN_IMAGES}/ISIC_0000004.jpg", 400),
    "truncated_png": _truncate(f"{VAL_MASKS}/ISIC_0000009_segmentation.png", 60),
    "label_map_mask": _set_mask((0, 1, 2)),
    "grey_level_mask": _set_mask((0, 128, 255)),
    "mixed_lesion_values": _set_mask((0, 1, 255)),
    "small_grey_lesion": lambda c: _small_lesion(c / TRAIN_MASKS / "ISIC_0000001_segmentation.png", 128),
    "transparent_image": lambda c: _replace_image(c, "png", Image.new("RGBA", (64, 64))),
    "cmyk_image": lambda c: _replace_image(c, "jpg", Image.new("CMYK", (64, 64))),
    "huge_image": lambda c: _replace_image(c, "png", Image.new("1", (13000, 13000))),
    "own_folder_without_masks": lambda c: [shutil.rmtree(p) if p.is_dir() else p.unlink() for p in list(c.iterdir())]
    + [(c / "images").mkdir()],
}


def _files(root: Path, run: Path) -> dict[str, Path]:
    """Files that are not what they claim to be (FILES of the table)."""
    files = {name: root / f"{name}.pt" for name in ("text_file", "empty_pt", "no_arch_pt", "bad_arch_pt", "mismatch_pt")}
    files["text_file"].write_text("not a checkpoint\n")
    files["empty_pt"].touch()
    good = torch.load(run / "best.pt", weights_only=True)
    torch.save({"model": good["model"], "epoch": 1}, files["no_arch_pt"])
    torch.save({**good, "arch": {"model": "vgg16", "width": 4}}, files["bad_arch_pt"])
    torch.save({**good, "arch": {"model": "attention_unet", "width": 4}}, files["mismatch_pt"])
    return files


def _served(server) -> None:
    """Archives behind {server}: damaged (CRC), cut short without a Content-Length, with an unsafe member."""
    archive = make_zip({f"{TRAIN_IMAGES}/ISIC_0000000.jpg": b"\xff\xd8" + bytes(range(256)) * 40})
    server.files["corrupt/ISIC-2017_Training_Data.zip"] = damage_zip(archive)
    server.files["short/ISIC-2017_Training_Data.zip"] = archive
    server.truncate.add("short/ISIC-2017_Training_Data.zip")
    server.no_length = True
    server.files["unsafe/ISIC-2017_Training_Data.zip"] = make_zip({"../evil.txt": b"evil"})


# Warnings that Python does not show by default, so that a child process would not print them either.
_HIDDEN_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


def _in_process(args: list[str]) -> tuple[int, str, str]:
    """``python -m skinseg ARGS`` through :func:`skinseg.cli.main` in this process: its exit code,
    stdout and stderr. As in a child process, the warnings it raises are printed on stderr, and
    an exception that escapes ``main`` is printed as a traceback with exit code 1."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = main(args)
        except SystemExit as stop:  # argparse's errors end the program as sys.exit(main()) would
            code = stop.code
        except Exception:
            traceback.print_exc()
            code = 1
    shown = "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno) for w in caught
                    if not issubclass(w.category, _HIDDEN_WARNINGS))
    return code, out.getvalue(), err.getvalue() + shown


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory, layout_2017):
    """Run every command of BAD_INPUTS and collect the results: those of IN_CHILD_PROCESSES as
    child processes started first, the others one after the other in this process meanwhile."""
    root = tmp_path_factory.mktemp("cli_bad")
    places = {"root": root, "layout": layout_2017, "run": root / "unet_run"}
    for name, damage in DAMAGES.items():
        places[name] = Path(shutil.copytree(layout_2017, root / name))
        damage(places[name])
    seed_everything(0)
    tiny = make_synthetic(8, (64, 64), seed=3)
    fit(UNet(width=4), tiny.subset(slice(0, 4)), tiny.subset(slice(4, 8)), PROFILES["tiny"].replace(epochs=1),
        places["run"], progress=False, device="cpu")
    places.update(_files(root, places["run"]))
    tables = {"tab_good": "id,iou\na,0.5\nb,0.6\nc,0.7\n", "tab_other_ids": "id,iou\nx,0.5\ny,0.6\nz,0.7\n",
              "tab_no_id": "image,iou\na,0.5\nb,0.6\nc,0.7\n", "tab_text": "id,iou\na,0.5\nb,n/a\nc,0.7\n",
              "tab_twice": "id,iou\na,0.5\na,0.6\nc,0.7\n", "tab_nan": "id,iou\na,0.5\nb,0.6\nc,\n"}
    for name, text in tables.items():
        places[name] = root / f"{name}.csv"
        places[name].write_text(text)
    places["damaged_results"] = root / "damaged_results"
    (places["damaged_results"] / "runs").mkdir(parents=True)
    (places["damaged_results"] / "runs" / "unet_seed0.json").write_text('{"run": "unet_seed0"}')
    (places["damaged_results"] / "config.json").write_text('{"label": "cut sho')
    places["test_images"] = Path(shutil.copytree(layout_2017 / "ISIC-2017_Test_v2_Data", root / "test_images"))
    for folder, name in (("foreign", "ISIC_0000012_mask.png"), ("foreign_table", "predictions.csv")):
        places[folder] = root / folder
        places[folder].mkdir()
        (places[folder] / name).write_text("the user's own file\n")
    places["foreign_run"] = root / "foreign_run"  # a history.json without the last.pt of its run
    places["foreign_run"].mkdir()
    (places["foreign_run"] / "history.json").write_text('{"records": []}\n')
    places["exp_work"] = root / "exp_work"
    shutil.copytree(places["run"], places["exp_work"] / "unet_seed0")
    for copy in ("run_a", "run_b", "run_c"):  # commands that would write into the run run at the same time
        places[copy] = Path(shutil.copytree(places["run"], root / copy))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        places["closed"] = f"http://127.0.0.1:{s.getsockname()[1]}"
    # the children's environment (child_env) in this process too: the working folder, the cache, no profile
    with serve() as server, pytest.MonkeyPatch.context() as env:
        _served(server)
        places["server"] = server.url
        env.chdir(root)
        env.setenv("SKINSEG_CACHE", str(root / "cache"))
        env.delenv("SKINSEG_PROFILE", raising=False)
        cases = {name: ([str(a).format(**places) for a in args], [t.format(**places) for t in expected],
                        args[0] if args and args[0] in COMMANDS else None) for name, args, expected in BAD_INPUTS}
        children = {name: subprocess.Popen([sys.executable, "-m", "skinseg", *cases[name][0]], cwd=root,
                                           env=child_env(root / "cache"), stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True) for name in sorted(IN_CHILD_PROCESSES)}
        try:
            done, changed = {}, {}
            for name, (argv, _, _) in cases.items():
                if name not in children:
                    before = _digests(root)
                    done[name] = _in_process(argv)
                    after = _digests(root)
                    changed[name] = sorted(p for p, digest in before.items() if after.get(p) != digest)
            for name, child in children.items():
                out, err = child.communicate(timeout=300)
                done[name] = (child.returncode, out, err)
                changed[name] = []
        finally:
            for child in children.values():
                if child.poll() is None:
                    child.kill()
                    child.wait()
    return {name: (*done[name], expected, command, changed[name]) for name, (_, expected, command) in cases.items()}


def test_the_bad_input_table_has_unique_names():
    names = [name for name, _, _ in BAD_INPUTS]
    assert len(names) == len(set(names)) and IN_CHILD_PROCESSES <= set(names)


@pytest.mark.parametrize("case", [name for name, _, _ in BAD_INPUTS])
def test_bad_input_prints_one_line_and_exits_with_2(bad_runs, case):
    """One line, exit 2, no traceback, and every file that was there before is byte-identical."""
    returncode, out, err, expected, command, changed = bad_runs[case]
    assert not changed, changed
    assert returncode == 2, (out, err)
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"skinseg {command}: error: " if command else "skinseg: error: ")
    for text in expected:
        assert text in lines[0], (text, lines[0])
    if command in ("experiment", "sweep", "slice"):  # options of train only are never suggested
        assert "--no-resume" not in lines[0], lines[0]


def test_train_replaces_a_foreign_history_only_with_overwrite(tmp_path, layout_2017, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "history.json").write_text('{"records": []}\n')
    args = ["train", "--profile", "tiny", "--epochs", "1", "--data", str(layout_2017), "--out", str(out), "--device", "cpu"]
    assert main(args) == 2 and (out / "history.json").read_text() == '{"records": []}\n'
    assert main(args + ["--overwrite"]) == 0
    assert json.loads((out / "history.json").read_text())["records"][0]["epoch"] == 1
    assert main(args) == 0  # its own files now: resumed, not refused
    assert "kept " + str(out / "history.json") in capsys.readouterr().out


def test_two_trainings_into_one_folder_the_second_is_refused(tmp_path, layout_2017):
    """The second writer stops at once, naming the folder and the first's PID; the first's files stay its own."""
    out = tmp_path / "run"
    train = [sys.executable, "-m", "skinseg", "train", "--profile", "tiny", "--data", str(layout_2017), "--out", str(out)]
    env = child_env(tmp_path / "cache")
    first = subprocess.Popen(train + ["--seed", "0", "--epochs", "20"], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = out / LOCK_NAME
    deadline = time.monotonic() + 240
    def holder() -> str:
        try:
            return lock.read_text().strip()
        except FileNotFoundError:
            return ""
    while holder() != str(first.pid):
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.005)
    first.send_signal(signal.SIGSTOP)  # it holds the folder, mid-training, for as long as the second needs
    try:
        second = subprocess.run(train + ["--seed", "1", "--epochs", "2", "--no-resume"], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=300)
    finally:
        first.send_signal(signal.SIGCONT)
    out_first, err_first = first.communicate(timeout=300)
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert second.stderr.splitlines() == [
        f"skinseg train: error: output folder {out} is in use by another skinseg process (PID {first.pid}, "
        f"lock file {lock}); wait for it to finish or choose another output folder"]
    assert "wrote" not in second.stdout
    assert first.returncode == 0, err_first
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "history.json", "last.pt"]
    history = json.loads((out / "history.json").read_text())
    assert history["meta"]["seed"] == 0 and [r["epoch"] for r in history["records"]] == list(range(1, 21))
    last = torch.load(out / "last.pt", weights_only=True)
    assert last["recipe"]["seed"] == 0 and last["epoch"] == 20 and last["history"] == history


def test_bad_profile_from_the_environment(tmp_path, layout_2017):
    env = child_env(tmp_path / "cache")
    env["SKINSEG_PROFILE"] = "huge"
    result = subprocess.run([sys.executable, "-m", "skinseg", "train", "--data", str(layout_2017)], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"skinseg train: error: profile must be one of {sorted(PROFILES)}, got 'huge' "
        "(from the argument or SKINSEG_PROFILE)"]

def test_bench_replaces_its_own_reports_and_another_file_only_with_overwrite(tmp_path, monkeypatch, capsys):
    import skinseg.lab.bench as bench
    from skinseg.errors import ConfigError

    def started(*args, **kwargs):
        raise ConfigError("the benchmark would start now")
    monkeypatch.setattr(bench, "run_benchmark", started)
    monkeypatch.setattr(bench, "run_operator_profiles", started)
    own, foreign = tmp_path / "bench.json", tmp_path / "notes.json"
    own.write_text(json.dumps({"device": "cpu", "torch": "2", "results": []}))
    foreign.write_text('{"the user\'s": "notes"}')
    bench_args = ["bench", "--profile", "tiny", "--device", "cpu", "--ops", "--out"]
    for out, extra, expected in [(own, [], "the benchmark would start now"),
                                 (foreign, [], f"{foreign} exists and was not written by this command"),
                                 (foreign, ["--overwrite"], "the benchmark would start now")]:
        assert main(bench_args + [str(out)] + extra) == 2
        assert expected in capsys.readouterr().err
    (tmp_path / "bench_ops.json").write_text("[]")  # --ops writes OUT_ops.json: not a report of bench
    assert main(bench_args + [str(own)]) == 2
    assert f"{tmp_path / 'bench_ops.json'} exists and was not written by this command" in capsys.readouterr().err
    assert foreign.read_text() == '{"the user\'s": "notes"}'

# ----------------------------------------------------------------------------- end to end


def _written(stdout: str) -> list[str]:
    """The paths after 'wrote' in a command's output."""
    paths = []
    for line in stdout.splitlines():
        m = re.match(r"wrote (?:SYNTHETIC ISIC \d+ layout (?:\(\w+\) )?to )?(\S+)(?: and (\S+))?$", line)
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
    assert "CPU SMOKE RUN" in out and "8 training images" in out and "4 validation images" in out
    assert _written(out) == ["run/best.pt", "run/last.pt", "run/history.json"]
    assert all((tmp_path / p).is_file() for p in _written(out))
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [r["epoch"] for r in history["records"]] == [1, 2]
    assert re.search(r"best epoch [12]: validation IoU \d\.\d{4}", out)

    out = cli("evaluate", "--checkpoint", "run/best.pt", "--data", "data", "--split", "test",
              "--image-size", "64", "64", "--out", "eval/a.csv")
    assert _written(out) == ["eval/a.csv", "eval/a.json"]
    assert "\nISIC 2017 test: mean_iou " in "\n" + out
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
    assert re.search(r"Wilcoxon p = \d\.\de[+-]\d\d,", out)  # scientific notation, never 0.0000
    out = cli("compare", "eval/a.csv", "eval/b.csv", "--metric", "hd95")  # the boundary metric is a column too
    assert out.startswith("hd95: A ")
    result = json.loads((tmp_path / "eval" / "c.json").read_text())
    b = pd.read_csv(tmp_path / "eval" / "b.csv", index_col="id")
    assert result["n"] == 4 and result["mean_diff"] == pytest.approx((b["iou"] - a["iou"]).mean(), abs=1e-5)

    # a metric the tables lack is a clear error too
    bad = run_cli(["compare", "eval/a.csv", "eval/b.csv", "--metric", "hd99"], tmp_path, cache)
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1 and "no column 'hd99'" in bad.stderr
