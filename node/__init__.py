"""The peer process: libp2p gossip, announcements, peer table, node loop, roles, checkpoints, CLI."""
