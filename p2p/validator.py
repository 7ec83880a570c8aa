"""Decides whether an incoming announcement is accepted: schema and size, signer, age, replay, rate;
and which peers flood hard enough to be banned for a while.

Every reject is counted by cause and logged once per cause (later ones only counted), so a flood of
garbage cannot flood the log. `check` never raises: the gossipsub validator calls it, and an exception
there would kill the pubsub service (py-libp2p #1118).

Bans: rejecting a flood is not enough, because each message has already cost py-libp2p a protobuf
decode, a signed-record check and a signature check before `check` sees it. A signer with
`ban_after` rate rejects within `ban_window_s` is banned for `ban_s`, doubled on each
repeat up to `max_ban_s`; p2p/bans.py blacklists and disconnects it for that time. The doubling
is forgotten after `max_ban_s` without a ban, so an honest peer that burst once is not banned for long.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from p2p.announcement import MAX_SIZE, Announcement, AnnouncementError
from p2p.errors import P2PError

log = logging.getLogger(__name__)

# Bounds on per-peer state, so that many fake publishers cannot grow memory without limit.
MAX_TRACKED_PUBLISHERS = 10_000
MAX_REMEMBERED = 50_000


@dataclass(frozen=True)
class ValidationPolicy:
    """Limits for incoming announcements. Rates are per publisher: a node announces once per round."""

    max_age_s: float = 600.0
    max_future_s: float = 60.0
    rate_per_s: float = 2.0
    burst: int = 20
    ban_after: int = 50  # rate rejects within ban_window_s that get a peer banned; 0: never ban
    ban_window_s: float = 10.0
    ban_s: float = 60.0
    max_ban_s: float = 3600.0


@dataclass
class _Strikes:
    """Rate rejects of one peer in the current window, and its ban history for the doubling."""

    window_start: float
    count: int = 0
    bans: int = 0
    last_ban_end: float = field(default=float("-inf"))


class AnnounceValidator:
    """Stateful checker (rate buckets, replay memory). Call from one thread; `rejects()` from any."""

    def __init__(self, policy: ValidationPolicy | None = None, clock: Callable[[], float] = time.time):
        self.policy = policy or ValidationPolicy()
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # peer -> (tokens, last)
        self._seen: OrderedDict[tuple[str, str, int, str], float] = OrderedDict()  # key -> expiry
        self._rejects: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._strikes: OrderedDict[str, _Strikes] = OrderedDict()
        self._banned: dict[str, float] = {}  # peer -> ban end
        self._new_bans: list[tuple[str, float]] = []

    def check(self, data: bytes, signer: str) -> Announcement | None:
        """The announcement if `data` signed by peer `signer` is acceptable, else None (counted; a
        signer that keeps going over the rate limit is banned, see `take_bans`)."""
        try:
            return self._check(data, signer)
        except _Reject as r:
            self._count(r.cause, r.detail, signer)
            if r.cause == "rate":
                # Only the signer: an honest relay forwards up to burst + rate x window of *each*
                # flooding signer, so counting relays would let a few flooding identities get the
                # relays (the bootstrap among them) banned.
                self._strike(signer, self._clock())
        except Exception as e:  # a validator must survive anything a peer can send
            self._count("error", f"{type(e).__name__}: {e}", signer)
        return None

    def rejects(self) -> dict[str, int]:
        with self._lock:
            return dict(self._rejects)

    def take_bans(self) -> list[tuple[str, float]]:
        """(peer, seconds) of the bans decided since the last call; the caller enforces them."""
        bans, self._new_bans = self._new_bans, []
        return bans

    def lift_expired(self) -> list[str]:
        """Peers whose ban has run out, now forgiven (their strikes start from zero)."""
        now = self._clock()
        done = [peer for peer, end in self._banned.items() if end <= now]
        for peer in done:
            del self._banned[peer]
        return done

    def banned(self) -> dict[str, float]:
        """Peer -> time its ban ends."""
        return dict(self._banned)

    def _check(self, data: bytes, signer: str) -> Announcement:
        if len(data) > MAX_SIZE:
            raise _Reject("oversized", f"{len(data)} bytes > {MAX_SIZE}")
        try:
            ann = Announcement.from_bytes(data)
        except AnnouncementError as e:
            raise _Reject("malformed", str(e)) from None
        if ann.publisher != signer:
            raise _Reject("forged", "publisher field differs from the message signer")
        now = self._clock()
        if ann.timestamp < now - self.policy.max_age_s:
            raise _Reject("stale", f"timestamp {now - ann.timestamp:.0f} s old")
        if ann.timestamp > now + self.policy.max_future_s:
            raise _Reject("future", f"timestamp {ann.timestamp - now:.0f} s ahead; check the clock")
        self._forget_expired(now)
        key = (ann.publisher, ann.cid, ann.round, ann.role)  # a goodbye repeats the last cid and round
        if key in self._seen:
            raise _Reject("replayed", f"cid {ann.cid[-8:]} round {ann.round} seen before")
        if not self._take_token(signer, now):
            raise _Reject("rate", f"more than {self.policy.rate_per_s}/s (burst {self.policy.burst})")
        self._seen[key] = now + self.policy.max_age_s + self.policy.max_future_s
        if len(self._seen) > MAX_REMEMBERED:
            self._seen.popitem(last=False)
        return ann

    def _take_token(self, peer: str, now: float) -> bool:
        tokens, last = self._buckets.pop(peer, (float(self.policy.burst), now))
        tokens = min(float(self.policy.burst), tokens + (now - last) * self.policy.rate_per_s)
        ok = tokens >= 1.0
        self._buckets[peer] = (tokens - 1.0 if ok else tokens, now)
        if len(self._buckets) > MAX_TRACKED_PUBLISHERS:
            self._buckets.popitem(last=False)
        return ok

    def _strike(self, peer: str, now: float) -> None:
        p = self.policy
        # Already banned: messages still in flight. Too many bans: a bound on memory, whatever a
        # flood of fresh identities does.
        if p.ban_after <= 0 or peer in self._banned or len(self._banned) >= MAX_TRACKED_PUBLISHERS:
            return
        s = self._strikes.pop(peer, None) or _Strikes(window_start=now)
        self._strikes[peer] = s
        if len(self._strikes) > MAX_TRACKED_PUBLISHERS:
            self._strikes.popitem(last=False)
        if now - s.window_start > p.ban_window_s:
            s.window_start, s.count = now, 0
        s.count += 1
        if s.count < p.ban_after:
            return
        if now - s.last_ban_end > p.max_ban_s:
            s.bans = 0
        seconds = min(p.ban_s * 2.0 ** s.bans, p.max_ban_s)
        s.bans += 1
        s.count = 0
        s.window_start = s.last_ban_end = now + seconds
        self._banned[peer] = now + seconds
        self._new_bans.append((peer, seconds))

    def _forget_expired(self, now: float) -> None:
        while self._seen:
            key, expiry = next(iter(self._seen.items()))
            if expiry > now:
                break
            del self._seen[key]

    def _count(self, cause: str, detail: str, signer: str) -> None:
        with self._lock:
            self._rejects[cause] += 1
            first = self._rejects[cause] == 1
        if first:
            log.warning("announcement rejected (%s) from …%s: %s; further '%s' rejects are only counted",
                        cause, signer[-8:], detail, cause)


class _Reject(P2PError):
    """Why `_check` refused an announcement; caught by `check`, never seen outside this module."""

    def __init__(self, cause: str, detail: str):
        super().__init__(cause)
        self.cause = cause
        self.detail = detail
