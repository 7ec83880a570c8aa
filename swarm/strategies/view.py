"""What a strategy sees of the swarm: the peers that announced a snapshot, and the scores the runtime
gave the fetched ones. Plain data, the same in the simulator and on a node."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

Scores = Mapping[str, float]  # peer id -> similarity to me
Advertised = Mapping[str, Scores]  # fetched peer id -> the similarity table it announced


@dataclass(frozen=True)
class Candidate:
    """A peer that announced a snapshot: `cluster` is set by the simulator only (oracle, purity);
    `epsilon` is the DP epsilon it spent, None without DP (`swarm.peer_privacy`)."""

    peer_id: str
    samples: int
    round: int
    cluster: int | None = None
    epsilon: float | None = None


@dataclass
class PeerView:
    """What one peer knows at the start of a merge step."""

    me: str
    round: int
    my_samples: int
    candidates: list[Candidate] = field(default_factory=list)
    my_cluster: int | None = None

    def by_id(self) -> dict[str, Candidate]:
        return {c.peer_id: c for c in self.candidates}
