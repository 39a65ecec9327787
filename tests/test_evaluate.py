"""Evaluation: predictions with test-time augmentation, post-processing and per-image tables."""
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from skinseg.data import SegmentationData
from skinseg.data.tensors import normalize
from skinseg.errors import ConfigError
from skinseg.evaluate import (TTA, _apply, _undo, binarize, evaluate_model, largest_component_filled, predict_probabilities,
                              predict_variants, score_masks, summarize, tta_views)
from skinseg.lab.endpoints import EvalSetting, evaluate_endpoints
from skinseg.metrics import boundary_scores, dice_per_image, iou_per_image
from skinseg.models import AttentionUNet, build_model


def _images(n=3, h=32, w=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


class Pointwise(nn.Module):
    """A 1x1 convolution: commutes with every flip and quarter turn."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 1, 1)

    def forward(self, x):
        return self.conv(x)


class Ramp(nn.Module):
    """Ignores its input and returns logits that grow from left to right: not flip invariant at all."""

    def forward(self, x):
        w = x.shape[-1]
        ramp = torch.linspace(-1, 4, w, device=x.device).expand(x.shape[0], 1, x.shape[-2], w)
        return ramp.contiguous()


@pytest.mark.parametrize("tta", sorted(TTA))
def test_predict_probabilities_shapes_and_range(tta):
    torch.manual_seed(0)
    model = AttentionUNet(width=4)
    images = _images(3, 32, 48)
    prob = predict_probabilities(model, images, tta=tta, batch_size=2, device="cpu")
    assert prob.shape == (3, 32, 48) and prob.dtype == np.float32
    assert (prob >= 0).all() and (prob <= 1).all()
    assert not model.training


def test_tta_of_an_equivariant_model_changes_nothing():
    model, images = Pointwise(), _images(4, 32, 32)
    plain = predict_probabilities(model, images, tta="none", device="cpu")
    for tta in ("flip", "d4"):
        np.testing.assert_allclose(predict_probabilities(model, images, tta=tta, device="cpu"), plain, atol=1e-6)
    # and the prediction is the model's own sigmoid, image by image
    x = normalize(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)
    with torch.no_grad():
        np.testing.assert_allclose(plain, torch.sigmoid(model(x))[:, 0].numpy(), atol=1e-6)


def test_tta_views_are_the_symmetries_training_sees_and_invert_exactly():
    assert tta_views("d4", 32, 32) == TTA["d4"] and len(TTA["d4"]) == 8
    assert tta_views("d4", 32, 48) == [(0, False), (0, True), (2, False), (2, True)]  # flips and the half turn
    assert tta_views("flip", 32, 48) == TTA["flip"]
    x = torch.rand(2, 3, 32, 48)
    for k, flip in tta_views("d4", 32, 48):
        assert _apply(x, k, flip).shape == x.shape  # each view fits the frame
        assert torch.equal(_undo(_apply(x, k, flip), k, flip), x)
    for k, flip in TTA["d4"]:
        square = x[..., :32]
        assert torch.equal(_undo(_apply(square, k, flip), k, flip), square)
    model, images = Pointwise(), _images(2, 32, 48)
    np.testing.assert_allclose(predict_probabilities(model, images, tta="d4", device="cpu"),
                               predict_probabilities(model, images, tta="none", device="cpu"), atol=1e-6)


def test_tta_averages_over_the_transformed_predictions():
    images = _images(2, 16, 16)
    ramp = 1 / (1 + np.exp(-np.linspace(-1, 4, 16)))  # the probabilities along a row
    none = predict_probabilities(Ramp(), images, tta="none", device="cpu")
    np.testing.assert_allclose(none[1], np.broadcast_to(ramp, (16, 16)), atol=1e-6)
    # flip: the mean of the prediction and its mirror image
    symmetric = (ramp + ramp[::-1]) / 2
    flip = predict_probabilities(Ramp(), images, tta="flip", device="cpu")
    np.testing.assert_allclose(flip[1], np.broadcast_to(symmetric, (16, 16)), atol=1e-6)
    # d4: half of the 8 transforms turn the ramp into a vertical one
    d4 = predict_probabilities(Ramp(), images, tta="d4", device="cpu")
    np.testing.assert_allclose(d4[1], (symmetric[None, :] + symmetric[:, None]) / 2, atol=1e-6)
    for view in (np.fliplr(d4[0]), np.flipud(d4[0]), np.rot90(d4[0]), d4[0].T):
        np.testing.assert_allclose(view, d4[0], atol=1e-6)  # invariant under the whole group
    with pytest.raises(ConfigError, match="tta must be one of"):
        predict_probabilities(Ramp(), images, tta="d8", device="cpu")


def test_largest_component_filled_keeps_the_big_blob_and_fills_its_hole():
    mask = np.zeros((20, 20), np.uint8)
    mask[2:12, 2:12] = 1
    mask[5:8, 5:8] = 0  # a hole
    mask[15:18, 15:18] = 1  # a small second blob
    out = largest_component_filled(mask)
    expected = np.zeros_like(mask)
    expected[2:12, 2:12] = 1
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.uint8
    # 8-connectivity: a diagonal neighbour belongs to the same region
    diagonal = np.zeros((6, 6), np.uint8)
    diagonal[0, 0] = diagonal[1, 1] = diagonal[2, 2] = 1
    diagonal[4:6, 4] = 1
    np.testing.assert_array_equal(largest_component_filled(diagonal), np.eye(6, dtype=np.uint8) * (np.arange(6) < 3))
    np.testing.assert_array_equal(largest_component_filled(np.zeros((5, 5), np.uint8)), np.zeros((5, 5)))


def test_binarize_threshold_and_postprocess():
    prob = np.array([[[0.2, 0.5, 0.51], [0.9, 0.0, 1.0]]], np.float32)
    np.testing.assert_array_equal(binarize(prob), [[[0, 0, 1], [1, 0, 1]]])
    assert binarize(prob).dtype == np.uint8
    prob = np.zeros((2, 10, 10), np.float32)
    prob[:, 1:6, 1:6] = 0.9
    prob[:, 3, 3] = 0.1
    prob[:, 8, 8] = 0.9
    post = binarize(prob, postprocess=True)
    assert post.shape == (2, 10, 10)
    assert post[:, 1:6, 1:6].all() and post.sum() == 2 * 25


def test_score_masks_table():
    rng = np.random.default_rng(0)
    truth = (rng.random((4, 16, 16)) < 0.3).astype(np.uint8)
    data = SegmentationData(_images(4, 16, 16), truth, ["a", "b", "c", "d"], "test data")
    pred = (rng.random((4, 16, 16)) < 0.3).astype(np.uint8)
    table = score_masks(pred, data)
    assert list(table.index) == ["a", "b", "c", "d"] and table.index.name == "id"
    assert list(table.columns) == ["iou", "dice", "tp", "fp", "fn", "lesion_fraction", "predicted_fraction",
                                   "hd95", "boundary_f"]  # the first seven as in committed results
    hd95, boundary_f = boundary_scores(pred, truth)
    np.testing.assert_array_equal(table["hd95"], hd95)
    np.testing.assert_array_equal(table["boundary_f"], boundary_f)
    pd.testing.assert_frame_equal(score_masks(pred, data, boundary=False), table.iloc[:, :7])
    np.testing.assert_allclose(table["iou"], iou_per_image(pred, truth))
    np.testing.assert_allclose(table["dice"], dice_per_image(pred, truth))
    np.testing.assert_allclose(table["lesion_fraction"], truth.reshape(4, -1).mean(1))
    np.testing.assert_allclose(table["predicted_fraction"], pred.reshape(4, -1).mean(1))
    summary = summarize(table)
    assert summary["mean_iou"] == pytest.approx(table["iou"].mean()) and summary["n"] == 4


def test_evaluate_model_matches_predict_then_score():
    data = SegmentationData(_images(3, 32, 32), np.zeros((3, 32, 32), np.uint8), source="x")
    data.masks[:, 8:24, 8:24] = 1
    model = Pointwise()
    table = evaluate_model(model, data, tta="flip", postprocess=True, device="cpu")
    expected = score_masks(binarize(predict_probabilities(model, data.images, tta="flip", device="cpu"), True), data)
    pd.testing.assert_frame_equal(table, expected)


def _count_passes(model: nn.Module) -> list:
    """A list that gets one entry per forward pass of ``model``."""
    passes = []
    model.register_forward_hook(lambda *_: passes.append(1))
    return passes


def test_shared_views_give_the_numbers_of_one_call_per_variant():
    torch.manual_seed(0)
    model = build_model("attention_unet", 4)
    images = _images(5, 32, 48)
    passes = _count_passes(model)
    shared = predict_variants(model, images, ("none", "flip", "d4", "flip"), batch_size=2, device="cpu")
    assert len(passes) == 4 * 3  # each of the 4 distinct views of a 32x48 image once per batch of 2 (3 batches)
    assert list(shared) == ["none", "flip", "d4"]
    for tta, prob in shared.items():
        np.testing.assert_array_equal(prob, predict_probabilities(model, images, tta=tta, batch_size=2, device="cpu"))


def test_evaluate_endpoints_scores_both_endpoints_from_shared_views():
    data = SegmentationData(_images(3, 32, 32), np.zeros((3, 32, 32), np.uint8), source="x")
    data.masks[:, 8:24, 8:24] = 1
    model = AttentionUNet(width=4)
    passes = _count_passes(model)
    table, raw, masks, raw_masks = evaluate_endpoints(model, data, EvalSetting("flip", True), batch_size=2, device="cpu")
    assert len(passes) == 2 * 2  # the raw view is one of flip's two: 2 views in each of 2 batches
    flip = binarize(predict_probabilities(model, data.images, tta="flip", batch_size=2, device="cpu"), True)
    np.testing.assert_array_equal(masks, flip)
    expected = score_masks(flip, data)
    pd.testing.assert_frame_equal(raw, evaluate_model(model, data, batch_size=2, device="cpu"))
    np.testing.assert_array_equal(raw_masks, binarize(predict_probabilities(model, data.images, device="cpu")))
    pd.testing.assert_frame_equal(raw, score_masks(raw_masks, data))
    pd.testing.assert_frame_equal(table[expected.columns], expected)
    for column in ("iou", "dice", "hd95", "boundary_f"):
        np.testing.assert_array_equal(table[f"{column}_raw"], raw[column])
    np.testing.assert_array_equal(table["dice_raw"], raw["dice"])


def test_an_evaluation_setting_reads_back_its_label():
    for setting in (EvalSetting(), EvalSetting("flip"), EvalSetting("d4", True)):
        assert EvalSetting.parse(setting.label) == setting
    assert EvalSetting("d4", True).label == "d4+post" and EvalSetting().label == "none"
    for bad in ("d8", "flip+blur", "flip+post+post", ""):
        with pytest.raises(ConfigError):
            EvalSetting.parse(bad)
