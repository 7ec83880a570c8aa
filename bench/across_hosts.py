"""What it costs a snapshot, and a new volunteer, to cross hosts and NAT instead of loopback.

Every other bench runs all peers on 127.0.0.1, where every process reaches every other. Real
volunteers sit on other hosts, many behind home routers nobody can dial; their snapshots then travel
through a pinner. This bench builds those hosts as network namespaces (tests/support/netns.py) and
measures, on real processes, against the same-host row of the same run:

1. fetch: seconds for a daemon to get a 1 MB blob (random bytes: no block is ever already there, the
   size of a small snapshot) another daemon has just put, --repeats times, paths interleaved:
   - same host: two daemons in one namespace, the fetcher connected to the publisher over 127.0.0.1;
   - direct: publisher and fetcher on two public hosts, the fetcher dialled the publisher's
     announced address;
   - NATed via the pinner: publisher and fetcher each behind its own NAT, both connected to a
     pinner on a public host (as nodes keep themselves). Once the blob is put, the pinner pins it
     and the fetcher gets it at the same time, as on an announcement; the figure is the fetcher's
     get, which waits for the pinner to fetch the blob over the publisher's outbound connection.
   Each daemon is driven by bench/_ipfs_agent.py in its namespace (an IPFS API is on 127.0.0.1 of
   its own namespace only).
2. join: 3 real `swarm-node join` trainers plus `swarm-bootstrap` (and a pinner for NAT) per
   scenario: all on one host on 127.0.0.1, each on a public host of its own, each behind a NAT of
   its own. Per trainer: its first merge's time minus the time its process was started, and minus
   the time it said "joined swarm" (so the start-up cost of torch and the IPFS daemon shows apart
   from the rounds). Median over trainers.

    SWARM_JSIPFS=... nice -n 5 timeout 1200 .venv/bin/python bench/across_hosts.py --out results.json

Needs root, iproute2 and nftables (see tests/support/netns.py); works inside tools/loopback-only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the netns harness is test support

from support.netns import Host, Internet, Lines, NetnsError, internet, start_bootstrap

from node.config import NodeConfig
from node.demo import join_argv

REPO = Path(__file__).resolve().parents[1]
BLOB_BYTES = 1 << 20
AGENT = Path(__file__).with_name("_ipfs_agent.py")
AGENT_START_S = 120.0  # js-ipfs takes seconds to start, more on a loaded machine
AGENT_REPLY_S = 90.0  # beyond the agent's own 60 s IPFS timeout
LOOPBACK, EVERY_INTERFACE = "127.0.0.1", "0.0.0.0"
BOOTSTRAP_PORT = 4040
TRAINERS = 3
# The three placements, the first the baseline: fetch paths and join scenarios alike.
SAME, DIRECT, NAT = PLACES = ("same host", "direct across hosts", "NATed via pinner")
# Settings of tests/integration/test_multihost.py with shorter rounds: the first merge is the figure.
# 6 rounds, not fewer: a NATed trainer that fetches before it has heard of the pinner waits out the
# fetch timeout (dial, then get: 20 s); with 3 rounds of 5 s it could finish without ever merging.
TRAINER_SETTINGS: dict[str, Any] = dict(
    dataset="fashion-mnist", partition="iid", clients=TRAINERS, samples_per_client=100,
    strategy="random", neighbours=TRAINERS - 1, merge_guard=False, lr=0.003, rounds=6,
    round_interval_s=5.0, fetch_timeout_s=10.0)


class BenchError(RuntimeError):
    """A process of the bench failed or did not answer in time."""


# -- IPFS agents ---------------------------------------------------------------------------------------

@dataclass
class Agent:
    """An IPFS daemon in some namespace, behind bench/_ipfs_agent.py."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    peer_id: str = ""
    addrs: list[str] = field(default_factory=list)
    _lines: Lines | None = None

    def send(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        self.proc.stdin.flush()

    def receive(self, timeout: float = AGENT_REPLY_S) -> dict[str, Any]:
        """The agent's next reply; BenchError for an error reply, silence or exit."""
        reply: dict[str, Any] = json.loads(self._next_line(timeout))
        if "error" in reply:
            raise BenchError(f"agent {self.name}: {reply['error']}")
        return reply

    def call(self, **cmd: Any) -> dict[str, Any]:
        self.send(**cmd)
        return self.receive()

    def addr_on(self, ip: str) -> str:
        """The announced address of this daemon on `ip`."""
        for addr in self.addrs:
            if addr.startswith(f"/ip4/{ip}/"):
                return addr
        raise BenchError(f"agent {self.name} announces {self.addrs}, nothing on {ip}")

    def _next_line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        if self._lines is None:
            self._lines = Lines(self.proc.stdout)
        try:
            return self._lines.next(timeout)
        except TimeoutError:
            raise BenchError(f"agent {self.name} gave no answer within {timeout:.0f} s; "
                             f"{self._tail()}") from None
        except EOFError:
            raise BenchError(f"agent {self.name} exited; {self._tail()}") from None

    def _tail(self) -> str:
        return f"its log {self.log} ends: {' | '.join(self.log.read_text().splitlines()[-3:])}"

    def close(self) -> None:
        """End of stdin: the agent stops its daemon (cleanly, so no daemon outlives its namespace)."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(30)


def start_agent(host: Host, root: Path, name: str, swarm_host: str) -> Agent:
    log = root / f"{name}.agent.log"
    proc = host.popen([sys.executable, str(AGENT), "--swarm-host", swarm_host, "--repo", str(root / name)],
                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log.open("w"))
    agent = Agent(name, proc, log)
    hello = agent.receive(AGENT_START_S)
    agent.peer_id, agent.addrs = hello["peer_id"], hello["addrs"]
    return agent


@dataclass
class FetchPath:
    """Who puts, who gets, and the pinner in between if the path has one."""

    publisher: Agent
    fetcher: Agent
    pinner: Agent | None = None
    get_s: list[float] = field(default_factory=list)
    pin_s: list[float] = field(default_factory=list)


def same_host_path(net: Internet, root: Path) -> FetchPath:
    host = net.public_host("one")
    publisher, fetcher = (start_agent(host, root, n, LOOPBACK) for n in ("same-put", "same-get"))
    fetcher.call(op="connect", addr=publisher.addr_on(LOOPBACK))
    return FetchPath(publisher, fetcher)


def direct_path(net: Internet, root: Path) -> FetchPath:
    put_host, get_host = net.public_host("pub-a"), net.public_host("pub-b")
    publisher = start_agent(put_host, root, "direct-put", EVERY_INTERFACE)
    fetcher = start_agent(get_host, root, "direct-get", EVERY_INTERFACE)
    fetcher.call(op="connect", addr=publisher.addr_on(put_host.ip))
    return FetchPath(publisher, fetcher)


def nat_path(net: Internet, root: Path) -> FetchPath:
    pinner_host = net.public_host("pinner")
    pinner = start_agent(pinner_host, root, "nat-pinner", EVERY_INTERFACE)
    publisher = start_agent(net.nat_host("nat-a"), root, "nat-put", EVERY_INTERFACE)
    fetcher = start_agent(net.nat_host("nat-b"), root, "nat-get", EVERY_INTERFACE)
    for agent in (publisher, fetcher):
        agent.call(op="connect", addr=pinner.addr_on(pinner_host.ip))
    return FetchPath(publisher, fetcher, pinner)


def fetch_once(path: FetchPath) -> None:
    """Put a fresh blob on the publisher, then time the fetcher's get of it (the pinner pins meanwhile)."""
    cid = path.publisher.call(op="put", size=BLOB_BYTES)["cid"]
    if path.pinner is not None:
        path.pinner.send(op="pin", cid=cid)
    got = path.fetcher.call(op="get", cid=cid)
    if got["bytes"] != BLOB_BYTES:
        raise BenchError(f"{path.fetcher.name} got {got['bytes']} bytes, not {BLOB_BYTES}")
    path.get_s.append(got["s"])
    if path.pinner is not None:
        path.pin_s.append(path.pinner.receive()["s"])


def measure_fetch(root: Path, repeats: int) -> dict[str, FetchPath]:
    root.mkdir()
    with internet("swb") as net:
        paths = {SAME: same_host_path(net, root), DIRECT: direct_path(net, root), NAT: nat_path(net, root)}
        try:
            for _ in range(repeats):  # paths interleaved, so drift in machine load hits all alike
                for path in paths.values():
                    fetch_once(path)
        finally:
            for path in paths.values():
                for agent in (path.publisher, path.fetcher, path.pinner):
                    if agent is not None:
                        agent.close()
    return paths


# -- join to first merge ----------------------------------------------------------------------------------

@dataclass
class Trainer:
    """One `swarm-node join` trainer: when its process started, said "joined swarm", first merged."""

    name: str
    started: float
    joined: float | None = None
    first_merge: float | None = None
    first_merge_round: int | None = None


def bootstrap_on(host: Host, root: Path, swarm: str, ip: str) -> str:
    try:
        return start_bootstrap(host, swarm, root / "bootstrap", f"/ip4/{ip}/tcp/{BOOTSTRAP_PORT}",
                               root / "bootstrap.log", AGENT_START_S)
    except NetnsError as exc:
        raise BenchError(str(exc)) from None


def join(host: Host, root: Path, name: str, swarm: str, bootstrap: str, **settings: Any
         ) -> subprocess.Popen[bytes]:
    data_dir = root / name
    data_dir.mkdir()
    cfg = NodeConfig(swarm=swarm, bootstrap=[bootstrap], ipfs_api="private", data_dir=data_dir, headless=True,
                     **settings)
    return host.popen(join_argv(cfg), stdout=(root / f"{name}.log").open("w"), stderr=subprocess.STDOUT)


def log_events(log: Path) -> Iterator[dict[str, Any]]:
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                yield record


def read_times(trainer: Trainer, log: Path) -> None:
    for record in log_events(log):
        if trainer.joined is None and str(record.get("event", "")).startswith("joined swarm"):
            trainer.joined = float(record["t"])
        if trainer.first_merge is None and record.get("merged"):
            trainer.first_merge, trainer.first_merge_round = float(record["t"]), int(record["round"])


def run_scenario(scenario: str, root: Path, timeout: float) -> list[Trainer]:
    """Bootstrap (and pinner), then 3 trainers at once; waits until they finish their rounds."""
    root.mkdir()
    swarm = f"across-{PLACES.index(scenario)}"
    with internet("swb") as net:
        if scenario == SAME:
            host = net.public_host("one")
            hosts, listen = [host] * TRAINERS, {"listen": f"/ip4/{LOOPBACK}/tcp/0"}
            bootstrap = bootstrap_on(host, root, swarm, LOOPBACK)
        else:
            boot_host = net.public_host("boot")
            make = net.nat_host if scenario == NAT else net.public_host
            hosts, listen = [make(f"t{i}") for i in range(TRAINERS)], {}
            bootstrap = bootstrap_on(boot_host, root, swarm, boot_host.ip)
            if scenario == NAT:
                join(net.public_host("pinner"), root, "pinner", swarm, bootstrap, role="pinner")
        trainers, procs = [], []
        for i, host in enumerate(hosts):
            trainers.append(Trainer(f"t{i}", time.time()))
            procs.append(join(host, root, f"t{i}", swarm, bootstrap, client=i, **listen, **TRAINER_SETTINGS))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(p.poll() is None for p in procs):
            time.sleep(1.0)
    for trainer in trainers:
        read_times(trainer, root / f"{trainer.name}.log")
    return trainers


# -- report -------------------------------------------------------------------------------------------------

def ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}" if value is not None and base else "-"


def seconds(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "-"


def median_or_none(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def fetch_table(paths: dict[str, FetchPath]) -> str:
    base = paths[SAME]
    rows = ["| path | get median s | get min s | median / same host | min / same host "
            "| pinner's pin median s |", "|---|---:|---:|---:|---:|---:|"]
    for name, path in paths.items():
        med, low = statistics.median(path.get_s), min(path.get_s)
        rows.append(f"| {name} | {med:.3f} | {low:.3f} | {ratio(med, statistics.median(base.get_s))} "
                    f"| {ratio(low, min(base.get_s))} | {seconds(median_or_none(path.pin_s))} |")
    return "\n".join(rows)


def join_medians(trainers: list[Trainer]) -> tuple[float | None, float | None]:
    """Median over trainers that merged of (first merge - process start, first merge - joined swarm)."""
    from_start, from_joined = [], []
    for t in trainers:
        if t.first_merge is not None:
            from_start.append(t.first_merge - t.started)
            if t.joined is not None:
                from_joined.append(t.first_merge - t.joined)
    return median_or_none(from_start), median_or_none(from_joined)


def join_table(scenarios: dict[str, list[Trainer]]) -> str:
    base_start, base_joined = join_medians(scenarios[SAME])
    rows = ["| scenario | trainers merged | 1st merge in round | start → 1st merge s | / same host "
            "| joined → 1st merge s | / same host |", "|---|---:|---|---:|---:|---:|---:|"]
    for name, trainers in scenarios.items():
        from_start, from_joined = join_medians(trainers)
        merged = sum(t.first_merge is not None for t in trainers)
        merge_rounds = ", ".join(str(t.first_merge_round or "-") for t in trainers)
        rows.append(f"| {name} | {merged}/{len(trainers)} | {merge_rounds} | {seconds(from_start)} "
                    f"| {ratio(from_start, base_start)} | {seconds(from_joined)} "
                    f"| {ratio(from_joined, base_joined)} |")
    return "\n".join(rows)


def commit() -> str:
    done = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False)
    return done.stdout.strip() or "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", nargs="+", choices=("fetch", "join"), default=["fetch", "join"],
                    help="which measurements to run (default: both)")
    ap.add_argument("--repeats", type=int, default=5,
                    help="fetches per path, each of a fresh 1 MB blob (default 5)")
    ap.add_argument("--join-timeout", type=float, default=300.0,
                    help="seconds each join scenario may run before its processes are stopped (default 300)")
    ap.add_argument("--out", type=Path, help="write the raw numbers (every fetch, every trainer's times) "
                                             "to this JSON file")
    ap.add_argument("--logs", type=Path, help="keep the processes' logs in this new directory "
                                              "(default: a temporary one, deleted at the end)")
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    root = args.logs or Path(tempfile.mkdtemp(prefix="bench-across-"))
    root.mkdir(parents=True, exist_ok=args.logs is None)
    began = time.monotonic()
    raw: dict[str, Any] = {"commit": commit(), "started": time.time(), "repeats": args.repeats,
                           "blob_bytes": BLOB_BYTES, "trainer_settings": TRAINER_SETTINGS}
    try:
        if "fetch" in args.parts:
            paths = measure_fetch(root / "fetch", args.repeats)
            print(f"Fetch of a {BLOB_BYTES >> 20} MB blob, {args.repeats} times per path\n")
            print(fetch_table(paths) + "\n")
            raw["fetch"] = {n: {"get_s": p.get_s, "pin_s": p.pin_s} for n, p in paths.items()}
        if "join" in args.parts:
            scenarios = {s: run_scenario(s, root / f"join-{i}", args.join_timeout)
                         for i, s in enumerate(PLACES)}
            print(f"Join to first merge, {TRAINERS} trainers per scenario "
                  "(median over trainers that merged)\n")
            print(join_table(scenarios) + "\n")
            raw["join"] = {n: [asdict(t) for t in ts] for n, ts in scenarios.items()}
    finally:
        if args.logs is None:
            shutil.rmtree(root, ignore_errors=True)
    raw["wall_s"] = time.monotonic() - began
    raw["load_average"] = os.getloadavg()
    print(f"{raw['wall_s']:.0f} s wall; load average at the end {raw['load_average'][0]:.1f} "
          f"on {os.cpu_count()} cores; commit {raw['commit']}")
    if args.out:
        args.out.write_text(json.dumps(raw, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
