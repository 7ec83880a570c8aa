"""Model architectures peers train, a registry to build them by name, and device selection.

A model may define `forward_many(params, x)`: the forward of N models at once, `params` holding
`[N, ...]` stacked parameters (named as in its state dict) and `x` `[N, B, C, H, W]` (model k sees
x[k]), returning `[N, B, classes]`. `engine.BatchedEngine` uses it instead of `torch.func.vmap`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from swarm.errors import SwarmError
from swarm.features import SCATTER_MAPS, SCATTER_OUT_SIDE


def stacked_cnn(
    params: dict[str, torch.Tensor], x: torch.Tensor, convs: tuple[str, ...], fcs: tuple[str, ...], *,
    padding: int,
) -> torch.Tensor:
    """`forward_many` of CNNs made of `conv -> relu -> 2x2 max-pool` blocks (`convs`) then linear
    layers with relu between them (`fcs`). The N models' convolutions run as one grouped convolution
    in channels-last layout and the linears as batched matmuls. `vmap` of the model runs the grouped
    convolutions channels-first, where CPU max-pooling is ~9x slower: no faster than a loop over the
    models (docs/benchmarks.md). ReLU runs after the max-pool, on a quarter of the values: ReLU is
    monotone, so relu(max(x)) = max(relu(x)), and the gradient reaches the same input either way."""
    n = x.shape[0]
    h = x.transpose(0, 1).flatten(1, 2).contiguous(memory_format=torch.channels_last)  # [B, N*C, H, W]
    for name in convs:
        w, b = params[f"{name}.weight"], params[f"{name}.bias"]
        h = F.conv2d(h, w.flatten(0, 1), b.flatten(), padding=padding, groups=n)
        # one model on 1-channel input leaves the layout ambiguous and the conv answers channels-first
        h = F.relu(F.max_pool2d(h.contiguous(memory_format=torch.channels_last), 2))
    h = h.unflatten(1, (n, -1)).transpose(0, 1).flatten(2)  # [N, B, C*H*W], each model's (C, H, W) order
    for i, name in enumerate(fcs):
        w, b = params[f"{name}.weight"], params[f"{name}.bias"]
        h = torch.baddbmm(b.unsqueeze(1), F.relu(h) if i else h, w.transpose(1, 2))
    return h


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

    def forward_many(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return stacked_cnn(params, x, ("features.0", "features.3"), ("head.1", "head.3"), padding=1)


class ThesisCNN(nn.Module):
    """The thesis code's `fashion_CNN` (models/fashion_models.py), layer for layer: unpadded 3x3 convs
    1->16 and 16->32, each followed by ReLU and 2x2 max-pooling (28 -> 26 -> 13 -> 11 -> 5), fc 800->64,
    fc 64->classes, log-softmax; 56,714 parameters. It ends in log-softmax because the thesis trains it
    with NLLLoss; our cross-entropy on log-probabilities is the same loss (log-softmax is idempotent)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3)
        self.conv2 = nn.Conv2d(16, 32, 3)
        self.fc1 = nn.Linear(32 * 5 * 5, 64)
        self.output = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return F.log_softmax(self.output(x), dim=1)

    def forward_many(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(stacked_cnn(params, x, ("conv1", "conv2"), ("fc1", "output"), padding=0), dim=-1)


class DPCNN(nn.Module):
    """The end-to-end CNN DP-SGD suits for 28x28 grey images (Papernot et al. 2021, "Tempered Sigmoid
    Activations for Deep Learning with Differential Privacy"; Tramer and Boneh 2021 use it for
    Fashion-MNIST, github.com/ftramer/Handcrafted-DP `MNIST_CNN`): 8x8 (padding 2) and 4x4 stride-2
    convolutions, each followed by tanh and 2x2 stride-1 max-pooling (28 -> 13 -> 12 -> 5 -> 4), fc
    512->32, tanh, fc 32->classes; 26,010 parameters. Bounded
    activations keep clipped, noisy updates from blowing activations up as ReLU lets them; there is no
    batch norm, which mixes samples and so breaks per-sample clipping."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 8, stride=2, padding=2)
        self.conv2 = nn.Conv2d(16, 32, 4, stride=2)
        self.fc1 = nn.Linear(32 * 4 * 4, 32)
        self.fc2 = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(torch.tanh(self.conv1(x)), 2, 1)
        x = F.max_pool2d(torch.tanh(self.conv2(x)), 2, 1)
        return self.fc2(torch.tanh(self.fc1(x.flatten(1))))


class ScatterLinear(nn.Module):
    """A linear classifier on ScatterNet features (`swarm.features.scatter`): the best DP-SGD learner
    for Fashion-MNIST in Tramer and Boneh's study (ICLR 2021; github.com/ftramer/Handcrafted-DP
    `ScatterLinear`). The fixed features do the vision; DP-SGD only has to learn 39,700 weights of a
    convex problem, so the noise it must add per weight is spread over few of them. Takes the features
    (`[n, 81 C, 7, 7]`), not the images: `swarm.features.client_inputs` maps a client's data once."""

    input_features = "scatter"

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.fc = nn.Linear(SCATTER_MAPS * in_channels * SCATTER_OUT_SIDE**2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


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
    "thesis-cnn": ThesisCNN,
    "dp-cnn": DPCNN,
    "scatter-linear": ScatterLinear,
    "lenet": LeNetColour,
    "digits-mlp": DigitsMLP,
    "resnet18": resnet18,
}


class UnknownModelError(SwarmError, ValueError):
    """Asked for a model name that is not in the registry."""


def build_model(name: str, *, in_channels: int = 1, num_classes: int = 10) -> nn.Module:
    """Build a registered model by name, e.g. `build_model("fashion-cnn")`."""
    try:
        factory = MODELS[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}") from None
    return factory(in_channels=in_channels, num_classes=num_classes)


def found_devices() -> list[str]:
    """The devices torch can use here, accelerators named, cpu last (what `auto` chose among)."""
    found = [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return [*found, "cpu"]


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
