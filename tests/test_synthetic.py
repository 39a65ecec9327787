"""Tests of the SYNTHETIC lesion generator and the synthetic ISIC folder layouts."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skinseg.errors import ConfigError
from skinseg.lab.synthetic import make_synthetic, write_isic_layout

SMALL = (32, 48)


@pytest.fixture(scope="module")
def sixty_four():
    return make_synthetic(64, seed=0)


def _luminance(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def test_same_seed_gives_identical_arrays_and_other_seed_differs():
    a = make_synthetic(6, size=(64, 96), seed=3)
    b = make_synthetic(6, size=(64, 96), seed=3)
    c = make_synthetic(6, size=(64, 96), seed=4)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.masks, b.masks)
    assert not np.array_equal(a.images, c.images)
    assert not np.array_equal(a.masks, c.masks)
    # image i does not depend on how many images are drawn
    np.testing.assert_array_equal(make_synthetic(2, size=(64, 96), seed=3).images, a.images[:2])


def test_shapes_dtypes_ids_and_source_say_synthetic():
    data = make_synthetic(5, size=(64, 96), seed=7)
    assert data.images.shape == (5, 64, 96, 3) and data.images.dtype == np.uint8
    assert data.masks.shape == (5, 64, 96) and data.masks.dtype == np.uint8
    assert data.ids == ["synth_0000", "synth_0001", "synth_0002", "synth_0003", "synth_0004"]
    assert data.source == "SYNTHETIC lesions (seed 7)"
    assert len(make_synthetic(1, size=(16, 16)).images) == 1


def test_default_size_masks_binary_nonempty_and_lesions_darker(sixty_four):
    assert sixty_four.images.shape == (64, 192, 256, 3)
    assert set(np.unique(sixty_four.masks)) <= {0, 1}
    assert (sixty_four.masks.reshape(64, -1).sum(axis=1) > 0).all()
    lum = _luminance(sixty_four.images)
    inside = np.array([l[m == 1].mean() for l, m in zip(lum, sixty_four.masks)])
    outside = np.array([l[m == 0].mean() for l, m in zip(lum, sixty_four.masks)])
    assert (inside < outside - 20).mean() > 0.9  # the mask marks the painted lesion


def test_lesion_fraction_spread(sixty_four):
    fraction = sixty_four.lesion_fraction
    assert fraction.min() < 0.1
    assert fraction.max() > 0.3
    assert fraction.max() < 0.75


def test_hairs_are_dark_pixels_outside_the_mask(sixty_four):
    # Away from the corners (where a vignette may darken the skin) nothing outside the
    # lesion is dark except hairs.
    h, w = sixty_four.images.shape[1:3]
    y, x = np.mgrid[0:h, 0:w]
    centre = np.hypot(y - (h - 1) / 2, x - (w - 1) / 2) / np.hypot(h / 2, w / 2) < 0.7
    dark = (_luminance(sixty_four.images) < 90) & (sixty_four.masks == 0) & centre
    with_hair = (dark.reshape(64, -1).sum(axis=1) >= 20).mean()
    assert 0.3 < with_hair < 1.0


@pytest.mark.parametrize("kwargs, name", [
    (dict(n=0), "n"),
    (dict(n=-3), "n"),
    (dict(n=2.5), "n"),
    (dict(n=True), "n"),
    (dict(n=2, size=(8, 16)), "size"),
    (dict(n=2, size=(200, 256)), "size"),
    (dict(n=2, size=(192,)), "size"),
    (dict(n=2, size=192), "size"),
    (dict(n=2, size=(192.0, 256)), "size"),
    (dict(n=2, seed=-1), "seed"),
    (dict(n=2, seed="0"), "seed"),
])
def test_bad_arguments_raise_config_error(kwargs, name):
    with pytest.raises(ConfigError, match=rf"^{name} must be"):
        make_synthetic(**kwargs)


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_write_isic_layout_2017(tmp_path):
    root = write_isic_layout(tmp_path / "isic", "2017", n_train=3, n_val=2, n_test=2, size=SMALL, seed=5)
    assert root == tmp_path / "isic" and isinstance(root, Path)
    expected = {
        "ISIC-2017_Training_Data": ("ISIC-2017_Training_Part1_GroundTruth", 3),
        "ISIC-2017_Validation_Data": ("ISIC-2017_Validation_Part1_GroundTruth", 2),
        "ISIC-2017_Test_v2_Data": ("ISIC-2017_Test_v2_Part1_GroundTruth", 2),
    }
    assert _listing(root) == sorted([*expected, *(truth for truth, _ in expected.values())])
    reference = make_synthetic(7, size=SMALL, seed=5)
    all_ids = []
    for data_dir, (truth_dir, count) in expected.items():
        names = _listing(root / data_dir)
        superpixels = [n for n in names if n.endswith("_superpixels.png")]
        jpgs = [n for n in names if n.endswith(".jpg")]
        assert len(superpixels) == 1 and len(jpgs) == count and len(names) == count + 1
        ids = [n[:-4] for n in jpgs]
        assert all(i.startswith("ISIC_") and len(i) == 12 and i[5:].isdigit() for i in ids)
        assert _listing(root / truth_dir) == sorted(f"{i}_segmentation.png" for i in ids)
        for i in ids:
            with Image.open(root / data_dir / f"{i}.jpg") as image:
                assert image.format == "JPEG" and image.mode == "RGB" and image.size == (48, 32)
            with Image.open(root / truth_dir / f"{i}_segmentation.png") as mask:
                assert mask.format == "PNG" and mask.mode == "L" and mask.size == (48, 32)
                values = np.asarray(mask)
            assert set(np.unique(values)) == {0, 255}
            np.testing.assert_array_equal(values, reference.masks[int(i[5:])] * 255)
        all_ids += ids
    assert len(set(all_ids)) == 7


def test_write_isic_layout_2016_has_no_validation_split(tmp_path):
    root = write_isic_layout(tmp_path, year="2016", n_train=3, n_val=5, n_test=2, size=SMALL)
    assert _listing(root) == sorted(["ISBI2016_ISIC_Part1_Training_Data", "ISBI2016_ISIC_Part1_Training_GroundTruth",
                                     "ISBI2016_ISIC_Part1_Test_Data", "ISBI2016_ISIC_Part1_Test_GroundTruth"])
    train = _listing(root / "ISBI2016_ISIC_Part1_Training_Data")
    test = _listing(root / "ISBI2016_ISIC_Part1_Test_Data")
    assert len(train) == 3 and len(test) == 2 and not set(train) & set(test)
    assert all(n.startswith("ISIC_") and n.endswith(".jpg") for n in train + test)
    masks = _listing(root / "ISBI2016_ISIC_Part1_Test_GroundTruth")
    assert masks == sorted(n[:-4] + "_Segmentation.png" for n in test)
    with Image.open(root / "ISBI2016_ISIC_Part1_Test_GroundTruth" / masks[0]) as mask:
        assert set(np.unique(np.asarray(mask))) == {0, 255}


def test_written_layout_is_read_back_by_the_isic_reader(tmp_path):
    from skinseg.data.isic import detect_year, find_pairs, read_pair

    for year in ("2016", "2017"):
        root = write_isic_layout(tmp_path / year, year=year, n_train=2, n_val=1, n_test=1, size=SMALL)
        assert detect_year(root) == year
        pairs = find_pairs(root, year, "train")
        assert [i for i, _, _ in pairs] == ["ISIC_0000000", "ISIC_0000001"]
        image, mask = read_pair(pairs[0][1], pairs[0][2], SMALL)
        assert image.shape == (*SMALL, 3) and set(np.unique(mask)) == {0, 1}


@pytest.mark.parametrize("kwargs", [dict(year="2018"), dict(n_train=0), dict(n_test=-1), dict(layout="zipped"),
                                    dict(n_val=0), dict(size=(30, 48))])
def test_write_isic_layout_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ConfigError):
        write_isic_layout(tmp_path, **kwargs)


def test_official_layout_has_original_sizes_superpixels_and_metadata(tmp_path):
    from skinseg.data import load_split
    from skinseg.data.isic import find_pairs
    from skinseg.lab.synthetic import ORIGINAL_SIZES

    root = write_isic_layout(tmp_path / "official", "2017", n_train=6, n_val=1, n_test=2, seed=2, layout="official")
    folder = root / "ISIC-2017_Training_Data"
    names = _listing(folder)
    ids = [n[:-4] for n in names if n.endswith(".jpg")]
    assert len(ids) == 6 and ids[0] != "ISIC_0000000"
    assert all(i.startswith("ISIC_") and len(i) == 12 and i[5:].isdigit() for i in ids)
    assert sorted(n for n in names if n.endswith("_superpixels.png")) == sorted(f"{i}_superpixels.png" for i in ids)
    metadata = (folder / "ISIC-2017_Training_Data_metadata.csv").read_text().splitlines()
    assert metadata[0] == "image_id,age_approximate,sex" and [r.split(",")[0] for r in metadata[1:]] == ids
    sizes = []
    for i in ids:
        with Image.open(folder / f"{i}.jpg") as image, \
                Image.open(root / "ISIC-2017_Training_Part1_GroundTruth" / f"{i}_segmentation.png") as mask, \
                Image.open(folder / f"{i}_superpixels.png") as superpixels:
            assert image.size == mask.size == superpixels.size
            assert set(np.unique(np.asarray(mask))) == {0, 255}
            sizes.append(image.size[::-1])
    assert sizes == [ORIGINAL_SIZES[k % len(ORIGINAL_SIZES)] for k in range(6)]
    assert all(h % 16 or w % 16 for h, w in sizes)  # none is the model's input size
    # the readers skip the superpixels and the CSV, and resize every image to the model's input
    assert [p[0] for p in find_pairs(root, "2017", "train")] == ids
    test = load_split(root, "test", (192, 256), cache=False)
    assert test.images.shape == (2, 192, 256, 3) and set(np.unique(test.masks)) == {0, 1}


def test_official_layout_from_the_command_line(tmp_path):
    from conftest import run_cli

    result = run_cli(["synthetic", "--layout", "official", "--out", tmp_path / "d", "--n-train", "1", "--n-val", "1",
                      "--n-test", "1"], tmp_path, tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    assert "SYNTHETIC" in result.stdout and "official" in result.stdout
    assert len(list((tmp_path / "d" / "ISIC-2017_Test_v2_Data").glob("*_superpixels.png"))) == 1
    bad = run_cli(["synthetic", "--layout", "zipped", "--out", tmp_path / "e"], tmp_path, tmp_path / "cache")
    assert bad.returncode == 2 and "--layout" in bad.stderr and "Traceback" not in bad.stderr
