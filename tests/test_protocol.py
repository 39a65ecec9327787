"""The ISIC 2016 replica protocol on the real ISIC 2017 copy, the leakage guard (library and
command line), and the article recipe (its pooled Dice loss, Adam at a constant rate, a tiny run)."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from conftest import run_cli
from skinseg.config import NO_AUGMENT, PROFILES, get_profile
from skinseg.data import SegmentationData, load_split
from skinseg.data.loading import split_pairs
from skinseg.data.splits import isic2016_validation_ids
from skinseg.errors import CheckpointError, DataError, LeakageError
from skinseg.lab.leakage import check_checkpoint, check_held_out, ids_digest, training_record
from skinseg.lab.protocols import (PROTOCOLS, REPLICA, dataset_label, isic2016_ids, load_protocol_split, origin,
                                   protocol_pairs, replica_counts, replica_pairs)
from skinseg.losses import build_loss, pooled_dice_loss, soft_dice_loss
from skinseg.models import build_model
from skinseg.paths import default_data_dir
from skinseg.step import build_optimizer
from skinseg.train import fit, recipe_changes, training_recipe

ROOT = default_data_dir()
ID_LIST = ROOT.parent / "isic2016_protocol" / "isic2016_ids.csv"
LABEL = "ISIC 2016 replica (746/900 train, 305/379 test, ISIC 2017 masks at 256x192)"

real = pytest.mark.skipif(not (ROOT / "ISIC-2017_Training_Data").is_dir() or not ID_LIST.is_file(),
                          reason=f"the shared ISIC 2017 copy and ISIC 2016 id list are not beside the project ({ROOT})")


def _ids(split: str, root=ROOT) -> list[str]:
    return [p[0] for p in replica_pairs(root, split)]


def _dummy(ids, where: dict, source: str) -> SegmentationData:
    """A split with the given ids and origin, without decoding any image (the guard reads ids only)."""
    n = len(ids)
    return SegmentationData(np.zeros((n, 16, 16, 3), np.uint8), np.zeros((n, 16, 16), np.uint8), list(ids), source, where)


# ----------------------------------------------------------------------------- the replica on the real data


@real
def test_shipped_id_list_matches_the_shared_list_and_presence_is_computed_from_the_folder():
    with ID_LIST.open(newline="") as f:
        rows = list(csv.DictReader(f))
    shared = {s: sorted(r["isic_id"] for r in rows if r["isic2016_split"] == s) for s in ("train", "test")}
    assert {s: list(v) for s, v in isic2016_ids().items()} == shared
    assert {s: len(v) for s, v in shared.items()} == {"train": 900, "test": 379}
    present = {r["isic_id"] for r in rows if r["present_in_this_isic2017_train_copy"] == "1"}
    assert set(_ids("train")) | set(_ids("val")) | set(_ids("test")) == present


@real
def test_replica_split_sizes_are_pinned():
    assert replica_counts(ROOT) == {"train_present": 746, "train_official": 900, "test_present": 305,
                                    "test_official": 379, "train": 597, "val": 149, "test": 305}
    train, val, test = _ids("train"), _ids("val"), _ids("test")
    assert (len(train), len(val), len(test)) == (597, 149, 305)
    assert not (set(train) & set(val) or set(train) & set(test) or set(val) & set(test))
    # the fixed 4:1 rule of ISIC 2016, applied to the 746 training ids present
    assert set(val) == isic2016_validation_ids(train + val)
    assert set(test) <= set(isic2016_ids()["test"]) and set(train + val) <= set(isic2016_ids()["train"])
    # pinned forever: a change of the rule or of the list changes these
    assert sorted(val)[:3] == ["ISIC_0000000", "ISIC_0000011", "ISIC_0000016"]
    assert ids_digest(val) == ids_digest(isic2016_validation_ids(train + val))
    assert (ids_digest(train), ids_digest(val), ids_digest(test)) == ("c71c2b82a331118f", "72ae24accf532eaa",
                                                                       "35e45b27015a1e01")


@real
def test_every_replica_label_says_what_it_is():
    assert dataset_label(ROOT, "2017", REPLICA) == LABEL
    d = load_protocol_split(ROOT, "test", protocol=REPLICA, limit=2)
    assert d.source == f"{LABEL} test (first 2)"
    assert d.origin == {"protocol": REPLICA, "dataset": "ISIC 2016 replica", "split": "test",
                        "folder": "ISIC-2017_Training_Data"}
    assert d.ids == _ids("test")[:2]
    # the replica's images are the ISIC 2017 training images of the same ids
    official = load_split(ROOT, "train", limit=8)
    for i, image_id in enumerate(d.ids):
        if image_id in official.ids:
            np.testing.assert_array_equal(d.masks[i], official.masks[official.ids.index(image_id)])


def test_replica_refuses_an_isic2016_folder_and_unknown_protocols(layout_2016, layout_2017):
    with pytest.raises(DataError, match="reads an ISIC 2017 folder.*holds ISIC 2016"):
        protocol_pairs(layout_2016, "test", "2016", REPLICA)
    with pytest.raises(DataError, match="protocol must be one of"):
        load_protocol_split(layout_2017, "test", (64, 64), protocol="isic2016")
    assert PROTOCOLS == ("official", REPLICA)


def test_replica_on_a_synthetic_folder_uses_the_ids_it_holds(layout_2017):
    # the SYNTHETIC layout's training ids are ISIC_0000000 ... ISIC_0000007
    wanted = {s: set(v) for s, v in isic2016_ids().items()}
    ids = [f"ISIC_{k:07d}" for k in range(8)]
    assert _ids("test", layout_2017) == [i for i in ids if i in wanted["test"]] == ["ISIC_0000003"]
    train_val = [i for i in ids if i in wanted["train"]]
    assert sorted(_ids("train", layout_2017) + _ids("val", layout_2017)) == train_val


# ----------------------------------------------------------------------------- the leakage guard


@real
def test_guard_refuses_isic2017_training_data_on_the_replica_and_allows_the_reverse():
    isic2017_train = _dummy([p[0] for p in split_pairs(ROOT, "train", "2017")][:20], origin(ROOT, "2017", "train"),
                            "ISIC 2017 train")
    replica_train = _dummy(_ids("train"), origin(ROOT, "2017", "train", REPLICA), f"{LABEL} train")
    replica_test = _dummy(_ids("test"), origin(ROOT, "2017", "test", REPLICA), f"{LABEL} test")
    isic2017_test = _dummy([p[0] for p in split_pairs(ROOT, "test", "2017")], origin(ROOT, "2017", "test"),
                           "ISIC 2017 test")
    # trained on (a part of) the ISIC 2017 training folder: refused on the replica's test and val
    no_overlap = training_record(isic2017_train.subset([i for i, k in enumerate(isic2017_train.ids)
                                                        if k not in replica_test.ids]))
    with pytest.raises(LeakageError, match="same folder ISIC-2017_Training_Data under another split rule"):
        check_held_out(no_overlap, replica_test)
    with pytest.raises(LeakageError, match=r"of the 305 images of ISIC 2016 replica .* are training images"):
        check_held_out(training_record(isic2017_train), replica_test)
    replica_val = _dummy(_ids("val"), origin(ROOT, "2017", "val", REPLICA), f"{LABEL} val")
    with pytest.raises(LeakageError):
        check_held_out(no_overlap, replica_val)
    # an older checkpoint without a record is refused there too, but not on ISIC 2017's own test set
    with pytest.raises(LeakageError, match="does not record its training data"):
        check_held_out(None, replica_test, model="checkpoint old.pt")
    assert "does not record" in check_held_out(None, isic2017_test)
    # trained on the replica: its own test set is a held-out score, ISIC 2017's a cross-data-set one
    record = training_record(replica_train)
    assert check_held_out(record, replica_test).startswith("held-out score: trained on ISIC 2016 replica")
    note = check_held_out(record, isic2017_test)
    assert note == f"cross-data-set score: trained on {LABEL} train, scored on ISIC 2017 test"
    assert check_held_out(training_record(isic2017_train), isic2017_test).startswith("held-out score")
    # a training split is scored as what it is
    assert check_held_out(record, replica_train) == f"scored on {LABEL} train"


def test_scores_on_another_data_set_of_the_same_protocol_are_labelled_cross_data_set(tmp_path):
    isic2017_train = _dummy(["ISIC_0000001", "ISIC_0000002"], origin(tmp_path, "2017", "train"), "ISIC 2017 train")
    isic2017_test = _dummy(["ISIC_0000101"], origin(tmp_path, "2017", "test"), "ISIC 2017 test")
    isic2016_test = _dummy(["ISIC_0000201"], origin(tmp_path, "2016", "test"), "ISIC 2016 test")
    own_test = _dummy(["mine_1"], origin(tmp_path / "clinic", "folders", "test"), "folder clinic test")
    assert {d.origin["protocol"] for d in (isic2017_train, isic2016_test, own_test)} == {"official"}
    assert [d.origin["dataset"] for d in (isic2017_test, isic2016_test, own_test)] == ["ISIC 2017", "ISIC 2016",
                                                                                        "folder clinic"]
    record = training_record(isic2017_train)
    assert check_held_out(record, isic2017_test) == "held-out score: trained on ISIC 2017 train, scored on ISIC 2017 test"
    assert check_held_out(record, isic2016_test) == ("cross-data-set score: trained on ISIC 2017 train, "
                                                     "scored on ISIC 2016 test")
    assert check_held_out(record, own_test) == ("cross-data-set score: trained on ISIC 2017 train, "
                                                "scored on folder clinic test")


@real
def test_guard_on_the_command_line(tmp_path):
    cache = tmp_path / "cache"
    tiny = PROFILES["tiny"].replace(epochs=1)
    train, val = (load_split(ROOT, s, tiny.image_size, limit=n, cache_dir=cache) for s, n in (("train", 16), ("val", 4)))
    fit(build_model("unet", tiny.width), train, val, tiny, tmp_path / "isic2017", progress=False,
        trained_on=training_record(train))
    refused = run_cli(["evaluate", "--checkpoint", tmp_path / "isic2017" / "best.pt", "--data", ROOT,
                       "--protocol", REPLICA, "--limit", "4", "--out", tmp_path / "e.csv"], tmp_path, cache)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith("skinseg evaluate: error: 4 of the 4 images of ISIC 2016 replica")
    assert "are training images of checkpoint" in refused.stderr and "trained on ISIC 2017 train" in refused.stderr
    assert not (tmp_path / "e.csv").exists()

    replica = run_cli(["train", "--out", tmp_path / "replica", "--protocol", REPLICA, "--profile", "tiny",
                       "--epochs", "1", "--data", ROOT], tmp_path, cache)
    assert replica.returncode == 0, replica.stderr
    assert f"({LABEL.replace('256x192', '64x64')} train (first 16))" in replica.stdout
    allowed = run_cli(["evaluate", "--checkpoint", tmp_path / "replica" / "best.pt", "--data", ROOT,
                       "--limit", "4", "--out", tmp_path / "e.csv"], tmp_path, cache)
    assert allowed.returncode == 0, allowed.stderr
    assert "cross-data-set score: trained on ISIC 2016 replica" in allowed.stdout
    assert "cross-data-set score" in (tmp_path / "e.json").read_text()
    info = run_cli(["info", "--data", ROOT, "--protocol", REPLICA], tmp_path, cache)
    assert info.stdout.strip() == f"{LABEL} in {ROOT}: train 597, val 149, test 305"


def test_checkpoint_records_its_training_data_and_resuming_on_other_data_is_refused(layout_2017, tmp_path):
    profile = PROFILES["tiny"].replace(epochs=1, max_train=None)
    train, val = load_split(layout_2017, "train", (64, 64)), load_split(layout_2017, "val", (64, 64))
    torch.manual_seed(0)
    history = fit(build_model("unet", 4), train, val, profile, tmp_path / "run", progress=False,
                  trained_on=training_record(train))
    assert history.meta["trained_on"] == {"protocol": "official", "dataset": "ISIC 2017", "split": "train",
                                          "folder": "ISIC-2017_Training_Data", "source": "ISIC 2017 train", "n": 8,
                                          "ids_sha256": ids_digest(train.ids)}
    test = load_split(layout_2017, "test", (64, 64))
    assert check_checkpoint(tmp_path / "run" / "best.pt", test) == "held-out score: trained on ISIC 2017 train, scored on ISIC 2017 test"
    with pytest.raises(LeakageError, match="8 of the 8 images"):
        check_held_out(training_record(train), SegmentationData(train.images, train.masks, train.ids, "x",
                                                                {**train.origin, "split": "test"}))
    other = train.subset(slice(0, 6))
    with pytest.raises(CheckpointError, match=r"another recipe \(training_images 'ISIC 2017 train, 8 images, .*' -> "
                                              r"'ISIC 2017 train, 6 images, "):
        fit(build_model("unet", 4), other, val, profile, tmp_path / "run", progress=False,
            trained_on=training_record(other))


# ----------------------------------------------------------------------------- the article recipe


def test_pooled_dice_loss_pools_the_batch():
    target = torch.zeros(2, 1, 8, 8)
    target[0, 0, :6, :6] = 1  # a large lesion
    target[1, 0, 0, 0] = 1  # a one-pixel lesion
    logits = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    p = torch.sigmoid(logits)
    expected = 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
    assert pooled_dice_loss(logits, target) == pytest.approx(float(expected), rel=1e-6)
    assert float(pooled_dice_loss(logits, target)) != pytest.approx(float(soft_dice_loss(logits, target)), abs=1e-3)
    perfect = torch.where(target > 0, 20.0, -20.0)
    assert float(pooled_dice_loss(perfect, target)) == pytest.approx(0.0, abs=1e-6)
    assert float(pooled_dice_loss(torch.full((1, 1, 4, 4), -20.0), torch.zeros(1, 1, 4, 4))) == pytest.approx(0.0, abs=1e-6)
    assert float(build_loss("dice_pooled")(logits, target)) == pytest.approx(float(expected), rel=1e-6)


def test_article_profile_is_the_named_recipe():
    article = get_profile("article")
    assert (article.loss, article.optimizer, article.schedule, article.lr) == ("dice_pooled", "adam", "constant", 1e-3)
    assert article.augment == NO_AUGMENT and article.ema_decay is None and article.weight_decay == 0.0
    assert (article.tta, article.postprocess, article.seeds) == (("none",), False, (0,))
    full = PROFILES["full"]
    assert (article.width, article.image_size, article.epochs, article.batch_size) == \
        (full.width, full.image_size, full.epochs, full.batch_size)
    assert not article.is_smoke and article.label() == "article recipe"
    colab = PROFILES["colab"]  # the full networks on a GPU for a few epochs: not a smoke run, nor a result
    assert not colab.is_smoke and colab.label().startswith("SHORT GPU RUN") and PROFILES["smoke"].is_smoke
    optimizer = build_optimizer(build_model("unet", 4), 1e-3, 0.0, torch.device("cpu"), "adam")
    assert type(optimizer) is torch.optim.Adam
    assert recipe_changes(training_recipe(full), training_recipe(article)) != []


def test_a_tiny_cpu_run_with_the_article_recipe(layout_2017, tmp_path):
    profile = PROFILES["article"].replace(width=4, image_size=(64, 64), epochs=2, batch_size=4, compile="off")
    train, val = load_split(layout_2017, "train", (64, 64)), load_split(layout_2017, "val", (64, 64))
    torch.manual_seed(0)
    history = fit(build_model("attention_unet", 4), train, val, profile, tmp_path / "run", progress=False)
    assert [r["lr"] for r in history.records] == [1e-3, 1e-3]  # constant: no warm-up, no decay
    assert all(0 <= r["train_loss"] < 1 and np.isfinite(r["val_iou"]) for r in history.records)
    assert history.meta["label"] == "article recipe" and (tmp_path / "run" / "best.pt").is_file()


def test_article_recipe_on_the_command_line(layout_2017, tmp_path):
    result = run_cli(["train", "--profile", "article", "--model", "unet", "--data", layout_2017, "--width", "4",
                      "--epochs", "1", "--batch-size", "4", "--out", tmp_path / "run"], tmp_path, tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    assert "unet, article recipe: 8 training images (ISIC 2017 train)" in result.stdout
