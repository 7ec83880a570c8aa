"""Lineage of a real swarm: after a small demo, `swarm-node lineage` walks a final snapshot back to
first-round snapshots of several publishers, from the snapshot caches the peers left in the work dir
(their IPFS daemons have stopped), with merge weights that sum to 1 per merge."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def test_lineage_of_a_demo_snapshot_reaches_first_rounds_of_several_publishers(tmp_path: Path) -> None:
    work, out = tmp_path / "work", tmp_path / "out"
    # A guard tolerance of 10 lets every merge through: this test is about provenance, not its quality.
    demo = subprocess.run(
        [str(BIN / "swarm-node"), "demo", "--headless", "--nodes", "3", "--rounds", "4",
         "--dataset", "fashion-mnist", "--partition", "iid", "--samples-per-client", "100",
         "--local-epochs", "1", "--neighbours", "2", "--round-interval-s", "1", "--guard-tolerance", "10",
         "--timeout-s", "300", "--workdir", str(work), "--out", str(out)],
        capture_output=True, text=True, timeout=480,
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    peers = json.loads((out / "summary.json").read_text())["peers"]
    finals = [max(p["published"], key=p["published"].get) for p in peers]
    assert all(cid in demo.stdout for cid in finals), demo.stdout[-3000:]
    assert "lineage of #" in demo.stdout and "(self, weight 1.00)" in demo.stdout, demo.stdout[-3000:]

    root = finals[max(range(3), key=lambda i: peers[i]["merges"])]
    done = subprocess.run(
        [str(BIN / "swarm-node"), "lineage", root, "--data-dir", str(work), "--json", "--depth", "6",
         "--ipfs-api", "/ip4/127.0.0.1/tcp/9", "--timeout", "5"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    graph = json.loads(done.stdout)
    nodes = graph["nodes"]
    assert graph["root"] == root and graph["cycles"] == 0
    first_rounds = {n["peer_id"] for n in nodes.values() if n["status"] == "ok" and n["round"] == 1}
    assert len(first_rounds) >= 2, nodes
    merges = [n for n in nodes.values() if len(n["parents"]) > 1]
    assert merges, nodes
    for n in nodes.values():
        if n["parents"]:
            assert sum(e["weight"] for e in n["parents"]) == pytest.approx(1.0), n
            assert sum(e["self_parent"] for e in n["parents"]) == 1, n
    assert all(e["similarity"] is not None for n in merges for e in n["parents"] if not e["self_parent"])
