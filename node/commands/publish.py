"""`swarm-node publish FILE`: put an existing snapshot file in IPFS (pinned) and announce it to a swarm.

Seeds a swarm with a pretrained model. Prints the CID on stdout. The announcement is signed with the
identity in --data-dir (the node's own when it is the node's data dir). Peers take a snapshot only
from the peer its meta `peer_id` names, so a snapshot without one (made with `storage.encode`) is
stamped with that identity before it goes to IPFS (its CID is then that of the stamped bytes), and a
snapshot of another peer is refused.

A seed is announced with the fingerprint of its class order, as a trainer's snapshots are, so peers
merge it only when output k means the same class for them (node/peer_table.py): the order of the
swarm's manifest (`--manifest`, else the one the bootstrap offers; the snapshot must then be the
manifest's model), or of `--dataset` / `--classes` in a swarm without one. A seed whose class order
is unknown is refused: it would be merged by peers of any order.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from p2p.announcement import MAX_ADDR_LEN, MAX_ADDRS, MAX_PARENTS, Announcement, AnnouncementError
from p2p.connections import BootstrapAddrError
from p2p.gossip import GossipConfig, GossipError, GossipService
from p2p.identity import KEY_FILE, IdentityError, load_or_create, peer_id_of
from storage.cid import normalize_cid
from storage.defaults import DEFAULT_IPFS_API, DEFAULT_MAX_MB, mib_to_bytes
from storage.errors import InvalidCid
from storage.manifest import Manifest, ManifestError, labels_fingerprint
from swarm.errors import ConfigError

if TYPE_CHECKING:
    from storage import IpfsStore

log = logging.getLogger("swarm-node.publish")
SEED_ROLE = "seed"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="snapshot file (as written by swarm-node / storage.encode)")
    parser.add_argument("--swarm", required=True, help="swarm id to announce to")
    parser.add_argument("--bootstrap", action="append", default=[], metavar="MULTIADDR",
                        help="bootstrap peer, /ip4/../tcp/N/p2p/ID (repeatable; default: $SWARM_BOOTSTRAP, "
                        "comma-separated)")
    parser.add_argument("--ipfs-api", default=DEFAULT_IPFS_API, help="IPFS (Kubo RPC) API multiaddr")
    parser.add_argument("--data-dir", type=Path, default=Path("swarm-data"), help="holds the libp2p identity")
    parser.add_argument("--listen", default="/ip4/127.0.0.1/tcp/0")
    parser.add_argument("--round", type=int, help="round to announce (default: the snapshot's meta, else 0)")
    parser.add_argument("--wait", type=float, default=15.0, help="seconds to wait for a swarm peer (15)")
    parser.add_argument("--max-mb", type=float, default=float(DEFAULT_MAX_MB),
                        help=f"refuse bigger snapshot files ({DEFAULT_MAX_MB})")
    parser.add_argument("--manifest", default="", metavar="CID",
                        help="the swarm's manifest (default: the one the bootstrap offers): the seed is "
                        "announced with its class order, and must be its model")
    parser.add_argument("--dataset", metavar="NAME", help="in a swarm without a manifest: the snapshot's "
                        "outputs are the classes of this data set (fashion-mnist, digits, cifar10), in its "
                        "order")
    parser.add_argument("--classes", metavar="A,B,...", help="in a swarm without a manifest: the class "
                        "names of the snapshot's outputs, in output order, comma-separated")
    parser.add_argument("--fetch-timeout", type=float, default=20.0,
                        help="seconds to fetch the manifest from IPFS (20)")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
    import storage  # lazily: it imports torch, which `swarm-node --help` must not pay for

    max_size = mib_to_bytes(args.max_mb)
    try:
        if args.file.stat().st_size > max_size:
            return _fail(f"{args.file} is larger than --max-mb {args.max_mb:g}")
        data = args.file.read_bytes()
        snap = storage.decode(data, max_size=max_size)
    except OSError as e:
        return _fail(f"cannot read {args.file}: {e.strerror}")
    except storage.SnapshotError as e:
        return _fail(f"{args.file} is not a valid snapshot: {e}")

    bootstrap = args.bootstrap or [a for a in os.environ.get("SWARM_BOOTSTRAP", "").split(",") if a]
    try:
        store = storage.IpfsStore(args.ipfs_api)
        # Before anything is put in IPFS: a seed whose class order is unknown must not be offered.
        labels = seed_labels(args, store, snap.schema, bootstrap)
        data = stamped(data, snap.meta, peer_id_of(load_or_create(args.data_dir / KEY_FILE)), args.file,
                       max_size)
        cid = store.put(data)
        store.pin(cid)
        addrs = [a for a in store.swarm_addrs() if len(a) <= MAX_ADDR_LEN][:MAX_ADDRS]
    except (ConfigError, BootstrapAddrError, IdentityError) as e:  # SeedLabelsError, ManifestConflict too
        return _fail(str(e))
    except ManifestError as e:
        return _fail(f"the swarm's manifest: {e}")
    except storage.StoreError as e:
        return _fail(f"IPFS at {args.ipfs_api}: {e}")
    print(cid, flush=True)

    meta = snap.meta
    try:
        svc = GossipService(GossipConfig(swarm_id=args.swarm, data_dir=args.data_dir, listen=args.listen,
                                         bootstrap=bootstrap))
        svc.start()
    except (GossipError, IdentityError, BootstrapAddrError, AnnouncementError) as e:
        return _fail(str(e))
    try:
        rnd = args.round if args.round is not None else _int(meta, "round")
        ann = Announcement(
            cid=cid, publisher=svc.peer_id, round=rnd,
            schema=snap.schema, samples=_int(meta, "samples"), loss=_float(meta, "train_loss"),
            encoding=snap.encoding, size=len(data), timestamp=time.time(),
            parents=tuple(p for p in meta.get("parents", []) if isinstance(p, str))[:MAX_PARENTS],
            dp_epsilon=_float(meta, "dp_epsilon"), role=SEED_ROLE, addrs=tuple(addrs), labels=labels)
        if not _wait(lambda: svc.stats().get("topic_peers", 0) > 0, args.wait):
            return _fail(f"no peer of swarm {args.swarm} reachable within {args.wait:g} s; {cid} is pinned "
                         "in IPFS, run publish again when peers are up")
        svc.publish(ann)
        if not _wait(lambda: svc.stats().get("published", 0) > 0, 5.0):
            return _fail("the announcement could not be sent; see the log above")
        time.sleep(1.0)  # let the frames leave before the host closes
    except AnnouncementError as e:
        return _fail(f"cannot announce {args.file}: {e}")
    finally:
        svc.stop()
    return 0


class ForeignSnapshotError(ConfigError):
    """The snapshot's meta names another peer as its publisher: peers would refuse it from us."""


def stamped(data: bytes, meta: dict[str, Any], publisher: str, path: Path, max_size: int) -> bytes:
    """`data` with `publisher` as its meta `peer_id`. A node takes a snapshot only from the peer its meta
    names (node/downloads.py: nobody may pass another's model off as their own), so a seed file made
    outside a node (no `peer_id`) is stamped; one of another peer is refused."""
    from storage.snapshot import with_meta

    owner = meta.get("peer_id")
    if owner == publisher:
        return data
    if owner is not None:
        raise ForeignSnapshotError(
            f"{path} is a snapshot of peer {owner}, and this --data-dir's identity is {publisher}: peers "
            "take a snapshot only from the peer it names; publish it with that peer's --data-dir, or "
            "re-encode its weights (storage.encode) without a peer_id to seed them as yours")
    return with_meta(data, {"peer_id": publisher}, max_size=max_size)


class SeedLabelsError(ConfigError):
    """The class order of a seed is unknown, or contradicts the swarm's manifest or the snapshot."""


def seed_labels(args: argparse.Namespace, store: IpfsStore, schema: str, bootstrap: list[str]) -> str:
    """The labels fingerprint to announce the seed with (see the module doc)."""
    from node.manifest import swarm_manifest  # lazily: it imports torch

    given = _given_classes(args)
    try:
        given_cid = normalize_cid(args.manifest) if args.manifest else ""
    except InvalidCid as e:
        raise SeedLabelsError(f"--manifest {args.manifest}: {e}") from None
    manifest_cid = swarm_manifest(given_cid, args.swarm, bootstrap, lambda line: log.warning("%s", line))
    if not manifest_cid:
        if given is None:
            raise SeedLabelsError(
                f"which class each output of {args.file} means is unknown, and no bootstrap of swarm "
                f"{args.swarm} offers a manifest: pass --manifest CID (the swarm's), or --dataset NAME or "
                "--classes A,B,... in output order (peers merge a seed only when its class order is theirs)")
        return labels_fingerprint(given)
    manifest = _fetch_manifest(store, manifest_cid, args.fetch_timeout)
    if given is not None and labels_fingerprint(given) != manifest.labels:
        raise SeedLabelsError(f"the classes given ({', '.join(given)}) are not those of the swarm's manifest "
                              f"{manifest_cid} ({', '.join(manifest.classes)}) in that order: drop "
                              "--dataset/--classes, or publish to the swarm they belong to")
    from storage import schema_fingerprint
    from swarm.models import build_model

    model = build_model(manifest.model, in_channels=manifest.input_shape[0],
                        num_classes=len(manifest.classes))
    if schema_fingerprint(model.state_dict()) != schema:
        raise SeedLabelsError(f"{args.file} is not a {manifest.model} with {manifest.input_shape[0]} input "
                              f"channel(s) and {len(manifest.classes)} classes, the model of the swarm's "
                              f"manifest {manifest_cid}: its peers would skip it; publish a snapshot of that "
                              "model (e.g. a node's of this swarm)")
    return manifest.labels


def _given_classes(args: argparse.Namespace) -> tuple[str, ...] | None:
    if args.dataset and args.classes:
        raise SeedLabelsError("give --dataset or --classes, not both")
    if args.dataset:
        from swarm.data import INFO  # lazily: it imports torch

        if args.dataset not in INFO:
            raise SeedLabelsError(f"--dataset {args.dataset}: not a known data set; use one of "
                                  f"{', '.join(sorted(INFO))}, or --classes")
        return INFO[args.dataset].classes
    if args.classes:
        names = tuple(name.strip() for name in args.classes.split(","))
        if len(names) < 2 or not all(names) or len(set(names)) != len(names):
            raise SeedLabelsError(f"--classes {args.classes!r}: give at least two distinct, non-empty class "
                                  "names, comma-separated, in the order of the model's outputs")
        return names
    return None


def _fetch_manifest(store: IpfsStore, cid: str, timeout: float) -> Manifest:
    from storage.manifest import MAX_BYTES

    return Manifest.from_bytes(store.get(cid, max_size=MAX_BYTES, timeout=timeout))


def _wait(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _int(meta: dict, key: str) -> int:
    value = meta.get(key, 0)
    return value if type(value) is int and value >= 0 else 0


def _float(meta: dict, key: str) -> float | None:
    value = meta.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _fail(message: str) -> int:
    print(f"swarm-node publish: {message}", file=sys.stderr)
    return 1
