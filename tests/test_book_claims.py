"""The numbers the chapters' prose states about the committed results, checked against them.

Code cells print their numbers from the files; sentences cannot. When a new GPU run replaces
``results/``, these tests name every sentence whose number no longer holds, so the text
is rewritten from the new numbers instead of going stale.
"""
from __future__ import annotations

import re
from pathlib import Path

import jupytext
import pandas as pd
import pytest


from skinseg.config import PROFILES
from skinseg.data.loading import split_pairs
from skinseg.errors import DataError
from skinseg.lab.bench_results import latest_bench, speedup_table
from skinseg.lab.endpoints import PRIMARY_ENDPOINT
from skinseg.lab.protocols import replica_counts
from skinseg.lab.results import load_bench, load_results
from skinseg.paths import default_data_dir

ROOT = Path(__file__).resolve().parents[1]
PLAIN, COMPILED = "bf16 + channels_last, batch 16", "bf16 + channels_last + compiled, batch 16"


def prose(chapter: str) -> str:
    """The markdown cells of ``book/<chapter>*.md``, with line breaks and repeated spaces folded."""
    (path,) = (ROOT / "book").glob(f"{chapter}_*.md")
    text = "\n".join(c.source for c in jupytext.read(path).cells if c.cell_type == "markdown")
    return re.sub(r"\s+", " ", text)


@pytest.fixture(scope="module")
def results():
    return load_results(ROOT / "results" / "isic2017_16ep")


@pytest.fixture(scope="module")
def speeds():
    bench = latest_bench(load_bench(ROOT / "results" / "bench"))
    return bench, speedup_table(bench)


# --- chapters 04 and 05: losses, metrics, borders and the training loop --------------------------

ARTICLE_UNET_IOU, ARTICLE_UNET_DICE = 0.7377556, 0.8498270  # printed in the source article


def test_the_article_loss_is_pooled_and_the_book_loss_per_image():
    import torch

    from skinseg.losses import pooled_dice_loss, soft_dice_loss

    text = prose("04")
    assert "flattens the whole batch into one vector (`inputs.view(-1)`)" in text
    assert PROFILES["article"].loss == "dice_pooled" and PROFILES["full"].loss == "bce_dice"
    pair = torch.zeros(2, 1, 32, 32)
    pair[0, :, 4:28, 4:28], pair[1, :, 14:18, 14:18] = 1, 1
    guess = 8 * (2 * pair - 1)
    guess[1] = -8
    assert f"its {int(pair[1].sum())} pixels sit beside {int(pair[0].sum())} well-predicted ones" in text
    assert 0.45 < soft_dice_loss(guess, pair).item() < 0.5 and pooled_dice_loss(guess, pair).item() < 0.02


def test_the_article_unet_pair_breaks_the_jensen_bound():
    from skinseg.metrics import dice_from_iou

    text = prose("04").replace("**", "")
    bound = dice_from_iou(ARTICLE_UNET_IOU)
    assert f"{100 * ARTICLE_UNET_IOU:.5f} % IoU and {100 * ARTICLE_UNET_DICE:.5f} % Dice" in text
    assert f"The U-Net's reported Dice lies {ARTICLE_UNET_DICE - bound:.4f} above the bound" in text
    assert f"which would give exactly {100 * bound:.3f} %" in text
    assert f"breaks this bound ({100 * bound:.3f} %)" in text and ARTICLE_UNET_DICE > bound
    # the Attention U-Net's 74.7 % and 85.2 %: even the extremes of the rounding keep it below the bound
    assert "The Attention U-Net's rounded pair lies below its bound" in text and dice_from_iou(0.7465) > 0.8525


def test_the_summary_range_of_chapter_4(results):
    test = results.run("unet", results.seeds[0])["test"]
    values = [test[k] for k in ("mean_iou", "mean_dice", "thresholded_jaccard", "pooled_iou", "pooled_dice")]
    assert f"five summaries between {min(values):.3f} and {max(values):.3f}" in prose("04")


def test_the_stored_masks_of_chapter_4_are_the_secondary_endpoint(results):
    text = prose("04")
    run = results.run("unet", results.seeds[0])
    assert results.mask_endpoints("unet") == ["chosen"] and run["chosen"] != "none"
    assert f"only of the variant each run chose on validation (here `{run['chosen']}`)" in text
    assert f"stored the ground truth of {len(results.display.ids)} test images" in text
    assert f"On those {len(results.display.ids)} we can compute" in text


def test_gate_cost_of_chapter_5(speeds):
    from skinseg.lab.bench_results import gate_cost

    bench, _ = speeds
    cost = gate_cost(bench)
    sentence = (f"make a training step {100 * cost['step_time_change']:.0f} % longer ({cost['unet_step_ms']:.1f} → "
                f"{cost['attention_step_ms']:.1f} ms), which is {-100 * cost['throughput_change']:.1f} % fewer images")
    text = prose("05")
    assert text.count(sentence) == 2  # section 5.8 and the summary
    assert f"$1/{1 + cost['step_time_change']:.3f} = {1 + cost['throughput_change']:.3f}$" in text
    assert "about 20 % time" not in text and "20 % slower" not in text


def test_recipe_weight_decay_and_ema_of_chapter_5(results):
    import numpy as np

    from skinseg.train import learning_rate

    text, recipe, full = prose("05"), results.config["profile"], PROFILES["full"]
    keys = ["loss", "optimizer", "lr", "weight_decay", "schedule", "warmup_epochs", "ema_decay", "batch_size"]
    assert "In these settings they differ only in the number of epochs" in text
    assert all(recipe[k] == getattr(full, k) for k in keys) and recipe["epochs"] != full.epochs
    assert "geometry" not in recipe["augment"] and full.augment.geometry == "rigid"  # "the augmentation differs too"
    steps = results.config["data"]["train"]["n"] // recipe["batch_size"]
    total = steps * recipe["epochs"]
    rates = np.array([learning_rate(s, total, steps, recipe["lr"], recipe["schedule"]) for s in range(total)])
    shrink = 1 - np.prod(1 - rates * recipe["weight_decay"])
    assert "A hundredth of a per cent over the 16-epoch run" in text and 0.8e-4 < shrink < 1.2e-4
    assert f"at $\\lambda = 10^{{-4}}$" in text and recipe["weight_decay"] == 1e-4
    window = 1 / (1 - recipe["ema_decay"])
    assert f"not the {window:.0f}-step average the decay names" in text
    t = np.arange(1, total + 1)
    reached = t[np.argmax(np.minimum(recipe["ema_decay"], (1 + t) / (10 + t)) >= recipe["ema_decay"])]
    assert "the ramp lasted until the last two epochs" in text and recipe["epochs"] - 2 <= reached / steps < recipe["epochs"] - 1
    assert "EMA (decay 0.995" in text and recipe["ema_decay"] == 0.995


def test_the_training_curves_of_chapter_5(results):
    h, runs = results.histories, results.runs
    text = prose("05")
    last = h[h.epoch == h.epoch.max()].set_index(["model", "seed"])
    before = {k: h[h.epoch == h.epoch.max() - k].set_index(["model", "seed"]) for k in (1, 4)}
    assert "Every run reached its best validation IoU in its last or next-to-last epoch" in text
    assert (runs.best_epoch >= runs.epochs - 1).all()
    gain = last.val_dice - before[4].val_dice
    step = last.val_iou - before[1].val_iou
    gap = last.train_dice - last.val_dice
    assert f"validation Dice still gained {gain.min():.3f} to {gain.max():.3f}" in text
    assert f"validation IoU moved by {step.min():+.4f} to {step.max():+.4f}".replace("-", "−") in text
    assert f"training Dice lies {gap.min():.3f} to {gap.max():.3f} above validation Dice" in text
    for phrase in ("stopped early, still improving", "it stopped early", "still improving"):
        assert phrase not in text, phrase


def test_lesion_sizes_behind_the_gap_of_chapter_5(results):
    import numpy as np

    from skinseg.data import load_split
    from skinseg.lab.stats import SIZE_EDGES, by_lesion_size

    data = default_data_dir()
    if not (data / "ISIC-2017_Training_Data").is_dir():
        pytest.skip(f"the shared ISIC 2017 copy is not at {data}")
    sizes = {s: load_split(data, s, (192, 256)).lesion_fraction for s in ("train", "val")}
    assert (f"the median lesion covers {100 * np.median(sizes['val']):.1f} % of a validation image against "
            f"{100 * np.median(sizes['train']):.1f} % of a training image") in prose("05")
    tables = {(m, s): results.per_image(m, s) for m in results.models for s in results.seeds}
    by_size = by_lesion_size(tables, results.seeds, metric="dice", endpoint="raw")
    share = {s: pd.cut(pd.Series(f), list(SIZE_EDGES), include_lowest=True).value_counts(normalize=True, sort=False).to_numpy()
             for s, f in sizes.items()}
    assert "the validation mix would score as well as the training mix or slightly better" in prose("05")
    for model in results.models:
        expected = {s: float((share[s] * by_size[model].to_numpy()).sum()) for s in share}
        assert expected["val"] >= expected["train"] - 0.001, (model, expected)
    assert by_size.loc[by_size.index[0], "unet"] >= by_size["unet"].max() - 0.01  # "the smallest not the worst"


def test_epochs_and_hardware_of_the_experiment(results):
    epochs, device = results.config["profile"]["epochs"], results.device
    assert f"allowed {epochs} epochs per run" in prose("00")
    assert f"the `full` recipe with {epochs} epochs instead of the profile's {PROFILES['full'].epochs}" in prose("00")
    assert f"for {PROFILES['full'].epochs} epochs: a number fixed by the recipe" in prose("00")
    assert f"a run on an {device} GPU" in prose("00")
    assert f"{epochs} epochs on the 2000 training images" in prose("05")
    assert f"the `full` profile trains a fixed {PROFILES['full'].epochs} epochs" in prose("05")
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
    assert f"(NVIDIA H200, variant `{u0.chosen}` chosen on validation)" in prose("04")
    assert f"the raw predictions, the book's primary endpoint, score mean IoU {u0.raw_mean_iou:.3f}" in prose("04")
    assert PRIMARY_ENDPOINT == "raw"


def test_metric_gaps_of_chapter_4(results):
    from skinseg.evaluate import summarize
    from skinseg.metrics import dice_from_iou

    per_image = results.per_image("unet", 0)
    s, text = summarize(per_image), prose("04").replace("**", "")
    for claim in (f"mean Dice is {s['mean_dice'] - s['mean_iou']:.2f} above mean IoU",
                  f"overstates the mean Dice by {dice_from_iou(s['mean_iou']) - s['mean_dice']:.3f}",
                  f"pooled IoU is {s['mean_iou'] - s['pooled_iou']:.2f} below the mean IoU",
                  f"the thresholded Jaccard is {s['mean_iou'] - s['thresholded_jaccard']:.2f} below the mean IoU"):
        assert claim in text, claim
    assert "a quarter of the images fall under 0.65" in text and abs((per_image.iou < 0.65).mean() - 0.25) < 0.02


def test_single_run_comparisons_of_chapter_6(results):
    iou = results.runs.pivot(index="seed", columns="model", values="raw_mean_iou")  # the primary endpoint
    text = prose("06")
    assert "the U-Net of seed 0 beats the Attention U-Net of seed 1 by two thirds of a point of IoU" in text
    assert iou.loc[0, "unet"] - iou.loc[1, "attention_unet"] == pytest.approx(2 / 3 * 0.01, abs=0.0005)
    assert "the Attention U-Net of seed 0 beats the U-Net of seed 2 by seven tenths of a point" in text
    assert iou.loc[0, "attention_unet"] - iou.loc[2, "unet"] == pytest.approx(0.007, abs=0.0005)


def test_speed_claims(speeds):
    bench, table = speeds
    plain = table.loc[PLAIN]
    fewer = 100 * (1 - plain["Attention / U-Net"])
    assert "Attention U-Net trains about a fifth fewer images per second" in prose("03") and abs(fewer - 20) < 2.5
    compiled = round(100 * (table.loc[COMPILED, "U-Net vs plain"] - 1))
    assert f"`torch.compile` made the U-Net step {compiled} % faster" in prose("05")
    assert f"`torch.compile` added {compiled} % for the U-Net" in prose("05")
    att_compiled = bench[(bench.model == "attention_unet") & (bench.setting == COMPILED)].iloc[0]
    assert f"took {round(100 * att_compiled.pipeline_fraction)} % of the compiled step's time" in prose("05")
    eager = bench[~(bench.compile | bench.compile_gates)].pipeline_fraction * 100
    assert f"takes about {round(eager.min())}-{round(eager.max())} % of a step" in prose("05")
    gap = 100 * (table.loc[COMPILED, "Attention U-Net model step ms"] / table.loc[COMPILED, "U-Net model step ms"] - 1)
    assert f"about {round(gap)} % slower than the compiled U-Net's" in prose("07")


def test_the_gates_flop_overhead_is_one_figure_everywhere():
    from skinseg.lab.bench import attention_flops_overhead

    figure = f"{100 * attention_flops_overhead():.1f} %"
    texts = {name: prose(name) for name in ("03", "05", "07")}
    for name, text in texts.items():
        stated = set(re.findall(r"(\d+\.\d) % (?:more )?FLOPs|(\d+\.\d) % to the FLOPs", text))
        assert stated and {v for group in stated for v in group if v} == {figure[:-2]}, (name, stated)


def test_data_and_replica_claims_of_chapter_1():
    data = default_data_dir()
    if not (data / "ISIC-2017_Training_Data").is_dir():
        pytest.skip(f"the shared ISIC 2017 copy is not at {data}")
    from PIL import Image

    text = prose("01")
    sizes = set()
    for split in ("train", "val", "test"):
        for _, image, mask in split_pairs(data, split, "2017"):
            with Image.open(image) as im, Image.open(mask) as m:
                sizes |= {im.size, m.size}
    n_images = sum(len(split_pairs(data, s, "2017")) for s in ("train", "val", "test"))
    assert sizes == {(256, 192)} and f"every one of the {n_images} images is 256 × 192" in text
    c = replica_counts(data)
    missing_train, missing_test = c["train_official"] - c["train_present"], c["test_official"] - c["test_present"]
    share = (c["train_present"] + c["test_present"]) / (c["train_official"] + c["test_official"])
    assert "## 1.8 The ISIC 2016 replica" in text and abs(share - 4 / 5) < 0.05
    for claim in (f"about four fifths of the ISIC 2016 images ({c['train_present']} of {c['train_official']} "
                  f"training and {c['test_present']} of {c['test_official']} test images; section 1.8)",
                  f"holds {c['train_present']} of the {c['train_official']} training ids and {c['test_present']} "
                  f"of the {c['test_official']} test ids; {missing_train} training and {missing_test} test images are missing",
                  f"applied to the {c['train_present']} training ids present, puts {c['train']} of them in training "
                  f"and {c['val']} in validation",
                  f"the {c['test']} test ids present are the test set",
                  f"With {c['test']} test images instead of {c['test_official']}",
                  f"$\\sqrt{{{c['test_official']}/{c['test']}}}$",
                  f"about {round(100 * ((c['test_official'] / c['test']) ** 0.5 - 1))} % wider confidence intervals",
                  f"trained on ISIC 2017 has seen all {c['test']} replica test images",
                  f"{c['train_present']} of its {c['train_official']} training images ({c['train']} training, "
                  f"{c['val']} validation) and {c['test_present']} of its {c['test_official']} test images"):
        assert claim in text, claim
    assert "A sixth of the training images and a fifth of the test images" in text
    assert abs(missing_train / c["train_official"] - 1 / 6) < 0.02 and abs(missing_test / c["test_official"] - 1 / 5) < 0.02
    # "none does" states the stored output of the cell that counts them (nbval keeps it current)
    stored = (ROOT / "book" / "01_data.ipynb").read_text()
    assert "In this project's copy none does" in text and "0 of the 12 near-identical pairs" in stored
    assert (f"(150 for ISIC 2017, {c['val']} for the replica); the test images (600 and {c['test']})"
            in prose("06"))


# --- sentences that say a results folder is still empty -----------------------------------------

NOT_RUN = [  # (chapter, phrase, the folders it says are empty)
    ("00", "have not yet been run on a GPU", ("isic2016_replica", "isic2016_replica_article")),
    ("00", "The converged experiments have no runs yet", ("isic2017", "isic2016_replica", "isic2016_replica_article")),
    ("01", "No model has been trained on the replica yet", ("isic2016_replica", "isic2016_replica_article")),
    ("01", "it has not yet been run on a GPU", ("isic2016_replica", "isic2016_replica_article")),
    ("06", "until a GPU has run them", ("isic2017", "isic2016_replica", "isic2016_replica_article")),
]


def has_no_runs(name: str) -> bool:
    try:
        load_results(ROOT / "results" / name)
    except DataError:
        return True
    return False


@pytest.mark.parametrize("chapter, phrase, folders", NOT_RUN, ids=[f"{c}: {p}" for c, p, _ in NOT_RUN])
def test_not_yet_run_sentences_hold_exactly_while_the_folders_are_empty(chapter, phrase, folders):
    empty = all(has_no_runs(name) for name in folders)
    assert (phrase in prose(chapter)) == empty, (f"book/{chapter}: {phrase!r} is "
                                                 f"{'missing although' if empty else 'stale:'} results/ "
                                                 f"{'holds no runs of' if empty else 'holds runs of'} {folders}")


def test_the_first_experiments_budget_as_its_log_states_it():
    log = (ROOT / "results" / "isic2017_16ep" / "gpu_run.log").read_text()
    epoch_pair, epochs = re.search(r"([\d.]+) s per epoch pair -> (\d+) epochs", log).groups()
    (total,) = re.search(r"done in (\d+) s", log).groups()
    assert (f"{epoch_pair} s for one epoch of each, and from it chose the number of epochs with which all six "
            f"runs would fit its time budget: {epochs}. The whole device call, a short benchmark included, "
            f"took {total} s") in prose("05")
    assert int(total) < 600 and f"one device call of under ten minutes (it took {total} s" in prose("06")


# --- chapter 6: the 16-epoch lesson, on both endpoints ------------------------------------------

def test_the_16_epoch_runs_peak_at_the_end_of_their_schedule(results):
    runs, h = results.runs, results.histories
    text = prose("06")
    assert "Every run reached its best validation IoU at its last epoch or the one before" in text
    assert (runs.best_epoch >= runs.epochs - 1).all()
    last = h.groupby(["model", "seed"]).epoch.max()
    val = h.set_index(["model", "seed", "epoch"]).val_iou
    gains = [val[m, s, e] - val[m, s, e - 4] for (m, s), e in last.items()]
    assert "gained more in its last four epochs than the two models differ" in text
    differences = [abs(results.comparison("iou", e)["seed_averaged"]["mean_diff"]) for e in ("raw", "chosen")]
    assert min(gains) > max(differences)


def test_the_verdict_flips_with_the_endpoint(results):
    chosen, raw = (results.comparison("iou", e) for e in ("chosen", "raw"))
    text = prose("06")
    c, r = chosen["seed_averaged"]["mean_diff"], raw["seed_averaged"]["mean_diff"]
    assert f"{c:+.4f}".replace("-", "−") + " IoU with each run's own choice" in text
    assert f"{r:+.4f} on raw predictions" in text and c < 0 < r
    assert f"(−{abs(c):.4f} with the per-run choice, {r:+.4f} raw)" in text
    assert "every interval, per image, across seeds or two-level, includes zero on both endpoints" in text
    for result in (chosen, raw):
        for part in ("seed_averaged", "seed_t", "two_level"):
            assert result[part]["ci_low"] < 0 < result[part]["ci_high"]


def test_per_seed_directions_of_chapter_6(results):
    text = prose("06")
    chosen = results.comparison("iou", "chosen")["per_seed"]
    assert ("every seed's mean difference is zero or below, while every seed's median difference is above zero "
            "and the Attention U-Net wins more images than the U-Net in every seed") in text
    for s in chosen.values():
        assert round(s["mean_diff"], 4) <= 0 < s["median_diff"] and s["b_better"] > s["a_better"]
    assert "for seed 0 it gives a tiny p-value although the mean difference is almost exactly zero" in text
    assert chosen["0"]["p_wilcoxon"] < 0.001 and abs(chosen["0"]["mean_diff"]) < 0.0005
    raw = results.comparison("iou", "raw")["per_seed"]
    assert ("On raw predictions, seeds 0 and 2 favour the Attention U-Net by mean, median and wins alike, "
            "and seed 1 favours the U-Net by all three") in text
    for seed, sign in (("0", 1), ("2", 1), ("1", -1)):
        s = raw[seed]
        assert sign * s["mean_diff"] > 0 and sign * s["median_diff"] > 0 and sign * (s["b_better"] - s["a_better"]) > 0


def test_choices_and_cases_of_chapter_6(results):
    text, runs = prose("06"), results.runs
    gain = (runs.mean_iou - runs.raw_mean_iou)[runs.model == "unet"]
    assert "added one to four thousandths of test IoU" in text and 0.001 <= gain.min() and gain.max() < 0.004
    assert (runs[runs.model == "unet"].chosen.str.endswith("+post")).all()  # "always with post-processing"
    assert (runs[runs.model == "attention_unet"].chosen.str.startswith("d4")).all()  # "all chose d4"
    both = {m: results.per_image(m, 0) for m in ("unet", "attention_unet")}
    disputed = (both["attention_unet"].iou - both["unet"].iou).abs().sort_values(ascending=False, kind="stable")
    losses = [i for i in disputed.index[:4] if both["attention_unet"].iou[i] < both["unet"].iou[i]]
    raw = [both[m].iou_raw[i] for m in both for i in losses]
    assert len(losses) == 3 and "(0.33 to 0.44 for both)" in text
    assert round(min(raw), 2) == 0.33 and round(max(raw), 2) == 0.44
    assert results.config["data"]["test"]["n"] == 600 and results.config["data"]["val"]["n"] == 150


def test_lesion_size_claims_of_chapter_6(results):
    text = prose("06")
    seeds = results.seeds
    lesion = results.per_image("unet", seeds[0]).lesion_fraction
    groups = pd.cut(lesion, [0, 0.05, 0.10, 0.20, 0.40, 1.0], include_lowest=True)
    mean = {m: pd.concat([results.per_image(m, s).iou_raw for s in seeds], axis=1).mean(axis=1)
            .groupby(groups, observed=False).mean() for m in ("unet", "attention_unet")}
    diff = mean["attention_unet"] - mean["unet"]
    assert ("the Attention U-Net is ahead by a few thousandths, about as much as the two models differ, one way or "
            "the other, in the other size groups") in text
    assert 0.001 < diff.iloc[0] < 0.01 and diff.iloc[0] <= 1.1 * diff.iloc[1:].abs().max()
    assert "The largest lesions are clearly the hardest for both" in text
    assert (mean["unet"].iloc[-1] < mean["unet"].iloc[:-1].min() - 0.03)
    assert (mean["attention_unet"].iloc[-1] < mean["attention_unet"].iloc[:-1].min() - 0.03)


def test_the_converged_recipe_of_chapter_6():
    text = prose("06")
    epochs = PROFILES["full"].epochs
    assert f"trained for a fixed {epochs} epochs" in text and f"a fixed number of epochs, {epochs}," in text
    assert "(section 6.4 shows what the shorter 16-epoch schedule did" in text and PROFILES["full"].epochs > 16


# --- chapters 02, 03, 06, 07: conclusions on the primary endpoint, intervals across seeds, costs ---------

def _listed(values) -> str:
    """``[1, 1, 0]`` -> ``"1, 1 and 0"``, as the prose lists per-seed figures."""
    values = [str(v) for v in values]
    return f"{', '.join(values[:-1])} and {values[-1]}"


def _signed(value: float) -> str:
    """``-0.0097`` -> ``"−0.0097"`` (the prose's minus sign), ``0.0119`` -> ``"+0.0119"``."""
    return f"{value:+.4f}".replace("-", "−")


@pytest.fixture(scope="module")
def tables(results):
    return {(m, s): results.per_image(m, s) for m in results.models for s in results.seeds}


def test_chapter_6_concludes_on_the_primary_endpoint(results, tables):
    from skinseg.lab.stats import by_lesion_size, large_losses

    seeds, text = results.seeds, prose("06")
    raw = [len(ids) for ids in large_losses(tables, seeds, "iou", "raw").values()]
    chosen = [len(ids) for ids in large_losses(tables, seeds, "iou", "chosen").values()]
    assert seeds == [0, 1, 2] and sum(raw) < sum(chosen)
    assert (f"loses by more than 0.2 IoU on {_listed(raw)} of the 600 test images (seeds 0, 1, 2)" in text
            and results.config["data"]["test"]["n"] == 600)
    assert f"small lesions it loses badly ({_listed(chosen)} images) appear only on the secondary endpoint" in text
    assert (f"there are {_listed(chosen)} of them (seeds 0, 1, 2); on raw predictions, the primary endpoint, "
            f"there are {_listed(raw)}") in text
    assert f"loses by more than 0.2 IoU on {_listed(raw)} images of 600" in text  # the summary
    assert "on a few small lesions it fails badly" not in text
    smallest = by_lesion_size(tables, seeds, "iou", "raw").iloc[0]
    assert smallest.name == "0-5 %" and smallest.difference > 0
    assert (f"{_signed(smallest.difference)} IoU on the {int(smallest.images)} test images whose lesion covers less "
            "than 5 % of the picture") in text


def test_intervals_across_seeds_of_chapter_6(results):
    from math import comb

    from scipy import stats

    text = prose("06")
    c = results.comparison("iou", "raw")
    t, boot = c["seed_t"], c["two_level"]
    s = t["n_seeds"]
    t_ci = f"[{_signed(t['ci_low'])}, {_signed(t['ci_high'])}]"
    boot_ci = f"[{_signed(boot['ci_low'])}, {_signed(boot['ci_high'])}]"
    assert f"mean differences of {_listed([_signed(m) for m in t['seed_means']])}" in text
    assert f"the t-interval across them, {t_ci}, is more than twice as wide as the two-level bootstrap's {boot_ci}" in text
    assert (t["ci_high"] - t["ci_low"]) > 2 * (boot["ci_high"] - boot["ci_low"])
    assert f"(raw: {t_ci}). The two-level bootstrap, {boot_ci}," in text  # the summary
    assert s == 3 and f"$t_{{0.975,2}} = {stats.t.ppf(0.975, s - 1):.2f}$" in text
    assert "there are only 10 different ways to draw three seeds out of three" in text and comb(2 * s - 1, s) == 10
    assert "so it shrinks the seed-to-seed variance to two thirds" in text and (s - 1) / s == pytest.approx(2 / 3)


def test_seed_s_of_both_models_starts_from_the_same_shared_weights():
    """Chapter 6 pairs U-Net seed s with Attention U-Net seed s because every shared layer starts alike."""
    import torch

    from skinseg.device import seed_everything
    from skinseg.models import build_model

    assert "every layer the two networks have in common started from the same random weights" in prose("06")
    seed_everything(3)
    unet = build_model("unet", 4).state_dict()
    seed_everything(3)
    attention = build_model("attention_unet", 4).state_dict()
    shared = [k for k in unet if k in attention]
    assert len(shared) == len(unet) and len(attention) > len(unet)
    assert all(torch.equal(unet[k], attention[k]) for k in shared)


def test_seed_spreads_of_chapter_6(results):
    from skinseg.lab.stats import seed_spread

    raw, chosen = (100 * seed_spread(results.runs, column) for column in ("raw_mean_iou", "mean_iou"))
    text = prose("06")
    assert (f"moves a run's mean raw IoU by up to {raw['unet']:.2f} points for the U-Net and "
            f"{raw['attention_unet']:.2f} points for the Attention U-Net") in text
    assert f"the spread grows to {chosen['unet']:.2f} and {chosen['attention_unet']:.2f} points" in text
    assert (f"differ by up to {raw['unet']:.2f} (U-Net) and {raw['attention_unet']:.2f} (Attention U-Net) points of "
            f"raw IoU from the seed alone, and by up to {chosen.max():.2f} points once each run also chooses") in text
    assert "differ by up to about a point from the seed alone" not in text
    assert (chosen > raw).all()


def test_the_gates_cost_step_time_and_throughput_as_two_numbers(speeds):
    from skinseg.lab.bench_results import gate_cost

    bench, _ = speeds
    cost = gate_cost(bench)
    time, fewer = round(100 * cost["step_time_change"]), 100 * -cost["throughput_change"]
    three, seven = prose("03"), prose("07")
    assert (f"make a training step {time} % longer, {cost['attention_step_ms']:.1f} ms instead of the U-Net's "
            f"{cost['unet_step_ms']:.1f} ms") in three
    assert f"processes $1/{1 + cost['step_time_change']:.2f} = {1 / (1 + cost['step_time_change']):.3f}$" in three
    assert f"{fewer:.1f} % fewer" in three and f"about a fifth ({fewer:.1f} %) fewer images per second" in three
    assert f"make a training step {time} % longer and cut the images trained per second by {fewer:.1f} %" in seven
    assert f"each step takes {time} % longer" in seven
    for text in (three, seven):
        assert "about 20 % slower" not in text and "about a fifth slower" not in text


def test_flops_per_byte_ratios_of_chapter_7():
    """The ratios are printed by a chapter-7 cell (kept current by nbval); the prose quotes their range."""
    stored = (ROOT / "book" / "07_where_the_time_goes.ipynb").read_text()
    (listed,) = re.findall(r"FLOPs per byte, conv block / gate, by level: \[([\d., ]+)\]", stored)
    ratios = [float(v) for v in listed.split(",")]
    text = prose("07")
    assert f"does {min(ratios):.1f} to {max(ratios):.1f} times more arithmetic per byte" in text
    assert f"does {round(min(ratios))} to {round(max(ratios))} times less arithmetic per byte" in text
    assert "ten to twenty times" not in text


def test_the_16_epoch_runs_are_called_a_shorter_schedule(results):
    assert results.config["profile"]["schedule"] == "warmup_cosine" and results.config["profile"]["ema_decay"]
    for chapter in ("02", "03", "06"):
        text = prose(chapter)
        assert not re.search(r"(?<!Nothing was )(?<!it was not )stopped early", text), chapter
        assert "complete but short" in text, chapter
    assert "## 6.4 The first experiment: a complete but shorter schedule of 16 epochs" in prose("06")


def test_chapter_6_says_the_converged_runs_do_not_exist_yet():
    phrase = "The converged runs have not yet been run on a GPU, so this chapter has no test scores at convergence"
    assert (phrase in prose("06")) == has_no_runs("isic2017")


def test_figures_of_chapters_2_3_6_7_say_what_they_show():
    """Every code cell whose stored output holds a figure carries an alt text (myst-nb's
    ``mystnb.image.alt``) in the chapter's source, in words rather than a file path."""
    for chapter in ("02", "03", "06", "07"):
        (path,) = (ROOT / "book").glob(f"{chapter}_*.md")
        stored = jupytext.read(path.with_suffix(".ipynb"))
        source = [c for c in jupytext.read(path).cells if c.cell_type == "code"]
        executed = [c for c in stored.cells if c.cell_type == "code"]
        assert [c.source for c in source] == [c.source for c in executed], f"{path.name}: re-execute it"
        figures = [c for c, e in zip(source, executed) if any("image/png" in o.get("data", {}) for o in e.outputs)]
        assert figures, chapter
        for cell in figures:
            alt = cell.metadata.get("mystnb", {}).get("image", {}).get("alt", "")
            assert len(alt) > 40 and "/" not in alt.split()[0], (chapter, cell.source[:80])


def test_chapter_6_figures_say_which_endpoint_they_show(results):
    with pytest.raises(DataError, match="not the raw prediction"):
        results.predictions("unet", 0, endpoint="raw")
    chosen = results.predictions("unet", 0, endpoint="chosen")
    assert "secondary endpoint" in chosen.describe()
    assert "their raw masks, the primary endpoint, were not stored (experiments run since store both)" in prose("06")
    assert "the run's choice of test-time augmentation and post-processing (the secondary endpoint)" in prose("02")
