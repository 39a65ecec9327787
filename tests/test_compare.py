"""The comparison of the two models: endpoints, and the two-level (seed x image) bootstrap."""
import numpy as np
import pandas as pd
import pytest

from skinseg.errors import ConfigError
from skinseg.evaluate import paired_comparison
from skinseg.lab.stats import compare_tables, endpoint_column, two_level_bootstrap


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
