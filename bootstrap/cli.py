"""The `swarm-bootstrap` command line: a rendezvous point and gossipsub relay that decides nothing.

It registers and answers rendezvous requests, relays (and validates) announcements on the topics of the
swarms it serves, stores nothing, and prints `BOOTSTRAP <multiaddr>/p2p/<peer id>` once ready. Like a
node, it bans flooders (p2p/bans.py): every peer talks to it, so it is the first a flooder
reaches. One validator serves all its swarms, so a publisher's rate limit counts across them. It also
answers reach requests (p2p/reach.py), which tell a peer how the swarm sees it (`swarm-node doctor`), and
manifest requests (p2p/manifest_offer.py): with `--manifest CID` it tells joiners the swarm's manifest,
so `swarm-node join` needs only the bootstrap's address.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Mapping, Sequence
from importlib.metadata import version
from pathlib import Path

import trio
from libp2p.discovery.rendezvous.service import RendezvousService
from multiaddr import Multiaddr

from p2p.addresses import AddressError, parse_tcp
from p2p.announcement import AnnouncementError, topic_for
from p2p.bans import BanEnforcer
from p2p.host import build_host, build_pubsub, gossiping, innermost_error, quiet_libp2p_logs
from p2p.identity import KEY_FILE, IdentityError, load_or_create
from p2p.manifest_offer import ManifestOfferService, ManifestOptionError, parse_manifest_options
from p2p.reach import ReachService
from p2p.validator import AnnounceValidator

DEFAULT_LISTEN = "/ip4/0.0.0.0/tcp/4040"
log = logging.getLogger("swarm-bootstrap")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swarm-bootstrap",
        description="Rendezvous + gossipsub relay peer: helps swarm-node peers find each other. "
        "Stores nothing, decides nothing. Prints 'BOOTSTRAP <multiaddr>' when ready.",
    )
    parser.add_argument("--version", action="version", version=f"swarm-bootstrap {version('swarm-node')}")
    parser.add_argument("--swarm", action="append", required=True, metavar="ID",
                        help="swarm id to serve (repeatable); its announcement topic is relayed")
    parser.add_argument("--listen", default=DEFAULT_LISTEN,
                        help=f"multiaddr to listen on ({DEFAULT_LISTEN}: every interface; peers on other "
                        "hosts must reach this port)")
    parser.add_argument("--announce-addr", action="append", default=[], metavar="MULTIADDR",
                        help="address peers should dial instead of the interface addresses, e.g. "
                        "/ip4/<public ip>/tcp/4040 behind a forwarded port (repeatable)")
    parser.add_argument("--data-dir", type=Path, default=Path.home() / ".swarm-bootstrap",
                        help="where the persistent identity key lives (~/.swarm-bootstrap)")
    parser.add_argument("--key-file", type=Path, help=f"identity key file (default DATA_DIR/{KEY_FILE})")
    parser.add_argument("--manifest", action="append", default=[], metavar="[SWARM=]CID",
                        help="the swarm's manifest (the CID `swarm-node manifest create` printed): joiners "
                        "that pass no --manifest use it, joiners that pass another are refused; SWARM=CID "
                        "when serving several swarms (repeatable). The bootstrap only tells the CID: "
                        "each joiner fetches the manifest from IPFS and checks it")
    return parser


async def serve(key_file: Path, listen: Multiaddr, swarms: list[str], announce: Sequence[str] = (),
                manifests: Mapping[str, str] | None = None) -> None:
    """Run until SIGTERM/SIGINT; OSError if nothing could listen. `manifests`: swarm -> manifest CID."""
    key_pair = load_or_create(key_file)
    host = build_host(key_pair, announce)
    pubsub, router = build_pubsub(host)
    RendezvousService(host)
    ReachService(host)
    offered = {swarm: (manifests or {}).get(swarm, "") for swarm in swarms}
    ManifestOfferService(host, offered)
    bans = BanEnforcer(host, pubsub, AnnounceValidator())
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with gossiping(host, pubsub, router, [listen]) as addrs, trio.open_nursery() as nursery:
            nursery.start_soon(bans.run)
            for swarm in swarms:
                topic = topic_for(swarm)
                pubsub.set_topic_validator(topic, bans.validate, False)
                nursery.start_soon(_discard, await pubsub.subscribe(topic))
            print(f"BOOTSTRAP {addrs[0]}", flush=True)
            log.info("serving swarm(s) %s", ", ".join(
                f"{swarm} (manifest {cid})" if cid else swarm for swarm, cid in offered.items()))
            async for signum in signals:
                log.info("stopping on signal %d", signum)
                nursery.cancel_scope.cancel()
                break


async def _discard(sub: object) -> None:
    # Subscribed only to relay: drain so py-libp2p's 32-message subscription queue never fills.
    while True:
        await sub.get()  # type: ignore[attr-defined]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    quiet_libp2p_logs()
    try:
        for swarm in args.swarm:
            topic_for(swarm)
        listen = parse_tcp(args.listen, "--listen")
        for addr in args.announce_addr:
            parse_tcp(addr, "--announce-addr")
        manifests = parse_manifest_options(args.manifest, args.swarm)
    except (AnnouncementError, AddressError, ManifestOptionError) as e:
        print(f"swarm-bootstrap: {e}", file=sys.stderr)
        return 2
    try:
        trio.run(serve, args.key_file or args.data_dir / KEY_FILE, listen, args.swarm, args.announce_addr,
                 manifests)
    except IdentityError as e:
        print(f"swarm-bootstrap: {e}", file=sys.stderr)
        return 1
    except BaseExceptionGroup as group:
        error = innermost_error(group)
        if not isinstance(error, OSError):
            raise
        print(f"swarm-bootstrap: cannot listen on {args.listen}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
