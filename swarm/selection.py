"""Which model a peer keeps: the merge guard, the best model on its own validation split, and which
model it reports at the end (`KEEP`).

Both runtimes call these with a `loss_of(weights)` callback that merges with the given weights and
returns the merged model's loss on the peer's validation split (the runtime owns models and data).

The guard keeps joining a swarm from making a peer worse than training alone: a neighbour from
another cluster (or a hostile one) raises the loss on the peer's own validation data, so its merge
is refused, and a peer with no useful neighbour keeps training mostly alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from swarm.errors import ConfigError

LossOf = Callable[[Mapping[str, float]], float]
# Averaging two models costs some progress at first even when both learn the same task (the mean of
# two updates is shorter than either): within one cluster a merge raises the validation loss by up to
# ~15%, towards another cluster by 20-400% after the first rounds (measured, docs/results.md). A 10%
# allowance keeps most merges that pay off later and refuses the others.
TOLERANCE = 0.1
# After its first round no model has learned enough for the guard to tell a neighbour of the own
# cluster from one of another (their models' losses on my data: 0.98-1.03 vs 1.03 of mine), and one
# early merge with the wrong cluster moves a lone peer's whole run (-0.07 at round 20, measured).
WARMUP_ROUNDS = 1


@dataclass
class Guarded:
    """What the guard let through: merge `weights` (sum 1, the peer included) and the neighbours it
    refused."""

    weights: dict[str, float]
    rejected: list[str]


def normalised(weights: Mapping[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    return {p: w / total for p, w in weights.items()}


def guard(me: str, weights: Mapping[str, float], own_loss: float, loss_of: LossOf,
          tolerance: float = TOLERANCE, rounds_trained: int = WARMUP_ROUNDS + 1) -> Guarded:
    """Keep the neighbours whose model, and whose merge with me alone (at the strategy's weights), raise
    my validation loss by at most `tolerance` (relative); merge all kept ones if that stays within it
    too, otherwise the best single one. `own_loss` is my current model's validation loss. Before
    `rounds_trained` exceeds `WARMUP_ROUNDS` nothing is merged (and nobody is refused)."""
    if rounds_trained <= WARMUP_ROUNDS:
        return Guarded({me: 1.0}, [])
    mine = weights.get(me, 0.0)
    neighbours = sorted(p for p, w in weights.items() if p != me and w > 0 and math.isfinite(w))
    bound = own_loss * (1 + tolerance)
    pair_loss: dict[str, float] = {}
    for p in neighbours:
        # The neighbour's model itself must fit my data too: early on, when no model has learned
        # much, a merge towards another cluster costs little yet, but its model already fits worse.
        if not loss_of({p: 1.0}) <= bound:  # NaN fails this too
            continue
        loss = loss_of(normalised({me: mine, p: weights[p]}))
        if loss <= bound:
            pair_loss[p] = loss
    rejected = [p for p in neighbours if p not in pair_loss]
    if not pair_loss:
        return Guarded({me: 1.0}, rejected)
    if len(pair_loss) > 1:
        together = normalised({me: mine, **{p: weights[p] for p in pair_loss}})
        loss = loss_of(together)
        if loss <= bound:
            return Guarded(together, rejected)
    best = min(pair_loss, key=lambda p: (pair_loss[p], p))
    return Guarded(normalised({me: mine, best: weights[best]}), rejected)


# The model a peer reports when its rounds are done: "best", its lowest validation loss (the thesis),
# or "last", the model it holds. Without early stopping the last one tested better at full scale:
# clients that merge every round do not overfit their few images, while picking one of hundreds of
# models on 100 validation images picks noise and can keep an early one (docs/results.md).
KEEP = ("best", "last")


def check_keep(keep: str) -> None:
    if keep not in KEEP:
        raise ConfigError(f"setting keep must be one of {', '.join(KEEP)}, got {keep!r}")


def reports_best(keep: str, has_val: bool) -> bool:
    """Whether the model reported is the best one on validation (else the one held at the end): only
    with a validation split to judge by, and when `keep` asks for it."""
    return has_val and keep == "best"


@dataclass
class BestModel:
    """The round with the lowest validation loss so far, and early stopping on it."""

    patience: int = 0  # rounds without improvement before stopping; 0 = never
    loss: float = math.inf
    round: int = -1

    def offer(self, loss: float, round_: int) -> bool:
        """Record this round's validation loss; True if it is the best so far (keep that model)."""
        if loss < self.loss:
            self.loss, self.round = loss, round_
            return True
        return False

    def stalled(self, round_: int) -> bool:
        return self.patience > 0 and self.round >= 0 and round_ - self.round >= self.patience

    def last_round(self, final_round: int) -> int:
        """The round a peer's last model comes from, its rounds ending at `final_round`: the round
        early stopping stopped it, or the final one."""
        if self.patience > 0 and self.round >= 0:
            return min(self.round + self.patience, final_round)
        return final_round
