"""The test images stored with the results (skinseg.lab.display): selection, file round trip,
errors, the experiment writing them, and the committed 16-epoch results drawing without data."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skinseg.config import PROFILES
from skinseg.errors import DataError
from skinseg.lab.display import QUANTILES, display_ids, load_display, store_display, unpack_masks, write_display
from skinseg.lab.experiment import run_experiment
from skinseg.lab.results import load_results
from skinseg.lab.synthetic import make_synthetic
from skinseg.metrics import iou_per_image

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "results" / "isic2017_16ep"


def _tables(n=40, seed=0):
    rng = np.random.default_rng(seed)
    ids = [f"img_{i:03d}" for i in range(n)]
    return pd.Series(rng.uniform(0, 1, n), ids), pd.Series(rng.uniform(0, 1, n), ids)


def test_display_ids_keep_psi_quantiles_extremes_and_disputed():
    unet, attention = _tables()
    ids = display_ids(unet, attention, psi_ids=["img_007", "img_003"])
    assert ids[:2] == ["img_007", "img_003"] and len(ids) == len(set(ids))
    ranked = unet.sort_values()
    assert {ranked.index[int(q * (len(ranked) - 1))] for q in QUANTILES} <= set(ids)
    mean = (unet + attention) / 2
    assert set(mean.nsmallest(5).index) | set(mean.nlargest(5).index) <= set(ids)
    assert set((attention - unet).abs().nlargest(5).index) <= set(ids)
    assert (unet - unet.median()).abs().idxmin() in ids
    with pytest.raises(DataError, match="different test images"):
        display_ids(unet, attention.iloc[:-1])


def test_round_trip_and_clear_errors(tmp_path):
    data = make_synthetic(3, size=(32, 48), seed=1)
    path = write_display(tmp_path / "display.npz", data.ids, data.images, data.masks)
    stored = load_display(path)
    assert stored.ids == data.ids and stored.images.dtype == np.uint8 and stored.masks.dtype == bool
    np.testing.assert_array_equal(stored.images, data.images)
    np.testing.assert_array_equal(stored.masks, data.masks.astype(bool))
    image, mask = stored.image("synth_0002")
    assert image.shape == (32, 48, 3) and mask.shape == (32, 48)
    np.testing.assert_array_equal(image, data.images[2])
    images, masks = stored.select(["synth_0002", "synth_0000"])
    np.testing.assert_array_equal(images, data.images[[2, 0]])
    with pytest.raises(DataError, match=r"'test_0458' is not among the 3 stored display images"):
        stored.image("test_0458")
    with pytest.raises(DataError, match=r"missing: these results keep no display images"):
        load_display(tmp_path / "nothing.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    with pytest.raises(DataError, match="is not a display-images file"):
        load_display(tmp_path / "other.npz")
    with pytest.raises(DataError, match="uint8"):
        write_display(tmp_path / "bad.npz", data.ids, data.images.astype(np.float32), data.masks)
    unet, attention = (pd.Series([0.5, 0.6, 0.7], ["a", "b", "c"]),) * 2
    with pytest.raises(DataError, match="lacks test image 'a'"):
        store_display(tmp_path, data, unet, attention)


def test_the_experiment_stores_the_shown_images(layout_2017, tmp_path):
    run_experiment(layout_2017, tmp_path / "out", PROFILES["tiny"], seeds=[0], work_dir=tmp_path / "work",
                   progress=False, log=lambda *_: None)
    results = load_results(tmp_path / "out")
    assert set(results.psi().ids) <= set(results.display.ids)
    table = results.per_image("unet", 0)
    image, mask = results.display_image(table["iou"].idxmax())
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8 and mask.dtype == bool


@pytest.mark.skipif(not COMMITTED.is_dir(), reason="the committed results are not in this checkout")
def test_committed_results_draw_their_images_without_the_data():
    results = load_results(COMMITTED)
    stored = results.display
    assert stored.images.shape[1:] == (192, 256, 3) and (COMMITTED / "display.npz").stat().st_size < 5e6
    assert set(results.psi().ids) <= set(stored.ids)
    # the stored ground truth gives back the runs' per-image IoU for every stored image
    for model in ("unet", "attention_unet"):
        predicted = results.predictions(model, endpoint="chosen")  # the stored masks of these results
        masks = np.stack([predicted.mask(i) for i in stored.ids])
        stored_iou = results.per_image(model, predicted.seed).loc[stored.ids, "iou"].to_numpy()
        np.testing.assert_allclose(iou_per_image(masks, stored.masks.astype(np.uint8)), stored_iou, atol=1e-5)


def test_packed_masks_unpack_to_their_shape_or_are_refused_naming_the_file():
    masks = (np.random.default_rng(0).random((3, 5, 13)) > 0.5).astype(np.uint8)
    packed = np.packbits(masks, axis=-1)
    np.testing.assert_array_equal(unpack_masks(packed, (3, 5, 13), "p.npz"), masks)
    with pytest.raises(DataError, match=r"p.npz: unpacked masks have shape \(3, 5, 13\), expected \(3, 6, 13\)"):
        unpack_masks(packed, (3, 6, 13), "p.npz")
