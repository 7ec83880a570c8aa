"""`swarm-node inspect FILE|CID`: what a snapshot holds (encoding, schema, meta, tensors), verified."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from storage.defaults import DEFAULT_IPFS_API, DEFAULT_MAX_MB, mib_to_bytes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="a snapshot file, or a CID to fetch through --ipfs-api")
    parser.add_argument("--ipfs-api", default=DEFAULT_IPFS_API, help="IPFS (Kubo RPC) API multiaddr")
    parser.add_argument("--max-mb", type=float, default=float(DEFAULT_MAX_MB),
                        help=f"refuse bigger snapshots ({DEFAULT_MAX_MB})")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a CID (30)")
    parser.add_argument("--json", action="store_true", help="print the snapshot's description as JSON")


def run(args: argparse.Namespace) -> int:
    import storage  # lazily: it imports torch

    max_size = mib_to_bytes(args.max_mb)
    try:
        path = Path(args.target)
        if path.exists():
            data = path.read_bytes()
        else:
            data = storage.IpfsStore(args.ipfs_api).get(args.target, max_size=max_size, timeout=args.timeout)
        snap = storage.decode(data, max_size=max_size)
    except OSError as exc:
        print(f"swarm-node inspect: cannot read {args.target}: {exc.strerror}", file=sys.stderr)
        return 1
    except storage.StoreError as exc:
        print(f"swarm-node inspect: {exc}", file=sys.stderr)
        return 1
    tensors = [{"name": name, "dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
                "min": float(t.min()) if t.numel() else None, "max": float(t.max()) if t.numel() else None}
               for name, t in snap.tensors.items()]
    tensors += [{"name": name, "dtype": str(values.dtype).removeprefix("torch."), "shape": list(shape),
                 "changed": int(idx.numel())} for name, (idx, values, shape) in snap.sparse.items()]
    record = {"cid": storage.cid_of(data), "bytes": len(data), "encoding": snap.encoding,
              "schema": snap.schema, "meta": snap.meta, "tensors": tensors}
    if args.json:
        print(json.dumps(record, indent=1))
        return 0
    console = Console()
    console.print(f"[bold]{record['cid']}[/bold]  {len(data):,} bytes, encoding {snap.encoding}, "
                  f"schema {snap.schema}")
    for key, value in snap.meta.items():
        console.print(f"  {key}: {value}")
    table = Table("tensor", "dtype", "shape", "min", "max")
    for t in tensors:
        table.add_row(t["name"], t["dtype"], "x".join(map(str, t["shape"])) or "scalar",
                      "-" if t.get("min") is None else f"{t['min']:.4g}",
                      "-" if t.get("max") is None else f"{t['max']:.4g}")
    console.print(table)
    return 0
