"""Checks of command-line values, as ``argparse`` types (``p.add_argument("--limit", type=positive_int)``),
each raising :class:`argparse.ArgumentTypeError` that says what was expected and what was given, and
:class:`OneLineParser`, which prints it as one line, ``skinseg <command>: error: argument --x: expected
..., got ...``, on stderr with exit code 2."""
from __future__ import annotations

import argparse
import re
from pathlib import Path
from urllib.parse import urlparse

from .config import INPUT_MULTIPLE, check_image_size
from .errors import ConfigError

MAX_WIDTH = 512  # base channels; the article's network has 64, and 512 already needs ~64x its memory
MAX_IMAGE_SIDE = 4096


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` (and, through ``add_subparsers``, its sub-parsers) whose usage
    errors are one line on stderr, ``skinseg <command>: error: ...``, with exit code 2."""

    def error(self, message: str, prog: str | None = None):
        prog = prog or self.prog
        self.exit(2, f"{prog.removeprefix('python -m ')}: error: {' '.join(message.split())} (see {prog} --help)\n")

    def parse_args(self, args=None, namespace=None):
        # as argparse's, but unknown options are reported as the sub-command's
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            command = getattr(parsed, "command", None)
            self.error(f"unrecognized arguments: {' '.join(extras)}", f"{self.prog} {command}" if command else None)
        return parsed


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def bounded_int(low: int, high: int | None = None):
    """A type for integers in ``[low, high]`` (no upper bound when ``high`` is None)."""
    def check(text: str) -> int:
        value = _int(text)
        if value < low or (high is not None and value > high):
            wanted = f"of at least {low}" if high is None else f"from {low} to {high}"
            raise argparse.ArgumentTypeError(f"expected an integer {wanted}, got {text!r}")
        return value
    return check


positive_int = bounded_int(1)
nonnegative_int = bounded_int(0)
width = bounded_int(1, MAX_WIDTH)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def image_side(text: str) -> int:
    """An image height or width: a positive multiple of 16 (the networks halve it four times)."""
    value = _int(text)
    try:
        check_image_size((value, value))
    except ConfigError:
        value = 0
    if not 0 < value <= MAX_IMAGE_SIDE:
        raise argparse.ArgumentTypeError(f"expected a multiple of {INPUT_MULTIPLE} from {INPUT_MULTIPLE} to "
                                         f"{MAX_IMAGE_SIDE} (the networks halve it four times), got {text!r}")
    return value


def existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"expected an existing file, got {text!r} "
                                         f"({'a folder' if path.is_dir() else 'no such file'})")
    return path


def _output(folder: bool):
    """A type for a folder (``folder``) or a file to write: not an existing one of the other kind, nor inside a file."""
    def check(text: str) -> Path:
        path = Path(text)
        if folder and path.exists() and not path.is_dir():
            raise argparse.ArgumentTypeError(f"expected a folder to write into, got the existing file {text!r}")
        if not folder and (path.is_dir() or text.endswith(("/", "\\"))):
            raise argparse.ArgumentTypeError(f"expected a file name to write, got the folder {text!r}")
        parent = next((p for p in path.parents if p.exists()), path)  # the nearest existing folder above
        if parent != path and not parent.is_dir():
            raise argparse.ArgumentTypeError(f"expected a path in a folder, got {text!r}, but {parent} is a file")
        return path
    return check


output_file = _output(folder=False)
output_folder = _output(folder=True)


def device(text: str) -> str:
    """``cpu``, ``cuda``, ``cuda:N`` or ``mps``, available on this machine (imports torch unless cpu)."""
    if text == "cpu":
        return text
    if not re.fullmatch(r"cuda(:\d+)?|mps", text):
        raise argparse.ArgumentTypeError(f"device must be cpu, cuda, cuda:N or mps, got {text!r}")
    from .device import resolve_device
    try:
        resolve_device(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def url(text: str) -> str:
    """An ``http://`` or ``https://`` address with a host."""
    parts = urlparse(text)
    ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    try:
        parts.port  # raises ValueError for a port that is not a number
    except ValueError:
        ok = False
    if not ok or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError(f"expected a URL such as https://host/path, got {text!r}")
    return text
