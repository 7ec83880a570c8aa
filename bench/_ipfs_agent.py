"""One private IPFS daemon driven over JSON lines on stdin/stdout (for bench/across_hosts.py).

An IPFS API listens on 127.0.0.1 of its own network namespace only, so a bench in another namespace
cannot call it: it starts this agent inside the namespace instead. The agent starts the daemon, prints
{"peer_id", "addrs"} (the addresses a node would announce), then answers one line per command:

    {"op": "put", "size": N}        -> {"cid", "s"}   N random bytes, so no block is ever shared
    {"op": "connect", "addr": A}    -> {"s"}
    {"op": "pin", "cid": C}         -> {"s"}          fetches C first if the daemon lacks it
    {"op": "get", "cid": C}         -> {"s", "bytes"}
    {"op": "id"}                    -> {"peer_id", "addrs"}

A failed command answers {"error": message}. End of stdin (or SIGTERM) stops the daemon.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.ipfs_setup import announced_addrs
from storage import IpfsDaemon, IpfsStore, StoreError

TIMEOUT_S = 60.0  # a fetch that takes longer is a failure of the path, not a figure

Reply = dict[str, Any]


def identity(store: IpfsStore, daemon: IpfsDaemon) -> Reply:
    return {"peer_id": daemon.peer_id, "addrs": announced_addrs(store, daemon)}


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def handle(cmd: Reply, store: IpfsStore, daemon: IpfsDaemon) -> Reply:
    op = cmd.get("op")
    if op == "put":
        data = os.urandom(int(cmd["size"]))
        started = time.perf_counter()
        cid = store.put(data)
        return {"cid": cid, "s": time.perf_counter() - started}
    if op == "connect":
        return {"s": timed(lambda: store.connect(cmd["addr"], TIMEOUT_S))}
    if op == "pin":
        return {"s": timed(lambda: store.pin(cmd["cid"], TIMEOUT_S))}
    if op == "get":
        started = time.perf_counter()
        data = store.get(cmd["cid"], timeout=TIMEOUT_S)
        return {"s": time.perf_counter() - started, "bytes": len(data)}
    if op == "id":
        return identity(store, daemon)
    return {"error": f"unknown op {op!r}"}


def serve(swarm_host: str, repo: Path) -> None:
    with IpfsDaemon.start(repo, swarm_host=swarm_host) as daemon:
        store = IpfsStore(daemon.api_multiaddr, timeout=TIMEOUT_S)
        print(json.dumps(identity(store, daemon)), flush=True)
        for line in sys.stdin:
            try:
                reply = handle(json.loads(line), store, daemon)
            except (StoreError, ValueError, KeyError) as exc:
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(reply), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--swarm-host", default="127.0.0.1", help="where the daemon's swarm port listens")
    ap.add_argument("--repo", type=Path, required=True, help="the daemon's repo directory")
    args = ap.parse_args()
    # SystemExit unwinds the `with`, so a terminated agent still stops its daemon.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(args.swarm_host, args.repo)


if __name__ == "__main__":
    main()
