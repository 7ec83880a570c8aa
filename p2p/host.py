"""Builds the libp2p host and gossipsub router shared by nodes and the bootstrap.

Settings that py-libp2p's defaults get wrong for us (see docs/protocol.md): only Noise + Yamux (its
default host also accepts plaintext and secio), gossipsub v1.2 and v1.1 (go-libp2p-pubsub <= 0.10 speaks
1.1 at most), 1 s heartbeat instead of 120 s, a forwarding rate limit sized to our traffic instead
of a silent 10 messages/s, and no AutoConnector (`running`; `gossiping` adds the pubsub services).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import cast

from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as create_new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.swarm import Swarm
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.tools.anyio_service import background_trio_service
from multiaddr import Multiaddr

from p2p.addresses import advertised

MESHSUB_PROTOCOLS = (PROTOCOL_ID_V12, PROTOCOL_ID_V11)


@dataclass(frozen=True)
class MeshParams:
    """Gossipsub mesh and relay settings; the defaults are sized for a swarm of tens of peers."""

    degree: int = 6
    degree_low: int = 4
    degree_high: int = 12
    heartbeat_s: int = 1
    # Per forwarding peer and topic. A relay forwards everyone's announcements, so this bounds the
    # whole swarm's rate, not one publisher's (that is AnnounceValidator's job).
    relay_rate_per_s: float = 500.0
    seen_ttl_s: int = 120


def quiet_libp2p_logs() -> None:
    """py-libp2p logs expected failures (every redial of a dead peer) as errors; our modules log such
    events once. Its own switch still works: set LIBP2P_DEBUG to see its logs."""
    if not os.environ.get("LIBP2P_DEBUG"):
        logging.getLogger("libp2p").setLevel(logging.CRITICAL)


def build_host(key_pair: KeyPair, announce: Sequence[str] = ()) -> IHost:
    """A TCP host that speaks only Noise and Yamux; no mDNS, no UPnP, no QUIC. It advertises (to
    rendezvous and identify) the addresses `p2p.addresses.advertised` picks, or exactly `announce`."""
    noise = NoiseTransport(key_pair, noise_privkey=create_new_x25519_key_pair().private_key)
    return new_host(
        key_pair=key_pair,
        sec_opt={NOISE_PROTOCOL_ID: noise},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        enable_mDNS=False,
        enable_upnp=False,
        addrs_factory=lambda candidates: advertised(candidates, announce),
    )


@asynccontextmanager
async def running(host: IHost, listen: Sequence[Multiaddr]) -> AsyncIterator[None]:
    """`host.run(listen)` without py-libp2p's AutoConnector. That one dials every peer in the peerstore
    toward go-libp2p's watermarks (150 connections), ignoring a node's `target_peers` and PeerKeeper's
    backoff, and makes a bootstrap dial every volunteer it has heard of, most of them behind NAT.
    Whom a node dials is PeerKeeper's decision alone."""
    async with host.run(listen):
        # Swarm.run starts it before `listen` returns, so stopping it here cannot race its start.
        await cast(Swarm, host.get_network()).auto_connector.stop()
        yield


@asynccontextmanager
async def gossiping(host: IHost, pubsub: Pubsub, router: GossipSub,
                    listen: Sequence[Multiaddr]) -> AsyncIterator[list[Multiaddr]]:
    """The host `running` with its pubsub and router services started and ready; yields the
    addresses it listens on. OSError if there are none: py-libp2p logs a failed bind and carries on
    without a listener."""
    async with running(host, listen), background_trio_service(pubsub), background_trio_service(router):
        await pubsub.wait_until_ready()
        addrs = list(host.get_addrs())
        if not addrs:
            raise OSError("the address is in use or not local; pick another --listen port")
        yield addrs


def build_pubsub(host: IHost, params: MeshParams | None = None) -> tuple[Pubsub, GossipSub]:
    """Gossipsub with strict signing; start both services before dialing anyone."""
    p = params or MeshParams()
    router = GossipSub(
        protocols=list(MESHSUB_PROTOCOLS),
        degree=p.degree,
        degree_low=p.degree_low,
        degree_high=p.degree_high,
        heartbeat_interval=p.heartbeat_s,
        heartbeat_initial_delay=0.1,
        max_messages_per_topic_per_second=p.relay_rate_per_s,
    )
    pubsub = Pubsub(host, router, strict_signing=True, seen_ttl=p.seen_ttl_s, cache_size=4096)
    return pubsub, router


def innermost_error(error: BaseException) -> BaseException:
    """The one real error inside trio's nested nursery exception groups, for a readable message."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error
