"""One writer per output folder: an exclusive :class:`filelock.FileLock` on ``<folder>/.skinseg.lock``.

Usage::

    with output_lock(Path("runs/att")):   # FolderInUseError at once if another process holds it
        ...                               # write into runs/att

    @locks_folder("out_dir")              # the same, for the folder a function's argument names
    def run_experiment(data_root, out_dir, ...): ...

The operating system releases the lock when the holder exits, however it exits (even
``kill -9``), so a stale lock file never blocks a later run. The holder's PID is written
into the lock file so that a refused writer can name it. Within one process the lock is
re-entrant: an experiment that holds its folder may call functions that lock it again.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import os
import threading
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from .atomic import remove_stale_temporaries
from .errors import FolderInUseError

__all__ = ["LOCK_NAME", "output_lock", "locks_folder"]

LOCK_NAME = ".skinseg.lock"

_held: dict[Path, list] = {}  # folder -> [FileLock, depth], for this process
_guard = threading.Lock()


def _holder(lock_file: Path) -> str:
    try:
        pid = lock_file.read_text().strip()
    except OSError:
        pid = ""
    return f"PID {pid}" if pid.isdigit() else "a process that is just starting"


def _acquire(folder: Path) -> FileLock:
    lock_file = folder / LOCK_NAME
    lock = FileLock(lock_file, thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise FolderInUseError(f"output folder {folder} is in use by another skinseg process "
                               f"({_holder(lock_file)}, lock file {lock_file}); wait for it to "
                               f"finish or choose another output folder") from None
    with contextlib.suppress(OSError):  # where the system forbids writing a locked file, the PID goes unnamed
        lock_file.write_text(f"{os.getpid()}\n")
    return lock


@contextlib.contextmanager
def output_lock(folder: Path | str) -> Iterator[Path]:
    """Hold ``folder`` (created if missing) exclusively for this process while the block runs.

    Raises:
        FolderInUseError: another process holds it; the message names the folder and its PID.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = folder.resolve()
    with _guard:
        if key in _held:
            _held[key][1] += 1
        else:
            _held[key] = [_acquire(folder), 1]
            remove_stale_temporaries(folder)  # left by a writer killed mid-write
    try:
        yield folder
    finally:
        with _guard:
            entry = _held[key]
            entry[1] -= 1
            if entry[1] == 0:
                del _held[key]
                with contextlib.suppress(OSError):  # removed while still held: no stale file is left behind
                    (key / LOCK_NAME).unlink(missing_ok=True)
                entry[0].release()


def locks_folder(argument: str):
    """Decorator: hold the folder given as ``argument`` (if not None) while the function runs."""
    def decorate(func):
        signature = inspect.signature(func)

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            folder = bound.arguments.get(argument)
            if folder is None:
                return func(*args, **kwargs)
            with output_lock(folder):
                return func(*args, **kwargs)
        return wrapper
    return decorate
