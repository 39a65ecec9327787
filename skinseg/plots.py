"""Figures shared by the chapters: images with mask outlines, and grids of them."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from scipy import ndimage

from .config import MODEL_LABELS  # noqa: F401 - the chapters import it from here with the colours
from .metrics import boundary_pixels

# Colours used throughout the book.
TRUTH_COLOUR = "#00e000"
UNET_COLOUR = "#ffb000"
ATTENTION_COLOUR = "#ff3cc8"
MODEL_COLOURS = {"unet": "#1f77b4", "attention_unet": "#d62728"}


def draw_outline(image: np.ndarray, mask: np.ndarray, colour: str, thickness: int = 1) -> np.ndarray:
    """Paint the outline (:func:`~skinseg.metrics.boundary_pixels`) of the ``(H, W)`` {0, 1} ``mask``,
    ``thickness`` dilations wide, in ``colour`` onto the ``(H, W, 3)`` uint8 ``image`` (in place); returns ``image``."""
    edge = ndimage.binary_dilation(boundary_pixels(mask), iterations=thickness)
    image[edge] = np.round(np.array(plt.matplotlib.colors.to_rgb(colour)) * 255).astype(np.uint8)
    return image


def show_with_outlines(ax, image: np.ndarray, outlines: dict[str, tuple[np.ndarray, str]] | None = None,
                       title: str | None = None) -> None:
    """Draw an ``(H, W, 3)`` uint8 image with coloured outlines of masks: ``outlines`` maps a legend
    label to ``(mask, colour)``, each mask ``(H, W)`` in {0, 1}."""
    shown = image.copy()
    for mask, colour in (outlines or {}).values():
        draw_outline(shown, mask, colour)
    ax.imshow(shown)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)


def outline_legend(fig, outlines: dict[str, str], **kwargs) -> None:
    """A figure legend for outline colours: ``{label: colour}``."""
    handles = [plt.Line2D([], [], color=c, lw=3, label=label) for label, c in outlines.items()]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, **kwargs)


def image_grid(images, masks=None, titles=None, ncols: int = 4, size: float = 2.6, colour: str = TRUTH_COLOUR):
    """A grid of images, each with its ground-truth outline if ``masks`` is given. Returns the figure."""
    n = len(images)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * size * 0.8), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.set_axis_off()
            continue
        outlines = {"lesion": (masks[i], colour)} if masks is not None else None
        show_with_outlines(ax, images[i], outlines, titles[i] if titles is not None else None)
    fig.tight_layout()
    return fig
