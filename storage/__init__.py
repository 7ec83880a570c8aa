"""Snapshots and where they live: the snapshot format, CIDs, local and IPFS stores, private daemons."""
