#!/usr/bin/env python3
"""Generate the compose file: N Kubo daemons, N swarm nodes (each on its own Kubo), one bootstrap.

    python3 docker/compose.py --nodes 4 > docker/docker-compose.yml

Everything sits on one internal network (`swarm-net`, no route out, no published ports). Container
names are `swarm-<service>` so docker/faults.py can address them. Needs PyYAML (dev extra).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import yaml

KUBO_IMAGE = "ipfs/kubo:v0.32.1"
IMAGE = "swarm-node:0.1.0"
NETWORK = "swarm-net"
# swarm.partition.KINDS; repeated because compose.py runs with PyYAML alone (tests/unit/test_docker_files.py
# checks the two agree)
PARTITIONS = ("iid", "dirichlet", "label-shift", "rotation")
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
CUDA_TORCH_INDEX = "https://pypi.org/simple"
ADDR_FILE = "/shared/bootstrap.addr"
# Inside a container 0.0.0.0 means the container's own interfaces on the internal compose network:
# peers in other containers must reach these listeners, and nothing is published to the host.
LISTEN = "/ip4/0.0.0.0/tcp/4001"


def _swarm_service(name: str, gpus: bool) -> dict[str, Any]:
    """The parts every service running the swarm-node image shares (a fresh dict: no YAML aliases)."""
    return {
        "build": {
            "context": "..",
            "dockerfile": "docker/Dockerfile",
            "args": {"TORCH_INDEX_URL": CUDA_TORCH_INDEX if gpus else CPU_TORCH_INDEX},
        },
        "image": IMAGE + ("-gpu" if gpus else ""),
        "container_name": f"swarm-{name}",
        "hostname": name,
        # a tiny init forwards SIGTERM and reaps children; the schedule, not Docker, restarts services
        "init": True,
        "restart": "no",
        "networks": [NETWORK],
    }


def kubo(i: int) -> dict[str, Any]:
    return {
        "image": KUBO_IMAGE,
        "container_name": f"swarm-kubo-{i}",
        "hostname": f"kubo-{i}",
        "restart": "no",
        "volumes": [f"kubo-{i}-data:/data/ipfs", "./kubo-init:/container-init.d:ro"],
        "healthcheck": {
            "test": ["CMD", "ipfs", "--api=/ip4/127.0.0.1/tcp/5001", "id"],
            "interval": "5s",
            "timeout": "5s",
            "retries": 12,
        },
        "networks": [NETWORK],
    }


def bootstrap(swarm: str, gpus: bool) -> dict[str, Any]:
    service = _swarm_service("bootstrap", gpus)
    service["command"] = [
        "swarm-entrypoint", "bootstrap", "--addr-file", ADDR_FILE, "--host", "bootstrap", "--",
        "swarm-bootstrap", "--listen", LISTEN, "--data-dir", "/data", "--swarm", swarm,
    ]
    service["volumes"] = ["bootstrap-data:/data", "bootstrap-addr:/shared"]
    service["healthcheck"] = {"test": ["CMD", "test", "-s", ADDR_FILE], "interval": "2s", "retries": 60}
    return service


def node(i: int, *, nodes: int, swarm: str, dataset: str, partition: str, role: str,
         gpus: bool) -> dict[str, Any]:
    service = _swarm_service(f"node-{i}", gpus)
    service["depends_on"] = {
        "bootstrap": {"condition": "service_healthy"},
        f"kubo-{i}": {"condition": "service_healthy"},
    }
    service["command"] = [
        "swarm-entrypoint", "node", "--addr-file", ADDR_FILE, "--",
        "swarm-node", "join", "--swarm", swarm, "--ipfs-api", f"/dns4/kubo-{i}/tcp/5001/http",
        "--listen", LISTEN, "--data-dir", "/data", "--dataset", dataset,
        # every node holds its own shard: shard i-1 of N under the same partition scheme and seed
        "--partition", partition, "--clients", str(nodes), "--client", str(i - 1), "--role", role,
        "--headless",
    ]
    service["volumes"] = [f"node-{i}-data:/data", "bootstrap-addr:/shared:ro"]
    if gpus:
        service["deploy"] = {"resources": {"reservations": {"devices": [
            {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]}}}
    return service


def build(*, nodes: int, swarm: str = "docker-demo", dataset: str = "fashion-mnist", partition: str = "iid",
          roles: Sequence[str] = ("trainer",), gpus: bool = False) -> dict[str, Any]:
    """The compose document as a dict; roles are assigned round-robin to node-1..node-N."""
    services: dict[str, Any] = {"bootstrap": bootstrap(swarm, gpus)}
    numbers = range(1, nodes + 1)
    for i in numbers:
        services[f"kubo-{i}"] = kubo(i)
    for i in numbers:
        services[f"node-{i}"] = node(i, nodes=nodes, swarm=swarm, dataset=dataset, partition=partition,
                                     role=roles[(i - 1) % len(roles)], gpus=gpus)
    volumes = ["bootstrap-data", "bootstrap-addr", *(f"kubo-{i}-data" for i in numbers),
               *(f"node-{i}-data" for i in numbers)]
    return {
        "services": services,
        # internal: no gateway to the host's networks, so nothing in the swarm reaches the internet
        "networks": {NETWORK: {"name": NETWORK, "driver": "bridge", "internal": True}},
        "volumes": {v: {} for v in volumes},
    }


def render(argv: Sequence[str]) -> str:
    args = parse_args(argv)
    doc = build(nodes=args.nodes, swarm=args.swarm, dataset=args.dataset, partition=args.partition,
                roles=args.roles.split(","), gpus=args.gpus)
    header = (f"# Generated by: python3 docker/compose.py {' '.join(argv)}\n"
              "# Do not edit by hand: change docker/compose.py and regenerate.\n")
    return header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=120)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Print a compose file for a private swarm on stdout.")
    p.add_argument("--nodes", type=int, default=4, help="swarm nodes (each with its own Kubo)")
    p.add_argument("--swarm", default="docker-demo", help="swarm id")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--partition", default="iid", choices=PARTITIONS,
                   help="how the data set is split; node-i gets shard i-1 of N")
    p.add_argument("--roles", default="trainer", help="comma-separated, assigned round-robin")
    p.add_argument("--gpus", action="store_true", help="CUDA torch build and one GPU reservation per node")
    args = p.parse_args(argv)
    if not 1 <= args.nodes <= 64:
        p.error("--nodes must be between 1 and 64")
    bad = set(args.roles.split(",")) - {"trainer", "pinner", "observer"}
    if bad:
        p.error(f"unknown role(s) {', '.join(sorted(bad))}; use trainer, pinner or observer")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    sys.stdout.write(render(list(sys.argv[1:] if argv is None else argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
