"""Whom a host dials: only PeerKeeper. py-libp2p's AutoConnector would dial every peer in the peerstore
(it polls every 10 s while a host has fewer than 50 connections); `p2p.host.running` stops it. Three
real hosts on 127.0.0.1 in one trio run: one under `running`, one under plain `host.run` as the
control that shows the AutoConnector still dials on this py-libp2p, both told the third's address."""

from __future__ import annotations

import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from multiaddr import Multiaddr

from p2p.addresses import LOOPBACK_LISTEN
from p2p.host import build_host, running

# Past the AutoConnector's second poll (10 s after the first, which finds the peerstore empty).
WAIT_S = 15.0


def test_a_running_host_does_not_dial_what_its_peerstore_knows() -> None:
    async def main() -> tuple[bool, bool]:
        target, quiet, control = (build_host(create_new_key_pair()) for _ in range(3))
        listen = [Multiaddr(LOOPBACK_LISTEN)]
        async with running(target, listen), running(quiet, listen), control.run(listen):
            for host in (quiet, control):
                host.get_peerstore().add_addrs(target.get_id(), target.get_addrs(), 3600)
            await trio.sleep(WAIT_S)
            return (target.get_id() in quiet.get_network().connections,
                    target.get_id() in control.get_network().connections)

    quiet_dialed, control_dialed = trio.run(main)
    assert control_dialed, "py-libp2p no longer auto-dials its peerstore; running() may be unneeded"
    assert not quiet_dialed, "a host under running() dialed a peer it was only told about"
