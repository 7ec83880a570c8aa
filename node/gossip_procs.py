"""Drives `swarm-bootstrap` and `node.gossip_peer` as child processes (integration tests, bench/gossip.py).

Each child's stdout is read by a thread into a queue, so waits have timeouts and never block on a pipe.
`kill_all` is meant for `finally:` blocks: every process started here is ended, by its own pid.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

READY_TIMEOUT_S = 30.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used (Linux /proc); OSError once it is gone."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ProcError(RuntimeError):
    """A child process did not answer as expected; the message holds the tail of its stderr."""


class Child:
    def __init__(self, args: list[str], log_path: Path, stdin: bool = False):
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        self._log = log_path.open("w")
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self._log, text=True, bufsize=1)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))

    def next_line(self, timeout: float) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise ProcError(f"no output within {timeout} s; stderr tail: {self.stderr_tail()}") from None

    def stderr_tail(self, n: int = 5) -> str:
        try:
            return " | ".join(self.log_path.read_text().splitlines()[-n:])
        except OSError:
            return "-"

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(timeout)
        self._log.close()
        return code

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self._log.close()


class Bootstrap(Child):
    def __init__(self, swarm: str, data_dir: Path, listen: str = "/ip4/127.0.0.1/tcp/0"):
        super().__init__([sys.executable, "-m", "bootstrap.cli", "--swarm", swarm, "--listen", listen,
                          "--data-dir", str(data_dir)], data_dir / "bootstrap.log")
        line = self.next_line(READY_TIMEOUT_S)
        if not line.startswith("BOOTSTRAP /"):
            raise ProcError(f"bootstrap printed {line!r}")
        self.addr = line.split()[1]


class Peer(Child):
    """A gossip peer process; `recv` collects the announcements it printed."""

    def __init__(self, swarm: str, data_dir: Path, bootstrap: list[str], *,
                 listen: str = "/ip4/127.0.0.1/tcp/0", target_peers: int = 6, static: Sequence[str] = (),
                 extra: Sequence[str] = ()):
        args = [sys.executable, "-m", "node.gossip_peer", "--swarm", swarm, "--data-dir", str(data_dir),
                "--listen", listen, "--target-peers", str(target_peers), *extra]
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


def kill_all(children: list[Child]) -> None:
    for child in children:
        if child.proc.poll() is None:
            child.kill()
