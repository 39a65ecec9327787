"""Byte-identical images across and within splits: the groups, their table, and a split that
cannot be paired raising instead of dropping out of the check."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skinseg.lab.duplicates import identical_groups, identical_images
from skinseg.data.loading import split_pairs
from skinseg.errors import DataError


def _pair(base: Path, name: str, value: int, mask: bool = True) -> None:
    for folder in ("images", "masks"):
        (base / folder).mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 16, 3), value, np.uint8)).save(base / "images" / f"{name}.png")
    if mask:
        Image.fromarray(np.full((16, 16), 255, np.uint8)).save(base / "masks" / f"{name}.png")


def _generic(root: Path) -> Path:
    """train: a, b, c (a = c); test: x (= a), y. No val/ folder."""
    for name, value in (("a", 10), ("b", 20), ("c", 10)):
        _pair(root / "train", name, value)
    for name, value in (("x", 10), ("y", 30)):
        _pair(root / "test", name, value)
    return root


def test_identical_groups_of_a_generic_folder_with_the_splits_it_has(tmp_path):
    root = _generic(tmp_path / "d")
    assert identical_groups(root) == [[("test", "x"), ("train", "a"), ("train", "c")]]
    table = identical_images(root)
    assert table.to_dict("records") == [{"ids": "test/x = train/a = train/c", "splits": "test, train", "across": True}]


def test_no_copies_gives_empty_groups_and_an_empty_table(tmp_path):
    _pair(tmp_path / "d" / "test", "x", 10)
    _pair(tmp_path / "d" / "test", "y", 20)
    assert identical_groups(tmp_path / "d") == []
    table = identical_images(tmp_path / "d")
    assert table.empty and list(table.columns) == ["ids", "splits", "across"]


def test_groups_and_table_are_sorted(tmp_path):
    root = tmp_path / "d"
    for name, value in (("q", 50), ("p", 50), ("b", 60), ("a", 60)):
        _pair(root / "train", name, value)
    _pair(root / "val", "v", 70)
    _pair(root / "test", "t", 70)
    assert identical_groups(root) == [[("test", "t"), ("val", "v")], [("train", "a"), ("train", "b")],
                                      [("train", "p"), ("train", "q")]]
    assert list(identical_images(root).ids) == ["test/t = val/v", "train/a = train/b", "train/p = train/q"]


def test_a_split_that_cannot_be_paired_raises_instead_of_dropping_out(tmp_path):
    root = _generic(tmp_path / "d")
    _pair(root / "train", "lonely", 40, mask=False)
    with pytest.raises(DataError, match="lonely"):
        identical_groups(root)
    with pytest.raises(DataError, match="lonely"):
        identical_images(root)


def test_identical_groups_of_an_isic_layout(layout_copy):
    train, test = split_pairs(layout_copy, "train", "2017"), split_pairs(layout_copy, "test", "2017")
    assert identical_groups(layout_copy) == []
    shutil.copyfile(train[0][1], test[1][1])  # a test image that is a copy of a training image
    assert identical_groups(layout_copy) == [[("test", test[1][0]), ("train", train[0][0])]]
    assert identical_images(layout_copy).across.tolist() == [True]
    train[2][2].unlink()  # a training image without its mask: the check must not skip the split
    with pytest.raises(DataError, match=train[2][0]):
        identical_groups(layout_copy)
