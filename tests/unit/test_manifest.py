"""The swarm manifest and class labels by name: validation on read, folder names mapped to the swarm's
class order (never ImageFolder's alphabetical one), and peers with another class order never merged."""

from __future__ import annotations

import json
import time
from pathlib import Path

import msgpack
import pytest
import torch
from support.image_folders import folder_name, write_fashion_folder

from node.config import ConfigError, NodeConfig
from node.learner import Learner, load_shard
from node.manifest import ManifestMismatch, check_shard, configured, fetch
from node.peer_table import PeerTable
from p2p.announcement import Announcement
from storage import LocalStore, cid_of, encode
from storage.manifest import MAX_BYTES, Manifest, ManifestError, labels_fingerprint
from swarm.data import INFO, load_dataset
from swarm.labels import UnknownClassError, map_names, order_folders
from swarm.models import build_model

FASHION = INFO["fashion-mnist"].classes
KNOWN = {name: info.classes for name, info in INFO.items()}
INIT = cid_of(b"init")


def manifest(**over: object) -> Manifest:
    fields: dict = {"model": "fashion-cnn", "input_shape": (1, 28, 28), "classes": FASHION, "init": INIT,
                    **over}
    return Manifest(**fields)


def doc(**over: object) -> bytes:
    fields = json.loads(manifest().to_bytes())
    fields.update(over)
    return json.dumps({k: v for k, v in fields.items() if v is not None}).encode()


def test_a_manifest_reads_back_as_written() -> None:
    m = manifest()
    assert Manifest.from_bytes(m.to_bytes()) == m
    assert json.loads(m.to_bytes())["format"] == "swarm-manifest"


@pytest.mark.parametrize("data, complaint", [
    (b"\xff\xfe", "not UTF-8 JSON"), (b"[1, 2]", "format"), (doc(format="swarm-snapshot"), "format"),
    (doc(version=2), "version 2 is not supported"), (doc(init=None), "lacks init"),
    (doc(input_shape=[1, 28]), "input_shape"), (doc(input_shape=[1, 28, 0]), "input_shape"),
    (doc(input_shape="1x28x28"), "input_shape must be a list"), (doc(classes=["a"]), "2-1000 class names"),
    (doc(classes=["a", "a"]), "distinct"), (doc(classes=["a", " "]), "non-blank"),
    (doc(classes=["a", 3]), "class name"), (doc(model=""), "model"), (doc(init="Qm-nope"), "init"),
    (b" " * (MAX_BYTES + 1), "at most"), (b"[" * 60_000, "JSON"),
])
def test_a_bad_manifest_is_refused_naming_what_is_wrong(data: bytes, complaint: str) -> None:
    with pytest.raises(ManifestError, match=complaint):
        Manifest.from_bytes(data)


def test_the_labels_fingerprint_covers_the_class_order() -> None:
    reordered = (FASHION[1], FASHION[0], *FASHION[2:])
    assert labels_fingerprint(FASHION) == manifest().labels
    assert labels_fingerprint(reordered) != labels_fingerprint(FASHION)
    assert labels_fingerprint(sorted(FASHION)) != labels_fingerprint(FASHION)


def test_fashion_folder_names_map_to_the_data_sets_order_not_alphabetical() -> None:
    folders = sorted(folder_name(c) for c in FASHION)  # what ImageFolder lists: 'Ankle boot' first
    order = order_folders(folders, None, KNOWN)
    assert order.classes == FASHION
    assert [order.classes[i] for i in order.index] == sorted(FASHION, key=lambda c: folder_name(c))
    assert order.index[folders.index("Ankle boot")] == 9 and order.index[folders.index("T-shirt_top")] == 0
    assert "fashion-mnist" in order.note


def test_folders_map_to_the_manifest_by_name_and_a_missing_class_is_a_note() -> None:
    order = order_folders(["bag", "sneaker", "TROUSER"], FASHION, KNOWN)
    assert order.index == (8, 7, 1) and len(order.classes) == 10
    assert "'T-shirt/top'" in order.note and "'Bag'" not in order.note


def test_an_unknown_folder_is_an_error_that_lists_the_expected_names() -> None:
    with pytest.raises(UnknownClassError, match="'Shoes' is not among") as caught:
        order_folders(["Bag", "Shoes"], FASHION, KNOWN)
    assert all(repr(name) in str(caught.value) for name in FASHION)


def test_folders_of_no_known_data_set_follow_the_alphabet_with_a_warning() -> None:
    order = order_folders(["dogs", "cats"], None, KNOWN)
    assert order.classes == ("cats", "dogs") and order.index == (1, 0)
    assert order.note.startswith("WARNING") and "must have exactly these folders" in order.note


def test_the_swarms_classes_must_be_told_apart_by_name() -> None:
    with pytest.raises(UnknownClassError, match="cannot be told apart"):
        map_names(["a"], ["T-shirt", "t shirt"], "class folder")


def test_an_image_folder_of_real_fashion_mnist_gets_the_data_sets_labels(tmp_path: Path) -> None:
    write_fashion_folder(tmp_path, per_class=3)
    shard = load_shard(NodeConfig(image_folder=str(tmp_path)))
    assert shard.classes == FASHION and shard.num_classes == 10
    test = load_dataset("fashion-mnist")
    firsts = {label: int(torch.nonzero(test.test_y == label)[0]) for label in range(10)}
    data = shard.data
    x = torch.cat([data.train_x, data.val_x, data.test_x])
    y = torch.cat([data.train_y, data.val_y, data.test_y])
    for label, i in firsts.items():  # the image a class folder's 0.png holds, with its data set label
        match = (x - test.test_x[i]).abs().flatten(1).amax(1) < 1e-5
        assert match.any() and set(y[match].tolist()) == {label}


def test_a_research_shard_is_relabelled_to_a_manifests_order() -> None:
    reordered = tuple(reversed(INFO["digits"].classes))
    cfg = NodeConfig(dataset="digits", partition="iid", clients=2, samples_per_client=50)
    plain, relabelled = load_shard(cfg), load_shard(cfg, manifest(classes=reordered, model="digits-mlp"))
    assert torch.equal(relabelled.data.train_y, 9 - plain.data.train_y)
    assert relabelled.classes == reordered


def test_a_manifest_sets_the_model_and_refuses_another_one() -> None:
    m = manifest()
    assert configured(NodeConfig(), m).model == "fashion-cnn"
    with pytest.raises(ManifestMismatch, match=r"--model lenet differs .* model fashion-cnn: drop --model"):
        configured(NodeConfig(model="lenet"), m)


def test_data_of_another_input_shape_is_refused_with_what_to_change() -> None:
    cfg = NodeConfig(dataset="digits", partition="iid", clients=2, samples_per_client=50)
    shard = load_shard(cfg, manifest(classes=INFO["digits"].classes))
    with pytest.raises(ManifestMismatch, match=r"gives 1x8x8 inputs.* takes 1x28x28"):
        check_shard(cfg, shard, manifest())


def test_fetch_checks_the_initial_weights_and_the_learner_starts_from_them(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    torch.manual_seed(7)
    weights = build_model("digits-mlp", num_classes=10).state_dict()
    m = manifest(model="digits-mlp", input_shape=(1, 8, 8), classes=INFO["digits"].classes,
                 init=store.put(encode(weights)))
    start = fetch(store, store.put(m.to_bytes()), timeout=5, max_size=2**20)
    cfg = NodeConfig(dataset="digits", partition="iid", clients=2, samples_per_client=50, model="digits-mlp")
    learner = Learner(cfg, load_shard(cfg, m), torch.device("cpu"), start.init)
    assert all(torch.equal(learner.init[k], weights[k]) for k in weights)
    wrong = manifest(model="digits-mlp", input_shape=(1, 8, 8), classes=("a", "b"), init=m.init)
    with pytest.raises(ManifestError, match="not those of a digits-mlp"):
        fetch(store, store.put(wrong.to_bytes()), timeout=5, max_size=2**20)


def test_join_refuses_a_manifest_that_is_not_a_cid() -> None:
    with pytest.raises(ConfigError, match="setting manifest"):
        NodeConfig(manifest="not-a-cid")


def announcement(publisher: str, labels: str) -> Announcement:
    return Announcement(cid=INIT, publisher=publisher, round=1, schema="s1", samples=10, loss=0.5,
                        encoding="fp32", size=100, timestamp=time.time(), labels=labels)


def test_a_peer_with_another_class_order_is_never_merged() -> None:
    mine, theirs = labels_fingerprint(FASHION), labels_fingerprint(sorted(FASHION))
    table = PeerTable("me", "s1", mine)
    reason = table.fold(announcement("other", theirs))
    assert reason is not None and "class order" in reason and theirs in reason
    assert table.fold(announcement("same", mine)) is None
    reason = table.fold(announcement("older", ""))  # says no order: its outputs may mean anything
    assert reason is not None and "no class order" in reason and "update swarm-node" in reason
    assert {r.peer_id for r in table.candidates()} == {"same"}


def test_a_node_without_a_model_follows_peers_of_every_class_order() -> None:
    table = PeerTable("pinner", "", "")
    assert table.fold(announcement("older", "")) is None
    assert table.fold(announcement("other", labels_fingerprint(FASHION))) is None


def test_labels_travel_in_announcements_and_are_left_out_when_empty() -> None:
    ann = announcement("p", labels_fingerprint(FASHION))
    assert Announcement.from_bytes(ann.to_bytes()).labels == ann.labels
    assert "labels" not in msgpack.unpackb(announcement("p", "").to_bytes())
