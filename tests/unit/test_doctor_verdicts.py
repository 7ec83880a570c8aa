"""`swarm-node doctor`'s verdicts from a reach answer: behind NAT is a warning with the port to forward,
a clock off by more than peers accept is a problem; and its help names every option."""

from __future__ import annotations

import argparse
from pathlib import Path

from node.commands.doctor import OK, PROBLEM, WARN, _clock_check, _reach_check, add_arguments, disk_check
from p2p.reach import Reach


def reach(reachable: dict[str, bool], server_time: float = 100.0) -> Reach:
    return Reach("/ip4/203.0.113.7/tcp/51000", server_time, 100.0, 0.01, reachable)


def test_behind_nat_says_which_port_to_forward_and_what_to_announce() -> None:
    fixed = _reach_check(reach({"/ip4/203.0.113.7/tcp/4001": False}), "/ip4/0.0.0.0/tcp/4001")
    assert fixed.status == WARN and "203.0.113.7" in fixed.summary
    assert "forward TCP port 4001" in fixed.advice
    assert "--announce-addr /ip4/203.0.113.7/tcp/4001" in fixed.advice
    assert "through a pinner" in fixed.advice and fixed.details["reachable_directly"] is False
    # A random port (tcp/0) cannot be forwarded: doctor suggests a fixed one first.
    random_port = _reach_check(reach({}), "/ip4/0.0.0.0/tcp/0")
    assert "--listen /ip4/0.0.0.0/tcp/4001" in random_port.advice


def test_reachable_directly_is_ok() -> None:
    check = _reach_check(reach({"/ip4/203.0.113.7/tcp/4001": True}), "/ip4/0.0.0.0/tcp/4001")
    assert check.status == OK and check.details["reachable_addrs"] == ["/ip4/203.0.113.7/tcp/4001"]


def test_clock_skew_verdicts() -> None:
    assert _clock_check(reach({}, server_time=101.0)).status == OK
    warn = _clock_check(reach({}, server_time=110.0))
    assert warn.status == WARN and "NTP" in warn.advice and "behind" in warn.summary
    problem = _clock_check(reach({}, server_time=0.0))
    assert problem.status == PROBLEM and "ahead of" in problem.summary


def test_disk_check_looks_at_the_nearest_existing_parent(tmp_path: Path) -> None:
    check = disk_check(tmp_path / "not" / "yet")
    assert check.status in (OK, WARN) and str(tmp_path) in check.summary


def test_help_describes_every_option() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    options = [a for a in parser._actions if a.option_strings and "--help" not in a.option_strings]
    assert {a.option_strings[0] for a in options} == {
        "--config", "--swarm", "--bootstrap", "--manifest", "--listen", "--announce-addr", "--ipfs-api",
        "--data-dir", "--device", "--json"}
    assert all(a.help for a in options)
