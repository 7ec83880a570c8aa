"""AnnounceValidator: each reject cause is counted, check() never raises whatever it is fed, and a peer
over the rate limit for long enough is banned, for a doubling time, and forgiven."""

from __future__ import annotations

import dataclasses

from support.gossip_peer import cid_for

from p2p.announcement import Announcement
from p2p.validator import AnnounceValidator, ValidationPolicy

PEER = "12D3KooWDDxDSjpcQYjbE3KFCAD722Q3WKL9vBcGUURjqAfQ52ke"
OTHER = "12D3KooWQUHrSVSAFCgj3TWgjCybzE9RvXwAszbEycmrTU6HCKTY"
NOW = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = NOW

    def __call__(self) -> float:
        return self.t


def ann(round: int = 1, publisher: str = PEER, timestamp: float = NOW) -> bytes:
    return Announcement(cid=cid_for(f"{publisher}/{round}".encode()), publisher=publisher, round=round,
                        schema="s", samples=1, loss=0.1, encoding="fp32", size=1,
                        timestamp=timestamp).to_bytes()


def test_accepts_a_good_announcement() -> None:
    v = AnnounceValidator(clock=Clock())
    got = v.check(ann(), PEER)
    assert got is not None and got.publisher == PEER
    assert v.rejects() == {}


def test_each_cause_is_counted() -> None:
    v = AnnounceValidator(clock=Clock())
    assert v.check(b"\x00garbage", PEER) is None
    assert v.check(b"x" * 5000, PEER) is None
    assert v.check(ann(publisher=OTHER), PEER) is None
    assert v.check(ann(timestamp=NOW - 3600), PEER) is None
    assert v.check(ann(timestamp=NOW + 3600), PEER) is None
    assert v.check(ann(round=7), PEER) is not None
    assert v.check(ann(round=7), PEER) is None
    assert v.rejects() == {"malformed": 1, "oversized": 1, "forged": 1, "stale": 1, "future": 1,
                           "replayed": 1}


def test_rate_limit_is_per_publisher_and_refills() -> None:
    clock = Clock()
    v = AnnounceValidator(ValidationPolicy(rate_per_s=2.0, burst=5), clock=clock)
    accepted = sum(v.check(ann(round=r), PEER) is not None for r in range(50))
    assert accepted == 5
    assert v.rejects() == {"rate": 45}
    assert v.check(ann(round=1, publisher=OTHER), OTHER) is not None  # others are unaffected
    clock.t += 1.0
    assert sum(v.check(ann(round=r, timestamp=clock.t), PEER) is not None for r in range(100, 110)) == 2


def test_replay_memory_expires_with_the_age_window() -> None:
    clock = Clock()
    v = AnnounceValidator(ValidationPolicy(max_age_s=10, max_future_s=0), clock=clock)
    assert v.check(ann(round=1), PEER) is not None
    clock.t += 11
    # Too old now, and the key was forgotten: rejected as stale, memory stays bounded.
    assert v.check(ann(round=1), PEER) is None
    assert v.rejects() == {"stale": 1}


def test_unexpected_errors_are_contained() -> None:
    v = AnnounceValidator(clock=Clock())
    assert v.check(None, PEER) is None  # type: ignore[arg-type]
    assert v.rejects() == {"error": 1}


def test_logs_once_per_cause(caplog) -> None:  # type: ignore[no-untyped-def]
    v = AnnounceValidator(clock=Clock())
    for _ in range(20):
        v.check(b"\x00", PEER)
    assert len([r for r in caplog.records if "rejected (malformed)" in r.getMessage()]) == 1
    assert v.rejects() == {"malformed": 20}


def test_policy_is_a_plain_value() -> None:
    assert dataclasses.replace(ValidationPolicy(), burst=3).burst == 3


def flood(v: AnnounceValidator, clock: Clock, n: int, publisher: str = PEER, first_round: int = 1000) -> int:
    """Feed `n` fresh announcements of `publisher` at the clock's time; the number accepted."""
    return sum(v.check(ann(round=r, publisher=publisher, timestamp=clock.t), publisher) is not None
               for r in range(first_round, first_round + n))


def test_a_flooder_is_banned_once_and_lifted_after_the_ban() -> None:
    clock = Clock()
    v = AnnounceValidator(ValidationPolicy(burst=5, ban_after=10, ban_window_s=10, ban_s=60), clock=clock)
    assert flood(v, clock, 5 + 9) == 5
    assert v.take_bans() == []  # 9 rate rejects: not yet
    flood(v, clock, 1, first_round=2000)
    assert v.take_bans() == [(PEER, 60.0)]
    flood(v, clock, 100, first_round=3000)  # in flight while the ban takes effect: no second ban
    assert v.take_bans() == [] and v.banned() == {PEER: NOW + 60}
    clock.t += 59
    assert v.lift_expired() == []
    clock.t += 1
    assert v.lift_expired() == [PEER] and v.banned() == {}
    assert flood(v, clock, 1, first_round=4000) == 1  # its bucket refilled while banned


def test_rate_rejects_spread_over_windows_do_not_ban() -> None:
    clock = Clock()
    v = AnnounceValidator(ValidationPolicy(rate_per_s=2, burst=5, ban_after=10, ban_window_s=10), clock=clock)
    for i in range(60):  # a burst of 9 every 11 s: 4 rejects each, one burst per window
        clock.t = NOW + i * 11
        flood(v, clock, 9, first_round=10_000 + 10 * i)
    assert v.rejects() == {"rate": 240}
    assert v.take_bans() == []


def test_repeat_bans_double_up_to_the_cap_and_are_forgotten() -> None:
    clock = Clock()
    policy = ValidationPolicy(burst=1, ban_after=3, ban_s=10, max_ban_s=35)
    v = AnnounceValidator(policy, clock=clock)
    lengths = []
    for i in range(4):
        flood(v, clock, 4, first_round=100 * i)
        [(peer, seconds)] = v.take_bans()
        lengths.append(seconds)
        clock.t += seconds
        assert v.lift_expired() == [peer]
    assert lengths == [10, 20, 35, 35]
    clock.t += 36  # a clean stretch longer than max_ban_s: back to the first ban length
    flood(v, clock, 4, first_round=1000)
    assert v.take_bans() == [(PEER, 10)]


def test_strikes_are_counted_per_signer() -> None:
    # Not per forwarder: an honest relay forwards up to the limit of every flooding signer, and
    # counting those against it would let a few flooding identities get the relay banned.
    clock = Clock()
    v = AnnounceValidator(ValidationPolicy(burst=2, ban_after=5), clock=clock)
    flood(v, clock, 7, publisher=PEER)  # 5 rate rejects: banned
    flood(v, clock, 6, publisher=OTHER)  # 4: not yet, whatever PEER did
    assert v.take_bans() == [(PEER, 60.0)]
    flood(v, clock, 1, publisher=OTHER, first_round=5000)
    assert v.take_bans() == [(OTHER, 60.0)]


def test_other_rejects_and_zero_ban_after_never_ban() -> None:
    clock = Clock()
    v = AnnounceValidator(ValidationPolicy(ban_after=3), clock=clock)
    for _ in range(50):
        v.check(b"\x00garbage", PEER)
    assert v.take_bans() == []
    v = AnnounceValidator(ValidationPolicy(burst=1, ban_after=0), clock=clock)
    flood(v, clock, 500)
    assert v.take_bans() == [] and v.rejects() == {"rate": 499}
