"""The learning core that the simulator (`swarm.sim`) and the real node (`node/`) share.

- `data`: datasets as in-memory tensors (Fashion-MNIST from local IDX files, digits, CIFAR-10).
- `labels`: class labels by name (image folders and data sets mapped to the swarm's class order).
- `partition`: deterministic non-IID client partitions with train / validation / test splits.
- `models`: the architectures, a registry by name, device selection.
- `features`: fixed input features a model may ask for (ScatterNet), computed once per data set.
- `training`: local training and evaluation of one model.
- `privacy`: DP-SGD (Opacus) and its accounting.
- `peer_privacy`: epsilon-aware neighbours: a ceiling on the epsilon a merged peer spent, noise-aware
  merge weights.
- `pruning`: sparse personalized models; `prune_schedule`: when to prune, from either runtime's config
  (torch-free, so a node checks its settings before loading torch).
- `similarity`: metrics between my weights and a peer's (a registry).
- `strategies/`: whom to fetch and how to weigh them (DAC, PANM, gossip, ...), one contract.
- `merge`: weighted mean or robust merges of state dicts.
- `selection`: the merge guard and the best model on validation.
- `errors`: `SwarmError`, the base of every error raised here.

Depends on torch and numpy; reads datasets but writes no files; never imports `node`, `p2p` or
`storage` (`swarm.sim` writes its reports with `storage.atomic`).
"""
