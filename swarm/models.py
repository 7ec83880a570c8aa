"""Model architectures peers train, a registry to build them by name, and device selection."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class FashionCNN(nn.Module):
    """The small 2-conv CNN of the DAC/PANM line of work for 28x28 grey images (~55k parameters)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(32 * 7 * 7, 32), nn.ReLU(), nn.Linear(32, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class LeNetColour(nn.Module):
    """LeNet-style CNN for 32x32 colour input (CIFAR-10), ~62k parameters."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class DigitsMLP(nn.Module):
    """A small MLP for sklearn's 8x8 digits (fast tests)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 64, hidden), nn.ReLU(),
                                 nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def resnet18(in_channels: int = 3, num_classes: int = 10) -> nn.Module:
    """torchvision's resnet18 with the stem adapted to `in_channels`."""
    from torchvision.models import resnet18 as tv_resnet18

    model = tv_resnet18(num_classes=num_classes)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


MODELS: dict[str, Callable[..., nn.Module]] = {
    "fashion-cnn": FashionCNN,
    "lenet": LeNetColour,
    "digits-mlp": DigitsMLP,
    "resnet18": resnet18,
}


class UnknownModelError(ValueError):
    """Asked for a model name that is not in the registry."""


def build_model(name: str, *, in_channels: int = 1, num_classes: int = 10) -> nn.Module:
    """Build a registered model by name, e.g. `build_model("fashion-cnn")`."""
    try:
        factory = MODELS[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}") from None
    return factory(in_channels=in_channels, num_classes=num_classes)


def pick_device(requested: str = "auto") -> torch.device:
    """`auto` picks cuda > mps > cpu; an explicit device that is not available is an error."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: no CUDA device is available here; use --device auto or cpu")
    mps = getattr(torch.backends, "mps", None)
    if requested == "mps" and not (mps is not None and mps.is_available()):
        raise RuntimeError("--device mps: MPS is not available here; use --device auto or cpu")
    return torch.device(requested)
