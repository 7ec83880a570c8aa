"""Progressive magnitude pruning with personal masks and the masked merge."""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

from swarm.models import build_model
from swarm.pruning import (
    PruneSchedule,
    PruningError,
    apply_mask,
    density,
    full_mask,
    mask_of,
    masked_merge,
    prune,
)
from swarm.training import evaluate, train_local

torch.set_num_threads(1)


def test_progressive_pruning_reaches_the_target_and_keeps_the_largest_weights() -> None:
    torch.manual_seed(0)
    state = build_model("digits-mlp").state_dict()
    mask = full_mask(state)
    assert set(mask) == {"net.1.weight", "net.3.weight"}  # biases stay dense
    seen = [density(mask)]
    for _ in range(12):
        mask = prune(state, mask, rate=0.3, target_density=0.1)
        seen.append(density(mask))
    assert seen == sorted(seen, reverse=True)
    assert seen[1] == pytest.approx(0.7, abs=0.01)
    assert seen[-1] == pytest.approx(0.1, abs=0.01) and seen[-2] == seen[-1]
    kept = torch.cat([state[k].abs()[m] for k, m in mask.items()])
    dropped = torch.cat([state[k].abs()[~m] for k, m in mask.items()])
    assert float(kept.min()) >= float(dropped.max())  # global magnitude pruning
    assert all(bool(m.any()) for m in mask.values())
    sparse = apply_mask(state, mask)
    assert all(torch.equal(mask_of(sparse)[k], mask[k]) for k in mask)
    assert torch.equal(sparse["net.1.bias"], state["net.1.bias"])


def test_masked_merge_averages_only_where_masks_overlap() -> None:
    me = {"w.weight": torch.tensor([[1.0, 2.0, 0.0, 4.0]]), "w.bias": torch.tensor([1.0])}
    a = {"w.weight": torch.tensor([[3.0, 0.0, 5.0, 0.0]]), "w.bias": torch.tensor([3.0])}
    b = {"w.weight": torch.tensor([[5.0, 6.0, 7.0, 0.0]]), "w.bias": torch.tensor([5.0])}
    my_mask = {"w.weight": torch.tensor([[True, True, False, True]])}
    out = masked_merge({"me": me, "a": a, "b": b}, {"me": 0.5, "a": 0.25, "b": 0.25}, "me", my_mask)
    want = torch.tensor([[
        (0.5 * 1 + 0.25 * 3 + 0.25 * 5) / 1.0,  # everyone keeps it
        (0.5 * 2 + 0.25 * 6) / 0.75,  # a pruned it: only me and b
        0.0,  # I pruned it: stays pruned although a and b keep it
        4.0,  # only I keep it: my own value
    ]])
    torch.testing.assert_close(out["w.weight"], want)
    torch.testing.assert_close(out["w.bias"], torch.tensor([0.5 * 1 + 0.25 * 3 + 0.25 * 5]))
    alone = masked_merge({"me": me}, {"me": 1.0}, "me", my_mask)
    torch.testing.assert_close(alone["w.weight"], me["w.weight"])
    with pytest.raises(PruningError, match="positive weight"):
        masked_merge({"me": me, "a": a}, {"a": 1.0}, "me", my_mask)


def test_bad_schedules_are_refused() -> None:
    with pytest.raises(PruningError, match="rate"):
        PruneSchedule(rate=1.0)
    with pytest.raises(PruningError, match="density"):
        PruneSchedule(target_density=0.0)
    schedule = PruneSchedule(every=3, start=2)
    assert [r for r in range(10) if schedule.due(r)] == [2, 5, 8]


def test_pruned_model_keeps_its_accuracy_on_digits() -> None:
    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16
    y = torch.tensor(d.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, test = perm[:1200], [(x[perm[1200:]], y[perm[1200:]])]
    loader = DataLoader(TensorDataset(x[train], y[train]), batch_size=32, shuffle=True)
    torch.manual_seed(0)
    model = build_model("digits-mlp")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    train_local(model, loader, epochs=10, optimizer=opt)
    dense_acc = evaluate(model, test)[1]
    # the simulator's recipe: prune, train one epoch, re-apply the mask before publishing
    mask = full_mask(model.state_dict())
    for _ in range(8):
        mask = prune(model.state_dict(), mask, rate=0.3, target_density=0.2)
        model.load_state_dict(apply_mask(model.state_dict(), mask))
        train_local(model, loader, epochs=1, optimizer=opt)
        model.load_state_dict(apply_mask(model.state_dict(), mask))
    assert density(mask_of(model.state_dict())) == pytest.approx(0.2, abs=0.01)
    assert dense_acc > 0.9
    assert evaluate(model, test)[1] > dense_acc - 0.03


def test_row_pruning_matches_the_state_dict_functions() -> None:
    from swarm.pruning import RowPruning
    from swarm.similarity import flatten

    torch.manual_seed(0)
    states = [build_model("digits-mlp").state_dict() for _ in range(3)]
    names = sorted(states[0])
    rows = RowPruning(PruneSchedule(rate=0.5, every=2, start=1), names, [states[0][k].shape for k in names])
    flat = torch.stack([flatten(s) for s in states])
    masks = torch.ones_like(flat, dtype=torch.bool)
    assert torch.equal(rows.prune(flat, masks, 0), masks)  # not due yet
    pruned = rows.prune(flat, masks, 1)
    for i, s in enumerate(states):
        want = prune(s, full_mask(s), 0.5, 0.1)
        got = rows.split(pruned[i])
        assert all(torch.equal(got[k], want[k]) for k in want)
        assert bool(got["net.1.bias"].all())
    assert rows.density(pruned).tolist() == pytest.approx([0.5] * 3, abs=0.01)
    assert torch.equal(rows.implied(flat * pruned), pruned)
