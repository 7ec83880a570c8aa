"""Image folders of real Fashion-MNIST images, one folder per class name, as a volunteer would have them
(`--image-folder`): PNG files from the Debian Fashion-MNIST test set, so they overlap no training shard."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from swarm.data import INFO, find_idx, read_idx


def folder_name(class_name: str) -> str:
    """A class name as a folder can hold it (`T-shirt/top` -> `T-shirt_top`)."""
    return class_name.replace("/", "_")


def write_fashion_folder(root: Path, per_class: int, skip: int = 0) -> Path:
    """`root/<class name>/<n>.png`: `per_class` test images of each Fashion-MNIST class, after its first
    `skip` ones (folders with different `skip` ranges hold different images)."""
    images = read_idx(find_idx("t10k-images-idx3-ubyte"))
    labels = read_idx(find_idx("t10k-labels-idx1-ubyte"))
    for label, name in enumerate(INFO["fashion-mnist"].classes):
        folder = root / folder_name(name)
        folder.mkdir(parents=True, exist_ok=True)
        for n, i in enumerate(np.flatnonzero(labels == label)[skip:skip + per_class]):
            Image.fromarray(images[i]).save(folder / f"{n}.png")
    return root
