"""`swarm-node publish` end to end: a real js-ipfs daemon, a real bootstrap and a real gossip peer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from support.peers import Peer

from node.processes import Bootstrap, Child, kill_all
from storage import IpfsDaemon, IpfsStore, cid_of, decode, encode
from storage.manifest import labels_fingerprint

SWARM = "pub"


@pytest.fixture
def daemon():  # type: ignore[no-untyped-def]
    with IpfsDaemon.start() as d:
        yield d


def test_publish_puts_pins_and_announces(tmp_path: Path, daemon: IpfsDaemon) -> None:
    torch.manual_seed(0)
    snapshot = tmp_path / "seed.snap"
    snapshot.write_bytes(encode({"w": torch.randn(16, 8), "b": torch.zeros(8)}, encoding="fp16",
                                meta={"round": 7, "samples": 1000, "train_loss": 0.25}))
    children: list[Child] = []
    try:
        boot = Bootstrap(SWARM, tmp_path / "boot")
        children.append(boot)
        peer = Peer(SWARM, tmp_path / "peer", [boot.addr])
        children.append(peer)
        done = subprocess.run(
            [sys.executable, "-m", "node.cli", "publish", str(snapshot), "--swarm", SWARM,
             "--bootstrap", boot.addr, "--ipfs-api", daemon.api_multiaddr,
             "--data-dir", str(tmp_path / "publisher"), "--classes", "cat,dog"],
            capture_output=True, text=True, timeout=90)
        assert done.returncode == 0, done.stderr
        cid = done.stdout.strip()
        got = peer.wait_for(lambda r: r["event"] == "recv" and r["cid"] == cid, 15)
        assert got["round"] == 7
        assert got["labels"] == labels_fingerprint(("cat", "dog"))  # peers of another order skip it
        # Stamped with its publisher (nodes take a snapshot only from the peer its meta names), the
        # weights untouched.
        stored = IpfsStore(daemon.api_multiaddr).get(cid)
        assert cid == cid_of(stored)
        published, original = decode(stored), decode(snapshot.read_bytes())
        assert published.meta == {**original.meta, "peer_id": got["publisher"]}
        assert published.encoding == "fp16"
        assert all(torch.equal(published.state_dict[k], v) for k, v in original.state_dict.items())
    finally:
        kill_all(children)


def test_publish_refuses_a_file_that_is_not_a_snapshot(tmp_path: Path) -> None:
    bad = tmp_path / "bad.snap"
    bad.write_bytes(b"definitely not a snapshot")
    done = subprocess.run([sys.executable, "-m", "node.cli", "publish", str(bad), "--swarm", SWARM],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "not a valid snapshot" in done.stderr and "Traceback" not in done.stderr


def test_publish_refuses_a_seed_whose_class_order_is_unknown(tmp_path: Path) -> None:
    """Without a manifest (none given, no bootstrap offering one), --dataset or --classes, peers of any
    class order would take the seed as theirs: nothing is put in IPFS or announced."""
    snapshot = tmp_path / "seed.snap"
    snapshot.write_bytes(encode({"w": torch.zeros(4, 2)}))
    done = subprocess.run([sys.executable, "-m", "node.cli", "publish", str(snapshot), "--swarm", SWARM,
                           "--ipfs-api", "/ip4/127.0.0.1/tcp/9"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and not done.stdout
    assert "which class each output of" in done.stderr and "--manifest CID" in done.stderr
    assert "Traceback" not in done.stderr


def test_publish_refuses_another_peers_snapshot(tmp_path: Path) -> None:
    """Nodes take a snapshot only from the peer its meta names: republished under another identity it
    would be refused by every peer, so publish says so before anything is put in IPFS."""
    snapshot = tmp_path / "theirs.snap"
    snapshot.write_bytes(encode({"w": torch.zeros(4, 2)}, meta={"peer_id": "12D3KooWsomeoneElse"}))
    done = subprocess.run([sys.executable, "-m", "node.cli", "publish", str(snapshot), "--swarm", SWARM,
                           "--classes", "cat,dog", "--ipfs-api", "/ip4/127.0.0.1/tcp/9",
                           "--data-dir", str(tmp_path / "me")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and not done.stdout
    assert "is a snapshot of peer 12D3KooWsomeoneElse" in done.stderr and "Traceback" not in done.stderr
