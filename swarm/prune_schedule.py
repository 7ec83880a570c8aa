"""When a sparse personalised model is pruned (`PruneSchedule`), built alike from the simulator's and
the node's settings (`schedule_from`). Torch-free, so a node checks its settings before loading torch;
the pruning itself is `swarm.pruning`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from swarm.errors import SwarmError


class PruningError(SwarmError, ValueError):
    """A pruning setting or a merge input that cannot work."""


@dataclass(frozen=True)
class PruneSchedule:
    """Prune `rate` of the remaining prunable weights every `every` rounds from round `start` on,
    down to `target_density` (fraction of prunable weights kept)."""

    rate: float = 0.2
    every: int = 1
    target_density: float = 0.1
    start: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.rate < 1:
            raise PruningError(f"prune rate must be in (0, 1), got {self.rate}")
        if not 0 < self.target_density <= 1:
            raise PruningError(f"target density must be in (0, 1], got {self.target_density}")
        if self.every < 1 or self.start < 0:
            raise PruningError(f"prune every >= 1 round from round >= 0, got every={self.every}, "
                               f"start={self.start}")

    def due(self, round_: int) -> bool:
        """`round_` counts from 0, as the simulator's rounds do (a node's round n is round_ n - 1)."""
        return round_ >= self.start and (round_ - self.start) % self.every == 0


def schedule_from(settings: Mapping[str, Any]) -> PruneSchedule | None:
    """The schedule a config's `prune_target`, `prune_rate`, `prune_every` ask for; None: dense."""
    if float(settings["prune_target"]) >= 1:
        return None
    return PruneSchedule(float(settings["prune_rate"]), int(settings["prune_every"]),
                         float(settings["prune_target"]))
