"""The libp2p layer's error base: announcements, identity, addresses and the gossip service.

libp2p and trio raise many unrelated types; `p2p` maps them to these at its boundary, so callers
catch `P2PError` (or one of its subclasses) and never a libp2p internal.
"""

from __future__ import annotations


class P2PError(Exception):
    """Base class of every error raised by `p2p`; the message says what to do."""
