"""`IpfsStore`: snapshots in an IPFS daemon through the Kubo RPC API (works with Kubo and js-ipfs).

ipfshttpclient 0.7.0 is unmaintained; two of its bugs are worked around here: `connect()` refuses
daemons newer than 0.7 (we construct `Client` directly, which does no version check) and
`swarm.connect` sends each character of the address as an argument (we issue the request ourselves).
"""

from __future__ import annotations

import io
import logging
import time
import warnings
from collections.abc import Callable
from typing import TypeVar

import ipfshttpclient
from ipfshttpclient import exceptions as ipfs_exc
from multiformats import CID

from storage.cid import cid_of, normalize_cid
from storage.defaults import DEFAULT_IPFS_API, DEFAULT_MAX_SIZE
from storage.errors import (
    CidMismatch,
    ContentTooLarge,
    FetchTimeout,
    StoreError,
    StoreUnavailable,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# Extra seconds the HTTP read may take beyond the daemon-side timeout, so the daemon's clear
# "timed out" answer arrives before the client gives up.
_HTTP_GRACE_S = 5.0


class IpfsStore:
    """A content store backed by an IPFS daemon; CIDs are base32 CIDv1 with raw leaves (= `cid_of`)."""

    def __init__(self, api_multiaddr: str = DEFAULT_IPFS_API, *, timeout: float = 30.0, retries: int = 2,
                 backoff: float = 0.25) -> None:
        self.api_multiaddr = api_multiaddr
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        with warnings.catch_warnings():
            # urllib3 warns about a parameter ipfshttpclient still passes; harmless.
            warnings.simplefilter("ignore", FutureWarning)
            self._client = ipfshttpclient.Client(api_multiaddr, timeout=timeout)

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one API call; retry connection failures with exponential backoff, map errors."""
        attempts = self.retries + 1
        for attempt in range(attempts):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)
                    return fn()
            except ipfs_exc.ConnectionError:
                if attempt + 1 == attempts:
                    raise StoreUnavailable(
                        f"no IPFS API at {self.api_multiaddr}: start `ipfs daemon` or pass --ipfs-api"
                    ) from None
                time.sleep(self.backoff * 2**attempt)
            except ipfs_exc.TimeoutError:
                raise FetchTimeout(f"{what}: IPFS daemon at {self.api_multiaddr} did not answer in time") \
                    from None
            except ipfs_exc.ErrorResponse as exc:
                # js-ipfs says "request timed out", Kubo "context deadline exceeded"
                if any(m in str(exc).lower() for m in ("timed out", "timeout", "deadline exceeded")):
                    raise FetchTimeout(f"{what}: timed out ({exc}); the peers holding it may be offline") \
                        from None
                raise StoreError(f"{what}: IPFS daemon refused: {exc}") from None
            except ipfs_exc.Error as exc:
                raise StoreError(f"{what}: IPFS API error: {exc}") from None
        raise AssertionError("unreachable")

    def put(self, data: bytes) -> str:
        """Add `data` (not pinned); returns its CID, checked to equal `cid_of(data)`."""
        expected = cid_of(data)
        res = self._call("put", lambda: self._client.add(io.BytesIO(data), cid_version=1, raw_leaves=True,
                                                         pin=False))
        got = normalize_cid(res["Hash"])
        if got != expected:
            raise CidMismatch(f"IPFS daemon stored the data as {got}, expected {expected}: "
                              "the daemon does not use the default chunker")
        return got

    def get(self, cid: str, *, max_size: int = DEFAULT_MAX_SIZE, timeout: float | None = None) -> bytes:
        """Fetch `cid` (from the network if needed), at most `max_size` bytes, verified against the CID."""
        cid = normalize_cid(cid)
        budget = self.timeout if timeout is None else timeout
        data = self._call(f"get {cid}", lambda: self._client._client.request(
            "/cat", (cid,), opts={"length": max_size + 1, "timeout": f"{budget}s"},
            timeout=budget + _HTTP_GRACE_S))
        if len(data) > max_size:
            raise ContentTooLarge(f"{cid} is larger than the {max_size} byte cap; "
                                  "raise max_size if the sender is trusted")
        if cid_of(data) != cid:
            raise CidMismatch(f"bytes fetched for {cid} hash to {cid_of(data)}; dropped")
        return data

    def has(self, cid: str) -> bool:
        """Whether the daemon holds the root block of `cid` locally (never searches the network)."""
        # `block/stat --offline` would be cheaper, but js-ipfs ignores `offline` and fetches over bitswap;
        # `refs/local` lists local blocks on both. Blocks are keyed by multihash, so compare those.
        want = CID.decode(normalize_cid(cid)).digest
        refs = self._call("has", lambda: self._client._client.request("/refs/local", decoder="json"))
        return any(CID.decode(r["Ref"]).digest == want for r in refs if r.get("Ref"))

    def pin(self, cid: str, timeout: float | None = None) -> None:
        """Pin `cid` so `gc` keeps it (fetches it first if the daemon does not hold it)."""
        cid = normalize_cid(cid)
        budget = self.timeout if timeout is None else timeout
        self._call(f"pin {cid}", lambda: self._client._client.request(
            "/pin/add", (cid,), opts={"timeout": f"{budget}s"}, decoder="json",
            timeout=budget + _HTTP_GRACE_S))

    def unpin(self, cid: str) -> None:
        """Unpin `cid`; unpinning something not pinned is not an error."""
        cid = normalize_cid(cid)
        try:
            self._call(f"unpin {cid}", lambda: self._client.pin.rm(cid))
        except StoreError as exc:
            if "not pinned" not in str(exc):
                raise

    def gc(self) -> None:
        """Run the daemon's garbage collector (drops unpinned blocks)."""
        self._call("gc", lambda: self._client.repo.gc(quiet=True))

    def connect(self, peer_multiaddr: str, timeout: float | None = None) -> None:
        """Dial another IPFS node (`/ip4/.../tcp/.../p2p/<id>`) so bitswap can fetch from it; give up
        after `timeout` s (an unreachable host that drops packets would otherwise hold the caller)."""
        budget = self.timeout if timeout is None else timeout
        self._call(f"connect {peer_multiaddr}", lambda: self._client._client.request(
            "/swarm/connect", (peer_multiaddr,), opts={"timeout": f"{budget}s"}, decoder="json",
            timeout=budget + _HTTP_GRACE_S))
        log.info("ipfs connected to %s", peer_multiaddr.rsplit("/", 1)[-1][-8:])

    def peer_id(self) -> str:
        return self._call("id", lambda: self._client.id())["ID"]

    def swarm_addrs(self) -> list[str]:
        """The daemon's swarm multiaddrs, each ending in /p2p/<peer id> (what the node announces)."""
        info = self._call("id", lambda: self._client.id())
        return [a if "/p2p/" in a else f"{a}/p2p/{info['ID']}" for a in info["Addresses"]]

    def close(self) -> None:
        self._client.close()
