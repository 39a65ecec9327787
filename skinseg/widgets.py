"""An interactive inspector of the attention maps ψ (needs a running Jupyter kernel).

:class:`PsiInspector` shows one image with one gate's ψ over it and the lesion's outline. Its
controls and what is on screen are attributes, so a script or a test can drive it::

    inspector = PsiInspector(load_psi(path), images, masks)
    inspector              # in a notebook: the widget
    inspector.level.value = 2
    inspector.psi          # the map now shown, (H/4, W/4) in [0, 1]
"""
from __future__ import annotations

import io

import ipywidgets as widgets
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from .psi import PsiMaps, lesion_auc, overlay, upsample_to


class PsiInspector:
    """Browse ψ maps over their images.

    Args:
        maps: the ψ maps (:func:`skinseg.psi.load_psi`).
        images: ``(N, H, W, 3)`` uint8, the images of ``maps.ids`` in that order, at ``maps.image_size``.
        masks: ``(N, H, W)`` in {0, 1}, their ground-truth lesions (outlined), or ``None``.
        opacity: the starting overlay opacity in [0, 1]; ``cmap`` spans ψ = 0..1.
        source: a label for the figure title, e.g. the dataset and hardware the maps came from.

    Attributes: the controls ``image``, ``level``, ``epoch``, ``opacity`` (set ``.value``); ``view``
    (the rendered PNG), ``caption`` (numbers of the map shown) and ``widget`` (the whole layout).
    """

    def __init__(self, maps: PsiMaps, images: np.ndarray, masks: np.ndarray | None = None, *,
                 opacity: float = 0.6, cmap: str = "magma", source: str = "") -> None:
        if images.shape != (maps.n_images, *maps.image_size, 3) or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, H, W, 3) = {(maps.n_images, *maps.image_size, 3)}, "
                             f"got {images.dtype} {images.shape}")
        if masks is not None and masks.shape != images.shape[:3]:
            raise ValueError(f"masks must be (N, H, W) = {images.shape[:3]}, got {masks.shape}")
        self.maps, self.images, self.masks = maps, images, masks
        self.cmap, self.source = cmap, source
        fractions = [f" (lesion {100 * m.mean():.0f} %)" for m in masks] if masks is not None else [""] * len(images)
        self.image = widgets.Dropdown(options=[(f"{i}{f}", n) for n, (i, f) in enumerate(zip(maps.ids, fractions))],
                                      value=0, description="image")
        self.level = widgets.ToggleButtons(
            options=[(f"{k}: {a.shape[-2]}x{a.shape[-1]}", k) for k, a in enumerate(maps.levels)],
            value=0, description="gate level", style={"button_width": "90px"})
        self.epoch = widgets.SelectionSlider(options=[int(e) for e in maps.epochs], value=int(maps.epochs[-1]),
                                             description="epoch", continuous_update=False)
        self.opacity = widgets.FloatSlider(value=opacity, min=0.0, max=1.0, step=0.05, description="ψ opacity",
                                           continuous_update=False, readout_format=".2f")
        self.view = widgets.Image(format="png")
        self.caption = widgets.Label()
        self.widget = widgets.VBox([widgets.HBox([self.image, self.epoch]), self.level, self.opacity,
                                    self.view, self.caption])
        self.rgb: np.ndarray | None = None
        self._shown = None
        for control in self.controls.values():
            control.observe(lambda change: self.render(), names="value")
        self.render()

    @property
    def controls(self) -> dict[str, widgets.ValueWidget]:
        """The four controls by name."""
        return {"image": self.image, "level": self.level, "epoch": self.epoch, "opacity": self.opacity}

    @property
    def state(self) -> dict:
        """What is selected: image id, level, epoch and opacity."""
        return {"image": self.maps.ids[self.image.value], "level": self.level.value,
                "epoch": self.epoch.value, "opacity": round(float(self.opacity.value), 4)}

    @property
    def psi(self) -> np.ndarray:
        """The ψ map on screen at the gate's own resolution, ``(H / 2**level, W / 2**level)`` in [0, 1]."""
        return self.maps.map(self.level.value, self.image.value, self.epoch.value)

    @property
    def png(self) -> bytes:
        """The rendered figure as PNG bytes (what the browser shows)."""
        return bytes(self.view.value)

    def describe(self) -> str:
        """One line of numbers about the map shown: range, mean, spread and, with masks, inside vs outside."""
        psi = self.psi
        s = self.state
        text = (f"{s['image']}, gate level {s['level']} ({psi.shape[0]}x{psi.shape[1]}), epoch {s['epoch']}: "
                f"ψ min {psi.min():.2f}, mean {psi.mean():.2f}, max {psi.max():.2f}, sd {psi.std():.2f}")
        if self.masks is not None:
            mask = self.masks[self.image.value].astype(bool)
            full = upsample_to(psi, self.maps.image_size)
            if mask.any() and (~mask).any():
                text += (f"; mean inside lesion {full[mask].mean():.2f}, outside {full[~mask].mean():.2f}, "
                         f"AUC {lesion_auc(full, mask):.2f}")
        return text

    def render(self) -> None:
        """Draw the current selection into :attr:`view` (sets :attr:`rgb` and :attr:`png`)."""
        n = self.image.value
        mask = self.masks[n] if self.masks is not None else None
        self.rgb = overlay(self.images[n], self.psi, float(self.opacity.value), self.cmap, mask)
        s = self.state
        title = f"{s['image']}: ψ of gate level {s['level']}, epoch {s['epoch']}"
        if self._shown is None:  # the figure is built once; later renders only swap the picture and title
            fig = Figure(figsize=(6.4, 4.4), dpi=100)  # fixed axes: one draw per render
            FigureCanvasAgg(fig)
            ax = fig.add_axes((0.02, 0.03, 0.80, 0.82))
            ax.set_axis_off()
            bar = fig.colorbar(ScalarMappable(Normalize(0, 1), self.cmap), cax=fig.add_axes((0.84, 0.1, 0.03, 0.7)))
            bar.set_label("ψ (green: lesion outline)" if self.masks is not None else "ψ")
            if self.source:
                fig.suptitle(self.source, fontsize=9)
            self._figure, self._shown = fig, ax.imshow(self.rgb, interpolation="nearest")
            self._title = ax.set_title(title, fontsize=10)
        else:
            self._shown.set_data(self.rgb)
            self._title.set_text(title)
        buffer = io.BytesIO()
        self._figure.savefig(buffer, format="png", metadata={"Software": None}, pil_kwargs={"compress_level": 1})
        self.view.value = buffer.getvalue()
        self.caption.value = self.describe()

    def __repr__(self) -> str:
        return (f"PsiInspector: {self.maps.n_images} images, {self.maps.n_levels} gate levels, "
                f"epochs {list(map(int, self.maps.epochs))} (interactive with a running kernel)")

    def _repr_mimebundle_(self, **kwargs) -> dict:
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = repr(self)
        return bundle


__all__ = ["PsiInspector"]
