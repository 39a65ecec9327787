"""One ``.tgz`` per GPU slice: ``manifest.json`` first, then ``<experiment>/...``, every file the
slice's runs wrote. The manifest records ``format``, ``created`` (UTC), ``environment``,
``budget_seconds``, ``seconds``, per experiment its recipe, data and runs (:func:`experiment_entry`),
and ``files``: the sha256 of every other file, which :func:`open_archive` checks.
"""
from __future__ import annotations

import datetime
import hashlib
import io
import json
import tarfile
import tempfile
from pathlib import Path

from ..atomic import write_atomic
from ..errors import DataError

FORMAT = "skinseg-slice 2"  # 2: the manifest holds every file's sha256
MANIFEST = "manifest.json"
SKIPPED_NAMES = (".skinseg.lock",)  # the folder lock (skinseg.lock) is not a result


def experiment_entry(folder: Path) -> dict:
    """The manifest entry of one experiment folder: its recipe, data and finished runs."""
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    runs = {path.stem: json.loads(path.read_text()) for path in sorted((folder / "runs").glob("*.json"))}
    return {"recipe": config.get("recipe"), "profile": config["profile"]["name"], "label": config["label"],
            "protocol": config.get("protocol"), "data_hash": config.get("data_hash"),
            "evaluation": config.get("evaluation"),
            "runs": {name: {"wall_seconds": run.get("wall_seconds"), "train_seconds": run.get("train_seconds"),
                            "device": run.get("environment", config["environment"])["device"]} for name, run in runs.items()}}


def pack_slice(folders: dict[str, Path], archive: Path, *, environment: dict, budget_seconds: float | None,
               seconds: float, log_text: str = "") -> dict:
    """Write ``archive`` (a ``.tgz``) holding the experiment ``folders`` (``{name: folder}``; those
    without a finished run are left out), the manifest, which it returns, and ``log_text`` as ``slice.log``."""
    folders = {name: Path(f) for name, f in folders.items() if any((Path(f) / "runs").glob("*.json"))}
    contents = {f"{name}/{path.relative_to(folder).as_posix()}": path.read_bytes() for name, folder in folders.items()
                for path in sorted(folder.rglob("*"))
                if path.is_file() and path.name not in SKIPPED_NAMES and not path.name.endswith(".tmp")
                and not any(part.startswith(".") for part in path.relative_to(folder).parts)}
    if log_text:
        contents["slice.log"] = log_text.encode()
    manifest = {"format": FORMAT,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "environment": environment, "budget_seconds": budget_seconds, "seconds": seconds,
                "experiments": {name: experiment_entry(folder) for name, folder in folders.items()},
                "files": {arcname: hashlib.sha256(data).hexdigest() for arcname, data in sorted(contents.items())}}

    def write(f) -> None:
        with tarfile.open(fileobj=f, mode="w:gz") as tar:
            # the manifest first, then the bytes that were hashed, whatever happens to the files since
            for arcname, data in {MANIFEST: json.dumps(manifest, indent=1).encode(), **contents}.items():
                info = tarfile.TarInfo(arcname)
                info.size, info.mtime = len(data), 0
                tar.addfile(info, io.BytesIO(data))

    write_atomic(Path(archive), write)
    return manifest


def is_slice_archive(path: Path) -> bool:
    """Whether ``path`` is a ``.tgz`` that starts with a slice manifest (:func:`pack_slice` writes it first)."""
    try:
        with tarfile.open(path, "r:*") as tar:
            return getattr(tar.next(), "name", None) == MANIFEST
    except (tarfile.TarError, OSError, EOFError):
        return False


def open_archive(archive: Path, into: Path | None = None) -> tuple[dict, Path]:
    """Extract ``archive`` (tarfile's ``data`` filter) into ``into`` (default a new temporary folder);
    returns ``(manifest, folder)``. Raises :class:`DataError` for a missing or unreadable archive, one
    without a manifest of this format, and a file changed, missing or added since it was packed."""
    archive = Path(archive)
    if not archive.is_file():
        raise DataError(f"archive {archive} does not exist")
    folder = Path(into) if into is not None else Path(tempfile.mkdtemp(prefix="skinseg_slice_"))
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(folder, filter="data")
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(f"archive {archive} cannot be read as a .tgz ({err})") from None
    path = folder / MANIFEST
    if not path.is_file():
        raise DataError(f"archive {archive} has no {MANIFEST}; expected an archive written by 'python -m skinseg slice'")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{MANIFEST} of archive {archive} is not valid JSON ({err})") from None
    if manifest.get("format") != FORMAT:
        raise DataError(f"archive {archive} has format {manifest.get('format')!r}, expected {FORMAT!r}")
    recorded = manifest.get("files")
    if not isinstance(recorded, dict) or not isinstance(manifest.get("experiments"), dict):
        raise DataError(f"{MANIFEST} of archive {archive} lacks its 'files' or 'experiments'; expected an archive "
                        "written by 'python -m skinseg slice'")
    held = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST}
    for name in sorted(held.keys() - recorded.keys()):
        raise DataError(f"archive {archive} holds {name}, which its manifest does not list: it was changed after packing")
    for name in sorted(recorded.keys() - held.keys()):
        raise DataError(f"archive {archive} lacks {name}, which its manifest lists: it is incomplete")
    for name, path in sorted(held.items()):
        if hashlib.sha256(path.read_bytes()).hexdigest() != recorded[name]:
            raise DataError(f"archive {archive}: {name} differs from the sha256 its manifest recorded when it was "
                            "packed: it was changed or damaged since; nothing was merged")
    return manifest, folder
