"""The snapshot announcement: a versioned msgpack map of at most 4 KiB, gossiped on the swarm topic.

`Announcement.from_bytes` checks schema and size only; who signed it, how old it is and how often the
publisher speaks are checked by `p2p.validator`. The wire format is described in
docs/protocol.md.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import msgpack
from multiformats import CID

from p2p.errors import P2PError

VERSION = 1
MAX_SIZE = 4096
MAX_PARENTS = 16
MAX_ADDRS = 8
MAX_ADDR_LEN = 256
MAX_PRIORS = 10
MAX_CID_LEN = 128
_SHORT_TEXT = re.compile(r"[A-Za-z0-9_.:+-]{1,64}")


class AnnouncementError(P2PError, ValueError):
    """The bytes are not a valid announcement; the message says which field and what is expected."""


def topic_for(swarm_id: str) -> str:
    """The gossipsub topic a swarm's announcements travel on."""
    if not _SHORT_TEXT.fullmatch(swarm_id):
        raise AnnouncementError(
            f"swarm id {swarm_id!r} is not valid: use 1-64 characters from letters, digits and _.:+-"
        )
    return f"/swarm/{swarm_id}/announce/1"


def check_cid(value: str, what: str = "cid") -> None:
    """Raise AnnouncementError unless `value` parses as a CID (v0 or v1)."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_CID_LEN:
        raise AnnouncementError(f"{what} must be a CID string of at most {MAX_CID_LEN} characters")
    problem = _cid_problem(value)
    if problem:
        raise AnnouncementError(f"{what} {value[:20]!r} is not a well-formed CID ({problem})")


@functools.lru_cache(maxsize=4096)
def _cid_problem(value: str) -> str:
    # Cached: multiformats' runtime type checks cost ~1 ms per decode, and every announcement is parsed
    # several times (validator, receive loop, each relay's validator sees the same CIDs).
    try:
        CID.decode(value)
    except (ValueError, KeyError) as e:
        return str(e) or type(e).__name__
    return ""


# The role of the last announcement a node sends when it shuts down cleanly: its snapshots are no
# longer served by it, so peers stop choosing it instead of each waiting out a fetch timeout.
LEAVING = "leaving"
# The role of a pinner's presence announcements: its CID names a small card, its addrs say where its
# IPFS daemon listens, so every node keeps connected to it (how snapshots of peers behind NAT travel).
PINNER = "pinner"


@dataclass(frozen=True)
class Announcement:
    """One snapshot offered to the swarm. `publisher` is the libp2p peer id (base58) that signs it."""

    cid: str
    publisher: str
    round: int
    schema: str
    samples: int
    loss: float | None
    encoding: str
    size: int
    timestamp: float
    parents: tuple[str, ...] = ()
    dp_epsilon: float | None = None
    role: str = "trainer"
    addrs: tuple[str, ...] = field(default=())
    # The publisher's measured similarities to other peers (DAC's 2-hop expansion): (peer id, score).
    priors: tuple[tuple[str, float], ...] = ()
    # Fingerprint of the publisher's class names in order (storage.manifest.labels_fingerprint);
    # "" = not announced (older publishers, seeds): the key is then left out of the wire form.
    labels: str = ""

    def to_bytes(self) -> bytes:
        """The wire form (<= MAX_SIZE bytes); raises AnnouncementError if a field is out of range."""
        self.validate()
        wire: dict[str, Any] = {"v": VERSION, **asdict(self)}
        wire["parents"] = list(self.parents)
        wire["addrs"] = list(self.addrs)
        wire["priors"] = dict(self.priors)
        if not self.labels:
            del wire["labels"]
        # The field bounds checked by validate() keep this under MAX_SIZE (a unit test holds them to it).
        return msgpack.packb(wire, use_bin_type=True)

    @classmethod
    def from_bytes(cls, data: bytes) -> Announcement:
        """Parse and check the wire form. Any defect raises AnnouncementError, never another error."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise AnnouncementError("announcement must be bytes")
        if len(data) > MAX_SIZE:
            raise AnnouncementError(f"announcement is {len(data)} bytes, the limit is {MAX_SIZE}")
        try:
            wire = msgpack.unpackb(bytes(data), raw=False, strict_map_key=True)
        except Exception as e:  # msgpack raises many unrelated types on garbage
            raise AnnouncementError(f"announcement is not msgpack ({type(e).__name__})") from None
        if not isinstance(wire, dict):
            raise AnnouncementError("announcement must be a msgpack map")
        if wire.get("v") != VERSION:
            raise AnnouncementError(f"announcement version {wire.get('v')!r} is not supported "
                                    f"(want {VERSION})")
        try:
            ann = cls(
                cid=wire["cid"], publisher=wire["publisher"], round=wire["round"], schema=wire["schema"],
                samples=wire["samples"], loss=wire["loss"], encoding=wire["encoding"], size=wire["size"],
                timestamp=wire["timestamp"], parents=tuple(_as_list(wire, "parents")),
                dp_epsilon=wire.get("dp_epsilon"), role=wire.get("role", "trainer"),
                addrs=tuple(_as_list(wire, "addrs")),
                priors=_as_pairs(wire, "priors"), labels=wire.get("labels", ""),
            )
        except KeyError as e:
            raise AnnouncementError(f"announcement lacks field {e.args[0]!r}") from None
        ann.validate()
        return ann

    def validate(self) -> None:
        """Raise AnnouncementError naming the first field that is missing, mistyped or out of range."""
        check_cid(self.cid)
        _require(isinstance(self.publisher, str) and 0 < len(self.publisher) <= 128,
                 "publisher must be a peer id string")
        for name in ("round", "samples", "size"):
            value = getattr(self, name)
            _require(type(value) is int and value >= 0, f"{name} must be a non-negative integer")
        _require(isinstance(self.schema, str) and 0 < len(self.schema) <= 128,
                 "schema must be a fingerprint string of 1-128 characters")
        _require(isinstance(self.encoding, str) and bool(_SHORT_TEXT.fullmatch(self.encoding)),
                 "encoding must be a short name such as fp32")
        _require(isinstance(self.role, str) and bool(_SHORT_TEXT.fullmatch(self.role)),
                 "role must be a short name such as trainer")
        _require(_is_finite(self.timestamp), "timestamp must be a finite number (unix seconds)")
        _require(self.loss is None or _is_finite(self.loss), "loss must be a finite number or nil")
        _require(self.dp_epsilon is None or (_is_finite(self.dp_epsilon) and self.dp_epsilon >= 0),
                 "dp_epsilon must be a non-negative number or nil")
        _require(isinstance(self.labels, str)
                 and (not self.labels or bool(_SHORT_TEXT.fullmatch(self.labels))),
                 "labels must be a short fingerprint such as labels-3f2a...")
        _require(len(self.parents) <= MAX_PARENTS, f"at most {MAX_PARENTS} parents")
        for parent in self.parents:
            check_cid(parent, "parent")
        _require(len(self.priors) <= MAX_PRIORS, f"at most {MAX_PRIORS} priors")
        for peer, score in self.priors:
            _require(isinstance(peer, str) and 0 < len(peer) <= 128 and _is_finite(score),
                     "priors must map peer id strings to finite scores")
        _require(len(self.addrs) <= MAX_ADDRS, f"at most {MAX_ADDRS} addrs")
        for addr in self.addrs:
            _require(isinstance(addr, str) and addr.startswith("/") and len(addr) <= MAX_ADDR_LEN,
                     f"addrs must be multiaddr strings of at most {MAX_ADDR_LEN} characters")


def _as_pairs(wire: dict[str, Any], key: str) -> tuple[tuple[str, float], ...]:
    value = wire.get(key, {})
    if not isinstance(value, dict):
        raise AnnouncementError(f"{key} must be a map of peer id to score")
    return tuple(value.items())


def _as_list(wire: dict[str, Any], key: str) -> list[Any]:
    value = wire.get(key, [])
    if not isinstance(value, list):
        raise AnnouncementError(f"{key} must be a list")
    return value


def _is_finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise AnnouncementError(message)
