"""`swarm-node doctor`: checks, before a `join`, what would stop this machine from taking part.

In order: the bootstrap answers; how the swarm sees this machine (the address it connects from, and
whether peers can connect back: reach, p2p/reach.py); the clock against the bootstrap's; the IPFS
daemon `join` would use; the swarm manifest `join` would take (given, or offered by the bootstraps)
and whether that daemon can fetch it; the compute device and the free disk in the data dir. One line
per check, OK / WARN / PROBLEM / SKIP, with what to do; exit code 1 if any PROBLEM. Settings are read
as `join` reads them (flags, `SWARM_*`, `--config`), so doctor checks what `join` would do.

A WARN is something `join` works around (behind NAT, a slightly wrong clock, little disk); a PROBLEM
stops it or cuts this peer off. Doctor runs its own short-lived libp2p host under a fresh identity, so
it can run beside a node of the same data dir.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from libp2p.abc import IHost
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from multiaddr import Multiaddr

from node.commands.join import CONFIG_HELP, add_setting_flags
from node.config import ConfigError, NodeConfig, load_config
from node.ipfs_setup import PRIVATE
from p2p.connections import BootstrapAddrError, parse_peer_addr
from p2p.host import build_host, quiet_libp2p_logs, running
from p2p.reach import MAX_CANDIDATES, Reach, ReachError, ask_reach
from p2p.validator import ValidationPolicy
from storage.daemon import DaemonError, daemon_command
from storage.defaults import DEFAULT_IPFS_API
from storage.errors import StoreError
from storage.ipfs import IpfsStore
from storage.manifest import MAX_BYTES, Manifest, ManifestError

log = logging.getLogger(__name__)

SETTINGS = ["swarm", "bootstrap", "manifest", "listen", "announce_addr", "ipfs_api", "data_dir", "device"]
SUGGESTED_PORT = 4001
DIAL_TIMEOUT_S = 5.0
SKEW_WARN_S = 5.0
MIN_FREE_BYTES = 1 << 30

OK, WARN, PROBLEM, SKIP = "OK", "WARN", "PROBLEM", "SKIP"


@dataclass
class Check:
    name: str
    status: str
    summary: str
    advice: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        text = f"{self.status:<8} {self.name}: {self.summary}"
        return f"{text}. What to do: {self.advice}" if self.advice else text

    def record(self) -> dict[str, Any]:
        return {"status": self.status, "summary": self.summary, "advice": self.advice, **self.details}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Check what would stop this machine from joining a swarm: the bootstrap, how the swarm sees "
        "you (address, reachable directly or only outbound), clock skew, the IPFS daemon, the swarm "
        "manifest, the compute device and free disk. Takes the same settings as `join` (flags, SWARM_* "
        "variables, --config). "
        "One line per check: OK, WARN (join works around it), PROBLEM (it stops join or cuts you off) "
        "or SKIP, with what to do. Exit code 0: no problem; 1: at least one problem."
    )
    parser.add_argument("--config", type=Path, help=CONFIG_HELP)
    add_setting_flags(parser, SETTINGS, {
        "swarm": "the --swarm you give `join`: whose manifest the bootstraps are asked for",
        "manifest": "the --manifest you give `join` (if any): checked against what the bootstraps offer "
                    "and, when the IPFS daemon answers, fetched and shown",
        "bootstrap": "multiaddr of a swarm-bootstrap peer (/ip4/../tcp/../p2p/..) to check against; "
                     "repeatable: each is dialled, the first that answers is asked how it sees you",
        "listen": "listen multiaddr of doctor's short-lived test host, whose reachability is checked "
                  "(default /ip4/0.0.0.0/tcp/0, as for `join`; use the --listen you give `join`)",
        "announce_addr": "the --announce-addr you give `join` (a forwarded port): doctor asks whether "
                         "the swarm can connect to exactly these; repeatable",
        "ipfs_api": "the --ipfs-api you give `join`: empty (the default daemon, else a private one), "
                    "'private', or a Kubo RPC API multiaddr; doctor never starts a daemon",
        "data_dir": "the --data-dir you give `join` (its free disk is checked; default ./swarm-data)",
        "device": "the --device you give `join`: auto (cuda > mps > cpu), cpu, cuda, mps",
    })
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")


def run(args: argparse.Namespace) -> int:
    flags = {k: v for k, v in vars(args).items() if k in SETTINGS}
    try:
        cfg = load_config(args.config, flags)
    except ConfigError as exc:
        print(f"swarm-node doctor: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    checks: list[Check] = []
    emit = _printer(checks, args.json)
    for check in network_checks(cfg):
        emit(check)
    ipfs = ipfs_check(cfg)
    emit(ipfs)
    emit(manifest_check(cfg, ipfs))
    emit(device_check(cfg))
    emit(disk_check(cfg.data_dir))
    ok = all(c.status != PROBLEM for c in checks)
    if args.json:
        print(json.dumps({"ok": ok, "checks": {c.name: c.record() for c in checks}}, indent=1))
    return 0 if ok else 1


def _printer(checks: list[Check], quiet: bool) -> Callable[[Check], None]:
    def emit(check: Check) -> None:
        checks.append(check)
        if not quiet:  # a line as soon as its check is done: the slow ones come last
            print(check.line(), flush=True)
    return emit


def network_checks(cfg: NodeConfig) -> list[Check]:
    """The bootstrap, reach and clock checks (one libp2p host, run in trio)."""
    quiet_libp2p_logs()
    return trio.run(_network, cfg)


async def _network(cfg: NodeConfig) -> list[Check]:
    skipped = [Check("reach", SKIP, "needs a bootstrap that answers"),
               Check("clock", SKIP, "needs a bootstrap that answers")]
    if not cfg.bootstrap:
        return [Check("bootstrap", PROBLEM, "no bootstrap address given",
                      "pass --bootstrap with the address swarm-bootstrap prints (BOOTSTRAP /ip4/...)"),
                *skipped]
    try:
        peers = [parse_peer_addr(a) for a in cfg.bootstrap]
    except BootstrapAddrError as e:
        return [Check("bootstrap", PROBLEM, str(e), "copy the whole address swarm-bootstrap prints"),
                *skipped]
    listen = Multiaddr(cfg.listen)  # NodeConfig has checked it is /ip4/HOST/tcp/PORT
    # With --announce-addr the reach check asks about exactly those addresses (a forwarded port).
    host = build_host(create_new_key_pair(), cfg.announce_addr)
    async with running(host, [listen]):
        answered = await _dial_bootstraps(host, peers)
        if not answered:
            addrs = ", ".join(cfg.bootstrap)
            return [Check("bootstrap", PROBLEM,
                          f"{addrs} does not answer (waited up to {DIAL_TIMEOUT_S:.0f} s)",
                          "check the address (copy the line swarm-bootstrap prints); the bootstrap may "
                          "be down (ask its operator); or this network blocks outbound TCP to that port",
                          {"reachable": []}), *skipped]
        pid, addr = answered[0]
        first = Check("bootstrap", OK, f"{addr}/p2p/…{pid[-8:]} answers"
                      + (f" ({len(answered)} of {len(peers)} answer)" if len(peers) > 1 else ""),
                      details={"reachable": [f"{a}/p2p/{p}" for p, a in answered]})
        if len(answered) < len(peers):
            first.status = WARN
            first.advice = "check the addresses of the bootstraps that do not answer, or drop them"
        return [first, *await _reach_and_clock(host, pid, cfg.listen)]


async def _dial_bootstraps(host: IHost, peers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (peer id, address) of each bootstrap that accepted a connection within the timeout."""
    answered: list[tuple[str, str]] = []

    async def dial(pid: str, addr: str) -> None:
        with trio.move_on_after(DIAL_TIMEOUT_S):
            try:
                await host.connect(PeerInfo(ID.from_base58(pid), [Multiaddr(addr)]))
                answered.append((pid, addr))
            except Exception as e:  # dial errors come in many libp2p types; all mean "no answer"
                log.info("dial %s failed: %s", addr, e)

    async with trio.open_nursery() as nursery:
        for pid, addr in peers:
            nursery.start_soon(dial, pid, addr)
    return sorted(answered, key=lambda a: [p for p, _ in peers].index(a[0]))


async def _reach_and_clock(host: IHost, pid: str, listen: str) -> list[Check]:
    ours = [str(a).split("/p2p/")[0] for a in host.get_addrs()]
    if not ours:
        return [Check("reach", PROBLEM, f"cannot listen on {listen} (in use, or not an address of this "
                      "machine)", "pick another --listen port or address"),
                Check("clock", SKIP, "needs a listen address")]
    ports = sorted({a.split("/")[4] for a in ours if a.split("/")[3:4] == ["tcp"]})
    # The host advertises interface addresses, never the wildcard it listens on (p2p.addresses).
    candidates = ours[:MAX_CANDIDATES]
    try:
        reach = await ask_reach(host, ID.from_base58(pid), candidates)
        ip = reach.observed_ip
        if not reach.reachable and ip is not None:
            # None of our addresses is the one the swarm sees (0.0.0.0, or a LAN address behind NAT):
            # ask whether our ports open on the address it sees (a forwarded port, or no NAT at all).
            family = "ip4" if ":" not in ip else "ip6"
            reach = await ask_reach(host, ID.from_base58(pid),
                                    [f"/{family}/{ip}/tcp/{p}" for p in ports][:MAX_CANDIDATES])
    except ReachError as e:
        return [Check("reach", PROBLEM, str(e), "upgrade the bootstrap to this swarm-node version, or "
                      "ask another bootstrap"), Check("clock", SKIP, "needs a reach answer")]
    return [_reach_check(reach, listen), _clock_check(reach)]


def _reach_check(reach: Reach, listen: str) -> Check:
    ip = reach.observed_ip or reach.observed
    family = "ip6" if ":" in ip else "ip4"
    open_addrs = [a for a, ok in reach.reachable.items() if ok]
    details = {"observed": reach.observed, "observed_ip": reach.observed_ip,
               "reachable_directly": bool(open_addrs), "reachable_addrs": open_addrs,
               "probed": dict(reach.reachable)}
    if open_addrs:
        return Check("reach", OK, f"the swarm sees you as {ip} and can connect to you at "
                     f"{', '.join(open_addrs)} (reachable directly)", details=details)
    port = listen.split("/")[4] if listen.count("/") >= 4 and listen.split("/")[3] == "tcp" else "0"
    if port in ("", "0"):
        port = str(SUGGESTED_PORT)
        how = (f"listen on a fixed port (--listen /ip4/0.0.0.0/tcp/{port}), forward TCP port {port} on your "
               "router to this machine")
    else:
        how = f"forward TCP port {port} on your router to this machine"
    return Check("reach", WARN, f"the swarm sees you as {ip} but cannot connect to you: you are behind NAT "
                 "or a firewall (outbound only)",
                 f"you can still join: others will fetch your snapshots through a pinner. To be reachable, "
                 f"{how} and pass --announce-addr /{family}/{ip}/tcp/{port}", details)


def _clock_check(reach: Reach) -> Check:
    skew = reach.clock_skew_s
    # Peers refuse announcements stamped further ahead than this: one clock that far off cuts us off.
    limit = ValidationPolicy().max_future_s
    details = {"clock_skew_s": round(skew, 3), "rtt_s": round(reach.rtt, 4)}
    side = "behind" if skew > 0 else "ahead of"
    text = f"your clock is {abs(skew):.1f} s {side} the bootstrap's"
    if abs(skew) <= SKEW_WARN_S:
        return Check("clock", OK, f"your clock is within {max(abs(skew), 0.1):.1f} s of the bootstrap's "
                     f"(round trip {reach.rtt * 1000:.0f} ms)", details=details)
    if abs(skew) <= limit:
        return Check("clock", WARN, text, "fix your clock (NTP); announcements are dropped beyond "
                     f"{limit:.0f} s", details)
    return Check("clock", PROBLEM, f"{text}: peers will drop announcements (limit {limit:.0f} s)",
                 "fix your clock (NTP), e.g. `timedatectl set-ntp true`", details)


def ipfs_check(cfg: NodeConfig) -> Check:
    def answers(api: str) -> str | None:
        """The daemon's peer id, or None if nothing answers at `api`."""
        try:
            return IpfsStore(api, retries=0, timeout=3.0).peer_id()
        except StoreError:
            return None

    def private(prefix: str) -> Check:
        try:
            kind, exe = daemon_command()
        except DaemonError as e:
            return Check("ipfs", PROBLEM, f"{prefix}join would start a private IPFS daemon, but none is "
                         "installed", f"{e}; or pass --ipfs-api with the API of a running daemon")
        return Check("ipfs", OK, f"{prefix}join will start a private IPFS daemon ({kind}: {exe[0]}) in "
                     f"{cfg.data_dir / 'ipfs'}", details={"api": PRIVATE, "daemon": kind})

    if cfg.ipfs_api == PRIVATE:
        return private("")
    if not cfg.ipfs_api:
        peer = answers(DEFAULT_IPFS_API)
        if peer is None:
            return private(f"no IPFS daemon at {DEFAULT_IPFS_API}; ")
        return Check("ipfs", OK, f"the IPFS daemon at {DEFAULT_IPFS_API} answers (peer …{peer[-8:]})",
                     details={"api": DEFAULT_IPFS_API})
    try:
        peer = answers(cfg.ipfs_api)
    except Exception as e:  # ipfshttpclient rejects a malformed address with its own types
        return Check("ipfs", PROBLEM, f"--ipfs-api {cfg.ipfs_api!r} is not usable ({e})",
                     "pass a Kubo RPC API multiaddr such as /ip4/127.0.0.1/tcp/5001, or 'private'")
    if peer is None:
        return Check("ipfs", PROBLEM, f"no IPFS daemon answers at {cfg.ipfs_api}",
                     "start it (`ipfs daemon`), fix --ipfs-api, or pass --ipfs-api private to let the node "
                     "start its own", {"api": cfg.ipfs_api})
    return Check("ipfs", OK, f"the IPFS daemon at {cfg.ipfs_api} answers (peer …{peer[-8:]})",
                 details={"api": cfg.ipfs_api})


def manifest_check(cfg: NodeConfig, ipfs: Check) -> Check:
    """Which manifest `join` would take and, when the daemon of the `ipfs` check answers, what it says."""
    from node.manifest import ManifestConflict, swarm_manifest  # imports torch

    asked: list[str] = []
    try:
        cid = swarm_manifest(cfg.manifest, cfg.swarm, list(cfg.bootstrap), asked.append)
    except ManifestConflict as exc:
        return Check("manifest", PROBLEM, f"the swarm {cfg.swarm}'s manifests disagree", str(exc))
    details: dict[str, Any] = {"manifest": cid, "said": asked}
    if not cid:
        return Check("manifest", OK, f"swarm {cfg.swarm} has no manifest (none given, none offered): peers "
                     "merge by model shapes and the class order of their --dataset", details=details)
    source = "--manifest" if cid == cfg.manifest else "offered by the bootstrap"
    api = ipfs.details.get("api", PRIVATE)
    if ipfs.status != OK or api == PRIVATE:
        return Check("manifest", OK, f"{cid} ({source}); a private IPFS daemon fetches it from the peers "
                     "it meets after joining", details=details)
    try:
        manifest = Manifest.from_bytes(IpfsStore(api, retries=0).get(cid, max_size=MAX_BYTES,
                                                                     timeout=DIAL_TIMEOUT_S))
    except ManifestError as exc:
        return Check("manifest", PROBLEM, f"{cid} ({source}) is not a swarm manifest: {exc}",
                     "ask the swarm's operator for the right CID", details)
    except StoreError:
        return Check("manifest", WARN, f"{cid} ({source}): the IPFS daemon at {api} cannot fetch it "
                     f"within {DIAL_TIMEOUT_S:.0f} s", "join fetches it through the peers it meets; a peer "
                     "of the swarm (or a pinner) must be running", details)
    shape = "x".join(map(str, manifest.input_shape))
    return Check("manifest", OK, f"{cid} ({source}): model {manifest.model}, {shape} inputs, "
                 f"{len(manifest.classes)} classes ({manifest.labels})", details=details)


def device_check(cfg: NodeConfig) -> Check:
    from swarm.models import pick_device  # imports torch: seconds, so it is the last slow check

    try:
        device = pick_device(cfg.device)
    except RuntimeError as e:
        what, _, todo = str(e).partition("; ")
        return Check("device", PROBLEM, what, todo or "pass --device auto (cuda > mps > cpu) or cpu")
    summary = f"training would run on {device.type}"
    if device.type == "cpu" and cfg.device == "auto":
        summary += " (no CUDA or MPS device found; training is slower but works)"
    return Check("device", OK, summary, details={"device": device.type})


def disk_check(data_dir: Path) -> Check:
    existing = Path(data_dir).absolute()
    while not existing.exists():  # a data dir join would create: its nearest existing parent counts
        existing = existing.parent
    if not os.access(existing, os.W_OK):
        return Check("disk", PROBLEM, f"{existing} is not writable",
                     "pass a --data-dir you can write to", {"data_dir": str(data_dir)})
    free = shutil.disk_usage(existing).free
    details = {"data_dir": str(data_dir), "free_bytes": free}
    summary = f"{free / 1e9:.1f} GB free in {existing}"
    if free < MIN_FREE_BYTES:
        return Check("disk", WARN, summary, f"free at least {MIN_FREE_BYTES / 1e9:.0f} GB (snapshots, "
                     "checkpoints and the IPFS repo grow), or pass another --data-dir", details)
    return Check("disk", OK, summary, details=details)
