"""Joining by a swarm manifest (`join --manifest CID`, or the one the bootstrap offers): fetch it and
its initial weights (a private daemon through the daemons of peers met on gossip: it knows no other
before), and check that this peer fits the swarm before it trains anything.

The manifest itself is `storage.manifest`; creating and showing one is `node.commands.manifest`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from node.config import NodeConfig
from node.ipfs_workers import IpfsWorkers
from node.learner import Learner, Shard, load_shard
from p2p.announcement import PINNER, Announcement
from p2p.gossip import GossipService
from p2p.manifest_offer import ask_bootstraps
from storage import IpfsStore, LocalStore, SnapshotError, decode
from storage.defaults import mib_to_bytes
from storage.errors import BadContent, StoreError
from storage.manifest import MAX_BYTES, Manifest, ManifestError
from swarm.errors import ConfigError
from swarm.models import build_model

StateDict = dict[str, torch.Tensor]


class ManifestMismatch(ConfigError):
    """This peer's settings or data do not fit the swarm's manifest; the message says what to change."""


class ManifestUnavailable(ConfigError):
    """The manifest (or its initial weights) cannot be fetched from this node's IPFS daemon."""


class ManifestConflict(ManifestMismatch):
    """The manifest given differs from the one the swarm's bootstrap offers (or bootstraps disagree)."""


def swarm_manifest(manifest: str, swarm: str, bootstrap: list[str], emit: Callable[[str], None],
                   flag: str = "--manifest") -> str:
    """The manifest CID to join `swarm` by: `manifest` (the user's `flag`), the one its bootstraps offer,
    or both when they agree ("": none). A bootstrap that offers another than `manifest`, or two that
    offer different ones, raise ManifestConflict saying which to use; one that cannot be asked is
    reported through `emit` and passed over (a bootstrap only helps peers find each other)."""
    if not bootstrap:
        return manifest
    offers = ask_bootstraps(bootstrap, swarm)
    for pid, why in sorted(offers.failures.items()):
        emit(f"could not ask bootstrap …{pid[-8:]} for the swarm's manifest: {why}")
    by = {cid: sorted(pid for pid, c in offers.answers.items() if c == cid) for cid in offers.cids}
    if len(by) > 1:
        said = "; ".join(f"{cid} (bootstrap …{', …'.join(p[-8:] for p in pids)})" for cid, pids in by.items())
        raise ManifestConflict(f"the bootstraps of swarm {swarm} offer different manifests: {said}. Pass "
                               f"{flag} with the one the swarm's operator published, and tell the operator "
                               "of the other bootstrap")
    if not by:
        return manifest
    offered, pids = by.popitem()
    who = f"bootstrap …{pids[0][-8:]}"
    if manifest and manifest != offered:
        raise ManifestConflict(f"{flag} {manifest} differs from the manifest {offered} that {who} offers for "
                               f"swarm {swarm}: drop {flag} to use the bootstrap's, or pass {flag} "
                               f"{offered}; if yours is the right one, the bootstrap's operator must "
                               "restart it with --manifest set to yours")
    emit(f"swarm manifest {offered}: {'--manifest agrees with' if manifest else 'offered by'} {who}")
    return offered


@dataclass(frozen=True)
class SwarmStart:
    """What a manifest fixes for a joiner: the manifest, and its initial weights."""

    manifest: Manifest
    init: StateDict


def fetch(store: IpfsStore | LocalStore, cid: str, *, timeout: float, max_size: int) -> SwarmStart:
    """The manifest `cid` and its initial weights, checked against each other; raises ManifestError
    (or a StoreError when IPFS cannot get them in `timeout` seconds)."""
    manifest = Manifest.from_bytes(store.get(cid, max_size=MAX_BYTES, timeout=timeout))
    try:
        init = decode(store.get(manifest.init, max_size=max_size, timeout=timeout), max_size=max_size)
    except SnapshotError as exc:
        raise ManifestError(f"the manifest's initial weights {manifest.init} are not a snapshot: "
                            f"{exc}") from None
    channels = manifest.input_shape[0]
    model = build_model(manifest.model, in_channels=channels, num_classes=len(manifest.classes))
    try:
        model.load_state_dict(init.state_dict)
    except RuntimeError:  # torch's message lists every tensor; the user needs only the verdict
        raise ManifestError(f"the manifest's initial weights {manifest.init} are not those of a "
                            f"{manifest.model} with {channels} input channels and {len(manifest.classes)} "
                            "classes; the manifest is broken, ask the swarm's operator") from None
    return SwarmStart(manifest, init.state_dict)


def configured(cfg: NodeConfig, manifest: Manifest) -> NodeConfig:
    """`cfg` with the manifest's model; a different `--model` is refused."""
    if cfg.model and cfg.model != manifest.model:
        raise ManifestMismatch(f"--model {cfg.model} differs from the swarm manifest's model "
                               f"{manifest.model}: drop --model (the manifest chooses the model) or join "
                               "a swarm that trains this one")
    return replace(cfg, model=manifest.model)


def check_shard(cfg: NodeConfig, shard: Shard, manifest: Manifest) -> None:
    """Refuse data whose input shape is not the swarm's (an image folder is resized to it)."""
    got = tuple(int(n) for n in shard.data.train_x.shape[1:])
    if got != manifest.input_shape:
        want = "x".join(map(str, manifest.input_shape))
        raise ManifestMismatch(f"--dataset {cfg.dataset} gives {'x'.join(map(str, got))} inputs, the swarm "
                               f"manifest's model {manifest.model} takes {want}: use the data set the swarm "
                               "trains on, or your own images with --image-folder (resized to fit)")


# A private daemon knows no other daemon when the node starts: the manifest is asked for in short
# attempts, and between them the daemons of peers that announce themselves are dialled (a trainer
# fetched the manifest, a pinner pins what it sees), for at most WAIT_TIMEOUTS fetch timeouts.
ATTEMPT_S = 5.0
WAIT_TIMEOUTS = 3


@dataclass
class PeerDaemons:
    """While the manifest is awaited: dial the IPFS daemons of peers that announce themselves on gossip
    (with no DHT, a daemon finds blocks only at daemons it is connected to). Their announcements are
    kept in `met` for the peer table, which cannot exist before the manifest fixes the model."""

    gossip: GossipService
    workers: IpfsWorkers
    met: list[Announcement] = field(default_factory=list)

    def __call__(self) -> int:
        """Dial the newly announced; returns how many peers have been met so far."""
        for ann in self.gossip.drain():
            self.met.append(ann)
            if ann.role == PINNER:
                self.workers.meet_pinner(ann)
            else:
                self.workers.dial(ann)
        return len({ann.publisher for ann in self.met})


def fetch_meeting_peers(cfg: NodeConfig, store: IpfsStore | LocalStore, meet: Callable[[], int]
                        ) -> SwarmStart:
    """`fetch` of the manifest `cfg.manifest` in attempts of ATTEMPT_S seconds (blocks fetched stay in
    the daemon), calling `meet` between them, until WAIT_TIMEOUTS x `--fetch-timeout-s` have passed."""
    deadline = time.monotonic() + WAIT_TIMEOUTS * cfg.fetch_timeout_s
    met = 0
    while True:
        try:
            return fetch(store, cfg.manifest, timeout=min(ATTEMPT_S, cfg.fetch_timeout_s),
                         max_size=mib_to_bytes(cfg.max_snapshot_mb))
        except BadContent:
            raise
        except StoreError as exc:
            if time.monotonic() >= deadline:
                waited = WAIT_TIMEOUTS * cfg.fetch_timeout_s
                raise ManifestUnavailable(
                    f"cannot fetch the swarm manifest {cfg.manifest} or its initial weights: {exc}. In "
                    f"{waited:.0f} s this node met {met} peer(s) on gossip and none of their IPFS daemons "
                    "gave it: check --bootstrap (a peer of the swarm must be running), pass --ipfs-api of a "
                    "daemon that holds the manifest (ask the swarm's operator), or raise --fetch-timeout-s "
                    "if the swarm is only slow") from None
        met = meet()


def learner_for(cfg: NodeConfig, store: IpfsStore | LocalStore, device: torch.device,
                meet: Callable[[], int]) -> Learner:
    """A trainer's learning side; with `--manifest`, on the swarm's model, input shape, class order and
    initial weights, fetched through the daemons `meet` dials (a checkpoint, when the node resumes,
    replaces the weights afterwards)."""
    if not cfg.manifest:
        return Learner(cfg, load_shard(cfg), device)
    start = fetch_meeting_peers(cfg, store, meet)
    cfg = configured(cfg, start.manifest)
    shard = load_shard(cfg, start.manifest)
    check_shard(cfg, shard, start.manifest)
    return Learner(cfg, shard, device, start.init)
