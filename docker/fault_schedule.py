#!/usr/bin/env python3
"""Fault schedules: parse, check and generate the JSON-lines file that the chaos runs replay.

Plain Python, standard library only, so docker/faults.py (containers) and bench/chaos.py (processes)
read and write the same files. Format (docker/README.md has the full description):

    # comment lines and blank lines are ignored
    {"t": 30, "action": "kill", "target": "node-3"}
    {"t": 45.5, "action": "start", "target": "node-3"}

`t` is seconds from the start of the run, non-decreasing; `action` is one of ACTIONS; `target` is a
compose service name (`bootstrap`, `node-N`, `kubo-N`), or `halves` for `partition` / `heal`: the
swarm split in two halves that cannot reach each other until healed (which services form each half
is the replayer's choice: docker/faults.py `--half-b`, bench/chaos.py the upper half of each kind).
Every fault must be legal in the state the schedule has put its target in (no `start` of a running
target, no `unpause` of a running one, ...).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# fault -> the action that undoes it
RECOVERY = {"kill": "start", "pause": "unpause", "disconnect": "connect", "partition": "heal"}
ACTIONS = tuple(RECOVERY) + tuple(RECOVERY.values())
HALVES = "halves"  # the one target of partition / heal, and they are its only actions
SPLIT_ACTIONS = ("partition", "heal")
TARGET_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
HEADER = "# swarm-node fault schedule v1"


class ScheduleError(ValueError):
    """A schedule line is malformed or asks for an impossible transition."""


@dataclass(frozen=True)
class Fault:
    t: float
    action: str
    target: str

    def to_json(self) -> str:
        t: float | int = int(self.t) if float(self.t).is_integer() else self.t
        return json.dumps({"t": t, "action": self.action, "target": self.target})


def _parse_line(line: str, lineno: int) -> Fault:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ScheduleError(f"line {lineno}: not JSON ({exc.msg}); write one JSON object per line") from None
    if not isinstance(obj, dict) or set(obj) != {"t", "action", "target"}:
        raise ScheduleError(f"line {lineno}: need exactly the keys t, action, target, e.g. "
                            '{"t": 30, "action": "kill", "target": "node-3"}')
    t, action, target = obj["t"], obj["action"], obj["target"]
    if isinstance(t, bool) or not isinstance(t, int | float) or not 0 <= t < float("inf"):
        raise ScheduleError(f"line {lineno}: t must be a finite number of seconds >= 0, got {t!r}")
    if action not in ACTIONS:
        raise ScheduleError(f"line {lineno}: unknown action {action!r}; use one of {', '.join(ACTIONS)}")
    if not isinstance(target, str) or not TARGET_RE.match(target):
        raise ScheduleError(f"line {lineno}: target {target!r} is not a service name like node-3")
    if (action in SPLIT_ACTIONS) != (target == HALVES):
        raise ScheduleError(f"line {lineno}: `partition` and `heal` go with target {HALVES!r} and it takes "
                            f"no other action; got {action} {target}")
    return Fault(float(t), action, target)


def _check_transition(state: dict[str, set[str]], fault: Fault, lineno: int) -> None:
    """`state[target]` holds the faults currently in force on it; each must be undone before reuse."""
    active = state.setdefault(fault.target, set())
    if fault.action in RECOVERY:
        if "kill" in active:
            raise ScheduleError(f"line {lineno}: {fault.target} is killed; `start` it first")
        if fault.action in active:
            raise ScheduleError(f"line {lineno}: {fault.target} is already under `{fault.action}`")
        if fault.action == "kill" and "pause" in active:
            raise ScheduleError(f"line {lineno}: {fault.target} is paused; `unpause` it before `kill`")
        active.add(fault.action)
        return
    undone = next(f for f, r in RECOVERY.items() if r == fault.action)
    if undone not in active:
        raise ScheduleError(f"line {lineno}: `{fault.action}` {fault.target} without an earlier `{undone}`")
    active.discard(undone)


def parse(lines: Iterable[str]) -> list[Fault]:
    """The faults of a schedule, checked for syntax, order in time and legal transitions."""
    faults: list[Fault] = []
    state: dict[str, set[str]] = {}
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fault = _parse_line(line, lineno)
        if faults and fault.t < faults[-1].t:
            raise ScheduleError(f"line {lineno}: t={fault.t:g} is earlier than the line before; sort by t")
        _check_transition(state, fault, lineno)
        faults.append(fault)
    return faults


def load(path: str) -> list[Fault]:
    with open(path, encoding="utf-8") as fh:
        return parse(fh)


def unrecovered(faults: Sequence[Fault]) -> list[Fault]:
    """Faults still in force at the end of the schedule (a run should leave every target up)."""
    open_faults: dict[tuple[str, str], Fault] = {}
    for f in faults:
        if f.action in RECOVERY:
            open_faults[(f.target, f.action)] = f
        else:
            undone = next(k for k, r in RECOVERY.items() if r == f.action)
            open_faults.pop((f.target, undone), None)
    return sorted(open_faults.values(), key=lambda f: f.t)


def generate(*, seed: int, targets: Sequence[str], duration: float, faults: int,
             min_down: float = 5.0, max_down: float = 30.0) -> list[Fault]:
    """`faults` random fault + recovery pairs within `duration` seconds, reproducible by `seed`.

    A target gets at most one fault at a time, and every fault is undone before `duration`.
    Target `halves` (when listed) can only get `partition`; the others get kill, pause or disconnect.
    """
    if not targets:
        raise ScheduleError("no targets: pass service names such as node-1,node-2")
    if not 0 < min_down <= max_down < duration:
        raise ScheduleError("need 0 < min_down <= max_down < duration")
    rng = random.Random(seed)
    busy: dict[str, list[tuple[float, float]]] = {t: [] for t in targets}
    out: list[Fault] = []
    for _ in range(faults):
        for _attempt in range(100):
            target = rng.choice(list(targets))
            action = rng.choice(_faults_for(target))
            down = round(rng.uniform(min_down, max_down), 1)
            start = round(rng.uniform(0, duration - down), 1)
            end = round(start + down, 1)
            # a second fault on the same target may not overlap the first (transitions must stay legal)
            if all(end < s or start > e for s, e in busy[target]):
                busy[target].append((start, end))
                out += [Fault(start, action, target), Fault(end, RECOVERY[action], target)]
                break
        else:
            raise ScheduleError(f"cannot fit {faults} faults into {duration:g} s; lower --faults")
    # stable order: time, then recoveries before faults at the same instant
    out.sort(key=lambda f: (f.t, f.action in RECOVERY, f.target))
    return out


def _faults_for(target: str) -> list[str]:
    return ["partition"] if target == HALVES else [f for f in RECOVERY if f != "partition"]


def dumps(faults: Sequence[Fault], comment: str = "") -> str:
    head = [HEADER] + ([f"# {comment}"] if comment else [])
    return "\n".join(head + [f.to_json() for f in faults]) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Generate a seeded fault schedule (JSON lines) on stdout, "
                                "or check one with --check FILE.")
    p.add_argument("--check", metavar="FILE", help="parse FILE and report problems instead of generating")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--targets", default="node-1,node-2,node-3,node-4,kubo-1,bootstrap",
                   help="comma-separated service names; add `halves` for two-halves partitions")
    p.add_argument("--duration", type=float, default=300.0, help="run length in seconds")
    p.add_argument("--faults", type=int, default=6, help="number of fault + recovery pairs")
    args = p.parse_args(argv)
    try:
        if args.check:
            faults = load(args.check)
            left = unrecovered(faults)
            print(f"{args.check}: {len(faults)} actions, {len(left)} faults never undone")
            return 0
        targets = [t for t in args.targets.split(",") if t]
        faults = generate(seed=args.seed, targets=targets, duration=args.duration, faults=args.faults)
    except (ScheduleError, OSError) as exc:
        print(f"fault_schedule: {exc}", file=sys.stderr)
        return 2
    comment = (f"generated: fault_schedule.py --seed {args.seed} --targets {','.join(targets)} "
               f"--duration {args.duration:g} --faults {args.faults}")
    sys.stdout.write(dumps(faults, comment))
    return 0


if __name__ == "__main__":
    sys.exit(main())
