"""The pinner role: keeps the newest snapshots of every publisher pinned, so they stay available when
their publisher is offline (behind a router that sleeps, or gone for good), and carries the snapshots
of peers behind NAT: it announces where its IPFS daemon listens, every node keeps connected to it, so
it fetches a NATed publisher's snapshot over the connection the publisher opened, and serves it to
everyone connected to it.
"""

from __future__ import annotations

import time

import msgpack

from node.ipfs_workers import IpfsWorkers
from node.status import Emit, short_id
from p2p.announcement import PINNER, Announcement, AnnouncementError
from p2p.gossip import GossipError, GossipService
from storage import StoreError

PINNER_KEEP_PER_PEER = 2
# How often a pinner announces itself: a node that joins finds it within this long, before its own
# first snapshot is announced in the usual case (a round takes longer).
PRESENCE_EVERY_S = 5.0


class Pinner:
    """Pins what publishers announce, the newest PINNER_KEEP_PER_PEER of each, and unpins older ones."""

    def __init__(self, workers: IpfsWorkers, emit: Emit) -> None:
        self.workers, self.emit = workers, emit
        self.pinned: dict[str, list[str]] = {}  # publisher -> its pinned CIDs, oldest first
        self.card = ""  # CID of the card the presence announcements name
        self.last_presence = float("-inf")

    def announce_presence(self, gossip: GossipService, ipfs_addrs: list[str]) -> None:
        """Every PRESENCE_EVERY_S, tell the swarm where this pinner's IPFS daemon listens. An
        announcement names a CID; a pinner's names a small card saying what it keeps."""
        if time.monotonic() - self.last_presence < PRESENCE_EVERY_S or not ipfs_addrs:
            return
        self.last_presence = time.monotonic()
        card = msgpack.packb({"role": PINNER, "peer_id": gossip.peer_id,
                              "keeps_per_publisher": PINNER_KEEP_PER_PEER})
        try:
            if not self.card:
                self.card = self.workers.store.put(card)
                self.workers.store.pin(self.card)
            # The round only has to grow, also across restarts (peers drop a repeated (cid, round) as
            # a replay), and the card's CID never changes: the clock it is.
            gossip.publish(Announcement(
                cid=self.card, publisher=gossip.peer_id, round=int(time.time()), schema=PINNER,
                samples=0, loss=None, encoding="card", size=len(card), timestamp=time.time(), role=PINNER,
                addrs=tuple(ipfs_addrs)))
        except (StoreError, GossipError, AnnouncementError) as exc:
            self.emit(f"could not announce this pinner: {exc}")

    def pin_newest(self, anns: list[Announcement]) -> None:
        """Pin the newest snapshots of each publisher in `anns`, several at a time."""
        # After a stall or a healed partition one batch holds many snapshots per publisher. Only the
        # newest PINNER_KEEP_PER_PEER would stay pinned, so older ones are skipped, not fetched in turn.
        by_peer: dict[str, list[Announcement]] = {}
        for ann in anns:
            by_peer.setdefault(ann.publisher, []).append(ann)
        todo = []
        for publisher, batch in by_peer.items():
            batch.sort(key=lambda a: a.round)
            for ann in batch[:-PINNER_KEEP_PER_PEER]:
                self.emit(f"skipped {ann.cid[-10:]} of {short_id(publisher)}: superseded", cid=ann.cid,
                          publisher=publisher)
            todo += batch[-PINNER_KEEP_PER_PEER:]
        for ann, pin in zip(todo, self.workers.submit(self._pin_one, todo), strict=True):
            self._keep_pinned(ann, *pin.result())

    def _pin_one(self, ann: Announcement) -> None:
        self.workers.store.pin(ann.cid, self.workers.timeout_s)

    def _keep_pinned(self, ann: Announcement, error: StoreError | None, seconds: float) -> None:
        what = f"{ann.cid[-10:]} of {short_id(ann.publisher)}"
        fields = {"cid": ann.cid, "publisher": ann.publisher, "pin_s": round(seconds, 3)}
        if error is not None:
            self.emit(f"pin {what} failed after {seconds:.1f} s: {error}", **fields)
            return
        kept = self.pinned.setdefault(ann.publisher, [])
        kept.append(ann.cid)
        self.emit(f"pinned {what} in {seconds:.1f} s", **fields)
        while len(kept) > PINNER_KEEP_PER_PEER:
            old = kept.pop(0)
            self.workers.quietly(f"unpin {old[-10:]}", self.workers.store.unpin, old)
