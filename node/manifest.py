"""Joining by a swarm manifest (`join --manifest CID`, or the one the bootstrap offers): fetch it and
its initial weights, and check that this peer fits the swarm before it trains anything.

The manifest itself is `storage.manifest`; creating and showing one is `node.commands.manifest`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from node.config import NodeConfig
from node.learner import Learner, Shard, load_shard
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


def learner_for(cfg: NodeConfig, store: IpfsStore | LocalStore, device: torch.device) -> Learner:
    """A trainer's learning side; with `--manifest`, on the swarm's model, input shape, class order and
    initial weights (a checkpoint, when the node resumes, replaces the weights afterwards)."""
    if not cfg.manifest:
        return Learner(cfg, load_shard(cfg), device)
    try:
        start = fetch(store, cfg.manifest, timeout=cfg.fetch_timeout_s,
                      max_size=mib_to_bytes(cfg.max_snapshot_mb))
    except BadContent:
        raise
    except StoreError as exc:  # most often: this daemon reaches no daemon that holds it (yet)
        raise ManifestUnavailable(
            f"cannot fetch the swarm manifest {cfg.manifest} or its initial weights: {exc}. A private IPFS "
            "daemon (the default when no daemon answers at 127.0.0.1:5001) knows no other daemon before the "
            "node has joined: pass --ipfs-api of a daemon that holds the manifest or reaches one that does "
            "(ask the swarm's operator), or raise --fetch-timeout-s if it is only slow") from None
    cfg = configured(cfg, start.manifest)
    shard = load_shard(cfg, start.manifest)
    check_shard(cfg, shard, start.manifest)
    return Learner(cfg, shard, device, start.init)
