"""Snapshots and where they live.

- `snapshot`: the snapshot container (header, msgpack, zstd, checksum, meta, schema, size caps).
- `codecs`: one class per tensor codec (raw, shuffle, fp16, int8, top-k, sparse) and the encodings
  built from them; `sparse`: the mask and values of a pruned tensor record.
- `delta`: topk-delta at both ends (the publisher's keyframes, the reader's cache of bases).
- `wire`: the simulator's peers publishing and reading through the real codecs and `delta`.
- `cid`: content ids, computed locally exactly as IPFS computes them.
- `local`, `ipfs`: snapshot stores on disk and in IPFS (the Kubo RPC API).
- `daemon`: private loopback IPFS daemons (js-ipfs or Kubo).
- `manifest`: the swarm manifest (model, input shape, class names, initial weights) and the labels
  fingerprint announced with every snapshot.
- `atomic`: `write_atomic`, the one way files are written; `defaults`: the IPFS API and size caps.
- `errors`: `StoreError` and its two families, bad content (the peer's fault) and an unavailable
  store (retry or redial).

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
