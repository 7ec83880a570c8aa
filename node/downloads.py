"""The download side of a round: the chosen neighbours' newest snapshots, fetched and decoded on the
IPFS workers while the node trains, then checked against what was announced.

Everything received is untrusted: a fetch or decode that fails, a snapshot from someone other than its
announcer or of another model is one event line, the peer is backed off, and the round goes on.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, wait
from dataclasses import dataclass, field

from node.ipfs_workers import IpfsWorkers
from node.learner import StateDict
from node.peer_table import PeerTable
from node.status import Emit, NodeStatus, short_id
from node.timing import Timer
from p2p.announcement import Announcement
from storage import BadContent, Snapshot, StoreError, decode
from storage.delta import BaseCache
from swarm.strategies import PeerView


@dataclass
class Fetched:
    """A neighbour's snapshot, downloaded and decoded (not yet checked against what was announced)."""

    snapshot: Snapshot
    size: int


Download = Future[tuple[Fetched | StoreError, float]]


@dataclass(frozen=True)
class Arrived:
    """A neighbour's snapshot that arrived and passed the checks, with the announcement it answered."""

    announcement: Announcement
    state: StateDict
    # The epsilon the snapshot's own meta says its publisher spent (None: no DP, or an old publisher
    # that did not say): what the merge trusts, since the announcement alone may lie.
    dp_epsilon: float | None


@dataclass
class Exchange:
    """A round's exchange in flight: the neighbours chosen before training and, for each, the download
    of the newest snapshot it announced (fetched and decoded on the IPFS workers)."""

    view: PeerView
    chosen: list[str]
    downloads: dict[str, tuple[Announcement, Download]] = field(default_factory=dict)


class Downloads:
    """Starts, follows and collects the exchanges of a trainer's rounds; keeps the delta bases."""

    def __init__(self, workers: IpfsWorkers, table: PeerTable, *, max_size: int, status: NodeStatus,
                 timer: Timer, emit: Emit) -> None:
        self.workers, self.table, self.max_size = workers, table, max_size
        self.status, self.timer, self.emit = status, timer, emit
        self.bases = BaseCache(self._fetch_base)

    def start(self, view: PeerView, chosen: list[str]) -> Exchange:
        """Start downloading the newest snapshots of the neighbours chosen for this round."""
        exchange = Exchange(view, chosen)
        self.follow(exchange)
        return exchange

    def follow(self, exchange: Exchange) -> None:
        """Start downloading the snapshot a chosen neighbour announced since its last download began."""
        newer = []
        for peer_id in exchange.chosen:
            ann, started = self.table.records[peer_id].announcement, exchange.downloads.get(peer_id)
            if started is None or started[0].cid != ann.cid:
                newer.append(ann)
                if started is not None:
                    started[1].cancel()  # superseded: dropped, and not started if still queued
        for ann, download in zip(newer, self.workers.submit(self._download, newer), strict=True):
            exchange.downloads[ann.publisher] = (ann, download)

    def collect(self, exchange: Exchange) -> dict[str, Arrived]:
        """Wait for the downloads; each that arrived and passed the checks."""
        with self.timer("fetch"):  # only what training and publishing did not hide
            wait([download for _, download in exchange.downloads.values()])
        arrived = {}
        for peer_id, (ann, download) in exchange.downloads.items():
            checked = self.check(ann, *download.result())
            if checked is not None:
                arrived[peer_id] = checked
        return arrived

    def _download(self, ann: Announcement) -> Fetched:
        return self._fetch(ann.cid)

    def _fetch(self, cid: str) -> Fetched:
        data = self.workers.store.get(cid, max_size=self.max_size, timeout=self.workers.timeout_s)
        return Fetched(decode(data, max_size=self.max_size), len(data))

    def check(self, ann: Announcement, fetched: Fetched | StoreError, seconds: float) -> Arrived | None:
        """A downloaded snapshot that passed, or None (and an event) if it failed or is unfit."""
        started = time.monotonic()
        try:
            if isinstance(fetched, StoreError):
                raise fetched
            snap = fetched.snapshot
            if snap.meta.get("peer_id") != ann.publisher:
                raise BadContent(f"snapshot says it is from {short_id(str(snap.meta.get('peer_id')))}, "
                                 "not from its announcer")
            if snap.schema != self.table.schema:
                raise BadContent("snapshot schema differs from the announced one")
            state = self.bases.state_of(snap)
        except StoreError as exc:
            self.table.fetch_failed(ann.publisher)
            self.emit(f"fetch {ann.cid[-10:]} from {short_id(ann.publisher)} failed: {exc}")
            return None
        self.status.bytes_in += fetched.size
        self.table.fetch_succeeded(ann.publisher, (seconds + time.monotonic() - started) * 1000,
                                   self.workers.reach(ann))
        epsilon = snap.meta.get("dp_epsilon")
        return Arrived(ann, state, None if epsilon is None else float(epsilon))

    def _fetch_base(self, cid: str) -> StateDict:
        """A keyframe a delta names, not seen before: a download nothing hides."""
        with self.timer("fetch"):
            base = self._fetch(cid)
        self.status.bytes_in += base.size
        return base.snapshot.state_dict
