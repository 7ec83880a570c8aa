"""What gossip delivers, taken in: announcements into the peer table, pinners met.

A trainer keeps pinners out of its peer table (they offer no model; their presence only tells the
IPFS workers whom to dial) and says why it skips an announcement; pinners and observers list every
peer, pinners included, and a pinner pins the snapshots the others announce.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from node.ipfs_workers import IpfsWorkers
from node.peer_table import SNAPSHOT_ROLES, PeerTable
from node.status import short_id
from p2p.announcement import LEAVING, PINNER, Announcement
from p2p.gossip import GossipService


@dataclass
class Intake:
    gossip: GossipService
    table: PeerTable
    workers: IpfsWorkers
    emit: Callable[..., None]  # Node.event
    backlog: list[Announcement] = field(default_factory=list)  # taken before the table existed

    def fold(self) -> None:
        """A trainer's intake, between and during its rounds."""
        self.workers.flush_notes()
        anns, self.backlog = [*self.backlog, *self.gossip.drain()], []
        for ann in anns:
            if ann.role == PINNER:
                self.workers.meet_pinner(ann)
                continue
            if ann.role == LEAVING:
                self.emit(f"{short_id(ann.publisher)} left the swarm", peer_left=ann.publisher)
            reason = self.table.fold(ann)
            if reason is not None and not reason.startswith("stale"):
                self.emit(f"skipped announcement of {short_id(ann.publisher)}: {reason}")

    def follow(self) -> list[Announcement]:
        """A pinner's or observer's intake; returns the others' snapshot announcements."""
        self.workers.flush_notes()
        anns = self.gossip.drain()
        for ann in anns:
            if ann.role == PINNER and ann.publisher != self.table.me:
                self.workers.meet_pinner(ann)
            self.table.fold(ann)
        return [a for a in anns if a.publisher != self.table.me and a.role in SNAPSHOT_ROLES]
