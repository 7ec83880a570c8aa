"""Chaos run: a real swarm of `swarm-node join` processes under a seeded fault schedule.

Trainers and pinners (each with its own private js-ipfs daemon) and one `swarm-bootstrap` run for a
fixed time on 127.0.0.1 while docker/fault_schedule.py's schedule is replayed on processes: `kill`
= SIGKILL (`start` = the same command on the same data dir), `pause` = SIGSTOP / SIGCONT. Targets:
`node-N` (trainer N), `pinner-N`, `kubo-N` (trainer N's IPFS daemon, restarted on its repo),
`bootstrap` (restarted on the same port and key) and `halves`: `partition` / `heal` split the swarm in
two halves with bench/netsplit.py (root only; otherwise reported as not run; `--silent-partitions`:
cuts drop traffic silently instead of resetting connections). Half B, in its own
network namespace, holds the upper half of the trainers (with their IPFS daemons) and of the pinners;
the bootstrap and the rest stay in half A. Single-service `disconnect` is not replayed here. The same
swarm then runs fault-free for the same time, for comparison.

Reported: announcements delivered to pinners vs sent, snapshots still fetchable from pinners once
every trainer is gone, trainers resumed from their checkpoint with no lost round, corrupted state
files (checked right after every kill and at the end), validation accuracy vs the fault-free run,
processes that died unexpectedly; for partitions: announcements of each half seen by each pinner
during the cut, and how long after `heal` each pinner sees fresh announcements of the far half.

    nice -n 10 .venv/bin/python bench/chaos.py                 # 8 trainers, 2 pinners, 240 s, 10 faults
    .venv/bin/python bench/chaos.py --trainers 4 --pinners 1 --duration 90 --faults 4
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import netsplit  # bench/netsplit.py: bench/ is on sys.path when this script runs or a test imports it

from node import checkpoint
from node.config import NodeConfig
from node.demo import join_argv
from node.ipfs_setup import private_daemon_pid, start_private, stop_leftover_daemon
from node.processes import Bootstrap, Child
from node.status import read_status, read_status_or_none
from p2p.addresses import LOOPBACK_LISTEN
from storage import IpfsDaemon, IpfsStore, StoreError
from storage.daemon import free_port

ROOT = Path(__file__).resolve().parent.parent
SWARM = "chaos"
UP_TIMEOUT_S = 300.0  # 2 shared cores: ten processes importing torch and starting js-ipfs take a while
SIGNALS = {"kill": signal.SIGKILL, "pause": signal.SIGSTOP, "unpause": signal.SIGCONT}


def schedule_module() -> Any:
    """docker/fault_schedule.py, the one parser and generator of fault schedules (not a package)."""
    sys.path.insert(0, str(ROOT / "docker"))
    try:
        return importlib.import_module("fault_schedule")
    finally:
        sys.path.remove(str(ROOT / "docker"))


REQUIRED = (("kill", "node"), ("kill", "kubo"), ("kill", "bootstrap"), ("pause", "node"),
            ("partition", "halves"))


def generate(seed: int, trainers: int, pinners: int, duration: float, faults: int) -> list[Any]:
    """The first schedule from seeds `seed`, `seed` + 1, ... that has every fault of REQUIRED."""
    for attempt in range(seed, seed + 1000):
        faults_ = _generate(attempt, trainers, pinners, duration, faults)
        if all(any(f.action == a and f.target.startswith(t) for f in faults_) for a, t in REQUIRED):
            return faults_
    raise ValueError(f"no schedule with every required fault among 1000 seeds; raise --faults ({faults})")


def _generate(seed: int, trainers: int, pinners: int, duration: float, faults: int) -> list[Any]:
    """A seeded schedule over every target, without `disconnect` (not replayed on processes)."""
    fs = schedule_module()
    targets = ([f"node-{i}" for i in range(1, trainers + 1)] + [f"pinner-{i}" for i in range(1, pinners + 1)]
               + [f"kubo-{i}" for i in range(1, trainers + 1)] + ["bootstrap", fs.HALVES])
    kept: list[Any] = []
    extra = 0
    while len([f for f in kept if f.action in fs.RECOVERY]) < faults and extra < 50:
        planned = fs.generate(seed=seed, targets=targets, duration=duration * 0.85, faults=faults + extra,
                              min_down=5.0, max_down=min(30.0, duration * 0.2))
        kept = [f for f in planned if f.action not in ("disconnect", "connect")]
        extra += 1
    fs.parse([f.to_json() for f in kept])  # still a legal schedule
    return kept


@dataclass
class Report:
    sent: int = 0
    delivered: dict[str, int] = field(default_factory=dict)  # pinner -> sent CIDs it saw
    fetchable: int = 0
    fetch_tried: int = 0
    resumed_ok: int = 0
    resumed: int = 0
    kills: dict[str, int] = field(default_factory=dict)  # trainer -> checkpoint round when it was killed
    resume_events: list[str] = field(default_factory=list)
    corrupted: int = 0
    state_files_checked: int = 0
    unexpected_deaths: list[str] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    faults_applied: int = 0
    fault_errors: list[str] = field(default_factory=list)
    sent_after_heal: dict[str, int] = field(default_factory=dict)  # trainer -> CIDs sent after last fault
    seen_after_heal: dict[str, int] = field(default_factory=dict)  # trainer -> of those, seen by pinner-1
    partition_skipped: str = ""  # why the schedule's partitions were not replayed
    cuts: list[tuple[float, float]] = field(default_factory=list)  # (cut, heal) unix times
    bridge_resets: int = 0  # bridged connections closed by the cuts
    bridge_held: int = 0  # bridged connections a silent cut kept open, their traffic held
    bridge_bytes_during_cuts: int = 0  # bytes the bridge carried between cut and heal (must be 0)
    split: dict[str, SplitSeen] = field(default_factory=dict)  # pinner -> what it saw around the cuts


@dataclass
class SplitSeen:
    """One pinner's view of the partitions: announcements sent during a cut (from 1 s after it until
    the heal), by the trainers of its own half and of the far half, and how many it saw."""
    near_sent: int = 0
    near_seen: int = 0
    far_sent: int = 0
    far_seen_before_heal: int = 0
    far_seen_later: int = 0  # sent during the cut, seen after the heal
    heal_lag_s: list[float] = field(default_factory=list)  # per heal: until a fresh far CID was seen
    heal_publish_s: list[float] = field(default_factory=list)  # per heal: until the far half announced
    far_sent_after: int = 0  # sent from 5 s after a heal until the next cut (or the end)
    far_seen_after: int = 0


class Swarm:
    """The processes of one run, by target name, and what they printed."""

    def __init__(self, root: Path, trainers: int, pinners: int, seed: int,
                 split: netsplit.NetSplit | None = None, silent_cuts: bool = False) -> None:
        self.root = root
        self.split, self.silent_cuts = split, silent_cuts
        self.half_b = ({f"node-{i}" for i in range(trainers // 2 + 1, trainers + 1)}
                       | {f"pinner-{i}" for i in range(pinners // 2 + 1, pinners + 1)}) if split else set()
        self.boot_port = free_port()
        self.boot = self._start_boot()
        self.configs: dict[str, NodeConfig] = {}
        for i in range(1, trainers + 1):
            self.configs[f"node-{i}"] = NodeConfig(
                swarm=SWARM, bootstrap=[self.boot.addr], listen=LOOPBACK_LISTEN, ipfs_api="private",
                data_dir=root / f"node-{i}",
                dataset="fashion-mnist", partition="iid", clients=trainers, client=i - 1,
                samples_per_client=200, strategy="random", neighbours=2, lr=0.003, rounds=0,
                round_interval_s=1.0, fetch_timeout_s=10.0, seed=seed, headless=True)
        for i in range(1, pinners + 1):
            self.configs[f"pinner-{i}"] = NodeConfig(
                swarm=SWARM, bootstrap=[self.boot.addr], listen=LOOPBACK_LISTEN, ipfs_api="private",
                data_dir=root / f"pinner-{i}",
                role="pinner", headless=True)
        self.procs: dict[str, Child] = {}
        self.records: dict[str, list[dict[str, Any]]] = {name: [] for name in self.configs}
        self.lives: dict[str, int] = dict.fromkeys(self.configs, 0)
        self.daemons: list[IpfsDaemon] = []  # IPFS daemons this harness restarted
        for name in self.configs:
            self.start_node(name)

    def _start_boot(self) -> Bootstrap:
        return Bootstrap(SWARM, self.root / "bootstrap", listen=f"/ip4/127.0.0.1/tcp/{self.boot_port}")

    def half(self, name: str) -> str:
        return "b" if name in self.half_b else "a"

    def in_half(self, name: str) -> contextlib.AbstractContextManager[None]:
        """Processes started in this block run in `name`'s half (its IPFS daemon follows the node)."""
        return self.split.in_b() if self.split and name in self.half_b else contextlib.nullcontext()

    def start_node(self, name: str) -> None:
        self.lives[name] += 1
        with self.in_half(name):
            log = self.root / f"{name}.{self.lives[name]}.log"
            self.procs[name] = Child(join_argv(self.configs[name]), log)

    def wait_up(self, timeout: float) -> None:
        """Until every node runs and every trainer has a checkpoint: t=0 of the schedule, and the
        end of a run (restarted nodes take their time to come back on 2 busy cores)."""
        deadline = time.monotonic() + timeout
        while True:
            # the pid tells this life's status from the one a SIGKILLed predecessor left
            statuses = [(cfg, read_status_or_none(cfg.data_dir), self.procs[name].proc.pid)
                        for name, cfg in self.configs.items()]
            if all(s is not None and s.state == "running" and s.pid == pid
                   and (cfg.role != "trainer" or (cfg.data_dir / checkpoint.CHECKPOINT_FILE).exists())
                   for cfg, s, pid in statuses):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the swarm was not up within {timeout:.0f} s; logs in {self.root}")
            self.drain()
            time.sleep(0.5)

    def drain(self) -> None:
        for name, child in self.procs.items():
            while not child.lines.empty():
                with contextlib.suppress(ValueError):
                    self.records[name].append(json.loads(child.lines.get_nowait()))

    def alive(self) -> list[Child]:
        return [c for c in [self.boot, *self.procs.values()] if c.proc.poll() is None]

    def close(self) -> None:
        for child in self.alive():
            with contextlib.suppress(OSError):
                os.kill(child.proc.pid, signal.SIGCONT)  # a paused process cannot act on SIGTERM
        for child in [*self.procs.values(), self.boot]:
            child.stop(15)
        for cfg in self.configs.values():  # daemons of SIGKILLed nodes outlive them (own session)
            stop_leftover_daemon(cfg.data_dir)
        for daemon in self.daemons:
            daemon.stop()


def check_state(data_dir: Path, report: Report) -> int | None:
    """Load the checkpoint and status a node left; counts corrupted ones; returns the checkpoint round."""
    saved = None
    for what in ("checkpoint", "status"):
        path = data_dir / ("checkpoint.pt" if what == "checkpoint" else "status.json")
        if not path.exists():
            continue
        report.state_files_checked += 1
        try:
            if what == "checkpoint":
                saved = checkpoint.load(data_dir)
            else:
                read_status(data_dir)
        except (checkpoint.CheckpointError, ValueError, OSError):
            report.corrupted += 1
    return saved.round if saved else None


def apply(swarm: Swarm, fault: Any, report: Report, expected: dict[str, int]) -> None:
    """Replay one schedule line on the processes; `expected[name]` = checkpoint round at its kill."""
    target, action = fault.target, fault.action
    kind = target.split("-")[0]
    if action in ("partition", "heal"):
        if swarm.split is None:
            raise RuntimeError("no network split")
        if action == "partition":
            cut = swarm.split.cut(silent=swarm.silent_cuts)
            report.bridge_resets += cut["reset"]
            report.bridge_held += cut.get("held", 0)
            report.bridge_bytes_during_cuts -= cut["bytes"]
            report.cuts.append((time.time(), 0.0))
        else:
            report.bridge_bytes_during_cuts += swarm.split.stats()["bytes"]
            swarm.split.heal()
            report.cuts[-1] = (report.cuts[-1][0], time.time())
        return
    if kind == "kubo":
        node = target.replace("kubo", "node")
        pid = private_daemon_pid(swarm.configs[node].data_dir)
        if action == "start":
            for _ in range(20):  # js-ipfs keeps repo.lock ~10 s after SIGKILL
                try:
                    with swarm.in_half(node):  # the node's own way: same repo, ports, pins and pid file
                        daemon = start_private(swarm.configs[node].data_dir)
                    break
                except StoreError:
                    time.sleep(2)
            else:
                raise RuntimeError(f"could not restart the IPFS daemon of {node}")
            swarm.daemons.append(daemon)
        elif pid is not None:
            os.killpg(pid, SIGNALS[action])
        return
    if target == "bootstrap":
        if action == "start":
            swarm.boot = swarm._start_boot()
            return
        proc = swarm.boot.proc
    else:
        proc = swarm.procs[target].proc
    if action == "kill":
        proc.kill()
        proc.wait(10)
        if target != "bootstrap":
            expected[target] = check_state(swarm.configs[target].data_dir, report) or 0
    elif action == "start":
        swarm.start_node(target)
    else:
        proc.send_signal(SIGNALS[action])


def run(root: Path, *, trainers: int, pinners: int, duration: float, faults: Sequence[Any],
        seed: int = 0, silent_partitions: bool = False) -> Report:
    root.mkdir(parents=True, exist_ok=True)
    report = Report()
    queue = list(faults)
    split = None
    if any(f.action == "partition" for f in faults):
        report.partition_skipped = netsplit.unavailable() or ""
        if report.partition_skipped:
            queue = [f for f in queue if f.action not in ("partition", "heal")]
        else:
            split = netsplit.NetSplit()
    try:
        swarm = Swarm(root, trainers, pinners, seed, split, silent_partitions)
    except BaseException:
        if split:
            split.close()
        raise
    expected: dict[str, int] = {}
    down: set[str] = set()
    try:
        swarm.wait_up(UP_TIMEOUT_S)
        started = time.monotonic()
        while (now := time.monotonic() - started) < duration:
            while queue and queue[0].t <= now:
                fault = queue.pop(0)
                try:
                    apply(swarm, fault, report, expected)
                    report.faults_applied += 1
                except (OSError, RuntimeError, StoreError) as exc:
                    report.fault_errors.append(f"{fault.to_json()}: {exc}")
                (down.add if fault.action == "kill" else down.discard)(fault.target)
            swarm.drain()
            for name, child in [("bootstrap", swarm.boot), *swarm.procs.items()]:
                if name not in down and child.proc.poll() is not None:
                    tail = child.stderr_tail(2)
                    report.unexpected_deaths.append(f"{name} exit {child.proc.returncode}: {tail}")
                    down.add(name)
            time.sleep(0.5)
        if report.cuts and not report.cuts[-1][1]:  # a schedule that never heals: heal for the checks
            apply(swarm, schedule_module().Fault(duration, "heal", "halves"), report, expected)
        swarm.wait_up(UP_TIMEOUT_S)
        swarm.drain()
        report.kills = dict(expected)
        summarize(swarm, report, expected, faults)
        summarize_split(swarm, report)
        check_fetchable(swarm, report)
    finally:
        swarm.close()
        if split:
            split.close()
    return report


def summarize(swarm: Swarm, report: Report, expected: dict[str, int], faults: Sequence[Any]) -> None:
    sent = {r["cid"]: (name, r["t"]) for name, recs in swarm.records.items() if name.startswith("node")
            for r in recs if "cid" in r and "round" in r}
    report.sent = len(sent)
    last_fault = max((f.t for f in faults), default=0.0)
    t0 = min((r["t"] for recs in swarm.records.values() for r in recs), default=0.0)
    for name, recs in swarm.records.items():
        if name.startswith("pinner"):
            seen = {r["cid"] for r in recs if "cid" in r} | {
                c for c in sent for r in recs if "pin" in r["event"] and c[-10:] in r["event"]}
            report.delivered[name] = len(seen & set(sent))
            if name == "pinner-1":
                for cid, (trainer, t) in sent.items():
                    if t - t0 > last_fault + 5:  # sent once every fault was healed (+ a reconnect)
                        report.sent_after_heal[trainer] = report.sent_after_heal.get(trainer, 0) + 1
                        seen_before = report.seen_after_heal.get(trainer, 0)
                        report.seen_after_heal[trainer] = seen_before + (cid in seen)
        else:
            for r in recs:
                if r["event"].startswith("resumed from checkpoint at round"):
                    report.resumed += 1
                    report.resume_events.append(f"{name}: {r['event']} (killed at {expected.get(name)})")
                    report.resumed_ok += int(int(r["event"].rsplit(" ", 1)[1]) == expected.get(name, -1))
            status = read_status_or_none(swarm.configs[name].data_dir)
            if status is not None and status.val_acc is not None:
                report.val_acc.append(status.val_acc)
    for cfg in swarm.configs.values():
        check_state(cfg.data_dir, report)


def summarize_split(swarm: Swarm, report: Report) -> None:
    """Per pinner: announcements sent during each cut by its own / the far half, and what it saw."""
    if not report.cuts:
        return
    sent = [(r["t"], name, r["cid"]) for name, recs in swarm.records.items() if name.startswith("node")
            for r in recs if "cid" in r and "round" in r]
    ends = [c for c, _ in report.cuts[1:]] + [float("inf")]
    for pinner, recs in swarm.records.items():
        if not pinner.startswith("pinner"):
            continue
        # when the pinner took the announcement up: its "skipped", or the start of its pin ("pinned" or
        # "pin ... failed" minus the pin's duration); an upper bound on when gossip delivered it
        seen: dict[str, float] = {}
        for r in recs:
            if "cid" in r:
                seen.setdefault(r["cid"], r["t"] - r.get("pin_s", 0.0))
        view = report.split.setdefault(pinner, SplitSeen())
        for (cut, heal), next_cut in zip(report.cuts, ends, strict=True):
            fresh_far, fresh_sent = [], []
            for t, trainer, cid in sent:
                far = swarm.half(trainer) != swarm.half(pinner)
                if cut + 1 < t < heal:
                    if far:
                        view.far_sent += 1
                        view.far_seen_before_heal += seen.get(cid, heal) < heal
                        view.far_seen_later += seen.get(cid, 0.0) >= heal
                    else:
                        view.near_sent += 1
                        view.near_seen += cid in seen
                elif far and heal <= t < next_cut:
                    fresh_far.append(seen.get(cid, float("inf")))
                    fresh_sent.append(t)
                    if t > heal + 5:
                        view.far_sent_after += 1
                        view.far_seen_after += cid in seen
            if fresh_far and min(fresh_far) < float("inf"):
                view.heal_lag_s.append(round(min(fresh_far) - heal, 1))
                view.heal_publish_s.append(round(min(fresh_sent) - heal, 1))


def check_fetchable(swarm: Swarm, report: Report) -> None:
    """Stop every trainer (and its daemon), then fetch each pinner's newest pin per publisher from a
    fresh daemon that knows only the pinners."""
    pinned: dict[str, str] = {}
    for name, recs in swarm.records.items():
        if name.startswith("pinner"):
            for r in recs:
                if r["event"].startswith("pinned"):
                    pinned[r["publisher"]] = r["cid"]  # newest per publisher
    for name, child in swarm.procs.items():
        if name.startswith("node"):
            with contextlib.suppress(OSError):
                os.kill(child.proc.pid, signal.SIGCONT)
            child.stop(15)
    with IpfsDaemon.start(swarm.root / "newcomer") as daemon:
        store = IpfsStore(daemon.api_multiaddr)
        for name, cfg in swarm.configs.items():
            if name.startswith("pinner"):
                for addr in read_status(cfg.data_dir).ipfs_addrs:
                    with contextlib.suppress(StoreError):
                        store.connect(addr)
        for cid in pinned.values():
            report.fetch_tried += 1
            with contextlib.suppress(StoreError):
                store.get(cid, timeout=15)
                report.fetchable += 1


def table(faulty: Report, clean: Report | None) -> str:
    rows = [
        ("announcements delivered to pinners / sent",
         ", ".join(f"{p}: {n}/{faulty.sent}" for p, n in faulty.delivered.items()),
         ", ".join(f"{p}: {n}/{clean.sent}" for p, n in clean.delivered.items()) if clean else "-"),
        ("newest pinned snapshot per publisher fetchable after all trainers left",
         f"{faulty.fetchable}/{faulty.fetch_tried}",
         f"{clean.fetchable}/{clean.fetch_tried}" if clean else "-"),
        ("trainers resumed from checkpoint with no lost round", f"{faulty.resumed_ok}/{faulty.resumed}", "-"),
        ("corrupted state files / checked", f"{faulty.corrupted}/{faulty.state_files_checked}",
         f"{clean.corrupted}/{clean.state_files_checked}" if clean else "-"),
        ("validation accuracy at the end (mean of trainers)",
         f"{statistics.fmean(faulty.val_acc or [0]):.3f}",
         f"{statistics.fmean(clean.val_acc or [0]):.3f}" if clean else "-"),
        ("processes that died unexpectedly", str(len(faulty.unexpected_deaths)),
         str(len(clean.unexpected_deaths)) if clean else "-"),
        ("faults applied (errors)", f"{faulty.faults_applied} ({len(faulty.fault_errors)})", "0"),
    ]
    rows += split_rows(faulty)
    lines = ["| measure | with faults | fault-free |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def split_rows(r: Report) -> list[tuple[str, str, str]]:
    if r.partition_skipped:
        return [("partition", f"not run ({r.partition_skipped})", "-")]
    if not r.cuts:
        return []
    t0 = r.cuts[0][0]
    views = r.split.items()
    return [
        ("partition: cut-heal (s after the first cut); connections reset (held open: silent cut); "
         "bytes bridged while cut",
         ", ".join(f"{c - t0:.0f}-{h - t0:.0f}" for c, h in r.cuts)
         + f"; {r.bridge_resets} ({r.bridge_held}); {r.bridge_bytes_during_cuts}", "-"),
        ("announcements of the far half seen during the cut / sent during it",
         ", ".join(f"{p}: {v.far_seen_before_heal}/{v.far_sent}" for p, v in views), "-"),
        ("of those, seen after the heal",
         ", ".join(f"{p}: {v.far_seen_later}" for p, v in views), "-"),
        ("announcements of the near half seen / sent during the cut",
         ", ".join(f"{p}: {v.near_seen}/{v.near_sent}" for p, v in views), "-"),
        ("s from heal until a fresh far-half announcement is seen (pinned, tried or skipped as superseded)"
         " [s until the far half first announced]",
         ", ".join(f"{p}: " + (", ".join(f"{lag} [{pub}]" for lag, pub in zip(v.heal_lag_s, v.heal_publish_s,
                                                                               strict=True)) or "never")
                   for p, v in views), "-"),
        ("far-half announcements seen / sent from 5 s after the heal",
         ", ".join(f"{p}: {v.far_seen_after}/{v.far_sent_after}" for p, v in views), "-"),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trainers", type=int, default=8)
    p.add_argument("--pinners", type=int, default=2)
    p.add_argument("--duration", type=float, default=240.0, help="seconds per run (240)")
    p.add_argument("--faults", type=int, default=10, help="fault + recovery pairs (10)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--schedule", help="replay this schedule file instead of generating one")
    p.add_argument("--silent-partitions", action="store_true",
                   help="cuts hold traffic (as dropped packets would) instead of resetting connections")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run the clean-up of `finally` blocks
    fs = schedule_module()
    faults = (fs.load(args.schedule) if args.schedule
              else generate(args.seed, args.trainers, args.pinners, args.duration, args.faults))
    print(fs.dumps(faults, f"bench/chaos.py --seed {args.seed}"), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-chaos-") as work:
        faulty = run(Path(work) / "faults", trainers=args.trainers, pinners=args.pinners,
                     duration=args.duration, faults=faults, seed=args.seed,
                     silent_partitions=args.silent_partitions)
        clean = run(Path(work) / "clean", trainers=args.trainers, pinners=args.pinners,
                    duration=args.duration, faults=[], seed=args.seed)
    print(table(faulty, clean))
    for line in faulty.unexpected_deaths + faulty.fault_errors:
        print("  ", line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
