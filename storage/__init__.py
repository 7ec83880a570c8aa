"""Snapshots and where they live: the snapshot format and its tensor codecs, topk-delta keyframes and
bases, CIDs, local and IPFS stores, private daemons.

The public names are loaded on first use: `storage.atomic` and `storage.cid` stay cheap to import
for the bootstrap and gossip processes, which must not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "cid_of": "storage.cid", "normalize_cid": "storage.cid",
    "DaemonError": "storage.daemon", "IpfsDaemon": "storage.daemon",
    "BadContent": "storage.errors", "CidMismatch": "storage.errors", "ContentNotFound": "storage.errors",
    "ContentTooLarge": "storage.errors",
    "FetchTimeout": "storage.errors", "InvalidCid": "storage.errors", "SnapshotError": "storage.errors",
    "StoreError": "storage.errors", "StoreUnavailable": "storage.errors",
    "IpfsStore": "storage.ipfs", "LocalStore": "storage.local",
    "Snapshot": "storage.snapshot", "decode": "storage.snapshot", "encode": "storage.snapshot",
    "schema_fingerprint": "storage.snapshot",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'storage' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
