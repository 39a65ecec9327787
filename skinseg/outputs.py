"""One rule for outputs: an output never replaces an input, nor a file that something else wrote
(unless ``--overwrite``), and an output folder is never a data folder. The checks run before any
work and raise :class:`~skinseg.errors.ConfigError`, one line naming the file."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from .errors import ConfigError, DataError

WRITTEN_BY = "written_by"  # the key of a JSON output that names the command that wrote it


def _key(path) -> Path:
    return Path(path).resolve()


def _json_object(json_path) -> dict:
    """The JSON object in ``json_path``; ``{}`` for a missing or unreadable file, or other JSON."""
    try:
        content = json.loads(Path(json_path).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return content if isinstance(content, dict) else {}


def written_by(json_path, command: str) -> bool:
    """Whether ``json_path`` is a JSON object that ``command`` wrote (``{"written_by": "skinseg <command>"}``)."""
    return _json_object(json_path).get(WRITTEN_BY) == f"skinseg {command}"


def holds_keys(json_path, *keys: str) -> bool:
    """Whether ``json_path`` is a JSON object with all of ``keys``: a report whose shape says which command wrote it."""
    content = _json_object(json_path)
    return bool(content) and all(k in content for k in keys)


def check_outputs(outputs: Iterable, inputs: Iterable = (), *, own: Iterable = (), overwrite: bool = False,
                  input_folders: Iterable = ()) -> None:
    """Refuse ``outputs`` that are one file twice, one of the ``inputs``, inside one of the
    ``input_folders``, or existing files that are not among ``own`` (what this command wrote
    earlier), unless ``overwrite`` (``--overwrite``; never for inputs)."""
    outputs = [Path(p) for p in outputs]
    keys = [_key(p) for p in outputs]
    for i, key in enumerate(keys):
        if key in keys[:i]:
            raise ConfigError(f"two outputs of this command are the same file {outputs[i]}: choose another --out")
    read = {_key(p): Path(p) for p in inputs}
    folders = {_key(p): Path(p) for p in input_folders}
    owned = {_key(p) for p in own}
    for path, key in zip(outputs, keys):
        if key in read:
            raise ConfigError(f"output {path} is also an input of this command ({read[key]}): it would be "
                              "overwritten; choose another --out")
        if key.parent in folders:
            raise ConfigError(f"output {path} would be written into the input folder {folders[key.parent]}: "
                              "choose another --out")
        if path.exists() and key not in owned and not overwrite:
            raise ConfigError(f"{path} exists and was not written by this command: choose another --out, "
                              "or add --overwrite to replace it")


def _holds_data(folder: Path) -> bool:
    """Whether ``folder`` is a dataset that skinseg reads or holds image or mask files itself."""
    from .data.folders import IMAGE_EXTENSIONS, detect_layout

    if not folder.is_dir():
        return False
    try:
        detect_layout(folder)
        return True
    except DataError:
        return any(p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() for p in folder.iterdir())


def check_out_of_data(folder, data: Iterable = (), flag: str = "--out", output=None) -> None:
    """Refuse an output ``folder`` (of the file ``output``, if given) that is one of the ``data``
    folders, lies below one in a folder of images or a dataset, or holds a dataset or images itself."""
    folder = Path(folder)
    roots = [_key(d) for d in data]
    below = [p for p in folder.parents if any(r in _key(p).parents for r in roots)]  # between a data folder and it
    for place in [folder, *below]:
        if _key(place) in roots or _holds_data(place):
            raise ConfigError(f"{flag} {output or folder} would write into the data folder {place}, among the images and "
                              f"masks: choose another {flag}")


__all__ = ["WRITTEN_BY", "check_out_of_data", "check_outputs", "holds_keys", "written_by"]
