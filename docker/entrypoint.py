#!/usr/bin/env python3
"""Container entry point: hands the bootstrap's address from the bootstrap container to the nodes.

    entrypoint.py bootstrap --addr-file F --host bootstrap -- swarm-bootstrap ...
    entrypoint.py node --addr-file F -- swarm-node join ...

`bootstrap` runs the command, passes its output through, and when it prints `BOOTSTRAP <multiaddr>`
writes that address to F (atomically), with its IP address (the container's, or a wildcard) replaced
by /dns4/<host> so other containers can dial it even after a restart gives the bootstrap a new IP.
`node` waits for F (bounded), then replaces itself with the command plus `--bootstrap <address>`.
Standard library only; installed in the image as /usr/local/bin/swarm-entrypoint.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

BOOTSTRAP_LINE = re.compile(r"^BOOTSTRAP (/\S+/p2p/\S+)\s*$")
IP_PART = re.compile(r"^/ip4/[0-9.]+/|^/ip6/[0-9a-fA-F:]+/")


class EntrypointError(RuntimeError):
    """The bootstrap address never appeared, or the command to run is missing."""


def dialable(addr: str, host: str) -> str:
    """`addr` with its IP address replaced by a DNS name the other containers resolve."""
    return IP_PART.sub(f"/dns4/{host}/", addr, count=1)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def run_bootstrap(cmd: Sequence[str], addr_file: Path, host: str) -> int:
    # a stale file from an earlier run would send nodes to a bootstrap that is not up yet
    addr_file.unlink(missing_ok=True)
    child = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, text=True, bufsize=1)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: child.send_signal(signum))
    assert child.stdout is not None
    for line in child.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        match = BOOTSTRAP_LINE.match(line)
        if match:
            write_atomic(addr_file, dialable(match.group(1), host) + "\n")
    code = child.wait()
    addr_file.unlink(missing_ok=True)
    return code


def wait_for_address(addr_file: Path, timeout: float, poll: float = 0.5) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            addr = addr_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            addr = ""
        if addr:
            return addr
        if time.monotonic() >= deadline:
            raise EntrypointError(f"no bootstrap address in {addr_file} after {timeout:g} s: "
                                  "is the bootstrap container running and sharing that volume?")
        time.sleep(poll)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                usage="%(prog)s MODE [options] -- COMMAND...")
    p.add_argument("mode", choices=["bootstrap", "node"])
    p.add_argument("--addr-file", type=Path, required=True, help="shared file with the bootstrap multiaddr")
    p.add_argument("--host", default=os.uname().nodename, help="DNS name of this container (bootstrap mode)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds a node waits for the address")
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args, cmd = p.parse_args(argv[:split]), argv[split + 1:]
    try:
        if not cmd:
            raise EntrypointError("no command given: put it after --")
        if args.mode == "bootstrap":
            return run_bootstrap(cmd, args.addr_file, args.host)
        addr = wait_for_address(args.addr_file, args.timeout)
        print(f"entrypoint: bootstrap {addr}", flush=True)
        os.execvp(cmd[0], [*cmd, "--bootstrap", addr])
    except (EntrypointError, OSError) as exc:
        print(f"entrypoint: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
