"""skinseg: U-Net and Attention U-Net for skin-lesion segmentation, and the library behind the book.

Two layers:

* the core, what a reader uses: :mod:`~skinseg.models`, :mod:`~skinseg.data` (reading,
  augmentation, the splits), :mod:`~skinseg.losses`, :mod:`~skinseg.metrics`,
  :mod:`~skinseg.step` and :mod:`~skinseg.train` (one step and the loop; its arguments and
  files checked by :mod:`~skinseg.train_edges`),
  :mod:`~skinseg.checkpoint`, :mod:`~skinseg.evaluate`, :mod:`~skinseg.psi`,
  :mod:`~skinseg.predict`, :mod:`~skinseg.plots`, :mod:`~skinseg.widgets`,
  :mod:`~skinseg.config` (the recipes), :mod:`~skinseg.paths` (where data and results are
  looked for), :mod:`~skinseg.images` (images and masks read as a viewer shows them) and the
  helpers :mod:`~skinseg.device`, :mod:`~skinseg.atomic`, :mod:`~skinseg.lock`,
  :mod:`~skinseg.errors`, :mod:`~skinseg.checks` (arguments checked at the public functions) and
  :mod:`~skinseg.outputs` (an output never replaces an input);
* :mod:`skinseg.lab`, how the book's numbers are made: experiments, slices and merges,
  sweeps, benchmarks and run costs, statistics, provenance and the leakage guard, the
  article's data protocol, the readers of the committed results, and the book's data
  analyses (artefacts, identical images). The lab imports the core, never the reverse.

The command line, :mod:`~skinseg.cli` (``python -m skinseg``), uses both. :mod:`~skinseg.colab`, the
chapters' first cell on Colab, is core: it only downloads the data.
"""
__version__ = "0.1.0"
