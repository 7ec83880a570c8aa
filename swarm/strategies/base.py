"""The strategy interface shared by the simulator and the real node.

A strategy object belongs to one peer and decides, from a `PeerView` only (who announced what, which
snapshots were fetched, their similarity scores), whom to fetch and how to weigh them in the merge.
It never sees the network, IPFS, or tensors of other clients; its state is plain msgpack-able data.

Round protocol, identical in both runtimes:
1. `choose(view, rng)` -> peer ids to fetch this round;
2. the runtime fetches them and scores each with `swarm.similarity.similarity(name)`;
3. `observe(view, scores, advertised)` updates the peer's state (priors, bag, schedules);
   `advertised` maps a fetched peer id to the similarity table that peer announced
   (`advertise()`), the only second-hand knowledge a peer can have (DAC's 2-hop expansion);
4. `weights(view, fetched, scores)` -> merge weights over `view.me` and the fetched peers (sum 1;
   a zero weight leaves that peer out of the merge);
5. the runtime may refuse some of those merges (its merge guard: the peer's model raised the loss
   on my own validation data) and tells the strategy with `rejected(peers)`.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from swarm.errors import SwarmError


@dataclass(frozen=True)
class Candidate:
    """A peer that announced a snapshot: `cluster` is set by the simulator only (oracle, purity)."""

    peer_id: str
    samples: int
    round: int
    cluster: int | None = None


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


class UnknownStrategyError(SwarmError, ValueError):
    """Asked for a strategy name that is not registered."""


class Strategy:
    """Base of all strategies: sensible defaults so each strategy overrides only what it changes.

    Class attributes tell the runtime what the strategy needs:
    `needs_scores` (score fetched snapshots at all), `default_similarity` (metric used when the
    config does not name one), `central` (simulator-only server baseline: bytes counted as
    upload + download per client instead of peer-to-peer fetches).
    """

    name: ClassVar[str] = "base"
    needs_scores: ClassVar[bool] = False
    default_similarity: ClassVar[str] = "inverse-loss"
    central: ClassVar[bool] = False
    simulator_only: ClassVar[bool] = False

    def __init__(self, neighbours: int = 5) -> None:
        if neighbours < 0:
            raise ValueError(f"neighbours must be >= 0, got {neighbours}; pass a non-negative count")
        self.neighbours = neighbours

    def choose(self, view: PeerView, rng: random.Random) -> list[str]:
        return []

    def observe(
        self,
        view: PeerView,
        scores: Mapping[str, float],
        advertised: Mapping[str, Mapping[str, float]] | None = None,
    ) -> None:
        return None

    def weights(
        self, view: PeerView, fetched: Sequence[str], scores: Mapping[str, float]
    ) -> dict[str, float]:
        return uniform_weights(view.me, fetched)

    def rejected(self, peers: Sequence[str]) -> None:
        """The runtime refused to merge `peers` (they raised the loss on my validation data): a
        strategy that learns whom to pick hears of it; the others need not."""
        return None

    def advertise(self, limit: int = 20) -> dict[str, float]:
        """The similarity table this peer would put in its announcement (at most `limit` entries)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"neighbours": self.neighbours}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.neighbours = int(state["neighbours"])


def uniform_weights(me: str, fetched: Sequence[str]) -> dict[str, float]:
    ids = [me, *[p for p in fetched if p != me]]
    return {p: 1.0 / len(ids) for p in ids}


def sample_weights(view: PeerView, fetched: Sequence[str]) -> dict[str, float]:
    """Weights proportional to training-set sizes (FedAvg's rule)."""
    known = view.by_id()
    sizes = {view.me: max(view.my_samples, 0)}
    for p in fetched:
        if p != view.me:
            sizes[p] = max(known[p].samples, 0) if p in known else 0
    total = sum(sizes.values())
    if total <= 0:
        return uniform_weights(view.me, fetched)
    return {p: n / total for p, n in sizes.items()}


def others(view: PeerView) -> list[Candidate]:
    return [c for c in view.candidates if c.peer_id != view.me]


STRATEGIES: dict[str, Callable[..., Strategy]] = {}


def register(cls: type[Strategy]) -> type[Strategy]:
    STRATEGIES[cls.name] = cls
    return cls


def strategy_params(name: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `settings` (a simulator or node config) that strategy `name`'s constructor takes,
    so both runtimes build a strategy from their config the same way."""
    if name not in STRATEGIES:
        build_strategy(name)  # raises the error listing the choices
    accepted = inspect.signature(STRATEGIES[name]).parameters
    return {k: v for k, v in settings.items() if k in accepted}


def build_strategy(name: str, **params: Any) -> Strategy:
    """Build a registered strategy, e.g. `build_strategy("dac", neighbours=5, tau=30)`."""
    try:
        factory = STRATEGIES[name]
    except KeyError:
        raise UnknownStrategyError(
            f"unknown strategy {name!r}; choose one of {', '.join(sorted(STRATEGIES))}"
        ) from None
    try:
        return factory(**params)
    except TypeError as exc:
        raise UnknownStrategyError(f"strategy {name!r}: bad parameters ({exc}); see its docstring") from None
