"""Real libp2p hosts in separate processes on 127.0.0.1: one bootstrap and six peers share one cluster.

The tests run in file order and build on each other: join, late join, then bootstrap loss + restart.
Peers keep only 2 connections each (`--target-peers 2`), so most pairs are not directly connected
and announcements must be relayed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.peers import Peer

from node.processes import Bootstrap, Child, kill_all

SWARM = "itest"
TARGET = 2
DELIVERY_TIMEOUT_S = 15.0


class Cluster:
    def __init__(self, root: Path):
        self.root = root
        self.children: list[Child] = []
        self.peers: list[Peer] = []
        self.bootstrap = Bootstrap(SWARM, root / "bootstrap")
        self.children.append(self.bootstrap)

    def add_peer(self, i: int, listen: str = "/ip4/127.0.0.1/tcp/0") -> Peer:
        peer = Peer(SWARM, self.root / f"peer{i}", [self.bootstrap.addr], listen=listen, target_peers=TARGET)
        self.children.append(peer)
        return peer

    def wait_connected(self, peer: Peer, at_least: int, timeout: float = 20.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            peers = peer.state()["peers"]
            if len(peers) >= at_least or time.monotonic() > deadline:
                return peers
            time.sleep(0.3)


def wait_delivered(receivers: list[Peer], publisher: Peer, round: int) -> list[str]:
    """Peer ids of receivers that did NOT get (publisher, round) within the timeout."""
    deadline = time.monotonic() + DELIVERY_TIMEOUT_S
    while True:
        missing = [p.peer_id for p in receivers if not p.received(publisher.peer_id, round)]
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(0.1)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("gossip"))
    try:
        # One at a time, each attached before the next starts: the peer graph is connected by construction.
        for i in range(5):
            c.peers.append(c.add_peer(i))
            if i:
                assert c.wait_connected(c.peers[i], 1), f"peer {i} found nobody through the bootstrap"
        yield c
    finally:
        kill_all(c.children)


def test_every_peer_receives_every_announcement(cluster: Cluster) -> None:
    for p in cluster.peers:
        p.publish(round=1)
    neighbours = {p.peer_id: set(p.state()["peers"]) for p in cluster.peers}
    relayed = 0
    for pub in cluster.peers:
        others = [p for p in cluster.peers if p is not pub]
        assert wait_delivered(others, pub, 1) == [], f"announcement of …{pub.peer_id[-8:]} not delivered"
        relayed += sum(1 for p in others if p.peer_id not in neighbours[pub.peer_id])
    # Each peer dials at most TARGET others, so 5 peers cannot all be pairwise connected.
    assert relayed > 0, f"every pair directly connected: {neighbours}"
    for p in cluster.peers:
        assert all(r["publisher"] != p.peer_id for r in p.recv), "a peer received its own announcement"


def test_late_joiner_discovers_others_and_takes_part(cluster: Cluster) -> None:
    late = cluster.add_peer(5)
    cluster.peers.append(late)
    assert len(cluster.wait_connected(late, TARGET)) >= TARGET, "late joiner did not reach its target peers"
    late.publish(round=2)
    cluster.peers[0].publish(round=2)
    assert wait_delivered(cluster.peers[:-1], late, 2) == []
    assert wait_delivered([late], cluster.peers[0], 2) == []


def test_swarm_survives_bootstrap_loss_and_peer_restart(cluster: Cluster) -> None:
    assert cluster.bootstrap.stop() == 0, "bootstrap did not exit cleanly on SIGTERM"
    pub = cluster.peers[1]
    pub.publish(round=3)
    assert wait_delivered([p for p in cluster.peers if p is not pub], pub, 3) == []

    victim_index = 3
    victim = cluster.peers[victim_index]
    old_id, port = victim.peer_id, victim.addrs[0].split("/tcp/")[1].split("/")[0]
    victim.kill()
    t0 = time.monotonic()
    back = cluster.add_peer(victim_index, listen=f"/ip4/127.0.0.1/tcp/{port}")
    cluster.peers[victim_index] = back
    assert back.peer_id == old_id, "restarted peer has a new peer id"
    assert cluster.wait_connected(back, 1, timeout=15), "restarted peer did not reconnect without bootstrap"
    others = [p for p in cluster.peers if p is not back]
    # Published repeatedly (new rounds) until it arrives: the mesh needs a heartbeat or two to re-graft.
    deadline, rnd = time.monotonic() + 20, 100
    while time.monotonic() < deadline:
        rnd += 1
        back.publish(round=rnd)
        others[0].publish(round=rnd)
        time.sleep(1.0)
        if back.received(others[0].peer_id, rnd) and all(p.received(back.peer_id, rnd) for p in others):
            break
    rejoin_s = time.monotonic() - t0
    assert all(p.received(back.peer_id, rnd) for p in others), "restarted peer's announcement not delivered"
    assert back.received(others[0].peer_id, rnd), "restarted peer receives nothing"
    assert rejoin_s < 20
