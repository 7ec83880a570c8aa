"""The publishing side of a round: encode this peer's model, put and pin it in IPFS, announce it; keep
only the last few of its own snapshots pinned; say goodbye when the node leaves.

Every snapshot published also goes into the data dir's snapshot cache (`SNAPSHOT_CACHE`, the last
`CACHED_SNAPSHOTS`), so `swarm-node lineage` can walk this node's history after its IPFS daemon
has stopped or collected them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from node.ipfs_workers import IpfsWorkers
from node.learner import Learner
from node.provenance import Provenance
from node.status import NodeStatus
from node.timing import Timer
from p2p.announcement import LEAVING, MAX_PRIORS, Announcement, AnnouncementError
from p2p.gossip import GossipError, GossipService
from storage import LocalStore, schema_fingerprint
from storage.delta import DeltaEncoder

log = logging.getLogger(__name__)
KEEP_OWN_SNAPSHOTS = 2
SNAPSHOT_CACHE = "snapshots"  # a LocalStore in the data dir
CACHED_SNAPSHOTS = 64


class Publisher:
    """This peer's own snapshots: what it published and which stay pinned (the keyframe deltas name)."""

    def __init__(self, workers: IpfsWorkers, gossip: GossipService, *, encoding: str, role: str,
                 status: NodeStatus, timer: Timer, data_dir: Path) -> None:
        self.workers, self.gossip, self.role = workers, gossip, role
        self.status, self.timer = status, timer
        self.encoder = DeltaEncoder(encoding)
        self.cache = LocalStore(data_dir / SNAPSHOT_CACHE)
        self.own_cids: list[str] = []
        self.last_announced: Announcement | None = None
        self.merge: Provenance | None = None  # the merge since the last publish, if any

    def note_merge(self, round_: int, weights: dict[str, float], cids: dict[str, str],
                   scores: dict[str, float]) -> Provenance:
        """Record a merge (peer -> weight, peer -> CID merged, peer -> similarity) for the next snapshot.
        My part of it is the model published this round, if that publish succeeded."""
        published = self.last_announced is not None and self.last_announced.round == round_
        self.merge = Provenance.of_merge(round_, self.gossip.peer_id, self.last_cid if published else "",
                                         weights, cids, scores)
        return self.merge

    def saved_merge(self) -> dict[str, Any]:
        """The merge not yet published, for the checkpoint: it made the checkpointed model."""
        return self.merge.record() if self.merge is not None else {}

    def restore_merge(self, record: dict[str, Any]) -> None:
        self.merge = Provenance.from_record(record) if record else None

    def publish(self, learner: Learner, round_: int, loss: float, parents: list[str], ipfs_addrs: list[str]
                ) -> Announcement:
        """Put, pin and announce the learner's current model; raises StoreError when IPFS is down."""
        store = self.workers.store
        state = learner.state()
        provenance = self.merge or Provenance.alone(self.last_cid)
        meta = {"peer_id": self.gossip.peer_id, "round": round_, "samples": learner.samples,
                "train_loss": float(loss), "parents": parents, "dp_epsilon": learner.epsilon,
                **provenance.meta()}
        with self.timer("encode"):
            outgoing = self.encoder.encode(state, meta, round=round_)
        data, encoding = outgoing.data, outgoing.encoding
        with self.timer("put"):
            cid = store.put(data)
            store.pin(cid)
        self.merge = None
        self.cache.put(data)
        self.cache.gc(keep_recent=CACHED_SNAPSHOTS)
        replaced = self.encoder.published(outgoing, cid)
        self.own_cids.append(cid)
        self.status.bytes_out += len(data)
        # My last few snapshots stay pinned, and the keyframe my deltas name however old it is; a
        # replaced keyframe that already left the last few is unpinned now, or it would stay forever.
        unpin = [replaced] if replaced is not None and replaced not in self.own_cids else []
        while len(self.own_cids) > KEEP_OWN_SNAPSHOTS:
            old = self.own_cids.pop(0)
            if old not in self.encoder.pinned:
                unpin.append(old)
        for old in unpin:
            self.workers.quietly(f"unpin {old[-10:]}", store.unpin, old)
        ann = Announcement(cid=cid, publisher=self.gossip.peer_id, round=round_,
                           schema=schema_fingerprint(state), samples=learner.samples, loss=float(loss),
                           encoding=encoding, size=len(data), timestamp=time.time(), parents=tuple(parents),
                           dp_epsilon=learner.epsilon, priors=tuple(learner.advertise(MAX_PRIORS).items()),
                           role=self.role, addrs=tuple(ipfs_addrs), labels=learner.labels)
        with self.timer("announce"):
            self.gossip.publish(ann)
        self.last_announced = ann
        return ann

    @property
    def last_cid(self) -> str:
        return self.own_cids[-1] if self.own_cids else ""

    def say_goodbye(self) -> None:
        """Tell the swarm this node's snapshots are no longer served by it (best effort: a peer that
        misses it goes on choosing this node, as for one that crashed, until its last announcement
        is too old)."""
        if self.last_announced is None:
            return
        goodbye = replace(self.last_announced, role=LEAVING, timestamp=time.time())
        try:
            self.gossip.publish(goodbye)
        except (GossipError, AnnouncementError) as exc:
            log.warning("could not say goodbye to the swarm: %s", exc)
