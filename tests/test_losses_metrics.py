"""Soft Dice and BCE + Dice losses against hand-computed values; the overlap metrics against
scikit-learn and hand-made examples."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from skinseg.errors import ConfigError
from skinseg.losses import BCEDiceLoss, DiceLoss, bce_dice_loss, build_loss, soft_dice_loss
from skinseg.metrics import (confusion_counts, dice_from_counts, dice_from_iou, dice_per_image, iou_from_counts,
                             iou_per_image, pooled_dice, pooled_iou, summarize_counts, thresholded_jaccard)

# ----------------------------------------------------------------------------- losses


def _target():
    t = torch.zeros(2, 1, 8, 8)
    t[0, 0, 2:6, 1:5] = 1
    t[1, 0, 0:3, 0:8] = 1
    return t


def test_dice_loss_of_a_perfect_prediction_is_zero():
    t = _target()
    logits = torch.where(t > 0, 50.0, -50.0)
    assert soft_dice_loss(logits, t).item() == pytest.approx(0.0, abs=1e-6)


def test_dice_loss_of_an_all_wrong_prediction_is_almost_one():
    t = _target()
    logits = torch.where(t > 0, -50.0, 50.0)
    # intersection 0; per image Dice = smooth / (64 + smooth) since p + t covers all 64 pixels
    assert soft_dice_loss(logits, t).item() == pytest.approx(1 - 1 / 65, abs=1e-6)
    assert soft_dice_loss(logits, t, smooth=0.0).item() == pytest.approx(1.0, abs=1e-6)


def test_empty_mask_predicted_empty_has_zero_loss_with_smooth_one():
    t = torch.zeros(3, 1, 16, 16)
    assert soft_dice_loss(torch.full_like(t, -50.0), t, smooth=1.0).item() == pytest.approx(0.0, abs=1e-6)
    # ... and full loss (1 - 1/257) when everything is predicted lesion
    assert soft_dice_loss(torch.full_like(t, 50.0), t).item() == pytest.approx(1 - 1 / 257, abs=1e-6)


def test_dice_loss_small_case_by_hand_is_a_mean_over_images():
    ln3 = math.log(3)
    # image 0: p = [.5, .5, .75, .25], t = [1, 0, 1, 0]: sum pt = 1.25, sum p = 2, sum t = 2
    # image 1: p = .5 everywhere, t = 1 everywhere: sum pt = 2, sum p = 2, sum t = 4
    logits = torch.tensor([[[[0.0, 0.0], [ln3, -ln3]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    target = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]], [[[1.0, 1.0], [1.0, 1.0]]]])
    dice0, dice1 = (2 * 1.25 + 1) / (2 + 2 + 1), (2 * 2 + 1) / (2 + 4 + 1)
    assert dice0 == pytest.approx(0.7)
    assert soft_dice_loss(logits, target).item() == pytest.approx(1 - (dice0 + dice1) / 2, abs=1e-6)
    assert soft_dice_loss(logits[:1], target[:1], smooth=0.0).item() == pytest.approx(1 - 2.5 / 4, abs=1e-6)
    assert DiceLoss()(logits, target).item() == pytest.approx(1 - (dice0 + dice1) / 2, abs=1e-6)


def test_bce_dice_is_bce_plus_dice():
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 8, 8) * 3
    t = _target()
    p = torch.sigmoid(logits).double().numpy()
    tn = t.double().numpy()
    bce_by_hand = -np.mean(tn * np.log(p) + (1 - tn) * np.log(1 - p))
    expected = bce_by_hand + soft_dice_loss(logits, t).item()
    assert bce_dice_loss(logits, t).item() == pytest.approx(expected, rel=1e-5)
    assert BCEDiceLoss()(logits, t).item() == pytest.approx(expected, rel=1e-5)
    assert F.binary_cross_entropy_with_logits(logits, t).item() == pytest.approx(bce_by_hand, rel=1e-5)


@pytest.mark.parametrize("name", ["dice", "bce_dice"])
def test_gradients_flow_and_point_the_right_way(name):
    torch.manual_seed(0)
    logits = (torch.randn(2, 1, 8, 8) * 0.1).requires_grad_(True)
    t = _target()
    build_loss(name)(logits, t).backward()
    grad = logits.grad
    assert torch.isfinite(grad).all()
    # raising a lesion pixel's logit lowers the loss, raising a background pixel's logit raises it
    assert (grad[t > 0] < 0).all()
    assert (grad[t == 0] > 0).all()


def test_build_loss_names():
    assert isinstance(build_loss("dice"), DiceLoss) and not isinstance(build_loss("dice"), BCEDiceLoss)
    assert isinstance(build_loss("bce_dice"), BCEDiceLoss)
    with pytest.raises(ConfigError, match="bce_dice"):
        build_loss("focal")

# ----------------------------------------------------------------------------- metrics


def _random_masks(seed=0, n=24, shape=(16, 20)):
    rng = np.random.default_rng(seed)
    density = rng.uniform(0.05, 0.8, (n, 1, 1))
    pred = (rng.random((n, *shape)) < density).astype(np.uint8)
    target = (rng.random((n, *shape)) < density[::-1]).astype(np.uint8)
    return pred, target


def test_per_image_iou_and_dice_agree_with_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    pred, target = _random_masks()
    iou, dice = iou_per_image(pred, target), dice_per_image(pred, target)
    assert iou.shape == dice.shape == (len(pred),)
    for i in range(len(pred)):
        p, t = pred[i].ravel(), target[i].ravel()
        assert iou[i] == pytest.approx(metrics.jaccard_score(t, p), abs=1e-12)
        assert dice[i] == pytest.approx(metrics.f1_score(t, p), abs=1e-12)


def test_torch_inputs_and_channel_axis_give_the_same_counts():
    pred, target = _random_masks(seed=1, n=5)
    tp, fp, fn = confusion_counts(pred, target)
    for a, b in [(torch.from_numpy(pred), torch.from_numpy(target)), (pred[:, None], target[:, None]),
                 (pred.astype(bool), target.astype(bool))]:
        for x, y in zip(confusion_counts(a, b), (tp, fp, fn)):
            np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(tp, (pred & target).reshape(5, -1).sum(1))
    np.testing.assert_array_equal(fp, (pred & (1 - target)).reshape(5, -1).sum(1))
    np.testing.assert_array_equal(fn, ((1 - pred) & target).reshape(5, -1).sum(1))
    with pytest.raises(ValueError, match="same shape"):
        confusion_counts(pred[:, :8], target)


def test_empty_conventions():
    empty = np.zeros((1, 4, 4), np.uint8)
    full = np.ones((1, 4, 4), np.uint8)
    assert iou_per_image(empty, empty)[0] == 1.0 and dice_per_image(empty, empty)[0] == 1.0
    assert iou_per_image(full, empty)[0] == 0.0 and dice_per_image(full, empty)[0] == 0.0
    assert iou_per_image(empty, full)[0] == 0.0 and dice_per_image(empty, full)[0] == 0.0
    assert iou_from_counts(0, 0, 0) == 1.0 and dice_from_counts(0, 0, 0) == 1.0


def test_dice_is_2j_over_1_plus_j_for_every_image():
    pred, target = _random_masks(seed=2)
    iou = iou_per_image(pred, target)
    np.testing.assert_allclose(dice_per_image(pred, target), dice_from_iou(iou), rtol=1e-12)
    assert dice_from_iou(0.5) == pytest.approx(2 / 3)
    # ... but not for means over images: 2J / (1 + J) is concave, so the mean Dice falls below it (Jensen)
    assert dice_per_image(pred, target).mean() < dice_from_iou(iou.mean()) - 1e-3


def test_thresholded_jaccard_by_hand():
    iou = [0.9, 0.6, 0.65, 0.3, 0.7]
    assert thresholded_jaccard(iou) == pytest.approx((0.9 + 0.65 + 0.7) / 5)
    assert thresholded_jaccard(iou, threshold=0.0) == pytest.approx(np.mean(iou))
    assert thresholded_jaccard(iou, threshold=0.95) == 0.0


def test_pooled_and_per_image_scores_differ_on_a_large_and_a_small_lesion():
    target = np.zeros((2, 20, 20), np.uint8)
    pred = np.zeros_like(target)
    target[0, :10, :10] = pred[0, :10, :10] = 1  # 100-pixel lesion found exactly
    target[1, 15, 15] = 1  # 1-pixel lesion missed, one false pixel elsewhere
    pred[1, 2, 2] = 1
    tp, fp, fn = confusion_counts(pred, target)
    assert list(tp) == [100, 0] and list(fp) == [0, 1] and list(fn) == [0, 1]
    s = summarize_counts(tp, fp, fn)
    assert s["mean_iou"] == pytest.approx(0.5) and s["mean_dice"] == pytest.approx(0.5)
    assert s["pooled_iou"] == pytest.approx(100 / 102) and pooled_iou(tp, fp, fn) == pytest.approx(100 / 102)
    assert s["pooled_dice"] == pytest.approx(200 / 202) and pooled_dice(tp, fp, fn) == pytest.approx(200 / 202)
    assert s["thresholded_jaccard"] == pytest.approx(0.5)
    assert s["n"] == 2


# ----------------------------------------------------------------------------- boundary metrics

from scipy.spatial.distance import cdist, directed_hausdorff  # noqa: E402

from skinseg.metrics import boundary_pixels, boundary_scores, hd95_per_image  # noqa: E402


def _blobs(rng, n, shape=(24, 32)):
    """Random masks of one or a few rectangles with ragged edges."""
    masks = np.zeros((n, *shape), bool)
    for m in masks:
        for _ in range(rng.integers(1, 4)):
            r, c = rng.integers(0, shape[0] - 4), rng.integers(0, shape[1] - 4)
            m[r:r + rng.integers(3, 12), c:c + rng.integers(3, 14)] = True
        m ^= rng.random(shape) < 0.03
    return masks


def _reference(p, t, tolerance=2.0):
    """Brute force: all pairwise distances between the two boundaries' pixel coordinates."""
    bp = np.argwhere(p & ~_eroded(p))
    bt = np.argwhere(t & ~_eroded(t))
    d = cdist(bp, bt)
    to_t, to_p = d.min(1), d.min(0)
    hd95 = max(np.percentile(to_t, 95), np.percentile(to_p, 95))
    precision, recall = np.mean(to_t <= tolerance), np.mean(to_p <= tolerance)
    f = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return hd95, f, max(directed_hausdorff(bp, bt)[0], directed_hausdorff(bt, bp)[0])


def _eroded(m):
    """Erosion by the 4-neighbour cross, the outside of the image counting as background."""
    padded = np.pad(m, 1)
    return (padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])


def test_boundary_scores_match_brute_force_pairwise_distances():
    rng = np.random.default_rng(0)
    pred, target = _blobs(rng, 40), _blobs(rng, 40)
    hd, bf = boundary_scores(pred, target)
    hd100, _ = boundary_scores(pred, target, percentile=100)
    for i in range(40):
        ref_hd95, ref_f, ref_hausdorff = _reference(pred[i], target[i])
        assert hd[i] == pytest.approx(ref_hd95, abs=1e-9)
        assert bf[i] == pytest.approx(ref_f, abs=1e-12)
        assert hd100[i] == pytest.approx(ref_hausdorff, abs=1e-9)  # scipy's directed_hausdorff, both ways
    assert np.all(hd <= hd100) and np.all((0 <= bf) & (bf <= 1))


def test_boundary_of_a_square_and_a_shifted_copy():
    a = np.zeros((1, 20, 20), bool)
    a[0, 5:15, 5:15] = True
    assert boundary_pixels(a[0]).sum() == 36  # a 10 x 10 square's outline, an interior of 8 x 8 removed
    b = np.roll(a, 3, axis=2)  # moved 3 px to the right: every boundary pixel is at most 3 px off
    hd, bf = boundary_scores(a, b)
    assert hd[0] == pytest.approx(3.0) and 0 < bf[0] < 1
    hd_same, bf_same = boundary_scores(a, a)
    assert hd_same[0] == 0.0 and bf_same[0] == 1.0
    assert boundary_scores(a, b, tolerance=3.0)[1][0] == 1.0


def test_boundary_scores_of_empty_masks():
    empty, square = np.zeros((1, 12, 16), bool), np.zeros((1, 12, 16), bool)
    square[0, 2:6, 3:9] = True
    hd, bf = boundary_scores(np.concatenate([empty, empty, square]), np.concatenate([empty, square, empty]))
    diagonal = math.hypot(11, 15)
    np.testing.assert_allclose(hd, [0.0, diagonal, diagonal])
    np.testing.assert_array_equal(bf, [1.0, 0.0, 0.0])
    assert hd95_per_image(torch.as_tensor(square[:, None]), square[:, None])[0] == 0.0  # (N, 1, H, W) tensors
    with pytest.raises(ValueError):
        boundary_scores(square, square[:, :6])
