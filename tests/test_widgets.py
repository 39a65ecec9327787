"""Tests of the ψ-map reader (skinseg.psi) and the interactive ψ inspector (skinseg.widgets).

The inspector is driven programmatically, as a notebook user would drive it with the mouse:
each control is changed and what is rendered must change with it.
"""
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from skinseg.metrics import boundary_pixels
from skinseg.models import AttentionUNet
from skinseg.psi import (PsiMaps, flatten_levels, lesion_auc, level_shapes, load_psi, overlay, psi_maps,
                         psi_statistics, unflatten_levels, upsample_to)
from skinseg.widgets import PsiInspector

SIZE = (32, 48)
COMMITTED = Path(__file__).resolve().parents[1] / "results" / "isic2017_16ep" / "psi" / "attention_unet_seed0.npz"


def _write_psi_file(path: Path, levels_uint8: list[np.ndarray], epochs, ids, image_size) -> Path:
    """Write the experiment's layout by hand: levels flattened in C order, finest first, concatenated."""
    flat = np.concatenate([a.reshape(*a.shape[:2], -1) for a in levels_uint8], axis=-1)
    np.savez_compressed(path, epochs=np.array(epochs), ids=np.array(ids), psi=flat, image_size=np.array(image_size))
    return path


def _random_levels(rng, n_epochs: int, n_images: int, size=SIZE) -> list[np.ndarray]:
    return [rng.integers(0, 256, (n_epochs, n_images, h, w), dtype=np.uint8) for h, w in level_shapes(size)]


@pytest.fixture
def psi_file(tmp_path) -> tuple[Path, list[np.ndarray]]:
    rng = np.random.default_rng(0)
    levels = _random_levels(rng, 3, 4)
    return _write_psi_file(tmp_path / "psi.npz", levels, [1, 5, 10], ["a", "b", "c", "d"], SIZE), levels


def _squares(n: int, size=SIZE) -> np.ndarray:
    """Masks of axis-aligned squares, aligned to 8 pixels so every level sees them exactly."""
    masks = np.zeros((n, *size), np.uint8)
    for i in range(n):
        top, left = 8 * (i % 2), 8 * (i % 3)
        masks[i, top:top + 16, left:left + 16] = 1
    return masks


@pytest.fixture
def inspector(psi_file) -> PsiInspector:
    path, _ = psi_file
    maps = load_psi(path)
    images = np.random.default_rng(1).integers(0, 256, (maps.n_images, *SIZE, 3), dtype=np.uint8)
    return PsiInspector(maps, images, _squares(maps.n_images), source="SYNTHETIC test maps")


# --- skinseg.psi -----------------------------------------------------------------------------


def test_load_psi_undoes_the_flattening_exactly(psi_file):
    path, levels = psi_file
    maps = load_psi(path)
    assert list(maps.epochs) == [1, 5, 10] and maps.ids == ["a", "b", "c", "d"] and maps.image_size == SIZE
    assert maps.n_levels == 4 and (maps.n_epochs, maps.n_images) == (3, 4)
    for k, (got, want) in enumerate(zip(maps.levels, levels)):
        assert got.shape == (3, 4, SIZE[0] >> k, SIZE[1] >> k) and got.dtype == np.float32
        np.testing.assert_array_equal(got, want.astype(np.float32) / 255)
        assert 0.0 <= got.min() and got.max() <= 1.0
    # one map by id and epoch, and the inverse of the flattening
    np.testing.assert_array_equal(maps.map(2, "c", 5), levels[2][1, 2] / np.float32(255))
    np.testing.assert_array_equal(maps.map(1, 0), levels[1][-1, 0] / np.float32(255))
    np.testing.assert_array_equal(flatten_levels(maps.levels), np.load(path)["psi"])


def test_load_psi_reads_what_the_experiment_writes_from_a_model(tmp_path):
    torch.manual_seed(0)
    model = AttentionUNet(width=4).eval()
    images = np.random.default_rng(2).integers(0, 256, (3, *SIZE, 3), dtype=np.uint8)
    stored = np.stack([flatten_levels(psi_maps(model, images, "cpu"))] * 2)  # two "epochs", as the experiment writes them
    assert stored.shape == (2, 3, sum(h * w for h, w in level_shapes(SIZE))) and stored.dtype == np.uint8
    np.savez_compressed(tmp_path / "run.npz", epochs=np.array([1, 2]), ids=np.array(["x", "y", "z"]), psi=stored,
                        image_size=np.array(SIZE))
    levels = load_psi(tmp_path / "run.npz").levels
    np.testing.assert_array_equal(levels[0], unflatten_levels(stored, SIZE)[0])
    from skinseg.data.tensors import normalize, to_unit_float
    with torch.no_grad():
        _, psis = model.forward_with_attention(normalize(to_unit_float(torch.from_numpy(images).permute(0, 3, 1, 2))))
    for k, psi in enumerate(psis):
        assert levels[k].shape == (2, 3, *psi.shape[-2:])
        assert np.abs(levels[k][1] - psi[:, 0].numpy()).max() <= 0.5 / 255 + 1e-6


def test_load_psi_rejects_malformed_files(tmp_path):
    rng = np.random.default_rng(3)
    levels = _random_levels(rng, 2, 2)
    bad = _write_psi_file(tmp_path / "bad.npz", levels, [1, 2], ["a", "b"], (64, 48))  # wrong image size
    with pytest.raises(ValueError, match="values per image"):
        load_psi(bad)
    np.savez(tmp_path / "missing.npz", epochs=np.array([1]), ids=np.array(["a"]))
    with pytest.raises(ValueError, match="lacks"):
        load_psi(tmp_path / "missing.npz")
    shifted = _write_psi_file(tmp_path / "count.npz", levels, [1, 2, 3], ["a", "b"], SIZE)  # 3 epochs named, 2 stored
    with pytest.raises(ValueError, match=r"\(E, N, L\)"):
        load_psi(shifted)
    with pytest.raises(ValueError, match="multiples"):
        level_shapes((30, 48))


def test_psi_maps_lookups_name_what_is_missing(psi_file):
    maps = load_psi(psi_file[0])
    assert maps.epoch_index(10) == 2 and maps.image_index("d") == 3 and maps.image_index(-1) == 3
    with pytest.raises(ValueError, match="stored epochs"):
        maps.epoch_index(7)
    with pytest.raises(ValueError, match="stored ids"):
        maps.image_index("z")
    with pytest.raises(ValueError, match="level"):
        maps.map(4, 0)
    with pytest.raises(ValueError, match="level 1"):
        PsiMaps(maps.epochs, maps.ids, [maps.levels[0], maps.levels[0], *maps.levels[2:]], SIZE)


def test_upsample_to_repeats_blocks_and_keeps_the_range():
    rng = np.random.default_rng(4)
    psi = rng.random((2, 6, 8)).astype(np.float32)
    np.testing.assert_array_equal(upsample_to(psi, (24, 32)), psi.repeat(4, -2).repeat(4, -1))
    odd = upsample_to(psi[0], (7, 9))
    assert odd.shape == (7, 9) and set(np.unique(odd)) <= set(np.unique(psi[0]))
    smooth = upsample_to(psi, (24, 32), mode="bilinear")
    assert smooth.shape == (2, 24, 32) and psi.min() - 1e-6 <= smooth.min() and smooth.max() <= psi.max() + 1e-6
    assert not np.array_equal(smooth, upsample_to(psi, (24, 32)))
    with pytest.raises(ValueError, match="mode"):
        upsample_to(psi, (24, 32), mode="cubic")


def test_overlay_blends_image_and_map_and_draws_the_outline():
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8)
    psi = rng.random((SIZE[0] // 4, SIZE[1] // 4)).astype(np.float32)
    mask = _squares(1)[0]
    np.testing.assert_array_equal(overlay(image, psi, 0.0), image)
    alone = overlay(image, psi, 1.0)
    want = np.round(matplotlib.colormaps["magma"](upsample_to(psi, SIZE))[..., :3] * 255).astype(np.uint8)
    assert np.abs(alone.astype(int) - want).max() <= 1
    outlined = overlay(image, psi, 0.0, mask=mask)
    changed = np.any(outlined != image, axis=-1)
    assert changed.any() and not changed[mask.astype(bool)].all()  # an outline, not a filled lesion
    assert np.all(outlined[changed] == np.array([0, 224, 0]))  # the book's ground-truth green
    with pytest.raises(ValueError, match="opacity"):
        overlay(image, psi, 1.5)


def test_lesion_auc_agrees_with_scikit_learn():
    rng = np.random.default_rng(6)
    mask = _squares(1)[0]
    psi = np.round(rng.random(SIZE) + 0.3 * mask, 1)  # ties on purpose
    assert lesion_auc(psi, mask) == pytest.approx(roc_auc_score(mask.ravel(), psi.ravel()))
    assert np.isnan(lesion_auc(psi, np.zeros(SIZE)))


def test_psi_statistics_on_maps_with_known_answers():
    masks = _squares(3)
    shapes = level_shapes(SIZE)
    lesion = [np.stack([m[::2 ** k, ::2 ** k] for m in masks]).astype(np.float32) for k in range(4)]
    # epoch 1: psi is the lesion mask; epoch 2: its complement; at every level, for every image
    levels = [np.stack([lesion[k], 1 - lesion[k]]) for k in range(4)]
    levels[3][:, 2] = 0.5  # image 2, level 3: a flat map
    maps = PsiMaps(np.array([1, 2]), ["p", "q", "r"], levels, SIZE)
    assert [lv.shape[-2:] for lv in maps.levels] == shapes
    stats = psi_statistics(maps, masks).set_index(["epoch", "level", "id"])
    assert len(stats) == 2 * 4 * 3
    first = stats.loc[(1, 0, "p")]
    assert (first.inside, first.outside, first.contrast, first.auc, first.rim) == (1.0, 0.0, 1.0, 1.0, 0.0)
    assert first.lesion_fraction == pytest.approx(masks[0].mean())
    assert first.open == pytest.approx(masks[0].mean()) and first.closed == pytest.approx(1 - masks[0].mean())
    assert stats.loc[(2, 1, "q")].auc == 0.0 and stats.loc[(2, 1, "q")].contrast == -1.0
    flat = stats.loc[(1, 3, "r")]
    assert (flat.auc, flat["std"], flat.closed, flat.open, flat.rim) == (0.5, 0.0, 0.0, 0.0, 0.5)
    with pytest.raises(ValueError, match="masks"):
        psi_statistics(maps, masks[:2])


# --- skinseg.widgets -------------------------------------------------------------------------


def test_inspector_starts_at_the_first_image_finest_level_last_epoch(inspector):
    assert inspector.state == {"image": "a", "level": 0, "epoch": 10, "opacity": 0.6}
    assert inspector.png.startswith(b"\x89PNG\r\n\x1a\n") and inspector.view.value == inspector.png
    assert inspector.rgb.shape == (*SIZE, 3) and inspector.rgb.dtype == np.uint8
    assert inspector.psi.shape == SIZE
    np.testing.assert_array_equal(inspector.psi, inspector.maps.map(0, "a", 10))
    assert set(inspector.controls) == {"image", "level", "epoch", "opacity"}
    assert inspector.caption.value == inspector.describe()
    assert inspector.describe().startswith("a, gate level 0 (32x48), epoch 10: ψ min")


@pytest.mark.parametrize("control, value", [("image", 2), ("level", 3), ("epoch", 1), ("opacity", 0.25)])
def test_every_control_changes_what_is_rendered(inspector, control, value):
    before_png, before_rgb, before_caption = inspector.png, inspector.rgb.copy(), inspector.caption.value
    inspector.controls[control].value = value
    assert inspector.png != before_png
    assert not np.array_equal(inspector.rgb, before_rgb)
    assert inspector.state[control] == (inspector.maps.ids[value] if control == "image" else value)
    psi = inspector.psi
    assert 0.0 <= psi.min() and psi.max() <= 1.0
    np.testing.assert_array_equal(psi, inspector.maps.map(inspector.level.value, inspector.image.value,
                                                          inspector.epoch.value))
    if control != "opacity":
        assert inspector.caption.value != before_caption


def test_inspector_walks_all_levels_and_epochs_with_psi_in_range(inspector):
    seen = set()
    for level in range(4):
        inspector.level.value = level
        for epoch in (1, 5, 10):
            inspector.epoch.value = epoch
            assert inspector.psi.shape == (SIZE[0] >> level, SIZE[1] >> level)
            assert 0.0 <= inspector.psi.min() and inspector.psi.max() <= 1.0
            seen.add(inspector.rgb.tobytes())
    assert len(seen) == 12  # twelve different pictures


def test_inspector_opacity_ends_show_the_image_or_the_map(inspector):
    away = ~ndimage.binary_dilation(boundary_pixels(inspector.masks[0]), iterations=2)  # off the drawn outline
    inspector.opacity.value = 0.0
    np.testing.assert_array_equal(inspector.rgb[away], inspector.images[0][away])
    assert not np.array_equal(inspector.rgb, inspector.images[0])  # the outline is drawn
    inspector.opacity.value = 1.0
    colours = np.round(matplotlib.colormaps["magma"](upsample_to(inspector.psi, SIZE))[..., :3] * 255)
    assert np.abs(inspector.rgb[away].astype(int) - colours[away]).max() <= 1


def test_inspector_text_form_and_validation(psi_file):
    maps = load_psi(psi_file[0])
    images = np.zeros((maps.n_images, *SIZE, 3), np.uint8)
    plain = PsiInspector(maps, images)  # no masks: no outline, no inside/outside numbers
    assert "inside" not in plain.describe()
    bundle = plain._repr_mimebundle_()
    assert bundle["text/plain"] == "PsiInspector: 4 images, 4 gate levels, epochs [1, 5, 10] (interactive with a running kernel)"
    assert "application/vnd.jupyter.widget-view+json" in bundle
    with pytest.raises(ValueError, match="images"):
        PsiInspector(maps, images[:2])
    with pytest.raises(ValueError, match="masks"):
        PsiInspector(maps, images, np.zeros((maps.n_images, 8, 8), np.uint8))


# --- the committed maps of the GPU run -------------------------------------------------------


@pytest.mark.skipif(not COMMITTED.exists(), reason="results/isic2017_16ep/psi/attention_unet_seed0.npz not present")
def test_committed_psi_file_loads_and_drives_the_inspector():
    maps = load_psi(COMMITTED)
    h, w = maps.image_size
    assert (h, w) == (192, 256) and maps.n_images == 12 and maps.n_levels == 4
    assert np.all(np.diff(maps.epochs) > 0) and len(set(maps.ids)) == 12
    assert all(i.startswith("test_") for i in maps.ids)
    for k, level in enumerate(maps.levels):
        assert level.shape == (maps.n_epochs, 12, h >> k, w >> k)
        assert 0.0 <= level.min() and level.max() <= 1.0
    images = np.full((12, h, w, 3), 128, np.uint8)
    inspector = PsiInspector(maps, images, opacity=1.0)
    first = inspector.png
    inspector.level.value = 3
    inspector.epoch.value = int(maps.epochs[0])
    assert inspector.png != first and inspector.psi.shape == (24, 32)
    assert 0.0 <= inspector.psi.min() and inspector.psi.max() <= 1.0
