"""A hostile peer (in this process, a real libp2p host with no validator of its own) feeds garbage to a
real peer process; the garbage is dropped and counted, never relayed, and the peer keeps working."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.tools.anyio_service import background_trio_service
from multiaddr import Multiaddr

from node.announcement import Announcement, topic_for
from node.gossip_host import build_host, build_pubsub
from node.gossip_peer import cid_for
from node.gossip_procs import Child, Peer, kill_all
from node.identity import peer_id_of

SWARM = "attack"
FLOOD = 60
BURST = 20  # the peers' default ValidationPolicy.burst


def forged_payloads(attacker: str, victim: str) -> dict[str, list[bytes]]:
    def ann(round: int, publisher: str = attacker, age: float = 0.0) -> bytes:
        return Announcement(cid=cid_for(f"{attacker}/{round}".encode()), publisher=publisher, round=round,
                            schema="s", samples=1, loss=0.1, encoding="fp32", size=1,
                            timestamp=time.time() - age).to_bytes()

    return {
        "malformed": [b"", b"\xc1\xc1", b"\x81\xa1v\x02", b"not msgpack at all"],
        "oversized": [b"\x00" * 5000],
        "forged": [ann(1, publisher=victim)],
        "stale": [ann(2, age=3600)],
        "rate": [ann(100 + i) for i in range(FLOOD)],
    }


async def attack(victim_addr: str, payloads: dict[str, list[bytes]], key_pair: object) -> None:
    host = build_host(key_pair)  # type: ignore[arg-type]
    pubsub, router = build_pubsub(host)
    topic = topic_for(SWARM)
    async with host.run([Multiaddr("/ip4/127.0.0.1/tcp/0")]), background_trio_service(pubsub), \
            background_trio_service(router):
        await pubsub.wait_until_ready()
        await host.connect(info_from_p2p_addr(Multiaddr(victim_addr)))
        with trio.fail_after(10):
            while not pubsub.peer_topics.get(topic):
                await trio.sleep(0.1)
        for batch in payloads.values():
            for data in batch:
                await pubsub.publish(topic, data)
                await trio.sleep(0.01)  # py-libp2p drops silently beyond 32 queued frames per peer
        await trio.sleep(1.0)  # let the last frames leave before the host closes


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Peer, Peer]]:
    root: Path = tmp_path_factory.mktemp("attack")
    children: list[Child] = []
    try:
        victim = Peer(SWARM, root / "victim", [])
        children.append(victim)
        neighbour = Peer(SWARM, root / "neighbour", [victim.addrs[0]])
        children.append(neighbour)
        yield victim, neighbour
    finally:
        kill_all(children)


def test_garbage_is_dropped_counted_and_not_relayed(pair: tuple[Peer, Peer]) -> None:
    victim, neighbour = pair
    key_pair = create_new_key_pair()
    attacker = peer_id_of(key_pair)
    payloads = forged_payloads(attacker, victim.peer_id)
    trio.run(attack, victim.addrs[0], payloads, key_pair)

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rejected = victim.state()["stats"]["rejected"]
        if sum(rejected.values()) >= sum(len(b) for b in payloads.values()) - BURST:
            break
        time.sleep(0.3)
    assert rejected.get("malformed") == len(payloads["malformed"])
    assert rejected.get("oversized") == 1
    assert rejected.get("forged") == 1
    assert rejected.get("stale") == 1
    # Token bucket: BURST pass at once, a few more refill (2/s) while the flood is in flight.
    assert FLOOD - BURST - 6 <= rejected.get("rate", 0) <= FLOOD - BURST
    assert "error" not in rejected

    # The victim relays only what it accepted: the neighbour never sees the rejected garbage.
    time.sleep(0.5)
    victim.poll()
    neighbour.poll()
    accepted = {r["round"] for r in victim.recv if r["publisher"] == attacker}
    relayed = {r["round"] for r in neighbour.recv if r["publisher"] == attacker}
    assert relayed <= accepted and len(accepted) == FLOOD - rejected["rate"]
    # Only the flood's accepted part reached it; its own bucket may trim that (timing), nothing else.
    assert set(neighbour.state()["stats"]["rejected"]) <= {"rate"}


def test_victim_keeps_working_after_the_attack(pair: tuple[Peer, Peer]) -> None:
    victim, neighbour = pair
    assert victim.proc.poll() is None
    neighbour.publish(round=1)
    victim.publish(round=1)
    victim.wait_for(lambda r: r["event"] == "recv" and r["publisher"] == neighbour.peer_id, 10)
    neighbour.wait_for(lambda r: r["event"] == "recv" and r["publisher"] == victim.peer_id, 10)
