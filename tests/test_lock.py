"""One writer per output folder (skinseg.lock) and unique temporary files (skinseg.atomic)."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from skinseg.atomic import write_bytes_atomic, write_text_atomic
from skinseg.checkpoint import save_atomic
from skinseg.errors import FolderInUseError
from skinseg.lock import LOCK_NAME, locks_folder, output_lock

from conftest import child_env

HOLD = "import sys, time; from skinseg.lock import output_lock\nwith output_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)\n"


def _holder(folder: Path, cache: Path) -> subprocess.Popen:
    """Another process that holds ``folder`` until it is killed."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], env=child_env(cache),
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_process_is_refused_naming_the_folder_and_the_pid(tmp_path):
    folder = tmp_path / "run"
    holder = _holder(folder, tmp_path / "cache")
    try:
        with pytest.raises(FolderInUseError) as info:
            with output_lock(folder):
                pass
        message = str(info.value)
        assert f"output folder {folder} is in use" in message and f"PID {holder.pid}" in message
        assert (folder / LOCK_NAME).read_text().strip() == str(holder.pid)
    finally:
        holder.kill()
        holder.wait()
    # killed with SIGKILL, it left its lock file; the system released the lock all the same
    assert (folder / LOCK_NAME).exists()
    with output_lock(folder):
        assert (folder / LOCK_NAME).read_text().strip() == str(os.getpid())
    assert not (folder / LOCK_NAME).exists()


def test_the_lock_is_reentrant_within_a_process_and_released_on_errors(tmp_path):
    @locks_folder("out")
    def job(x, out=None):
        if out is not None:
            with output_lock(out):  # an inner function that locks the same folder again
                (Path(out) / "x.txt").write_text(str(x))
        return x

    assert job(1, out=tmp_path / "a") == 1 and job(2) == 2  # out=None: nothing to lock
    with pytest.raises(RuntimeError):
        with output_lock(tmp_path / "a"):
            raise RuntimeError("boom")
    assert not (tmp_path / "a" / LOCK_NAME).exists()
    holder = _holder(tmp_path / "a", tmp_path / "cache")
    try:
        with pytest.raises(FolderInUseError):
            job(3, out=tmp_path / "a")
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.wait()
    assert (tmp_path / "a" / "x.txt").read_text() == "1"


def test_atomic_writes_use_the_usual_mode_and_leave_nothing_behind(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "sub" / "a.json", "{}")
        write_bytes_atomic(tmp_path / "sub" / "a.json", b"[]")
        save_atomic({"a": torch.ones(2)}, tmp_path / "sub" / "last.pt")
    finally:
        os.umask(old)
    path = tmp_path / "sub" / "a.json"
    assert path.read_bytes() == b"[]"
    for written in (path, tmp_path / "sub" / "last.pt"):  # like every other output, not mkstemp's 0600
        assert stat.S_IMODE(written.stat().st_mode) == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.json", "last.pt"]


def test_images_and_numpy_archives_go_through_the_atomic_writer(tmp_path):
    from PIL import Image

    from skinseg.atomic import write_image_atomic, write_npz_atomic

    mask = np.zeros((4, 6), np.uint8)
    mask[1:3, 2:5] = 255
    write_image_atomic(tmp_path / "out" / "m.png", Image.fromarray(mask))
    write_npz_atomic(tmp_path / "out" / "a.npz", ids=np.array(["x"]), masks=mask)
    write_npz_atomic(tmp_path / "out" / "b.npz", False, masks=mask)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "m.png")), mask)
    for name in ("a.npz", "b.npz"):
        assert np.array_equal(np.load(tmp_path / "out" / name)["masks"], mask)
    with pytest.raises(ValueError, match=r"m\.xyz: no image format is known for the suffix '\.xyz'"):
        write_image_atomic(tmp_path / "out" / "m.xyz", Image.fromarray(mask))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.npz", "b.npz", "m.png"]


def test_evaluate_holds_its_output_folder(tmp_path, layout_2017, capsys):
    from skinseg.cli import main
    from skinseg.config import PROFILES
    from skinseg.lab.synthetic import make_synthetic
    from skinseg.models import UNet
    from skinseg.train import fit

    data = make_synthetic(4, (64, 64), seed=0)
    fit(UNet(4), data.subset(slice(0, 2)), data.subset(slice(2, 4)), PROFILES["tiny"].replace(epochs=1),
        tmp_path / "run", progress=False, device="cpu")
    out = tmp_path / "scores"
    holder = _holder(out, tmp_path / "cache")
    try:
        code = main(["evaluate", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--data", str(layout_2017),
                     "--device", "cpu", "--out", str(out / "a.csv")])
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"skinseg evaluate: error: output folder {out} is in use") and \
        f"PID {holder.pid}" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # the killed holder's; nothing written
    assert main(["evaluate", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--data", str(layout_2017),
                 "--device", "cpu", "--out", str(out / "a.csv")]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.csv", "a.json"]
