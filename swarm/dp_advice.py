"""Will a planned DP-SGD run learn? The rule both runtimes apply before training, and its warning.

The maths. One DP-SGD step (`swarm.privacy`) Poisson-samples a batch of expected size B = q n, clips
every sample's gradient to norm C, sums them, adds Gaussian noise of std sigma C to every one of the
model's d weights and divides by B. So the step's signal, the mean clipped gradient, has norm at most
C (all clipped gradients pointing one way), while its noise has std sigma C / B per weight, norm
sigma C sqrt(d) / B: per step, noise / largest signal = sigma sqrt(d) / B = 1 / rho. Over the T
planned steps the signals add up to at most T C, the independent noises only to sqrt(T) sigma C
sqrt(d) / B, so for the whole run

    R = sqrt(T) B / (sigma sqrt(d)) = sqrt(T) rho,

the largest signal the run can carry over the noise it adds. Below 1 the noise wins even if every
step pointed the same way: the weights move more by noise than they can by learning.

Why more rounds do not help: epsilon is fixed, so the accountant plans sigma for all T steps. Without
subsampling sigma grows as sqrt(T) exactly (T Gaussian mechanisms), with Poisson sampling nearly so
(sigma ~ q sqrt(T log(1/delta)) / epsilon for small q), and R stays put: for the issue's digits run R
is 0.483, 0.490, 0.494 for 15, 30, 60 planned epochs. With that approximation R ~ n epsilon /
sqrt(d log(1/delta)): samples per client n and epsilon raise it in proportion (digits, 40 -> 130
samples: R x 3.0; epsilon 4 -> 16: x 3.05), a smaller model by sqrt(d). A larger expected batch
barely changes R (Fashion-MNIST, 600 samples, epsilon 1: 0.56 at B 16, 0.60 at B 256) but lowers
each step's noise ratio 1 / rho (31 -> 6.7): fewer, cleaner steps, which need a larger learning rate.

Adaptive optimizers (adam). Adam scales each weight's step by its running gradient size, so when a
step's noise exceeds its signal (rho < 1) the steps keep their size and point mostly along the noise:
the run's progress shrinks by about rho, however many steps it takes. We warn for them at rho < 1.

Set against runs measured here (10 iid clients; accuracies are final mean test accuracies; chance
0.10; docs/results.md, "When DP cannot learn"):
- warns: the issue's digits run (40 samples a client, B 32, 15 steps, epsilon 4, adam: R 0.48,
  rho 0.13) ends at 0.16 (0.61 without DP, 0.55 clipped without noise); digits with 130 samples at
  epsilon 4 (rho 0.19) 0.21 and 16 (rho 0.48) 0.33; DAC's Fashion-MNIST rotation runs, 200 samples,
  adam, at epsilon 2 (R 0.38) 0.12 and epsilon 8 (rho 0.09) 0.30 (0.71 without DP).
- stays quiet: Fashion-MNIST, 600 samples, B 64, 72 steps, SGD lr 0.1 at epsilon 2, 4, 8 (R 1.0,
  1.6, 2.4): 0.45-0.48 in every topology (0.63-0.68 without DP); digits with 130 samples, adam, at
  epsilon 256 (rho 1.9): 0.62 (0.79 without DP); with SGD lr 0.1 at epsilon 4 (R 1.45): 0.58 (0.85).
- edges, where it is wrong: Fashion-MNIST with SGD at epsilon 1 (R 0.59) warns, and a client alone
  still reaches 0.37 (0.46 with FedAvg, which averages ten clients' independent noise); digits with
  130 samples and adam at epsilon 64 (rho 0.99) warns and reaches 0.55; digits with 40 samples and
  adam at epsilon 64 and 256 (rho 0.99, 2.3) stays quiet and reaches only 0.22 and 0.30 (15 steps).
So the warning says "little, if at all", not "nothing". The rule is per peer: merging with peers
averages their independent noise (by 1 / sqrt(models averaged)) and can rescue a run near the edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from swarm.privacy import PrivateTraining

ADAPTIVE = ("adam",)  # optimizers that rescale each weight's step (swarm.training.make_optimizer)


@dataclass(frozen=True)
class NoisePlan:
    """What the accountant planned for one peer's DP-SGD run."""

    noise_multiplier: float  # sigma
    expected_batch: float  # B = sample rate x training samples
    steps: int  # T, all the planned steps of the run
    parameters: int  # d, trainable weights of the model
    samples: int  # training samples of the peer
    target_epsilon: float
    max_grad_norm: float  # C
    optimizer: str

    @property
    def step_ratio(self) -> float:
        """rho: the largest signal of a step (norm C) over its noise (norm sigma C sqrt(d) / B)."""
        if self.noise_multiplier <= 0:
            return math.inf
        return self.expected_batch / (self.noise_multiplier * math.sqrt(self.parameters))

    @property
    def run_ratio(self) -> float:
        """R = sqrt(T) rho: the largest signal the whole run can carry over the noise it adds."""
        return math.sqrt(self.steps) * self.step_ratio

    @property
    def adaptive(self) -> bool:
        return self.optimizer.lower() in ADAPTIVE


def parameters_of(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def cannot_learn(plan: NoisePlan) -> bool:
    """The module docstring's rule: R < 1, or rho < 1 with an adaptive optimizer."""
    return plan.run_ratio < 1 or (plan.adaptive and plan.step_ratio < 1)


def warning(plan: NoisePlan) -> str | None:
    """The plain-words warning for a plan that cannot learn; None when it can."""
    if not cannot_learn(plan):
        return None
    per_weight = plan.noise_multiplier * plan.max_grad_norm / plan.expected_batch
    why = (f"each step adds noise of std sigma*C/B = {plan.noise_multiplier:.2f}*{plan.max_grad_norm:g}/"
           f"{plan.expected_batch:.0f} = {per_weight:.3g} to every one of the model's {plan.parameters:,} "
           f"weights, {1 / plan.step_ratio:.1f}x the largest signal a step can carry (norm C = "
           f"{plan.max_grad_norm:g})")
    if plan.run_ratio < 1:
        why += (f"; over the {plan.steps} planned steps the signal adds up to at most "
                f"{plan.run_ratio:.2f} of the noise")
    else:
        why += (f", and {plan.optimizer} scales every step to the same size, so the steps mostly follow "
                "the noise")
    return (f"DP-SGD as planned will learn little, if at all: {why}. More rounds will not help: at a "
            "fixed epsilon the noise grows with the steps as fast as the signal adds up. What helps: more "
            f"training samples per client (now {plan.samples}) or a larger epsilon (now "
            f"{plan.target_epsilon:g}), each in about proportion; a larger expected batch (now "
            f"{plan.expected_batch:.0f}: less noise per step, with a larger learning rate for the fewer "
            "steps); a smaller model" + ("; plain SGD, which tolerates noisier steps than "
                                        f"{plan.optimizer}" if plan.adaptive else "") + ".")


def plan_of(private: PrivateTraining, optimizer: str) -> NoisePlan:
    """The plan of a node's DP-SGD state (`swarm.privacy.make_private`)."""
    samples = len(private.loader.dataset)  # type: ignore[arg-type]
    return NoisePlan(private.noise_multiplier, private.sample_rate * samples, private.steps_planned,
                     parameters_of(private.module), samples, private.budget.target_epsilon,
                     private.budget.max_grad_norm, optimizer)
