"""A trainer's merge step: what arrived this round, refused, scored, weighed and merged.

Snapshots whose own meta says their publisher spent more than --max-peer-epsilon are refused (the
announcement was checked before choosing; the meta is what gets merged); the strategy scores only
when it needs scores, observes, and weighs; the learner merges through its guard; the peer table,
the status and the next snapshot's provenance record who went in and at what weight.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from node.config import NodeConfig
from node.downloads import Arrived
from node.learner import Learner
from node.peer_table import PeerTable
from node.publisher import Publisher
from node.status import NodeStatus, short_id
from node.timing import Timer
from swarm.peer_privacy import merge_weights, refused
from swarm.strategies import PeerView


@dataclass
class Merging:
    cfg: NodeConfig
    learner: Learner
    table: PeerTable
    publisher: Publisher
    status: NodeStatus
    timer: Timer
    emit: Callable[..., None]  # Node.event

    def merge(self, arrived: dict[str, Arrived], view: PeerView, round_: int) -> int:
        """Merge what arrived in `round_` into the learner's model; returns how many neighbours'
        models went in."""
        learner, table, me = self.learner, self.table, self.table.me
        arrived = dict(arrived)
        for peer_id in refused({p: a.dp_epsilon for p, a in arrived.items()}, me, self.cfg.max_peer_epsilon):
            self.emit(f"round {round_}: refused {short_id(peer_id)}: its snapshot says epsilon "
                      f"{arrived[peer_id].dp_epsilon} spent, over --max-peer-epsilon "
                      f"{self.cfg.max_peer_epsilon:g}", refused_epsilon=peer_id)
            del arrived[peer_id]
        scores: dict[str, float] = {}
        if learner.needs.scores:  # a strategy that weighs without scores is spared the work
            with self.timer("score"):
                scores = learner.scores({p: a.state for p, a in arrived.items()})
        for peer_id in [p for p, score in scores.items() if score != score]:  # NaN: useless on my data
            self.emit(f"skipped {short_id(peer_id)}: similarity is not a number")
            del scores[peer_id], arrived[peer_id]
        states = {p: a.state for p, a in arrived.items()}
        table.note_scores(scores)
        learner.observe(view, scores, {p: dict(arrived[p].announcement.priors) for p in states})
        table.mark_merged({})
        if not states:
            return 0
        epsilons = {me: learner.epsilon, **{p: a.dp_epsilon for p, a in arrived.items()}}
        weights = merge_weights(learner.weights(view, list(states), scores), epsilons, me=me,
                                max_peer_epsilon=self.cfg.max_peer_epsilon, scheme=self.cfg.merge_weights)
        try:
            with self.timer("merge"):
                verdict = learner.merge(me, {me: learner.state(), **states}, weights, rounds_trained=round_)
        except ValueError as exc:
            self.emit(f"merge skipped: {exc}")
            return 0
        for peer_id in verdict.rejected:
            self.emit(f"round {round_}: kept {short_id(peer_id)} out of the merge: it raised the loss "
                      "on my validation data", refused=peer_id)
        used = {p: w for p, w in verdict.weights.items() if p in states and w > 0}
        cids = {p: arrived[p].announcement.cid for p in used}
        table.mark_merged({p: (w, cids[p]) for p, w in used.items()})
        if used:
            self.status.last_merge = self.publisher.note_merge(round_, verdict.weights, cids, scores).record()
            merged = ", ".join(f"{short_id(p)} ({w:.2f})" for p, w in used.items())
            self.emit(f"round {round_}: merged {merged}", round=round_, merged=list(used),
                      merged_cids=list(cids.values()))
        return len(used)
