"""Differential privacy for local training: DP-SGD via Opacus for one peer, the same math for the
batched simulator, and the accounting of epsilon spent (Opacus's RDP accountant in both cases).

A peer states a budget (target epsilon, delta, max per-sample gradient norm) and how many epochs it
plans to train in total; the noise multiplier is chosen so that exactly that much training spends
the budget. Training stops (`BudgetExhausted`) once the planned steps are taken, so the epsilon
spent never exceeds the target. The accounting assumes Poisson sampling of each batch with rate
batch_size / n_train, as Opacus does by default.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from opacus import PrivacyEngine
from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier
from opacus.validators import ModuleValidator
from torch import nn
from torch.utils.data import DataLoader

from swarm.errors import SwarmError
from swarm.training import TrainStats, train_local

# Opacus warns on every call about things we chose deliberately (no secure RNG in a research
# setting, RDP order range, hooks firing on inputs without grad); they would flood the node's log.
_QUIET = ("Secure RNG turned off", "Optimal order is the", "Full backward hook is firing",
          "Using a non-full backward hook")


@contextmanager
def quiet_opacus() -> Iterator[None]:
    with warnings.catch_warnings():
        for text in _QUIET:
            warnings.filterwarnings("ignore", message=f".*{text}.*")
        yield


class PrivacyConfigError(SwarmError, ValueError):
    """A DP setting that cannot work (bad numbers, a model with batch norm, an unreachable budget)."""


class BudgetExhausted(SwarmError, RuntimeError):
    """The privacy budget is spent: the peer must stop training (it may keep serving its weights)."""


@dataclass(frozen=True)
class PrivacyBudget:
    """(epsilon, delta)-DP target for a peer's whole training; epsilon = inf means no DP."""

    target_epsilon: float
    delta: float = 1e-5
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        if not self.target_epsilon > 0:
            raise PrivacyConfigError(f"--dp-epsilon must be > 0 (inf: no DP), got {self.target_epsilon}")
        if not 0 < self.delta < 1:
            raise PrivacyConfigError(f"--dp-delta must be in (0, 1), below 1/n_train, got {self.delta}")
        if not (self.max_grad_norm > 0 and math.isfinite(self.max_grad_norm)):
            raise PrivacyConfigError(f"--dp-max-grad-norm must be positive, got {self.max_grad_norm}")

    @property
    def enabled(self) -> bool:
        return math.isfinite(self.target_epsilon)


def plan_noise(budget: PrivacyBudget, sample_rate: float, steps: int) -> float:
    """Noise multiplier sigma such that `steps` DP-SGD steps at `sample_rate` spend at most the budget."""
    if not budget.enabled:
        return 0.0
    if not 0 < sample_rate <= 1 or steps < 1:
        raise PrivacyConfigError(f"cannot plan DP noise for sample rate {sample_rate} and {steps} steps; "
                                 "the peer needs training data and at least one planned epoch")
    try:
        with quiet_opacus():
            return float(get_noise_multiplier(target_epsilon=budget.target_epsilon, target_delta=budget.delta,
                                              sample_rate=sample_rate, steps=steps, accountant="rdp"))
    except ValueError as exc:
        raise PrivacyConfigError(f"epsilon {budget.target_epsilon} at delta {budget.delta} is unreachable "
                                 f"({exc}); raise --dp-epsilon or --dp-delta") from None


History = list[tuple[float, float, int]]


def epsilon_of(history: History, delta: float) -> float:
    """Epsilon spent by DP-SGD steps given as (noise multiplier, sample rate, steps) triples."""
    if not history:
        return 0.0
    if any(sigma <= 0 for sigma, _, _ in history):
        return math.inf
    accountant = RDPAccountant()
    accountant.history = [(float(s), float(q), int(n)) for s, q, n in history]
    with quiet_opacus():
        return float(accountant.get_epsilon(delta))


def clip_and_noise(per_sample: Mapping[str, torch.Tensor], mask: torch.Tensor, max_grad_norm: float,
                   noise_std: torch.Tensor, batch_size: float,
                   generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """The DP-SGD gradient for N clients at once, as Opacus computes it for one.

    `per_sample[k]` is `[N, B, *shape]`, `mask` `[N, B]` marks real samples, `noise_std` `[N]` is
    sigma_i * max_grad_norm. Each sample's whole gradient is clipped to `max_grad_norm`, the clipped
    gradients summed, Gaussian noise added, and the sum divided by the expected batch size.
    """
    squares = (g.flatten(2).pow(2).sum(-1) for g in per_sample.values())
    norms = torch.sqrt(functools.reduce(torch.add, squares))
    factor = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0) * mask.to(norms.dtype)
    out = {}
    for k, g in per_sample.items():
        summed = torch.einsum("nb,nb...->n...", factor, g)
        noise = torch.randn(summed.shape, generator=generator, dtype=summed.dtype)
        std = noise_std.to(summed.dtype).reshape(-1, *([1] * (summed.dim() - 1)))
        out[k] = (summed + std * noise) / batch_size
    return out


def check_dp_model(model: nn.Module) -> None:
    """Refuse models DP-SGD cannot train per sample (batch norm mixes samples of a batch)."""
    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        first = str(errors[0]).splitlines()[0]
        raise PrivacyConfigError(f"this model cannot be trained with DP-SGD ({first}); pick a model "
                                 "without batch norm, e.g. scatter-linear or dp-cnn (made for DP-SGD), "
                                 "fashion-cnn, lenet or digits-mlp")


@dataclass
class PrivateTraining:
    """One peer's DP-SGD state. Train with `train()`; read and write weights through `module` (plain
    state-dict keys, the ones a snapshot publishes), not through the Opacus wrapper `model`."""

    module: nn.Module
    model: nn.Module
    optimizer: torch.optim.Optimizer
    loader: DataLoader
    budget: PrivacyBudget
    noise_multiplier: float
    sample_rate: float
    steps_planned: int
    accountant: RDPAccountant = field(repr=False)

    def steps_taken(self) -> int:
        return sum(int(n) for _, _, n in self.accountant.history)

    def steps_left(self) -> int:
        return max(0, self.steps_planned - self.steps_taken())

    def epsilon_spent(self) -> float:
        return epsilon_of(list(self.accountant.history), self.budget.delta)

    def exhausted(self) -> bool:
        return self.steps_left() == 0

    def train(self, epochs: int, device: torch.device | str = "cpu") -> TrainStats:
        """Up to `epochs` DP-SGD epochs, cut where the budget ends; `BudgetExhausted` if none is left."""
        if self.exhausted():
            raise BudgetExhausted(f"privacy budget spent: epsilon {self.epsilon_spent():.3g} of "
                                  f"{self.budget.target_epsilon:g} (delta {self.budget.delta:g}); "
                                  "training stopped, the last weights are still served")
        with quiet_opacus():
            return train_local(self.model, self.loader, epochs=epochs, optimizer=self.optimizer,
                               device=device, max_steps=self.steps_left())

    def state_dict(self) -> dict[str, Any]:
        """Plain (msgpack-able) accounting state for checkpoints."""
        return {"target_epsilon": self.budget.target_epsilon, "delta": self.budget.delta,
                "max_grad_norm": self.budget.max_grad_norm, "noise_multiplier": self.noise_multiplier,
                "sample_rate": self.sample_rate, "steps_planned": self.steps_planned,
                "history": [[float(s), float(q), int(n)] for s, q, n in self.accountant.history]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume accounting from a checkpoint; refuses one made for a different budget."""
        saved = PrivacyBudget(float(state["target_epsilon"]), float(state["delta"]),
                              float(state["max_grad_norm"]))
        if saved != self.budget:
            raise PrivacyConfigError(f"checkpoint was made with {saved}, this run asks for {self.budget}; "
                                     "resume with the same --dp-* options (epsilon already spent counts)")
        self.steps_planned = int(state["steps_planned"])
        self.accountant.history = [(float(s), float(q), int(n)) for s, q, n in state["history"]]


def make_private(model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader,
                 budget: PrivacyBudget, epochs_planned: int, *,
                 noise_seed: int | None = None) -> PrivateTraining:
    """Wrap one peer's model, optimizer and DataLoader for DP-SGD spending `budget` over
    `epochs_planned` epochs in total. `optimizer` must be built on `model.parameters()`."""
    if not budget.enabled:
        raise PrivacyConfigError("make_private needs a finite --dp-epsilon; train without it for no DP")
    if not isinstance(loader, DataLoader):
        raise PrivacyConfigError(f"DP-SGD needs a torch DataLoader over the local dataset, got "
                                 f"{type(loader).__name__}")
    if len(loader) == 0 or epochs_planned < 1:
        raise PrivacyConfigError("DP-SGD needs local training data and epochs_planned >= 1")
    check_dp_model(model)
    sample_rate = 1.0 / len(loader)  # what Opacus's Poisson DataLoader uses
    steps_planned = epochs_planned * len(loader)
    sigma = plan_noise(budget, sample_rate, steps_planned)
    generator = None if noise_seed is None else torch.Generator().manual_seed(noise_seed)
    with quiet_opacus():
        engine = PrivacyEngine(accountant="rdp")
        wrapped, dp_optimizer, dp_loader = engine.make_private(
            module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=sigma,
            max_grad_norm=budget.max_grad_norm, noise_generator=generator)
    return PrivateTraining(module=model, model=wrapped, optimizer=dp_optimizer, loader=dp_loader,
                           budget=budget, noise_multiplier=sigma, sample_rate=sample_rate,
                           steps_planned=steps_planned, accountant=engine.accountant)
