"""Child processes with their output read in the background: the demo's bootstrap and peers, and the
processes of the integration tests and benchmarks.

Each child's stdout is read by a thread into a queue, so waits have timeouts and never block on a pipe.
`kill_all` is meant for `finally:` blocks: every process started here is ended, by its own pid.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from p2p.addresses import LOOPBACK_LISTEN

READY_TIMEOUT_S = 30.0


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
    def __init__(self, swarm: str, data_dir: Path, listen: str = LOOPBACK_LISTEN, extra: Sequence[str] = ()):
        super().__init__([sys.executable, "-m", "bootstrap.cli", "--swarm", swarm, "--listen", listen,
                          "--data-dir", str(data_dir), *extra], data_dir / "bootstrap.log")
        line = self.next_line(READY_TIMEOUT_S)
        if not line.startswith("BOOTSTRAP /"):
            raise ProcError(f"bootstrap printed {line!r}")
        self.addr = line.split()[1]


def kill_all(children: list[Child]) -> None:
    for child in children:
        if child.proc.poll() is None:
            child.kill()
