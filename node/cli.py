"""The `swarm-node` command line: parses the subcommand and hands over to `node.commands.<name>`.

Subcommand modules are imported only when chosen, so `swarm-node --help` stays fast (no torch import).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib.metadata import version
from types import ModuleType

COMMANDS: dict[str, str] = {
    "join": "take part in a swarm: train, publish, fetch, merge",
    "demo": "start a bootstrap and several peers on this machine and show them learn",
    "simulate": "run many virtual peers in one process (research experiments)",
    "manifest": "create (and publish) or show a swarm manifest: model, input shape, classes, initial weights",
    "publish": "put a snapshot file in IPFS and announce it to a swarm",
    "inspect": "show what a snapshot file or CID holds",
    "lineage": "show the snapshots a snapshot was merged and trained from, with their merge weights",
    "status": "live view of a node already running on this machine",
    "doctor": "check what would stop this machine from joining: bootstrap, reachability, clock, IPFS, disk",
}


def _module(command: str) -> ModuleType:
    return importlib.import_module(f"node.commands.{command}")


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the `chosen` subcommand's module is imported to add its arguments."""
    parser = argparse.ArgumentParser(
        prog="swarm-node",
        description="Decentralized, privacy-preserving deep learning: train on your own data, "
        "share only weights over IPFS + libp2p gossipsub.",
    )
    parser.add_argument("--version", action="version", version=f"swarm-node {version('swarm-node')}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, summary in COMMANDS.items():
        p = sub.add_parser(name, help=summary, description=summary)
        if name == chosen:
            _module(name).add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = argv[0] if argv and argv[0] in COMMANDS else None
    parser = build_parser(chosen)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return int(_module(args.command).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
