"""The peer table: what this node knows of every other peer, folded from their announcements.

Announcements arrive in any order and may be stale or incompatible; the table keeps the newest
compatible snapshot per peer and says why anything else was skipped. The strategy only ever sees
the table through `candidates()`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from node.status import PeerRow
from p2p.announcement import Announcement

MAX_FAILURES_BEFORE_BACKOFF = 3
BACKOFF_S = 30.0
# Roles whose announcements offer a model to merge: trainers, and `swarm-node publish` seeds. A peer
# whose newest announcement says it is leaving (p2p.announcement.LEAVING) is no longer a candidate.
SNAPSHOT_ROLES = ("trainer", "seed")


@dataclass
class PeerRecord:
    peer_id: str
    announcement: Announcement
    last_seen: float
    similarity: float | None = None
    weight: float | None = None
    fetch_ms: float | None = None
    merged: bool = False  # in this node's last exchange
    merged_cid: str | None = None  # the snapshot last merged from it (its announcement may be newer)
    failures: int = 0
    retry_after: float = 0.0
    reach: str = ""  # how its last snapshot came: direct, via pinner, inbound (IpfsWorkers.reach)

    def row(self) -> PeerRow:
        """What the status view shows of this peer."""
        a = self.announcement
        return PeerRow(self.peer_id, a.cid, a.round, self.similarity, self.weight, self.last_seen,
                       self.fetch_ms, self.merged, self.reach, a.dp_epsilon)

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["announcement"] = self.announcement.to_bytes()
        return record

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> PeerRecord:
        record = dict(record)
        record["announcement"] = Announcement.from_bytes(record["announcement"])
        return cls(**record)


class PeerTable:
    """Newest compatible announcement per peer, plus what we learned fetching from it."""

    def __init__(self, me: str, schema: str, labels: str = "") -> None:
        self.me = me
        self.schema = schema
        self.labels = labels  # fingerprint of our class order; "" = we train nothing
        self.records: dict[str, PeerRecord] = {}

    def fold(self, ann: Announcement, now: float | None = None) -> str | None:
        """Take in one announcement; returns why it was skipped, or None if it was kept."""
        now = time.time() if now is None else now
        if ann.publisher == self.me:
            return "own announcement"
        if self.schema and ann.schema != self.schema:  # a pinner or observer has no model: follows all
            return f"model schema {ann.schema[:12]} differs from ours {self.schema[:12]}"
        # Same shapes, other meanings: its output k is another class than ours, a merge would mix them
        # up. A model that does not say its class order may be in any order, so it is never merged.
        if self.labels and ann.role in SNAPSHOT_ROLES and ann.labels != self.labels:
            if not ann.labels:
                return ("announces no class order (a swarm-node older than the labels field): its outputs "
                        "may mean other classes than ours; that peer must update swarm-node")
            return (f"class order {ann.labels} differs from ours {self.labels} (another manifest or other "
                    "class folders)")
        known = self.records.get(ann.publisher)
        if known is not None and ann.round < known.announcement.round:
            known.last_seen = now
            return f"stale: round {ann.round} < round {known.announcement.round} already seen"
        if known is None:
            self.records[ann.publisher] = PeerRecord(ann.publisher, ann, now)
            return None
        if ann.cid != known.announcement.cid and known.failures < MAX_FAILURES_BEFORE_BACKOFF:
            known.retry_after = 0.0  # a new snapshot is worth a try at once; the failed one was not
        known.announcement, known.last_seen = ann, now
        return None

    def candidates(self, now: float | None = None, max_age_s: float = 600.0) -> list[PeerRecord]:
        """Peers worth fetching from: recently seen trainers not in failure backoff."""
        now = time.time() if now is None else now
        return [
            r for r in self.records.values()
            if r.announcement.role in SNAPSHOT_ROLES
            and now - r.last_seen <= max_age_s and now >= r.retry_after
        ]

    def fetch_failed(self, peer_id: str, now: float | None = None) -> None:
        """The peer's announced snapshot could not be fetched: it is not tried again for BACKOFF_S
        (its holders may be gone, a pinner may hold it later); a newer snapshot of the peer is tried at
        once, unless the peer failed MAX_FAILURES_BEFORE_BACKOFF times in a row."""
        record = self.records[peer_id]
        record.failures += 1
        record.retry_after = (time.time() if now is None else now) + BACKOFF_S

    def fetch_succeeded(self, peer_id: str, fetch_ms: float, reach: str = "") -> None:
        record = self.records[peer_id]
        record.failures, record.retry_after, record.fetch_ms, record.reach = 0, 0.0, fetch_ms, reach

    def note_scores(self, scores: dict[str, float]) -> None:
        """The similarity this node's metric gave each peer's newest snapshot."""
        for peer_id, score in scores.items():
            self.records[peer_id].similarity = score

    def mark_merged(self, merged: dict[str, tuple[float, str]]) -> None:
        """The outcome of this node's last exchange: peer -> (merge weight, CID merged); the rest not."""
        for record in self.records.values():
            record.merged, record.weight = False, None
        for peer_id, (weight, cid) in merged.items():
            record = self.records[peer_id]
            record.merged, record.merged_cid, record.weight = True, cid, weight

    def merged_cids(self, limit: int) -> list[str]:
        """The snapshots this node's model was last merged from: its parents in the lineage."""
        return [r.merged_cid for r in self.records.values() if r.merged and r.merged_cid][:limit]

    def to_list(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.records.values()]

    def load_list(self, records: list[dict[str, Any]]) -> None:
        self.records = {r.peer_id: r for r in map(PeerRecord.from_dict, records)}
