"""Reading the files skinseg wrote (a results folder, ``evaluate``'s per-image tables): a file
that was truncated, edited or lost raises one :class:`~skinseg.errors.DataError` naming it."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError

_HINT = "restore it (git checkout, or the slice archive it came from) or delete its run and run it again"


def first_line(err: Exception) -> str:
    """The first line of an error message, or its type when it has none."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _existing(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"results file {path} is missing")
    return path


def read_json(path) -> dict:
    """The JSON object in ``path``, or :class:`DataError` naming it when it is missing or damaged."""
    path = _existing(path)
    try:
        content = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise DataError(f"results file {path} is damaged: not valid JSON ({first_line(err)}); {_HINT}") from None
    if not isinstance(content, dict):
        raise DataError(f"results file {path} is damaged: expected a JSON object, got {type(content).__name__}; {_HINT}")
    return content


def read_table(path, index_col: str | None = "id") -> pd.DataFrame:
    """The CSV table in ``path`` (indexed by ``index_col``), or :class:`DataError` naming it."""
    path = _existing(path)
    try:
        table = pd.read_csv(path, index_col=index_col)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise DataError(f"results file {path} is damaged: not a readable CSV table ({first_line(err)}); {_HINT}") from None
    return table


def array_names(path) -> set[str]:
    """The names of the arrays in the ``.npz`` file ``path`` (none is read), or :class:`DataError` naming it."""
    return _from_npz(path, lambda z: set(z.files))


def read_arrays(path, names=None) -> dict[str, np.ndarray]:
    """Arrays ``names`` (default: all) of the ``.npz`` file ``path``, or :class:`DataError` naming it."""
    return _from_npz(path, lambda z: {name: z[name] for name in (z.files if names is None else names)})


def _from_npz(path, read):
    path = Path(path)
    try:
        with np.load(path) as z:
            return read(z)
    except FileNotFoundError:
        raise DataError(f"results file {path} is missing") from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"results file {path} is damaged ({first_line(err)}); {_HINT}") from None


def score_column(path, metric: str) -> pd.Series:
    """Column ``metric`` of ``evaluate``'s per-image CSV at ``path``, indexed by its ``id`` column,
    as float64. Raises :class:`DataError` naming ``path`` for a missing or unreadable file, a
    missing ``id`` or ``metric`` column, duplicated ids, text, and missing or infinite scores."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"per-image table {path} does not exist (write one with 'python -m skinseg evaluate')")
    try:
        table = pd.read_csv(path, keep_default_na=False, na_values=[""])  # "n/a" is text, an empty cell missing
    except (ValueError, OSError, pd.errors.ParserError) as err:
        raise DataError(f"cannot read per-image table {path}: {first_line(err)}") from None
    if "id" not in table:
        raise DataError(f"{path} has no column 'id' (the image ids); it has {list(table.columns)[:8]}")
    if metric not in table:
        raise DataError(f"{path} has no column {metric!r}; it has {[c for c in table.columns if c != 'id'][:12]}")
    twice = table["id"][table["id"].duplicated()]
    if len(twice):
        raise DataError(f"{path} has {len(twice)} duplicated id(s), e.g. {twice.iloc[0]!r}: one row per image")
    scores = pd.to_numeric(table[metric], errors="coerce")
    text = table[metric][scores.isna() & table[metric].notna()]
    if len(text):
        raise DataError(f"{path}: column {metric!r} holds text, e.g. {text.iloc[0]!r} for id {table['id'][text.index[0]]!r}")
    bad = scores[~np.isfinite(scores)]
    if len(bad):
        raise DataError(f"{path}: column {metric!r} has {len(bad)} missing or infinite score(s), e.g. for id "
                        f"{table['id'][bad.index[0]]!r}")
    return pd.Series(scores.to_numpy(float), index=table["id"].astype(str), name=metric)
