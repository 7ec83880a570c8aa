"""The pinner role: keeps the newest snapshots of every publisher pinned, so they stay available when
their publisher is offline (behind a router that sleeps, or gone for good).
"""

from __future__ import annotations

from node.ipfs_workers import IpfsWorkers
from node.status import Emit, short_id
from p2p.announcement import Announcement
from storage import StoreError

PINNER_KEEP_PER_PEER = 2


class Pinner:
    """Pins what publishers announce, the newest PINNER_KEEP_PER_PEER of each, and unpins older ones."""

    def __init__(self, workers: IpfsWorkers, emit: Emit) -> None:
        self.workers, self.emit = workers, emit
        self.pinned: dict[str, list[str]] = {}  # publisher -> its pinned CIDs, oldest first

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
