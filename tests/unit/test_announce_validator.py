"""AnnounceValidator: each reject cause is counted, and check() never raises whatever it is fed."""

from __future__ import annotations

import dataclasses

from node.announce_validator import AnnounceValidator, ValidationPolicy
from node.announcement import Announcement
from node.gossip_peer import cid_for

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
