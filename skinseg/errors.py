"""Errors that skinseg raises for bad input.

Every error names the file or parameter at fault and what was expected. They all
derive from :class:`SkinsegError` (a ``ValueError``), which the command line turns
into one line on stderr and exit code 2.
"""


class SkinsegError(ValueError):
    """Base class of all of skinseg's input errors."""


class DataError(SkinsegError):
    """A data folder, image or mask is missing, unreadable or inconsistent."""


class DownloadError(SkinsegError):
    """A download failed, was truncated, or did not match its expected size or checksum."""


class CheckpointError(SkinsegError):
    """A checkpoint is missing, corrupt, or belongs to another architecture or width."""


class ConfigError(SkinsegError):
    """A configuration value or profile name is not valid."""


class TrainingError(SkinsegError):
    """Training cannot go on, for instance because the loss became NaN or infinite."""


class LeakageError(SkinsegError):
    """A model would be scored on images it was trained on, or may have been (see :mod:`skinseg.lab.leakage`)."""


class FolderInUseError(SkinsegError):
    """Another process is writing into the same output folder (see :mod:`skinseg.lock`)."""
