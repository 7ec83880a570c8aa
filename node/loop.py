"""The node loop: fold -> choose -> (train | fetch + decode the chosen neighbours' newest snapshots)
-> encode -> put + pin -> announce -> score -> merge -> checkpoint.

Asynchronous by design: no global rounds or barriers. A round is this node's own step; peers run at
their own pace and announce whenever they have something. A round chooses its neighbours first, then
trains on a worker thread while the loop keeps folding announcements and downloading the newest
snapshot each chosen neighbour announces. The merge after training thus gets the neighbours' newest
models (a model one round older merges measurably worse) and the round waits only for downloads that
training and publishing did not hide. Everything received is untrusted: a fetch or decode that
fails is one event line, the peer is backed off, and the loop goes on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import TypeVar

from node import checkpoint
from node.config import NodeConfig
from node.ipfs_setup import open_ipfs
from node.learner import Learner, StateDict, load_shard
from node.peer_table import SNAPSHOT_ROLES, PeerRecord, PeerTable
from node.status import STATUS_FILE, NodeStatus, PeerRow, short_id
from p2p.announcement import LEAVING, MAX_PRIORS, Announcement, AnnouncementError
from p2p.gossip import GossipConfig, GossipError, GossipService
from storage import IpfsDaemon, IpfsStore, Snapshot, StoreError, decode, schema_fingerprint
from storage.atomic import write_atomic
from storage.delta import BaseCache, DeltaEncoder
from swarm.models import pick_device
from swarm.privacy import BudgetExhausted
from swarm.strategies import Candidate, PeerView
from swarm.training import TrainStats

log = logging.getLogger(__name__)
T = TypeVar("T")
KEEP_OWN_SNAPSHOTS = 2
PINNER_KEEP_PER_PEER = 2
# Fetches and pins are waits on IPFS, up to fetch_timeout_s when the holder is gone; one after
# another, a few departed peers would hold up everyone else's snapshots.
IPFS_WORKERS = 4
FOLLOW_EVERY_S = 0.1  # while training: how often to look for newer snapshots of the chosen neighbours
# a peer's IPFS address that did not answer (dead daemon, partition) is dialled again after this long
IPFS_REDIAL_S = 30.0


def timed(call: Callable[[Announcement], T], ann: Announcement) -> tuple[T | StoreError, float]:
    """`call(ann)`'s result, or its StoreError, and how long it took (run in an IPFS worker)."""
    started = time.monotonic()
    try:
        result: T | StoreError = call(ann)
    except StoreError as exc:
        result = exc
    return result, time.monotonic() - started


@dataclass
class Fetched:
    """A neighbour's snapshot, downloaded and decoded (not yet checked against what was announced)."""

    snapshot: Snapshot
    size: int


Download = Future[tuple[Fetched | StoreError, float]]


@dataclass
class Exchange:
    """A round's exchange in flight: the neighbours chosen before training and, for each, the download
    of the newest snapshot it announced (fetched and decoded on the IPFS workers)."""

    view: PeerView
    chosen: list[str]
    downloads: dict[str, tuple[Announcement, Download]] = field(default_factory=dict)


class Timer:
    """Seconds spent per phase of the current round (bench/round.py reads them from the round event)."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.spent[phase] = self.spent.get(phase, 0.0) + time.perf_counter() - started


class Node:
    """One peer. `run()` blocks until the rounds are done or `stop` is set; returns an exit code."""

    def __init__(self, cfg: NodeConfig, *, echo_json: bool = False) -> None:
        self.cfg = cfg
        self.echo_json = echo_json
        self.status = NodeStatus(swarm=cfg.swarm, role=cfg.role, rounds=cfg.rounds or None, pid=os.getpid())
        self.stop = threading.Event()
        self.store: IpfsStore | None = None
        self.daemon: IpfsDaemon | None = None
        self.gossip: GossipService | None = None
        self.learner: Learner | None = None
        self.table: PeerTable | None = None
        self.own_cids: list[str] = []
        self.last_announced: Announcement | None = None
        self.encoder = DeltaEncoder(cfg.encoding)
        self.bases = BaseCache(self._fetch_base)
        self.ipfs_dialled: dict[str, float] = {}  # address -> when to dial it again (inf: connected)
        self.pinned: dict[str, list[str]] = {}
        # IPFS calls that are waits (fetches, pins) run here; `call` must touch no node state.
        self.ipfs_pool = ThreadPoolExecutor(IPFS_WORKERS, thread_name_prefix="ipfs")
        # Training runs here so the loop can follow announcements meanwhile; only `train` touches it.
        self.train_pool = ThreadPoolExecutor(1, thread_name_prefix="train")
        self.round = 0
        self.merges = 0
        self.timer = Timer()
        self.serving = False  # a DP trainer whose budget is spent: keeps its snapshots available

    # -- events and status ---------------------------------------------------------------------------

    def event(self, message: str, **fields: object) -> None:
        self.status.event(message)
        if self.echo_json:
            record = {"t": round(time.time(), 3), "peer": short_id(self.status.peer_id), "event": message,
                      **fields}
            print(json.dumps(record), flush=True)
        self.publish_status()

    def publish_status(self) -> None:
        self.status.updated_at = time.time()
        if self.gossip is not None:
            self.status.gossip_peers = len(self.gossip.peers())
        if self.table is not None:
            self.status.peers = [self._row(r) for r in self.table.records.values()]
        write_atomic(self.cfg.data_dir / STATUS_FILE, self.status.to_json().encode())

    @staticmethod
    def _row(r: PeerRecord) -> PeerRow:
        a = r.announcement
        return PeerRow(r.peer_id, a.cid, a.round, r.similarity, r.weight, r.last_seen, r.fetch_ms, r.merged)

    # -- set-up and tear-down ------------------------------------------------------------------------

    def start(self) -> None:
        cfg = self.cfg
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(cfg.data_dir, 0o700)
        if cfg.role == "trainer":
            device = pick_device(cfg.device)
            self.status.device = str(device)
            self.learner = Learner(cfg, load_shard(cfg), device)
        self.store, self.daemon, how = open_ipfs(cfg.ipfs_api, cfg.data_dir)
        self.status.ipfs = "ok"
        self.status.ipfs_api = self.store.api_multiaddr
        self.status.ipfs_addrs = self._ipfs_addrs()
        self.event(how)
        self.gossip = GossipService(GossipConfig(swarm_id=cfg.swarm, data_dir=cfg.data_dir, listen=cfg.listen,
                                                 bootstrap=list(cfg.bootstrap)))
        self.gossip.start()
        self.status.peer_id = self.gossip.peer_id
        schema = schema_fingerprint(self.learner.state()) if self.learner else ""
        self.table = PeerTable(self.gossip.peer_id, schema)
        self._resume()
        self.status.state = "running"
        self.event(f"joined swarm {cfg.swarm} as {cfg.role} on {self.gossip.addrs[0]}")

    def _resume(self) -> None:
        saved = checkpoint.load(self.cfg.data_dir)
        if saved is None:
            return
        assert self.table is not None
        self.round = saved.round
        self.own_cids = [saved.last_cid] if saved.last_cid else []
        self.table.load_list(saved.peers)
        if self.learner is not None:
            self.learner.model.load_state_dict(saved.model)
            self.learner.optimizer.load_state_dict(saved.optimizer)
            self.learner.strategy.load_state_dict(saved.strategy)
            self.learner.restore_best(saved.best)
            if self.learner.private is not None:
                self.learner.private.load_state_dict(saved.privacy)
                self.status.epsilon = self.learner.epsilon
        self.status.round = self.round
        self.event(f"resumed from checkpoint at round {self.round}")

    def close(self) -> None:
        self.status.state = "stopped"
        self.ipfs_pool.shutdown(wait=False, cancel_futures=True)
        self.train_pool.shutdown(wait=False, cancel_futures=True)
        if self.gossip is not None:
            self.say_goodbye()
            self.gossip.stop()
        if self.daemon is not None:
            self.daemon.stop()
        self.event("stopped")

    def say_goodbye(self) -> None:
        """Tell the swarm this node's snapshots are no longer served by it (best effort: a peer that
        misses it goes on choosing this node, as for one that crashed, until its last announcement
        is too old)."""
        assert self.gossip is not None
        if self.last_announced is None:
            return
        goodbye = replace(self.last_announced, role=LEAVING, timestamp=time.time())
        try:
            self.gossip.publish(goodbye)
        except (GossipError, AnnouncementError) as exc:
            log.warning("could not say goodbye to the swarm: %s", exc)

    # -- the loop ------------------------------------------------------------------------------------

    def run(self) -> int:
        try:
            self.start()
            while not self.stop.is_set() and not (self.cfg.rounds and self.round >= self.cfg.rounds):
                started = time.monotonic()
                if self.learner is not None and not self.serving:
                    self.trainer_round(started + self.cfg.round_interval_s)
                else:
                    self.follow()
                    self.stop.wait(1.0)
                rest = self.cfg.round_interval_s - (time.monotonic() - started)
                if rest > 0:
                    self.stop.wait(rest)
            if self.learner is not None and not self.stop.is_set():
                acc = self.learner.best_test_accuracy()
                self.status.state = "done"
                self.event(f"finished {self.round} rounds, test accuracy {acc:.3f} (the best model on "
                           f"validation, round {self.learner.best.round})", test_acc=acc,
                           bytes_in=self.status.bytes_in, bytes_out=self.status.bytes_out,
                           merges=self.merges, cluster=self.learner.shard.data.cluster)
            return 0
        finally:
            self.close()

    def trainer_round(self, fresh_until: float) -> None:
        """One round: train, judge, publish, then merge the chosen neighbours' newest models (waiting
        until `fresh_until`, at most, for them to publish this round's)."""
        assert self.learner is not None and self.store is not None and self.gossip is not None
        self.round += 1
        self.status.round = self.round
        self.timer = timer = Timer()
        max_steps = self.cfg.max_steps_per_round or None
        self.fold()
        exchange = self.start_exchange()
        try:
            with timer("train"):
                stats = self.train_following(exchange, max_steps)
        except BudgetExhausted as exc:
            self.round -= 1
            self.serving = True
            self.status.state = "serving (privacy budget spent)"
            self.event(str(exc))
            return
        self.status.epsilon = self.learner.epsilon
        with timer("evaluate"):
            _, val_acc = self.learner.judge(self.round)
        self.status.loss, self.status.val_acc = stats.loss, val_acc
        try:
            ann = self.publish(stats.loss)
        except StoreError as exc:
            # IPFS is down (its daemon died or restarts): keep training and merging, publish next round
            cid = self.own_cids[-1] if self.own_cids else ""
            self.event(f"round {self.round}: trained {stats.steps} steps, val acc {val_acc:.3f}, "
                       f"not published: {exc}", round=self.round, loss=stats.loss, val_acc=val_acc)
        else:
            cid = ann.cid
            self.event(f"round {self.round}: trained {stats.steps} steps, loss {stats.loss:.4f}, "
                       f"val acc {val_acc:.3f}, published {cid[-10:]}",
                       round=self.round, loss=stats.loss, val_acc=val_acc, cid=cid, parents=list(ann.parents))
        self.await_fresh(exchange, fresh_until)  # not timed: the loop would sleep this time away
        self.finish_exchange(exchange)
        with timer("checkpoint"):
            self.save_checkpoint(cid)
        self.event(f"round {self.round} took {sum(timer.spent.values()):.2f} s",
                   round_timings={k: round(v, 5) for k, v in timer.spent.items()})

    def publish(self, loss: float) -> Announcement:
        assert self.learner is not None and self.store is not None and self.gossip is not None
        assert self.table is not None
        state = self.learner.state()
        parents = [r.merged_cid for r in self.table.records.values() if r.merged and r.merged_cid][:16]
        meta = {"peer_id": self.gossip.peer_id, "round": self.round, "samples": self.learner.samples,
                "train_loss": float(loss), "parents": parents, "dp_epsilon": self.learner.epsilon}
        with self.timer("encode"):
            outgoing = self.encoder.encode(state, meta, round=self.round)
        data, encoding = outgoing.data, outgoing.encoding
        with self.timer("put"):
            cid = self.store.put(data)
            self.store.pin(cid)
        self.encoder.published(outgoing, cid)
        self.own_cids.append(cid)
        self.status.bytes_out += len(data)
        keep = self.encoder.pinned
        while len(self.own_cids) > KEEP_OWN_SNAPSHOTS:
            old = self.own_cids.pop(0)
            if old not in keep:
                self._quietly(f"unpin {old[-10:]}", self.store.unpin, old)
        ann = Announcement(cid=cid, publisher=self.gossip.peer_id, round=self.round,
                           schema=schema_fingerprint(state), samples=self.learner.samples, loss=float(loss),
                           encoding=encoding, size=len(data), timestamp=time.time(), parents=tuple(parents),
                           dp_epsilon=self.learner.epsilon,
                           priors=tuple(self.learner.strategy.advertise(MAX_PRIORS).items()),
                           role=self.cfg.role, addrs=tuple(self._ipfs_addrs()))
        with self.timer("announce"):
            self.gossip.publish(ann)
        self.last_announced = ann
        return ann

    def _ipfs_addrs(self) -> list[str]:
        assert self.store is not None
        if self.daemon is not None:
            return [self.daemon.swarm_multiaddr]
        try:
            return [a for a in self.store.swarm_addrs() if a.startswith("/ip4/")][:4]
        except StoreError:
            return []

    def fold(self) -> None:
        assert self.gossip is not None and self.table is not None
        for ann in self.gossip.drain():
            if ann.role == LEAVING:
                self.event(f"{short_id(ann.publisher)} left the swarm", peer_left=ann.publisher)
            reason = self.table.fold(ann)
            if reason is not None and not reason.startswith("stale"):
                self.event(f"skipped announcement of {short_id(ann.publisher)}: {reason}")

    def start_exchange(self) -> Exchange:
        """Choose peers with the strategy and start downloading their newest snapshots."""
        assert self.learner is not None and self.table is not None
        learner = self.learner
        view = PeerView(me=self.table.me, round=self.round, my_samples=learner.samples,
                        candidates=[Candidate(r.peer_id, r.announcement.samples, r.announcement.round)
                                    for r in self.table.candidates()])
        exchange = Exchange(view, learner.strategy.choose(view, learner.rng))
        self.follow_exchange(exchange)
        return exchange

    def follow_exchange(self, exchange: Exchange) -> None:
        """Start downloading the snapshot a chosen neighbour announced since its last download began."""
        assert self.table is not None
        newer = []
        for peer_id in exchange.chosen:
            ann, started = self.table.records[peer_id].announcement, exchange.downloads.get(peer_id)
            if started is None or started[0].cid != ann.cid:
                newer.append(ann)
                if started is not None:
                    started[1].cancel()  # superseded: dropped, and not started if still queued
        for ann, download in zip(newer, self._ipfs_calls(self._download, newer), strict=True):
            exchange.downloads[ann.publisher] = (ann, download)

    def train_following(self, exchange: Exchange, max_steps: int | None) -> TrainStats:
        """Train on the training thread; meanwhile fold announcements and follow the exchange."""
        assert self.learner is not None
        training = self.train_pool.submit(self.learner.train, max_steps)
        while not wait([training], timeout=FOLLOW_EVERY_S).done:
            self.fold()
            self.follow_exchange(exchange)
        self.fold()
        self.follow_exchange(exchange)
        return training.result()

    def await_fresh(self, exchange: Exchange, deadline: float) -> None:
        """Follow the chosen neighbours until each has announced a model of this round, or `deadline`
        (the round's minimum length, which the loop would otherwise sleep away after merging) passes:
        merging a model a round older than mine costs a large part of the gain (docs/results.md)."""
        assert self.table is not None
        while not self.stop.is_set() and time.monotonic() < deadline:
            records = [self.table.records.get(p) for p in exchange.chosen]
            if all(r is None or r.announcement.round >= self.round for r in records):
                return
            self.stop.wait(min(FOLLOW_EVERY_S, max(deadline - time.monotonic(), 0)))
            self.fold()
            self.follow_exchange(exchange)

    def finish_exchange(self, exchange: Exchange) -> None:
        """Wait for the downloads, then check, score and merge what arrived."""
        assert self.learner is not None and self.table is not None
        learner, view = self.learner, exchange.view
        with self.timer("fetch"):  # only what training and publishing did not hide
            wait([download for _, download in exchange.downloads.values()])
        anns = {p: ann for p, (ann, _) in exchange.downloads.items()}
        states: dict[str, StateDict] = {}
        scores: dict[str, float] = {}
        for peer_id, (ann, download) in exchange.downloads.items():
            state = self.check(ann, *download.result())
            if state is None:
                continue
            with self.timer("score"):
                score = learner.score(state)
            if score != score:  # NaN: the peer's model is useless on my data
                self.event(f"skipped {short_id(peer_id)}: similarity is not a number")
                continue
            states[peer_id], scores[peer_id] = state, score
            self.table.records[peer_id].similarity = score
        advertised = {p: dict(anns[p].priors) for p in states}
        learner.strategy.observe(view, scores, advertised)
        for record in self.table.records.values():
            record.merged, record.weight = False, None
        if not states:
            return
        weights = learner.strategy.weights(view, list(states), scores)
        try:
            with self.timer("merge"):
                verdict = learner.merge(self.table.me, {self.table.me: learner.state(), **states}, weights,
                                        rounds_trained=self.round)
        except ValueError as exc:
            self.event(f"merge skipped: {exc}")
            return
        for peer_id in verdict.rejected:
            self.event(f"round {self.round}: kept {short_id(peer_id)} out of the merge: it raised the loss "
                       "on my validation data", refused=peer_id)
        used = {p: w for p, w in verdict.weights.items() if p in states and w > 0}
        self.merges += len(used)
        for peer_id, weight in used.items():
            record = self.table.records[peer_id]
            record.merged, record.merged_cid, record.weight = True, anns[peer_id].cid, weight
        if used:
            merged = ", ".join(f"{short_id(p)} ({w:.2f})" for p, w in used.items())
            self.event(f"round {self.round}: merged {merged}", round=self.round, merged=list(used),
                       merged_cids=[anns[p].cid for p in used])

    def _download(self, ann: Announcement) -> Fetched:
        assert self.store is not None
        data = self.store.get(ann.cid, max_size=self._cap(), timeout=self.cfg.fetch_timeout_s)
        return Fetched(decode(data, max_size=self._cap()), len(data))

    def check(self, ann: Announcement, fetched: Fetched | StoreError, seconds: float) -> StateDict | None:
        """The state dict of a downloaded snapshot, or None (and an event) if it failed or is unfit."""
        assert self.table is not None
        started = time.monotonic()
        try:
            if isinstance(fetched, StoreError):
                raise fetched
            snap = fetched.snapshot
            if snap.meta.get("peer_id") != ann.publisher:
                raise StoreError(f"snapshot says it is from {short_id(str(snap.meta.get('peer_id')))}, "
                                 "not from its announcer")
            if snap.schema != self.table.schema:
                raise StoreError("snapshot schema differs from the announced one")
            state = self.bases.state_of(snap)
        except StoreError as exc:
            self.table.fetch_failed(ann.publisher)
            self.event(f"fetch {ann.cid[-10:]} from {short_id(ann.publisher)} failed: {exc}")
            return None
        self.status.bytes_in += fetched.size
        self.table.fetch_succeeded(ann.publisher, (seconds + time.monotonic() - started) * 1000)
        return state

    def _fetch_base(self, cid: str) -> StateDict:
        assert self.store is not None
        with self.timer("fetch"):  # a keyframe not seen before: a download nothing hides
            data = self.store.get(cid, max_size=self._cap(), timeout=self.cfg.fetch_timeout_s)
            state = decode(data, max_size=self._cap()).state_dict
        self.status.bytes_in += len(data)
        return state

    def _ipfs_calls(self, call: Callable[[Announcement], T], anns: list[Announcement]
                    ) -> list[Future[tuple[T | StoreError, float]]]:
        """Connect to each announcer's IPFS node, then start `call(ann)` for each on the IPFS workers."""
        for ann in anns:
            self._connect_ipfs(ann)
        return [self.ipfs_pool.submit(timed, call, ann) for ann in anns]

    def _connect_ipfs(self, ann: Announcement) -> None:
        assert self.store is not None
        now = time.monotonic()
        for addr in ann.addrs:
            if self.ipfs_dialled.get(addr, 0.0) <= now:
                ok = self._quietly(f"ipfs connect {addr}", self.store.connect, addr, self.cfg.fetch_timeout_s)
                self.ipfs_dialled[addr] = math.inf if ok else now + IPFS_REDIAL_S

    def _cap(self) -> int:
        return int(self.cfg.max_snapshot_mb * 1024 * 1024)

    def follow(self) -> None:
        """Pinners and observers: fold announcements; pinners keep recent snapshots pinned."""
        assert self.store is not None and self.gossip is not None and self.table is not None
        anns = self.gossip.drain()
        for ann in anns:
            self.table.fold(ann)
        if self.cfg.role == "pinner":
            self.pin_newest([a for a in anns if a.publisher != self.table.me and a.role in SNAPSHOT_ROLES])
        self.publish_status()

    def pin_newest(self, anns: list[Announcement]) -> None:
        """Pinners: pin the newest snapshots of each publisher in `anns`, several at a time."""
        # After a stall or a healed partition one batch holds many snapshots per publisher. Only the
        # newest PINNER_KEEP_PER_PEER would stay pinned, so older ones are skipped, not fetched in turn.
        by_peer: dict[str, list[Announcement]] = {}
        for ann in anns:
            by_peer.setdefault(ann.publisher, []).append(ann)
        todo = []
        for publisher, batch in by_peer.items():
            batch.sort(key=lambda a: a.round)
            for ann in batch[:-PINNER_KEEP_PER_PEER]:
                self.event(f"skipped {ann.cid[-10:]} of {short_id(publisher)}: superseded", cid=ann.cid,
                           publisher=publisher)
            todo += batch[-PINNER_KEEP_PER_PEER:]
        for ann, pin in zip(todo, self._ipfs_calls(self._pin_one, todo), strict=True):
            self._keep_pinned(ann, *pin.result())

    def _pin_one(self, ann: Announcement) -> None:
        assert self.store is not None
        self.store.pin(ann.cid, self.cfg.fetch_timeout_s)

    def _keep_pinned(self, ann: Announcement, error: StoreError | None, seconds: float) -> None:
        assert self.store is not None
        what = f"{ann.cid[-10:]} of {short_id(ann.publisher)}"
        fields = {"cid": ann.cid, "publisher": ann.publisher, "pin_s": round(seconds, 3)}
        if error is not None:
            self.event(f"pin {what} failed after {seconds:.1f} s: {error}", **fields)
            return
        kept = self.pinned.setdefault(ann.publisher, [])
        kept.append(ann.cid)
        self.event(f"pinned {what} in {seconds:.1f} s", **fields)
        while len(kept) > PINNER_KEEP_PER_PEER:
            old = kept.pop(0)
            self._quietly(f"unpin {old[-10:]}", self.store.unpin, old)

    def _quietly(self, what: str, fn: Callable[..., object], *args: object) -> bool:
        try:
            fn(*args)
            return True
        except StoreError as exc:
            self.event(f"{what} failed: {exc}")
            return False

    def save_checkpoint(self, cid: str) -> None:
        assert self.learner is not None and self.table is not None
        checkpoint.save(self.cfg.data_dir, checkpoint.Checkpoint(
            peer_id=self.table.me, round=self.round, model=self.learner.state(),
            optimizer=self.learner.optimizer.state_dict(), strategy=self.learner.strategy.state_dict(),
            peers=self.table.to_list(), last_cid=cid,
            privacy=self.learner.private.state_dict() if self.learner.private else {},
            best=self.learner.best_record(),
        ))
