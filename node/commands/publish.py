"""`swarm-node publish FILE`: put an existing snapshot file in IPFS (pinned) and announce it to a swarm.

Seeds a swarm with a pretrained model. Prints the CID on stdout. The announcement is signed with the
identity in --data-dir (the node's own when it is the node's data dir).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from p2p.announcement import MAX_ADDR_LEN, MAX_ADDRS, MAX_PARENTS, Announcement, AnnouncementError
from p2p.connections import BootstrapAddrError
from p2p.gossip import GossipConfig, GossipError, GossipService
from p2p.identity import IdentityError
from storage.defaults import DEFAULT_IPFS_API, DEFAULT_MAX_MB, mib_to_bytes

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

    try:
        store = storage.IpfsStore(args.ipfs_api)
        cid = store.put(data)
        store.pin(cid)
        addrs = [a for a in store.swarm_addrs() if len(a) <= MAX_ADDR_LEN][:MAX_ADDRS]
    except storage.StoreError as e:
        return _fail(f"IPFS at {args.ipfs_api}: {e}")
    print(cid, flush=True)

    meta = snap.meta
    try:
        bootstrap = args.bootstrap or [a for a in os.environ.get("SWARM_BOOTSTRAP", "").split(",") if a]
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
            dp_epsilon=_float(meta, "dp_epsilon"), role=SEED_ROLE, addrs=tuple(addrs))
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
