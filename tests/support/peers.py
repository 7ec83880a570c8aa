"""A bare gossip peer (`gossip_peer.py`) driven as a child process by the integration tests and
bench/gossip.py: announcements it received are collected in `recv`, commands go to its stdin."""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from node.processes import READY_TIMEOUT_S, Child, ProcError


class Peer(Child):
    """A gossip peer process; `recv` collects the announcements it printed."""

    def __init__(self, swarm: str, data_dir: Path, bootstrap: list[str], *,
                 listen: str = "/ip4/127.0.0.1/tcp/0", target_peers: int = 6, static: Sequence[str] = (),
                 extra: Sequence[str] = ()):
        args = [sys.executable, str(Path(__file__).with_name("gossip_peer.py")), "--swarm", swarm,
                "--data-dir", str(data_dir), "--listen", listen, "--target-peers", str(target_peers), *extra]
        for b in bootstrap:
            args += ["--bootstrap", b]
        for s in static:
            args += ["--peer", s]
        super().__init__(args, data_dir / "peer.log", stdin=True)
        self.recv: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        ready = self.wait_for(lambda r: r["event"] == "ready", READY_TIMEOUT_S)
        self.peer_id: str = ready["peer_id"]
        self.addrs: list[str] = ready["addrs"]

    def send(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def publish(self, round: int, **extra: Any) -> None:
        self.send(cmd="publish", round=round, **extra)

    def wait_for(self, pred: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        """The first new record matching `pred`; received announcements are kept in `recv` meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProcError(f"peer …{getattr(self, 'peer_id', '?')[-8:]}: no matching record in "
                                f"{timeout} s; stderr tail: {self.stderr_tail()}")
            record = json.loads(self.next_line(left))
            if record["event"] == "recv":
                with self._lock:
                    self.recv.append(record)
            if pred(record):
                return record

    def poll(self) -> None:
        """Move already printed records into `recv` without waiting."""
        while True:
            try:
                record = json.loads(self.lines.get_nowait())
            except queue.Empty:
                return
            if record["event"] == "recv":
                with self._lock:
                    self.recv.append(record)

    def state(self, timeout: float = 10.0) -> dict[str, Any]:
        self.send(cmd="state")
        return self.wait_for(lambda r: r["event"] == "state", timeout)

    def received(self, publisher: str, round: int) -> bool:
        self.poll()
        with self._lock:
            return any(r["publisher"] == publisher and r["round"] == round for r in self.recv)
