"""The library's public functions check their arguments, with the command line's one-line errors."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from skinseg.checkpoint import load_model
from skinseg.config import PROFILES
from skinseg.data import SegmentationData, load_split
from skinseg.lab.synthetic import make_synthetic
from skinseg.errors import ConfigError, DataError, SkinsegError
from skinseg.evaluate import predict_probabilities
from skinseg.lab.stats import paired_comparison
from skinseg.models import UNet
from skinseg.predict import predict
from skinseg.train import fit


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    data = make_synthetic(8, (32, 32), seed=2)
    out = tmp_path_factory.mktemp("api_run")
    fit(UNet(width=4), data.subset(slice(0, 4)), data.subset(slice(4, 8)), PROFILES["tiny"].replace(epochs=1), out,
        progress=False, device="cpu")
    return out / "best.pt"


@pytest.mark.parametrize("kwargs, message", [
    ({"limit": -1}, "limit must be None or an integer of at least 1, got -1"),
    ({"limit": 0}, "limit must be None or an integer of at least 1, got 0"),
    ({"limit": True}, "got True"),
    ({"size": (64,)}, "size must be (H, W), two positive integers, got (64,)"),
    ({"size": "64x64"}, "size must be (H, W)"),
    ({"size": (64.5, 64)}, "two positive integers"),
])
def test_load_split_refuses_bad_arguments(layout_2017, kwargs, message):
    arguments = {"split": "train", "size": (64, 64), **kwargs}
    with pytest.raises(ConfigError) as info:
        load_split(layout_2017, arguments.pop("split"), arguments.pop("size"), cache=False, **arguments)
    assert message in str(info.value)


def test_segmentation_data_refuses_float_images_and_0_255_masks():
    images, masks = np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 8, 8), np.uint8)
    with pytest.raises(DataError, match=r"images must be uint8 with values 0\.\.255, got float32 \(these look like "
                                        r"values in \[0, 1\]"):
        SegmentationData(images.astype(np.float32) / 255, masks)
    masks[0, 2:4, 2:4] = 255
    with pytest.raises(DataError, match=r"masks must hold 0 \(background\) and 1 \(lesion\), got values up to 255 "
                                        r"\(a 0/255 mask: use masks // 255\)"):
        SegmentationData(images, masks)
    with pytest.raises(DataError, match="ids must be a list of strings, got the single string 'ab'"):
        SegmentationData(images, masks // 255, "ab")
    with pytest.raises(DataError, match=r"images must be \(N, H, W, 3\) RGB, got the shape \(8, 8, 3\)"):
        SegmentationData(images[0], masks[0])


def test_predict_probabilities_refuses_float_images_instead_of_dividing_them_by_255_again(checkpoint):
    model = load_model(checkpoint)
    images = make_synthetic(2, (32, 32), seed=5).images
    expected = predict_probabilities(model, images, device="cpu")
    assert expected.shape == (2, 32, 32) and 0 <= expected.min() and expected.max() <= 1
    with pytest.raises(DataError, match="images must be uint8 .* use \\(images \\* 255\\)"):
        predict_probabilities(model, images / 255.0, device="cpu")
    with pytest.raises(DataError, match="must be a numpy array"):
        predict_probabilities(model, images.tolist(), device="cpu")


def test_load_model_refuses_unknown_weights(checkpoint):
    with pytest.raises(ConfigError, match="weights must be 'best' or 'model', got 'ema'"):
        load_model(checkpoint, weights="ema")
    assert load_model(checkpoint, weights="model") is not None


def test_predict_refuses_a_single_path_where_a_list_is_expected(checkpoint, tmp_path):
    with pytest.raises(ConfigError, match=r"inputs must be a list of paths, got the single str 'photos': write \['photos'\]"):
        predict(checkpoint, "photos", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("a, b, message", [
    (pd.Series([0.1, 0.2], index=["a", "b"]), pd.Series([0.3, 0.4], index=["x", "y"]), "no image id in common"),
    (pd.Series([0.1, 0.2, 0.3], index=["a", "a", "b"]), pd.Series([0.3, 0.4], index=["a", "b"]),
     "a has 1 duplicated id(s), e.g. 'a'"),
    ([0.1, float("nan"), 0.3], [0.2, 0.3, 0.4], "a has 1 missing or infinite score(s)"),
    (["0.1", "x", "0.3"], [0.2, 0.3, 0.4], "a must hold numbers"),
    ([0.1, 0.2], [0.2, 0.3, 0.4], "paired 1-d score arrays of equal length"),
    (pd.Series([0.1, 0.2], index=["a", "b"]), [0.2, 0.3], "must both be pandas Series"),
])
def test_paired_comparison_refuses_what_cannot_be_paired(a, b, message):
    with pytest.raises(SkinsegError) as info:
        paired_comparison(a, b)
    assert message in str(info.value)


def test_models_batch_sizes_devices_and_bootstrap_settings_are_checked(checkpoint, tmp_path):
    model = load_model(checkpoint)
    images = make_synthetic(2, (32, 32), seed=5).images
    with pytest.raises(ConfigError, match=r"model must be a torch model, got str \(load one with"):
        predict_probabilities(str(checkpoint), images)
    with pytest.raises(ConfigError, match="batch_size must be an integer of at least 1, got 0"):
        predict_probabilities(model, images, batch_size=0, device="cpu")
    with pytest.raises(ConfigError, match="device must be cpu, cuda, cuda:N or mps, got 'tpu'"):
        load_model(checkpoint, device="tpu")
    with pytest.raises(ConfigError, match="confidence must be a number between 0 and 1"):
        paired_comparison([0.1, 0.2, 0.3], [0.2, 0.3, 0.5], confidence=95.0)
    with pytest.raises(ConfigError, match="n_boot must be an integer of at least 1, got 0"):
        paired_comparison([0.1, 0.2, 0.3], [0.2, 0.3, 0.5], n_boot=0)
