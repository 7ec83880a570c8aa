"""A pinner against a real js-ipfs daemon: snapshots nobody holds any more (their publishers left) fail
after the fetch timeout, each with its reason, and do not hold up the ones that can be pinned."""

from __future__ import annotations

import time
from pathlib import Path

from libp2p.crypto.ed25519 import create_new_key_pair

from node.ipfs_workers import IpfsWorkers
from node.pinner import Pinner
from p2p.announcement import Announcement
from p2p.identity import peer_id_of
from storage import IpfsDaemon, IpfsStore, cid_of

TIMEOUT_S = 3.0


def announcement(cid: str, publisher: str, rnd: int = 1) -> Announcement:
    return Announcement(cid=cid, publisher=publisher, round=rnd, schema="s", samples=1, loss=0.1,
                        encoding="fp32", size=1, timestamp=time.time())


def test_missing_snapshots_fail_with_a_reason_without_holding_up_the_rest(tmp_path: Path) -> None:
    daemon = IpfsDaemon.start(tmp_path / "ipfs")
    events: list[str] = []

    def emit(message: str, /, **fields: object) -> None:
        events.append(message)

    try:
        store = IpfsStore(daemon.api_multiaddr)
        pinner = Pinner(IpfsWorkers(store, TIMEOUT_S, emit), emit)
        gone, alive = [peer_id_of(create_new_key_pair()) for _ in range(3)], peer_id_of(create_new_key_pair())
        held = [store.put(f"snapshot {r} of a peer still here".encode()) for r in (1, 2, 3)]
        missing = [cid_of(f"snapshot of a peer that left {i}".encode()) for i in range(len(gone))]
        anns = [announcement(c, p) for c, p in zip(missing, gone, strict=True)]
        anns += [announcement(c, alive, rnd) for rnd, c in enumerate(held, 1)]
        started = time.monotonic()
        pinner.pin_newest(anns)
        elapsed = time.monotonic() - started
    finally:
        daemon.stop()

    # The oldest snapshot of the live peer is superseded; its two newest are pinned, in round order.
    assert pinner.pinned == {alive: held[1:]}, events
    assert any(f"skipped {held[0][-10:]}" in e and "superseded" in e for e in events), events
    failed = [e for e in events if "failed after" in e]
    assert len(failed) == len(missing) and all("timed out" in e for e in failed), events
    # Concurrently about 1 x TIMEOUT_S; one after another, the three missing snapshots alone take 3 x.
    assert elapsed < 2.5 * TIMEOUT_S, f"pinning took {elapsed:.1f} s: missing snapshots held up the rest"
