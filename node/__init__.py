"""The peer process and the `swarm-node` command line.

- `loop`: `Node`, one peer's rounds: fold announcements, choose, train, judge, publish, merge, checkpoint.
- `intake`: announcements from gossip into the peer table; pinners met.
- `merging`: a trainer's merge step (refuse over-epsilon, score, weigh, merge, record provenance).
- `downloads`: the chosen neighbours' newest snapshots, fetched while training, checked, decoded.
- `publisher`: encode, put, pin and announce this peer's snapshots (and cache them in the data dir);
  goodbye on leaving.
- `provenance`: what a snapshot records of the merge that made it (parent weights, similarity).
- `lineage`, `lineage_view`: a snapshot's ancestry, walked within bounds; as a tree, DOT or JSON.
- `pinner`: the pinner role, keeping other peers' newest snapshots available and carrying those of
  peers behind NAT (it announces where its IPFS daemon listens).
- `ipfs_workers`: IPFS calls that wait, on worker threads, with direct dialling of announcers and
  pinners, and how each peer's snapshots reach us (direct / via pinner).
- `ipfs_setup`: which IPFS daemon a node uses (the user's, a local Kubo, or its own private one).
- `learner`: the trainer's learning side (shard, model, strategy, metric, best model), via methods.
- `roles`: the role `--role auto` picks from this machine's data and disk.
- `peer_table`: what this node knows of every other peer, folded from announcements.
- `manifest`: joining by a swarm manifest (its model, input shape, classes and initial weights).
- `checkpoint`: resume after `kill -9`.
- `config`: `join` settings (defaults < TOML < `SWARM_*` < flags).
- `status`: the status record a node writes and its rich rendering.
- `timing`: seconds per phase of a round.
- `processes`: child processes read in the background (the demo's bootstrap and peers).
- `demo`: a small swarm on this machine, compared with training alone.
- `cli`, `commands/`: the `swarm-node` subcommands (`doctor` checks a machine before it joins).
"""
