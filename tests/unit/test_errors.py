"""One error base per package: every exception class that `swarm`, `p2p` and `storage` define derives
from its package's base, so a caller can catch a whole package with one class; storage's bad-content
and dead-store families never overlap, because they call for opposite reactions (skip the peer's
bytes versus retry the store)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

from p2p.errors import P2PError
from storage.errors import (
    BadContent,
    CidMismatch,
    ContentTooLarge,
    FetchTimeout,
    SnapshotError,
    StoreError,
    StoreUnavailable,
)
from swarm.errors import ConfigError, SwarmError

BASES: dict[str, type[Exception]] = {"swarm": SwarmError, "p2p": P2PError, "storage": StoreError}


def exception_classes(package: str) -> list[type[BaseException]]:
    """Every exception class defined at the top level of a module of `package` (imports them all)."""
    names = [package, *(m.name for m in pkgutil.walk_packages(importlib.import_module(package).__path__,
                                                                f"{package}."))]
    found = []
    for name in names:
        for obj in vars(importlib.import_module(name)).values():
            if isinstance(obj, type) and issubclass(obj, BaseException) and obj.__module__ == name:
                found.append(obj)
    return found


@pytest.mark.parametrize("package", sorted(BASES))
def test_every_exception_derives_from_its_package_base(package: str) -> None:
    classes = exception_classes(package)
    assert BASES[package] in classes and len(classes) > 2
    stray = [f"{c.__module__}.{c.__qualname__}" for c in classes if not issubclass(c, BASES[package])]
    assert not stray, f"derive these from {BASES[package].__name__}: {stray}"


def test_bad_content_and_dead_store_are_distinct_families() -> None:
    from storage.daemon import DaemonError, PortTaken

    classes = exception_classes("storage")
    bad = {c for c in classes if issubclass(c, BadContent)}
    dead = {c for c in classes if issubclass(c, StoreUnavailable)}
    assert not bad & dead
    assert {ContentTooLarge, CidMismatch, SnapshotError} <= bad
    assert {FetchTimeout, DaemonError, PortTaken} <= dead


def test_node_and_simulator_raise_one_config_error() -> None:
    from node.config import ConfigError as NodeConfigError
    from swarm.sim.config import ConfigError as SimConfigError

    assert NodeConfigError is SimConfigError is ConfigError
    assert issubclass(ConfigError, ValueError)  # callers that catch ValueError keep catching it
