"""One writer per output folder: an exclusive :class:`filelock.FileLock` on ``<folder>/.skinseg.lock``,
re-entrant within a process (:func:`output_lock`, or :func:`locks_folder` for a function's argument).

The operating system releases the lock when the holder exits, however it exits (even ``kill -9``),
so a stale lock file never blocks a later run. The holder writes its PID into the lock file so
that a refused writer can name it.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import os
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from .atomic import remove_stale_temporaries
from .errors import FolderInUseError

__all__ = ["LOCK_NAME", "output_lock", "locks_folder"]

LOCK_NAME = ".skinseg.lock"


@contextlib.contextmanager
def output_lock(folder: Path | str) -> Iterator[Path]:
    """Hold ``folder`` (created if missing) exclusively for this process while the block runs.

    Raises:
        FolderInUseError: another process holds it; the message names the folder and its PID.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock_file = folder / LOCK_NAME
    # one lock object per folder in this process, re-entrant: an experiment that holds its
    # folder calls functions that lock it again
    lock = FileLock(folder.resolve() / LOCK_NAME, thread_local=False, is_singleton=True)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            pid = lock_file.read_text().strip()
        except OSError:
            pid = ""
        holder = f"PID {pid}" if pid.isdigit() else "a process that is just starting"
        raise FolderInUseError(f"output folder {folder} is in use by another skinseg process "
                               f"({holder}, lock file {lock_file}); wait for it to "
                               f"finish or choose another output folder") from None
    if lock.lock_counter == 1:
        with contextlib.suppress(OSError):  # where the system forbids writing a locked file, the PID goes unnamed
            lock_file.write_text(f"{os.getpid()}\n")
        remove_stale_temporaries(folder)  # left by a writer killed mid-write
    try:
        yield folder
    finally:
        if lock.lock_counter == 1:
            with contextlib.suppress(OSError):  # removed while still held: no stale file is left behind
                lock_file.unlink(missing_ok=True)
        lock.release()


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
