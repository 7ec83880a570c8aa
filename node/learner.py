"""A trainer's learning side: its shard, model, optimizer, strategy and similarity metric.

Networking never reaches in here and this never reaches the network (hivemind's split): the node
loop hands it peers' state dicts and asks it to train, score, merge, evaluate. All learning code
comes from `swarm/`, the very code the simulator runs.
"""

from __future__ import annotations

import functools
import random
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

from node.checkpoint import CheckpointError
from node.config import NodeConfig
from storage.manifest import Manifest, labels_fingerprint
from swarm.data import INFO, load_dataset
from swarm.dp_advice import plan_of, warning
from swarm.features import client_inputs
from swarm.labels import map_names, order_folders
from swarm.merge import merge
from swarm.models import build_model
from swarm.partition import ClientData, partition, split_of
from swarm.privacy import PrivacyBudget, PrivacyConfigError, PrivateTraining, make_private
from swarm.prune_schedule import schedule_from
from swarm.pruning import Mask, apply_mask, density, full_mask, masked_merge, prune
from swarm.selection import BestModel, Guarded, guard, reports_best
from swarm.similarity import READS_PREVIOUS, SimilarityInputs, similarity
from swarm.strategies import PeerView, configured_strategy, resolve_needs
from swarm.training import ShuffledBatches, TrainStats, evaluate, make_optimizer, train_local

StateDict = dict[str, torch.Tensor]
COLOUR_MODELS = ("lenet", "resnet18")
TEST_SAMPLES = 1000
MODEL_FOR_INPUT = {(1, 28): "fashion-cnn", (3, 32): "lenet", (1, 8): "digits-mlp"}


@dataclass
class Shard:
    """The data one peer holds (never leaves the node): its own train / validation / test split."""

    data: ClientData
    num_classes: int
    classes: tuple[str, ...]  # output k of the model means classes[k]
    note: str = ""  # what the user should know about the labels

    @property
    def in_channels(self) -> int:
        return int(self.data.train_x.shape[1])


def load_shard(cfg: NodeConfig, manifest: Manifest | None = None) -> Shard:
    """The user's own image folder, or shard `cfg.client` of `cfg.clients` of a research data set,
    split as the simulator splits it; labels numbered as the swarm's `manifest` says (by class name),
    or without one as the research data set numbers them."""
    classes = manifest.classes if manifest else None
    if cfg.image_folder:
        colour = cfg.model in COLOUR_MODELS
        shape = manifest.input_shape if manifest else (3, 32, 32) if colour else (1, 28, 28)
        return load_image_folder(Path(cfg.image_folder), shape=shape, seed=cfg.seed, swarm_classes=classes)
    ds = load_dataset(cfg.dataset)
    order = map_names(INFO[cfg.dataset].classes, classes or INFO[cfg.dataset].classes, f"{cfg.dataset} class")
    to_swarm = torch.tensor(order.index)
    ds = replace(ds, train_y=to_swarm[ds.train_y], test_y=to_swarm[ds.test_y], num_classes=len(order.classes))
    n = cfg.samples_per_client
    # Test splits of 1,000 samples: each peer's accuracy is compared with training alone, and the
    # standard error of an accuracy near 0.75 is 0.03 on 200 samples, 0.014 on 1,000.
    client = partition(ds, cfg.partition, cfg.clients, train=n, val=max(n // 4, 1), test=TEST_SAMPLES,
                       seed=cfg.seed, alpha=cfg.alpha, split=cfg.split)[cfg.client]
    return Shard(client, ds.num_classes, order.classes, order.note)


def load_image_folder(root: Path, *, shape: tuple[int, int, int], seed: int,
                      swarm_classes: tuple[str, ...] | None = None) -> Shard:
    """A volunteer's own data in torchvision ImageFolder layout (`root/<class>/<image>`), as `shape`
    tensors (1x28x28 grey for the default CNN, 3x32x32 colour), split 80/10/10 by `seed`. Class folders
    are labelled by name (`swarm.labels.order_folders`), never by ImageFolder's alphabetical order."""
    from torchvision import datasets, transforms

    if not root.is_dir():
        raise FileNotFoundError(f"--image-folder {root} is not a directory of class folders")
    channels, height, width = shape
    if channels not in (1, 3):
        raise ValueError(f"images of {channels} channels are not supported: the model takes 1 (grey) or 3")
    grey = [transforms.Grayscale(1)] if channels == 1 else []
    # Scaled to [-1, 1] as the research data sets are (swarm.data.to_images): merged models see one scale.
    folder = datasets.ImageFolder(str(root), transform=transforms.Compose(
        [*grey, transforms.Resize((height, width)), transforms.ToTensor(),
         transforms.Normalize([0.5] * channels, [0.5] * channels)]))
    if len(folder) < 10:
        raise FileNotFoundError(f"--image-folder {root} holds {len(folder)} images; it needs at least 10")
    labels = order_folders(folder.classes, swarm_classes, {name: info.classes for name, info in INFO.items()})
    x = torch.stack([img for img, _ in folder])
    y = torch.tensor(labels.index)[torch.tensor(folder.targets, dtype=torch.int64)]
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_val = n_test = max(len(y) // 10, 1)
    val, test, train = order[:n_val], order[n_val:n_val + n_test], order[n_val + n_test:]
    return Shard(ClientData(x[train], y[train], x[val], y[val], x[test], y[test], cluster=-1),
                 num_classes=len(labels.classes), classes=labels.classes, note=labels.note)


class PeerHistory:
    """Per peer, the last two different models scored. A node never sees the weights a peer started
    its round from (the simulator does); the step between a peer's two latest snapshots is the
    nearest it has to that peer's current update (PANM's metric), and the common init before that.
    Only the `max_peers` most recently scored peers are kept (memory and checkpoint size stay
    bounded in a large swarm); a forgotten peer is scored against the common init, as a new one."""

    def __init__(self, init: StateDict, max_peers: int = 128) -> None:
        self.init, self.max_peers = init, max_peers
        self.latest: dict[str, StateDict] = {}
        self.before: dict[str, StateDict] = {}

    def previous(self, peer_id: str, theirs: StateDict) -> StateDict:
        """The model of `peer_id` before `theirs` (which is remembered as its latest)."""
        latest = self.latest.pop(peer_id, None)  # re-inserted last: dict order is recency
        if latest is not None and not all(torch.equal(latest[k], theirs[k]) for k in theirs):
            self.before[peer_id] = latest
        self.latest[peer_id] = theirs
        while len(self.latest) > self.max_peers:
            oldest = next(iter(self.latest))
            del self.latest[oldest]
            self.before.pop(oldest, None)
        return self.before.get(peer_id, self.init)

    def state_dict(self) -> dict[str, dict[str, StateDict]]:
        """Both models per peer, plain tensors: a resumed node that forgot them would score each
        peer's next snapshot against the common init, i.e. against its whole training so far."""
        return {"latest": dict(self.latest), "before": dict(self.before)}

    def load_state_dict(self, state: Mapping[str, Mapping[str, StateDict]]) -> None:
        self.latest = {str(p): dict(sd) for p, sd in state.get("latest", {}).items()}
        self.before = {str(p): dict(sd) for p, sd in state.get("before", {}).items()}


def restored_random_state(state: Any) -> tuple[Any, ...]:
    """`random.Random.getstate()` as read back from a checkpoint (tuples may come back as lists)."""
    version, internal, gauss = state
    return int(version), tuple(int(x) for x in internal), gauss


class Learner:
    def __init__(self, cfg: NodeConfig, shard: Shard, device: torch.device,
                 init: StateDict | None = None) -> None:
        self.cfg, self.shard, self.device = cfg, shard, device
        model_name = cfg.model or MODEL_FOR_INPUT.get((shard.in_channels, int(shard.data.train_x.shape[-1])),
                                                      "fashion-cnn")
        # Every peer of a swarm seeds its initial weights with the swarm seed: a common init is what
        # makes update-based similarities (cosine-updates, PANM) meaningful.
        torch.manual_seed(cfg.seed)
        self.model = build_model(model_name, in_channels=shard.in_channels, num_classes=shard.num_classes)
        if init is not None:  # the swarm manifest's initial weights: every lineage has that root
            self.model.load_state_dict(init)
        self.model.to(device)
        self._scratch = build_model(model_name, in_channels=shard.in_channels, num_classes=shard.num_classes)
        # What the model reads: the shard's images, or features computed from them once (scatter-linear).
        self.data = client_inputs(self.model, [shard.data])[0]
        self.init = self.state()
        self.start = self.init  # the weights this round's training started from
        self.optimizer = make_optimizer(cfg.optimizer, self.model.parameters(), cfg.lr)
        generator = torch.Generator().manual_seed(cfg.seed * 1000 + cfg.client)
        self.train_batches = ShuffledBatches(self.data.train_x, self.data.train_y, cfg.batch_size, generator)
        # What the strategy asks of a node (scores or not, the metric), resolved as the simulator does.
        self.needs = resolve_needs(cfg.strategy, "node", cfg.similarity)
        self.strategy = configured_strategy(cfg.strategy, self.needs, vars(cfg))
        self.metric = similarity(self.needs.similarity)
        self.history = PeerHistory(self.init) if self.needs.similarity in READS_PREVIOUS else None
        self.schedule = schedule_from(vars(cfg))
        self.mask: Mask = full_mask(self.init) if self.schedule is not None else {}
        self.rng = random.Random(cfg.seed * 7919 + cfg.client)
        self.private = self._make_private() if cfg.dp_epsilon > 0 else None
        self.best = BestModel(cfg.patience)
        self.best_state = self.state()

    def _make_private(self) -> PrivateTraining:
        cfg = self.cfg
        if cfg.rounds < 1:
            raise PrivacyConfigError("--dp-epsilon needs --rounds: the noise is planned so that the whole "
                                     "training spends exactly the budget")
        budget = PrivacyBudget(cfg.dp_epsilon, cfg.dp_delta, cfg.dp_max_grad_norm)
        data = TensorDataset(self.data.train_x, self.data.train_y)
        loader = DataLoader(data, batch_size=cfg.batch_size)
        # The noise must be secret: from settings peers share (seed, client) anyone could draw it
        # again and subtract it from the published weights, and a restarted node would repeat it.
        return make_private(self.model, self.optimizer, loader, budget, cfg.rounds * cfg.local_epochs,
                            noise_seed=secrets.randbits(63))

    def notes(self) -> list[str]:
        """What the user should hear before training: about the data, and a DP plan that cannot learn
        (the simulator's rule and words)."""
        hopeless = warning(plan_of(self.private, self.cfg.optimizer)) if self.private is not None else None
        return [note for note in (self.shard.note, hopeless) if note]

    @property
    def epsilon(self) -> float | None:
        """Privacy spent so far; None when this peer trains without DP."""
        return None if self.private is None else self.private.epsilon_spent()

    @property
    def labels(self) -> str:
        """The fingerprint of this peer's class order, announced so no peer merges another order."""
        return labels_fingerprint(self.shard.classes)

    @property
    def samples(self) -> int:
        return len(self.data.train_y)

    def state(self) -> StateDict:
        return {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    def train(self, max_steps: int | None) -> TrainStats:
        """One round of local training; raises BudgetExhausted once a DP peer's budget is spent.

        As in the simulator, each round starts with a fresh optimizer state: the merge replaced the
        weights the old moments belonged to."""
        self.optimizer.state.clear()
        self.start = self.state()
        if self.private is not None:
            return self.private.train(self.cfg.local_epochs, self.device)
        return train_local(self.model, self.train_batches, epochs=self.cfg.local_epochs,
                           optimizer=self.optimizer, device=self.device, max_steps=max_steps)

    def prune(self, round_: int) -> None:
        """After round `round_`'s training (a node counts rounds from 1, the schedule from 0, as the
        simulator): prune when the schedule says so, and zero the pruned weights training moved."""
        if self.schedule is None:
            return
        state = self.state()
        if self.schedule.due(round_ - 1):
            self.mask = prune(state, self.mask, self.schedule.rate, self.schedule.target_density)
        self.model.load_state_dict(apply_mask(state, self.mask))

    @property
    def density(self) -> float:
        """Fraction of the prunable weights this peer keeps (1: a dense model)."""
        return density(self.mask) if self.mask else 1.0

    def evaluate(self, split: str = "val") -> tuple[float, float]:
        return evaluate(self.model, [split_of(self.data, split)], self.device)

    def _on_my_data(self, state: StateDict, split: str) -> tuple[float, float]:
        self._scratch.load_state_dict(state)
        return evaluate(self._scratch, [split_of(self.data, split)])

    def loss_on_my_data(self, theirs: StateDict, split: str = "train") -> float:
        return self._on_my_data(theirs, split)[0]

    @property
    def has_val(self) -> bool:
        return len(self.data.val_y) > 0

    def judge(self, round_: int) -> tuple[float, float]:
        """Validation loss and accuracy of the model held now (just trained, or just merged); kept if it
        is the best so far. NaNs without a validation split."""
        if not self.has_val:
            return float("nan"), float("nan")
        loss, acc = self.evaluate("val")
        if self.best.offer(loss, round_):
            self.best_state = self.state()
        return loss, acc

    def saved(self) -> dict[str, Any]:
        """What a checkpoint keeps of the learning side (the `Checkpoint` fields of the same names)."""
        return {"model": self.state(), "optimizer": self.optimizer.state_dict(),
                "strategy": self.strategy.state_dict(),
                "privacy": self.private.state_dict() if self.private else {}, "mask": self.mask,
                "best": {"model": self.best_state, "loss": self.best.loss, "round": self.best.round},
                "history": self.history.state_dict() if self.history else {},
                # Where the strategy's draws and the batch order stand: without them a resumed peer
                # picks other neighbours and trains on other batches than it would have.
                "draws": {"strategy": self.rng.getstate(),
                          "batches": self.train_batches.generator.get_state()}}

    def restore(self, saved: Mapping[str, Any]) -> None:
        """Resume from what `saved()` returned (read back from a checkpoint)."""
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.strategy.load_state_dict(saved["strategy"])
        if self.schedule is not None and saved["mask"]:
            self.mask = dict(saved["mask"])
        if saved["best"]:
            best = saved["best"]
            self.best_state = dict(best["model"])
            self.best.loss, self.best.round = float(best["loss"]), int(best["round"])
        if self.private is not None:
            self.private.load_state_dict(saved["privacy"])
        if self.history is not None and saved.get("history"):
            self.history.load_state_dict(saved["history"])
        draws = saved.get("draws") or {}  # both absent from checkpoints written before they were kept
        try:
            if "strategy" in draws:
                self.rng.setstate(restored_random_state(draws["strategy"]))
            if "batches" in draws:
                self.train_batches.generator.set_state(draws["batches"])
        except (TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"the checkpoint's random states are malformed ({exc}); move the "
                                  "checkpoint away to start fresh") from exc

    @property
    def cluster(self) -> int:
        """The shard's true cluster (research data sets; -1 for a volunteer's own folder), for reports."""
        return self.shard.data.cluster

    # -- the strategy, with this peer's random generator ---------------------------------------------

    def choose(self, view: PeerView) -> list[str]:
        return self.strategy.choose(view, self.rng)

    def observe(self, view: PeerView, scores: Mapping[str, float],
                advertised: Mapping[str, Mapping[str, float]]) -> None:
        self.strategy.observe(view, scores, advertised)

    def weights(self, view: PeerView, fetched: list[str], scores: Mapping[str, float]) -> dict[str, float]:
        return self.strategy.weights(view, fetched, scores)

    def advertise(self, limit: int) -> dict[str, float]:
        return self.strategy.advertise(limit)

    def reported(self) -> tuple[float, str]:
        """Test accuracy of the model `--keep` reports, and which model that is: the best on the validation
        split, or the one held now (also without a split, or before any model was judged)."""
        if reports_best(self.cfg.keep, self.has_val) and self.best.round >= 0:
            return (self._on_my_data(self.best_state, "test")[1],
                    f"the best model on validation, round {self.best.round}")
        return self._on_my_data(self.state(), "test")[1], "the model it holds"

    def scores(self, theirs: Mapping[str, StateDict]) -> dict[str, float]:
        """Similarity of each peer's model to mine, given what the metric reads (PANM's: both current
        updates, `PeerHistory`). My own loss, which loss-ratio divides by, is measured once for all."""
        mine = self.state()
        own_loss = functools.cache(lambda: self.loss_on_my_data(mine))
        return {peer_id: self._score(peer_id, mine, state, own_loss) for peer_id, state in theirs.items()}

    def _score(self, peer_id: str, mine: StateDict, theirs: StateDict,
               own_loss: Callable[[], float]) -> float:
        inputs = SimilarityInputs(
            init=self.init, loss_of=lambda _flat: self.loss_on_my_data(theirs), own_loss=own_loss,
            alpha=self.cfg.panm_alpha, mine_prev=self.start if self.history else None,
            theirs_prev=self.history.previous(peer_id, theirs) if self.history else None)
        return float(self.metric(mine, theirs, inputs))

    def merge(self, me: str, states: dict[str, StateDict], weights: dict[str, float],
              rounds_trained: int) -> Guarded:
        """Merge `states` (mine under `me`) at the strategy's `weights`; with the merge guard, only
        the neighbours that do not raise my validation loss (the strategy hears of the others)."""
        own = self.state()

        def merged(w: Mapping[str, float]) -> StateDict:
            if self.schedule is not None:  # sparse models: average only where masks overlap, as the simulator
                return masked_merge(states, w, me, self.mask)
            return merge(states, w, method=self.cfg.merge, reference=own,
                         clip_norm=self.cfg.clip_norm or None)

        if self.cfg.merge_guard and self.has_val:
            verdict = guard(me, weights, self.evaluate("val")[0],
                            lambda w: self.loss_on_my_data(merged(w), "val"), self.cfg.guard_tolerance,
                            rounds_trained=rounds_trained)
            self.strategy.rejected(verdict.rejected)
        else:
            verdict = Guarded(dict(weights), [])
        self.model.load_state_dict(merged(verdict.weights))
        if self.cfg.judge_merged and any(w > 0 for p, w in verdict.weights.items() if p != me):
            self.judge(rounds_trained)
        return verdict
