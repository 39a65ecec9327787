"""Data: the real ISIC 2017 copy, SYNTHETIC ISIC 2016/2017 layouts, the fixed 2016 split,
the cache, augmentation, and every kind of bad input the readers must reject clearly."""
import io
import os
import re
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from skinseg.config import NO_AUGMENT, AugmentConfig
from skinseg.data import SegmentationData, detect_year, find_pairs, load_dataset, load_split, read_pair
from skinseg.data.augment import augment_batch
from skinseg.data.isic import LAYOUTS
from skinseg.data.loading import split_pairs
from skinseg.data.splits import isic2016_validation_ids
from skinseg.errors import ConfigError, DataError
from skinseg.lab.synthetic import make_synthetic
from skinseg.paths import default_data_dir

from conftest import write_striped_mask

TRAIN_IMAGES = "ISIC-2017_Training_Data"
TRAIN_MASKS = "ISIC-2017_Training_Part1_GroundTruth"

# ----------------------------------------------------------------------------- the real ISIC 2017 copy


def test_real_isic2017_copy_loads_completely():
    root = default_data_dir()
    if not (root / TRAIN_IMAGES).is_dir():
        pytest.skip(f"the shared ISIC 2017 copy is not at {root} (set SKINSEG_DATA to its folder)")
    assert detect_year(root) == "2017"
    data = load_dataset(root, (192, 256), cache=False)
    assert {split: len(d) for split, d in data.items()} == {"train": 2000, "val": 150, "test": 600}
    id_patterns = {"train": r"ISIC_\d{7}", "val": r"val_\d{4}", "test": r"test_\d{4}"}
    for split, d in data.items():
        assert d.images.shape == (len(d), 192, 256, 3) and d.images.dtype == np.uint8
        assert d.masks.shape == (len(d), 192, 256) and d.masks.dtype == np.uint8
        assert set(np.unique(d.masks)) == {0, 1}
        assert d.source == f"ISIC 2017 {split}"
        assert all(re.fullmatch(id_patterns[split], i) for i in d.ids), split
        assert d.ids == sorted(d.ids) and len(set(d.ids)) == len(d)
        fraction = d.lesion_fraction
        assert 0.05 < fraction.mean() < 0.6  # lesions are neither specks nor the whole image
        assert d.images.mean() > 50  # images decoded, not blank
    assert data["train"].ids[0] == "ISIC_0000000"
    assert data["val"].ids[:2] == ["val_0001", "val_0002"] and data["val"].ids[-1] == "val_0150"
    assert data["test"].ids[0] == "test_0001" and data["test"].ids[-1] == "test_0600"
    # The copy's README lists byte-identical images across splits: they must decode identically.
    train, val, test = data["train"], data["val"], data["test"]
    for (a, i), (b, j) in [((train, "ISIC_0012175"), (test, "test_0465")),
                           ((train, "ISIC_0012970"), (val, "val_0073")),
                           ((val, "val_0084"), (test, "test_0487"))]:
        np.testing.assert_array_equal(a.images[a.ids.index(i)], b.images[b.ids.index(j)])

# ----------------------------------------------------------------------------- SYNTHETIC layouts


def test_synthetic_2017_layout_round_trip(layout_2017):
    assert detect_year(layout_2017) == "2017"
    data = load_dataset(layout_2017, (64, 64))
    reference = make_synthetic(16, (64, 64), seed=0)
    start = 0
    for split, n in (("train", 8), ("val", 4), ("test", 4)):
        d = data[split]
        assert d.ids == [f"ISIC_{k:07d}" for k in range(start, start + n)]  # no *_superpixels entry
        assert d.source == f"ISIC 2017 {split}"
        np.testing.assert_array_equal(d.masks, reference.masks[start:start + n])  # PNG: lossless
        jpeg_error = np.abs(d.images.astype(int) - reference.images[start:start + n]).mean()
        other_error = np.abs(d.images.astype(int) - np.roll(reference.images[start:start + n], 1, axis=0)).mean()
        assert jpeg_error < 6 and jpeg_error < other_error / 3  # JPEG quality 95 of the same images
        start += n
    # the superpixel files exist and are skipped
    assert any(p.name.endswith("_superpixels.png") for p in (layout_2017 / TRAIN_IMAGES).iterdir())


def test_resize_and_limit(layout_2017):
    d = load_split(layout_2017, "train", (32, 48), limit=3)
    assert d.images.shape == (3, 32, 48, 3) and d.masks.shape == (3, 32, 48)
    assert set(np.unique(d.masks)) == {0, 1}
    assert d.ids == ["ISIC_0000000", "ISIC_0000001", "ISIC_0000002"]
    assert d.source == "ISIC 2017 train (first 3)"
    full = load_split(layout_2017, "train", (64, 64))
    # the resized mask still covers about the same fraction of the image
    np.testing.assert_allclose(d.lesion_fraction, full.lesion_fraction[:3], atol=0.03)


def test_ids_keep_those_images_of_the_split_in_its_order(layout_2017):
    full = load_split(layout_2017, "train", (64, 64))
    d = load_split(layout_2017, "train", (64, 64), ids=["ISIC_0000005", "ISIC_0000001", "ISIC_0000006"], limit=2)
    assert d.ids == ["ISIC_0000001", "ISIC_0000005"] and d.source == "ISIC 2017 train (first 2)"
    np.testing.assert_array_equal(d.images, full.images[[1, 5]])
    with pytest.raises(DataError, match="1 of the ids are not in the train split of .*, e.g. 'ISIC_0000099'"):
        load_split(layout_2017, "train", (64, 64), ids=["ISIC_0000001", "ISIC_0000099"])


def test_isic2016_validation_split_is_pinned():
    ids = [f"ISIC_{k:07d}" for k in range(20)]
    assert isic2016_validation_ids(ids) == {"ISIC_0000000", "ISIC_0000013", "ISIC_0000015", "ISIC_0000018"}
    # it depends on the ids alone, not on their order
    assert isic2016_validation_ids(ids[::-1]) == isic2016_validation_ids(ids)
    many = [f"ISIC_{k:07d}" for k in range(900)]
    assert len(isic2016_validation_ids(many)) == 180


def test_synthetic_2016_layout_train_val_test(layout_2016):
    assert detect_year(layout_2016) == "2016"
    data = load_dataset(layout_2016, (64, 64))
    assert {s: len(d) for s, d in data.items()} == {"train": 16, "val": 4, "test": 4}
    assert data["val"].ids == ["ISIC_0000000", "ISIC_0000013", "ISIC_0000015", "ISIC_0000018"]
    all_train = [f"ISIC_{k:07d}" for k in range(20)]
    assert data["train"].ids == [i for i in all_train if i not in data["val"].ids]
    assert data["test"].ids == [f"ISIC_{k:07d}" for k in range(20, 24)]
    assert data["val"].source == "ISIC 2016 val"
    reference = make_synthetic(24, (64, 64), seed=1)
    np.testing.assert_array_equal(data["val"].masks, reference.masks[[0, 13, 15, 18]])
    assert [i for i, _, _ in split_pairs(layout_2016, "val", "2016")] == data["val"].ids


def test_cache_is_written_reused_and_invalidated(layout_copy, tmp_path):
    cache = tmp_path / "cache"
    first = load_split(layout_copy, "val", (64, 64), cache_dir=cache)
    files = list(cache.glob("isic2017_val_64x64_*.npz"))
    assert len(files) == 1
    second = load_split(layout_copy, "val", (64, 64), cache_dir=cache)
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.masks, second.masks)
    assert second.ids == first.ids
    # a changed mask file gives a new cache key, so the change is seen
    mask_path = layout_copy / "ISIC-2017_Validation_Part1_GroundTruth" / "ISIC_0000008_segmentation.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(mask_path)
    os.utime(mask_path, ns=(1, 1))
    third = load_split(layout_copy, "val", (64, 64), cache_dir=cache)
    assert third.masks[0].sum() == 0 and first.masks[0].sum() > 0
    assert len(list(cache.glob("isic2017_val_64x64_*.npz"))) == 2
    assert not load_split(layout_copy, "val", (64, 64), cache=False).masks[0].any()


def test_segmentation_data_subset_and_checks():
    d = make_synthetic(5, (32, 32), seed=2)
    s = d.subset([4, 0])
    assert s.ids == ["synth_0004", "synth_0000"] and s.source == d.source
    np.testing.assert_array_equal(s.images[0], d.images[4])
    assert d.subset(slice(1, 3)).ids == ["synth_0001", "synth_0002"]
    np.testing.assert_allclose(d.lesion_fraction, d.masks.reshape(5, -1).mean(1))
    with pytest.raises(ValueError, match="masks"):
        SegmentationData(d.images, d.masks[:, :16])
    with pytest.raises(ValueError, match="images"):
        SegmentationData(d.images[..., 0], d.masks)

# ----------------------------------------------------------------------------- bad input


def test_missing_data_folder_names_the_layout_and_the_download_command(tmp_path):
    missing = tmp_path / "nowhere"
    for call in (lambda: load_dataset(missing), lambda: load_split(missing, "train"), lambda: detect_year(missing)):
        with pytest.raises(DataError) as info:
            call()
        message = str(info.value)
        assert str(missing) in message
        assert "ISIC-2017_Training_Data" in message and "ISBI2016_ISIC_Part1_Training_Data" in message
        assert f"python -m skinseg download --year 2017 --data {missing}" in message
    # a folder that exists but holds no ISIC layout gets the same explanation
    (tmp_path / "other").mkdir()
    with pytest.raises(DataError, match="python -m skinseg download"):
        load_dataset(tmp_path / "other")


def test_missing_mask_folder_is_named(layout_copy):
    for p in (layout_copy / "ISIC-2017_Test_v2_Part1_GroundTruth").iterdir():
        p.unlink()
    (layout_copy / "ISIC-2017_Test_v2_Part1_GroundTruth").rmdir()
    with pytest.raises(DataError, match="missing folder .*ISIC-2017_Test_v2_Part1_GroundTruth"):
        load_split(layout_copy, "test", (64, 64))


def test_image_without_mask(layout_copy):
    (layout_copy / TRAIN_MASKS / "ISIC_0000003_segmentation.png").unlink()
    with pytest.raises(DataError) as info:
        load_split(layout_copy, "train", (64, 64))
    message = str(info.value)
    assert "image(s) without a mask" in message
    assert str(layout_copy / TRAIN_IMAGES / "ISIC_0000003.jpg") in message
    assert str(layout_copy / TRAIN_MASKS / "ISIC_0000003_segmentation.png") in message  # what was expected


def test_mask_without_image(layout_copy):
    (layout_copy / TRAIN_IMAGES / "ISIC_0000005.jpg").unlink()
    with pytest.raises(DataError) as info:
        find_pairs(layout_copy, "2017", "train")
    message = str(info.value)
    assert "mask(s) without an image" in message
    assert str(layout_copy / TRAIN_MASKS / "ISIC_0000005_segmentation.png") in message
    assert str(layout_copy / TRAIN_IMAGES / "ISIC_0000005.jpg") in message


def test_mask_of_another_size(layout_copy):
    mask = layout_copy / TRAIN_MASKS / "ISIC_0000002_segmentation.png"
    Image.fromarray(np.zeros((32, 64), np.uint8)).save(mask)
    with pytest.raises(DataError) as info:
        load_split(layout_copy, "train", (64, 64))
    message = str(info.value)
    assert str(mask) in message and "ISIC_0000002.jpg" in message
    assert "64x32" in message and "64x64" in message and "same size" in message


def test_mask_with_jpeg_noise_is_refused_naming_its_values(layout_copy):
    mask_path = layout_copy / TRAIN_MASKS / "ISIC_0000001_segmentation.png"
    clean = np.asarray(Image.open(mask_path))
    buf = io.BytesIO()
    Image.fromarray(clean).save(buf, format="JPEG", quality=75)  # as masks stored as JPEG come out
    noisy = np.asarray(Image.open(buf))
    assert len(np.unique(noisy)) > 2
    Image.fromarray(noisy).save(mask_path)
    with pytest.raises(DataError, match=r"ISIC_0000001_segmentation\.png is not a binary mask: it has the values \{0, "):
        read_pair(layout_copy / TRAIN_IMAGES / "ISIC_0000001.jpg", mask_path, (64, 64))
    # a clean 0/255 mask gives no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_pair(layout_copy / TRAIN_IMAGES / "ISIC_0000000.jpg",
                  layout_copy / TRAIN_MASKS / "ISIC_0000000_segmentation.png", (64, 64))


@pytest.mark.parametrize("stored", ["0/1 8-bit", "0/1 16-bit", "0/255 16-bit", "0/1 palette", "bilevel"])
def test_binary_masks_in_other_encodings_give_the_same_mask(layout_copy, stored):
    mask_path = layout_copy / TRAIN_MASKS / "ISIC_0000002_segmentation.png"
    image_path = layout_copy / TRAIN_IMAGES / "ISIC_0000002.jpg"
    _, reference = read_pair(image_path, mask_path, (64, 64))
    assert 0 < reference.mean() < 1
    encoded = {"0/1 8-bit": lambda m: Image.fromarray(m),
               "0/1 16-bit": lambda m: Image.fromarray(m.astype(np.uint16)),
               "0/255 16-bit": lambda m: Image.fromarray(m.astype(np.uint16) * 255),
               "0/1 palette": lambda m: Image.fromarray(m).convert("P"),
               "bilevel": lambda m: Image.fromarray(m * np.uint8(255)).convert("1")}[stored](reference)
    encoded.save(mask_path)
    if stored == "0/1 16-bit":
        assert Image.open(mask_path).mode.startswith("I")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # binary masks are read without a warning
        _, mask = read_pair(image_path, mask_path, (64, 64))
        data = load_split(layout_copy, "train", (64, 64), cache=False)
    np.testing.assert_array_equal(mask, reference)
    np.testing.assert_array_equal(data.masks[2], reference)


@pytest.mark.parametrize("values, found", [
    ((0, 1, 2), "{0, 1, 2}"),          # a label map with classes
    ((0, 127, 128, 200), "{0, 127, 128, 200}"),  # grey levels, not a mask with grey edges
    ((0, 7), "{0, 7}"),                # no value would become lesion
    ((0, 1000), "{0, 1000}"),          # 16-bit, neither 0/1 nor 0/255
])
def test_masks_that_are_not_binary_are_refused_naming_the_values(layout_copy, values, found):
    mask_path = layout_copy / TRAIN_MASKS / "ISIC_0000001_segmentation.png"
    write_striped_mask(mask_path, values)
    with pytest.raises(DataError) as info:
        load_split(layout_copy, "train", (64, 64), cache=False)
    message = str(info.value)
    assert f"mask {mask_path} is not a binary mask" in message and found in message
    assert "expected 0 and 255 (or 0 and 1)" in message


@pytest.mark.parametrize("other", [".png", ".jpeg"])
def test_an_image_stem_present_twice_is_refused(layout_copy, other):
    image = layout_copy / TRAIN_IMAGES / "ISIC_0000003.jpg"
    Image.open(image).save(image.with_suffix(other))
    with pytest.raises(DataError) as info:
        find_pairs(layout_copy, "2017", "train")
    message = str(info.value)
    assert "image ISIC_0000003 is there twice" in message and "ISIC_0000003.jpg" in message
    assert f"ISIC_0000003{other}" in message and str(layout_copy / TRAIN_IMAGES) in message


@pytest.mark.parametrize("which, damage", [
    ("image", "truncate"), ("image", "garbage"), ("mask", "truncate"), ("mask", "garbage"),
])
def test_corrupt_or_truncated_files(layout_copy, which, damage):
    path = (layout_copy / TRAIN_IMAGES / "ISIC_0000004.jpg" if which == "image"
            else layout_copy / TRAIN_MASKS / "ISIC_0000004_segmentation.png")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"this is not an image" * 10)
    with pytest.raises(DataError) as info:
        load_split(layout_copy, "train", (64, 64), cache=False)
    message = str(info.value)
    assert f"cannot read {path}" in message and "corrupt or truncated" in message


def test_empty_folder(layout_copy):
    for p in (layout_copy / TRAIN_IMAGES).iterdir():
        p.unlink()
    with pytest.raises(DataError, match=f"empty folder {re.escape(str(layout_copy / TRAIN_IMAGES))}"):
        load_split(layout_copy, "train", (64, 64))
    for p in (layout_copy / TRAIN_MASKS).iterdir():
        p.unlink()
    with pytest.raises(DataError, match="empty folder"):
        load_split(layout_copy, "train", (64, 64))


def test_unknown_split_is_rejected(layout_2017, layout_2016):
    with pytest.raises(DataError, match="split must be one of"):
        load_split(layout_2017, "validation")
    with pytest.raises(DataError, match="no 'val' split"):
        find_pairs(layout_2016, "2016", "val")
    assert set(LAYOUTS["2016"]) == {"train", "test"}

# ----------------------------------------------------------------------------- augmentation


def _mask_batch(n=6, size=32, seed=0):
    masks = torch.from_numpy(make_synthetic(n, (size, size), seed=seed).masks).float()[:, None]
    return masks


def test_geometry_moves_image_and_mask_together():
    masks = _mask_batch()
    images = masks.expand(-1, 3, -1, -1).clone()  # every colour channel encodes the mask
    geometry = AugmentConfig(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)
    out_images, out_masks = augment_batch(images, masks, geometry, torch.Generator().manual_seed(3))
    assert out_images.shape == images.shape and out_masks.shape == masks.shape
    assert not torch.equal(out_masks, masks)  # something happened
    for c in range(3):
        torch.testing.assert_close((out_images[:, c:c + 1] > 0.5).float(), out_masks)


def test_flips_only_give_exact_flips():
    torch.manual_seed(0)
    images = torch.rand(16, 3, 16, 24)
    masks = (torch.rand(16, 1, 16, 24) > 0.5).float()
    config = AugmentConfig(flips=True, rot90=False, rotate=0.0, scale=0.0, translate=0.0,
                           brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)
    out_images, out_masks = augment_batch(images, masks, config, torch.Generator().manual_seed(1))
    seen = set()
    for i in range(16):
        for dims in [(), (-1,), (-2,), (-2, -1)]:
            if torch.allclose(out_images[i], images[i].flip(dims) if dims else images[i], atol=1e-5):
                assert torch.equal(out_masks[i], masks[i].flip(dims) if dims else masks[i])
                seen.add(dims)
                break
        else:
            pytest.fail(f"sample {i} is not a flip of its input")
    assert len(seen) >= 3  # several of the four flips occur in 16 draws


def test_full_augmentation_keeps_masks_binary_and_images_in_range():
    masks = _mask_batch(8, 32, seed=1)
    images = torch.rand(8, 3, 32, 32)
    out_images, out_masks = augment_batch(images, masks, AugmentConfig(), torch.Generator().manual_seed(0))
    assert set(out_masks.unique().tolist()) <= {0.0, 1.0}
    assert out_images.min() >= 0 and out_images.max() <= 1
    assert out_masks.sum() > 0


def test_same_generator_seed_gives_same_augmentation():
    masks = _mask_batch(4, 32, seed=2)
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    a = augment_batch(images, masks, AugmentConfig(), torch.Generator().manual_seed(7))
    b = augment_batch(images, masks, AugmentConfig(), torch.Generator().manual_seed(7))
    c = augment_batch(images, masks, AugmentConfig(), torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


GEOMETRY_ONLY = dict(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)


def _disk(n, height, width, radius):
    yy, xx = np.mgrid[:height, :width]
    disk = ((yy - (height - 1) / 2) ** 2 + (xx - (width - 1) / 2) ** 2 <= radius ** 2).astype(np.float32)
    return torch.from_numpy(disk).expand(n, 1, height, width).clone()


def _axis_ratio(mask: torch.Tensor) -> float:
    """Longest over shortest axis of the ellipse with the mask's second moments (1 for a disk)."""
    ys, xs = np.nonzero(mask.numpy())
    eig = np.linalg.eigvalsh(np.cov(np.stack([ys, xs]).astype(float)))
    return float(np.sqrt(eig[-1] / eig[0]))


def test_rotations_of_a_non_square_image_keep_a_disk_a_disk():
    masks = _disk(16, 96, 128, 30)
    images = masks.expand(-1, 3, -1, -1).clone()
    rotate = dict(flips=False, rot90=False, rotate=15.0, scale=0.0, translate=0.0, **GEOMETRY_ONLY)
    _, rigid = augment_batch(images, masks, AugmentConfig(**rotate), torch.Generator().manual_seed(0))
    _, stretched = augment_batch(images, masks, AugmentConfig(**rotate, geometry="stretch"),
                                 torch.Generator().manual_seed(0))
    assert max(_axis_ratio(m[0]) for m in rigid) < 1.03  # a disk stays a disk
    assert abs(rigid.sum((1, 2, 3)) / masks.sum((1, 2, 3)) - 1).max() < 0.02  # of the same area
    assert max(_axis_ratio(m[0]) for m in stretched) > 1.08  # in normalised coordinates it is sheared
    assert set(rigid.unique().tolist()) <= {0.0, 1.0}


def test_quarter_turns_fit_the_frame():
    config = AugmentConfig(flips=False, rot90=True, rotate=0.0, scale=0.0, translate=0.0, **GEOMETRY_ONLY)
    images = torch.rand(16, 3, 12, 20, generator=torch.Generator().manual_seed(0))
    masks = (images[:, :1] > 0.5).float()
    out, out_masks = augment_batch(images, masks, config, torch.Generator().manual_seed(1))
    turns = set()
    for i in range(16):  # a non-square image turns by 0 or 180 degrees only, exactly
        k = next(k for k in (0, 2) if torch.allclose(out[i], images[i].rot90(k, (-2, -1)), atol=1e-5))
        assert torch.equal(out_masks[i], masks[i].rot90(k, (-2, -1)))
        turns.add(k)
    assert turns == {0, 2}
    square = torch.rand(16, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    out, _ = augment_batch(square, (square[:, :1] > 0.5).float(), config, torch.Generator().manual_seed(1))
    turns = {next(k for k in range(4) if torch.allclose(out[i], square[i].rot90(k, (-2, -1)), atol=1e-5))
             for i in range(16)}
    assert turns == {0, 1, 2, 3}  # a square one by any quarter turn
    with pytest.raises(ConfigError, match="geometry"):
        AugmentConfig(geometry="normalised")


def test_no_augment_changes_nothing():
    masks = _mask_batch(2, 32)
    images = torch.rand(2, 3, 32, 32)
    out_images, out_masks = augment_batch(images, masks, NO_AUGMENT, torch.Generator().manual_seed(0))
    assert torch.equal(out_images, images) and torch.equal(out_masks, masks)


def test_a_large_mask_is_resized_as_one_bilinear_pass_would_within_three_pixels():
    from PIL import Image

    from skinseg.data.isic import resize_mask

    yy, xx = np.mgrid[:2000, :3008]
    mask = ((((xx - 1400) / 900.0) ** 2 + ((yy - 1100) / 640.0) ** 2) < 1).astype(np.uint8)
    mask[300:340, 200:2600] = 1  # a thin bar: the edges where the two resamplings may differ
    one_pass = np.asarray(Image.fromarray(mask * 255).resize((256, 192), Image.Resampling.BILINEAR)) > 127
    assert int((resize_mask(mask, (192, 256)).astype(bool) != one_pass).sum()) <= 3
