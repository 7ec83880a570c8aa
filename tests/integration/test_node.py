"""The peer process for real: `swarm-node join` / `demo` processes, each with its own js-ipfs daemon,
a real `swarm-bootstrap`, libp2p gossip and IPFS bitswap on 127.0.0.1, real Fashion-MNIST."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from node.config import NodeConfig
from node.demo import join_argv
from node.ipfs_setup import private_daemon_pid, start_private
from node.processes import Bootstrap, Child, kill_all
from node.status import read_status, read_status_or_none
from p2p.addresses import LOOPBACK_LISTEN
from storage import IpfsDaemon, IpfsStore, decode
from swarm.strategies import runnable

SWARM = "itest"
BIN = Path(sys.executable).parent


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def records_of(child: Child) -> list[dict]:
    """Every JSON line a finished `join` printed (its headless event log)."""
    records = []
    while not child.lines.empty():
        records.append(json.loads(child.lines.get_nowait()))
    return records


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[list[Child]]:
    """Children started by a test; killed afterwards, with any IPFS daemon left under tmp_path."""
    children: list[Child] = []
    yield children
    kill_all(children)
    # This pkill never matches a js-ipfs daemon (it renames itself `ipfs`): the daemons go with their
    # nodes (storage.daemon.die_with_parent), and conftest fails the run on any that does not.
    subprocess.run(["pkill", "-TERM", "-f", str(tmp_path)], check=False)
    time.sleep(0.5)
    subprocess.run(["pkill", "-KILL", "-f", str(tmp_path)], check=False)


def trainer(tmp_path: Path, name: str, bootstrap: str, client: int, clients: int,
            **over: object) -> NodeConfig:
    settings: dict = dict(swarm=SWARM, bootstrap=[bootstrap], listen=LOOPBACK_LISTEN, ipfs_api="private",
                          data_dir=tmp_path / name,
                          dataset="fashion-mnist", partition="iid", clients=clients, client=client,
                          samples_per_client=100, local_epochs=1, lr=0.003, strategy="dac", neighbours=1,
                          rounds=4, round_interval_s=1.0, headless=True)
    settings.update(over)
    return NodeConfig(**settings)


def start_swarm(tmp_path: Path, procs: list[Child], configs: dict[str, NodeConfig]) -> dict[str, Child]:
    """A bootstrap and one `swarm-node join` process per config, started together (each config's
    `bootstrap` is replaced by this one's address)."""
    boot = Bootstrap(SWARM, tmp_path / "boot")
    procs.append(boot)
    children = {}
    for name, cfg in configs.items():
        children[name] = Child(join_argv(dataclasses.replace(cfg, bootstrap=[boot.addr])),
                               tmp_path / f"{name}.log")
        procs.append(children[name])
    return children


@pytest.mark.parametrize("strategy", runnable("node"))
def test_three_peers_run_each_node_strategy_and_merge(tmp_path: Path, procs: list[Child],
                                                       strategy: str) -> None:
    """Three real peers on 8x8 digits, 3 rounds: each merges a neighbour's model at least once (the
    merge guard off: this is about the strategy's choice reaching a merge); `local` merges nothing."""
    names = ["a", "b", "c"]
    configs = {n: trainer(tmp_path, n, "", i, 3, dataset="digits", strategy=strategy, neighbours=2,
                          rounds=3, round_interval_s=4.0, merge_guard=False)
               for i, n in enumerate(names)}
    children = start_swarm(tmp_path, procs, configs)
    for child in children.values():
        assert child.proc.wait(120) == 0, child.log_path.read_text()[-3000:]
    for name, child in children.items():
        events = records_of(child)
        done = [r for r in events if "test_acc" in r]
        assert done, (name, events[-5:])
        status = read_status(configs[name].data_dir)
        assert len(status.peers) == 2, (name, status.peers)  # it heard of both others
        if strategy == "local":
            assert done[-1]["merges"] == 0 and not [r for r in events if "merged" in r], name
        else:
            assert done[-1]["merges"] >= 1, (name, [r["event"] for r in events])


def test_an_observer_follows_the_swarm_and_publishes_nothing(tmp_path: Path, procs: list[Child]) -> None:
    configs = {"trainer": trainer(tmp_path, "trainer", "", 0, 1, dataset="digits", rounds=3,
                                  round_interval_s=2.0),
               "observer": trainer(tmp_path, "observer", "", 0, 1, dataset="digits", role="observer",
                                   rounds=0)}
    children = start_swarm(tmp_path, procs, configs)
    assert children["trainer"].proc.wait(120) == 0, children["trainer"].log_path.read_text()[-3000:]
    trainer_id = read_status(configs["trainer"].data_dir).peer_id
    wait_until(lambda: any(p.peer_id == trainer_id and p.round >= 3
                           for p in read_status(configs["observer"].data_dir).peers),
               30, "the observer to follow the trainer's last announcement")
    assert children["observer"].stop(30) == 0, children["observer"].log_path.read_text()[-3000:]
    events = records_of(children["observer"])
    assert [r["role"] for r in events if "role" in r] == ["observer"]
    assert not [r for r in events if "published" in r["event"] or "device" in r], events
    observer = read_status(configs["observer"].data_dir)
    assert observer.role == "observer" and observer.bytes_out == 0 and observer.round == 0
    # Nothing of the observer reached the trainer: it never announced itself.
    assert [p.peer_id for p in read_status(configs["trainer"].data_dir).peers] == []


def test_demo_peers_merge_and_beat_training_alone(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [str(BIN / "swarm-node"), "demo", "--headless", "--nodes", "3", "--rounds", "8",
         "--dataset", "fashion-mnist", "--partition", "iid", "--samples-per-client", "100",
         "--local-epochs", "3", "--lr", "0.003", "--neighbours", "2", "--round-interval-s", "1",
         "--timeout-s", "400", "--workdir", str(tmp_path / "work"), "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) >= {"config", "final", "rounds", "bytes_sent_total", "wall_s"}
    assert set(summary["final"]) >= {"mean_acc", "std_acc", "min_acc", "max_acc", "per_client"}
    assert (out / "rounds.csv").exists() and (out / "accuracy.png").exists()
    peers = summary["peers"]
    assert len(peers) == 3 and len({p["peer_id"] for p in peers}) == 3
    # Every peer fetched snapshots from other peers' IPFS daemons, and merged those that did not raise the
    # loss on its own validation data (the merge guard): on 25 validation images one of three iid peers
    # sometimes finds no merge within 10% and keeps training alone (its gain is then 0).
    assert all(p["bytes_in"] > 0 for p in peers), peers
    assert sum(p["merges"] >= 3 for p in peers) >= 2, peers
    # Three peers with 100 samples each learn more together than each alone, on average. Measured with
    # the merge guard in three runs: mean +0.027 / +0.025 / +0.016, per peer down to -0.036 (before the
    # guard: mean +0.043..+0.068, every peer up). A known regression: the guard decides on 25 validation
    # images here and refuses good merges (docs/results.md, "Joining must help"), so no per-peer floor.
    assert summary["final"]["mean_acc"] > summary["final"]["alone_mean_acc"], peers
    assert all(p["gain"] == pytest.approx(p["test_acc"] - p["alone_acc"]) for p in peers), peers
    assert summary["final"]["verdict"].startswith(f"{sum(p['gain'] > 0 for p in peers)} of 3 peers gained")


def test_peers_merge_each_others_models_of_the_same_round(tmp_path: Path) -> None:
    """A round long enough for both peers to train lets each wait for the other's model of this round
    instead of merging the one a round older (without the wait: the peer that started first merges
    last round's model every round, a mean lag of about 0.5 over the two)."""
    out = tmp_path / "out"
    done = subprocess.run(
        [str(BIN / "swarm-node"), "demo", "--headless", "--nodes", "2", "--rounds", "4",
         "--dataset", "fashion-mnist", "--partition", "iid", "--samples-per-client", "100",
         "--neighbours", "1", "--round-interval-s", "15", "--guard-tolerance", "10",
         "--timeout-s", "400", "--workdir", str(tmp_path / "work"), "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    peers = json.loads((out / "summary.json").read_text())["peers"]
    lags = [p["merge_lag"] for p in peers]
    assert all(p["merges"] >= 3 for p in peers) and None not in lags, peers
    assert max(lags) <= 0.5 and sum(lags) / len(lags) < 0.25, lags


def test_pinner_keeps_a_snapshot_fetchable_after_its_publisher_left(tmp_path: Path,
                                                                     procs: list[Child]) -> None:
    boot = Bootstrap(SWARM, tmp_path / "boot")
    procs.append(boot)
    pinner_cfg = trainer(tmp_path, "pinner", boot.addr, 0, 1, role="pinner", rounds=0)
    pinner = Child(join_argv(pinner_cfg), tmp_path / "pinner.log")
    procs.append(pinner)
    wait_until(lambda: (s := read_status_or_none(pinner_cfg.data_dir)) is not None and s.state == "running",
               60, "the pinner to join")
    publisher_cfg = trainer(tmp_path, "publisher", boot.addr, 0, 1, rounds=0)  # until stopped
    publisher = Child(join_argv(publisher_cfg), tmp_path / "publisher.log")
    procs.append(publisher)
    pinned: list[str] = []

    def pinner_pinned() -> bool:
        while not pinner.lines.empty():
            record = json.loads(pinner.lines.get_nowait())
            if record["event"].startswith("pinned"):
                pinned.append(record["cid"])
        return bool(pinned)

    wait_until(pinner_pinned, 180, "the pinner to pin a snapshot")
    assert publisher.stop(30) == 0, publisher.log_path.read_text()[-2000:]
    # The publisher and its IPFS daemon are gone; a newcomer with a fresh daemon asks the pinner's.
    with IpfsDaemon.start(tmp_path / "newcomer") as daemon:
        store = IpfsStore(daemon.api_multiaddr)
        for addr in read_status(pinner_cfg.data_dir).ipfs_addrs:
            store.connect(addr)
        snapshot = decode(store.get(pinned[-1], timeout=30))
    assert snapshot.meta["peer_id"] == read_status(publisher_cfg.data_dir).peer_id
    assert snapshot.meta["round"] >= 1


def test_killed_trainer_resumes_from_its_checkpoint_with_the_same_peer_id(tmp_path: Path,
                                                                          procs: list[Child]) -> None:
    boot = Bootstrap(SWARM, tmp_path / "boot")
    procs.append(boot)
    other_cfg = trainer(tmp_path, "other", boot.addr, 1, 2, rounds=0)  # runs until the test ends
    victim_cfg = trainer(tmp_path, "victim", boot.addr, 0, 2, rounds=6)
    procs.append(Child(join_argv(other_cfg), tmp_path / "other.log"))
    victim = Child(join_argv(victim_cfg), tmp_path / "victim.log")
    procs.append(victim)
    wait_until(lambda: (s := read_status_or_none(victim_cfg.data_dir)) is not None and s.round >= 3, 180,
               "the victim to reach round 3")
    before = read_status(victim_cfg.data_dir)
    os.kill(victim.proc.pid, signal.SIGKILL)
    victim.proc.wait(10)
    restarted = Child(join_argv(victim_cfg), tmp_path / "victim-2.log")
    procs.append(restarted)
    assert restarted.proc.wait(240) == 0, restarted.log_path.read_text()[-3000:]
    after = read_status(victim_cfg.data_dir)
    assert after.peer_id == before.peer_id
    events = records_of(restarted)
    resumed = [r["event"] for r in events if r["event"].startswith("resumed from checkpoint at round")]
    assert resumed and int(resumed[0].rsplit(" ", 1)[1]) >= before.round - 1
    assert after.round == 6 and after.state == "stopped"
    assert [r for r in events if "test_acc" in r][-1]["merges"] >= 1
    # A snapshot names as parents exactly the snapshots merged in the round before, even when
    # their publisher has announced a newer one since.
    merged = {r["round"]: r["merged_cids"] for r in events if "merged_cids" in r}
    published = {r["round"]: r["parents"] for r in events if "parents" in r}
    checked = [rnd for rnd in published if rnd - 1 in merged]
    assert checked, events
    assert all(sorted(published[rnd]) == sorted(merged[rnd - 1]) for rnd in checked), (published, merged)


def test_a_peer_that_leaves_says_so_and_is_not_fetched_from_again(tmp_path: Path,
                                                                   procs: list[Child]) -> None:
    boot = Bootstrap(SWARM, tmp_path / "boot")
    procs.append(boot)
    stayer_cfg = trainer(tmp_path, "stayer", boot.addr, 0, 2, rounds=0, fetch_timeout_s=5.0)  # until stopped
    leaver_cfg = trainer(tmp_path, "leaver", boot.addr, 1, 2, rounds=3)
    stayer = Child(join_argv(stayer_cfg), tmp_path / "stayer.log")
    procs.append(stayer)
    leaver = Child(join_argv(leaver_cfg), tmp_path / "leaver.log")
    procs.append(leaver)
    assert leaver.proc.wait(240) == 0, leaver.log_path.read_text()[-2000:]
    events: list[dict] = []

    def rounds_since_the_goodbye() -> int:
        events.extend(records_of(stayer))
        left = next((i for i, r in enumerate(events) if "peer_left" in r), None)
        return -1 if left is None else sum("round_timings" in r for r in events[left:])

    wait_until(lambda: rounds_since_the_goodbye() >= 3, 120, "the stayer to hear the goodbye and train on")
    left = next(i for i, r in enumerate(events) if "peer_left" in r)
    assert events[left]["peer_left"] == read_status(leaver_cfg.data_dir).peer_id
    # The round under way when the goodbye arrived may have chosen the leaver already; no later one does.
    end_of_that_round = next(i for i in range(left, len(events)) if "round_timings" in events[i])
    later = events[end_of_that_round + 1:]
    assert not [r for r in later if r["event"].startswith("fetch") or "merged" in r], later


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie awaiting its reaper has stopped running)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the daemon dies with its node on Linux")
def test_a_sigkilled_node_does_not_leave_its_ipfs_daemon_running(tmp_path: Path, procs: list[Child]) -> None:
    boot = Bootstrap(SWARM, tmp_path / "boot")
    procs.append(boot)
    cfg = trainer(tmp_path, "victim", boot.addr, 0, 1, rounds=0)
    node = Child(join_argv(cfg), tmp_path / "victim.log")
    procs.append(node)
    # The pid file is written once the daemon answers on its API.
    wait_until(lambda: private_daemon_pid(cfg.data_dir) is not None, 120, "the node's private IPFS daemon")
    daemon = private_daemon_pid(cfg.data_dir)
    assert daemon is not None and _alive(daemon)
    time.sleep(2)  # let the node get on with its start (gossip, training): a node killed mid-way
    os.kill(node.proc.pid, signal.SIGKILL)
    node.proc.wait(10)
    wait_until(lambda: not _alive(daemon), 10, f"the daemon (pid {daemon}) of the killed node to exit")


def test_a_restarted_node_stops_the_daemon_its_killed_life_left(tmp_path: Path) -> None:
    """The guard for platforms without a parent-death signal (and a second one on Linux)."""
    left = start_private(tmp_path)  # stands for a daemon whose node was SIGKILLed and did not take it along
    try:
        pid = private_daemon_pid(tmp_path)
        assert pid is not None and _alive(pid)
        again = start_private(tmp_path)
        try:
            assert not _alive(pid)
            assert again.peer_id == left.peer_id  # same repo, same identity
        finally:
            again.close()
    finally:
        left.proc = None  # already stopped by the restart; nothing of its own to stop
        left.close()


def test_a_node_with_an_epsilon_ceiling_merges_only_peers_within_it(tmp_path: Path,
                                                                     procs: list[Child]) -> None:
    """Three trainers: one asks for --max-peer-epsilon 5; one spends at most epsilon 1, one has spent
    12 after its first round (target 100 over 60 rounds). The picky one merges the first and never
    fetches the second."""
    boot = Bootstrap(SWARM, tmp_path / "boot")
    procs.append(boot)
    # The DP peers outlive the test (which ends them): their budgets are planned over 60 rounds.
    small_cfg = trainer(tmp_path, "small", boot.addr, 1, 3, dp_epsilon=1.0, rounds=60, round_interval_s=3.0)
    large_cfg = trainer(tmp_path, "large", boot.addr, 2, 3, dp_epsilon=100.0, rounds=60, round_interval_s=3.0)
    picky_cfg = trainer(tmp_path, "picky", boot.addr, 0, 3, rounds=0, round_interval_s=2.0, strategy="random",
                        neighbours=2, max_peer_epsilon=5.0, merge_weights="noise-aware", merge_guard=False)
    picky = Child(join_argv(picky_cfg), tmp_path / "picky.log")
    procs.append(picky)
    for cfg in (small_cfg, large_cfg):
        procs.append(Child(join_argv(cfg), tmp_path / f"{cfg.data_dir.name}.log"))
    events: list[dict] = []

    def merged_thrice_knowing_both() -> bool:
        events.extend(records_of(picky))
        status = read_status_or_none(picky_cfg.data_dir)
        known = [] if status is None else [r for r in status.peers if r.epsilon is not None]
        return len(known) == 2 and sum("merged" in r for r in events) >= 3

    wait_until(merged_thrice_knowing_both, 200, "the picky peer to know both DP peers and merge 3 times")
    small, large = read_status(small_cfg.data_dir), read_status(large_cfg.data_dir)
    merged = [p for r in events if "merged" in r for p in r["merged"]]
    assert small.peer_id in merged and large.peer_id not in merged, [r["event"] for r in events]
    assert not [r for r in events if "fetch" in r["event"] and large.peer_id[-8:] in r["event"]], events
    # The picky node's view shows what each announced it spent.
    rows = {row.peer_id: row for row in read_status(picky_cfg.data_dir).peers}
    assert rows[large.peer_id].epsilon is not None and rows[large.peer_id].epsilon > 5.0
    assert rows[small.peer_id].epsilon is not None and rows[small.peer_id].epsilon <= 1.0
