"""The `swarm-bootstrap` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from node import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swarm-bootstrap",
        description="Rendezvous + gossipsub relay peer: helps swarm-node peers find each other. "
        "Stores nothing, decides nothing. Prints 'BOOTSTRAP <multiaddr>' when ready.",
    )
    parser.add_argument("--version", action="version", version=f"swarm-bootstrap {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    build_parser().parse_args(argv)
    print("swarm-bootstrap: not built yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
