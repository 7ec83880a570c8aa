"""`LocalStore`: a content-addressed directory keyed by `cid_of`, with pins and a garbage collector.

Layout: `<dir>/blocks/<cid>` holds the bytes, `<dir>/pins/<cid>` (empty) marks a pin. Writes are
atomic, so a crash leaves either the whole block or none; reads re-hash, so a corrupted file is
reported instead of served.
"""

from __future__ import annotations

import os
from pathlib import Path

from storage.atomic import write_atomic
from storage.cid import cid_of, normalize_cid
from storage.defaults import DEFAULT_MAX_SIZE
from storage.errors import CidMismatch, ContentNotFound, ContentTooLarge


class LocalStore:
    """Snapshots on local disk under their CID (the same CID IPFS gives them)."""

    def __init__(self, directory: Path | str) -> None:
        self.dir = Path(directory)
        self._blocks = self.dir / "blocks"
        self._pins = self.dir / "pins"
        self._blocks.mkdir(parents=True, exist_ok=True)
        self._pins.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes) -> str:
        cid = cid_of(data)
        path = self._blocks / cid
        if path.exists():
            os.utime(path)  # a re-put counts as recent use for the GC
        else:
            write_atomic(path, data, mode=0o644)
        return cid

    def get(self, cid: str, *, max_size: int = DEFAULT_MAX_SIZE, timeout: float | None = None) -> bytes:
        """The bytes of `cid`; `timeout` is accepted for interface parity (local reads do not wait)."""
        cid = normalize_cid(cid)
        path = self._blocks / cid
        try:
            size = path.stat().st_size
            if size > max_size:
                raise ContentTooLarge(f"{cid} is {size} bytes, over the {max_size} byte cap")
            data = path.read_bytes()
        except FileNotFoundError:
            raise ContentNotFound(f"{cid} is not in the local store {self.dir}") from None
        if cid_of(data) != cid:
            raise CidMismatch(f"{path} is corrupted (its bytes hash to {cid_of(data)}); "
                              "delete it and fetch it again")
        return data

    def has(self, cid: str) -> bool:
        return (self._blocks / normalize_cid(cid)).exists()

    def pin(self, cid: str, timeout: float | None = None) -> None:
        """Pin `cid` (already local, so `timeout` is unused: same signature as IpfsStore.pin)."""
        cid = normalize_cid(cid)
        if not self.has(cid):
            raise ContentNotFound(f"cannot pin {cid}: not in the local store {self.dir}; put it first")
        (self._pins / cid).touch()

    def unpin(self, cid: str) -> None:
        (self._pins / normalize_cid(cid)).unlink(missing_ok=True)

    def pinned(self) -> set[str]:
        return {p.name for p in self._pins.iterdir()}

    def gc(self, *, keep_recent: int = 8) -> list[str]:
        """Delete unpinned blocks but the `keep_recent` most recently written; returns their CIDs."""
        pinned = self.pinned()
        blocks = sorted((p for p in self._blocks.iterdir() if not p.name.startswith(".")),
                        key=lambda p: p.stat().st_mtime_ns, reverse=True)
        removed = [p.name for p in blocks if p.name not in pinned][keep_recent:]
        for name in removed:
            (self._blocks / name).unlink(missing_ok=True)
        return removed
