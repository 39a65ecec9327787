"""Reading one score column of a per-image table (``evaluate``'s CSV) with one-line errors."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .errors import DataError


def score_column(path, metric: str) -> pd.Series:
    """Column ``metric`` of the per-image CSV at ``path``, indexed by its ``id`` column, as float64.

    Raises :class:`DataError` naming ``path`` for a missing or unreadable file, no ``id`` column,
    no ``metric`` column, duplicated ids, text in the column, and missing (NaN) or infinite scores.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"per-image table {path} does not exist (write one with 'python -m skinseg evaluate')")
    try:
        table = pd.read_csv(path, keep_default_na=False, na_values=[""])  # "n/a" is text, an empty cell missing
    except (ValueError, OSError, pd.errors.ParserError) as err:
        raise DataError(f"cannot read per-image table {path}: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
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
    bad = scores[~scores.apply(lambda v: pd.notna(v) and abs(v) != float("inf"))]
    if len(bad):
        raise DataError(f"{path}: column {metric!r} has {len(bad)} missing or infinite score(s), e.g. for id "
                        f"{table['id'][bad.index[0]]!r}")
    return pd.Series(scores.to_numpy(float), index=table["id"].astype(str), name=metric)


__all__ = ["score_column"]
