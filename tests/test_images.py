"""Images and masks are read as a viewer shows them (skinseg.images), or refused by name."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from skinseg import images
from skinseg.data import find_pairs, load_split, read_pair
from skinseg.errors import DataError

TRAIN_IMAGES = "ISIC-2017_Training_Data"
TRAIN_MASKS = "ISIC-2017_Training_Part1_GroundTruth"


def _picture(h=30, w=40) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _orientation(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def test_exif_orientation_is_applied_to_images_and_masks_alike(tmp_path):
    seen = _picture()                                  # what a viewer shows: 40 wide, 30 high
    stored = np.rot90(seen, k=1)                       # stored turned; orientation 6 turns it back
    Image.fromarray(stored).save(tmp_path / "a.png", exif=_orientation(6))
    mask = np.zeros((30, 40), np.uint8)
    mask[:10, :25] = 255                               # lesion at the top left, as seen
    Image.fromarray(np.ascontiguousarray(np.rot90(mask, k=1))).save(tmp_path / "m.png", exif=_orientation(6))
    image, shown = images.read_image(tmp_path / "a.png")
    assert shown == (40, 30) and images.shown_size(tmp_path / "a.png") == (40, 30)
    np.testing.assert_array_equal(np.asarray(image), seen)
    np.testing.assert_array_equal(images.read_mask(tmp_path / "m.png"), mask // 255)
    # an oriented image pairs with a mask drawn over it as seen (stored without orientation)
    Image.fromarray(mask).save(tmp_path / "plain.png")
    picture, outline = read_pair(tmp_path / "a.png", tmp_path / "plain.png", (30, 40))
    np.testing.assert_array_equal(picture, seen)
    np.testing.assert_array_equal(outline, mask // 255)
    # a mask stored at the unturned size no longer fits the photo as seen
    Image.fromarray(np.ascontiguousarray(np.rot90(mask, k=1))).save(tmp_path / "unturned.png")
    with pytest.raises(DataError, match=r"unturned\.png is 30x40 .* is 40x30 \(W x H, as a viewer shows them\)"):
        read_pair(tmp_path / "a.png", tmp_path / "unturned.png", (32, 32))


@pytest.mark.parametrize("mode", ["L", "1", "P", "I;16", "I", "RGBA", "LA", "RGB"])
def test_every_supported_mode_gives_the_rgb_a_viewer_shows(tmp_path, mode):
    grey = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (8, 1))
    rgb = _picture(8, 64)
    wide = grey.astype(np.uint16) * 257                # 16-bit grey: 8-bit value v is v * 257
    stored, expected = {
        "L": (Image.fromarray(grey), np.repeat(grey[..., None], 3, 2)),
        "1": (Image.fromarray(grey >= 128), np.repeat(np.where(grey >= 128, 255, 0).astype(np.uint8)[..., None], 3, 2)),
        "P": (Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=256), None),
        "I;16": (Image.fromarray(wide), np.repeat(grey[..., None], 3, 2)),
        "I": (Image.fromarray(wide.astype(np.int32)), np.repeat(grey[..., None], 3, 2)),
        "RGBA": (Image.fromarray(np.dstack([rgb, np.full((8, 64), 255, np.uint8)])), rgb),
        "LA": (Image.fromarray(np.dstack([grey, np.full((8, 64), 255, np.uint8)])).convert("LA"), np.repeat(grey[..., None], 3, 2)),
        "RGB": (Image.fromarray(rgb), rgb),
    }[mode]
    path = tmp_path / ("a.tif" if mode == "I" else "a.png")
    stored.save(path)
    if expected is None:
        expected = np.asarray(stored.convert("RGB"))
    image, _ = images.read_image(path)
    assert image.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(image), expected)


@pytest.mark.parametrize("mode, message", [
    ("RGBA", "has transparent pixels"), ("CMYK", "mode CMYK"), ("F", "mode F")])
def test_unsupported_modes_are_refused_by_name(tmp_path, mode, message):
    path = tmp_path / ("a.tif" if mode in ("F", "CMYK") else "a.png")
    if mode == "RGBA":
        Image.fromarray(np.zeros((8, 8, 4), np.uint8)).save(path)
    else:
        Image.new(mode, (8, 8)).save(path)
    with pytest.raises(DataError, match=rf"cannot read {path}.*{message}"):
        images.read_image(path)


@pytest.mark.parametrize("values", [(0, 128, 255), (0, 1, 255), (0, 100, 255), (0, 128)])
@pytest.mark.parametrize("lesion_width", [2, 40])
def test_a_mask_with_values_other_than_one_lesion_value_is_refused_whatever_the_lesion_size(tmp_path, values, lesion_width):
    mask = np.zeros((64, 64), np.uint8)
    for k, v in enumerate(values[1:]):                  # each lesion value over part of the lesion
        mask[10:10 + lesion_width, 10 + k * 5: 15 + k * 5 + lesion_width] = v
    Image.fromarray(mask).save(tmp_path / "m.png")
    with pytest.raises(DataError) as info:
        images.read_mask(tmp_path / "m.png")
    assert "m.png is not a binary mask: it has the values {" + ", ".join(map(str, values)) + "}" in str(info.value)


@pytest.mark.parametrize("stored, lesion", [(np.uint8, 1), (np.uint8, 255), (np.uint16, 65535), (np.uint16, 255)])
def test_binary_masks_with_one_lesion_value_are_read(tmp_path, stored, lesion):
    mask = np.zeros((16, 16), stored)
    mask[4:9, 2:7] = lesion
    Image.fromarray(mask).save(tmp_path / "m.png")
    np.testing.assert_array_equal(images.read_mask(tmp_path / "m.png"), (mask > 0).astype(np.uint8))


def test_a_colour_mask_is_refused(tmp_path):
    mask = np.zeros((8, 8, 3), np.uint8)
    mask[2:5, 2:5] = (255, 0, 0)
    Image.fromarray(mask).save(tmp_path / "m.png")
    with pytest.raises(DataError, match=r"m\.png is a colour image"):
        images.read_mask(tmp_path / "m.png")


def test_an_image_past_the_pixel_limit_gets_one_line(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("1", (13000, 13000)).save(path)          # 169 million pixels, past Pillow's warning and ours
    with pytest.raises(DataError, match=rf"cannot read {path}: 13000x13000 is 169,000,000 pixels, more than 150,000,000"):
        images.read_image(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow's own bomb error becomes the same line
    with pytest.raises(DataError, match=rf"cannot read {path}: more than"):
        images.read_image(path)


def test_a_large_image_is_decoded_at_reduced_size_and_pairs_with_its_full_size_mask(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "LARGE_PIXELS", 100 * 80)
    seen = np.zeros((320, 400, 3), np.uint8)
    seen[:, 200:] = 200
    Image.fromarray(seen).save(tmp_path / "a.jpg", quality=95)
    Image.fromarray(seen).save(tmp_path / "a.png")
    for name in ("a.jpg", "a.png"):
        image, shown = images.read_image(tmp_path / name)
        assert shown == (400, 320) and image.size[0] * image.size[1] <= 100 * 80, (name, image.size)
    mask = np.zeros((320, 400), np.uint8)
    mask[:, 200:] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    picture, outline = read_pair(tmp_path / "a.jpg", tmp_path / "m.png", (32, 40))
    assert abs(int(picture[:, :19].mean()) - 0) <= 3 and abs(int(picture[:, 21:].mean()) - 200) <= 3
    np.testing.assert_array_equal(outline[:, 20:], 1)


def test_the_official_layout_matches_mask_extensions_in_any_case_and_skips_hidden_files(layout_copy):
    masks = layout_copy / TRAIN_MASKS
    before = find_pairs(layout_copy, "2017", "train")
    upper = masks / "ISIC_0000001_segmentation.PNG"
    (masks / "ISIC_0000001_segmentation.png").rename(upper)
    (layout_copy / TRAIN_IMAGES / "._ISIC_0000002.jpg").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    (masks / "._ISIC_0000002_segmentation.png").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    (layout_copy / TRAIN_IMAGES / ".DS_Store").write_bytes(b"\x00")
    after = find_pairs(layout_copy, "2017", "train")
    assert [p[0] for p in after] == [p[0] for p in before]
    assert dict((i, m) for i, _, m in after)["ISIC_0000001"] == upper
    assert len(load_split(layout_copy, "train", (64, 64), cache=False)) == len(before)


def test_corrupt_exif_is_read_without_it_and_without_a_warning(tmp_path):
    import io
    import warnings
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (10, 20, 30)).save(buffer, "JPEG", exif=b"Exif\x00\x00II*\x00\xff\xff\xff\x7f")
    (tmp_path / "a.jpg").write_bytes(buffer.getvalue())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image, shown = images.read_image(tmp_path / "a.jpg")
        assert images.shown_size(tmp_path / "a.jpg") == (8, 6)
    assert image.size == shown == (8, 6)
