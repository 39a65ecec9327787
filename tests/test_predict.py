"""``predict``: masks at each image's original size, overlays, ψ pictures, the same code as
``evaluate``, and refusals of bad input."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from skinseg.checkpoint import load_model
from skinseg.cli import main
from skinseg.config import PROFILES
from skinseg.data import load_split
from skinseg.data.folders import write_folders
from skinseg.device import seed_everything
from skinseg.errors import ConfigError, DataError
from skinseg.evaluate import binarize, predict_probabilities
from skinseg.lab.synthetic import make_synthetic
from skinseg.models import AttentionUNet, UNet
from skinseg.predict import checkpoint_image_size, image_files, predict, predict_images
from skinseg.train import fit

SIZE = (64, 64)
ODD_SIZES = [(37, 50), (97, 129), (64, 64), (200, 150), (63, 17)]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Tiny trained U-Net and Attention U-Net checkpoints (64x64 input) on SYNTHETIC images."""
    root = tmp_path_factory.mktemp("predict_runs")
    data = make_synthetic(12, SIZE, seed=4)
    paths = {}
    for name, cls in (("unet", UNet), ("attention_unet", AttentionUNet)):
        seed_everything(0)
        fit(cls(width=4), data.subset(slice(0, 8)), data.subset(slice(8, 12)), PROFILES["tiny"].replace(epochs=1),
            root / name, progress=False, device="cpu")
        paths[name] = root / name / "best.pt"
    return paths


@pytest.fixture(scope="module")
def odd_folder(tmp_path_factory):
    """SYNTHETIC images of odd sizes in the generic layout (one portrait, one narrower than 16)."""
    return write_folders(tmp_path_factory.mktemp("odd") / "mine", make_synthetic(len(ODD_SIZES), SIZE, seed=9),
                         sizes=ODD_SIZES)


def test_checkpoint_knows_its_input_size(checkpoints):
    assert checkpoint_image_size(checkpoints["unet"]) == SIZE


def test_masks_come_out_at_the_original_size(checkpoints, odd_folder, tmp_path, capsys):
    out = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(checkpoints["attention_unet"]), str(odd_folder / "images"),
                 "--out", str(out), "--psi", "--tta", "flip", "--postprocess", "--quiet", "--device", "cpu"]) == 0
    assert f"wrote 5 masks, 5 overlays, 5 ψ pictures and predictions.csv to {out}" in capsys.readouterr().out
    table = pd.read_csv(out / "predictions.csv", index_col="id")
    assert list(table.index) == [f"synth_{i:04d}" for i in range(5)]
    for (h, w), (image_id, row) in zip(ODD_SIZES, table.iterrows()):
        assert (row.height, row.width) == (h, w)
        mask = Image.open(out / row["mask"])
        assert mask.mode == "L" and mask.size == (w, h)
        values = np.asarray(mask)
        assert set(np.unique(values)) <= {0, 255}
        assert row.predicted_fraction == pytest.approx((values == 255).mean(), abs=1e-6)
        overlay = Image.open(out / row["overlay"])
        assert overlay.mode == "RGB" and overlay.size == (w, h)
        psi = Image.open(out / row["psi"])
        assert psi.format == "PNG" and psi.size[0] > 3 * psi.size[1]  # a row of five panels
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["predictions.csv"] + [f"synth_{i:04d}_{kind}.png" for i in range(5) for kind in ("mask", "overlay", "psi")])


@pytest.mark.parametrize("tta, postprocess", [("none", False), ("d4", True)])
def test_predict_uses_the_code_of_evaluate(checkpoints, tmp_path, tta, postprocess):
    """At the model's input size (no resizing) the mask is evaluate's: same TTA, threshold, post-processing."""
    data = make_synthetic(3, SIZE, seed=11)
    root = write_folders(tmp_path / "d", data, image_format="png")
    table = predict(checkpoints["unet"], [root / "images"], tmp_path / "pred", tta=tta, postprocess=postprocess,
                    device="cpu", progress=False)
    loaded = load_split(root, "test", SIZE, cache=False)
    model = load_model(checkpoints["unet"])
    expected = binarize(predict_probabilities(model, loaded.images, tta=tta, device="cpu"), postprocess)
    for image_id, mask in zip(loaded.ids, expected):
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "pred" / table.loc[image_id, "mask"])) // 255,
                                      mask)


def test_psi_pictures_need_an_attention_unet(checkpoints, odd_folder, tmp_path):
    with pytest.raises(ConfigError, match="psi maps need an Attention U-Net, but .*unet/best.pt holds a U-Net"):
        predict(checkpoints["unet"], [odd_folder / "images"], tmp_path, psi=True, progress=False)
    with pytest.raises(ConfigError, match="psi maps need an Attention U-Net, but the model is a U-Net"):
        predict_images(load_model(checkpoints["unet"]), [], tmp_path, psi=True)


def test_a_psi_picture_that_cannot_be_written_names_its_file(tmp_path, monkeypatch):
    import errno

    from matplotlib.figure import Figure

    from skinseg.predict import psi_picture

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    image, psis = np.zeros((32, 32, 3), np.uint8), [np.full((32 // 2 ** k, 32 // 2 ** k), 0.5) for k in range(4)]
    psi_picture(image, psis, tmp_path / "a_psi.png", "a")
    assert Image.open(tmp_path / "a_psi.png").format == "PNG"
    monkeypatch.setattr(Figure, "savefig", full)
    with pytest.raises(OSError, match=f"cannot write {tmp_path / 'b_psi.png'}: No space left on device"):
        psi_picture(image, psis, tmp_path / "b_psi.png", "b")
    assert [p.name for p in tmp_path.iterdir()] == ["a_psi.png"]  # no temporary file left


def test_bad_inputs_are_refused_by_name(odd_folder, tmp_path):
    with pytest.raises(DataError, match="image or folder .*nowhere.jpg does not exist"):
        image_files([tmp_path / "nowhere.jpg"])
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    with pytest.raises(DataError, match="notes.txt is not an image"):
        image_files([notes])
    with pytest.raises(DataError, match=f"no images .* in folder {odd_folder}; did you mean {odd_folder / 'images'}"):
        image_files([odd_folder])
    twin = tmp_path / "synth_0001.png"
    Image.open(odd_folder / "images" / "synth_0001.jpg").save(twin)
    with pytest.raises(DataError, match="have the same name 'synth_0001'"):
        image_files([odd_folder / "images", twin])


def _digests(folder):
    import hashlib
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_an_output_never_replaces_an_input_or_a_file_predict_did_not_write(checkpoints, odd_folder, tmp_path):
    images = odd_folder / "images"
    before = _digests(images)
    with pytest.raises(ConfigError, match=f"would be written into the input folder {images}"):
        predict(checkpoints["unet"], [images], images, progress=False)
    out = tmp_path / "out"
    out.mkdir()
    (out / "synth_0002_mask.png").write_bytes(b"my own drawing")
    with pytest.raises(ConfigError, match=r"synth_0002_mask\.png exists and was not written by this command.*--overwrite"):
        predict(checkpoints["unet"], [images], out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["synth_0002_mask.png"] and _digests(images) == before
    predict(checkpoints["unet"], [images], out, progress=False, overwrite=True)
    assert (out / "synth_0002_mask.png").read_bytes() != b"my own drawing" and _digests(images) == before


def test_a_second_predict_keeps_the_first_ones_rows_and_never_reads_its_own_outputs(checkpoints, odd_folder, tmp_path):
    images = sorted((odd_folder / "images").iterdir())
    out = tmp_path / "out"
    predict(checkpoints["unet"], images[:2], out, progress=False)
    predict(checkpoints["unet"], images[1:4], out, progress=False)   # one image again, two new ones
    table = pd.read_csv(out / "predictions.csv", index_col="id")
    assert list(table.index) == [p.stem for p in images[:4]]
    with pytest.raises(DataError, match=f"no images .* in folder {out}"):  # the outputs are not images to predict
        image_files([out])
    (out / "extra.jpg").write_bytes((images[0]).read_bytes())
    assert [p.name for p in image_files([out])] == ["extra.jpg"]


def test_predict_holds_its_output_folder(checkpoints, odd_folder, tmp_path):
    import subprocess
    import sys

    from skinseg.errors import FolderInUseError
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from skinseg.lock import output_lock\n"
                               f"with output_lock({str(out)!r}):\n    print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderInUseError, match=f"output folder {out} is in use"):
            predict(checkpoints["unet"], [odd_folder / "images"], out, progress=False)
    finally:
        holder.kill()
        holder.wait()
    assert not (out / "predictions.csv").exists()


def test_a_too_large_image_is_named_before_the_output_folder_is_made(checkpoints, tmp_path):
    Image.new("1", (13000, 13000)).save(tmp_path / "huge.png")
    with pytest.raises(DataError, match=r"huge\.png: 13000x13000 is 169,000,000 pixels, more than 150,000,000"):
        predict(checkpoints["unet"], [tmp_path / "huge.png"], tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
