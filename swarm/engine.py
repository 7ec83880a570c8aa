"""Training and evaluation of all simulated clients at once.

Every client has the same architecture, so the simulator keeps all weights as one `[N, P]` matrix
(rows in `similarity.flatten` order). `LoopEngine` trains one client after the other with the
per-peer API (`train_local`, `evaluate`, torch.optim); `BatchedEngine` runs the same algorithm
over stacked parameters with `torch.func.vmap` (one grouped forward/backward for all clients, a
stacked Adam/SGD step). Both draw identical mini-batches, so they agree within float tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from swarm.partition import ClientData
from swarm.similarity import flatten
from swarm.training import ShuffledBatches, evaluate, make_optimizer, train_local

ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8
EVAL_SAMPLES_PER_CHUNK = 8192


class Layout:
    """Names and shapes of a model's floating-point state, in `similarity.flatten` (sorted) order."""

    def __init__(self, model: nn.Module) -> None:
        state = model.state_dict()
        self.model = model
        self.names = [k for k in sorted(state) if state[k].is_floating_point()]
        self.shapes = [state[k].shape for k in self.names]
        self.sizes = [math.prod(s) for s in self.shapes]
        self.size = sum(self.sizes)
        self.has_buffers = any(True for _ in model.buffers())

    def unflatten(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """`[P]` -> state dict, or `[N, P]` -> stacked state dict with a leading client dim."""
        lead = rows.shape[:-1]
        parts = torch.split(rows, self.sizes, dim=-1)
        return {n: p.reshape(*lead, *s) for n, p, s in zip(self.names, parts, self.shapes, strict=True)}


def client_generator(seed: int, round_: int, client: int) -> torch.Generator:
    """Mini-batch order of one client in one round (shared by both engines)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + round_ * 10_007 + client)


@dataclass
class TrainSettings:
    epochs: int
    batch_size: int
    lr: float
    optimizer: str
    seed: int


def pad(tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack tensors of different lengths along a new dim 0, zero-padded; plus the validity mask."""
    longest = max(len(t) for t in tensors)
    out = tensors[0].new_zeros((len(tensors), longest, *tensors[0].shape[1:]))
    mask = torch.zeros(len(tensors), longest, dtype=torch.bool)
    for i, t in enumerate(tensors):
        out[i, : len(t)] = t
        mask[i, : len(t)] = True
    return out, mask


class LoopEngine:
    """One client at a time through the per-peer API: the reference the batched engine must match."""

    def __init__(self, layout: Layout, clients: Sequence[ClientData], settings: TrainSettings) -> None:
        self.layout, self.clients, self.settings = layout, clients, settings

    def load(self, row: torch.Tensor) -> nn.Module:
        self.layout.model.load_state_dict(self.layout.unflatten(row.clone()), strict=False)
        return self.layout.model

    def train(self, flat: torch.Tensor, round_: int) -> tuple[torch.Tensor, torch.Tensor]:
        s, out, losses = self.settings, flat.clone(), torch.zeros(len(self.clients))
        for i, c in enumerate(self.clients):
            model = self.load(flat[i])
            loader = ShuffledBatches(c.train_x, c.train_y, s.batch_size, client_generator(s.seed, round_, i))
            stats = train_local(
                model,
                loader,
                epochs=s.epochs,
                optimizer=make_optimizer(s.optimizer, model.parameters(), s.lr),
            )
            out[i], losses[i] = flatten(model.state_dict()), stats.loss
        return out, losses

    def evaluate(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        res = [evaluate(self.load(flat[i]), [(c.test_x, c.test_y)]) for i, c in enumerate(self.clients)]
        return torch.tensor([r[0] for r in res]), torch.tensor([r[1] for r in res])

    def pair_losses(self, rows: torch.Tensor, owners: Sequence[int]) -> torch.Tensor:
        """Loss of each weight row on its owner client's training data."""
        c = self.clients
        return torch.tensor(
            [
                evaluate(self.load(r), [(c[o].train_x, c[o].train_y)])[0]
                for r, o in zip(rows, owners, strict=True)
            ]
        )


class BatchedEngine:
    """All clients in one vmapped step. Needs a model without buffers (no batch norm)."""

    def __init__(self, layout: Layout, clients: Sequence[ClientData], settings: TrainSettings) -> None:
        if layout.has_buffers:
            raise ValueError("the batched engine needs a model without buffers; set batched = false")
        self.layout, self.clients, self.settings = layout, clients, settings
        self.train_x, self.train_mask = pad([c.train_x for c in clients])
        self.train_y, _ = pad([c.train_y for c in clients])
        self.test_x, self.test_mask = pad([c.test_x for c in clients])
        self.test_y, _ = pad([c.test_y for c in clients])
        self.sizes = [len(c.train_y) for c in clients]

        def loss_one(
            params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, m: torch.Tensor
        ) -> torch.Tensor:
            ce = nn.functional.cross_entropy(functional_call(layout.model, params, (x,)), y, reduction="none")
            return (ce * m).sum() / m.sum().clamp_min(1)

        def eval_one(
            params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, m: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            logits = functional_call(layout.model, params, (x,))
            ce = nn.functional.cross_entropy(logits, y, reduction="none")
            hit = (logits.argmax(dim=-1) == y).float()
            n = m.sum().clamp_min(1)
            return (ce * m).sum() / n, (hit * m).sum() / n

        self.step_grads = vmap(grad_and_value(loss_one))
        self.eval_many = vmap(eval_one)

    def batches(self, round_: int) -> list[torch.Tensor]:
        """Per epoch, `[N, longest]` sample indices (-1 = padding), from the shared generators."""
        gens = [client_generator(self.settings.seed, round_, i) for i in range(len(self.clients))]
        longest = max(self.sizes)
        epochs = []
        for _ in range(self.settings.epochs):
            idx = torch.full((len(self.clients), longest), -1, dtype=torch.long)
            for i, (n, g) in enumerate(zip(self.sizes, gens, strict=True)):
                idx[i, :n] = torch.randperm(n, generator=g)
            epochs.append(idx)
        return epochs

    def train(self, flat: torch.Tensor, round_: int) -> tuple[torch.Tensor, torch.Tensor]:
        s, n_clients = self.settings, len(self.clients)
        params = {k: v.clone() for k, v in self.layout.unflatten(flat).items()}
        m1 = {k: torch.zeros_like(v) for k, v in params.items()}
        m2 = {k: torch.zeros_like(v) for k, v in params.items()}
        steps = torch.zeros(n_clients)
        loss_sum, seen = torch.zeros(n_clients), torch.zeros(n_clients)
        rows = torch.arange(n_clients)[:, None]
        with torch.no_grad():
            for idx in self.batches(round_):
                for start in range(0, idx.shape[1], s.batch_size):
                    part = idx[:, start : start + s.batch_size]
                    mask = part >= 0
                    active = mask.any(dim=1)
                    x, y = self.train_x[rows, part.clamp_min(0)], self.train_y[rows, part.clamp_min(0)]
                    with torch.enable_grad():
                        grads, loss = self.step_grads(params, x, y, mask.float())
                    count = mask.sum(dim=1).float()
                    loss_sum += loss * count
                    seen += count
                    steps += active.float()
                    self.update(params, grads, m1, m2, steps, active)
        out = torch.cat([params[k].reshape(n_clients, -1) for k in self.layout.names], dim=1)
        return out, loss_sum / seen.clamp_min(1)

    def update(
        self,
        params: dict[str, torch.Tensor],
        grads: dict[str, torch.Tensor],
        m1: dict[str, torch.Tensor],
        m2: dict[str, torch.Tensor],
        steps: torch.Tensor,
        active: torch.Tensor,
    ) -> None:
        """One optimizer step for the active clients, the same formulas as torch.optim's Adam/SGD."""
        lr = self.settings.lr
        b1, b2 = ADAM_BETAS
        t = steps.clamp_min(1)
        for k, p in params.items():
            shape = (-1,) + (1,) * (p.dim() - 1)
            on = active.reshape(shape)
            g = grads[k]
            if self.settings.optimizer == "sgd":
                p.sub_(torch.where(on, lr * g, 0.0))
                continue
            m1[k] = torch.where(on, m1[k].lerp(g, 1 - b1), m1[k])
            m2[k] = torch.where(on, m2[k] * b2 + (1 - b2) * g * g, m2[k])
            bc1 = (1 - b1**t).reshape(shape)
            bc2_sqrt = (1 - b2**t).sqrt().reshape(shape)
            denom = m2[k].sqrt() / bc2_sqrt + ADAM_EPS
            p.sub_(torch.where(on, (lr / bc1) * m1[k] / denom, 0.0))

    def chunked_eval(
        self, rows: torch.Tensor, owners: torch.Tensor, split: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and accuracy of weight row k on client owners[k]'s `split` data, in bounded chunks."""
        x, y, mask = (getattr(self, f"{split}_{part}") for part in ("x", "y", "mask"))
        chunk = max(1, EVAL_SAMPLES_PER_CHUNK // x.shape[1])
        losses, accs = [torch.zeros(0)], [torch.zeros(0)]
        with torch.no_grad():
            for a in range(0, len(rows), chunk):
                o = owners[a : a + chunk]
                l_, a_ = self.eval_many(
                    self.layout.unflatten(rows[a : a + chunk]), x[o], y[o], mask[o].float()
                )
                losses.append(l_)
                accs.append(a_)
        return torch.cat(losses), torch.cat(accs)

    def evaluate(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.chunked_eval(flat, torch.arange(len(self.clients)), "test")

    def pair_losses(self, rows: torch.Tensor, owners: Sequence[int]) -> torch.Tensor:
        return self.chunked_eval(rows, torch.as_tensor(list(owners), dtype=torch.long), "train")[0]
