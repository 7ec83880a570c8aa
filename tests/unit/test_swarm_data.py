"""Datasets and partitions: deterministic by seed, clusters as specified, splits from the client's
own distribution; the batched engine matches the one-client-at-a-time reference."""

from __future__ import annotations

import pytest
import torch

from swarm.data import DEBIAN_FASHION, UnknownDatasetError, digits, load_dataset, read_idx
from swarm.models import build_model
from swarm.partition import PartitionError, cluster_sizes, partition
from swarm.sim.engine import BatchedEngine, Layout, LoopEngine, TrainSettings
from swarm.similarity import flatten

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def ds():
    return digits()


def test_cluster_sizes_largest_remainder() -> None:
    assert cluster_sizes(20, (0.7, 0.2, 0.05, 0.05)) == [14, 4, 1, 1]
    assert cluster_sizes(100, (0.4, 0.6)) == [40, 60]


def test_partition_deterministic_by_seed(ds) -> None:
    a = partition(ds, "dirichlet", 6, train=30, val=5, test=10, seed=3, alpha=0.3)
    b = partition(ds, "dirichlet", 6, train=30, val=5, test=10, seed=3, alpha=0.3)
    c = partition(ds, "dirichlet", 6, train=30, val=5, test=10, seed=4, alpha=0.3)
    assert all(
        torch.equal(x.train_x, y.train_x) and x.cluster == y.cluster for x, y in zip(a, b, strict=True)
    )
    assert not all(torch.equal(x.train_y, y.train_y) for x, y in zip(a, c, strict=True))
    assert [len(x.train_y) for x in a] == [30] * 6 and [len(x.val_y) for x in a] == [5] * 6


def test_label_shift_clusters_see_disjoint_classes(ds) -> None:
    parts = partition(ds, "label-shift", 10, train=40, val=10, test=20, seed=0)
    assert sorted(p.cluster for p in parts) == [0] * 4 + [1] * 6
    for p in parts:
        labels = set(torch.cat([p.train_y, p.val_y, p.test_y]).tolist())
        assert labels <= ({0, 1, 2, 3} if p.cluster == 0 else {4, 5, 6, 7, 8, 9})


def test_rotation_rotates_train_and_test_alike(ds) -> None:
    parts = partition(ds, "rotation", 20, train=40, val=10, test=20, seed=0)
    assert sorted(p.cluster for p in parts).count(1) == 4
    originals = {tuple(r.tolist()) for r in torch.cat([ds.train_x, ds.test_x]).reshape(-1, 64)}

    def all_known(x: torch.Tensor) -> bool:
        return all(tuple(r.tolist()) in originals for r in x.reshape(-1, 64))

    for p in parts:
        if p.cluster == 0:
            assert all_known(p.train_x) and all_known(p.test_x)
        if p.cluster == 1:  # 180 degrees on train and test alike: turning back gives the originals
            unturned = [torch.flip(x, dims=(-2, -1)) for x in (p.train_x, p.test_x)]
            assert all_known(unturned[0]) and all_known(unturned[1]) and not all_known(p.train_x)


def test_clients_do_not_share_training_samples_while_the_pool_lasts(ds) -> None:
    parts = partition(ds, "iid", 10, train=50, val=10, test=20, seed=0)
    rows = torch.cat([p.train_x.reshape(len(p.train_x), -1) for p in parts])
    assert len(torch.unique(rows, dim=0)) >= len(rows) - 20  # sklearn digits holds a few duplicates


def test_bad_partition_and_dataset_names(ds) -> None:
    with pytest.raises(PartitionError, match="choose one of"):
        partition(ds, "shards", 3, train=1, val=0, test=1, seed=0)
    with pytest.raises(UnknownDatasetError, match="choose one of"):
        load_dataset("imagenet")


@pytest.mark.skipif(not (DEBIAN_FASHION / "t10k-labels-idx1-ubyte.gz").exists(), reason="no Fashion-MNIST")
def test_fashion_idx_reader() -> None:
    labels = read_idx(DEBIAN_FASHION / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10000,) and set(labels.tolist()) == set(range(10))


@pytest.mark.parametrize(
    ("optimizer", "model", "epochs"),
    [("adam", "digits-mlp", 3), ("sgd", "digits-mlp", 2), ("adam", "conv", 1)],
)
def test_batched_engine_equals_loop(ds, optimizer: str, model: str, epochs: int) -> None:
    # dirichlet gives clients different sizes: exercises padding and partial last batches
    parts = partition(ds, "dirichlet", 5, train=37, val=0, test=15, seed=1, alpha=1.0)
    parts[2].train_x, parts[2].train_y = parts[2].train_x[:21], parts[2].train_y[:21]
    torch.manual_seed(0)
    net = (
        build_model("digits-mlp")
        if model == "digits-mlp"
        else torch.nn.Sequential(
            torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(256, 10)
        )
    )
    layout = Layout(net)
    flat = flatten(net.state_dict()).repeat(5, 1) + 0.01 * torch.randn(5, layout.size)
    settings = TrainSettings(epochs, 8, 0.01, optimizer, seed=7)
    batched, loop = BatchedEngine(layout, parts, settings), LoopEngine(layout, parts, settings)
    (wb, lb), (wl, ll) = batched.train(flat, 2), loop.train(flat, 2)
    assert not torch.allclose(wb, flat)
    assert torch.allclose(wb, wl, atol=1e-4) and torch.allclose(lb, ll, atol=1e-5)
    for got, want in zip(batched.evaluate(wb), loop.evaluate(wb), strict=True):
        assert torch.allclose(got, want, atol=1e-5)
    owners = [1, 0, 4]
    assert torch.allclose(batched.pair_losses(wb[:3], owners), loop.pair_losses(wb[:3], owners), atol=1e-5)
