"""Trained weights for the storage benchmarks: a few SGD steps on real Fashion-MNIST (read with numpy).

Deliberately independent of swarm/data.py: the benchmarks only need images and labels.
"""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

FASHION = Path("/usr/share/datasets/fashion-mnist")


def fashion_train(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `n` training images as float [n, 1, 28, 28] in [-1, 1], and their labels."""
    with gzip.open(FASHION / "train-images-idx3-ubyte.gz", "rb") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)[:n]
    with gzip.open(FASHION / "train-labels-idx1-ubyte.gz", "rb") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)[:n]
    x = torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0)
    return x, torch.from_numpy(labels.astype(np.int64))


State = dict[str, torch.Tensor]


def train(model: nn.Module, steps: int, *, batch: int = 64, lr: float = 0.05, seed: int = 0,
          snapshot_at: int | None = None) -> tuple[State, State | None, str]:
    """Train `steps` SGD steps; returns (final state, state after `snapshot_at` steps, a description)."""
    torch.manual_seed(seed)
    x, y = fashion_train(steps * batch)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    earlier = None
    t0 = time.perf_counter()
    model.train()
    for step in range(steps):
        if step == snapshot_at:
            earlier = {k: v.detach().clone() for k, v in model.state_dict().items()}
        xb, yb = x[step * batch:(step + 1) * batch], y[step * batch:(step + 1) * batch]
        loss = nn.functional.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    desc = f"{steps} SGD steps (batch {batch}, lr {lr}) on Fashion-MNIST, last loss {loss.item():.3f}, " \
           f"{time.perf_counter() - t0:.0f} s"
    return state, earlier, desc
