"""Draws results/figures/predictions.png for the README from the committed results.

Four ISIC 2017 test images at the 10th, 40th, 70th and 95th percentile of the seed-0
U-Net's IoU, with the ground truth and both models' predictions outlined.

    .venv/bin/python scripts/readme_figure.py
"""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from skinseg.config import default_data_dir, results_dir  # noqa: E402
from skinseg.data import load_split  # noqa: E402
from skinseg.plots import ATTENTION_COLOUR, TRUTH_COLOUR, UNET_COLOUR, outline_legend, show_with_outlines  # noqa: E402
from skinseg.results import load_results  # noqa: E402

results = load_results()
test = load_split(default_data_dir(), "test")
unet, attention = results.predictions("unet"), results.predictions("attention_unet")
iou = results.per_image("unet", 0)["iou"].sort_values()
picks = [iou.index[int(q * (len(iou) - 1))] for q in (0.10, 0.40, 0.70, 0.95)]

fig, axes = plt.subplots(1, len(picks), figsize=(3.2 * len(picks), 3.0))
for ax, image_id in zip(axes, picks):
    i = test.ids.index(image_id)
    show_with_outlines(ax, test.images[i], {
        "ground truth": (test.masks[i], TRUTH_COLOUR),
        "U-Net": (unet.mask(image_id), UNET_COLOUR),
        "Attention U-Net": (attention.mask(image_id), ATTENTION_COLOUR)},
        title=f"{image_id}: U-Net IoU {iou[image_id]:.2f}")
outline_legend(fig, {"ground truth": TRUTH_COLOUR, "U-Net": UNET_COLOUR, "Attention U-Net": ATTENTION_COLOUR})
fig.suptitle(f"{results.label()}, seed 0", fontsize=10)
fig.tight_layout(rect=(0, 0.07, 1, 1))
out = results_dir() / "figures" / "predictions.png"
out.parent.mkdir(parents=True, exist_ok=True)
fig.savefig(out, dpi=90)
print(f"wrote {out}")
