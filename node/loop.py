"""The node loop: fold -> choose -> (train | follow the chosen neighbours' newest snapshots) -> judge
-> publish -> wait for this round's models -> score -> merge -> checkpoint. The download side, the
publishing side and the pinner role have their own modules (downloads, publisher, pinner); the round
itself is here, and it talks to the learning side only through `Learner`'s methods.

Asynchronous by design: no global rounds or barriers. A round is this node's own step; peers run at
their own pace and announce whenever they have something. A round chooses its neighbours first, then
trains on a worker thread while the loop keeps folding announcements and downloading the newest
snapshot each chosen neighbour announces, so the round waits only for downloads that training and
publishing did not hide.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

from node import checkpoint
from node.config import NodeConfig
from node.downloads import Downloads, Exchange
from node.intake import Intake
from node.ipfs_setup import announced_addrs, open_ipfs
from node.ipfs_workers import IpfsWorkers
from node.learner import Learner
from node.manifest import PeerDaemons, learner_for, swarm_manifest
from node.merging import Merging
from node.peer_table import PeerTable
from node.pinner import Pinner
from node.publisher import Publisher
from node.roles import pick_role
from node.status import STATUS_FILE, NodeStatus, short_id
from node.timing import Timer
from p2p.addresses import WILDCARD_IP4, is_loopback
from p2p.announcement import MAX_PARENTS
from p2p.gossip import GossipConfig, GossipService
from storage import IpfsDaemon, StoreError, schema_fingerprint
from storage.atomic import write_atomic
from storage.daemon import LOOPBACK
from storage.defaults import mib_to_bytes
from swarm.models import found_devices, pick_device
from swarm.peer_privacy import eligible
from swarm.privacy import BudgetExhausted
from swarm.strategies import Candidate, PeerView
from swarm.training import TrainStats

FOLLOW_EVERY_S = 0.1  # while training: how often to look for newer snapshots of the chosen neighbours


class Node:
    """One peer. `run()` blocks until the rounds are done or `stop` is set; returns an exit code."""

    def __init__(self, cfg: NodeConfig, *, echo_json: bool = False) -> None:
        self.cfg, self.echo_json = cfg, echo_json
        self.status = NodeStatus(swarm=cfg.swarm, role=cfg.role, rounds=cfg.rounds or None, pid=os.getpid())
        self.stop = threading.Event()
        self.daemon: IpfsDaemon | None = None
        self.gossip: GossipService | None = None
        self.learner: Learner | None = None
        self.table: PeerTable | None = None
        self.workers: IpfsWorkers | None = None
        self.downloads: Downloads | None = None
        self.publisher: Publisher | None = None
        self.pinner: Pinner | None = None
        self.merging: Merging | None = None
        self.intake: Intake | None = None
        # Training runs here so the loop can follow announcements meanwhile; only `train` touches it.
        self.train_pool = ThreadPoolExecutor(1, thread_name_prefix="train")
        self.round = self.merges = 0
        self.timer = Timer()
        self.serving = False  # a DP trainer whose budget is spent: keeps its snapshots available

    # -- events and status ---------------------------------------------------------------------------

    def event(self, message: str, /, **fields: object) -> None:
        self.status.event(message)
        if self.echo_json:
            print(json.dumps({"t": round(time.time(), 3), "peer": short_id(self.status.peer_id),
                              "event": message, **fields}), flush=True)
        self.publish_status()

    def publish_status(self) -> None:
        self.status.updated_at = time.time()
        if self.gossip is not None:
            self.status.gossip_peers = len(self.gossip.peers())
        if self.table is not None:
            self.status.peers = [r.row() for r in self.table.records.values()]
        if self.workers is not None:
            self.status.pinners = len(self.workers.pinners)
        write_atomic(self.cfg.data_dir / STATUS_FILE, self.status.to_json().encode())

    # -- set-up and tear-down ------------------------------------------------------------------------

    def start(self) -> None:
        cfg = self.cfg
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(cfg.data_dir, 0o700)
        choice = pick_role(cfg)
        self.cfg = cfg = dataclasses.replace(cfg, role=choice.role)
        self.status.role = choice.role
        self.event(f"role {choice.role}: {choice.why}", role=choice.role)
        # The daemon's swarm port is reachable from where the node's gossip is.
        swarm_host = LOOPBACK if is_loopback(cfg.listen) else WILDCARD_IP4
        store, self.daemon, how = open_ipfs(cfg.ipfs_api, cfg.data_dir, swarm_host, cfg.ipfs_swarm_port)
        self.workers = IpfsWorkers(store, cfg.fetch_timeout_s, self.event)
        self.status.ipfs = "ok"
        self.status.ipfs_api = store.api_multiaddr
        self.status.ipfs_addrs = announced_addrs(store, self.daemon, cfg.ipfs_announce_addr)
        self.event(how)
        self.gossip = GossipService(GossipConfig(swarm_id=cfg.swarm, data_dir=cfg.data_dir, listen=cfg.listen,
                                                 announce=list(cfg.announce_addr),
                                                 bootstrap=list(cfg.bootstrap)))
        self.gossip.start()
        self.status.peer_id = self.gossip.peer_id
        self.status.addrs = self.gossip.addrs
        met = PeerDaemons(self.gossip, self.workers)  # the manifest may be only at peers' daemons
        if cfg.role == "trainer":
            # The bootstrap may name the swarm's manifest: then no joiner has to be told its CID.
            manifest = swarm_manifest(cfg.manifest, cfg.swarm, list(cfg.bootstrap), self.event)
            self.cfg = cfg = dataclasses.replace(cfg, manifest=manifest)
            device = pick_device(cfg.device)
            self.status.device = str(device)
            how = "picked by --device auto (cuda > mps > cpu)" if cfg.device == "auto" else "set by --device"
            self.event(f"device {device}: {how}; found {', '.join(found_devices())}", device=str(device))
            self.learner = learner_for(cfg, store, device, met)
            for note in self.learner.notes():
                self.event(note)
        schema = schema_fingerprint(self.learner.state()) if self.learner else ""
        self.table = PeerTable(self.gossip.peer_id, schema, self.learner.labels if self.learner else "")
        self.intake = Intake(self.gossip, self.table, self.workers, self.event, met.met)
        self.downloads = Downloads(self.workers, self.table, max_size=mib_to_bytes(cfg.max_snapshot_mb),
                                   status=self.status, timer=self.timer, emit=self.event)
        self.publisher = Publisher(self.workers, self.gossip, encoding=cfg.encoding, role=cfg.role,
                                   status=self.status, timer=self.timer, data_dir=cfg.data_dir)
        if self.learner is not None:
            self.merging = Merging(cfg, self.learner, self.table, self.publisher, self.status, self.timer,
                                   self.event)
        if cfg.role == "pinner":
            self.pinner = Pinner(self.workers, self.event)
        self._resume()
        self.status.state = "running"
        self.event(f"joined swarm {cfg.swarm} as {cfg.role} on {self.gossip.addrs[0]}")

    def _resume(self) -> None:
        saved = checkpoint.load(self.cfg.data_dir)
        if saved is None:
            return
        assert self.table is not None and self.publisher is not None
        self.round = saved.round
        self.publisher.own_cids = [saved.last_cid] if saved.last_cid else []
        self.publisher.restore_merge(saved.merge)
        self.table.load_list(saved.peers)
        if self.learner is not None:
            self.learner.restore(vars(saved))
            self.status.epsilon = self.learner.epsilon
        self.status.round = self.round
        self.event(f"resumed from checkpoint at round {self.round}")

    def close(self) -> None:
        self.status.state = "stopped"
        if self.workers is not None:
            self.workers.shutdown()
        self.train_pool.shutdown(wait=False, cancel_futures=True)
        if self.gossip is not None:
            if self.publisher is not None:
                self.publisher.say_goodbye()
            self.gossip.stop()
        if self.daemon is not None:
            self.daemon.stop()
        self.event("stopped")

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
                acc, which = self.learner.reported()
                self.status.state = "done"
                self.event(f"finished {self.round} rounds, test accuracy {acc:.3f} ({which})", test_acc=acc,
                           bytes_in=self.status.bytes_in, bytes_out=self.status.bytes_out,
                           merges=self.merges, cluster=self.learner.cluster)
            return 0
        finally:
            self.close()

    def trainer_round(self, fresh_until: float) -> None:
        """One round: train, judge, publish, then merge the chosen neighbours' newest models (waiting
        until `fresh_until`, at most, for them to publish this round's)."""
        assert self.learner is not None and self.publisher is not None and self.intake is not None
        assert self.table is not None
        self.round += 1
        self.status.round = self.round
        timer = self.timer
        timer.reset()
        self.intake.fold()
        exchange = self.start_exchange()
        try:
            with timer("train"):
                stats = self.train_following(exchange, self.cfg.max_steps_per_round or None)
        except BudgetExhausted as exc:
            self.round -= 1
            self.serving = True
            self.status.state = "serving (privacy budget spent)"
            self.event(str(exc))
            return
        self.status.epsilon = self.learner.epsilon
        self.learner.prune(self.round)
        with timer("evaluate"):
            _, val_acc = self.learner.judge(self.round)
        self.status.loss, self.status.val_acc = stats.loss, val_acc
        try:
            ann = self.publisher.publish(self.learner, self.round, stats.loss,
                                         self.table.merged_cids(MAX_PARENTS), self.status.ipfs_addrs)
        except StoreError as exc:
            # IPFS is down (its daemon died or restarts): keep training and merging, publish next round
            self.event(f"round {self.round}: trained {stats.steps} steps, val acc {val_acc:.3f}, "
                       f"not published: {exc}", round=self.round, loss=stats.loss, val_acc=val_acc)
        else:
            self.event(f"round {self.round}: trained {stats.steps} steps, loss {stats.loss:.4f}, "
                       f"val acc {val_acc:.3f}, published {ann.cid[-10:]}",
                       round=self.round, loss=stats.loss, val_acc=val_acc, cid=ann.cid,
                       parents=list(ann.parents), density=self.learner.density)
        self.await_fresh(exchange, fresh_until)  # not timed: the loop would sleep this time away
        self.finish_exchange(exchange)
        with timer("checkpoint"):
            checkpoint.save(self.cfg.data_dir, checkpoint.Checkpoint(
                peer_id=self.table.me, round=self.round, peers=self.table.to_list(),
                last_cid=self.publisher.last_cid, merge=self.publisher.saved_merge(), **self.learner.saved()))
        self.event(f"round {self.round} took {sum(timer.spent.values()):.2f} s",
                   round_timings={k: round(v, 5) for k, v in timer.spent.items()})
        if self.learner.best.stalled(self.round):  # --patience, as the simulator's early stopping
            self.serving = True
            self.status.state = "serving (validation loss stopped improving)"
            self.event(f"no better validation loss for {self.cfg.patience} rounds: stopped training, "
                       "still serving my snapshots")

    def start_exchange(self) -> Exchange:
        """Choose peers with the strategy and start downloading their newest snapshots."""
        assert self.learner is not None and self.table is not None and self.downloads is not None
        view = PeerView(me=self.table.me, round=self.round, my_samples=self.learner.samples,
                        candidates=[Candidate(r.peer_id, r.announcement.samples, r.announcement.round,
                                              epsilon=r.announcement.dp_epsilon)
                                    for r in self.table.candidates()])
        # Peers over --max-peer-epsilon by their announcements are never chosen, so never fetched.
        view = eligible(view, self.cfg.max_peer_epsilon)
        return self.downloads.start(view, self.learner.choose(view))

    def train_following(self, exchange: Exchange, max_steps: int | None) -> TrainStats:
        """Train on the training thread; meanwhile fold announcements and follow the exchange."""
        assert self.learner is not None and self.downloads is not None and self.intake is not None
        training = self.train_pool.submit(self.learner.train, max_steps)
        while not wait([training], timeout=FOLLOW_EVERY_S).done:
            self.intake.fold()
            self.downloads.follow(exchange)
        self.intake.fold()
        self.downloads.follow(exchange)
        return training.result()

    def await_fresh(self, exchange: Exchange, deadline: float) -> None:
        """Follow the chosen neighbours until each has announced a model of this round, or `deadline`
        (the round's minimum length, which the loop would otherwise sleep away after merging) passes:
        merging a model a round older than mine costs a large part of the gain (docs/results.md)."""
        assert self.table is not None and self.downloads is not None and self.intake is not None
        while not self.stop.is_set() and time.monotonic() < deadline:
            records = [self.table.records.get(p) for p in exchange.chosen]
            if all(r is None or r.announcement.round >= self.round for r in records):
                return
            self.stop.wait(min(FOLLOW_EVERY_S, max(deadline - time.monotonic(), 0)))
            self.intake.fold()
            self.downloads.follow(exchange)

    def finish_exchange(self, exchange: Exchange) -> None:
        """Wait for the downloads, then score and merge what arrived and passed the checks."""
        assert self.merging is not None and self.downloads is not None
        self.merges += self.merging.merge(self.downloads.collect(exchange), exchange.view, self.round)

    def follow(self) -> None:
        """Pinners and observers: take in announcements; pinners keep recent snapshots pinned."""
        assert self.intake is not None and self.gossip is not None
        fresh = self.intake.follow()
        if self.pinner is not None:
            self.pinner.announce_presence(self.gossip, self.status.ipfs_addrs)
            self.pinner.pin_newest(fresh)
        self.publish_status()
