"""Snapshots and where they live: the snapshot format, CIDs, local and IPFS stores, private daemons."""

from storage.cid import cid_of, normalize_cid
from storage.daemon import DaemonError, IpfsDaemon
from storage.errors import (
    CidMismatch,
    ContentNotFound,
    ContentTooLarge,
    FetchTimeout,
    InvalidCid,
    SnapshotError,
    StoreError,
    StoreUnavailable,
)
from storage.ipfs import IpfsStore
from storage.local import LocalStore
from storage.snapshot import Snapshot, decode, encode, schema_fingerprint

__all__ = [
    "CidMismatch",
    "ContentNotFound",
    "ContentTooLarge",
    "DaemonError",
    "FetchTimeout",
    "InvalidCid",
    "IpfsDaemon",
    "IpfsStore",
    "LocalStore",
    "Snapshot",
    "SnapshotError",
    "StoreError",
    "StoreUnavailable",
    "cid_of",
    "decode",
    "encode",
    "normalize_cid",
    "schema_fingerprint",
]
