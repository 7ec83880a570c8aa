"""GossipService's thread-safe API as the node loop uses it: two real hosts in this process."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from support.gossip_peer import cid_for

from p2p.announcement import Announcement, AnnouncementError
from p2p.gossip import GossipConfig, GossipError, GossipService, GossipStartError


def ann(svc: GossipService, round: int) -> Announcement:
    return Announcement(cid=cid_for(f"{svc.peer_id}/{round}".encode()), publisher=svc.peer_id, round=round,
                        schema="s", samples=10, loss=0.3, encoding="fp32", size=100, timestamp=time.time())


def test_publish_drain_peers_events_stop(tmp_path: Path) -> None:
    a = GossipService(GossipConfig(swarm_id="svc", data_dir=tmp_path / "a"))
    with pytest.raises(GossipError, match="start"):
        a.publish(Announcement(cid=cid_for(b"x"), publisher="", round=0, schema="s", samples=0, loss=None,
                               encoding="fp32", size=0, timestamp=time.time()))
    a.start()
    b = GossipService(GossipConfig(swarm_id="svc", data_dir=tmp_path / "b", static_peers=[a.addrs[0]]))
    b.start()
    try:
        deadline = time.monotonic() + 15
        got: list[Announcement] = []
        while not got and time.monotonic() < deadline:
            b.publish(ann(b, int(time.monotonic() * 10)))  # a new round each try, not a replay
            time.sleep(0.5)
            got = a.drain()
        assert got and got[0].publisher == b.peer_id
        assert a.peers() == [b.peer_id]
        assert any("connected" in text for _, text in a.events())
        assert a.stats()["received"] >= 1 and b.stats()["published"] >= 1
        with pytest.raises(AnnouncementError, match="publisher"):
            a.publish(ann(b, 1))
    finally:
        b.stop()
        a.stop()
        a.stop()  # idempotent
    assert not a._thread.is_alive() and not b._thread.is_alive()  # type: ignore[union-attr]


def test_start_fails_clearly_when_the_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        listen = f"/ip4/127.0.0.1/tcp/{port}"
        svc = GossipService(GossipConfig(swarm_id="svc", data_dir=tmp_path, listen=listen))
        with pytest.raises(GossipStartError, match="cannot listen"):
            svc.start()
        svc.stop()
