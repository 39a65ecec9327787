"""``scripts/gpu_results.sh`` end to end on the CPU, as a device call runs it (results/README.md),
with the ``tiny`` profile on SYNTHETIC data; then what it packed is merged as the README says.
A GPU slice must not be spent on a script error."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile

from conftest import REPO, child_env, run_cli


def test_gpu_results_script_packs_a_slice_that_merges(tmp_path):
    cache, data, out = tmp_path / "cache", tmp_path / "data", tmp_path / "out"
    made = run_cli(["synthetic", "--out", data, "--n-train", "8", "--n-val", "4", "--n-test", "4"], REPO, cache)
    assert made.returncode == 0, made.stderr
    env = child_env(cache)
    env.update(PATH=os.pathsep.join([os.path.dirname(sys.executable), env["PATH"]]),  # its python3
               SKINSEG_DATA=str(data), RESULTS=str(out), SKINSEG_RESULTS=str(tmp_path / "committed"),
               SLICE_PROFILE="tiny", SLICE_EXPERIMENTS="isic2017", SLICE_WORK_DIR=str(tmp_path / "work"),
               TOTAL_BUDGET="900")
    (tmp_path / "committed").mkdir()  # no finished runs yet: the slice starts at the first one
    done = subprocess.run(["bash", "scripts/gpu_results.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=1200)
    log = done.stdout + done.stderr
    assert done.returncode == 0 and "done in" in done.stdout, log[-4000:]
    assert sorted(p.name for p in out.iterdir()) == ["gpu.txt", "gpu_tests.log", "slice.log", "slice.tgz"], log[-4000:]
    assert "CPU SMOKE RUN (profile 'tiny'" in (out / "slice.log").read_text()
    with tarfile.open(out / "slice.tgz") as archive:
        runs = {name.rsplit("/", 1)[-1] for name in archive.getnames() if "/runs/" in name and name.endswith(".json")}
    assert runs, f"the slice packed no finished run:\n{(out / 'slice.log').read_text()[-3000:]}"

    merged = run_cli(["merge", out / "slice.tgz", "--each-into", tmp_path / "results"], REPO, cache)
    assert merged.returncode == 0, merged.stderr
    summary = tmp_path / "results" / "isic2017" / "summary.json"
    assert summary.is_file(), merged.stdout
    assert json.loads(summary.read_text())["seeds"], summary.read_text()[:500]
    assert {p.name for p in (summary.parent / "runs").glob("*.json")} == runs
