"""Adds ``display.npz`` (skinseg.lab.display) to a results folder written before the experiment stored it.

    .venv/bin/python scripts/store_display_images.py results/isic2017_16ep --data ../shared/data/isic2017

It reads the pixels of exactly the test images that :func:`skinseg.lab.display.display_ids`
picks from the folder's first-seed per-image tables and ψ file, from the data the runs were
tested on, and checks that the stored ground truth gives back the runs' per-image IoU.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from skinseg.errors import SkinsegError
from skinseg.lab.display import load_display, store_display
from skinseg.lab.protocols import OFFICIAL, load_protocol_split
from skinseg.lab.results import load_results
from skinseg.metrics import iou_per_image

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("results", type=Path)
parser.add_argument("--data", type=Path, required=True)
args = parser.parse_args()
try:
    results = load_results(args.results)
    seed = results.seeds[0]
    size = tuple(results.config["profile"]["image_size"])
    test = load_protocol_split(args.data, "test", size, protocol=results.config.get("protocol", OFFICIAL))
    tables = {m: results.per_image(m, seed) for m in ("unet", "attention_unet")}
    path = store_display(results.path, test, tables["unet"]["iou"], tables["attention_unet"]["iou"], results.psi().ids)
    stored = load_display(path)
    predicted = results.predictions("unet", seed, endpoint="chosen")  # scored in the "iou" column
    masks = np.stack([predicted.mask(i) for i in stored.ids])
    error = np.abs(iou_per_image(masks, stored.masks.astype(np.uint8)) - tables["unet"].loc[stored.ids, "iou"].to_numpy()).max()
    print(f"wrote {path}: {len(stored)} test images {stored.images.shape[1:3]}, {path.stat().st_size / 1e6:.1f} MB; "
          f"U-Net IoU recomputed from the stored ground truth differs from the table by at most {error:.1e}")
except SkinsegError as err:
    sys.exit(f"error: {err}")
