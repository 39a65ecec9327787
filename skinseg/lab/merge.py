"""Adding a slice's finished runs to the committed results::

    python -m skinseg merge slice.tgz --into results/isic2017

A merge is refused, in one line and before any file is written, when
:func:`skinseg.lab.experiment.folder_mismatch` refuses the runs, a run is already there, a file
differs from its manifest's sha256 or a JSON or CSV file cannot be read. The files are staged in
a hidden folder of the target and renamed into place; the manifest is kept as
``slices/<its UTC time>_<its hash>.json`` and ``summary.json`` is computed again.
"""
from __future__ import annotations

import filecmp
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import pandas as pd

from ..atomic import write_bytes_atomic
from ..errors import DataError
from ..lock import output_lock
from .archive import open_archive
from .experiment import MODEL_NAMES, folder_mismatch, write_summary
from .provenance import write_json
from .result_files import first_line

STAGE_PREFIX = ".merge-"  # the hidden folder a merge stages its files in
SUMMARY = "summary.json"  # never copied: computed again from every finished run
CONFIG = "config.json"  # kept by a folder with finished runs (the archive's differs in date and hardware)
_RUN_NAME = re.compile(r"(%s)_seed[0-9]+" % "|".join(MODEL_NAMES))


class MergeError(DataError):
    """An archive's runs cannot join the results folder (another recipe or dataset, a duplicate run)."""


def _pick(manifest: dict, archive: Path, into: Path, experiment: str | None) -> str:
    names = list(manifest["experiments"])
    if not names:
        raise MergeError(f"archive {archive} holds no finished runs (its slice started none)")
    if experiment is not None:
        if experiment not in names:
            raise MergeError(f"archive {archive} holds no experiment {experiment!r}; it holds {names}")
        return experiment
    if into.name in names:
        return into.name
    raise MergeError(f"archive {archive} holds no experiment named like {into} (it holds {', '.join(names)}); "
                     "name one with --experiment, or merge into results/<its name>")


def _run_of(relative: Path) -> str | None:
    """The run a file belongs to (``runs/unet_seed0.json``, ``external/ph2/per_image/unet_seed0.csv``
    -> ``unet_seed0``), or ``None`` for a file of the whole folder."""
    return relative.stem if _RUN_NAME.fullmatch(relative.stem) and len(relative.parts) > 1 else None


def _checked_runs(archive: Path, root: Path, name: str, into: Path) -> tuple[list[str], list[Path]]:
    """The runs of experiment ``name`` (extracted under ``root``) and its files, once every
    refusal has been ruled out; else :class:`MergeError`."""
    source = root / name
    if not (source / CONFIG).is_file():
        raise MergeError(f"archive {archive}: experiment {name!r} has no {name}/{CONFIG}")
    files = sorted(p.relative_to(source) for p in source.rglob("*") if p.is_file())
    for relative in files:  # a JSON or CSV file that cannot be read is refused
        path = source / relative
        try:
            if path.suffix == ".json" and not isinstance(json.loads(path.read_text()), dict):
                raise ValueError("not a JSON object")
            if path.suffix == ".csv" and pd.read_csv(path).empty:
                raise ValueError("no rows")
        except (ValueError, UnicodeDecodeError, OSError) as err:  # pandas' and json's parse errors are ValueErrors
            raise MergeError(f"archive {archive}: {name}/{relative.as_posix()} cannot be read "
                             f"({first_line(err)}); nothing was merged") from None
    runs = sorted({r for r in map(_run_of, files) if r is not None and (source / "runs" / f"{r}.json").is_file()})
    if not runs:
        raise MergeError(f"archive {archive}: experiment {name!r} has no finished runs to merge")
    problem = folder_mismatch(into, json.loads((source / CONFIG).read_text()))
    if problem:
        raise MergeError(f"archive {archive}: refused, its {name!r} runs are of {problem} than those in {into}")
    duplicates = [r for r in runs if (into / "runs" / f"{r}.json").exists()]
    if duplicates:
        raise MergeError(f"archive {archive}: refused, {into} already holds run {', '.join(duplicates)}")
    return runs, files


def _copy_runs(archive: Path, manifest: dict, root: Path, name: str, into: Path, log: Callable[[str], None]) -> dict:
    source = root / name
    with output_lock(into):
        runs, files = _checked_runs(archive, root, name, into)
        # a folder without finished runs takes the archive's files of the whole folder (config.json,
        # display.npz), replacing any stale ones; a folder with finished runs keeps its own
        fresh = not any((into / "runs").glob("*.json"))
        # files of unfinished runs (a run cut off by the call's end) are left out
        copied = [f for f in files if (_run_of(f) in runs) or (_run_of(f) is None and str(f) != SUMMARY)]
        record = {**manifest, "merged": {"experiment": name, "runs": runs}}
        stamp = manifest.get("created", "undated").replace(":", "").replace("+0000", "Z")
        # keyed by the manifest's own hash too: two slices made in the same second keep two records
        record_name = Path("slices") / f"{stamp}_{hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:12]}.json"
        # everything is staged in a hidden folder of into (one file system), then renamed into place
        for stale in into.glob(f"{STAGE_PREFIX}*"):  # left by a merge that was killed
            shutil.rmtree(stale, ignore_errors=True)
        stage = Path(tempfile.mkdtemp(prefix=STAGE_PREFIX, dir=into))
        try:
            moves = []
            for relative in copied:
                target = into / relative
                if _run_of(relative) is None and target.exists() and not fresh:
                    if str(relative) != CONFIG and not filecmp.cmp(source / relative, target, shallow=False):
                        log(f"kept {target}: the archive's copy differs (a shared file is written once)")
                    continue
                write_bytes_atomic(stage / relative, (source / relative).read_bytes())
                moves.append(relative)
            write_json(stage / record_name, record)
            for relative in sorted(moves, key=lambda r: _run_of(r) is not None and r.parts[0] == "runs") + [record_name]:
                (into / relative).parent.mkdir(parents=True, exist_ok=True)
                os.replace(stage / relative, into / relative)  # runs/<run>.json last: it marks a run finished
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        summary = write_summary(into)
    log(f"merged {len(runs)} run(s) of {name!r} from {archive} into {into}: {', '.join(runs)}; "
        f"{len(summary['seeds'])} of {len(summary['planned_seeds'])} seeds finished")
    return summary


def merge_archive(archive: Path | str, into: Path | str, *, experiment: str | None = None,
                  log: Callable[[str], None] = print) -> dict:
    """Merge the runs of one experiment of ``archive`` into the results folder ``into`` (created
    if missing) and return its new summary (:func:`skinseg.lab.experiment.write_summary`); raises
    :class:`MergeError` (a :class:`DataError`), with no file written, when the merge is refused."""
    archive, into = Path(archive), Path(into)
    with tempfile.TemporaryDirectory(prefix="skinseg_merge_") as tmp:
        manifest, root = open_archive(archive, Path(tmp))
        name = _pick(manifest, archive, into, experiment)
        return _copy_runs(archive, manifest, root, name, into, log)


def merge_each(archive: Path | str, results: Path | str, *, log: Callable[[str], None] = print) -> dict[str, dict]:
    """Merge every experiment of ``archive`` into ``results/<experiment>``; returns their new
    summaries. Every experiment is checked before any is merged."""
    archive, results = Path(archive), Path(results)
    with tempfile.TemporaryDirectory(prefix="skinseg_merge_") as tmp:
        manifest, root = open_archive(archive, Path(tmp))
        names = list(manifest["experiments"])
        if not names:
            raise MergeError(f"archive {archive} holds no finished runs (its slice started none)")
        for name in names:
            _checked_runs(archive, root, name, results / name)
        return {name: _copy_runs(archive, manifest, root, name, results / name, log) for name in names}
