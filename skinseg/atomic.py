"""Atomic file writes: a uniquely named temporary file in the target's folder, renamed over it.

Two writers never share a temporary file (its name holds the process id and a random
part), a crash leaves either the old file or the new one (never half a file), and the
result gets the usual mode of new files (``0o666`` less the umask), like every other output.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import BinaryIO, Callable

__all__ = ["temporary_path", "write_atomic", "write_bytes_atomic", "write_text_atomic"]


def temporary_path(path: Path) -> Path:
    """A fresh name beside ``path`` for this writer: ``.<name>.<pid>.<random>.tmp``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(f)`` on a new temporary binary file beside ``path``, then rename it over ``path``.

    The folder is created if needed; on any error the temporary file is removed and
    ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        with open(tmp, "xb") as f:  # "x": never another writer's file; mode follows the umask
            write(f)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    write_atomic(path, lambda f: f.write(data))


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))
