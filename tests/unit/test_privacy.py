"""DP-SGD for one peer (Opacus) and the batched DP math, on sklearn's 8x8 digits."""

from __future__ import annotations

import math

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.utils.data import DataLoader, TensorDataset

from swarm.models import build_model
from swarm.privacy import (
    BudgetExhausted,
    PrivacyBudget,
    PrivacyConfigError,
    check_dp_model,
    clip_and_noise,
    epsilon_of,
    make_private,
    plan_noise,
    quiet_opacus,
)
from swarm.training import train_local

torch.set_num_threads(1)
BATCH = 64


@pytest.fixture(scope="module")
def digits() -> TensorDataset:
    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16
    return TensorDataset(x, torch.tensor(d.target))


def peer(digits: TensorDataset, budget: PrivacyBudget, epochs: int, *, lr: float = 0.05, seed: int = 0,
         noise_seed: int | None = 1, opt: str = "sgd"):
    torch.manual_seed(seed)
    model = build_model("digits-mlp")
    optimizer = (torch.optim.SGD if opt == "sgd" else torch.optim.Adam)(model.parameters(), lr=lr)
    loader = DataLoader(digits, batch_size=BATCH, shuffle=True)
    return make_private(model, optimizer, loader, budget, epochs, noise_seed=noise_seed)


def flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


@pytest.mark.parametrize("eps", [1.0, 8.0])
def test_epsilon_spent_stays_within_target_and_training_stops(digits: TensorDataset, eps: float) -> None:
    pt = peer(digits, PrivacyBudget(eps, 1e-5, 1.0), epochs=2)
    assert pt.noise_multiplier > 0
    pt.train(1)
    half = pt.epsilon_spent()
    pt.train(5)  # asks for more than planned: cut at the budget
    spent = pt.epsilon_spent()
    assert 0 < half < spent <= eps
    assert spent > 0.9 * eps  # the planned noise spends (almost) the whole budget, not far less
    assert pt.exhausted() and pt.steps_taken() == pt.steps_planned
    before = flat(pt.module).clone()
    with pytest.raises(BudgetExhausted, match="privacy budget spent"):
        pt.train(1)
    assert torch.equal(before, flat(pt.module))


def test_tighter_budget_means_more_noise(digits: TensorDataset) -> None:
    sigmas = [plan_noise(PrivacyBudget(e), BATCH / len(digits), 100) for e in (8.0, 4.0, 2.0, 1.0)]
    assert sigmas == sorted(sigmas) and len(set(sigmas)) == 4
    assert plan_noise(PrivacyBudget(math.inf), 0.1, 100) == 0.0


def test_noise_is_really_applied_with_the_planned_scale(digits: TensorDataset) -> None:
    budget = PrivacyBudget(2.0, 1e-5, 1.0)
    lr = 1.0
    runs = []
    for noise_seed in (1, 2):  # same init and same Poisson batches, different noise draws
        pt = peer(digits, budget, epochs=1, lr=lr, noise_seed=noise_seed)
        start = flat(pt.module).clone()
        with quiet_opacus():
            train_local(pt.model, pt.loader, epochs=1, optimizer=pt.optimizer, max_steps=1)
        runs.append(flat(pt.module) - start)
    diff = runs[0] - runs[1]
    assert not torch.allclose(runs[0], runs[1])
    # one SGD step: update = -lr * (sum of clipped grads + N(0, (sigma C)^2)) / B, so two noise
    # draws differ by sqrt(2) sigma C lr / B per coordinate
    expected = math.sqrt(2) * pt.noise_multiplier * budget.max_grad_norm * lr / BATCH
    assert 0.9 < float(diff.std()) / expected < 1.1

    torch.manual_seed(0)
    plain = build_model("digits-mlp")
    start = flat(plain).clone()
    torch.manual_seed(0)
    train_local(plain, DataLoader(digits, batch_size=BATCH, shuffle=True), epochs=1,
                optimizer=torch.optim.SGD(plain.parameters(), lr=lr), max_steps=1)
    assert torch.equal(start, flat(peer(digits, budget, epochs=1).module))  # same seed, same init
    assert not torch.allclose(flat(plain) - start, runs[0], atol=1e-3)


def test_dp_training_still_learns_at_a_loose_budget(digits: TensorDataset) -> None:
    pt = peer(digits, PrivacyBudget(8.0, 1e-5, 1.0), epochs=8, lr=0.01, opt="adam")
    pt.train(8)
    x, y = digits.tensors
    acc = float((pt.module(x).argmax(1) == y).float().mean())
    assert acc > 0.7  # 10 classes: chance is 0.1


def test_published_state_dict_has_plain_keys(digits: TensorDataset) -> None:
    pt = peer(digits, PrivacyBudget(4.0), epochs=1)
    assert set(pt.module.state_dict()) == set(build_model("digits-mlp").state_dict())
    assert all(k.startswith("_module.") for k in pt.model.state_dict())


def test_checkpoint_round_trip_keeps_epsilon_spent(digits: TensorDataset) -> None:
    budget = PrivacyBudget(4.0, 1e-5, 1.0)
    pt = peer(digits, budget, epochs=3)
    pt.train(1)
    state = pt.state_dict()
    resumed = peer(digits, budget, epochs=3)
    assert resumed.epsilon_spent() == 0.0
    resumed.load_state_dict(state)
    assert resumed.epsilon_spent() == pytest.approx(pt.epsilon_spent())
    assert resumed.steps_left() == pt.steps_left()
    with pytest.raises(PrivacyConfigError, match="same --dp-"):
        peer(digits, PrivacyBudget(8.0), epochs=3).load_state_dict(state)


def test_bad_settings_get_specific_errors(digits: TensorDataset) -> None:
    with pytest.raises(PrivacyConfigError, match="--dp-epsilon"):
        PrivacyBudget(0.0)
    with pytest.raises(PrivacyConfigError, match="--dp-delta"):
        PrivacyBudget(1.0, delta=1.5)
    with pytest.raises(PrivacyConfigError, match="--dp-max-grad-norm"):
        PrivacyBudget(1.0, max_grad_norm=-1)
    bn = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.Linear(16, 10))
    loader = DataLoader(digits, batch_size=BATCH)
    with pytest.raises(PrivacyConfigError, match="batch norm"):
        make_private(bn, torch.optim.SGD(bn.parameters(), lr=0.1), loader, PrivacyBudget(1.0), 1)


def test_clip_and_noise_matches_per_sample_loop() -> None:
    torch.manual_seed(0)
    model = build_model("digits-mlp")
    params = {k: v.detach() for k, v in model.named_parameters()}
    x = torch.randn(2, 5, 1, 8, 8) * 3  # 2 clients, batch of 5; big inputs so some norms exceed C
    y = torch.randint(0, 10, (2, 5))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)

    def loss(p, xi, yi):
        return nn.functional.cross_entropy(functional_call(model, p, (xi[None],)), yi[None])

    per_sample = vmap(vmap(grad(loss), in_dims=(None, 0, 0)), in_dims=(None, 0, 0))(params, x, y)
    got = clip_and_noise(per_sample, mask, 1.0, torch.zeros(2), batch_size=5)
    for n in range(2):
        want = {k: torch.zeros_like(v) for k, v in params.items()}
        for b in range(int(mask[n].sum())):
            model.zero_grad()
            nn.functional.cross_entropy(model(x[n, b][None]), y[n, b][None]).backward()
            g = {k: p.grad for k, p in model.named_parameters()}
            norm = torch.sqrt(sum(v.pow(2).sum() for v in g.values()))
            for k in want:
                want[k] += g[k] * min(1.0, 1.0 / (float(norm) + 1e-6))
        for k in want:
            torch.testing.assert_close(got[k][n], want[k] / 5, rtol=1e-4, atol=1e-6)
    noisy = clip_and_noise(per_sample, mask, 1.0, torch.tensor([0.0, 2.0]), batch_size=5,
                           generator=torch.Generator().manual_seed(0))
    spread = torch.cat([(noisy[k][1] - got[k][1]).reshape(-1) * 5 for k in got])
    assert torch.equal(noisy["net.1.weight"][0], got["net.1.weight"][0])
    assert 1.9 < float(spread.std()) < 2.1


def test_epsilon_of_agrees_with_the_peer_accountant(digits: TensorDataset) -> None:
    pt = peer(digits, PrivacyBudget(4.0), epochs=1)
    pt.train(1)
    history = [(pt.noise_multiplier, pt.sample_rate, pt.steps_taken())]
    assert epsilon_of(history, 1e-5) == pytest.approx(pt.epsilon_spent())
    assert epsilon_of([], 1e-5) == 0.0
    assert epsilon_of([(0.0, 0.1, 10)], 1e-5) == math.inf


def test_simulator_dp_engine_spends_the_budget_then_stops() -> None:
    from swarm.data import digits as digits_dataset
    from swarm.partition import partition
    from swarm.sim.dp_engine import PrivateLoopEngine
    from swarm.sim.engine import Layout, LoopEngine, TrainSettings
    from swarm.similarity import flatten

    clients = partition(digits_dataset(), "iid", 3, train=120, val=0, test=30, seed=0)
    torch.manual_seed(0)
    layout = Layout(build_model("digits-mlp"))
    settings = TrainSettings(epochs=1, batch_size=30, lr=0.01, optimizer="adam", seed=0)
    flat = flatten(layout.model.state_dict()).repeat(3, 1)
    dp = PrivateLoopEngine(layout, clients, settings, [PrivacyBudget(2.0, 1e-5, 1.0)] * 3, rounds=2)
    plain = LoopEngine(layout, clients, settings)
    assert dp.planned == [8, 8, 8] and all(s > 0 for s in dp.sigmas)
    first, losses = dp.train(flat, 0)
    assert not torch.allclose(first, plain.train(flat, 0)[0], atol=1e-4)  # clipping + noise changed it
    clip_only = PrivateLoopEngine(layout, clients, settings, [PrivacyBudget(math.inf, 1e-5, 1.0)] * 3,
                                  rounds=2)
    assert clip_only.sigmas == [0.0] * 3
    one_step = TrainSettings(epochs=1, batch_size=120, lr=1.0, optimizer="sgd", seed=0)  # q = 1: 1 step
    noisy = PrivateLoopEngine(layout, clients, one_step, [PrivacyBudget(2.0, 1e-5, 1.0)] * 3, rounds=1)
    quiet = PrivateLoopEngine(layout, clients, one_step, [PrivacyBudget(math.inf, 1e-5, 1.0)] * 3, rounds=1)
    diff = noisy.train(flat, 0)[0] - quiet.train(flat, 0)[0]
    # the only difference is the Gaussian noise: sigma * C / B per coordinate, times lr
    assert 0.9 < float(diff.std()) / (noisy.sigmas[0] * 1.0 / 120) < 1.1
    assert torch.isfinite(losses).all()
    assert all(0 < e < 2.0 for e in dp.epsilons())
    second, _ = dp.train(first, 1)
    assert all(1.8 < e <= 2.0 for e in dp.epsilons()) and all(dp.exhausted())
    third, losses = dp.train(second, 2)
    assert torch.equal(third, second) and torch.isnan(losses).all()  # budget spent: no more training


def test_empty_poisson_batches_keep_the_stats_finite() -> None:
    torch.manual_seed(0)
    tiny = TensorDataset(torch.randn(3, 1, 8, 8), torch.tensor([0, 1, 2]))
    model = build_model("digits-mlp")
    pt = make_private(model, torch.optim.SGD(model.parameters(), lr=0.1), DataLoader(tiny, batch_size=1),
                      PrivacyBudget(8.0), 20)
    stats = [pt.train(2) for _ in range(4)]  # q = 1/3: some batches are empty
    assert all(math.isfinite(s.loss) for s in stats) and sum(s.steps for s in stats) == 24
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_the_dp_cnn_is_the_tempered_cnn_dp_sgd_can_train_per_sample() -> None:
    """Papernot et al.'s CNN (Tramer and Boneh's for Fashion-MNIST): 26,010 parameters, nothing that
    mixes the samples of a batch, and activations bounded by tanh whatever the weights grow to."""
    model = build_model("dp-cnn")
    check_dp_model(model)
    sizes = {name: p.numel() for name, p in model.named_parameters()}
    assert sizes == {"conv1.weight": 1024, "conv1.bias": 16, "conv2.weight": 8192, "conv2.bias": 32,
                     "fc1.weight": 16_384, "fc1.bias": 32, "fc2.weight": 320, "fc2.bias": 10}
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1000)
        out = model(torch.randn(4, 1, 28, 28))
    assert out.shape == (4, 10) and out.abs().max() <= 1000 * (32 + 1) * 1.01  # |fc2 . tanh + b|
