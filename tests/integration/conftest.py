"""Shared fixtures for integration tests: real, private, loopback-only IPFS daemons."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from storage.daemon import IpfsDaemon


@pytest.fixture(scope="module")
def ipfs_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., IpfsDaemon]]:
    """A factory: `ipfs_daemon()` starts a fresh daemon (~3 s); all are stopped when the module ends.

    Module-scoped so tests in one module can share daemons through their own module-scoped fixtures.
    `ipfs_daemon(repo=path)` starts one on a given repo directory.
    """
    started: list[IpfsDaemon] = []

    def start(repo: Path | None = None) -> IpfsDaemon:
        daemon = IpfsDaemon.start(repo or tmp_path_factory.mktemp("ipfs"))
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()
