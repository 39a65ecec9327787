"""Commands report only what they did: the profile and results folder they were told to use,
files named when a write fails, and no temporary file left by a killed write."""
from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

from skinseg.lab import experiment, slice as slice_module, sweep
from skinseg.atomic import write_atomic, write_bytes_atomic
from skinseg.checkpoint import load_checkpoint
from skinseg.cli import main
from skinseg.lock import output_lock


@pytest.fixture
def captured(monkeypatch):
    calls = {}
    for module, name in ((experiment, "run_experiment"), (sweep, "run_sweep"), (slice_module, "run_slice")):
        monkeypatch.setattr(module, name, lambda *args, _name=name, **kwargs: calls.setdefault(_name, (args, kwargs)))
    return calls


def test_experiment_and_sweep_without_out_write_into_skinseg_results(captured, monkeypatch, tmp_path):
    monkeypatch.setenv("SKINSEG_RESULTS", str(tmp_path / "mine"))
    monkeypatch.setenv("SKINSEG_PROFILE", "tiny")
    assert main(["experiment", "--data", str(tmp_path)]) == 0
    assert main(["sweep", "--data", str(tmp_path)]) == 0
    assert captured["run_experiment"][0][1] == tmp_path / "mine" / "isic2017"
    assert captured["run_sweep"][0][1] == tmp_path / "mine" / "sweep"


@pytest.mark.parametrize("env, expected", [("tiny", "tiny"), (None, "smoke")])
def test_slice_honours_skinseg_profile_and_runs_no_gpu_recipe_on_a_cpu(captured, monkeypatch, tmp_path, env, expected):
    if env:
        monkeypatch.setenv("SKINSEG_PROFILE", env)
    else:
        monkeypatch.delenv("SKINSEG_PROFILE", raising=False)
    assert main(["slice", "--data", str(tmp_path / "data"), "--archive", str(tmp_path / "s.tgz"), "--device", "cpu"]) == 0
    assert captured["run_slice"][1]["profile"].name == expected


def test_a_temporary_file_of_a_killed_write_is_removed_when_the_folder_is_next_held(tmp_path):
    child = subprocess.run([sys.executable, "-c", "import os\nfrom skinseg.atomic import write_atomic\n"
                            f"write_atomic(__import__('pathlib').Path({str(tmp_path / 'last.pt')!r}), "
                            "lambda f: (f.write(b'half'), os.kill(os.getpid(), 9)))"], check=False)
    assert child.returncode == -9
    left = list(tmp_path.glob(".last.pt.*.tmp"))
    assert len(left) == 1 and not (tmp_path / "last.pt").exists()
    mine = tmp_path / f".best.pt.{os.getpid()}.0123abcd.tmp"  # a live writer's file stays
    mine.write_bytes(b"x")
    with output_lock(tmp_path):
        pass
    assert not left[0].exists() and mine.exists()


def test_on_windows_no_other_writers_temporary_is_removed_and_no_process_is_signalled(tmp_path, monkeypatch):
    import skinseg.atomic as atomic

    def kill(pid, sig):  # os.kill(pid, 0) terminates the process on Windows
        raise AssertionError(f"os.kill({pid}, {sig}) called")
    monkeypatch.setattr(atomic, "_WINDOWS", True)
    monkeypatch.setattr(atomic.os, "kill", kill)
    other = tmp_path / ".last.pt.999999999.0123abcd.tmp"
    other.write_bytes(b"x")
    assert atomic.remove_stale_temporaries(tmp_path) == [] and other.exists()


def test_a_failed_write_names_the_file(tmp_path):
    def full(f):
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(OSError, match=f"cannot write {tmp_path / 'mask.png'}: No space left on device"):
        write_atomic(tmp_path / "mask.png", full)

    def torch_full(f):
        raise RuntimeError("[enforce fail at inline_container.cc:595] . unexpected pos 128 vs 64")
    with pytest.raises(OSError, match=f"cannot write {tmp_path / 'last.pt'}: the write failed .* is it full"):
        write_atomic(tmp_path / "last.pt", torch_full)
    assert list(tmp_path.iterdir()) == []
    write_bytes_atomic(tmp_path / "ok.bin", b"1")
    assert (tmp_path / "ok.bin").read_bytes() == b"1"


def test_a_rerun_of_a_finished_training_restores_what_was_deleted_and_says_so(layout_2017, tmp_path, capsys,
                                                                                 monkeypatch):
    monkeypatch.setenv("SKINSEG_CACHE", str(tmp_path / "cache"))
    args = ["train", "--profile", "tiny", "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "run"),
            "--data", str(layout_2017)]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert all(f"wrote {tmp_path / 'run' / name}" in first for name in ("best.pt", "last.pt", "history.json"))
    (tmp_path / "run" / "best.pt").unlink()  # its epoch was the last: last.pt holds its weights
    assert main(args) == 0
    out, err = capsys.readouterr()
    run = tmp_path / "run"
    assert err == "" and f"wrote {run / 'best.pt'}\nkept {run / 'last.pt'} (unchanged)\nkept {run / 'history.json'} " \
        "(unchanged)\n" in out, (out, err)
    assert load_checkpoint(run / "best.pt")["epoch"] == 1


def test_synthetic_replaces_only_its_own_folder(tmp_path, capsys):
    args = ["synthetic", "--n-train", "1", "--n-val", "1", "--n-test", "1", "--out"]
    assert main(args + [str(tmp_path / "s")]) == 0
    assert main(args + [str(tmp_path / "s")]) == 0  # its own folder again
    real = tmp_path / "real" / "ISIC-2017_Training_Data"
    real.mkdir(parents=True)
    (real / "ISIC_0000000.jpg").write_bytes(b"a real photograph")
    capsys.readouterr()
    assert main(args + [str(tmp_path / "real")]) == 2
    assert "exists and was not written by this command" in capsys.readouterr().err
    assert (real / "ISIC_0000000.jpg").read_bytes() == b"a real photograph"
    assert main(args + [str(tmp_path / "real"), "--overwrite"]) == 0
    assert (real / "ISIC_0000000.jpg").read_bytes() != b"a real photograph"
