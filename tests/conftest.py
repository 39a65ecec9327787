"""Shared fixtures and helpers: small SYNTHETIC ISIC layouts, an isolated cache, ``python -m skinseg`` runs.

Everything here is small (64x64 images, a handful of files, width 4-8 networks) so that
the whole suite runs in a few minutes on two CPU cores.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from skinseg.data.synthetic import write_isic_layout

REPO = Path(__file__).resolve().parents[1]
SIZE = (64, 64)

# One thread per process: the networks here are tiny, and on a shared machine with two
# cores several threads per process mostly wait for each other (several times slower).
# Child processes get the same setting, which also keeps their arithmetic like ours.
THREADS = "1"
torch.set_num_threads(int(THREADS))


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch, tmp_path_factory):
    """Keep decoded-array caches out of the home folder and ignore a profile set in the shell."""
    monkeypatch.setenv("SKINSEG_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.delenv("SKINSEG_PROFILE", raising=False)


@pytest.fixture(scope="session")
def layout_2017(tmp_path_factory) -> Path:
    """A SYNTHETIC ISIC 2017 layout: 8 train, 4 val, 4 test images of 64x64. Read only."""
    return write_isic_layout(tmp_path_factory.mktemp("isic2017"), "2017", n_train=8, n_val=4, n_test=4,
                             size=SIZE, seed=0)


@pytest.fixture(scope="session")
def layout_2016(tmp_path_factory) -> Path:
    """A SYNTHETIC ISIC 2016 layout: 20 training images (16 train + 4 val) and 4 test images. Read only."""
    return write_isic_layout(tmp_path_factory.mktemp("isic2016"), "2016", n_train=20, n_test=4, size=SIZE, seed=1)


@pytest.fixture
def layout_copy(layout_2017, tmp_path) -> Path:
    """A private, writable copy of :func:`layout_2017` for tests that damage it."""
    return Path(shutil.copytree(layout_2017, tmp_path / "data"))


def child_env(cache: Path) -> dict[str, str]:
    """Environment for a ``python -m skinseg`` child process: its own cache, no inherited profile."""
    env = {k: v for k, v in os.environ.items() if k != "SKINSEG_PROFILE"}
    env["SKINSEG_CACHE"] = str(cache)
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = THREADS
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def run_cli(args: list[str], cwd: Path, cache: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m skinseg *args`` and capture its output."""
    return subprocess.run([sys.executable, "-m", "skinseg", *map(str, args)], cwd=cwd, env=child_env(cache),
                          capture_output=True, text=True, timeout=timeout)


@dataclass(frozen=True)
class BookBuild:
    """One Jupyter Book build: the HTML folder, the build's log and its exit code."""

    html: Path
    log: str
    returncode: int


@pytest.fixture(scope="session")
def built_book(tmp_path_factory) -> BookBuild:
    """The book built once per test session (warnings as errors, nitpicky), for every test that reads it."""
    out = tmp_path_factory.mktemp("book")
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    result = subprocess.run([str(jupyter_book), "build", str(REPO), "--path-output", str(out), "--warningiserror",
                             "--nitpick", "--keep-going"], capture_output=True, text=True, cwd=REPO)
    return BookBuild(out / "_build" / "html", result.stdout + result.stderr, result.returncode)
