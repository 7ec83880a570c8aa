"""Volunteers on different hosts, two of them behind NAT, learn from each other.

Real `swarm-bootstrap` and `swarm-node join` processes, each in a network namespace of its own
(tests/support/netns.py) with its own IPFS daemon and no loopback shared with any other:

    bridge 198.18.0.0/24: bootstrap, pinner, public trainers pub-a and pub-b
    behind NAT routers:   trainers nat-a and nat-b (they can dial out; nobody can dial them)

Every process runs with the defaults a volunteer gets (listen on every interface, private daemon).
Snapshots of a NATed trainer reach the others through the pinner, which fetches them over the
connection the NATed trainer's daemon opened to it.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from support.netns import Host, NatHost, internet, start_bootstrap

from node.config import NodeConfig
from node.demo import join_argv
from node.status import STATUS_FILE

SWARM = "multihost"
ROUNDS = 5
TIME_BOUND_S = 420.0
BOOTSTRAP_PORT = 4040


def bootstrap_on(host: Host, data_dir: Path) -> str:
    addr = start_bootstrap(host, SWARM, data_dir, f"/ip4/0.0.0.0/tcp/{BOOTSTRAP_PORT}",
                           data_dir / "bootstrap.log")
    assert f"/ip4/{host.ip}/" in addr, f"the bootstrap advertises {addr}, not its address {host.ip}"
    return addr


def join(host: Host, root: Path, name: str, bootstrap: str, **settings: Any) -> subprocess.Popen[Any]:
    data_dir = root / name
    data_dir.mkdir()
    cfg = NodeConfig(swarm=SWARM, bootstrap=[bootstrap], ipfs_api="private", data_dir=data_dir, headless=True,
                     **settings)
    return host.popen(join_argv(cfg), stdout=(root / f"{name}.log").open("w"), stderr=subprocess.STDOUT)


def read_status(data_dir: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((data_dir / STATUS_FILE).read_text()))
    except (OSError, ValueError):  # not written yet
        return {}


def running_round(data_dir: Path) -> int:
    return int(read_status(data_dir).get("round", 0))


def events(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


@pytest.mark.timeout(TIME_BOUND_S + 120)
def test_trainers_on_other_hosts_and_behind_nat_merge_each_other(tmp_path: Path) -> None:
    trainers = ["pub-a", "pub-b", "nat-a", "nat-b"]
    with internet() as net:
        boot_host, pinner_host = net.public_host("boot"), net.public_host("pinner")
        hosts: dict[str, Host] = {"pinner": pinner_host}
        for name in trainers:
            hosts[name] = net.nat_host(name) if name.startswith("nat") else net.public_host(name)
        bootstrap = bootstrap_on(boot_host, tmp_path)
        join(pinner_host, tmp_path, "pinner", bootstrap, role="pinner")
        procs = {name: join(hosts[name], tmp_path, name, bootstrap, dataset="fashion-mnist", partition="iid",
                            clients=len(trainers), client=i, samples_per_client=100, strategy="random",
                            neighbours=len(trainers) - 1, merge_guard=False, lr=0.003, rounds=ROUNDS,
                            round_interval_s=12.0, fetch_timeout_s=10.0)
                 for i, name in enumerate(trainers)}
        deadline = time.monotonic() + TIME_BOUND_S
        while time.monotonic() < deadline and not all(running_round(tmp_path / n) >= 1 for n in trainers):
            time.sleep(1.0)
        # While they run: the IPFS API of every node is refused from another host, and the swarm
        # port of a public one is open to it (which shows the probe itself works).
        status = {name: read_status(tmp_path / name) for name in hosts}
        for name, host in hosts.items():
            api_port = int(status[name]["ipfs_api"].rsplit("/", 1)[1])
            target = host.public_ip if isinstance(host, NatHost) else host.ip
            assert not boot_host.can_connect(target, api_port), f"{name}'s IPFS API is reachable"
        swarm_port = int(status["pub-a"]["ipfs_addrs"][0].split("/tcp/")[1].split("/")[0])
        assert boot_host.can_connect(hosts["pub-a"].ip, swarm_port), "pub-a's IPFS swarm port is closed"
        while time.monotonic() < deadline and any(p.poll() is None for p in procs.values()):
            time.sleep(1.0)
        codes = {name: p.poll() for name, p in procs.items()}
        status = {name: read_status(tmp_path / name) for name in hosts}

    logs = {name: tmp_path / f"{name}.log" for name in trainers}
    assert all(code == 0 for code in codes.values()), \
        f"exit codes {codes}; log tails: " + " || ".join(
            f"{n}: {' | '.join(logs[n].read_text().splitlines()[-4:])}" for n in trainers)
    ids = {status[name]["peer_id"]: name for name in trainers}
    for name in trainers:
        merged_from = {ids.get(p, p) for e in events(logs[name]) for p in e.get("merged", [])}
        assert len(merged_from - {name}) >= 2, f"{name} merged only {sorted(merged_from)}"
        if name.startswith("nat"):
            other_nat = "nat-b" if name == "nat-a" else "nat-a"
            assert other_nat in merged_from, f"{name} never merged {other_nat} (NATed from NATed)"
        assert all(status[name]["ipfs_addrs"]), f"{name} announces no IPFS address"
        for addr in [*status[name]["addrs"], *status[name]["ipfs_addrs"]]:
            assert "/ip4/127." not in addr, f"{name} advertises loopback address {addr} to other hosts"
    assert all(status[n]["pinners"] == 1 for n in trainers), "a trainer did not find the pinner"
    nat_a_id = status["nat-a"]["peer_id"]
    reach_of_nat_a = {p["reach"] for p in status["nat-b"]["peers"] if p["peer_id"] == nat_a_id}
    assert reach_of_nat_a == {"via pinner"}, f"nat-b got nat-a's snapshots {reach_of_nat_a}, not via a pinner"
