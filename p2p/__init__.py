"""The libp2p layer shared by nodes and the bootstrap: who we are, what we gossip, whom we accept.

- `identity`: the persistent ed25519 key, so a peer id survives restarts.
- `announcement`: the snapshot announcement (msgpack, at most 4 KiB), its signature and the topic name.
- `validator`: accepts or rejects an incoming announcement (schema, signer, age, replay, rate) and
  decides which flooding peers are banned.
- `bans`: puts those bans into effect on a host.
- `host`: builds the libp2p host and gossipsub router with the settings py-libp2p's defaults get wrong.
- `addresses`: which addresses a peer advertises (interfaces for a wildcard, no loopback to other
  hosts, or the user's --announce-addr) and the check of listen/announce options.
- `connections`: keeps a node connected (bootstrap dialing, rendezvous, address book, redials).
- `reach`: how another peer sees us (observed address, clock, TCP reachability); the bootstrap serves it.
- `manifest_offer`: the bootstrap tells joiners its swarm's manifest CID.
- `streams`: one request and one reply per stream (read until the peer half-closes, within a limit),
  as `reach` and `manifest_offer` speak.
- `gossip`: `GossipService`, host + gossipsub in a trio thread behind a small thread-safe API.
- `errors`: `P2PError`, the base of every error this package raises (libp2p's own are mapped to it).

Depends on libp2p, trio and `storage.atomic`; never on `node`, `swarm` or torch.
"""
