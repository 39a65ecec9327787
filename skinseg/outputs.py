"""One rule for outputs: an output never replaces an input, nor a file that something else wrote.

* An output that is one of the command's inputs (the same file, or a file inside an input
  folder whose images the command reads) is refused before any work starts, ``--overwrite``
  or not; so are two outputs of one command that are the same file.
* An existing output is replaced only when this command wrote it (``own``: it says so, see
  :func:`written_by`) or when the user asks with ``overwrite=True`` (``--overwrite``).

The checks raise :class:`~skinseg.errors.ConfigError`, one line naming the file.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from .errors import ConfigError

WRITTEN_BY = "written_by"  # the key of a JSON output that names the command that wrote it


def _key(path) -> Path:
    return Path(path).resolve()


def written_by(json_path, command: str) -> bool:
    """Whether ``json_path`` is a JSON object that ``command`` wrote (``{"written_by": "skinseg <command>"}``)."""
    try:
        content = json.loads(Path(json_path).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(content, dict) and content.get(WRITTEN_BY) == f"skinseg {command}"


def check_outputs(outputs: Iterable, inputs: Iterable = (), *, own: Iterable = (), overwrite: bool = False,
                  input_folders: Iterable = ()) -> None:
    """Refuse, before any work, outputs that would replace an input or a file this command did not write.

    Args:
        outputs: the files the command is about to write.
        inputs: the files it reads.
        input_folders: folders whose files it reads (an output may not be written inside one).
        own: existing files that this command wrote earlier, which it may replace.
        overwrite: replace existing files that something else wrote too (``--overwrite``).
    """
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


__all__ = ["WRITTEN_BY", "check_outputs", "written_by"]
