"""Draws results/figures/predictions.png for the README from the committed results.

Four ISIC 2017 test images at the 10th, 40th, 70th and 95th percentile of the seed-0
U-Net's IoU, with the ground truth and both models' predictions outlined. It reads the
converged experiment (results/isic2017) once its first seed pair exists, else the 16-epoch
one (results/isic2017_16ep), and says which, with how many seeds exist so far. The masks are
the raw predictions (the primary endpoint) where the results store them, else each run's own
TTA/post-processing choice (the secondary endpoint, all that results/isic2017_16ep keeps), and
the figure says which; the images are picked on that endpoint's IoU. The images'
pixels come from the results (display.npz), not from the local data.

    .venv/bin/python scripts/readme_figure.py
"""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from skinseg.errors import DataError  # noqa: E402
from skinseg.lab.results import CONVERGED, EARLY_STOP, load_results  # noqa: E402
from skinseg.lab.stats import endpoint_column  # noqa: E402
from skinseg.paths import results_dir  # noqa: E402
from skinseg.plots import ATTENTION_COLOUR, TRUTH_COLOUR, UNET_COLOUR, outline_legend, show_with_outlines  # noqa: E402

try:
    results = load_results(CONVERGED)
except DataError:
    results = load_results(EARLY_STOP)
epochs = results.config["profile"]["epochs"]
seed = results.seeds[0]
stored = set(results.mask_endpoints("unet")) & set(results.mask_endpoints("attention_unet"))
endpoint = "raw" if "raw" in stored else "chosen"
unet, attention = (results.predictions(m, endpoint=endpoint) for m in ("unet", "attention_unet"))
iou = results.per_image("unet", seed)[endpoint_column("iou", endpoint)].sort_values(kind="stable")
picks = [iou.index[int(q * (len(iou) - 1))] for q in (0.10, 0.40, 0.70, 0.95)]

fig, axes = plt.subplots(1, len(picks), figsize=(3.2 * len(picks), 3.0))
for ax, image_id in zip(axes, picks):
    image, truth = results.display_image(image_id)
    show_with_outlines(ax, image, {
        "ground truth": (truth, TRUTH_COLOUR),
        "U-Net": (unet.mask(image_id), UNET_COLOUR),
        "Attention U-Net": (attention.mask(image_id), ATTENTION_COLOUR)},
        title=f"{image_id}: U-Net IoU {iou[image_id]:.2f}")
outline_legend(fig, {"ground truth": TRUTH_COLOUR, "U-Net": UNET_COLOUR, "Attention U-Net": ATTENTION_COLOUR})
shown = ("raw predictions (primary endpoint)" if endpoint == "raw" else
         f"each run's TTA/post-processing choice (secondary endpoint: U-Net {unet.variant}, "
         f"Attention U-Net {attention.variant}; raw masks not stored)")
fig.suptitle(f"{results.label()}, {epochs} epochs, seed {seed} ({results.seeds_so_far()}; results/{results.path.name})\n"
             f"masks: {shown}", fontsize=10)
fig.tight_layout(rect=(0, 0.07, 1, 1))
out = results_dir() / "figures" / "predictions.png"
out.parent.mkdir(parents=True, exist_ok=True)
fig.savefig(out, dpi=90)
print(f"wrote {out} from results/{results.path.name} ({results.seeds_so_far()}), masks: {shown}")
