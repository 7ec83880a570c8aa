"""Random gossip over a fixed overlay graph: `ring` (2 neighbours each), random `regular` (every
peer has `degree` neighbours) or `full`. Each round a peer fetches `neighbours` peers drawn
uniformly among its graph neighbours and averages uniformly. Every peer derives the same graph from
the sorted ids it knows and `graph_seed`, so no coordination is needed; when the set of known peers
changes, the graph is rebuilt for the new set.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from swarm.strategies.base import Strategy, others, register
from swarm.strategies.view import PeerView

TOPOLOGIES = ("full", "ring", "regular")
MAX_TRIES = 1000


def ring(ids: list[str]) -> dict[str, set[str]]:
    """Each peer linked to the previous and the next id."""
    n = len(ids)
    return {p: {ids[(i - 1) % n], ids[(i + 1) % n]} - {p} for i, p in enumerate(ids)}


def random_regular(ids: list[str], degree: int, seed: int) -> dict[str, set[str]]:
    """A uniform-ish random `degree`-regular simple graph (pairing model with restarts)."""
    n = len(ids)
    if degree >= n - 1:
        return {p: set(ids) - {p} for p in ids}
    if degree * n % 2:
        raise ValueError(f"a {degree}-regular graph on {n} peers does not exist (degree x peers must be "
                         "even); change degree by one")
    rng = random.Random(seed)
    for _ in range(MAX_TRIES):
        stubs = [p for p in ids for _ in range(degree)]
        rng.shuffle(stubs)
        adj: dict[str, set[str]] = {p: set() for p in ids}
        ok = True
        for a, b in zip(stubs[::2], stubs[1::2], strict=True):
            if a == b or b in adj[a]:
                ok = False
                break
            adj[a].add(b)
            adj[b].add(a)
        if ok:
            return adj
    raise ValueError(f"could not draw a simple {degree}-regular graph on {n} peers; lower the degree")


def build_graph(ids: list[str], topology: str, degree: int, seed: int) -> dict[str, set[str]]:
    if topology == "full":
        return {p: set(ids) - {p} for p in ids}
    if topology == "ring":
        return ring(ids)
    return random_regular(ids, degree, seed)


@register
class Gossip(Strategy):
    """Random gossip restricted to the peer's neighbours in a `topology` graph of `degree`."""

    name = "gossip"

    def __init__(self, neighbours: int = 1, topology: str = "full", degree: int = 4,
                 graph_seed: int = 0) -> None:
        super().__init__(neighbours)
        if topology not in TOPOLOGIES:
            raise ValueError(f"gossip topology must be one of {', '.join(TOPOLOGIES)}, got {topology!r}")
        if degree < 1:
            raise ValueError(f"gossip degree must be >= 1, got {degree}")
        self.topology, self.degree, self.graph_seed = topology, int(degree), int(graph_seed)
        self.graph_ids: list[str] = []
        self.graph: dict[str, set[str]] = {}

    def links(self, view: PeerView) -> list[str]:
        ids = sorted({view.me, *(c.peer_id for c in others(view))})
        if ids != self.graph_ids:
            self.graph_ids = ids
            self.graph = build_graph(ids, self.topology, self.degree, self.graph_seed)
        return sorted(self.graph[view.me])

    def choose(self, view: PeerView, rng: random.Random) -> list[str]:
        links = self.links(view)
        return rng.sample(links, min(self.neighbours, len(links)))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "topology": self.topology, "degree": self.degree,
                "graph_seed": self.graph_seed}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.topology, self.degree = str(state["topology"]), int(state["degree"])
        self.graph_seed = int(state["graph_seed"])
        self.graph_ids, self.graph = [], {}
