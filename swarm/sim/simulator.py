"""In-process simulator: N virtual peers, each with its own strategy object fed a `PeerView`.

One round: every client trains locally; each peer chooses whom to fetch; each fetched peer's model
goes once per round through the `Wire` (`swarm.sim.wire`: encoding effects, bytes each reader
downloads); fetched snapshots are scored with the configured similarity; strategies observe, weigh,
and each peer merges; every client's merged model is evaluated on its own test split.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from swarm.data import load_dataset
from swarm.features import client_inputs
from swarm.merge import MergeError, merge
from swarm.models import build_model, pick_device
from swarm.partition import ClientData, partition
from swarm.peer_privacy import check_settings, eligible, merge_weights
from swarm.privacy import PrivacyBudget
from swarm.prune_schedule import schedule_from
from swarm.pruning import RowPruning
from swarm.selection import BestModel, check_keep, guard, reports_best
from swarm.sim.config import SimConfig
from swarm.sim.dp_engine import PrivateLoopEngine
from swarm.sim.engine import BatchedEngine, Layout, LoopEngine, TrainSettings
from swarm.sim.wire import RawWire, Wire
from swarm.similarity import SimilarityInputs, check_name, flatten, similarity
from swarm.strategies import Candidate, PeerView, Strategy, configured_strategy, resolve_needs

log = logging.getLogger(__name__)
ENGINES = ("auto", "batched", "loop")
SERVER = -1  # FedAvg's server, as a reader of the clients' snapshots


@dataclass
class SimState:
    """What a run carries from one round to the next, as plain data (tensors, dicts, lists, tuples):
    enough to resume it exactly where it stopped."""

    next_round: int
    flat: torch.Tensor  # each client's current model, one row each
    kept: torch.Tensor  # each client's best model on its validation split so far
    active: torch.Tensor
    masks: torch.Tensor
    wire: dict[str, Any]  # Wire.state_dict(): keyframes and the bases readers hold
    best: list[tuple[float, int]]  # BestModel's loss and round per client
    strategies: list[dict[str, Any]]  # state_dict() per client
    rngs: list[tuple]  # random.Random.getstate() per client
    result: dict[str, Any]  # the SimResult so far, as a dict
    torch_rng: torch.Tensor
    privacy: tuple[list[int], list[float]] | None  # DP steps taken and epsilon spent per client
    elapsed_s: float
    kept_merged: list[bool | None] | None = None  # absent from checkpoints written before it was kept


@dataclass
class SimResult:
    config: dict[str, Any]
    rounds: list[dict[str, Any]] = field(default_factory=list)
    per_client: list[float] = field(default_factory=list)
    best_rounds: list[int] = field(default_factory=list)  # the round of each client's kept model
    # Whether each client's kept model is a merged one, not one just trained; None where the record
    # dates from before a resume from a checkpoint that did not say.
    kept_merged: list[bool | None] = field(default_factory=list)
    # Test accuracy of the model each client holds at the end (the kept one may be older); the same as
    # per_client without a validation split.
    last_per_client: list[float] = field(default_factory=list)
    clusters: list[int] = field(default_factory=list)
    bytes_sent_total: int = 0
    epsilon_spent: float | None = None  # largest over clients; None without DP
    wall_s: float = 0.0


def pick_engine(cfg: SimConfig, layout: Layout) -> type[LoopEngine] | type[BatchedEngine]:
    """`auto`: batched for models without buffers that are MLPs or have a stacked forward
    (`forward_many`: the CNNs); a vmapped conv is not faster than one client at a time on CPU, the
    stacked grouped convolution is 3-5x faster (measured in bench/simulate.py)."""
    if cfg.engine not in ENGINES:
        raise ValueError(f"unknown engine {cfg.engine!r}; choose one of {', '.join(ENGINES)}")
    if cfg.engine == "auto":
        convs = any(isinstance(m, torch.nn.Conv2d) for m in layout.model.modules())
        stacked = hasattr(layout.model, "forward_many")
        return LoopEngine if layout.has_buffers or (convs and not stacked) else BatchedEngine
    return BatchedEngine if cfg.engine == "batched" else LoopEngine


@dataclass(frozen=True)
class Setup:
    """What a run trains: each client's data (inputs shaped for the model), the model's layout, the engine."""

    clients: list[ClientData]
    layout: Layout
    engine: LoopEngine | BatchedEngine


def build_setup(cfg: SimConfig) -> Setup:
    """The clients, model and engine `cfg` names; the model's first weights come from torch's global seed."""
    ds = load_dataset(cfg.dataset)
    clients = partition(ds, cfg.partition, cfg.clients, train=cfg.train_samples, val=cfg.val_samples,
                        test=cfg.test_samples, seed=cfg.seed, alpha=cfg.alpha, split=cfg.split)
    model = build_model(cfg.model or ds.model, in_channels=ds.in_channels, num_classes=ds.num_classes)
    clients = client_inputs(model, clients)
    layout = Layout(model)
    settings = TrainSettings(cfg.local_epochs, cfg.batch_size, cfg.lr, cfg.optimizer, cfg.seed)
    return Setup(clients, layout, make_engine(cfg, layout, clients, settings))


def make_engine(cfg: SimConfig, layout: Layout, clients: list[ClientData],
                settings: TrainSettings) -> LoopEngine | BatchedEngine:
    """DP runs train with DP-SGD one client at a time (`swarm.sim.dp_engine`); others per `pick_engine`."""
    targets = cfg.client_epsilons()
    if all(e <= 0 for e in targets):
        return pick_engine(cfg, layout)(layout, clients, settings)
    if cfg.engine == "batched":
        raise ValueError("DP-SGD runs use the loop engine; set engine = \"auto\" or \"loop\"")
    budgets = [PrivacyBudget(e, cfg.dp_delta, cfg.dp_max_grad_norm) if e > 0 else None for e in targets]
    return PrivateLoopEngine(layout, clients, settings, budgets, cfg.rounds)


def spent(engine: LoopEngine | BatchedEngine, n: int) -> list[float | None]:
    """The epsilon each client spent so far; None for a client without DP."""
    return engine.epsilons() if isinstance(engine, PrivateLoopEngine) else [None] * n


def largest(epsilons: list[float | None]) -> float | None:
    dp = [e for e in epsilons if e is not None]
    return max(dp) if dp else None


def spread(flat: torch.Tensor) -> float:
    """Mean L2 distance of the clients' models to their average: how far apart the peers are (0 once all
    hold the same model, as after a FedAvg round). Rows include the pruned zeros of sparse models."""
    return float((flat - flat.mean(0)).norm(dim=1).mean())


def purity(chosen: Mapping[int, list[int]], clusters: list[int]) -> float | None:
    picks = [(i, j) for i, js in chosen.items() for j in js]
    if not picks:
        return None
    return sum(clusters[i] == clusters[j] for i, j in picks) / len(picks)


def purity_by_cluster(chosen: Mapping[int, list[int]], clusters: list[int]) -> list[float | None]:
    """`purity` of the choices each cluster's clients made, cluster 0 first: the overall figure hides
    a small cluster whose clients choose outsiders behind a large one that keeps to itself."""
    return [purity({i: js for i, js in chosen.items() if clusters[i] == c}, clusters)
            for c in range(max(clusters) + 1)]


def simulate(
    cfg: SimConfig,
    *,
    wire: Wire | None = None,
    on_round: Callable[[dict[str, Any]], None] | None = None,
    resume: SimState | None = None,
    on_state: Callable[[SimState], None] | None = None,
) -> SimResult:
    """Run `cfg`; `resume` continues a run from the state an earlier call handed `on_state` (which
    gets it after every round, its tensors uncopied: serialise it before returning)."""
    started = time.perf_counter()
    wire = wire or RawWire()
    needs = resolve_needs(cfg.strategy, "simulator", cfg.similarity)
    check_settings(cfg.max_peer_epsilon, cfg.merge_weights)
    check_keep(cfg.keep)
    metric_name = check_name(needs.similarity)
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg.device)
    if device.type != "cpu":
        log.info("simulate: device %s requested; the simulator computes on cpu", device)
    setup = build_setup(cfg)
    clients, layout, engine = setup.clients, setup.layout, setup.engine
    n = len(clients)
    ids = [f"c{i:03d}" for i in range(n)]
    index = {p: i for i, p in enumerate(ids)}
    clusters = [c.cluster for c in clients]
    values = cfg.to_dict()
    strategies: list[Strategy] = [configured_strategy(cfg.strategy, needs, values) for _ in range(n)]
    metric = similarity(metric_name)
    rngs = [random.Random(cfg.seed * 1_000_003 + i) for i in range(n)]
    init = flatten(layout.model.state_dict())
    flat = init.repeat(n, 1)
    schedule = schedule_from(cfg.to_dict())
    pruning = RowPruning(schedule, layout.names, layout.shapes) if schedule is not None else None
    masks = torch.ones_like(flat, dtype=torch.bool)
    result = SimResult(
        config={**cfg.to_dict(), "similarity": metric_name, "engine": type(engine).__name__},
        clusters=clusters,
    )

    has_val = all(len(c.val_y) for c in clients)
    if not has_val and (cfg.merge_guard or cfg.patience):
        log.warning("simulate: no validation split (val_samples = 0): no merge guard, no best-model "
                    "selection, no early stopping; the last round's models are reported")
    guarded = cfg.merge_guard and has_val and not needs.central
    best_tested = reports_best(cfg.keep, has_val)
    best = [BestModel(cfg.patience if has_val else 0) for _ in range(n)]
    kept = flat.clone()  # each client's best model on its validation split so far
    kept_merged: list[bool | None] = [False] * n
    active = torch.ones(n, dtype=torch.bool)
    first, elapsed = 0, 0.0
    if resume is not None:
        first, elapsed, result = resume.next_round, resume.elapsed_s, SimResult(**resume.result)
        flat, kept, active, masks = resume.flat, resume.kept, resume.active, resume.masks
        kept_merged = list(resume.kept_merged) if resume.kept_merged is not None else [None] * n
        wire.load_state_dict(resume.wire)
        for b, (loss, round_) in zip(best, resume.best, strict=True):
            b.loss, b.round = loss, round_
        for strategy, state in zip(strategies, resume.strategies, strict=True):
            strategy.load_state_dict(state)
        for rng, rng_state in zip(rngs, resume.rngs, strict=True):
            rng.setstate(rng_state)
        torch.set_rng_state(resume.torch_rng)
        if isinstance(engine, PrivateLoopEngine) and resume.privacy is not None:
            engine.taken, engine.spent = resume.privacy
        log.info("simulate: resuming at round %d of %d", first, cfg.rounds)

    for r in range(first, cfg.rounds if active.any() else first):
        t0, cpu0 = time.perf_counter(), time.process_time()
        start = flat
        flat, train_loss = engine.train(flat, r, active)
        if pruning is not None:
            masks = pruning.prune(flat, masks, r)
            flat = flat * masks
        trained_spread = spread(flat)
        # As in the thesis, the model judged (and kept if best) is the one just trained, before merging.
        val_loss, val_acc = engine.evaluate(flat, "val") if has_val else (None, None)
        for i in range(n):
            if val_loss is not None and active[i] and best[i].offer(float(val_loss[i]), r):
                kept[i], kept_merged[i] = flat[i], False
            active[i] = active[i] and not best[i].stalled(r)
        epsilons = spent(engine, n)
        candidates = [Candidate(p, len(c.train_y), r, c.cluster, e)
                      for p, c, e in zip(ids, clients, epsilons, strict=True)]
        views = [eligible(PeerView(ids[i], r, len(clients[i].train_y), candidates, clusters[i]),
                          cfg.max_peer_epsilon) for i in range(n)]
        by_id = dict(zip(ids, epsilons, strict=True))
        chosen = {i: [index[p] for p in strategies[i].choose(views[i], rngs[i])] if active[i] else []
                  for i in range(n)}

        received = {j: flatten(wire.send(j, layout.unflatten(flat[j].clone()), r))
                    for j in sorted({j for js in chosen.values() for j in js})}
        if needs.central:
            uploads = [wire.cost(SERVER, j) for j in received]
            round_bytes = sum(uploads) + n * max(uploads, default=0)
        else:
            round_bytes = sum(wire.cost(i, j) for i, js in chosen.items() for j in js)

        scores = (
            score_pairs(metric, cfg, engine, flat, start, init, received, chosen)
            if needs.scores
            else {i: {} for i in range(n)}
        )
        adverts = {ids[j]: strategies[j].advertise() for j in received}
        merged = flat.clone()
        shared: torch.Tensor | None = None
        members: list[int] = []  # the clients in FedAvg's average
        merged_pairs: dict[int, list[int]] = {}
        for i in range(n):
            fetched = [ids[j] for j in chosen[i]]
            named = {ids[j]: s for j, s in scores[i].items()}
            strategies[i].observe(views[i], named, {p: adverts[p] for p in fetched})
            if not fetched:
                continue
            if needs.central and shared is not None and pruning is None:
                merged[i], merged_pairs[i] = shared, [j for j in members if j != i]
                continue
            weights = merge_weights(strategies[i].weights(views[i], fetched, named), by_id, me=ids[i],
                                    max_peer_epsilon=cfg.max_peer_epsilon, scheme=cfg.merge_weights)

            combine = functools.partial(merge_row, cfg, flat, received, masks, pruning, i, chosen[i], ids)
            if guarded and val_loss is not None:
                loss_of = functools.partial(merged_val_loss, engine, combine, i)
                verdict = guard(ids[i], weights, float(val_loss[i]), loss_of, cfg.guard_tolerance,
                                rounds_trained=r + 1)
                strategies[i].rejected(verdict.rejected)
                weights = verdict.weights
            try:
                merged[i] = combine(weights)
            except MergeError as exc:
                log.warning("round %d: %s kept its own weights: %s", r, ids[i], exc)
            merged_pairs[i] = [index[p] for p, w in weights.items() if p != ids[i] and w > 0]
            if needs.central:
                shared, members = merged[i], [index[p] for p, w in weights.items() if w > 0]
        trained, flat = flat, merged
        took = [i for i, js in merged_pairs.items() if js and active[i]]
        if cfg.judge_merged and has_val and took:
            # Averaging neighbours' models often gives a better model than any one of them trained;
            # judged like a trained one, it may become the model the client keeps.
            merged_loss, _ = engine.evaluate(flat[took], "val", took)
            for i, loss in zip(took, merged_loss.tolist(), strict=True):
                if best[i].offer(loss, r):
                    kept[i], kept_merged[i] = flat[i], True
        if not best_tested:  # the models held now are tested: merged ones where this round's merge changed
            # them (a stopped client holds the model it trained last)
            kept_merged = [not torch.equal(flat[i], trained[i]) for i in range(n)]
        tested = cfg.test_every > 0 and (r % cfg.test_every == cfg.test_every - 1 or r == cfg.rounds - 1)
        epsilon = largest(spent(engine, n))
        row = {
            "round": r,
            **test_columns(engine.evaluate(flat, "test") if tested else None),
            "val_acc": float(val_acc.mean()) if val_acc is not None else None,
            "train_loss": float(train_loss.nanmean()),
            "purity": purity(chosen, clusters),
            "cluster_purity": purity_by_cluster(chosen, clusters),
            "merged_purity": purity(merged_pairs, clusters),
            "active": int(active.sum()),
            "bytes_sent": int(round_bytes),
            "wall_s": time.perf_counter() - t0,
            # what a round costs, unlike wall_s unmoved by other processes or a paused run
            "cpu_s": time.process_time() - cpu0,
            "epsilon": epsilon,
            "density": float(pruning.density(masks).mean()) if pruning is not None else 1.0,
            "spread_trained": trained_spread,
            "spread": spread(flat),
        }
        result.epsilon_spent = epsilon
        result.rounds.append(row)
        result.bytes_sent_total += int(round_bytes)
        if on_round is not None:
            on_round(row)
        if on_state is not None:
            privacy = (engine.taken, engine.spent) if isinstance(engine, PrivateLoopEngine) else None
            on_state(SimState(
                r + 1, flat, kept, active, masks, wire.state_dict(), [(b.loss, b.round) for b in best],
                [s.state_dict() for s in strategies], [g.getstate() for g in rngs],
                dataclasses.asdict(result), torch.get_rng_state(), privacy,
                elapsed + time.perf_counter() - started, list(kept_merged)))
        if not active.any():
            log.info("simulate: every client stopped early by round %d", r)
            break
    last = [float(a) for a in engine.evaluate(flat, "test")[1]]
    result.per_client = [float(a) for a in engine.evaluate(kept, "test")[1]] if best_tested else last
    result.last_per_client = last
    final_round = len(result.rounds) - 1
    result.best_rounds = [b.round if best_tested else b.last_round(final_round) for b in best]
    result.kept_merged = kept_merged
    result.wall_s = elapsed + time.perf_counter() - started
    return result


def test_columns(test: tuple[torch.Tensor, torch.Tensor] | None) -> dict[str, float | None]:
    """Per-round test accuracy over clients and mean test loss (None in rounds not tested)."""
    if test is None:
        return dict.fromkeys(("mean_acc", "std_acc", "min_acc", "max_acc", "test_loss"))
    loss, acc = test
    return {"mean_acc": float(acc.mean()), "std_acc": float(acc.std(unbiased=False)),
            "min_acc": float(acc.min()), "max_acc": float(acc.max()), "test_loss": float(loss.mean())}


def merge_row(cfg: SimConfig, flat: torch.Tensor, received: Mapping[int, torch.Tensor], masks: torch.Tensor,
              pruning: RowPruning | None, i: int, chosen: list[int], ids: list[str],
              weights: Mapping[str, float]) -> torch.Tensor:
    """Client i's weights merged with its fetched neighbours' at `weights` (by peer id)."""
    if pruning is not None:
        return pruning.merge_row(masks[i], flat[i], [received[j] for j in chosen],
                                 [weights.get(ids[k], 0.0) for k in (i, *chosen)])
    states = {ids[i]: {"w": flat[i]}, **{ids[j]: {"w": received[j]} for j in chosen}}
    return merge(states, weights, method=cfg.merge, clip_norm=cfg.clip_norm or None,
                 reference={"w": flat[i]})["w"]


def merged_val_loss(engine: LoopEngine | BatchedEngine,
                    combine: Callable[[Mapping[str, float]], torch.Tensor],
                    client: int, weights: Mapping[str, float]) -> float:
    """Validation loss of client's weights merged at `weights` (the merge guard's yardstick)."""
    try:
        return float(engine.evaluate(combine(weights)[None], "val", [client])[0][0])
    except MergeError:
        return math.nan  # nothing mergeable: the guard refuses it


def own_losses(engine: LoopEngine | BatchedEngine, flat: torch.Tensor, owners: list[int]) -> torch.Tensor:
    """Each owner's loss on its own training data, one entry per pair (each owner evaluated once)."""
    rows = sorted(set(owners))
    at = {i: k for k, i in enumerate(rows)}
    return engine.pair_losses(flat[rows], rows)[[at[i] for i in owners]]


def score_pairs(
    metric: Callable[..., Any],
    cfg: SimConfig,
    engine: LoopEngine | BatchedEngine,
    flat: torch.Tensor,
    start: torch.Tensor,
    init: torch.Tensor,
    received: Mapping[int, torch.Tensor],
    chosen: Mapping[int, list[int]],
) -> dict[int, dict[int, float]]:
    """Similarity of every (peer, fetched) pair, all pairs stacked into one metric call."""
    pairs = [(i, j) for i, js in chosen.items() for j in js]
    if not pairs:
        return {i: {} for i in chosen}
    mine = torch.stack([flat[i] for i, _ in pairs])
    theirs = torch.stack([received[j] for _, j in pairs])
    owners = [i for i, _ in pairs]
    ctx = SimilarityInputs(
        init=init,
        mine_prev=torch.stack([start[i] for i, _ in pairs]),
        theirs_prev=torch.stack([start[j] for _, j in pairs]),
        loss_of=lambda rows: engine.pair_losses(rows, owners),
        own_loss=lambda: own_losses(engine, flat, owners),
        alpha=cfg.panm_alpha,
    )
    values = metric(mine, theirs, ctx)
    values = values.reshape(-1) if isinstance(values, torch.Tensor) else torch.tensor([values])
    out: dict[int, dict[int, float]] = {i: {} for i in chosen}
    for (i, j), v in zip(pairs, values.tolist(), strict=True):
        out[i][j] = v
    return out
