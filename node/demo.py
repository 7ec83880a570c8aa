"""`swarm-node demo`: a bootstrap and N trainer peers on this machine, each a separate process with
its own private IPFS daemon, on a non-IID shard; then the same shards trained alone, for comparison.

The peers are real `swarm-node join` processes; the demo only starts them, watches their status
files and JSON logs, and writes the report (summary.json per DESIGN.md, rounds.csv, plots).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from node.config import NodeConfig
from node.ipfs_setup import stop_leftover_daemon
from node.processes import Bootstrap, Child, ProcError, kill_all
from node.status import NodeStatus, read_status
from p2p.addresses import LOOPBACK_LISTEN
from swarm.selection import TOLERANCE

SWARM_ID = "demo"
STOP_TIMEOUT_S = 15.0


@dataclass
class DemoSettings:
    nodes: int = 4
    rounds: int = 20
    dataset: str = "fashion-mnist"
    partition: str = "rotation"
    samples_per_client: int = 400
    strategy: str = "dac"
    similarity: str = ""  # the strategy's own metric
    neighbours: int = 3
    encoding: str = "fp32"
    local_epochs: int = 3
    lr: float = 1e-3
    guard_tolerance: float = TOLERANCE
    model: str = ""
    max_steps_per_round: int = 0
    round_interval_s: float = 2.0
    seed: int = 0
    timeout_s: float = 900.0
    workdir: Path | None = None


@dataclass
class PeerOutcome:
    client: int
    peer_id: str = ""
    cluster: int = -1
    test_acc: float | None = None
    alone_acc: float | None = None
    gain: float | None = None  # test_acc - alone_acc
    bytes_in: int = 0
    bytes_out: int = 0
    merges: int = 0
    merge_lag: float | None = None  # how many rounds older than mine the models I merged were, on average
    published: dict[str, int] = field(default_factory=dict)  # my snapshots: CID -> round
    merged: list[tuple[int, list[str]]] = field(default_factory=list)  # (my round, CIDs I merged)
    val_acc_by_round: dict[int, float] = field(default_factory=dict)
    round_timings: list[dict[str, float]] = field(default_factory=list)
    exit_code: int | None = None

    @property
    def final_cid(self) -> str:
        """The last snapshot this peer published ("" if none)."""
        return max(self.published, key=lambda cid: self.published[cid], default="")


def node_config(s: DemoSettings, client: int, data_dir: Path, bootstrap: str) -> NodeConfig:
    # Every demo peer runs on this host: nothing listens beyond loopback.
    return NodeConfig(swarm=SWARM_ID, bootstrap=[bootstrap], listen=LOOPBACK_LISTEN, ipfs_api="private",
                      data_dir=data_dir, dataset=s.dataset, partition=s.partition, clients=s.nodes,
                      client=client,
                      samples_per_client=s.samples_per_client, strategy=s.strategy, similarity=s.similarity,
                      neighbours=s.neighbours, encoding=s.encoding, local_epochs=s.local_epochs, lr=s.lr,
                      guard_tolerance=s.guard_tolerance,
                      model=s.model, max_steps_per_round=s.max_steps_per_round,
                      rounds=s.rounds, round_interval_s=s.round_interval_s, seed=s.seed, headless=True)


def join_argv(cfg: NodeConfig) -> list[str]:
    argv = [sys.executable, "-m", "node.cli", "join"]
    for name, value in vars(cfg).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            argv += [flag if value else "--no-" + flag[2:]]
        elif isinstance(value, list):
            for item in value:
                argv += [flag, str(item)]
        else:
            argv += [flag, str(value)]
    return argv


def collect(child: Child, outcome: PeerOutcome) -> None:
    """Fold the JSON lines a peer printed so far into its outcome."""
    while not child.lines.empty():
        try:
            record: dict[str, Any] = json.loads(child.lines.get_nowait())
        except ValueError:
            continue
        if "round" in record and "val_acc" in record:
            outcome.val_acc_by_round[int(record["round"])] = float(record["val_acc"])
        if "cid" in record and "round" in record:
            outcome.published[record["cid"]] = int(record["round"])
        if "merged_cids" in record:
            outcome.merged.append((int(record["round"]), list(record["merged_cids"])))
        if "round_timings" in record:
            outcome.round_timings.append(record["round_timings"])
        if "test_acc" in record:
            outcome.test_acc = float(record["test_acc"])
            outcome.bytes_in, outcome.bytes_out = int(record["bytes_in"]), int(record["bytes_out"])
            outcome.merges, outcome.cluster = int(record["merges"]), int(record["cluster"])


def local_baseline(cfg: NodeConfig) -> float:
    """Test accuracy of the same shard trained alone by the same protocol as a swarm peer: same init,
    batches, rounds and optimizer resets, and the model tested is the one `keep` reports."""
    from node.learner import Learner, load_shard
    from swarm.models import pick_device

    learner = Learner(replace(cfg, strategy="local"), load_shard(cfg), pick_device(cfg.device))
    for round_ in range(1, cfg.rounds + 1):
        learner.train(cfg.max_steps_per_round or None)
        learner.judge(round_)
    return learner.reported()[0]


def merge_lags(outcomes: list[PeerOutcome]) -> None:
    """Fill each peer's `merge_lag` from what the peers published and merged."""
    round_of = {cid: r for o in outcomes for cid, r in o.published.items()}
    for o in outcomes:
        lags = [mine - round_of[cid] for mine, cids in o.merged for cid in cids if cid in round_of]
        o.merge_lag = statistics.fmean(lags) if lags else None


def verdict(outcomes: list[PeerOutcome]) -> str:
    """One line: how many peers gained, and the worst loss against training alone."""
    return gains_verdict([o.gain for o in outcomes if o.gain is not None])


def gains_verdict(gains: list[float], tolerance: float = 0.01) -> str:
    if not gains:
        return "no peer has both a swarm and an alone accuracy"
    lost = sum(g < -tolerance - 1e-9 for g in gains)  # a difference printed as -0.010 is within it
    tail = (f"none lost more than {tolerance:.2f}" if not lost
            else f"{lost} lost more than {tolerance:.2f} (worst {min(gains):+.3f})")
    mean = statistics.fmean(gains)
    return f"{sum(g > 0 for g in gains)} of {len(gains)} peers gained (mean {mean:+.3f}), {tail}"


def run_demo(s: DemoSettings, *, on_tick: Any = None,
             baseline: bool = True) -> tuple[list[PeerOutcome], float]:
    """Run the swarm; `on_tick(statuses)` is called about twice a second with each peer's status.
    With `baseline`, each shard is then also trained alone for comparison (`alone_acc`, `gain`)."""
    workdir = s.workdir or Path(tempfile.mkdtemp(prefix="swarm-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    children: list[Child] = []
    outcomes = [PeerOutcome(client=i) for i in range(s.nodes)]
    configs: list[NodeConfig] = []
    started = time.monotonic()
    try:
        boot = Bootstrap(SWARM_ID, workdir / "bootstrap")
        children.append(boot)
        for i in range(s.nodes):
            cfg = node_config(s, i, workdir / f"peer-{i}", boot.addr)
            configs.append(cfg)
            children.append(Child(join_argv(cfg), workdir / f"peer-{i}.log"))
        peers = children[1:]
        while any(p.proc.poll() is None for p in peers):
            if time.monotonic() - started > s.timeout_s:
                raise ProcError(f"demo did not finish within {s.timeout_s:.0f} s; logs in {workdir}")
            for child, outcome in zip(peers, outcomes, strict=True):
                collect(child, outcome)
            if on_tick is not None:
                on_tick(statuses(configs))
            time.sleep(0.5)
        for child, outcome, status in zip(peers, outcomes, statuses(configs), strict=True):
            collect(child, outcome)
            outcome.exit_code = child.proc.returncode
            outcome.peer_id = status.peer_id if status else ""
    finally:
        # SIGTERM first: a peer stops its own IPFS daemon on the way out; whatever is left is killed.
        for child in children[1:]:
            child.stop(STOP_TIMEOUT_S)
        kill_all(children)
        for cfg in configs:
            stop_leftover_daemon(cfg.data_dir)
    wall = time.monotonic() - started
    merge_lags(outcomes)
    for cfg, outcome in zip(configs, outcomes, strict=True):
        outcome.alone_acc = local_baseline(cfg) if baseline else None
        if outcome.alone_acc is not None and outcome.test_acc is not None:
            outcome.gain = outcome.test_acc - outcome.alone_acc
    return outcomes, wall


def statuses(configs: list[NodeConfig]) -> list[NodeStatus | None]:
    out: list[NodeStatus | None] = []
    for cfg in configs:
        try:
            out.append(read_status(cfg.data_dir))
        except (OSError, ValueError):
            out.append(None)
    return out


def summary_rounds(outcomes: list[PeerOutcome]) -> list[dict[str, Any]]:
    rounds = sorted({r for o in outcomes for r in o.val_acc_by_round})
    rows = []
    for r in rounds:
        accs = [o.val_acc_by_round[r] for o in outcomes if r in o.val_acc_by_round]
        rows.append({"round": r, "mean_acc": statistics.fmean(accs), "std_acc": statistics.pstdev(accs),
                     "min_acc": min(accs), "max_acc": max(accs)})
    return rows
