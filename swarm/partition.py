"""Deterministic client partitions with per-client train / validation / test splits drawn from the
client's own distribution. Each client records its true cluster (used for evaluation only).

Kinds: `iid`; `dirichlet` (class proportions ~ Dir(alpha), cluster = dominant class); `label-shift`
(40% of clients see the first 4 classes, 60% the other classes); `rotation` (70/20/5/5% of clients
see images rotated 0/180/10/350 degrees). Samples are handed out without replacement while a pool
lasts, then the pool is reshuffled (only when clients ask for more than the dataset holds).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from swarm.data import Dataset

KINDS = ("iid", "dirichlet", "label-shift", "rotation")
ROTATION_ANGLES = (0.0, 180.0, 10.0, 350.0)
ROTATION_SHARES = (0.70, 0.20, 0.05, 0.05)
LABEL_SHIFT_SHARES = (0.4, 0.6)
LABEL_SHIFT_FIRST = 4


@dataclass
class ClientData:
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    cluster: int


class PartitionError(ValueError):
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
    if angle == 0:
        return x
    if angle == 180:
        return torch.flip(x, dims=(-2, -1))
    from torchvision.transforms.functional import InterpolationMode
    from torchvision.transforms.functional import rotate as tv_rotate

    return tv_rotate(x, angle, interpolation=InterpolationMode.BILINEAR, fill=float(x.min()))


def partition(
    ds: Dataset, kind: str, clients: int, *, train: int, val: int, test: int, seed: int, alpha: float = 0.5
) -> list[ClientData]:
    if kind not in KINDS:
        raise PartitionError(f"unknown partition {kind!r}; choose one of {', '.join(KINDS)}")
    if clients < 1 or train < 1 or test < 1 or val < 0:
        raise PartitionError("need clients >= 1, train >= 1, test >= 1 and val >= 0 samples per client")
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
