"""Learning: models, data and partitions, local training, similarity, strategies, merge, simulator.

Depends on torch and numpy only; never on `node` or `storage` internals.
"""
