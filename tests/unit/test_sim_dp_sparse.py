"""The simulator's privacy and compression options on sklearn digits: DP-SGD clients, gossip
topologies, sparse personalized models (pruning + masked merge)."""

from __future__ import annotations

import pytest
import torch

from swarm.sim.config import SimConfig
from swarm.sim.simulator import simulate
from swarm.sim.wire import RawWire

torch.set_num_threads(1)
SMALL = dict(dataset="digits", partition="iid", clients=6, train_samples=60, val_samples=0, test_samples=20,
             rounds=3, local_epochs=1, batch_size=20, lr=0.01, neighbours=2)


def test_dp_run_reports_epsilon_within_target_and_differs_from_plain() -> None:
    dp = simulate(SimConfig(**SMALL, strategy="gossip", topology="ring", dp_epsilon=3.0))
    plain = simulate(SimConfig(**SMALL, strategy="gossip", topology="ring"))
    eps = [r["epsilon"] for r in dp.rounds]
    assert eps == sorted(eps) and eps[0] > 0 and eps[-1] <= 3.0
    assert dp.epsilon_spent == eps[-1] > 2.5  # the planned rounds spend (almost) the whole budget
    assert plain.epsilon_spent is None and plain.rounds[-1]["epsilon"] is None
    assert dp.rounds[-1]["test_loss"] != pytest.approx(plain.rounds[-1]["test_loss"], rel=1e-3)
    with pytest.raises(ValueError, match="loop engine"):
        simulate(SimConfig(**SMALL, strategy="gossip", dp_epsilon=3.0, engine="batched"))


def test_pruned_run_reaches_the_target_density_with_fewer_bytes() -> None:
    longer = {**SMALL, "rounds": 5}
    dense = simulate(SimConfig(**longer, strategy="random"))

    def nonzero_bytes(state: dict) -> int:  # roughly what the sparse codec sends
        return 4 * sum(int((v != 0).sum()) for v in state.values())

    cfg = SimConfig(**longer, strategy="random", prune_target=0.3, prune_rate=0.5)
    pruned = simulate(cfg, wire=RawWire(size=nonzero_bytes))
    densities = [r["density"] for r in pruned.rounds]
    assert densities[0] == 1.0 and densities[-1] == pytest.approx(0.3, abs=0.02)
    assert all(r["density"] == 1.0 for r in dense.rounds)
    assert pruned.rounds[-1]["bytes_sent"] < 0.5 * dense.rounds[-1]["bytes_sent"]


def test_spread_between_peers_is_recorded_before_and_after_merging() -> None:
    fedavg = simulate(SimConfig(**SMALL, strategy="fedavg"))
    ring = simulate(SimConfig(**SMALL, strategy="gossip", topology="ring", dp_epsilon=3.0))
    for run in (fedavg, ring):
        assert all(r["spread_trained"] > 0 for r in run.rounds)  # local training drives peers apart
    # FedAvg hands every client the same model: nothing is left between them but float rounding
    assert all(r["spread"] < 1e-4 * r["spread_trained"] for r in fedavg.rounds)
    # a ring peer averages with 2 neighbours only: closer than before merging, not together
    assert all(0 < r["spread"] < r["spread_trained"] for r in ring.rounds)
