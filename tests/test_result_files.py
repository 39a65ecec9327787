"""Files that skinseg wrote itself heal or name themselves: a damaged cache is built again, a
damaged results file gives one line naming it."""
from __future__ import annotations

import json

import numpy as np
import pytest

from skinseg.lab.stats import read_tables
from skinseg.data import load_split
from skinseg.errors import DataError
from skinseg.lab.experiment import folder_mismatch, write_summary
from skinseg.lab.result_files import read_arrays, read_json, read_table


def test_a_truncated_cache_file_is_built_again(layout_2017, tmp_path):
    first = load_split(layout_2017, "train", (32, 32), cache_dir=tmp_path)
    (cache_file,) = tmp_path.glob("*.npz")
    whole = cache_file.read_bytes()
    for damaged in (whole[: len(whole) // 2], b"", b"PK\x03\x04 not a zip"):
        cache_file.write_bytes(damaged)
        again = load_split(layout_2017, "train", (32, 32), cache_dir=tmp_path)
        np.testing.assert_array_equal(again.images, first.images)
        np.testing.assert_array_equal(again.masks, first.masks)
        with np.load(cache_file) as z:  # and the cache is whole again
            np.testing.assert_array_equal(z["images"], first.images)


@pytest.mark.parametrize("content, message", [
    (b'{"label": "x", ', "is damaged: not valid JSON"),
    (b"", "is damaged: not valid JSON"),
    (b"\xff\xfe\x00", "is damaged: not valid JSON"),
    (b"[1, 2]", "is damaged: expected a JSON object, got list"),
])
def test_a_damaged_results_json_is_named_in_one_line(tmp_path, content, message):
    folder = tmp_path / "isic2017"
    (folder / "runs").mkdir(parents=True)
    (folder / "runs" / "unet_seed0.json").write_text(json.dumps({"run": "unet_seed0", "seed": 0, "model": "unet"}))
    (folder / "config.json").write_bytes(content)
    for call in (lambda: folder_mismatch(folder, {}), lambda: write_summary(folder), lambda: read_json(folder / "config.json")):
        with pytest.raises(DataError) as info:
            call()
        assert f"results file {folder / 'config.json'} {message}" in str(info.value) and "\n" not in str(info.value)


def test_a_damaged_run_json_or_per_image_table_is_named(tmp_path):
    folder = tmp_path / "isic2017"
    (folder / "runs").mkdir(parents=True)
    (folder / "per_image").mkdir()
    (folder / "config.json").write_text(json.dumps({"environment": {"device": "cpu"}}))
    (folder / "runs" / "unet_seed0.json").write_text('{"run": "unet_s')
    with pytest.raises(DataError, match=r"results file .*runs/unet_seed0\.json is damaged"):
        write_summary(folder)
    table = folder / "per_image" / "unet_seed0.csv"
    table.write_bytes(b'id,iou\n"ISIC_1,0.5\n')
    with pytest.raises(DataError, match=r"results file .*per_image/unet_seed0\.csv is damaged: not a readable CSV"):
        read_table(table)
    table.write_bytes(b"")
    with pytest.raises(DataError, match=r"per_image/unet_seed0\.csv is damaged"):
        read_tables(folder, [0], models=("unet",))
    npz = folder / "predictions.npz"
    npz.write_bytes(b"PK\x03\x04 cut")
    with pytest.raises(DataError, match=r"results file .*predictions\.npz is damaged"):
        read_arrays(npz, ("masks",))


def test_a_damaged_display_file_is_named(tmp_path):
    from skinseg.lab.display import load_display
    path = tmp_path / "display.npz"
    np.savez(path, ids=np.array(["a"]), images=np.zeros((1, 4, 4, 3), np.uint8), masks=np.zeros((1, 4, 1), np.uint8),
             shape=np.array([1, 4, 4]))
    assert load_display(path).ids == ["a"]
    path.write_bytes(path.read_bytes()[:90])
    with pytest.raises(DataError, match=r"results file .*display\.npz is damaged"):
        load_display(path)
