"""`swarm-node lineage CID|FILE`: where a snapshot's model came from, generation by generation.

Reads each ancestor from the local snapshot caches of `--data-dir` (a node's data dir, or a demo's
work dir holding several), else through `--ipfs-api`. Ancestors that cannot be had are shown as
missing; the exit code is 1 only when the snapshot asked about cannot be read itself.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from storage.defaults import DEFAULT_IPFS_API, DEFAULT_MAX_MB, mib_to_bytes

DEFAULT_DATA_DIR = Path("swarm-data")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from node.lineage import DEFAULT_DEPTH, DEFAULT_MAX_NODES, DEFAULT_TIMEOUT_S

    parser.add_argument("target", help="a snapshot CID, or a snapshot file")
    parser.add_argument("--data-dir", type=Path, action="append", metavar="DIR",
                        help="look for snapshots in this node data dir's cache first, or in those of the "
                        "data dirs under it (a demo's --workdir); repeatable "
                        f"(default: ./{DEFAULT_DATA_DIR} if it exists)")
    parser.add_argument("--ipfs-api", default=DEFAULT_IPFS_API,
                        help="IPFS (Kubo RPC) API multiaddr for snapshots not cached locally "
                        f"({DEFAULT_IPFS_API}); not asked again once it cannot be reached")
    parser.add_argument("--depth", type=int, default=DEFAULT_DEPTH,
                        help=f"generations of ancestors to follow ({DEFAULT_DEPTH})")
    parser.add_argument("--max-nodes", type=int, default=DEFAULT_MAX_NODES,
                        help=f"fetch at most this many snapshots in all ({DEFAULT_MAX_NODES})")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"seconds to wait for each snapshot before showing it as missing "
                        f"({DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--max-mb", type=float, default=float(DEFAULT_MAX_MB),
                        help=f"refuse bigger snapshots ({DEFAULT_MAX_MB})")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the lineage graph as JSON")
    out.add_argument("--dot", action="store_true", help="print the lineage graph as Graphviz DOT "
                     "(`... --dot | dot -Tsvg > lineage.svg`)")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from node.lineage import OK, SnapshotSources, snapshot_caches, walk
    from node.lineage_view import dot, tree
    from storage import InvalidCid, cid_of, normalize_cid

    if args.depth < 0 or args.max_nodes < 1 or args.timeout <= 0:
        print("swarm-node lineage: --depth must be >= 0, --max-nodes >= 1 and --timeout > 0", file=sys.stderr)
        return 2
    given: dict[str, bytes] = {}
    root = args.target
    path = Path(args.target)
    if path.is_file():
        try:
            data = path.read_bytes()
        except OSError as exc:
            print(f"swarm-node lineage: cannot read {path}: {exc.strerror}", file=sys.stderr)
            return 1
        root = cid_of(data)
        given[root] = data
    else:
        try:
            normalize_cid(root)
        except InvalidCid as exc:
            print(f"swarm-node lineage: {root} is neither a snapshot file nor a CID ({exc})", file=sys.stderr)
            return 1
    data_dirs = args.data_dir or ([DEFAULT_DATA_DIR] if DEFAULT_DATA_DIR.is_dir() else [])
    sources = SnapshotSources(snapshot_caches(data_dirs), args.ipfs_api, max_size=mib_to_bytes(args.max_mb),
                              given=given)
    lineage = walk(root, sources, depth=args.depth, max_nodes=args.max_nodes, timeout=args.timeout)
    if args.json:
        print(json.dumps(lineage.to_json(), indent=1))
    elif args.dot:
        print(dot(lineage))
    else:
        Console().print(tree(lineage))
    return 0 if lineage.nodes[lineage.root].status == OK else 1
