"""A short chaos run (bench/chaos.py): 3 trainers + 1 pinner + bootstrap, each trainer with its own
js-ipfs daemon, under a fixed schedule in docker/fault_schedule.py's format: a two-halves network
partition (root only: bench/netsplit.py; node-1 and the bootstrap in one half, the rest in the
other), kill -9 and restart a trainer, stall one (SIGSTOP/SIGCONT), kill an IPFS daemon (of half B,
restarted there) and restart it, kill the bootstrap."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCHEDULE = """\
# swarm-node fault schedule v1
{"t": 6, "action": "partition", "target": "halves"}
{"t": 18, "action": "heal", "target": "halves"}
{"t": 20, "action": "kill", "target": "node-1"}
{"t": 22, "action": "pause", "target": "node-2"}
{"t": 24, "action": "kill", "target": "kubo-3"}
{"t": 26, "action": "kill", "target": "bootstrap"}
{"t": 30, "action": "start", "target": "node-1"}
{"t": 32, "action": "unpause", "target": "node-2"}
{"t": 36, "action": "start", "target": "bootstrap"}
{"t": 38, "action": "start", "target": "kubo-3"}
"""


def test_short_chaos_run_loses_nothing(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH))  # bench/ is scripts, not a package
    try:
        chaos = importlib.import_module("chaos")
    finally:
        sys.path.remove(str(BENCH))
    faults = chaos.schedule_module().parse(SCHEDULE.splitlines())
    report = chaos.run(tmp_path, trainers=3, pinners=1, duration=75, faults=faults)
    if report.partition_skipped:  # not root: the partition lines are left out, the rest runs
        faults = [f for f in faults if f.target != "halves"]
    else:
        assert len(report.cuts) == 1 and report.bridge_bytes_during_cuts == 0
        view = report.split["pinner-1"]  # in half B; node-1 is the far half
        assert view.far_sent >= 1 and view.far_seen_before_heal == 0, view
    assert report.faults_applied == len(faults), report.fault_errors
    assert report.unexpected_deaths == []
    assert report.corrupted == 0 and report.state_files_checked >= 8
    assert list(report.kills) == ["node-1"]
    assert report.resumed == 1 and report.resumed_ok == 1, (report.kills, report.resume_events)
    # Once every fault is healed, every trainer's announcements reach the pinner again.
    assert set(report.sent_after_heal) == {"node-1", "node-2", "node-3"}, report.sent_after_heal
    assert all(report.seen_after_heal[t] >= 1 for t in report.sent_after_heal), report.seen_after_heal
    assert report.fetch_tried >= 3 and report.fetchable == report.fetch_tried
