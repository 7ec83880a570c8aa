"""Defaults shared by the stores, the snapshot codec and the node's commands, each defined once here.

Standard library only: the CLI shows them in `--help` without importing torch or ipfshttpclient.
"""

from __future__ import annotations

# Where a local Kubo daemon serves its RPC API unless configured otherwise.
DEFAULT_IPFS_API = "/ip4/127.0.0.1/tcp/5001"

MIB = 1024 * 1024
# The largest snapshot a peer fetches or decodes unless told otherwise (`--max-mb`, `max_snapshot_mb`):
# a hostile announcement must not make it download or inflate without bound.
DEFAULT_MAX_MB = 256
DEFAULT_MAX_SIZE = DEFAULT_MAX_MB * MIB


def mib_to_bytes(megabytes: float) -> int:
    """A size setting given in MiB (such as `--max-mb`), in bytes."""
    return int(megabytes * MIB)
