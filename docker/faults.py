#!/usr/bin/env python3
"""Replay a fault schedule (docker/fault_schedule.py format) against the compose containers.

    python3 docker/faults.py docker/faults.example.jsonl            # replay in real time
    python3 docker/faults.py docker/faults.example.jsonl --dry-run  # print the docker commands only

Each action becomes one `docker` command (kill, start, pause, unpause, network disconnect/connect) on
the container `<prefix><target>` (compose.py names containers `swarm-<service>`). `partition halves`
moves the containers of `--half-b` onto a second internal network `<network>-b` (created for the cut),
so each half still reaches itself (including its Kubos by name) but not the other; `heal` moves them
back and removes `<network>-b`. A failed command is logged and the replay goes on: a chaos run must
not stop because one fault did not apply. Standard library only.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from fault_schedule import SPLIT_ACTIONS, Fault, ScheduleError, load

DOCKER_TIMEOUT_S = 60.0
# half B of the committed 4-node compose file; the bootstrap stays in half A
DEFAULT_HALF_B = ("node-3", "node-4", "kubo-3", "kubo-4")


def docker_commands(fault: Fault, *, prefix: str, network: str,
                    half_b: Sequence[str] = DEFAULT_HALF_B) -> list[list[str]]:
    """The docker commands of one schedule line, run in order."""
    if fault.action in SPLIT_ACTIONS:
        other = f"{network}-b"
        cut = fault.action == "partition"
        frm, to = (network, other) if cut else (other, network)
        cmds = [["docker", "network", "create", "--internal", other]] if cut else []
        for service in half_b:  # join the new network first, so the half never loses its own members
            cmds += [["docker", "network", "connect", to, prefix + service],
                     ["docker", "network", "disconnect", frm, prefix + service]]
        return cmds if cut else [*cmds, ["docker", "network", "rm", other]]
    container = prefix + fault.target
    if fault.action in ("disconnect", "connect"):
        return [["docker", "network", fault.action, network, container]]
    return [["docker", fault.action, container]]


def run_docker(cmd: list[str]) -> str | None:
    """Run one docker command; the error text when it failed, None when it worked."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=DOCKER_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if done.returncode == 0 else (done.stderr.strip().splitlines() or ["failed"])[-1]


def replay(faults: Sequence[Fault], *, prefix: str, network: str, speed: float = 1.0,
           half_b: Sequence[str] = DEFAULT_HALF_B, runner: Callable[[list[str]], str | None] = run_docker,
           clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> int:
    """Apply every fault at its time (divided by `speed`); returns how many commands failed."""
    failed = 0
    t0 = clock()
    for fault in faults:
        wait = t0 + fault.t / speed - clock()
        if wait > 0:
            sleep(wait)
        errors = [e for cmd in docker_commands(fault, prefix=prefix, network=network, half_b=half_b)
                  if (e := runner(cmd)) is not None]
        status = "ok" if not errors else f"FAILED: {'; '.join(errors)}"
        print(f"t={fault.t:7.1f}s {fault.action:<10} {fault.target:<12} {status}", flush=True)
        failed += len(errors)
    return failed


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Replay a fault schedule with docker commands.")
    p.add_argument("schedule", help="JSON-lines fault schedule (see docker/README.md)")
    p.add_argument("--prefix", default="swarm-", help="container name = prefix + target (default swarm-)")
    p.add_argument("--network", default="swarm-net", help="network of disconnect/connect")
    p.add_argument("--half-b", default=",".join(DEFAULT_HALF_B),
                   help="services cut off by `partition halves` (default: %(default)s)")
    p.add_argument("--speed", type=float, default=1.0, help="time factor: 2 replays twice as fast")
    p.add_argument("--dry-run", action="store_true", help="print the docker commands, run nothing")
    args = p.parse_args(argv)
    if args.speed <= 0:
        print("faults: --speed must be > 0", file=sys.stderr)
        return 2
    try:
        faults = load(args.schedule)
    except (ScheduleError, OSError) as exc:
        print(f"faults: {args.schedule}: {exc}", file=sys.stderr)
        return 2
    half_b = [s for s in args.half_b.split(",") if s]
    if args.dry_run:
        for fault in faults:
            for cmd in docker_commands(fault, prefix=args.prefix, network=args.network, half_b=half_b):
                print(f"{fault.t:g}\t{' '.join(cmd)}")
        return 0
    failed = replay(faults, prefix=args.prefix, network=args.network, speed=args.speed, half_b=half_b)
    print(f"faults: {len(faults)} actions, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
