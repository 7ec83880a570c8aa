"""Baselines: `local` (no communication), `random` gossip, `fedavg` (central server) and `oracle`."""

from __future__ import annotations

import random
from collections.abc import Sequence

from swarm.errors import SwarmError
from swarm.strategies.base import Needs, Strategy, others, register, sample_weights
from swarm.strategies.view import PeerView, Scores


@register
class Local(Strategy):
    """Never communicates: every peer keeps its own model."""

    name = "local"

    def weights(self, view: PeerView, fetched: Sequence[str], scores: Scores) -> dict[str, float]:
        return {view.me: 1.0}


@register
class RandomGossip(Strategy):
    """`neighbours` peers drawn uniformly each round, plain (uniform) averaging."""

    name = "random"

    def choose(self, view: PeerView, rng: random.Random) -> list[str]:
        ids = sorted(c.peer_id for c in others(view))
        return rng.sample(ids, min(self.neighbours, len(ids)))


@register
class FedAvg(Strategy):
    """Central-server FedAvg with full participation: everyone ends the round on the same
    sample-weighted average. Simulator only; bytes count one upload + one download per client."""

    name = "fedavg"
    needs = Needs(central=True, runtimes=("simulator",),
                  why="a central-server baseline: a peer-to-peer node has no server")

    def choose(self, view: PeerView, rng: random.Random) -> list[str]:
        return sorted(c.peer_id for c in others(view))

    def weights(self, view: PeerView, fetched: Sequence[str], scores: Scores) -> dict[str, float]:
        return sample_weights(view, fetched)


class MissingClusterError(SwarmError, ValueError):
    """The oracle strategy was run without true cluster labels (they exist only in the simulator)."""


@register
class Oracle(Strategy):
    """Upper reference: `neighbours` uniform peers from the client's own true cluster. Simulator only."""

    name = "oracle"
    needs = Needs(runtimes=("simulator",), why="it needs true cluster labels, which a node does not have")

    def choose(self, view: PeerView, rng: random.Random) -> list[str]:
        if view.my_cluster is None:
            raise MissingClusterError(
                "oracle needs true cluster labels; use it in `swarm-node simulate` only"
            )
        ids = sorted(c.peer_id for c in others(view) if c.cluster == view.my_cluster)
        return rng.sample(ids, min(self.neighbours, len(ids)))
