"""Gossip propagation over real libp2p peers in separate processes on 127.0.0.1.

Prints latency p50/p99 (publish -> delivered, same machine clock) for a baseline of 2 directly connected
peers, then for 10 peers in a line (9 hops end to end) and in a random connected graph (each peer dials
2 earlier ones), and the delivery ratio on the random graph at 1, 10 and 50 announcements per second,
publishers taking turns. Latency ratios are against the baseline measured in the same run; "cpu ms/dlv"
is the CPU time of all peer processes per delivered announcement (py-libp2p's cost per hop).

    nice -n 10 .venv/bin/python bench/gossip.py [--seconds 5] [--peers 10]

The per-publisher validation limit is raised (--rate/--burst of the peers) so that the figures measure
transport, not policy: at the default 2/s per publisher, 50/s from 10 publishers would be rate-limited.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the bare gossip peer is test support

from cpu import cpu_seconds
from support.peers import Peer

from node.processes import kill_all

SWARM = "bench"
POLICY = ["--rate", "1000", "--burst", "1000"]
SETTLE_S = 4.0  # a few 1 s heartbeats so meshes form before measuring
DRAIN_S = 3.0


def start(root: Path, n: int, topology: str, rng: random.Random) -> list[Peer]:
    peers: list[Peer] = []
    for i in range(n):
        if topology == "line":
            dial = [peers[-1].addrs[0]] if peers else []
        else:
            dial = [p.addrs[0] for p in rng.sample(peers, min(2, len(peers)))]
        peers.append(Peer(SWARM, root / f"{topology}{i}", [], target_peers=0, static=dial, extra=POLICY))
    return peers


def peers_cpu_seconds(peers: list[Peer]) -> float:
    """User + system CPU time used so far by the peer processes (Linux /proc)."""
    return sum(cpu_seconds(p.proc.pid) for p in peers)


def run_load(peers: list[Peer], rate: float, seconds: float, base_round: int
             ) -> tuple[list[float], float, float]:
    """Publish at `rate`/s for `seconds` (publishers round-robin); (latencies ms, delivery ratio,
    CPU ms of all peers per delivered announcement)."""
    for p in peers:
        p.poll()
        p.recv.clear()
    cpu0 = peers_cpu_seconds(peers)
    count = max(1, int(rate * seconds))
    t0 = time.monotonic()
    sent: list[tuple[str, int]] = []
    for k in range(count):
        pub = peers[k % len(peers)]
        pub.publish(round=base_round + k)
        sent.append((pub.peer_id, base_round + k))
        time.sleep(max(0.0, t0 + (k + 1) / rate - time.monotonic()))
    time.sleep(DRAIN_S)
    cpu = peers_cpu_seconds(peers) - cpu0
    wanted = set(sent)
    latencies, delivered = [], 0
    for p in peers:
        p.poll()
        for r in p.recv:
            if (r["publisher"], r["round"]) in wanted:
                delivered += 1
                latencies.append((r["t"] - r["sent"]) * 1000)
    return latencies, delivered / (count * (len(peers) - 1)), 1000 * cpu / max(1, delivered)


def pct(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=5.0, help="load duration per rate")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="bench-gossip-"))
    rows: list[tuple[str, list[float], float, float]] = []
    try:
        for name, n, topology, rates in (("baseline 2 peers, 1 hop", 2, "line", [10.0]),
                                          (f"line {args.peers}", args.peers, "line", [10.0]),
                                          (f"random {args.peers}", args.peers, "random", [1.0, 10.0, 50.0])):
            peers = start(root, n, topology, rng)
            try:
                time.sleep(SETTLE_S)
                for i, rate in enumerate(rates):
                    lat, ratio, cpu = run_load(peers, rate, args.seconds, base_round=10_000 * (i + 1))
                    rows.append((f"{name} @ {rate:g}/s", lat, ratio, cpu))
            finally:
                kill_all(peers)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    base = pct(rows[0][1], 50)
    print(f"{'setting':32} {'p50 ms':>8} {'p99 ms':>8} {'p50/base':>9} {'delivered':>10} {'cpu ms/dlv':>10}")
    for name, lat, ratio, cpu in rows:
        p50, p99 = pct(lat, 50), pct(lat, 99)
        print(f"{name:32} {p50:8.1f} {p99:8.1f} {p50 / base:9.2f} {ratio:10.1%} {cpu:10.1f}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
