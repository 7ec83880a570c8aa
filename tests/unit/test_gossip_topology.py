"""The `gossip` strategy: random gossip restricted to ring / random regular / full overlay graphs."""

from __future__ import annotations

import random

import pytest

from swarm.strategies import Candidate, PeerView, build_strategy
from swarm.strategies.gossip import build_graph

IDS = [f"c{i:03d}" for i in range(12)]


def view(me: str) -> PeerView:
    return PeerView(me, 0, 10, [Candidate(p, 10, 0) for p in IDS])


@pytest.mark.parametrize("topology, degree", [("ring", 2), ("regular", 3), ("regular", 4), ("full", 11)])
def test_graphs_are_simple_symmetric_and_have_the_degree(topology: str, degree: int) -> None:
    graph = build_graph(IDS, topology, degree, seed=1)
    assert set(graph) == set(IDS)
    for p, links in graph.items():
        assert p not in links and len(links) == degree
        assert all(p in graph[q] for q in links)
    if topology == "ring":
        assert graph["c000"] == {"c011", "c001"}


def test_regular_graph_depends_on_the_seed_only() -> None:
    assert build_graph(IDS, "regular", 4, 1) == build_graph(list(IDS), "regular", 4, 1)
    assert build_graph(IDS, "regular", 4, 1) != build_graph(IDS, "regular", 4, 2)
    with pytest.raises(ValueError, match="even"):
        build_graph(IDS[:5], "regular", 3, 0)


def test_gossip_fetches_only_graph_neighbours() -> None:
    rng = random.Random(0)
    strategies = {p: build_strategy("gossip", neighbours=2, topology="regular", degree=3, graph_seed=5)
                  for p in IDS}
    graph = build_graph(IDS, "regular", 3, 5)
    picked = set()
    for _ in range(30):
        for p, s in strategies.items():
            chosen = s.choose(view(p), rng)
            assert len(chosen) == 2 and set(chosen) <= graph[p]
            picked.update((p, q) for q in chosen)
    assert picked == {(p, q) for p in IDS for q in graph[p]}  # every link gets used
    ring = build_strategy("gossip", neighbours=5, topology="ring")
    assert sorted(ring.choose(view("c005"), rng)) == ["c004", "c006"]
    with pytest.raises(ValueError, match="topology"):
        build_strategy("gossip", topology="star")
