"""Which IPFS daemon a node uses: the one the user named, a local Kubo that answers, or its own.

`--ipfs-api private` (what the demo uses) always starts a private loopback daemon in the data dir.
On Linux the daemon dies with its node (`storage.daemon.die_with_parent`). Elsewhere, a private
daemon left running by a killed node (it runs in its own session) is stopped when the node restarts,
so the repo, its identity and its pins carry over to the new life (on Linux too, as a second guard).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from p2p.addresses import advertised
from p2p.announcement import MAX_ADDRS
from storage import IpfsDaemon, IpfsStore, StoreError, StoreUnavailable
from storage.daemon import LOOPBACK
from storage.defaults import DEFAULT_IPFS_API

log = logging.getLogger(__name__)
PRIVATE = "private"
PID_FILE = "daemon.pid"


def private_daemon_pid(data_dir: Path) -> int | None:
    """The pid (and process group) of the private daemon started in `data_dir`, if one was recorded."""
    try:
        return int((Path(data_dir) / "ipfs" / PID_FILE).read_text())
    except (OSError, ValueError):
        return None


def stop_leftover_daemon(data_dir: Path) -> None:
    """Stop a private daemon a killed node left running in `data_dir` (no-op when there is none)."""
    pid = private_daemon_pid(data_dir)
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGCONT)  # a stopped (SIGSTOPped) daemon cannot act on SIGTERM
        os.killpg(pid, signal.SIGTERM)
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)
        os.killpg(pid, signal.SIGKILL)
    (Path(data_dir) / "ipfs" / PID_FILE).unlink(missing_ok=True)


def start_private(data_dir: Path, swarm_host: str = LOOPBACK, swarm_port: int = 0) -> IpfsDaemon:
    """Start the private daemon of `data_dir`, stopping one a killed node left there first.

    On Linux the daemon gets SIGTERM when the calling *thread* exits. `Node.start` calls this (via
    `open_ipfs`) on the thread that runs `Node.run`: the main thread of a headless `join`, the "node"
    thread under the TUI; both live until the node has stopped its daemon, so that is the right thread.
    """
    repo = Path(data_dir) / "ipfs"
    repo.mkdir(parents=True, exist_ok=True)
    stop_leftover_daemon(data_dir)
    daemon = IpfsDaemon.start(repo, swarm_host=swarm_host, swarm_port=swarm_port)
    if daemon.proc is not None:
        (repo / PID_FILE).write_text(str(daemon.proc.pid))
    return daemon


def open_ipfs(api: str, data_dir: Path, swarm_host: str = LOOPBACK, swarm_port: int = 0
              ) -> tuple[IpfsStore, IpfsDaemon | None, str]:
    """The store to use, the daemon we started (if any, its swarm port on `swarm_host`), and one line
    saying which it is."""
    if api and api != PRIVATE:
        store = IpfsStore(api)
        store.peer_id()  # raises StoreUnavailable with the "start `ipfs daemon`" advice
        return store, None, f"using IPFS daemon at {api}"
    if not api:
        try:
            store = IpfsStore(DEFAULT_IPFS_API, retries=0, timeout=2.0)
            store.peer_id()
            return IpfsStore(DEFAULT_IPFS_API), None, f"using the IPFS daemon at {DEFAULT_IPFS_API}"
        except StoreUnavailable:
            pass
    daemon = start_private(data_dir, swarm_host, swarm_port)
    return (IpfsStore(daemon.api_multiaddr), daemon,
            f"started a private IPFS daemon ({daemon.kind}) at {daemon.api_multiaddr}, swarm port "
            f"{daemon.swarm_listen}")


def announced_addrs(store: IpfsStore, daemon: IpfsDaemon | None, announce: Sequence[str] = ()) -> list[str]:
    """The IPFS addresses a node puts in its announcements, so fetchers can dial its daemon directly:
    `announce` (a forwarded port), else where the daemon listens (`p2p.addresses.advertised`)."""
    try:
        peer = daemon.peer_id if daemon is not None else store.peer_id()
        listening = [daemon.swarm_listen] if daemon is not None else \
            [a.split("/p2p/")[0] for a in store.swarm_addrs() if a.startswith("/ip4/")]
    except StoreError:
        return []
    return [f"{a}/p2p/{peer}" for a in map(str, advertised(listening, announce))][:MAX_ADDRS]
