"""Training and evaluation of all simulated clients at once.

Every client has the same architecture, so the simulator keeps all weights as one `[N, P]` matrix
(rows in `similarity.flatten` order). `LoopEngine` trains one client after the other with the
per-peer API (`train_local`, `evaluate`, torch.optim): the reference. `BatchedEngine` runs the same
algorithm over stacked parameters: one forward/backward for a group of clients per step (the model's
`forward_many`, else `torch.func.vmap` of the model) and one torch.optim step on the stacked tensors.
Both draw identical mini-batches (`client_generator`), so they agree within float tolerance.

What the simulator calls (also on `dp_engine.PrivateLoopEngine`):
- `train(flat, round_, active)` -> (weights, mean training loss per client); rows whose `active` entry
  is False (early-stopped clients) come back unchanged with a nan loss;
- `evaluate(flat, split, owners)` -> (loss, accuracy) of row k on client owners[k]'s "train", "val" or
  "test" split (owners default to row k = client k);
- `pair_losses(rows, owners)` -> loss of row k on client owners[k]'s training data (inverse-loss).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

from swarm.partition import ClientData, split_of
from swarm.similarity import flatten
from swarm.training import Batch, ShuffledBatches, evaluate, make_optimizer, train_local

LOOP_EVAL_BATCH = 1000  # bounds the loop's activations on a 10k-image test set (~0.5 GB in one go)
# Images per forward_many call. The thesis CNN's activations for a few hundred images stay in the CPU
# caches: a training step over 16 clients at batch 8 and scoring in slices of 256 images run ~1.3-2x
# faster per image than with 800+ images per call (measured for docs/benchmarks.md).
CNN_STEP_IMAGES, CNN_EVAL_IMAGES = 128, 256
VMAP_EVAL_IMAGES = 8192
# Rows per evaluation call, at least: one model's 1-channel input is ambiguous channels-last, and
# oneDNN's channels-first convolution of it is ~9x slower than a grouped one (see models.stacked_cnn).
EVAL_MIN_ROWS = 4
Forward = Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]


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


def pad(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack tensors of different lengths along a new dim 0, zero-padded."""
    out = tensors[0].new_zeros((len(tensors), max(len(t) for t in tensors), *tensors[0].shape[1:]))
    for i, t in enumerate(tensors):
        out[i, : len(t)] = t
    return out


def slices(x: torch.Tensor, y: torch.Tensor, size: int) -> Iterator[Batch]:
    for a in range(0, len(y), size):
        yield x[a : a + size], y[a : a + size]


def who(active: torch.Tensor | None, n: int) -> list[int]:
    """The clients to train: all n, or those whose `active` entry holds."""
    return list(range(n)) if active is None else active.nonzero().flatten().tolist()


class LoopEngine:
    """One client at a time through the per-peer API: the reference the batched engine must match."""

    def __init__(self, layout: Layout, clients: Sequence[ClientData], settings: TrainSettings) -> None:
        self.layout, self.clients, self.settings = layout, clients, settings

    def load(self, row: torch.Tensor) -> nn.Module:
        self.layout.model.load_state_dict(self.layout.unflatten(row.clone()), strict=False)
        return self.layout.model

    def train(
        self, flat: torch.Tensor, round_: int, active: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Train the active clients one at a time; one that trains nothing keeps its row and a NaN loss."""
        out = flat.clone()
        losses = torch.full((len(self.clients),), math.nan)
        for i in who(active, len(self.clients)):
            trained = self.train_client(i, flat[i], round_)
            if trained is not None:
                out[i], losses[i] = trained
        return out, losses

    def train_client(self, i: int, row: torch.Tensor, round_: int) -> tuple[torch.Tensor, float] | None:
        """Client i's weights after this round's local training, and its mean training loss."""
        s, c = self.settings, self.clients[i]
        model = self.load(row)
        loader = ShuffledBatches(c.train_x, c.train_y, s.batch_size, client_generator(s.seed, round_, i))
        stats = train_local(model, loader, epochs=s.epochs,
                            optimizer=make_optimizer(s.optimizer, model.parameters(), s.lr))
        return flatten(model.state_dict()), stats.loss

    def evaluate(
        self, flat: torch.Tensor, split: str = "test", owners: Sequence[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        owners = range(len(flat)) if owners is None else owners
        res = [
            evaluate(self.load(r), slices(*split_of(self.clients[o], split), LOOP_EVAL_BATCH))
            for r, o in zip(flat, owners, strict=True)
        ]
        return torch.tensor([r[0] for r in res]), torch.tensor([r[1] for r in res])

    def pair_losses(self, rows: torch.Tensor, owners: Sequence[int]) -> torch.Tensor:
        """Loss of each weight row on its owner client's training data."""
        return self.evaluate(rows, "train", owners)[0]


class BatchedEngine:
    """Groups of clients in one stacked step. Needs a model without buffers (no batch norm)."""

    def __init__(self, layout: Layout, clients: Sequence[ClientData], settings: TrainSettings) -> None:
        if layout.has_buffers:
            raise ValueError("the batched engine needs a model without buffers; set engine = \"loop\"")
        self.layout, self.clients, self.settings = layout, clients, settings
        self.train_x, self.train_y = pad([c.train_x for c in clients]), pad([c.train_y for c in clients])
        self.sizes = [len(c.train_y) for c in clients]
        many: Forward | None = getattr(layout.model, "forward_many", None)
        self.forward: Forward = many or vmap(lambda p, x: functional_call(layout.model, p, (x,)))
        # CNNs (forward_many) run on cache-sized batches; vmap (MLPs: small activations) on all at once
        self.group = max(1, CNN_STEP_IMAGES // settings.batch_size) if many else len(clients)
        self.eval_images = CNN_EVAL_IMAGES if many else VMAP_EVAL_IMAGES

    def batches(self, round_: int, rows: Sequence[int]) -> list[torch.Tensor]:
        """Per epoch, `[len(rows), longest]` sample indices (-1 = padding), from the shared generators."""
        gens = [client_generator(self.settings.seed, round_, i) for i in rows]
        longest = max(self.sizes[i] for i in rows)
        epochs = []
        for _ in range(self.settings.epochs):
            idx = torch.full((len(rows), longest), -1, dtype=torch.long)
            for k, (i, g) in enumerate(zip(rows, gens, strict=True)):
                idx[k, : self.sizes[i]] = torch.randperm(self.sizes[i], generator=g)
            epochs.append(idx)
        return epochs

    def train(
        self, flat: torch.Tensor, round_: int, active: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Clients train in groups that take the same number of steps per epoch, so every client of a
        group steps every time and one torch.optim optimizer over the stacked tensors is exactly each
        client's own (Adam's bias correction counts steps per tensor)."""
        out, losses = flat.clone(), torch.full((len(self.clients),), math.nan)
        by_steps: dict[int, list[int]] = {}
        for i in who(active, len(self.clients)):
            by_steps.setdefault(-(-self.sizes[i] // self.settings.batch_size), []).append(i)
        for rows in by_steps.values():
            for part in np.array_split(np.array(rows), math.ceil(len(rows) / self.group)):  # balanced
                out[part], losses[part] = self.train_group(flat[part], round_, part.tolist())
        return out, losses

    def train_group(
        self, flat: torch.Tensor, round_: int, rows: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.settings
        params = [p.clone().requires_grad_() for p in self.layout.unflatten(flat).values()]
        named = dict(zip(self.layout.names, params, strict=True))
        # fused: one pass over the stacked state (the unfused Adam's ~10 passes cost as much as the step)
        optimizer = (torch.optim.Adam(params, lr=s.lr, fused=True) if s.optimizer == "adam"
                     else make_optimizer(s.optimizer, params, s.lr))
        loss_sum, seen = torch.zeros(len(rows)), torch.zeros(len(rows))
        clients = torch.tensor(rows)[:, None]
        for idx in self.batches(round_, rows):
            for start in range(0, idx.shape[1], s.batch_size):
                pick = idx[:, start : start + s.batch_size]
                mask = pick >= 0
                x, y = self.train_x[clients, pick.clamp_min(0)], self.train_y[clients, pick.clamp_min(0)]
                logits = self.forward(named, x)
                ce = nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
                count = mask.sum(dim=1)
                loss = (ce.view_as(mask) * mask).sum(dim=1) / count
                optimizer.zero_grad(set_to_none=True)
                loss.sum().backward()
                optimizer.step()
                loss_sum += loss.detach() * count
                seen += count
        out = torch.cat([p.detach().reshape(len(rows), -1) for p in params], dim=1)
        return out, loss_sum / seen.clamp_min(1)

    def evaluate(
        self, flat: torch.Tensor, split: str = "test", owners: Sequence[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Row k on client owners[k]'s split, a few rows at a time over slices of their data: no split is
        padded or copied whole (the thesis split's clients of one angle share one 10k-image test set;
        100 copies would take 3 GB)."""
        owners = range(len(flat)) if owners is None else owners
        data = [split_of(self.clients[o], split) for o in owners]
        loss, acc = torch.full((len(flat),), math.nan), torch.full((len(flat),), math.nan)
        by_length: dict[int, list[int]] = {}
        for k, (_, y) in enumerate(data):
            by_length.setdefault(len(y), []).append(k)
        by_length.pop(0, None)
        with torch.no_grad():
            for length, ks in by_length.items():
                per_call = min(len(ks), max(EVAL_MIN_ROWS, self.eval_images // length))
                size = min(length, max(1, self.eval_images // per_call))
                for a in range(0, len(ks), per_call):
                    rows = ks[a : a + per_call]
                    ce_sum, hits = torch.zeros(len(rows)), torch.zeros(len(rows))
                    params = self.layout.unflatten(flat[rows])
                    for b in range(0, length, size):
                        x = torch.stack([data[k][0][b : b + size] for k in rows])
                        y = torch.stack([data[k][1][b : b + size] for k in rows])
                        logits = self.forward(params, x)
                        ce = nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
                        ce_sum += ce.view_as(y).sum(dim=1)
                        hits += (logits.argmax(dim=-1) == y).sum(dim=1)
                    loss[rows], acc[rows] = ce_sum / length, hits / length
        return loss, acc

    def pair_losses(self, rows: torch.Tensor, owners: Sequence[int]) -> torch.Tensor:
        return self.evaluate(rows, "train", owners)[0]
