"""Local training and evaluation of one model on one data loader (the per-peer API the node uses)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from swarm.errors import SwarmError

Batch = tuple[torch.Tensor, torch.Tensor]
OPTIMIZERS = ("adam", "sgd")


@dataclass
class TrainStats:
    loss: float
    samples: int
    steps: int


class ShuffledBatches:
    """Re-iterable mini-batches of in-memory tensors; each pass draws a new permutation from
    `generator`, so a run is reproducible from the generator's seed (the batched simulator draws
    the very same permutations)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator) -> None:
        self.x, self.y, self.batch_size, self.generator = x, y, batch_size, generator

    def __iter__(self) -> Iterator[Batch]:
        order = torch.randperm(len(self.y), generator=self.generator)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            yield self.x[idx], self.y[idx]


class UnknownOptimizerError(SwarmError, ValueError):
    """Asked for an optimizer other than the supported ones."""


def make_optimizer(name: str, params: Iterable[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    raise UnknownOptimizerError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def train_local(
    model: nn.Module,
    loader: Iterable[Batch],
    *,
    epochs: int,
    optimizer: torch.optim.Optimizer,
    device: torch.device | str = "cpu",
    max_steps: int | None = None,
) -> TrainStats:
    """`epochs` passes of cross-entropy training over `loader` (at most `max_steps` steps)."""
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    total, samples, steps = 0.0, 0, 0
    for _ in range(epochs):
        for x, y in loader:
            if max_steps is not None and steps >= max_steps:
                return TrainStats(total / max(samples, 1), samples, steps)
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            if len(y):  # an empty Poisson batch (DP-SGD) has a NaN mean loss but still takes a noisy step
                total += float(loss.detach()) * len(y)
            samples += len(y)
            steps += 1
    return TrainStats(total / max(samples, 1), samples, steps)


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: Iterable[Batch], device: torch.device | str = "cpu"
) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy over `loader`."""
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(dim=1) == y).sum())
        count += len(y)
    if count == 0:
        return float("nan"), float("nan")
    return loss_sum / count, correct / count
