"""Datasets as in-memory tensors: Fashion-MNIST (local IDX files), sklearn digits, CIFAR-10 (when
its files are present). Nothing is ever downloaded."""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from swarm.errors import SwarmError

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class DatasetInfo:
    """What is known of a research data set without loading it."""

    classes: tuple[str, ...]  # in label order: label k is classes[k]
    input_shape: tuple[int, int, int]
    model: str  # the default architecture for this input shape


INFO: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                  "Sneaker", "Bag", "Ankle boot"), (1, 28, 28), "fashion-cnn"),
    "digits": DatasetInfo(tuple(str(d) for d in range(10)), (1, 8, 8), "digits-mlp"),
    "cifar10": DatasetInfo(("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                            "truck"), (3, 32, 32), "lenet"),
}


@dataclass
class Dataset:
    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    in_channels: int
    model: str  # the default architecture for this input shape


class DatasetNotFoundError(SwarmError, FileNotFoundError):
    """The dataset's files are not on this machine."""


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally .gz): magic (2 zero bytes, dtype 0x08, ndim), big-endian dims, data."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("SWARM_DATA_DIR"):
        base = Path(os.environ["SWARM_DATA_DIR"])
        dirs += [base, base / "fashion-mnist", base / "FashionMNIST" / "raw"]
    return [*dirs, DEBIAN_FASHION]


def find_idx(stem: str) -> Path:
    for d in fashion_dirs():
        for name in (stem, f"{stem}.gz"):
            if (d / name).is_file():
                return d / name
    raise DatasetNotFoundError(
        f"Fashion-MNIST file {stem}[.gz] not found in {', '.join(map(str, fashion_dirs()))}; install the "
        "Debian package dataset-fashion-mnist or set SWARM_DATA_DIR to a folder holding the IDX files"
    )


def to_images(a: np.ndarray) -> torch.Tensor:
    """uint8 images -> float [n, C, H, W] in [-1, 1] (the usual 0.5/0.5 normalisation)."""
    x = torch.from_numpy(a.astype(np.float32) / 255.0)
    x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
    return (x - 0.5) / 0.5


FASHION_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte")


def fashion_mnist() -> Dataset:
    part = {
        k: read_idx(find_idx(f"{p}-{k}-idx{d}-ubyte"))
        for p, k, d in [("train", "images", 3), ("train", "labels", 1)]
    }
    test = {k: read_idx(find_idx(f"t10k-{k}-idx{d}-ubyte")) for k, d in [("images", 3), ("labels", 1)]}
    return Dataset(
        "fashion-mnist",
        to_images(part["images"]),
        torch.from_numpy(part["labels"].astype(np.int64)),
        to_images(test["images"]),
        torch.from_numpy(test["labels"].astype(np.int64)),
        10,
        1,
        "fashion-cnn",
    )


def digits(seed: int = 0, test_fraction: float = 0.25) -> Dataset:
    """sklearn's bundled 1,797 8x8 digits, split train/test by a seeded permutation."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy((bunch.images.astype(np.float32) / 16.0 - 0.5) / 0.5).unsqueeze(1)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    cut = int(len(y) * (1 - test_fraction))
    tr, te = order[:cut], order[cut:]
    return Dataset("digits", x[tr], y[tr], x[te], y[te], 10, 1, "digits-mlp")


def cifar_root() -> Path:
    return Path(os.environ.get("SWARM_DATA_DIR", Path.home() / ".cache" / "swarm-node"))


def cifar10() -> Dataset:
    from torchvision.datasets import CIFAR10

    root = cifar_root()
    try:
        train, test = (
            CIFAR10(str(root), train=True, download=False),
            CIFAR10(str(root), train=False, download=False),
        )
    except RuntimeError:
        raise DatasetNotFoundError(
            f"CIFAR-10 not found under {root}/cifar-10-batches-py; put the extracted python version "
            "there (or set SWARM_DATA_DIR); it is never downloaded"
        ) from None
    return Dataset(
        "cifar10",
        to_images(train.data),
        torch.tensor(train.targets),
        to_images(test.data),
        torch.tensor(test.targets),
        10,
        3,
        "lenet",
    )


LOADERS = {"fashion-mnist": fashion_mnist, "digits": digits, "cifar10": cifar10}


class UnknownDatasetError(SwarmError, ValueError):
    """Asked for a dataset name that is not supported."""


def available(name: str) -> bool:
    """Whether data set `name` is on this machine, without loading it (digits ships with sklearn)."""
    if name == "fashion-mnist":
        try:
            return all(find_idx(stem) for stem in FASHION_STEMS)
        except DatasetNotFoundError:
            return False
    if name == "cifar10":
        return (cifar_root() / "cifar-10-batches-py").is_dir()
    return name in LOADERS


def load_dataset(name: str) -> Dataset:
    if name not in LOADERS:
        raise UnknownDatasetError(f"unknown dataset {name!r}; choose one of {', '.join(LOADERS)}")
    return LOADERS[name]()
