"""The engine interface the simulator calls: `train` with an `active` mask, `evaluate` on any split
for any owners, `pair_losses`; the batched engine (forward_many CNNs and vmap MLPs) agrees with the
one-client-at-a-time reference, also on test sets shared between clients."""

from __future__ import annotations

import math

import pytest
import torch

from swarm.data import Dataset, digits
from swarm.models import build_model
from swarm.partition import partition
from swarm.privacy import PrivacyBudget
from swarm.sim.dp_engine import PrivateLoopEngine
from swarm.sim.engine import BatchedEngine, Layout, LoopEngine, TrainSettings
from swarm.sim.simulator import own_losses
from swarm.similarity import flatten

torch.set_num_threads(1)
ACTIVE = torch.tensor([True, False, True, True, False, True])


def images() -> Dataset:
    """Random 28x28 images: the thesis CNN's input size without Fashion-MNIST's files."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(1500, 1, 28, 28, generator=g) * 2 - 1, torch.randint(0, 10, (1500,), generator=g)
    return Dataset("random", x[:1200], y[:1200], x[1200:], y[1200:], 10, 1, "thesis-cnn")


@pytest.fixture(scope="module")
def setups() -> dict[str, tuple]:
    """name -> (clients, model) for a forward_many CNN on the thesis rotation split (6 clients of
    angles 0 / 180 / 350, one shared test set per angle) and a vmap MLP on the label-shift split."""
    rotation = partition(images(), "rotation", 6, train=37, val=10, test=0, seed=1, split="thesis")
    label = partition(digits(), "label-shift", 6, train=37, val=10, test=0, seed=1, split="thesis")
    return {"thesis-cnn": (rotation, "thesis-cnn"), "digits-mlp": (label, "digits-mlp")}


def weights(model: str) -> tuple[Layout, torch.Tensor]:
    torch.manual_seed(0)
    layout = Layout(build_model(model))
    return layout, flatten(layout.model.state_dict()).repeat(6, 1) + 0.01 * torch.randn(6, layout.size)


@pytest.mark.parametrize("engine", [LoopEngine, BatchedEngine])
@pytest.mark.parametrize("model", ["thesis-cnn", "digits-mlp"])
def test_inactive_clients_are_not_trained(setups, engine, model: str) -> None:
    clients, name = setups[model]
    layout, flat = weights(name)
    run = engine(layout, clients, TrainSettings(1, 8, 3e-4, "adam", seed=0))
    everyone, _ = run.train(flat, 3)
    out, loss = run.train(flat, 3, ACTIVE)
    assert torch.equal(out[~ACTIVE], flat[~ACTIVE]) and loss[~ACTIVE].isnan().all()
    assert torch.allclose(out[ACTIVE], everyone[ACTIVE], atol=1e-6) and not loss[ACTIVE].isnan().any()
    assert not torch.allclose(out[ACTIVE], flat[ACTIVE])


@pytest.mark.parametrize("model", ["thesis-cnn", "digits-mlp"])
def test_batched_engine_agrees_with_the_loop(setups, model: str) -> None:
    clients, name = setups[model]
    layout, flat = weights(name)
    settings = TrainSettings(1, 8, 3e-4, "adam", seed=0)
    loop, batched = LoopEngine(layout, clients, settings), BatchedEngine(layout, clients, settings)
    (wl, ll), (wb, lb) = loop.train(flat, 0, ACTIVE), batched.train(flat, 0, ACTIVE)
    assert (wl - wb).abs().max() < 1e-4 and (wl - wb).abs().mean() < 1e-6
    assert torch.allclose(ll, lb, atol=1e-5, equal_nan=True)
    owners = [3, 0, 0, 5, 2]  # rows on other clients' data, one client twice
    for split in ("val", "test", "train"):
        for got, want in zip(batched.evaluate(wl[:5], split, owners), loop.evaluate(wl[:5], split, owners),
                             strict=True):
            assert torch.allclose(got, want, atol=1e-5)
    for got, want in zip(batched.evaluate(wl), loop.evaluate(wl), strict=True):  # default: test, own
        assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(batched.pair_losses(wl[:5], owners), loop.evaluate(wl[:5], "train", owners)[0],
                          atol=1e-5)


def test_an_empty_split_evaluates_to_nan(setups) -> None:
    clients, name = setups["digits-mlp"]
    no_val = partition(digits(), "label-shift", 6, train=37, val=0, test=0, seed=1, split="thesis")
    layout, flat = weights(name)
    settings = TrainSettings(1, 8, 3e-4, "adam", seed=0)
    for engine in (LoopEngine, BatchedEngine):
        loss, acc = engine(layout, no_val, settings).evaluate(flat, "val")
        assert loss.isnan().all() and acc.isnan().all()
    with pytest.raises(ValueError, match="unknown split"):
        BatchedEngine(layout, clients, settings).evaluate(flat, "holdout")


def test_private_engine_skips_inactive_clients(setups) -> None:
    clients, name = setups["digits-mlp"]
    layout, flat = weights(name)
    dp = PrivateLoopEngine(layout, clients, TrainSettings(1, 8, 0.01, "sgd", seed=0),
                           [PrivacyBudget(math.inf, 1e-5, 1.0)] * len(clients), rounds=2)
    out, loss = dp.train(flat, 0, ACTIVE)
    assert torch.equal(out[~ACTIVE], flat[~ACTIVE]) and loss[~ACTIVE].isnan().all()
    assert [t > 0 for t in dp.taken] == ACTIVE.tolist()  # no budget spent while stopped


def test_own_losses_evaluate_each_owner_once_and_answer_per_pair(setups) -> None:
    clients, name = setups["thesis-cnn"]
    layout, flat = weights(name)
    run = BatchedEngine(layout, clients, TrainSettings(1, 8, 3e-4, "adam", seed=0))
    owners = [2, 0, 2, 5]
    expected = run.pair_losses(flat[owners], owners)
    assert torch.allclose(own_losses(run, flat, owners), expected, atol=1e-6)
    assert expected[0] == expected[2] and expected[0] != expected[1]
