"""Shared test set-up: tests under tests/integration/ are marked `integration` automatically, and
the run fails if a process it started (a node, an IPFS daemon) is still alive at its end."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Generator
from pathlib import Path

import pytest

INTEGRATION_DIR = Path(__file__).parent / "integration"

# Every process this run starts inherits this variable (IpfsDaemon and the node children copy
# os.environ), also once orphaned to PID 1 and even when it rewrites its command line (js-ipfs renames
# itself `ipfs`). A fresh value per run means the check can never touch another run's or user's processes.
# Under pytest-xdist every worker draws its own and checks the processes its own tests started.
RUN_MARK = "SWARM_TEST_RUN"
LEFTOVER_GRACE_S = 5.0  # a daemon whose node just died is still shutting down: give it this long


def pytest_configure(config: pytest.Config) -> None:
    os.environ[RUN_MARK] = uuid.uuid4().hex


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


def processes_of_this_run() -> dict[int, str]:
    """pid -> command line of our own user's processes carrying this run's mark (never ourselves)."""
    mark = f"{RUN_MARK}={os.environ.get(RUN_MARK, '-')}".encode()
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
            if mark not in environ:
                continue
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue  # a zombie child awaiting its reaper: gone already
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # exited meanwhile, or not ours to read
            continue
        # js-ipfs renames itself `ipfs` (so `pkill -f <tmp dir>` misses it): name its repo too.
        repo = [v.decode(errors="replace") for v in environ if v.startswith(b"IPFS_PATH=")]
        found[int(entry.name)] = " ".join([cmdline.strip(), *repo])
    return found


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> Generator[None, None, None]:
    """After every fixture is torn down: kill what this run left running, and fail the run if anything."""
    yield
    if not Path("/proc").is_dir():  # no /proc (macOS, Windows): nothing to look at
        return
    deadline = time.monotonic() + LEFTOVER_GRACE_S
    while (left := processes_of_this_run()) and time.monotonic() < deadline:
        time.sleep(0.2)
    if not left:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        time.sleep(1.0)
    names = "\n".join(f"  pid {pid}: {cmd}" for pid, cmd in sorted(left.items()))
    message = f"the test run left {len(left)} process(es) of its own running (now killed):\n{names}"
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(message, red=True, bold=True)
    else:
        print(message)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
