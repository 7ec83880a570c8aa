"""`swarm-node status --data-dir DIR`: the live view of a node already running on this machine.

It reads the status record the node writes into its data dir; it opens no port.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live

from node.status import STATUS_FILE, read_status, render


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=Path("swarm-data"),
                        help="the data dir of the running node (default: ./swarm-data)")
    parser.add_argument("--once", action="store_true", help="print the view once and exit")
    parser.add_argument("--interval", type=float, default=1.0, help="refresh period in seconds")


def run(args: argparse.Namespace) -> int:
    console = Console()
    path = args.data_dir / STATUS_FILE
    if not path.exists():
        console.print(f"no node status at {path}: is `swarm-node join --data-dir {args.data_dir}` running?")
        return 1
    if args.once:
        console.print(render(read_status(args.data_dir)))
        return 0
    try:
        with Live(render(read_status(args.data_dir)), console=console, refresh_per_second=4) as live:
            while True:
                time.sleep(args.interval)
                live.update(render(read_status(args.data_dir)))
    except KeyboardInterrupt:
        return 0
