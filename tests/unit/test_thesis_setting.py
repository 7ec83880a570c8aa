"""The thesis's setting (github.com/tomhagander/decentralized_deep_learning): its Fashion-MNIST
rotation split, its label-shift layout, its rotation transform and its fashion_CNN."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import random_split
from torchvision import transforms

from swarm.data import DEBIAN_FASHION, Dataset, digits, fashion_mnist
from swarm.models import build_model
from swarm.partition import PartitionError, partition, rotate

torch.set_num_threads(1)
needs_fashion = pytest.mark.skipif(
    not (DEBIAN_FASHION / "t10k-labels-idx1-ubyte.gz").exists(), reason="no Fashion-MNIST"
)


@pytest.fixture(scope="module")
def fashion() -> Dataset:
    return fashion_mnist()


@pytest.fixture(scope="module")
def rotation(fashion: Dataset):
    return partition(fashion, "rotation", 100, train=500, val=100, test=0, seed=1, split="thesis")


@needs_fashion
def test_rotation_split_sizes_clusters_and_shared_test_sets(fashion: Dataset, rotation) -> None:
    assert [len(c.train_y) for c in rotation] == [500] * 98 + [499] * 2  # 49,998 training images
    assert [len(c.val_y) for c in rotation] == [100] * 100
    assert [c.cluster for c in rotation] == [0] * 70 + [1] * 20 + [2] * 5 + [3] * 5
    tests = {id(c.test_x) for c in rotation}
    assert len(tests) == 4 and all(len(c.test_y) == 10_000 for c in rotation)
    for cluster, angle in enumerate((0.0, 180.0, 10.0, 350.0)):
        members = [c for c in rotation if c.cluster == cluster]
        assert all(c.test_x is members[0].test_x and c.test_y is fashion.test_y for c in members)
        assert torch.equal(members[0].test_x, rotate(fashion.test_x, angle))
    assert rotation[0].test_x is fashion.test_x


@needs_fashion
def test_rotation_split_is_the_thesis_codes_for_the_same_seed(fashion: Dataset, rotation) -> None:
    # the thesis: one fixed shuffle (default_rng(42)), the first int(0.8333 n) images train, the rest
    # validate; torch.manual_seed(seed), then random_split of each pool in np.array_split sizes
    order = np.arange(60_000)
    np.random.default_rng(42).shuffle(order)
    cut = int(0.8333 * 60_000)
    torch.manual_seed(1)
    shares = [random_split(pool.tolist(), [len(s) for s in np.array_split(pool, 100)])
              for pool in (order[:cut], order[cut:])]
    for k in (0, 75, 92, 99):
        train, val = (torch.tensor(list(s[k])) for s in shares)
        angle = (0.0, 180.0, 10.0, 350.0)[rotation[k].cluster]
        assert torch.equal(rotation[k].train_y, fashion.train_y[train])
        assert torch.equal(rotation[k].train_x, rotate(fashion.train_x[train], angle))
        assert torch.equal(rotation[k].val_x, rotate(fashion.train_x[val[:100]], angle))


@needs_fashion
def test_rotation_split_is_deterministic_and_its_pools_fixed_across_seeds(fashion: Dataset, rotation) -> None:
    again = partition(fashion, "rotation", 100, train=500, val=100, test=0, seed=1, split="thesis")
    other = partition(fashion, "rotation", 100, train=500, val=100, test=0, seed=2, split="thesis")
    for a, b in zip(rotation, again, strict=True):
        assert torch.equal(a.train_x, b.train_x) and torch.equal(a.val_x, b.val_x)
    assert not torch.equal(rotation[0].train_y, other[0].train_y)
    labels = [torch.cat([c.train_y for c in run]).bincount() for run in (rotation, other)]
    assert torch.equal(*labels)  # the same training pool, handed out differently


@needs_fashion
def test_rotation_split_says_what_fits(fashion: Dataset) -> None:
    with pytest.raises(PartitionError, match="train samples must be at most 500"):
        partition(fashion, "rotation", 100, train=501, val=100, test=0, seed=0, split="thesis")
    with pytest.raises(PartitionError, match="val samples must be at most 101"):
        partition(fashion, "rotation", 100, train=10, val=102, test=0, seed=0, split="thesis")
    with pytest.raises(PartitionError, match="rotation and label-shift only"):
        partition(fashion, "iid", 10, train=10, val=0, test=0, seed=0, split="thesis")


def test_rotation_matches_the_thesis_transform_nearest_with_zero_fill() -> None:
    torch.manual_seed(0)
    x = torch.rand(6, 1, 28, 28) * 2 - 1  # normalised to [-1, 1]
    x[:, :, :3], x[:, :, -3:] = -1.0, -1.0  # a black (-1) border, as Fashion-MNIST's
    for angle in (10.0, 350.0, 180.0):
        thesis = transforms.RandomRotation(degrees=(angle, angle))  # applied after Normalize
        assert torch.equal(rotate(x, angle), torch.stack([thesis(img) for img in x]))
    turned = rotate(x, 10.0)
    corners = turned[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners == 0).all()  # filled with 0 (grey), not -1 (black)
    assert set(turned.unique().tolist()) <= set(x.unique().tolist()) | {0.0}  # nearest: no new values
    assert torch.equal(rotate(x, 180.0), torch.flip(x, dims=(-2, -1)))
    assert rotate(x, 0.0) is x


def test_label_shift_split_groups_of_the_thesis() -> None:
    ds = digits()
    parts = partition(ds, "label-shift", 10, train=40, val=10, test=0, seed=3, split="thesis")
    assert [c.cluster for c in parts] == [0] * 4 + [1] * 6
    groups = ({0, 1, 8, 9}, {2, 3, 4, 5, 6, 7})
    for c in parts:
        assert set(torch.cat([c.train_y, c.val_y]).tolist()) <= groups[c.cluster]
        assert set(c.test_y.tolist()) == groups[c.cluster]
        assert c.test_x is parts[0 if c.cluster == 0 else 9].test_x  # one test tensor per group
    rows = torch.cat([torch.cat([c.train_x, c.val_x]).flatten(1) for c in parts])
    assert len(torch.unique(rows, dim=0)) >= len(rows) - 10  # without replacement (digits has duplicates)
    again = partition(ds, "label-shift", 10, train=40, val=10, test=0, seed=3, split="thesis")
    assert all(torch.equal(a.train_x, b.train_x) for a, b in zip(parts, again, strict=True))
    with pytest.raises(PartitionError, match=r"cluster 0 \(classes 0, 1, 8, 9\) holds"):
        partition(ds, "label-shift", 10, train=200, val=10, test=0, seed=3, split="thesis")


def test_thesis_cnn_is_the_thesis_fashion_cnn() -> None:
    model = build_model("thesis-cnn")
    sizes = {name: p.numel() for name, p in model.named_parameters()}
    assert sizes == {"conv1.weight": 144, "conv1.bias": 16, "conv2.weight": 4608, "conv2.bias": 32,
                     "fc1.weight": 51_200, "fc1.bias": 64, "output.weight": 640, "output.bias": 10}
    assert sum(sizes.values()) == 160 + 4640 + 51_264 + 650 == 56_714
    assert model.conv1.padding == (0, 0) and model.conv2.padding == (0, 0)
    out = model(torch.randn(3, 1, 28, 28))
    assert out.shape == (3, 10) and torch.allclose(out.exp().sum(dim=1), torch.ones(3))  # log-softmax


@pytest.mark.parametrize("name", ["thesis-cnn", "fashion-cnn"])
def test_forward_many_is_each_models_forward(name: str) -> None:
    torch.manual_seed(0)
    models = [build_model(name) for _ in range(3)]
    stacked = {k: torch.stack([m.state_dict()[k] for m in models]) for k in models[0].state_dict()}
    x = torch.randn(3, 5, 1, 28, 28)
    want = torch.stack([m(x[i]) for i, m in enumerate(models)])
    assert torch.allclose(models[0].forward_many(stacked, x), want, atol=1e-5)
    one = {k: v[:1] for k, v in stacked.items()}
    assert torch.allclose(models[0].forward_many(one, x[:1]), want[:1], atol=1e-5)
