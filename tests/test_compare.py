"""The comparison of the two models: the paired per-image comparison, endpoints, the two-level
(seed x image) bootstrap, the t-interval across seeds and the printing of p-values."""
import numpy as np
import pandas as pd
import pytest

from scipy import stats

from skinseg.errors import ConfigError
from skinseg.lab.stats import (by_lesion_size, compare_tables, endpoint_column, format_p, large_losses, paired_comparison,
                               seed_spread, seed_t_interval, two_level_bootstrap)


def test_paired_comparison_of_a_consistent_shift():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.4, 0.9, 60)
    b = a + 0.03 + rng.normal(0, 0.01, 60)
    r = paired_comparison(a, b, n_boot=2000)
    assert r["n"] == 60
    assert r["mean_a"] == pytest.approx(a.mean()) and r["mean_b"] == pytest.approx(b.mean())
    assert r["mean_diff"] == pytest.approx((b - a).mean())
    assert r["ci_low"] < r["mean_diff"] < r["ci_high"]
    assert 0 < r["ci_low"] and r["ci_high"] < 0.04
    assert r["p_wilcoxon"] < 1e-6
    assert r["b_better"] + r["a_better"] == 60 and r["b_better"] > 55
    # swapping the models flips the sign
    s = paired_comparison(b, a, n_boot=2000)
    assert s["mean_diff"] == pytest.approx(-r["mean_diff"]) and s["a_better"] == r["b_better"]
    # the same seed gives the same interval
    assert paired_comparison(a, b, n_boot=2000) == r


def test_paired_comparison_of_identical_scores_and_no_effect():
    a = np.linspace(0.3, 0.9, 20)
    r = paired_comparison(a, a.copy())
    assert r["mean_diff"] == 0 and r["ci_low"] == 0 and r["ci_high"] == 0
    assert r["p_wilcoxon"] == 1.0 and r["a_better"] == r["b_better"] == 0
    rng = np.random.default_rng(1)
    noise = paired_comparison(a, a + rng.normal(0, 0.05, 20))
    assert noise["ci_low"] < 0 < noise["ci_high"] and noise["p_wilcoxon"] > 0.05


def test_paired_comparison_aligns_series_and_checks_shapes():
    ids = [f"img{i}" for i in range(10)]
    a = pd.Series(np.linspace(0, 1, 10), index=ids)
    b = (a + 0.1).iloc[::-1]  # same images, other order
    r = paired_comparison(a, b, n_boot=500)
    assert r["mean_diff"] == pytest.approx(0.1) and r["b_better"] == 10
    with pytest.raises(ValueError, match="paired"):
        paired_comparison(np.ones(5), np.ones(4))
    with pytest.raises(ValueError, match="paired"):
        paired_comparison([0.5], [0.6])


def test_endpoints_name_their_columns():
    assert endpoint_column("iou", "raw") == "iou_raw" and endpoint_column("dice", "chosen") == "dice"
    with pytest.raises(ConfigError, match="endpoint must be one of"):
        endpoint_column("iou", "best_on_test")


def test_two_level_interval_widens_with_the_spread_between_seeds():
    rng = np.random.default_rng(0)
    images = rng.normal(0.0, 0.05, 400)
    same = np.stack([images, images, images])  # three seeds that agree exactly
    shifted = same + np.array([[-0.02], [0.0], [0.02]])  # seeds that disagree by a shift
    flat, spread = two_level_bootstrap(same), two_level_bootstrap(shifted)
    per_image = paired_comparison(np.zeros(400), images)
    assert flat["mean_diff"] == pytest.approx(images.mean()) == pytest.approx(spread["mean_diff"])
    assert flat["ci_high"] - flat["ci_low"] == pytest.approx(per_image["ci_high"] - per_image["ci_low"], rel=0.1)
    assert spread["ci_high"] - spread["ci_low"] > 2 * (flat["ci_high"] - flat["ci_low"])
    assert spread["n_seeds"] == 3 and spread["n"] == 400
    with pytest.raises(ValueError, match="seeds, images"):
        two_level_bootstrap(images)


def test_compare_tables_per_seed_median_and_wins():
    ids = pd.Index([f"test_{i}" for i in range(6)], name="id")
    a = pd.DataFrame({"iou": 0.5, "iou_raw": 0.5, "dice": 0.6, "dice_raw": 0.6}, index=ids)
    b = a.copy()
    b["iou_raw"] = [0.52, 0.52, 0.52, 0.52, 0.52, 0.0]  # better on the typical image, one large loss
    tables = {("unet", 0): a, ("attention_unet", 0): b}
    result = compare_tables(tables, [0], "iou", "raw")
    seed = result["per_seed"]["0"]
    assert seed["mean_diff"] < 0 < seed["median_diff"] and seed["b_better"] == 5 and seed["a_better"] == 1
    assert compare_tables(tables, [0], "iou", "chosen")["per_seed"]["0"]["mean_diff"] == 0
    tables["attention_unet", 0] = b.iloc[:5]
    with pytest.raises(ConfigError, match="other test images"):
        compare_tables(tables, [0], "iou", "raw")
    with pytest.raises(ConfigError, match="no column 'hd95_raw'"):
        compare_tables({("unet", 0): a, ("attention_unet", 0): b}, [0], "hd95", "raw")


def test_seed_t_interval_against_a_one_sample_t_test():
    rng = np.random.default_rng(1)
    diffs = rng.normal(0.0, 0.05, (3, 200)) + np.array([[0.004], [-0.003], [0.006]])
    result = seed_t_interval(diffs)
    means = diffs.mean(1)
    reference = stats.ttest_1samp(means, 0.0).confidence_interval(0.95)
    assert result["ci_low"] == pytest.approx(reference.low) and result["ci_high"] == pytest.approx(reference.high)
    assert result["df"] == 2 and result["seed_means"] == pytest.approx(list(means))
    # with 3 seeds the bootstrap over seeds and images is narrower than the t-interval
    boot = two_level_bootstrap(diffs)
    assert boot["ci_high"] - boot["ci_low"] < result["ci_high"] - result["ci_low"]
    one = seed_t_interval(diffs[:1])
    assert one["ci_low"] is None and one["mean_diff"] == pytest.approx(means[0])


def test_compare_tables_reports_the_t_interval_next_to_the_bootstrap():
    ids = pd.Index([f"test_{i}" for i in range(5)], name="id")
    rng = np.random.default_rng(2)
    tables = {(m, s): pd.DataFrame({"iou_raw": rng.random(5)}, index=ids)
              for m in ("unet", "attention_unet") for s in (0, 1, 2)}
    result = compare_tables(tables, [0, 1, 2], "iou", "raw")
    diffs = np.stack([tables["attention_unet", s].iou_raw - tables["unet", s].iou_raw for s in (0, 1, 2)])
    assert result["seed_t"] == seed_t_interval(diffs)
    assert result["seed_t"]["mean_diff"] == pytest.approx(result["two_level"]["mean_diff"])


def test_p_values_print_in_scientific_notation():
    assert format_p(3.2e-05) == "p = 3.2e-05"
    assert format_p(0.41) == "p = 4.1e-01" and format_p(1.0) == "p = 1.0e+00"
    assert format_p(0.0) == "p < 2.2e-308" and format_p(1.23e-9, prefix="") == "1.2e-09"
    with pytest.raises(ValueError, match="p-value"):
        format_p(1.5)


def _two_seeds():
    ids = pd.Index(["a", "b", "c", "d"], name="id")
    fraction = [0.01, 0.03, 0.30, 0.60]
    unet = {0: [0.8, 0.8, 0.7, 0.6], 1: [0.8, 0.7, 0.7, 0.6]}
    attention = {0: [0.5, 0.9, 0.7, 0.65], 1: [0.85, 0.45, 0.7, 0.6]}
    return {(m, s): pd.DataFrame({"iou_raw": scores[s], "iou": 0.5, "lesion_fraction": fraction}, index=ids)
            for m, scores in (("unet", unet), ("attention_unet", attention)) for s in (0, 1)}


def test_large_losses_per_seed_and_endpoint():
    tables = _two_seeds()
    assert large_losses(tables, [0, 1]) == {0: ["a"], 1: ["b"]}  # -0.3 and -0.25; -0.2 is not more than 0.2
    assert large_losses(tables, [0, 1], margin=0.35) == {0: [], 1: []}
    assert large_losses(tables, [0, 1], endpoint="chosen") == {0: [], 1: []}


def test_by_lesion_size_averages_seeds_first():
    table = by_lesion_size(_two_seeds(), [0, 1])
    assert list(table.index) == ["0-5 %", "5-10 %", "10-20 %", "20-40 %", "40-100 %"]
    assert list(table.images) == [2, 0, 0, 1, 1]
    small = table.loc["0-5 %"]
    assert small.unet == pytest.approx((0.8 + 0.75) / 2) and small.attention_unet == pytest.approx((0.675 + 0.675) / 2)
    assert small.difference == pytest.approx(small.attention_unet - small.unet)
    assert table.loc["40-100 %", "difference"] == pytest.approx(0.025)


def test_seed_spread_is_the_range_over_seeds():
    runs = pd.DataFrame({"model": ["unet", "unet", "attention_unet", "attention_unet"], "seed": [0, 1, 0, 1],
                         "raw_mean_iou": [0.72, 0.725, 0.70, 0.73]})
    spread = seed_spread(runs)
    assert spread["unet"] == pytest.approx(0.005) and spread["attention_unet"] == pytest.approx(0.03)
