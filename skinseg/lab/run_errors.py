"""Checkpoint errors of :func:`skinseg.train.fit` told in the words of the command that called it.

``fit``'s refusal to resume a run of another recipe or data suggests ``--no-resume``, an
option of ``train`` only; ``experiment`` and ``sweep`` keep one folder per run instead.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from ..errors import CheckpointError
from ..train_edges import RESTART as _TRAIN_HINT


@contextlib.contextmanager
def run_folder_hint(run_dir: Path, command: str) -> Iterator[None]:
    """Within the block, a :class:`CheckpointError` that suggests ``--no-resume`` suggests instead
    deleting ``run_dir`` or choosing another ``--work-dir``, which ``command`` has."""
    try:
        yield
    except CheckpointError as err:
        text = " ".join(str(err).split())
        if _TRAIN_HINT not in text and "--no-resume" not in text:
            raise
        cut = text.index("Use another output folder") if _TRAIN_HINT in text else text.index("--no-resume")
        raise CheckpointError(f"{text[:cut].rstrip()} Delete {run_dir} to start this run again, or give "
                              f"{command} another --work-dir") from None
