"""A bare gossip peer for tests, benchmarks, debugging: `python tests/support/gossip_peer.py --swarm ID ...`.

Prints JSON lines on stdout: {"event": "ready", ...} once listening, {"event": "recv", ...} per received
announcement. Reads JSON commands on stdin, one a line: {"cmd": "publish", "round": N} (optional "cid",
"timestamp") and {"cmd": "state"}. Exits on EOF or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from multiformats import CID, multihash

from p2p.announcement import Announcement, AnnouncementError
from p2p.gossip import GossipConfig, GossipError, GossipService
from p2p.identity import IdentityError
from p2p.validator import ValidationPolicy

_out_lock = threading.Lock()


def emit(record: dict[str, Any]) -> None:
    with _out_lock:
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()


def cid_for(data: bytes) -> str:
    """A CIDv1 (raw, sha2-256) of `data`, so test announcements carry well-formed CIDs."""
    return str(CID("base32", 1, "raw", multihash.digest(data, "sha2-256")))


def _on_announcement(ann: Announcement) -> None:
    emit({"event": "recv", "publisher": ann.publisher, "cid": ann.cid, "round": ann.round,
          "sent": ann.timestamp, "t": time.time(), "labels": ann.labels})


def _handle(svc: GossipService, line: str) -> None:
    cmd = json.loads(line)
    if cmd.get("cmd") == "publish":
        rnd = int(cmd.get("round", 0))
        svc.publish(Announcement(
            cid=cmd.get("cid") or cid_for(f"{svc.peer_id}/{rnd}".encode()), publisher=svc.peer_id,
            round=rnd, schema="test", samples=1, loss=0.5, encoding="fp32", size=1,
            timestamp=float(cmd.get("timestamp", time.time()))))
    elif cmd.get("cmd") == "state":
        emit({"event": "state", "peer_id": svc.peer_id, "peers": svc.peers(), "stats": svc.stats()})
    else:
        emit({"event": "error", "error": f"unknown command {line.strip()[:80]}"})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m support.gossip_peer", description=__doc__)
    p.add_argument("--swarm", required=True)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--listen", default="/ip4/127.0.0.1/tcp/0")
    p.add_argument("--bootstrap", action="append", default=[])
    p.add_argument("--peer", action="append", default=[], help="static peer to keep connected (repeatable)")
    p.add_argument("--target-peers", type=int, default=6)
    p.add_argument("--rate", type=float, default=ValidationPolicy.rate_per_s, help="per-publisher msgs/s")
    p.add_argument("--burst", type=int, default=ValidationPolicy.burst)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    svc = GossipService(GossipConfig(
        swarm_id=args.swarm, data_dir=args.data_dir, listen=args.listen, bootstrap=args.bootstrap,
        static_peers=args.peer, target_peers=args.target_peers,
        policy=ValidationPolicy(rate_per_s=args.rate, burst=args.burst),
        on_announcement=_on_announcement))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        svc.start()
    except (GossipError, IdentityError) as e:
        print(f"gossip_peer: {e}", file=sys.stderr)
        return 1
    emit({"event": "ready", "peer_id": svc.peer_id, "addrs": svc.addrs})
    try:
        for line in sys.stdin:
            if line.strip():
                try:
                    _handle(svc, line)
                except (ValueError, AnnouncementError, GossipError) as e:
                    emit({"event": "error", "error": str(e)})
    finally:
        svc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
