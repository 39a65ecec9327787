"""Where skinseg looks for the data, the committed results and its cache, and the files of a training run.

The environment variables ``SKINSEG_DATA``, ``SKINSEG_RESULTS`` and ``SKINSEG_CACHE`` override
the defaults.
"""
from __future__ import annotations

import os
from pathlib import Path

LAST, BEST, HISTORY = "last.pt", "best.pt", "history.json"  # a training run's folder (skinseg.train.fit)


def default_data_dir() -> Path:
    """Where the ISIC data is looked for.

    ``$SKINSEG_DATA`` if set; else the first ``shared/data/isic2017`` found beside the current
    folder or one of its parents (the layout of this project's CI); else ``./data/isic2017``,
    where ``python -m skinseg download`` puts it.
    """
    if env := os.environ.get("SKINSEG_DATA"):
        return Path(env).expanduser()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        candidate = folder / "shared" / "data" / "isic2017"
        if candidate.is_dir():
            return candidate
    return Path("data") / "isic2017"


def results_dir() -> Path:
    """The committed results folder: ``$SKINSEG_RESULTS``, else the first ``results/`` holding a
    ``README.md`` (an experiment's folder inside it may not exist yet) beside the current folder
    or one of its parents (chapters run from ``book/``)."""
    if env := os.environ.get("SKINSEG_RESULTS"):
        return Path(env).expanduser()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "results" / "README.md").is_file():
            return folder / "results"
    return Path("results")


def cache_dir() -> Path:
    """Where decoded, resized uint8 arrays are cached: ``$SKINSEG_CACHE`` or ``~/.cache/skinseg``."""
    return Path(os.environ.get("SKINSEG_CACHE", Path.home() / ".cache" / "skinseg")).expanduser()
