"""The numbers the chapters' prose states about the committed results, checked against them.

Code cells print their numbers from the files; sentences cannot. When a new GPU run replaces
``results/``, these tests name every sentence whose number no longer holds, so the text
is rewritten from the new numbers instead of going stale.
"""
from __future__ import annotations

import re
from pathlib import Path

import jupytext
import pytest

from skinseg.bench_results import latest_bench, speedup_table
from skinseg.results import load_bench, load_results

ROOT = Path(__file__).resolve().parents[1]
PLAIN, COMPILED = "bf16 + channels_last, batch 16", "bf16 + channels_last + compiled, batch 16"


def prose(chapter: str) -> str:
    """The markdown cells of ``book/<chapter>*.md``, with line breaks and repeated spaces folded."""
    (path,) = (ROOT / "book").glob(f"{chapter}_*.md")
    text = "\n".join(c.source for c in jupytext.read(path).cells if c.cell_type == "markdown")
    return re.sub(r"\s+", " ", text)


@pytest.fixture(scope="module")
def results():
    return load_results(ROOT / "results" / "isic2017")


@pytest.fixture(scope="module")
def speeds():
    bench = latest_bench(load_bench(ROOT / "results" / "bench"))
    return bench, speedup_table(bench)


def test_epochs_and_hardware_of_the_experiment(results):
    epochs, device = results.config["profile"]["epochs"], results.device
    assert f"allowed {epochs} epochs per run" in prose("00")
    assert f"the `full` recipe with {epochs} epochs" in prose("00")
    assert f"a run on an {device} GPU" in prose("00")
    assert f"{epochs} epochs on the 2000 training images" in prose("05")
    assert f"run on an {device} and committed" in prose("06")
    assert f"trained for only {epochs} epochs" in prose("06")
    assert f"were run with `--epochs {epochs}`" in re.sub(r"\s+", " ", (ROOT / "README.md").read_text())


def test_headline_test_scores(results):
    runs = results.runs
    means = runs.groupby("model")[["mean_iou", "mean_dice"]].mean() * 100
    low, high = int(means.mean_iou.min()), int(means.mean_iou.max()) + 1
    dice = {round(v) for v in means.mean_dice}
    assert len(dice) == 1
    assert f"both models reach about {low}-{high} % mean IoU and {dice.pop()} % mean Dice" in prose("06")
    u0 = runs[(runs.model == "unet") & (runs.seed == 0)].iloc[0]
    assert (f"mean IoU {u0.mean_iou:.3f}, mean Dice {u0.mean_dice:.3f}, pooled IoU {u0.pooled_iou:.3f}, "
            f"thresholded Jaccard {u0.thresholded_jaccard:.3f}") in prose("04")


def test_single_run_comparisons_of_chapter_6(results):
    iou = results.runs.pivot(index="seed", columns="model", values="mean_iou")
    text = prose("06")
    assert "the U-Net of seed 0 beats the Attention U-Net of seed 1 by more than a point of IoU" in text
    assert iou.loc[0, "unet"] - iou.loc[1, "attention_unet"] > 0.01
    assert "the Attention U-Net of seed 0 beats the U-Net of seed 2 by half a point" in text
    assert iou.loc[0, "attention_unet"] - iou.loc[2, "unet"] == pytest.approx(0.005, abs=0.001)


def test_speed_claims(speeds):
    bench, table = speeds
    plain = table.loc[PLAIN]
    slower = 100 * (1 - plain["Attention / U-Net"])
    assert "make a training step about 20 % slower" in prose("03") and abs(slower - 20) < 2.5
    assert "Attention U-Net trains about a fifth fewer images per second" in prose("03")
    compiled = round(100 * (table.loc[COMPILED, "U-Net vs plain"] - 1))
    assert f"`torch.compile` made the U-Net step {compiled} % faster" in prose("05")
    assert f"`torch.compile` added {compiled} % for the U-Net" in prose("05")
    att_compiled = bench[(bench.model == "attention_unet") & (bench.setting == COMPILED)].iloc[0]
    assert f"took {round(100 * att_compiled.pipeline_fraction)} % of the compiled step's time" in prose("05")
    eager = bench[~(bench.compile | bench.compile_gates)].pipeline_fraction * 100
    assert f"takes about {round(eager.min())}-{round(eager.max())} % of a step" in prose("05")
    gap = 100 * (table.loc[COMPILED, "Attention U-Net model step ms"] / table.loc[COMPILED, "U-Net model step ms"] - 1)
    assert f"about {round(gap)} % slower than the compiled U-Net's" in prose("03")
