"""Will a planned DP-SGD run learn? The rule both runtimes apply before training, and its warning.

The maths. One DP-SGD step (`swarm.privacy`) Poisson-samples a batch of expected size B = q n, clips
every sample's gradient to norm C, sums them, adds Gaussian noise of std sigma C to every one of the
model's d weights and divides by B. So the step's signal, the mean clipped gradient, has norm at most
C (all clipped gradients pointing one way), while its noise has std sigma C / B per weight, norm
sigma C sqrt(d) / B. Per step, the largest signal over the noise is

    rho = B / (sigma sqrt(d)).

Over the T planned steps the signals add up to at most T C, the independent noises only to
sqrt(T) sigma C sqrt(d) / B, so for the whole run it is R = sqrt(T) rho.

Why more rounds do not help: epsilon is fixed, so the accountant plans sigma for all T steps. Without
subsampling sigma grows as sqrt(T) exactly (T Gaussian mechanisms), with Poisson sampling nearly so
(sigma ~ q sqrt(T log(1/delta)) / epsilon for small q): R stays put (the issue's digits run: 0.483,
0.490, 0.494 for 15, 30, 60 planned epochs) and rho falls (0.125, 0.089, 0.064). With that
approximation, and E planned epochs (T = E / q), R ~ n epsilon / sqrt(d log(1/delta)) and rho ~
epsilon sqrt(n B / E) / sqrt(d log(1/delta)): samples per client and epsilon raise both (digits, 40 ->
130 samples: R x 3.0, rho x 1.5; epsilon 4 -> 16: R x 3.05), a smaller model too. A larger expected
batch barely changes R (Fashion-MNIST, 600 samples, epsilon 1: 0.56 at B 16, 0.60 at B 256) but raises
rho (0.032 -> 0.150): fewer, cleaner steps, which need a larger learning rate to go as far.

The rule, which ratio counts depends on the optimizer:
- adam (adaptive: each weight's step is divided by its running gradient size) warns at rho < 1: once a
  step holds more noise than signal, the steps keep their size and point mostly along the noise, so
  progress shrinks about by rho however the steps add up. The threshold is the maths' (noise = largest
  signal).
- plain SGD adds the steps up, noise and all, and warns at R < 0.1. R < 1 is where the run's noise
  outgrows the largest signal, but SGD learns far below it (most of the d directions hardly change the
  loss), so this threshold is measured, not derived: set between the Fashion-MNIST clients alone at
  epsilon 0.25 with 200 samples (R 0.056: 0.124, chance) and with 600 (R 0.17: 0.182).

Set against runs measured here (10 iid clients; final mean test accuracy, chance 0.10; every run and
its plan in docs/results.md, "When DP-SGD cannot learn: the warning"):
- warns: the issue's digits run (40 samples, B 32, 15 steps, epsilon 4, adam: rho 0.13) ends at 0.160
  (0.610 without DP, 0.550 clipped without noise); digits with adam at 130 samples, epsilon 4 and 16
  (rho 0.19, 0.48): 0.205, 0.325 (0.790 without DP); DAC's rotation runs (adam, 200 samples, rho
  0.028 and 0.085 at epsilon 2 and 8): 0.124, 0.303 (0.707); Fashion-MNIST alone, SGD, 200 samples,
  epsilon 0.25: 0.124. More rounds did not help these: the issue's run with 20 rounds ends at 0.135
  (0.845 without DP), the Fashion-MNIST one with 16 rounds at 0.132.
- stays quiet: digits, adam, 130 samples, epsilon 256 (rho 1.9): 0.615; the same with SGD lr 0.1 at
  epsilon 4 and 16 (R 1.45, 3.7): 0.575, 0.615 (clipped without noise: 0.615); Fashion-MNIST, SGD,
  600 samples, epsilon 1 to 8, alone (0.366 at epsilon 1, 0.404 at 2) and merged (0.41-0.48).
- wrong, at the edges: digits, adam, 130 samples, epsilon 64 (rho 0.99) warns and reaches 0.550;
  adam runs with few steps stay quiet and learn little (40 samples, epsilon 256: 0.295; batch 128,
  15 steps, epsilon 16: 0.230), as does Fashion-MNIST, SGD, 600 samples at epsilon 0.25 (0.182).
The rule is per peer: merging averages the peers' independent noise (FedAvg at epsilon 1: 0.456 against
0.366 alone) and can carry a run near the edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from swarm.privacy import PrivateTraining

ADAPTIVE = ("adam",)  # optimizers that rescale each weight's step (swarm.training.make_optimizer)
ADAPTIVE_STEP_RATIO = 1.0  # derived: a step's noise as large as the largest signal it can carry
SGD_RUN_RATIO = 0.1  # measured (module docstring): plain SGD learns far below the derived 1


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
    """The module docstring's rule: rho < 1 with an adaptive optimizer, R < 0.1 with SGD."""
    if plan.adaptive:
        return plan.step_ratio < ADAPTIVE_STEP_RATIO
    return plan.run_ratio < SGD_RUN_RATIO


def warning(plan: NoisePlan) -> str | None:
    """The plain-words warning for a plan that cannot learn; None when it can."""
    if not cannot_learn(plan):
        return None
    per_weight = plan.noise_multiplier * plan.max_grad_norm / plan.expected_batch
    why = (f"each step adds noise of std sigma*C/B = {plan.noise_multiplier:.2f}*{plan.max_grad_norm:g}/"
           f"{plan.expected_batch:.0f} = {per_weight:.3g} to every one of the model's {plan.parameters:,} "
           f"weights, {1 / plan.step_ratio:.1f}x the largest signal a step can carry (norm C = "
           f"{plan.max_grad_norm:g})")
    if plan.adaptive:
        why += (f", and {plan.optimizer} scales every step to the same size, so the steps mostly follow "
                "the noise")
    else:
        why += (f"; over the {plan.steps} planned steps the signal adds up to at most "
                f"{plan.run_ratio:.2f} of the noise (SGD stops learning below about {SGD_RUN_RATIO:g})")
    return (f"DP-SGD as planned will learn little, if at all: {why}. More rounds will not help: at a "
            "fixed epsilon the accountant raises every step's noise to pay for the extra steps. What "
            f"helps: more training samples per client (now {plan.samples}); a larger epsilon (now "
            f"{plan.target_epsilon:g}); a larger expected batch (now "
            f"{plan.expected_batch:.0f}: less noise per step, with a larger learning rate for the fewer "
            "steps); a smaller model" + ("; plain SGD, which tolerates noisier steps than "
                                        f"{plan.optimizer}" if plan.adaptive else "") + ". A recipe "
            "that learns under DP: model scatter-linear (28x28 images; lr 40) or dp-cnn (lr 80), plain SGD, "
            "clipping norm 0.1, an expected batch of a sixth of the samples (docs/results.md, \"A DP-SGD "
            "recipe that still learns\").")


def plan_of(private: PrivateTraining, optimizer: str) -> NoisePlan:
    """The plan of a node's DP-SGD state (`swarm.privacy.make_private`)."""
    samples = len(private.loader.dataset)  # type: ignore[arg-type]
    return NoisePlan(private.noise_multiplier, private.sample_rate * samples, private.steps_planned,
                     parameters_of(private.module), samples, private.budget.target_epsilon,
                     private.budget.max_grad_norm, optimizer)
