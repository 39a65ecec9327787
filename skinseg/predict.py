"""Lesion masks for your own images: ``python -m skinseg predict --checkpoint best.pt IMAGE_OR_FOLDER... --out DIR``.

Each image is resized to the model's input as training resizes ISIC images, its probabilities
(with ``evaluate``'s test-time augmentation) are resized bilinearly back to the image's own size
and thresholded (:func:`skinseg.evaluate.binarize`). Into ``out_dir`` go:

* ``<id>_mask.png``: the mask at the image's size, 8-bit, 0 = background, 255 = lesion (a ``masks/`` folder);
* ``<id>_overlay.png``: the image with the lesion tinted and outlined (large images at their decoded size);
* ``<id>_psi.png`` (``psi=True``, Attention U-Net only): the four gates' ψ maps over the model's input;
* ``predictions.csv``: one row per image (its file, size and predicted lesion fraction).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from .atomic import write_atomic, write_image_atomic, write_text_atomic
from .checkpoint import load_checkpoint, model_from_state
from .config import MODEL_LABELS, check_image_size
from .data.folders import IMAGE_DIR, IMAGE_EXTENSIONS, images_in
from .data.isic import resize_image, resize_mask
from .device import resolve_device
from .errors import ConfigError, DataError
from .evaluate import TTA, binarize, predict_probabilities
from .checks import check_model, check_paths, check_positive_int
from .images import read_image, shown_size
from .lock import output_lock
from .models import model_name
from .outputs import check_outputs
from .plots import ATTENTION_COLOUR, UNET_COLOUR, draw_outline
from .psi import overlay, psi_maps

DEFAULT_IMAGE_SIZE = (192, 256)
PREDICTIONS = "predictions.csv"
MASK_COLOURS = {"unet": UNET_COLOUR, "attention_unet": ATTENTION_COLOUR}


def checkpoint_image_size(checkpoint, default: tuple[int, int] = DEFAULT_IMAGE_SIZE) -> tuple[int, int]:
    """The ``(H, W)`` input the model of ``checkpoint`` (a path, or the dictionary
    :func:`~skinseg.checkpoint.load_checkpoint` read) was trained at, or ``default`` if it does not say."""
    state = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    size = state.get("image_size") or state.get("recipe", {}).get("image_size")
    return tuple(int(s) for s in size) if size else tuple(default)


def image_files(inputs) -> list[Path]:
    """The image files named by ``inputs`` (files, or folders whose image files are taken), in order.

    A folder gives its image files sorted by name, less hidden files, ``*_superpixels`` and the
    outputs its ``predictions.csv`` lists. Raises :class:`DataError` for a missing path, a file that
    is no image, a folder without images, and two images with one stem (their outputs would collide).
    """
    files: list[Path] = []
    for path in map(Path, inputs):
        if path.is_dir():
            outputs = set(_listed(earlier_predictions(path, refuse=False)))
            found = [p for p in images_in(path) if p.name not in outputs]
            if not found:
                hint = f"; did you mean {path / IMAGE_DIR}?" if (path / IMAGE_DIR).is_dir() else ""
                raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {path}{hint}")
            files += found
        elif path.is_file():
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                raise DataError(f"{path} is not an image: expected one of {', '.join(IMAGE_EXTENSIONS)}")
            files.append(path)
        else:
            raise DataError(f"image or folder {path} does not exist")
    stems = Counter(p.stem for p in files)
    twice = [p for p in files if stems[p.stem] > 1]
    if twice:
        raise DataError(f"{twice[0]} and {twice[1]} have the same name {twice[0].stem!r}: their outputs would "
                        "overwrite each other; predict them into separate folders")
    return files


def outlined(image: np.ndarray, mask: np.ndarray, colour: str, tint: float = 0.35) -> np.ndarray:
    """``(H, W, 3)`` uint8 ``image`` with the ``(H, W)`` {0, 1} ``mask`` tinted in ``colour`` and outlined
    (about 1/150 of the shorter side thick, so that it shows on large photographs too)."""
    import matplotlib.colors

    rgb = np.array(matplotlib.colors.to_rgb(colour), np.float32) * 255
    shown = image.astype(np.float32)
    inside = mask.astype(bool)
    shown[inside] = (1 - tint) * shown[inside] + tint * rgb
    return draw_outline(np.round(shown).astype(np.uint8), mask, colour, max(1, round(min(mask.shape) / 150)))


def psi_picture(image: np.ndarray, psis: list[np.ndarray], path: Path, title: str) -> None:
    """Save a row of five panels: ``image`` (``(H, W, 3)`` uint8, the model's input) and each
    gate's ψ map (``(H / 2**k, W / 2**k)`` in [0, 1], finest first) drawn over it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2.4 * (1 + len(psis)), 2.4 * image.shape[0] / image.shape[1] + 0.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 1 + len(psis))
    panels = [(image, "input")] + [(overlay(image, p), f"gate {k + 1}: ψ at {p.shape[0]}x{p.shape[1]}")
                                   for k, p in enumerate(psis)]
    for ax, (picture, label) in zip(axes, panels):
        ax.imshow(picture)
        ax.set_title(label, fontsize=8)
        ax.set_axis_off()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=100))  # a full disk names the file


def predict_images(model: nn.Module, files, out_dir, *, image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
                   tta: str = "none", postprocess: bool = False, psi: bool = False, batch_size: int = 8,
                   device=None, progress: bool = True, checkpoint=None, overwrite: bool = False) -> pd.DataFrame:
    """Predict a mask for every image file and write the files of the module docstring, holding ``out_dir``.

    Args:
        model: a trained U-Net or Attention U-Net.
        files: image paths (see :func:`image_files`); any size, RGB or grey.
        image_size: ``(H, W)`` the model's input, both multiples of 16 (the size it was trained at).
        tta, postprocess: as for ``evaluate`` (:func:`skinseg.evaluate.predict_probabilities`, :func:`binarize`).
        psi: also write the ψ picture (Attention U-Net only).
        checkpoint: the path the model was read from, to name it in errors.
        overwrite: replace output files that ``predict`` did not write (never an input image).

    Earlier outputs of ``predict`` in ``out_dir`` are replaced, and its ``predictions.csv`` keeps
    the rows of images not predicted again. Returns the table of the images predicted now, indexed
    by ``id`` (the file stem): ``image``, ``width``, ``height``, ``predicted_fraction`` (in [0, 1]),
    ``mask``, ``overlay`` and, with ``psi``, ``psi``.
    """
    name = model_name(check_model(model))
    check_positive_int(batch_size, "batch_size")
    if psi and not getattr(model, "has_attention", False):
        holds = f"{checkpoint} holds a {MODEL_LABELS[name]}" if checkpoint else f"the model is a {MODEL_LABELS[name]} ({name})"
        raise ConfigError(f"psi maps need an Attention U-Net, but {holds}")
    if tta not in TTA:
        raise ConfigError(f"tta must be one of {sorted(TTA)}, got {tta!r}")
    check_image_size(image_size, "image size")
    out_dir = Path(out_dir)
    files = check_paths(files, "files")
    names = [f"{f.stem}{end}" for f in files for end in ("_mask.png", "_overlay.png") + (("_psi.png",) if psi else ())]

    def check() -> pd.DataFrame | None:
        earlier = earlier_predictions(out_dir, refuse=not overwrite)
        own = [out_dir / n for n in _listed(earlier)] + ([out_dir / PREDICTIONS] if earlier is not None else [])
        check_outputs([out_dir / PREDICTIONS] + [out_dir / n for n in names], files, own=own, overwrite=overwrite,
                      input_folders={f.parent for f in files})
        return earlier

    check()  # before the folder is made, and again once it is held
    for f in files:  # an unreadable or too large image is named before any work
        shown_size(f)
    with output_lock(out_dir):
        earlier = check()
        table = _predict_into(model, name, files, out_dir, image_size, tta, postprocess, psi, batch_size, device, progress)
        kept = earlier.drop(index=table.index, errors="ignore") if earlier is not None else None
        whole = pd.concat([kept, table]) if kept is not None and len(kept) else table
        write_text_atomic(out_dir / PREDICTIONS, whole.sort_index().to_csv(float_format="%.6f"))
    return table


def earlier_predictions(out_dir: Path, refuse: bool = True) -> pd.DataFrame | None:
    """The ``predictions.csv`` that ``predict`` wrote into ``out_dir`` earlier, or None; one that
    ``predict`` did not write raises :class:`~skinseg.errors.ConfigError` with ``refuse``."""
    path = Path(out_dir) / PREDICTIONS
    if not path.exists():
        return None
    try:
        table = pd.read_csv(path, index_col="id")
        missing = {"image", "width", "height", "predicted_fraction", "mask", "overlay"} - set(table.columns)
        if missing:
            raise ValueError(f"no column {sorted(missing)[0]!r}")
    except (ValueError, TypeError, KeyError, IndexError, OSError, pd.errors.ParserError) as err:
        if refuse:
            detail = str(err).splitlines()[0] if isinstance(err, ValueError) and "column" in str(err) else "not its table"
            raise ConfigError(f"{path} exists and was not written by predict ({detail}): "
                              "choose another --out, or add --overwrite to replace it") from None
        return None
    return table


def _listed(table: pd.DataFrame | None) -> list[str]:
    """The output file names a predictions table lists."""
    columns = [c for c in ("mask", "overlay", "psi") if table is not None and c in table]
    return [str(v) for c in columns for v in table[c].dropna()]


def _predict_into(model, name, files, out_dir, image_size, tta, postprocess, psi, batch_size, device, progress):
    rows = []
    with tqdm(total=len(files), desc="predict", unit="image", disable=not progress) as bar:
        for start in range(0, len(files), batch_size):
            batch = files[start:start + batch_size]
            decoded = [read_image(f) for f in batch]
            originals = [np.asarray(im, np.uint8) for im, _ in decoded]
            inputs = np.stack([np.asarray(resize_image(Image.fromarray(o), image_size), np.uint8) for o in originals])
            prob = predict_probabilities(model, inputs, tta=tta, batch_size=batch_size, device=device)
            psis = psi_maps(model, inputs, resolve_device(device)) if psi else None
            for i, (path, original) in enumerate(zip(batch, originals)):
                full = np.asarray(Image.fromarray(prob[i]).resize(original.shape[1::-1], Image.Resampling.BILINEAR))
                mask = binarize(full[None], postprocess)[0]
                shown_w, shown_h = decoded[i][1]
                row = {"id": path.stem, "image": str(path), "width": shown_w, "height": shown_h,
                       "predicted_fraction": float(mask.mean()),
                       "mask": f"{path.stem}_mask.png", "overlay": f"{path.stem}_overlay.png"}
                mask_pixels = resize_mask(mask, (shown_h, shown_w)) * np.uint8(255)
                write_image_atomic(out_dir / row["mask"], Image.fromarray(mask_pixels))
                write_image_atomic(out_dir / row["overlay"], Image.fromarray(outlined(original, mask, MASK_COLOURS[name])))
                if psis is not None:
                    row["psi"] = f"{path.stem}_psi.png"
                    psi_picture(inputs[i], [p[i] for p in psis], out_dir / row["psi"],
                                f"{path.stem}: attention gates of the {MODEL_LABELS[name]}")
                rows.append(row)
                bar.update()
    return pd.DataFrame(rows).set_index("id")


def predict(checkpoint, inputs, out_dir, *, image_size: tuple[int, int] | None = None, device=None,
            **kwargs) -> pd.DataFrame:
    """:func:`predict_images` with the model of ``checkpoint`` on the images named by ``inputs``
    (:func:`image_files`); ``image_size`` defaults to the checkpoint's (:func:`checkpoint_image_size`)."""
    files = image_files(check_paths(inputs, "inputs"))
    state = load_checkpoint(checkpoint)
    size = tuple(image_size) if image_size else checkpoint_image_size(state)
    device = resolve_device(device)
    model = model_from_state(state, checkpoint, device)
    return predict_images(model, files, out_dir, image_size=size, device=device, checkpoint=checkpoint, **kwargs)


__all__ = ["checkpoint_image_size", "image_files", "outlined", "predict", "predict_images", "psi_picture"]
