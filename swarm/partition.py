"""Deterministic client partitions with per-client train / validation / test splits. Each client
records its true cluster (used for evaluation only).

Kinds: `iid`; `dirichlet` (class proportions ~ Dir(alpha), cluster = dominant class); `label-shift`
(40% of clients see one group of classes, 60% the other classes); `rotation` (70/20/5/5% of clients
see images rotated 0/180/10/350 degrees).

Splits: `pools` draws each client's train, validation and test samples from its own distribution;
samples are handed out without replacement while a pool lasts, then the pool is reshuffled (only
when clients ask for more than the dataset holds). `thesis` is the layout the thesis code
(github.com/tomhagander/decentralized_deep_learning) ran, for rotation and label-shift only: see
`thesis_rotation` and `thesis_label_shift`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from swarm.data import Dataset
from swarm.errors import SwarmError

KINDS = ("iid", "dirichlet", "label-shift", "rotation")
SPLITS = ("pools", "thesis")
DATA_SPLITS = ("train", "val", "test")  # of one client
ROTATION_ANGLES = (0.0, 180.0, 10.0, 350.0)
ROTATION_SHARES = (0.70, 0.20, 0.05, 0.05)
LABEL_SHIFT_SHARES = (0.4, 0.6)
LABEL_SHIFT_FIRST = 4
# The thesis code's layout. run_experiment.py shuffles the training images once with
# np.random.default_rng(42) (the same for every seed) and keeps the first int(0.8333 * n) for training,
# the rest for validation. Client k belongs to cluster c while k < int(clients * bound_c)
# (utils/classes.py Client.__init__), so clusters are contiguous blocks of client indices.
THESIS_POOL_SEED = 42
THESIS_TRAIN_FRACTION = 0.8333
THESIS_ROTATION_BOUNDS = (0.7, 0.9, 0.95)
# utils/initialization_utils.py sample_cifargroups: CIFAR-10 vehicles (40% of clients) / animals (60%)
THESIS_LABEL_GROUPS = ((0, 1, 8, 9), (2, 3, 4, 5, 6, 7))
THESIS_LABEL_BOUNDS = (0.4,)


@dataclass
class ClientData:
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    cluster: int


def split_of(c: ClientData, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One of a client's splits as (images, labels)."""
    if split not in DATA_SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(DATA_SPLITS)}")
    return getattr(c, f"{split}_x"), getattr(c, f"{split}_y")


class PartitionError(SwarmError, ValueError):
    """Unknown partition kind or impossible parameters."""


class Pool:
    """Indices handed out in a shuffled order, reshuffled when exhausted."""

    def __init__(self, indices: np.ndarray, rng: np.random.Generator) -> None:
        if len(indices) == 0:
            raise PartitionError(
                "a partition pool is empty; the dataset lacks the classes this partition needs"
            )
        self.indices, self.rng = indices, rng
        self.order, self.cursor = rng.permutation(indices), 0

    def take(self, n: int) -> np.ndarray:
        out = []
        while n > 0:
            if self.cursor == len(self.order):
                self.order, self.cursor = self.rng.permutation(self.indices), 0
            got = self.order[self.cursor : self.cursor + n]
            self.cursor += len(got)
            n -= len(got)
            out.append(got)
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def cluster_sizes(n: int, shares: tuple[float, ...]) -> list[int]:
    """Split n clients by shares (largest remainders), e.g. 20 by 70/20/5/5% -> 14, 4, 1, 1."""
    raw = [n * s for s in shares]
    sizes = [int(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - sizes[i], reverse=True)[: n - sum(sizes)]:
        sizes[i] += 1
    return sizes


def cluster_of_clients(n: int, shares: tuple[float, ...], rng: np.random.Generator) -> np.ndarray:
    labels = np.concatenate([np.full(k, c) for c, k in enumerate(cluster_sizes(n, shares))])
    return rng.permutation(labels)


def rotate(x: torch.Tensor, angle: float) -> torch.Tensor:
    """Rotate normalised images counter-clockwise as the thesis's RandomRotation((angle, angle)) on
    its normalised tensors does: nearest neighbour, corners filled with 0 (mid-grey after the 0.5/0.5
    normalisation, not black); 180 degrees is an exact flip, 0 returns `x` itself."""
    if angle == 0:
        return x
    source = rotation_source(x.shape[-2], x.shape[-1], angle)
    out = x.flatten(-2)[..., source.clamp_min(0)]
    out[..., source < 0] = 0.0
    return out.view(x.shape)


@functools.cache
def rotation_source(h: int, w: int, angle: float) -> torch.Tensor:
    """Nearest neighbour only moves pixels: torchvision rotates a map of pixel numbers once and every
    image is gathered through it (the same values, ~20x faster on 10k images); -1 = fill."""
    from torchvision.transforms.functional import InterpolationMode
    from torchvision.transforms.functional import rotate as tv_rotate

    numbers = torch.arange(1, h * w + 1, dtype=torch.float32).view(1, h, w)  # 0 marks the fill
    return tv_rotate(numbers, angle, interpolation=InterpolationMode.NEAREST, fill=0.0).long().flatten() - 1


def thesis_cluster(k: int, clients: int, bounds: tuple[float, ...]) -> int:
    """Cluster of client k: the thesis's `idx < int(num_users * bound)` chain (literal bounds, since
    a cumulative sum of shares rounds 0.9 down to 0.8999...)."""
    return sum(k >= int(clients * b) for b in bounds)


def thesis_rotation(ds: Dataset, clients: int, *, train: int, val: int, seed: int) -> list[ClientData]:
    """The thesis's Fashion-MNIST rotation layout. The fixed shuffle splits the training images into a
    training and a validation pool; `torch.utils.data.random_split` hands each pool out in even shares
    (np.array_split sizes) from torch's generator seeded with the run's seed, first the training pool,
    then the validation pool, so clients get the thesis's very samples for the same seed. A client keeps
    the first `train` / `val` of its share. Every client tests on the full test set rotated to its
    angle; clients of one angle share that tensor (100 copies of 10k images would take 3 GB)."""
    n = len(ds.train_y)
    order = np.random.default_rng(THESIS_POOL_SEED).permutation(n)
    cut = int(THESIS_TRAIN_FRACTION * n)
    gen = torch.Generator().manual_seed(seed)
    shares = []
    for name, pool, count in (("train", order[:cut], train), ("val", order[cut:], val)):
        split = np.array_split(pool[torch.randperm(len(pool), generator=gen).numpy()], clients)
        if count > len(split[0]):
            raise PartitionError(
                f"the thesis split shares {len(pool):,} {name} images evenly over {clients} clients "
                f"({len(split[-1])} to {len(split[0])} each); {name} samples must be at most {len(split[0])}"
            )
        shares.append([torch.from_numpy(s[:count]) for s in split])
    tests: dict[float, torch.Tensor] = {}
    out = []
    for k in range(clients):
        cluster = thesis_cluster(k, clients, THESIS_ROTATION_BOUNDS)
        angle = ROTATION_ANGLES[cluster]
        if angle not in tests:
            tests[angle] = rotate(ds.test_x, angle)
        tr, va = shares[0][k], shares[1][k]
        out.append(
            ClientData(
                rotate(ds.train_x[tr], angle),
                ds.train_y[tr],
                rotate(ds.train_x[va], angle),
                ds.train_y[va],
                tests[angle],
                ds.test_y,
                cluster,
            )
        )
    return out


def thesis_label_shift(ds: Dataset, clients: int, *, train: int, val: int, seed: int) -> list[ClientData]:
    """The thesis's CIFAR-10 label-shift layout (`sample_cifargroups`) on any 10-class dataset: the
    first 40% of clients see classes 0, 1, 8, 9, the others classes 2-7; each client draws `train`
    then `val` samples without replacement from its group's training images; each tests on all test
    images of its group (one tensor shared per group, as `test_CIFAR.py` does)."""
    if ds.num_classes < 10:
        raise PartitionError("the thesis label-shift split needs 10 classes")
    rng = np.random.default_rng(seed)
    ytr, yte = ds.train_y.numpy(), ds.test_y.numpy()
    clusters = [thesis_cluster(k, clients, THESIS_LABEL_BOUNDS) for k in range(clients)]
    members = [clusters.count(c) for c in (0, 1)]
    pools, tests = [], []
    for c, group in enumerate(THESIS_LABEL_GROUPS):
        pool = rng.permutation(np.flatnonzero(np.isin(ytr, group)))
        if members[c] * (train + val) > len(pool):
            raise PartitionError(
                f"cluster {c} (classes {', '.join(map(str, group))}) holds {len(pool):,} training images; "
                f"{members[c]} clients x {train + val} samples need {members[c] * (train + val):,}"
            )
        pools.append(torch.from_numpy(pool))
        te = torch.from_numpy(np.flatnonzero(np.isin(yte, group)))
        tests.append((ds.test_x[te], ds.test_y[te]))
    cursor = [0, 0]
    out = []
    for c in clusters:
        idx = pools[c][cursor[c] : cursor[c] + train + val]
        cursor[c] += train + val
        tr, va = idx[:train], idx[train:]
        out.append(ClientData(ds.train_x[tr], ds.train_y[tr], ds.train_x[va], ds.train_y[va], *tests[c], c))
    return out


def partition(
    ds: Dataset,
    kind: str,
    clients: int,
    *,
    train: int,
    val: int,
    test: int,
    seed: int,
    alpha: float = 0.5,
    split: str = "pools",
) -> list[ClientData]:
    """`test` samples per client for the `pools` split; the `thesis` split ignores it (full test sets)."""
    if kind not in KINDS:
        raise PartitionError(f"unknown partition {kind!r}; choose one of {', '.join(KINDS)}")
    if split not in SPLITS:
        raise PartitionError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if clients < 1 or train < 1 or val < 0:
        raise PartitionError("need clients >= 1, train >= 1 and val >= 0 samples per client")
    if split == "thesis":
        if kind == "rotation":
            return thesis_rotation(ds, clients, train=train, val=val, seed=seed)
        if kind == "label-shift":
            return thesis_label_shift(ds, clients, train=train, val=val, seed=seed)
        raise PartitionError("the thesis split exists for rotation and label-shift only")
    if test < 1:
        raise PartitionError("the pools split needs test >= 1 samples per client")
    rng = np.random.default_rng(seed)
    ytr, yte = ds.train_y.numpy(), ds.test_y.numpy()
    classes = np.arange(ds.num_classes)

    def pools_for(cls: np.ndarray) -> tuple[Pool, Pool]:
        return Pool(np.flatnonzero(np.isin(ytr, cls)), rng), Pool(np.flatnonzero(np.isin(yte, cls)), rng)

    picks: list[tuple[np.ndarray, np.ndarray, int, float]] = []  # train+val idx, test idx, cluster, angle
    if kind == "dirichlet":
        per_class = {c: pools_for(np.array([c])) for c in classes}
        for _ in range(clients):
            p = rng.dirichlet(np.full(ds.num_classes, alpha))
            n_tr, n_te = rng.multinomial(train + val, p), rng.multinomial(test, p)
            tr = np.concatenate([per_class[c][0].take(int(n_tr[c])) for c in classes])
            te = np.concatenate([per_class[c][1].take(int(n_te[c])) for c in classes])
            picks.append((rng.permutation(tr), rng.permutation(te), int(p.argmax()), 0.0))
    elif kind == "label-shift":
        groups = [classes[:LABEL_SHIFT_FIRST], classes[LABEL_SHIFT_FIRST:]]
        pools = [pools_for(g) for g in groups]
        for c in cluster_of_clients(clients, LABEL_SHIFT_SHARES, rng):
            picks.append((pools[c][0].take(train + val), pools[c][1].take(test), int(c), 0.0))
    else:
        shares = ROTATION_SHARES if kind == "rotation" else (1.0,)
        trp, tep = pools_for(classes)
        for c in cluster_of_clients(clients, shares, rng):
            angle = ROTATION_ANGLES[c] if kind == "rotation" else 0.0
            picks.append((trp.take(train + val), tep.take(test), int(c), angle))

    out = []
    for tr, te, cluster, angle in picks:
        tr_t, te_t = torch.from_numpy(tr.astype(np.int64)), torch.from_numpy(te.astype(np.int64))
        x, y = rotate(ds.train_x[tr_t], angle), ds.train_y[tr_t]
        out.append(
            ClientData(
                x[:train],
                y[:train],
                x[train:],
                y[train:],
                rotate(ds.test_x[te_t], angle),
                ds.test_y[te_t],
                cluster,
            )
        )
    return out
