"""Runs that accumulate over slices: a slice whose budget fits one run, a second slice for the
rest, both merged, give what one uninterrupted call gives; and every refused merge is one
line with exit code 2. The ``tiny`` profile on SYNTHETIC data, on the CPU (deterministic)."""
from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest

from skinseg.cli import main
from skinseg.config import PROFILES
from skinseg.errors import DataError
from skinseg.lab.archive import MANIFEST, open_archive
from skinseg.lab.display import load_display
from skinseg.lab.experiment import MODEL_NAMES, run_experiment
from skinseg.lab.merge import MergeError, merge_archive
from skinseg.lab.order import EXPERIMENTS, SLICE_ORDER
from skinseg.lab.slice import run_slice, slice_order
from skinseg.lab.synthetic import write_isic_layout

from conftest import SIZE

TINY = PROFILES["tiny"]
SEEDS = list(EXPERIMENTS["isic2017"].seeds)
RUNS = [f"{m}_seed{s}" for s in SEEDS for m in MODEL_NAMES]
TIMINGS = ("train_seconds", "evaluation_seconds", "wall_seconds", "median_images_per_s", "environment")


def quiet(_):
    pass


def one_run_slice(data, archive, work, committed, profile=TINY):
    """A slice whose budget (150 s) fits exactly one run, on a clock on which every run takes 100 s."""
    def clock():
        return 100.0 * len(list((work / "results" / "isic2017" / "runs").glob("*.json")))
    return run_slice(data, archive, time_budget=150, work_dir=work, committed=committed, experiments=["isic2017"],
                     profile=profile, device="cpu", log=quiet, run_cost=lambda experiment, model: 100.0, clock=clock)


@pytest.fixture(scope="module")
def accumulated(layout_2017, tmp_path_factory):
    """``(uninterrupted folder, committed results root, first archive)`` after two merged slices,
    the first of which ends between the two models of the first seed."""
    tmp = tmp_path_factory.mktemp("accumulate")
    whole = tmp / "whole"
    run_experiment(layout_2017, whole, TINY, seeds=SEEDS, work_dir=tmp / "whole_work", device="cpu",
                   progress=False, log=quiet)
    committed = tmp / "results"
    first = one_run_slice(layout_2017, tmp / "slice1.tgz", tmp / "slice1", committed)
    assert list(first["experiments"]["isic2017"]["runs"]) == ["unet_seed0"]
    merge_archive(tmp / "slice1.tgz", committed / "isic2017", log=quiet)
    second = run_slice(layout_2017, tmp / "slice2.tgz", work_dir=tmp / "slice2", committed=committed,
                       experiments=["isic2017"], profile=TINY, device="cpu", log=quiet)
    assert sorted(second["experiments"]["isic2017"]["runs"]) == sorted(RUNS[1:])  # the committed run is skipped
    merge_archive(tmp / "slice2.tgz", committed / "isic2017", log=quiet)
    return whole, committed, tmp / "slice1.tgz"


def test_the_slice_order_is_one_fixed_list_of_whole_seed_pairs():
    order = slice_order()
    assert order[:4] == [("isic2016_replica", 0, "unet"), ("isic2016_replica", 0, "attention_unet"),
                         ("isic2017", 0, "unet"), ("isic2017", 0, "attention_unet")]
    assert len(order) == 2 * len(SLICE_ORDER) == 2 * sum(len(e.seeds) for e in EXPERIMENTS.values())
    assert len(set(order)) == len(order)
    assert slice_order(["isic2017"]) == [("isic2017", s, m) for s in SEEDS for m in MODEL_NAMES]


def test_two_merged_slices_equal_one_uninterrupted_call(accumulated):
    whole, committed, _ = accumulated
    merged = committed / "isic2017"
    assert (merged / "summary.json").read_text() == (whole / "summary.json").read_text()
    summary = json.loads((merged / "summary.json").read_text())
    assert summary["seeds"] == SEEDS and summary["primary_endpoint"] == "raw"
    assert set(summary["comparison"]) == {"raw", "chosen"}
    for run in RUNS:
        assert (merged / "per_image" / f"{run}.csv").read_bytes() == (whole / "per_image" / f"{run}.csv").read_bytes()
        assert (merged / "histories" / f"{run}.json").is_file()
        a, b = (json.loads((f / "runs" / f"{run}.json").read_text()) for f in (merged, whole))
        assert {k: v for k, v in a.items() if k not in TIMINGS} == {k: v for k, v in b.items() if k not in TIMINGS}
    for details in ("predictions/unet_seed0.npz", "predictions/attention_unet_seed0.npz", "psi/attention_unet_seed0.npz"):
        assert (merged / details).is_file()
    _assert_same_display(merged, whole)  # the first seed's U-Net was merged from the first slice
    assert not any(p.name == ".skinseg.lock" for p in (merged / "runs").iterdir())
    assert len(list((merged / "slices").glob("*.json"))) >= 1  # which slice brought which runs


def _assert_same_display(folder, reference):
    shown, expected = load_display(folder / "display.npz"), load_display(reference / "display.npz")
    assert shown.ids == expected.ids
    np.testing.assert_array_equal(shown.images, expected.images)
    np.testing.assert_array_equal(shown.masks, expected.masks)


def test_slices_that_reuse_one_work_folder_pack_only_their_own_runs(accumulated, layout_2017, tmp_path):
    whole, _, _ = accumulated
    work, committed = tmp_path / "work", tmp_path / "results"
    for expected in ("unet_seed0", "attention_unet_seed0"):  # as on a warm device machine: one work folder
        manifest = one_run_slice(layout_2017, tmp_path / f"{expected}.tgz", work, committed)
        assert list(manifest["experiments"]["isic2017"]["runs"]) == [expected]
        merge_archive(tmp_path / f"{expected}.tgz", committed / "isic2017", log=quiet)
    assert sorted(p.stem for p in (committed / "isic2017" / "runs").glob("*.json")) == sorted(RUNS[:2])
    _assert_same_display(committed / "isic2017", whole)


def test_the_archive_is_one_file_with_a_manifest(accumulated):
    _, _, archive = accumulated
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert names[0] == MANIFEST and "isic2017/per_image/unet_seed0.csv" in names
    assert not any(n.endswith(".skinseg.lock") for n in names)
    manifest, _ = open_archive(archive)
    entry = manifest["experiments"]["isic2017"]
    assert entry["profile"] == "tiny" and entry["recipe"]["epochs"] == TINY.epochs and len(entry["data_hash"]) == 16
    assert entry["evaluation"]["primary_endpoint"] == "raw"
    assert manifest["environment"]["device_type"] == "cpu" and manifest["environment"]["torch"]
    assert manifest["budget_seconds"] == 150 and manifest["seconds"] == 100.0
    assert entry["runs"]["unet_seed0"]["wall_seconds"] > 0


def _cli(args, capsys) -> tuple[int, str, str]:
    """``python -m skinseg ARGS`` in this process (its exit code, stdout and stderr): the same
    entry point as the command line, without starting another Python."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _refused(archive, into, capsys, match):
    before = (into / "summary.json").read_bytes()
    code, _, err = _cli(["merge", archive, "--into", into], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("skinseg merge: error: ") and match in lines[0], lines[0]
    assert (into / "summary.json").read_bytes() == before  # nothing written
    return lines[0]


def test_merges_of_another_recipe_dataset_or_a_duplicate_run_are_refused(accumulated, layout_2017, tmp_path, capsys):
    _, committed, first = accumulated
    into = committed / "isic2017"
    _refused(first, into, capsys, "already holds run unet_seed0")

    one_run_slice(layout_2017, tmp_path / "recipe.tgz", tmp_path / "w1", tmp_path / "none", TINY.replace(epochs=3))
    _refused(tmp_path / "recipe.tgz", into, capsys, "another recipe (epochs 2 -> 3)")

    one_run_slice(layout_2017, tmp_path / "width.tgz", tmp_path / "w3", tmp_path / "none", TINY.replace(width=8))
    _refused(tmp_path / "width.tgz", into, capsys, "another model width (4 -> 8)")

    other = write_isic_layout(tmp_path / "other", "2017", n_train=8, n_val=4, n_test=4, size=SIZE, seed=7)
    one_run_slice(other, tmp_path / "data.tgz", tmp_path / "w2", tmp_path / "none")
    _refused(tmp_path / "data.tgz", into, capsys, "another dataset (data hash)")

    (tmp_path / "junk.tgz").write_bytes(b"not an archive")
    _refused(tmp_path / "junk.tgz", into, capsys, "cannot be read")
    with pytest.raises(MergeError, match="holds no experiment 'isic2016_replica'"):
        merge_archive(first, into, experiment="isic2016_replica", log=quiet)
    with pytest.raises(MergeError, match="holds no experiment named like"):  # never into another experiment's folder
        merge_archive(first, tmp_path / "results" / "isic2016_replica", log=quiet)
    code, _, err = _cli(["merge", first, "--each-into", tmp_path / "fresh"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "fresh" / "isic2017" / "summary.json").read_text())["runs"][0]["run"] == "unet_seed0"
    with pytest.raises(DataError, match="does not exist"):
        merge_archive(tmp_path / "missing.tgz", into, log=quiet)


def test_a_folder_without_finished_runs_takes_the_archives_config(accumulated, tmp_path):
    _, committed, first = accumulated
    archived = json.loads((committed / "isic2017" / "config.json").read_text())
    stale = {**archived, "label": "STALE", "seeds": [5], "recipe": {**archived["recipe"], "epochs": 99}}
    into = tmp_path / "isic2017"
    (into / "runs").mkdir(parents=True)  # a config left behind, no finished run
    (into / "config.json").write_text(json.dumps(stale))
    summary = merge_archive(first, into, log=quiet)
    assert summary["label"] == archived["label"] and summary["planned_seeds"] == SEEDS
    assert json.loads((into / "config.json").read_text())["recipe"]["epochs"] == TINY.epochs


def test_the_slice_command_starts_no_run_that_does_not_fit(layout_2017, tmp_path, capsys):
    archive = tmp_path / "out" / "slice.tgz"
    code, out, err = _cli(["slice", "--data", layout_2017, "--archive", archive, "--profile", "tiny", "--time-budget", "1",
                           "--experiments", "isic2017", "--work-dir", tmp_path / "work", "--committed", tmp_path / "none",
                           "--device", "cpu", "--quiet"], capsys)
    assert code == 0, err
    assert "isic2017: unet seed 0: not started, it needs about" in out  # a measured step: at least 8 s per run
    manifest, _ = open_archive(archive)
    assert manifest["experiments"] == {}  # a folder without runs is not packed
    code, _, err = _cli(["merge", archive, "--into", tmp_path / "results" / "isic2017"], capsys)
    assert code == 2 and "holds no finished runs" in err


def _repacked(archive, out, changes, *, rehash=False):
    """A copy of ``archive`` with members replaced (bytes) or removed (None); with ``rehash`` the
    manifest's hashes are made to match, as a consistent but broken slice would have them."""
    import hashlib
    import io
    with tarfile.open(archive) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    for name, data in changes.items():
        if data is None:
            members.pop(name)
        else:
            members[name] = data
    if rehash:
        manifest = json.loads(members[MANIFEST])
        manifest["files"] = {n: hashlib.sha256(d).hexdigest() for n, d in members.items() if n != MANIFEST}
        members[MANIFEST] = json.dumps(manifest).encode()
    with tarfile.open(out, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out


def _tree(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("change, rehash, message", [
    ("edited_scores", False, "isic2017/per_image/unet_seed0.csv differs from the sha256 its manifest recorded"),
    ("missing_file", False, "lacks isic2017/per_image/unet_seed0.csv, which its manifest lists"),
    ("added_file", False, "holds isic2017/runs/extra.json, which its manifest does not list"),
    ("malformed_table", True, "isic2017/per_image/unet_seed0.csv cannot be read"),
    ("malformed_run", True, "isic2017/runs/unet_seed0.json cannot be read"),
])
def test_a_damaged_archive_changes_nothing_and_the_good_one_still_merges(accumulated, tmp_path, capsys, change, rehash,
                                                                         message):
    _, _, first = accumulated
    with tarfile.open(first) as tar:
        table = tar.extractfile("isic2017/per_image/unet_seed0.csv").read()
    changes = {"edited_scores": {"isic2017/per_image/unet_seed0.csv": table.replace(b",0.", b",0.9", 1)},
               "missing_file": {"isic2017/per_image/unet_seed0.csv": None},
               "added_file": {"isic2017/runs/extra.json": b"{}"},
               "malformed_table": {"isic2017/per_image/unet_seed0.csv": b"id,iou\n\"a,0.5\n"},
               "malformed_run": {"isic2017/runs/unet_seed0.json": b'{"run": "unet_seed0", '}}[change]
    bad = _repacked(first, tmp_path / "bad.tgz", changes, rehash=rehash)
    into = tmp_path / "results" / "isic2017"
    into.mkdir(parents=True)
    code, _, err = _cli(["merge", bad, "--into", into], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert message in err, err
    assert _tree(into) == {}  # nothing written, not even a lock or a staging folder
    code, out, err = _cli(["merge", first, "--into", into], capsys)
    assert code == 0, err
    assert "merged 1 run(s)" in out and (into / "runs" / "unet_seed0.json").is_file()


def test_two_slices_with_one_creation_stamp_keep_two_records(accumulated, tmp_path):
    _, _, first = accumulated
    with tarfile.open(first) as tar:
        manifest = json.loads(tar.extractfile(MANIFEST).read())
    twin = {**manifest, "seconds": manifest["seconds"] + 1}  # the same "created", another slice
    second = _repacked(first, tmp_path / "twin.tgz", {MANIFEST: json.dumps(twin).encode()})
    merge_archive(first, tmp_path / "a" / "isic2017", log=quiet)
    merge_archive(second, tmp_path / "b" / "isic2017", log=quiet)
    names = [next((tmp_path / x / "isic2017" / "slices").iterdir()).name for x in "ab"]
    assert names[0] != names[1] and all(n.startswith(manifest["created"].replace(":", "")[:15]) for n in names)
