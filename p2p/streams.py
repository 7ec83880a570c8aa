"""One request and one reply per stream, as reach and the manifest offer speak: each side writes its
message and closes its write half; the other reads until that close, within a size limit. A reply is
a JSON object, {"error": ...} when the server refuses."""

from __future__ import annotations

import contextlib
import json
from typing import Any, cast

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.network.stream.net_stream import NetStream
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from p2p.errors import P2PError


class MessageTooLarge(P2PError):
    """The peer sent more than the protocol allows."""


async def read_all(stream: INetStream, limit: int) -> bytes:
    """Everything until the peer closes its write half; MessageTooLarge beyond `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            chunk = await stream.read(limit + 1 - size)
        except StreamEOF:  # how py-libp2p 0.8.1 reports the peer's closed write half
            break
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise MessageTooLarge(f"message larger than {limit} bytes")
    return b"".join(chunks)


def reply_object(data: bytes, who: str, error: type[P2PError], request: str) -> dict[str, Any]:
    """The reply to a `request` decoded as a JSON object; `error`, naming `who`, if it is not one or
    if it is the peer's refusal ({"error": ...})."""
    try:
        reply = json.loads(data)
    except (ValueError, RecursionError):
        raise error(f"{who} sent a {request} reply that is not JSON") from None
    if not isinstance(reply, dict):
        raise error(f"{who} sent a {request} reply that is not a JSON object")
    if "error" in reply:
        raise error(f"{who} refused the {request} request: {str(reply['error'])[:200]}")
    return reply


async def open_stream(host: IHost, peer: PeerInfo | ID, protocol: TProtocol) -> INetStream:
    """A stream to `peer` for `protocol`; a PeerInfo is dialled first, an ID must be connected."""
    if isinstance(peer, PeerInfo):
        await host.connect(peer)
        peer = peer.peer_id
    return await host.new_stream(peer, [protocol])


async def send_request(stream: INetStream, data: bytes) -> None:
    """Write the request and half-close, so the server, reading until EOF, has all of it."""
    await stream.write(data)
    # INetStream lacks close_write; the NetStream every host hands out has it.
    await cast(NetStream, stream).close_write()


async def send_reply(stream: INetStream, reply: dict[str, Any], timeout: float) -> None:
    with trio.fail_after(timeout):
        await stream.write(json.dumps(reply).encode())
        await stream.close()


async def reset(stream: INetStream) -> None:
    with contextlib.suppress(Exception):  # the stream is beyond use either way
        await stream.reset()
