"""A hostile peer (in this process, a real libp2p host with no validator of its own) feeds garbage to a
real peer process; the garbage is dropped and counted, never relayed, and the peer keeps working. A
flooder is banned and cut off (also when it redials) while an honest peer's announcements keep arriving,
and is let back once its ban has run out."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.tools.anyio_service import background_trio_service
from multiaddr import Multiaddr
from support.gossip_peer import cid_for
from support.peers import Peer

from node.processes import Bootstrap, Child, kill_all
from p2p.announcement import Announcement, topic_for
from p2p.gossip import GossipConfig, GossipService
from p2p.host import build_host, build_pubsub
from p2p.identity import peer_id_of
from p2p.validator import ValidationPolicy

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


class Flooder:
    """A libp2p host with our gossipsub settings and no rate limit of its own, aimed at one victim."""

    def __init__(self, victim_addr: str, key_pair: object):
        self.host = build_host(key_pair)  # type: ignore[arg-type]
        self.pubsub, self.router = build_pubsub(self.host)
        self.topic = topic_for(SWARM)
        self.me = peer_id_of(key_pair)  # type: ignore[arg-type]
        self.victim = info_from_p2p_addr(Multiaddr(victim_addr))

    def announcement(self, round: int) -> bytes:
        return Announcement(cid=cid_for(f"{self.me}/{round}".encode()), publisher=self.me, round=round,
                            schema="s", samples=1, loss=0.1, encoding="fp32", size=1,
                            timestamp=time.time()).to_bytes()

    def connected(self) -> bool:  # not get_connected_peers(): it may keep a peer whose connections closed
        return bool(self.host.get_network().get_connections(self.victim.peer_id))

    async def subscribed(self, timeout: float) -> None:
        with trio.fail_after(timeout):
            while self.victim.peer_id not in self.pubsub.peer_topics.get(self.topic, ()):
                await trio.sleep(0.05)

    async def redial(self) -> None:
        """Drop our side of the connection first: py-libp2p may not notice that the victim closed it."""
        await self.host.disconnect(self.victim.peer_id)
        self.host.get_network().unblock_peer(self.victim.peer_id)
        await self.host.connect(self.victim)

    async def longest_connected_s(self, window_s: float) -> float:
        """The longest stretch within `window_s` during which we were connected to the victim."""
        longest = run = 0.0
        step = 0.05
        for _ in range(round(window_s / step)):
            run = run + step if self.connected() else 0.0
            longest = max(longest, run)
            await trio.sleep(step)
        return longest

    async def flood_until_cut(self) -> int:
        """Connect and announce ~200/s until the victim cuts us off (or 2000 were sent); the count sent."""
        sent = 0
        await self.pubsub.subscribe(self.topic)
        await self.host.connect(self.victim)
        await self.subscribed(10)
        while self.connected() and sent < 2000:
            await self.pubsub.publish(self.topic, self.announcement(1000 + sent))
            sent += 1
            await trio.sleep(0.005)  # py-libp2p drops silently beyond 32 queued frames per peer
        return sent

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Flooder]:
        async with self.host.run([Multiaddr("/ip4/127.0.0.1/tcp/0")]), \
                background_trio_service(self.pubsub), background_trio_service(self.router):
            await self.pubsub.wait_until_ready()
            yield self


async def flood_then_behave(victim_addr: str, key_pair: object, ban_s: float,
                            victim_peers: Callable[[], list[str]]) -> dict[str, float]:
    """Flood the victim until it cuts us off, redial it while banned, then come back after the ban and
    announce once, politely. Returns what happened, with times on trio's clock."""
    flooder = Flooder(victim_addr, key_pair)
    out: dict[str, float] = {"sent": 0, "redials": 0, "redials_kept": 0}
    async with flooder.running():
        out["sent"] = await flooder.flood_until_cut()
        cut = out["cut_at"] = trio.current_time()
        while trio.current_time() < cut + ban_s / 2:  # banned: the victim closes every redial at once
            with trio.move_on_after(3), contextlib.suppress(Exception):
                await flooder.redial()
                out["redials"] += 1
            await trio.sleep(0.6)  # the victim refreshes its peer list every 0.5 s
            out["redials_kept"] += flooder.me in victim_peers()
        await trio.sleep(cut + ban_s + 1.5 - trio.current_time())  # the victim lifts bans every 0.5 s
        await flooder.redial()
        await flooder.subscribed(10)
        await flooder.pubsub.publish(flooder.topic, flooder.announcement(1))
        await trio.sleep(1.0)  # let the frame leave before the host closes
        out["stayed"] = flooder.connected()
    return out


@pytest.mark.timeout(120)
def test_a_flooder_is_banned_cut_off_and_let_back_while_honest_announcements_flow(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("flood")
    ban_s = 6.0
    policy = ValidationPolicy(ban_after=50, ban_s=ban_s)
    victim = GossipService(GossipConfig(swarm_id=SWARM, data_dir=root / "victim", policy=policy))
    victim.start()
    children: list[Child] = []
    publishing = threading.Event()
    try:
        honest = Peer(SWARM, root / "honest", [], static=[victim.addrs[0]])
        children.append(honest)
        deadline = time.monotonic() + 20
        while honest.peer_id not in victim.peers():
            assert time.monotonic() < deadline, "the honest peer did not connect"
            time.sleep(0.2)

        def publish_honestly() -> None:  # 1 a second, under the 2/s limit, for the whole test
            round = 0
            while not publishing.wait(1.0):
                round += 1
                honest.publish(round=round)

        threading.Thread(target=publish_honestly, daemon=True).start()
        key_pair = create_new_key_pair()
        flooder = peer_id_of(key_pair)
        out = trio.run(flood_then_behave, victim.addrs[0], key_pair, ban_s, victim.peers)
        publishing.set()
        time.sleep(2.0)
        got = victim.drain()
        stats = victim.stats()
    finally:
        publishing.set()
        victim.stop()
        kill_all(children)

    # Banned once, after exactly ban_after rate rejects: nothing it sent after the ban reached the validator.
    assert stats["bans"] == 1
    assert stats["rejected"] == {"rate": 50}
    assert out["sent"] < 300, "the flooder was not cut off"
    # While banned the victim closed every redial at once; the one after the ban stayed up.
    assert out["redials"] >= 2 and out["redials_kept"] == 0
    assert stats["banned_disconnects"] >= 1 + out["redials"]
    assert out["stayed"]
    from_flooder = sorted(a.round for a in got if a.publisher == flooder)
    assert 1 in from_flooder, "the flooder's polite announcement after its ban was dropped"
    assert len(from_flooder) <= 20 + 10 + 1  # burst, refill at 2/s while it flooded, the polite one
    # The honest peer's announcements all arrived, during the flood and after it.
    rounds = sorted(a.round for a in got if a.publisher == honest.peer_id)
    assert rounds and rounds == list(range(1, rounds[-1] + 1))
    assert rounds[-1] >= ban_s + 2


async def flood_once(victim_addr: str, key_pair: object) -> dict[str, Any]:
    async with Flooder(victim_addr, key_pair).running() as flooder:
        sent = await flooder.flood_until_cut()
        # Our own pubsub redials the victim to retry its stream; the victim must close each redial at once.
        return {"sent": sent, "longest_reconnect_s": await flooder.longest_connected_s(3.0)}


@pytest.mark.timeout(120)
def test_the_bootstrap_bans_a_flooder_and_keeps_relaying(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("boot-flood")
    boot = Bootstrap(SWARM, root / "boot")
    children: list[Child] = [boot]
    try:
        key_pair = create_new_key_pair()
        out = trio.run(flood_once, boot.addr, key_pair)
        assert out["sent"] < 300 and out["longest_reconnect_s"] < 1.0, \
            f"the bootstrap did not cut the flooder off: {out}"
        # Still serving: two new peers find each other through it and exchange announcements.
        a = Peer(SWARM, root / "a", [boot.addr])
        children.append(a)
        b = Peer(SWARM, root / "b", [boot.addr])
        children.append(b)
        deadline = time.monotonic() + 30
        while b.peer_id not in a.state()["peers"]:
            assert time.monotonic() < deadline, "the peers did not find each other through the bootstrap"
            time.sleep(0.3)
        a.publish(round=1)
        b.wait_for(lambda r: r["event"] == "recv" and r["publisher"] == a.peer_id, 10)
    finally:
        kill_all(children)
    log = (root / "boot" / "bootstrap.log").read_text()
    assert f"peer …{peer_id_of(key_pair)[-8:]} banned for 60 s" in log, log[-2000:]
