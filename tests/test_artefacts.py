"""Tests of the artefact detectors on hand-made images whose answer is known."""
import numpy as np
import pytest

from skinseg.lab.artefacts import (black_hat, corner_region, hair_score, ink_mask, ink_score, luminance,
                                    vignette_score)

H, W = 96, 128
SKIN = (220, 170, 140)
BROWN = (110, 70, 50)
VIOLET = (120, 60, 170)


def _plain(n: int = 1, colour=SKIN) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.uint8), (n, H, W, 3)).copy()


def test_luminance_matches_the_bt601_weights():
    images = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    expected = images.astype(float) @ np.array([0.299, 0.587, 0.114])
    assert luminance(images).dtype == np.uint8
    assert np.abs(luminance(images).astype(float) - expected).max() <= 1.0
    assert luminance(_plain(colour=(255, 255, 255))).min() == 255


def test_corner_region_is_the_outside_of_the_inscribed_ellipse():
    corners = corner_region((H, W))
    assert corners.shape == (H, W)
    assert corners[0, 0] and corners[-1, -1] and corners[0, -1] and corners[-1, 0]
    assert not corners[H // 2, W // 2] and not corners[H // 2, 0] and not corners[0, W // 2]
    assert corners.mean() == pytest.approx(1 - np.pi / 4, abs=0.01)


def test_vignette_score_is_one_for_black_corners_and_zero_for_plain_skin():
    images = _plain(2)
    images[1][corner_region((H, W))] = 10
    scores = vignette_score(images)
    assert scores.shape == (2,)
    assert scores[0] == 0.0
    assert scores[1] == 1.0
    # a dark lesion in the centre is not a vignette
    lesion = _plain()
    lesion[0, 30:66, 40:88] = BROWN
    assert vignette_score(lesion)[0] == 0.0


def test_black_hat_sees_thin_dark_lines_but_not_wide_dark_areas():
    images = _plain(2)
    images[0, :, 60:62] = (40, 30, 25)        # a 2-pixel hair
    images[1, 20:80, 30:100] = (40, 30, 25)   # a 60x70 dark lesion
    hat = black_hat(images, size=9)
    assert hat.shape == (2, H, W) and hat.dtype == np.uint8
    assert hat[0, :, 60:62].min() > 100       # the hair stands out by over 100 grey levels
    assert hat[0, :, :55].max() == 0 and hat[0, :, 67:].max() == 0
    assert hat[1, 30:70, 40:90].max() == 0    # the inside of the wide area is filled by the closing


def test_hair_score_counts_the_hair_pixels():
    images = _plain(3)
    images[1, :, 60:62] = (40, 30, 25)        # one vertical hair: 2 of 128 columns
    for row in range(10, H, 12):              # many horizontal hairs
        images[2, row, :] = (40, 30, 25)
    scores = hair_score(images)
    assert scores[0] == 0.0
    assert scores[1] == pytest.approx(2 / W)
    assert scores[2] == pytest.approx(len(range(10, H, 12)) / H)
    assert scores[2] > scores[1] > scores[0]


def test_ink_finds_violet_marker_but_not_skin_brown_or_a_blue_cast():
    images = _plain(3)
    images[0, 10:20, 10:60] = VIOLET          # a pen stroke: 500 pixels
    images[1, 30:70, 40:90] = BROWN           # a brown lesion
    images[2] = (150, 170, 200)               # a bluish colour cast over the whole photograph
    mask = ink_mask(images)
    assert mask.shape == (3, H, W)
    assert mask[0, 10:20, 10:60].all() and mask[0].sum() == 500
    assert not mask[1].any() and not mask[2].any()
    np.testing.assert_allclose(ink_score(images), [500 / (H * W), 0.0, 0.0])


def test_chunks_give_the_same_scores_as_one_image_at_a_time():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (130, 16, 16, 3), dtype=np.uint8)  # more than one chunk of 128
    for score in (vignette_score, hair_score, ink_score):
        together = score(images)
        alone = np.array([score(images[i:i + 1])[0] for i in range(len(images))])
        np.testing.assert_array_equal(together, alone)


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.uint8), np.zeros((1, 4, 4, 3), np.float32),
                                 np.zeros((1, 4, 4), np.uint8)])
def test_wrong_input_is_rejected(bad):
    for score in (vignette_score, hair_score, ink_score):
        with pytest.raises(ValueError, match="uint8"):
            score(bad)
