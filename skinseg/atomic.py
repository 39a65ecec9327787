"""Atomic file writes: a temporary file of this writer's own (``.<name>.<pid>.<random>.tmp``) in
the target's folder, renamed over it, so a crash leaves the old file or the new one, never half a
file. Every file the library writes goes through :func:`write_atomic` (checkpoints through
:func:`skinseg.checkpoint.save_atomic`) and gets the usual mode of new files (``0o666`` less the umask).
"""
from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import BinaryIO, Callable

__all__ = ["remove_stale_temporaries", "temporary_path", "write_atomic", "write_bytes_atomic", "write_image_atomic",
           "write_npz_atomic", "write_text_atomic"]


def temporary_path(path: Path) -> Path:
    """A fresh name beside ``path`` for this writer: ``.<name>.<pid>.<random>.tmp``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(f)`` on a new temporary binary file beside ``path``, then rename it over ``path``.

    The folder is created if needed; on any error the temporary file is removed and
    ``path`` is left as it was. A failed write (a full disk, and torch's own error for one)
    raises :class:`OSError` naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        with open(tmp, "xb") as f:  # "x": never another writer's file; mode follows the umask
            write(f)
        os.replace(tmp, path)
    except OSError as err:
        if err.filename is None or Path(err.filename) == tmp:
            raise OSError(err.errno, f"cannot write {path}: {err.strerror or err}") from None
        raise
    except RuntimeError as err:  # torch.save reports a failed write as a C++ assertion
        if "PytorchStreamWriter" not in str(err) and "inline_container" not in str(err):
            raise
        free = shutil.disk_usage(path.parent).free / 2**20
        raise OSError(errno.EIO, f"cannot write {path}: the write failed ({free:.0f} MB free on its disk; "
                                 "is it full?)") from None
    finally:
        tmp.unlink(missing_ok=True)


_WINDOWS = os.name == "nt"
_TEMPORARY = re.compile(r"\.(.+)\.([0-9]+)\.[0-9a-f]{8}\.tmp")


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary files of :func:`write_atomic` in ``folder`` whose writer is gone
    (killed during a write); returns them. Call it while holding the folder (:mod:`skinseg.lock`).
    On Windows no other process's temporary is removed: whether its writer is gone is not asked there."""
    removed = []
    for path in Path(folder).glob(".*.tmp"):
        match = _TEMPORARY.fullmatch(path.name)
        if match and int(match.group(2)) != os.getpid() and not _alive(int(match.group(2))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    if _WINDOWS:  # os.kill(pid, 0) terminates the process there: keep its file instead
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def write_bytes_atomic(path: Path, data: bytes) -> None:
    write_atomic(path, lambda f: f.write(data))


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_npz_atomic(path: Path, compressed: bool = True, **arrays) -> None:
    """``numpy.savez_compressed`` (or, with ``compressed=False``, ``numpy.savez``) of ``arrays`` to ``path``."""
    import numpy as np

    save = np.savez_compressed if compressed else np.savez
    write_atomic(path, lambda f: save(f, **arrays))


def write_image_atomic(path: Path, image, **options) -> None:
    """Save the PIL ``image`` to ``path`` in the format its suffix names (``.png``, ``.jpg``), with PIL's ``options``."""
    from PIL import Image

    suffix = Path(path).suffix.lower()
    if suffix not in Image.registered_extensions():
        raise ValueError(f"{path}: no image format is known for the suffix {suffix!r}")
    write_atomic(path, lambda f: image.save(f, format=Image.registered_extensions()[suffix], **options))
