"""The generic images/ + masks/ layout: pairing rules, refusals (by name), ``info``, resizing,
and ``evaluate`` on a generic folder giving the same per-image table as on the ISIC layout."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from skinseg.cli import main
from skinseg.config import PROFILES
from skinseg.data import detect_layout, find_folder_pairs, find_pairs, load_split
from skinseg.data.folders import FOLDERS, MASK_SUFFIXES, describe_folder, write_folders
from skinseg.device import seed_everything
from skinseg.errors import DataError
from skinseg.lab.synthetic import make_synthetic
from skinseg.models import AttentionUNet
from skinseg.train import fit

SIZE = (64, 64)
ODD_SIZES = [(37, 50), (97, 129), (64, 64), (200, 150)]


def _image(path: Path, size=(40, 48), value: int = 128) -> None:
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path)


def _mask(path: Path, size=(40, 48), high: int = 255, dtype=np.uint8) -> np.ndarray:
    mask = np.zeros(size, dtype)
    mask[10:30, 12:36] = high
    Image.fromarray(mask).save(path)
    return (mask > 0).astype(np.uint8)


def _folder(root: Path, images: list[str], masks: list[str]) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for name in images:
        _image(root / "images" / name)
    for name in masks:
        _mask(root / "masks" / name)
    return root

# ----------------------------------------------------------------------------- pairing rules


@pytest.mark.parametrize("suffix", MASK_SUFFIXES)
@pytest.mark.parametrize("mask_ext", [".png", ".bmp"])
def test_a_mask_pairs_by_stem_or_stem_plus_suffix(tmp_path, suffix, mask_ext):
    root = _folder(tmp_path / "d", ["a.jpg", "b.png"], [f"a{suffix}{mask_ext}", f"b{suffix}{mask_ext}"])
    pairs = find_folder_pairs(root)
    assert [(i, p.name, m.name) for i, p, m in pairs] == [("a", "a.jpg", f"a{suffix}{mask_ext}"),
                                                         ("b", "b.png", f"b{suffix}{mask_ext}")]
    assert detect_layout(root) == FOLDERS


@pytest.mark.parametrize("high, dtype", [(255, np.uint8), (1, np.uint8), (1, np.uint16)],
                         ids=["0-255", "0-1", "0-1 16-bit"])
def test_binary_mask_encodings_read_the_same(tmp_path, high, dtype):
    root = _folder(tmp_path / "d", ["a.jpg"], [])
    truth = _mask(root / "masks" / "a.png", high=high, dtype=dtype)
    data = load_split(root, "test", (40, 48), cache=False)
    assert data.ids == ["a"] and data.masks.dtype == np.uint8
    np.testing.assert_array_equal(data.masks[0], truth)


def test_other_files_are_ignored(tmp_path):
    root = _folder(tmp_path / "d", ["a.jpg", "a_superpixels.png"], ["a_mask.png"])
    (root / "images" / "README.txt").write_text("notes")
    (root / "images" / ".DS_Store").write_bytes(b"\0")
    (root / "masks" / "labels.csv").write_text("id\n")
    (root / "images" / "nested").mkdir()
    assert [p[0] for p in find_folder_pairs(root)] == ["a"]


def test_split_folders(tmp_path):
    for split in ("train", "val", "test"):
        _folder(tmp_path / "d" / split, [f"{split}1.jpg", f"{split}2.jpg"], [f"{split}1.png", f"{split}2_mask.png"])
    root = tmp_path / "d"
    assert {s: [p[0] for p in find_folder_pairs(root, s)] for s in ("train", "val", "test")} == {
        "train": ["train1", "train2"], "val": ["val1", "val2"], "test": ["test1", "test2"]}
    assert load_split(root, "val", SIZE, cache=False).source == "folder d val"


def test_images_of_any_size_are_resized_to_the_model_input(tmp_path):
    data = make_synthetic(4, SIZE, seed=0)
    root = write_folders(tmp_path / "d", data, sizes=ODD_SIZES)
    assert [Image.open(root / "images" / f"{i}.jpg").size[::-1] for i in data.ids] == ODD_SIZES
    loaded = load_split(root, "test", SIZE, cache=False)
    assert loaded.images.shape == (4, *SIZE, 3) and loaded.masks.shape == (4, *SIZE)
    assert loaded.ids == data.ids and loaded.source == "folder d test"
    # the image stored at the model's size comes back exactly (PNG), resized ones approximately
    overlap = [(a & b).sum() / max((a | b).sum(), 1) for a, b in zip(loaded.masks, data.masks)]
    assert overlap[2] == 1.0 and min(overlap) > 0.8, overlap


def test_info_describes_what_it_found(tmp_path, capsys):
    root = write_folders(tmp_path / "d", make_synthetic(4, SIZE, seed=0), sizes=ODD_SIZES)
    shutil.move(root / "masks" / "synth_0003_mask.png", root / "masks" / "synth_0003.png")
    assert main(["info", "--data", str(root)]) == 0
    out = capsys.readouterr().out
    assert out == describe_folder(root) + "\n"
    assert "images/ + masks/, one evaluation set read as the test split" in out
    assert "test: 4 image/mask pairs; masks named by '_mask' (3), same stem (1)" in out
    assert "50x37 (1), 129x97 (1), 64x64 (1), 150x200 (1)" in out
    assert "resized to the model's input" in out

# ----------------------------------------------------------------------------- refusals


def _refusals(root: Path) -> dict[str, tuple[Path, str, list[str]]]:
    """One broken folder per rule: ``{case: (folder, split, texts the error must contain)}``."""
    cases = {}

    def case(name, images, masks, texts, split="test"):
        cases[name] = (_folder(root / name, images, masks), split, texts)
        return cases[name][0]

    case("image_without_mask", ["a.jpg", "b.jpg"], ["a.png"],
         ["1 image(s) without a mask", "images/b.jpg", "masks/b.png", "b_mask.png"])
    case("mask_without_image", ["a.jpg"], ["a.png", "c_mask.png"], ["mask", "masks/c_mask.png", "has no image"])
    case("two_masks", ["a.jpg"], ["a.png", "a_mask.png"], ["images/a.jpg has two masks", "a.png", "a_mask.png"])
    case("ambiguous_mask", ["a.jpg", "a_mask.jpg"], ["a_mask.png"],
         ["masks/a_mask.png could belong to either of", "a.jpg", "a_mask.jpg"])
    case("image_twice", ["a.jpg", "a.png"], ["a.png"], ["image stem(s) appear with two extensions", "a.jpg and a.png"])
    case("jpeg_mask", ["a.jpg"], ["a.png"], ["masks/a_mask.jpg is a JPEG", "PNG or BMP"])
    _image(root / "jpeg_mask" / "masks" / "a_mask.jpg")
    case("empty_images", [], ["a.png"], ["empty folder", "d/empty_images/images"])
    flat_and_split = case("flat_and_split", ["a.jpg"], ["a.png"], ["has both images/ or masks/ and split folders", "train/"])
    (flat_and_split / "train").mkdir()
    no_masks = root / "no_masks"
    (no_masks / "test" / "images").mkdir(parents=True)
    cases["no_masks"] = (no_masks, "test", [f"missing folder {no_masks / 'test' / 'masks'}"])
    case("no_train_split", ["a.jpg"], ["a.png"], ["has no 'train' split", "a single evaluation set is read as test"],
         split="train")
    grey = case("grey_mask", ["a.jpg"], [], ["masks/a.png is not a binary mask", "values"])
    Image.fromarray(np.tile(np.arange(48, dtype=np.uint8) * 5, (40, 1))).save(grey / "masks" / "a.png")
    size = case("mask_size", ["a.jpg"], [], ["a.png is 24x20", "a.jpg is 48x40", "same size"])
    _mask(size / "masks" / "a.png", size=(20, 24))
    return cases


REFUSALS = ["image_without_mask", "mask_without_image", "two_masks", "ambiguous_mask", "image_twice", "jpeg_mask",
            "empty_images", "flat_and_split", "no_masks", "no_train_split", "grey_mask", "mask_size"]


@pytest.fixture(scope="module")
def refusals(tmp_path_factory):
    return _refusals(tmp_path_factory.mktemp("refusals") / "d")


@pytest.mark.parametrize("case", REFUSALS)
def test_bad_folders_are_refused_by_name(refusals, case):
    root, split, texts = refusals[case]
    with pytest.raises(DataError) as err:
        load_split(root, split, SIZE, cache=False)
    for text in texts:
        assert text in str(err.value), (text, str(err.value))


def test_no_data_names_both_layouts(tmp_path):
    with pytest.raises(DataError, match="no ISIC data found in .*ISIC-2017_Training_Data.*images/ \\+ masks/"):
        detect_layout(tmp_path)

# ----------------------------------------------------------------------------- evaluate


def test_evaluate_on_a_generic_folder_equals_evaluate_on_the_isic_layout(layout_2017, tmp_path, capsys):
    """The same image and mask files, once in the ISIC 2017 layout and once as images/ + masks/
    (masks renamed to <id>_mask.png), give the same per-image CSV."""
    seed_everything(0)
    train = load_split(layout_2017, "train", SIZE)
    fit(AttentionUNet(width=4), train, load_split(layout_2017, "val", SIZE), PROFILES["tiny"].replace(epochs=1),
        tmp_path / "run", progress=False, device="cpu")
    generic = tmp_path / "mine"
    for name in ("images", "masks"):
        (generic / name).mkdir(parents=True)
    for image_id, image, mask in find_pairs(layout_2017, "2017", "test"):
        shutil.copy(image, generic / "images" / image.name)
        shutil.copy(mask, generic / "masks" / f"{image_id}_mask.png")
    tables = []
    for data, out in ((layout_2017, "isic.csv"), (generic, "mine.csv")):
        assert main(["evaluate", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--data", str(data),
                     "--tta", "flip", "--postprocess", "--device", "cpu", "--out", str(tmp_path / out)]) == 0
        tables.append((tmp_path / out).read_text())
    assert tables[0] == tables[1]
    table = pd.read_csv(tmp_path / "mine.csv", index_col="id")
    assert len(table) == 4 and list(table.columns[:2]) == ["iou", "dice"]
    assert "folder mine test" in capsys.readouterr().out
