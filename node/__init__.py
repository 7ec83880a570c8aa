"""The peer process: libp2p gossip, announcements, peer table, node loop, roles, checkpoints, CLI."""

__version__ = "0.1.0"
