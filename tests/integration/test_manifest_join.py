"""A swarm manifest for real: `swarm-node manifest create` puts it and its initial weights in a real
IPFS daemon, `manifest show` reads it back, `join --manifest` starts from it, and a joiner that does
not fit (another model, an unknown class folder) is refused with what to change. A real
`swarm-bootstrap --manifest` offers it to joiners that pass none and to `swarm-node publish`, whose
seeds peers merge only when their class order is the swarm's."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from node.processes import Bootstrap, Child, ProcError, kill_all
from node.status import short_id
from p2p.addresses import LOOPBACK_LISTEN
from p2p.identity import KEY_FILE, load_or_create, peer_id_of
from storage import IpfsDaemon, IpfsStore, decode, encode
from storage.manifest import Manifest
from swarm.data import INFO
from swarm.models import build_model

NODE = [sys.executable, "-m", "node.cli"]
SWARM = "manifests"


def swarm_node(*argv: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NODE, *argv], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def daemon(ipfs_daemon: Callable[..., IpfsDaemon]) -> IpfsDaemon:
    return ipfs_daemon()


def create_manifest(daemon: IpfsDaemon, seed: int) -> str:
    created = swarm_node("manifest", "create", "--dataset", "digits", "--seed", str(seed),
                         "--ipfs-api", daemon.api_multiaddr)
    assert created.returncode == 0, created.stderr
    return created.stdout.strip()


@pytest.fixture(scope="module")
def manifest_cid(daemon: IpfsDaemon) -> str:
    return create_manifest(daemon, 3)


def join_argv(daemon: IpfsDaemon, data_dir: Path, cid: str, *extra: str) -> list[str]:
    """`join` of a digits shard peer; with `--manifest cid` unless `cid` is ""."""
    return [*NODE, "join", *(["--manifest", cid] if cid else []), "--ipfs-api", daemon.api_multiaddr,
            "--swarm", SWARM, "--listen", LOOPBACK_LISTEN, "--data-dir", str(data_dir), "--headless",
            "--dataset", "digits", "--partition", "iid", "--clients", "2", "--samples-per-client", "100",
            "--rounds", "2", *extra]


def join(daemon: IpfsDaemon, tmp_path: Path, cid: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(join_argv(daemon, tmp_path / "node", cid, *extra), capture_output=True, text=True,
                          timeout=240)


def events_of(stdout: str) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return sum(float((a[k] - b[k]).norm()) for k in b)


def assert_started_from(daemon: IpfsDaemon, manifest_cid: str, events: list[dict]) -> None:  # type: ignore[type-arg]
    """The node's first snapshot is two rounds of training away from the manifest's initial weights
    (seed 3), far from those it would start from without a manifest (its --seed, 0)."""
    store = IpfsStore(daemon.api_multiaddr)
    manifest = Manifest.from_bytes(store.get(manifest_cid))
    first = decode(store.get(next(e["cid"] for e in events if e.get("round") == 1 and "cid" in e)))
    init = decode(store.get(manifest.init)).state_dict
    torch.manual_seed(0)
    own = build_model("digits-mlp").state_dict()
    assert distance(first.state_dict, init) < distance(first.state_dict, own) / 2


@pytest.fixture(scope="module")
def other_manifest_cid(daemon: IpfsDaemon) -> str:
    """A manifest of the same model and classes with other initial weights: another swarm's."""
    return create_manifest(daemon, 4)


def test_create_puts_the_manifest_and_its_initial_weights_in_ipfs(daemon: IpfsDaemon,
                                                                  manifest_cid: str) -> None:
    store = IpfsStore(daemon.api_multiaddr)
    manifest = Manifest.from_bytes(store.get(manifest_cid))
    assert (manifest.model, manifest.input_shape, manifest.classes) == ("digits-mlp", (1, 8, 8),
                                                                      INFO["digits"].classes)
    assert decode(store.get(manifest.init)).state_dict["net.1.weight"].shape == (64, 64)
    shown = swarm_node("manifest", "show", manifest_cid, "--ipfs-api", daemon.api_multiaddr)
    assert shown.returncode == 0 and "digits-mlp" in shown.stdout and manifest.labels in shown.stdout


def test_join_starts_from_the_manifests_initial_weights(
        daemon: IpfsDaemon, manifest_cid: str, tmp_path: Path) -> None:
    joined = join(daemon, tmp_path, manifest_cid)
    assert joined.returncode == 0, joined.stderr
    events = events_of(joined.stdout)
    assert any(e["event"].startswith("finished 2 rounds") for e in events)
    assert_started_from(daemon, manifest_cid, events)
    assert "class folders" not in joined.stdout


def test_join_refuses_another_model_saying_what_to_change(daemon: IpfsDaemon, manifest_cid: str,
                                                          tmp_path: Path) -> None:
    refused = join(daemon, tmp_path, manifest_cid, "--model", "fashion-cnn")
    assert refused.returncode != 0
    assert ("--model fashion-cnn differs from the swarm manifest's model digits-mlp: drop --model"
            in refused.stderr)


def test_join_refuses_a_class_folder_the_manifest_does_not_know(daemon: IpfsDaemon, manifest_cid: str,
                                                                tmp_path: Path) -> None:
    from PIL import Image

    for name in ("3", "7", "seven"):
        (tmp_path / "photos" / name).mkdir(parents=True)
        for i in range(5):
            Image.new("L", (8, 8), 40 * i).save(tmp_path / "photos" / name / f"{i}.png")
    refused = join(daemon, tmp_path, manifest_cid, "--image-folder", str(tmp_path / "photos"))
    assert refused.returncode != 0
    assert "class folder 'seven' is not among the swarm's classes; expected names: '0', '1'" in refused.stderr



def test_join_without_manifest_takes_the_one_the_bootstrap_offers(
        daemon: IpfsDaemon, manifest_cid: str, tmp_path: Path) -> None:
    boot = Bootstrap(SWARM, tmp_path / "boot", extra=["--manifest", manifest_cid])
    try:
        joined = join(daemon, tmp_path, "", "--bootstrap", boot.addr)
    finally:
        kill_all([boot])
    assert joined.returncode == 0, joined.stderr
    events = events_of(joined.stdout)
    assert any(e["event"] == f"swarm manifest {manifest_cid}: offered by bootstrap {short_id(boot.addr)}"
               for e in events), joined.stdout
    assert_started_from(daemon, manifest_cid, events)


def test_join_refuses_a_manifest_other_than_the_bootstraps_saying_which_to_use(
        daemon: IpfsDaemon, manifest_cid: str, other_manifest_cid: str, tmp_path: Path) -> None:
    boot = Bootstrap(SWARM, tmp_path / "boot", extra=["--manifest", manifest_cid])
    try:
        refused = join(daemon, tmp_path, other_manifest_cid, "--bootstrap", boot.addr)
    finally:
        kill_all([boot])
    assert refused.returncode != 0
    assert (f"--manifest {other_manifest_cid} differs from the manifest {manifest_cid} that bootstrap "
            f"{short_id(boot.addr)} offers for swarm {SWARM}: drop --manifest to use the bootstrap's, or "
            f"pass --manifest {manifest_cid}") in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (tmp_path / "node" / "checkpoint").exists()


def publisher_id(data_dir: Path) -> str:
    return peer_id_of(load_or_create(data_dir / KEY_FILE))


def private(argv: list[str]) -> list[str]:
    """`argv` with the node's own IPFS daemon instead of the shared one: it knows no other daemon."""
    at = argv.index("--ipfs-api") + 1
    return [*argv[:at], "private", *argv[at + 1:]]


def test_a_joiner_with_a_private_daemon_fetches_the_manifest_from_the_peers_it_meets(
        daemon: IpfsDaemon, manifest_cid: str, tmp_path: Path) -> None:
    """A volunteer's node starts its own IPFS daemon, which knows no other daemon: it takes the manifest's
    CID from the bootstrap, meets the running peer on gossip, dials that peer's daemon, fetches the
    manifest and the initial weights from it, then trains and merges the peer's model."""
    children: list[Child] = []
    try:
        boot = Bootstrap(SWARM, tmp_path / "boot", extra=["--manifest", manifest_cid])
        children.append(boot)
        children.append(Child(join_argv(daemon, tmp_path / "peer", manifest_cid, "--bootstrap", boot.addr,
                                        "--rounds", "200", "--round-interval-s", "1"), tmp_path / "peer.log"))
        volunteer = join_argv(daemon, tmp_path / "volunteer", "", "--bootstrap", boot.addr, "--rounds", "6",
                              "--round-interval-s", "1", "--no-merge-guard")
        joined = subprocess.run(private(volunteer), capture_output=True, text=True, timeout=240)
    finally:
        kill_all(children)
    assert joined.returncode == 0, joined.stderr
    events = events_of(joined.stdout)
    said = [e["event"] for e in events]
    assert any(e.startswith("started a private IPFS daemon") for e in said), said
    assert f"swarm manifest {manifest_cid}: offered by bootstrap {short_id(boot.addr)}" in said
    assert any(e.startswith("finished 6 rounds") for e in said), said
    peer = publisher_id(tmp_path / "peer")
    assert any(peer in e.get("merged", []) for e in events), said


def test_a_joiner_that_meets_nobody_holding_the_manifest_says_what_to_do(
        daemon: IpfsDaemon, manifest_cid: str, tmp_path: Path) -> None:
    alone = join_argv(daemon, tmp_path / "node", manifest_cid, "--fetch-timeout-s", "2")
    refused = subprocess.run(private(alone), capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0
    assert (f"cannot fetch the swarm manifest {manifest_cid} or its initial weights" in refused.stderr
            and "In 6 s this node met 0 peer(s) on gossip" in refused.stderr
            and "check --bootstrap" in refused.stderr), refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_seed_is_merged_by_peers_of_its_class_order_and_skipped_by_others(
        daemon: IpfsDaemon, manifest_cid: str, tmp_path: Path) -> None:
    """Two bootstraps: one offers the manifest, one knows none. The node asks both and joins by the
    manifest; a seed published through the first takes the manifest's class order and is merged; a seed
    of the same weights published through the second with the digits in reverse order is skipped."""
    store = IpfsStore(daemon.api_multiaddr)
    init = decode(store.get(Manifest.from_bytes(store.get(manifest_cid)).init)).state_dict
    seed = tmp_path / "seed.snap"
    seed.write_bytes(encode(init, meta={"round": 1, "samples": 500}))
    right, wrong = publisher_id(tmp_path / "right"), publisher_id(tmp_path / "wrong")
    reversed_digits = ",".join(reversed(INFO["digits"].classes))
    children: list[Child] = []
    try:
        offering = Bootstrap(SWARM, tmp_path / "boot1", extra=["--manifest", manifest_cid])
        plain = Bootstrap(SWARM, tmp_path / "boot2")
        children += [offering, plain]
        # Merges from round 1 and whatever the model: this test is about whom the node merges, not why.
        node = Child(join_argv(daemon, tmp_path / "node", "", "--bootstrap", offering.addr, "--bootstrap",
                               plain.addr, "--rounds", "30", "--round-interval-s", "2", "--no-merge-guard"),
                     tmp_path / "node.log")
        children.append(node)
        seen: list[dict] = []  # type: ignore[type-arg]

        def wait_for(what: str, timeout: float = 120) -> dict:  # type: ignore[type-arg]
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    event = json.loads(node.next_line(max(0.1, deadline - time.monotonic())))
                except (ValueError, ProcError):  # a line that is not JSON, or none yet
                    continue
                seen.append(event)
                if what in event["event"]:
                    return event
            raise AssertionError(f"the node never said {what!r}; it said {[e['event'] for e in seen]}")

        wait_for(f"swarm manifest {manifest_cid}: offered by bootstrap {short_id(offering.addr)}")
        wait_for("joined swarm")
        publish = [*NODE, "publish", str(seed), "--swarm", SWARM, "--ipfs-api", daemon.api_multiaddr]
        published = [subprocess.Popen([*publish, "--bootstrap", offering.addr, "--data-dir",
                                       str(tmp_path / "right")], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True),
                     subprocess.Popen([*publish, "--bootstrap", plain.addr, "--data-dir",
                                       str(tmp_path / "wrong"), "--classes", reversed_digits],
                                      stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)]
        for proc in published:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
        wait_for(f"skipped announcement of {short_id(wrong)}: class order")
        merged = wait_for(f"merged {short_id(right)}")
        assert merged["merged"] == [right]
        node.stop()
        while not node.lines.empty():
            line = node.lines.get_nowait()
            if line.startswith("{"):
                seen.append(json.loads(line))
    finally:
        kill_all(children)
    assert not any(wrong in e.get("merged", []) for e in seen)


def test_publish_refuses_a_seed_of_another_class_order_than_the_manifests(
        daemon: IpfsDaemon, manifest_cid: str, tmp_path: Path) -> None:
    store = IpfsStore(daemon.api_multiaddr)
    seed = tmp_path / "seed.snap"
    seed.write_bytes(encode(decode(store.get(Manifest.from_bytes(store.get(manifest_cid)).init)).state_dict))
    refused = swarm_node("publish", str(seed), "--swarm", SWARM, "--ipfs-api", daemon.api_multiaddr,
                         "--manifest", manifest_cid, "--dataset", "fashion-mnist",
                         "--data-dir", str(tmp_path / "pub"), timeout=120)
    assert refused.returncode == 1
    assert "are not those of the swarm's manifest" in refused.stderr and "Traceback" not in refused.stderr
    other_model = tmp_path / "other.snap"
    other_model.write_bytes(encode(build_model("fashion-cnn").state_dict()))
    refused = swarm_node("publish", str(other_model), "--swarm", SWARM, "--ipfs-api", daemon.api_multiaddr,
                         "--manifest", manifest_cid, "--data-dir", str(tmp_path / "pub"), timeout=120)
    assert refused.returncode == 1
    assert "is not a digits-mlp with 1 input channel(s) and 10 classes" in refused.stderr


def doctor(daemon: IpfsDaemon, tmp_path: Path, *args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    done = swarm_node("doctor", "--json", "--swarm", SWARM, "--listen", LOOPBACK_LISTEN, "--ipfs-api",
                      daemon.api_multiaddr, "--data-dir", str(tmp_path / "node"), *args, timeout=90)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)["checks"]["manifest"]


def test_doctor_shows_the_manifest_join_would_take_and_refuses_a_conflict(
        daemon: IpfsDaemon, manifest_cid: str, other_manifest_cid: str, tmp_path: Path) -> None:
    boot = Bootstrap(SWARM, tmp_path / "boot", extra=["--manifest", manifest_cid])
    try:
        _, offered = doctor(daemon, tmp_path, "--bootstrap", boot.addr)
        code, conflict = doctor(daemon, tmp_path, "--bootstrap", boot.addr, "--manifest", other_manifest_cid)
    finally:
        kill_all([boot])
    assert offered["status"] == "OK", offered
    assert offered["summary"].startswith(f"{manifest_cid} (offered by the bootstrap): model digits-mlp, "
                                         "1x8x8 inputs, 10 classes (labels-"), offered
    assert code == 1 and conflict["status"] == "PROBLEM"
    assert f"differs from the manifest {manifest_cid} that bootstrap" in conflict["advice"], conflict
