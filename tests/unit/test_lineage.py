"""The lineage walker against hostile metadata (huge parent lists, cycles, CIDs that never resolve,
strings that are not CIDs), provenance recording, and old snapshots without provenance."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from node import checkpoint, cli
from node.lineage import (
    INVALID,
    MAX_PARENTS_FOLLOWED,
    MISSING,
    NOT_FOLLOWED,
    OK,
    FetchMeta,
    SnapshotSources,
    snapshot_caches,
    walk,
)
from node.lineage_view import dot, tree
from node.provenance import SIMILARITY_KEY, WEIGHTS_KEY, Provenance, read_provenance
from node.publisher import SNAPSHOT_CACHE
from storage import ContentNotFound, LocalStore, cid_of, decode, encode


def cid(n: int) -> str:
    return cid_of(f"snapshot {n}".encode())


def fake(metas: dict[str, dict[str, Any]]) -> FetchMeta:
    def fetch(c: str, timeout: float) -> dict[str, Any]:
        if c not in metas:
            raise ContentNotFound(f"{c} is not in the fake store")
        return metas[c]
    return fetch


def rendered(lineage: Any) -> str:
    from rich.console import Console

    console = Console(width=200, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(tree(lineage))
    return console.export_text()


def test_ten_thousand_parents_are_cut_to_the_first_sixteen() -> None:
    root = cid(0)
    parents = [cid(i) for i in range(1, 21)] + [f"bafkrei{i:052}" for i in range(10_000 - 20)]
    metas = {root: {"peer_id": "12D3KooWroot", "round": 9, "parents": parents}}
    started = time.monotonic()
    lineage = walk(root, fake(metas), depth=6, max_nodes=100, timeout=1.0)
    assert time.monotonic() - started < 1
    node = lineage.nodes[root]
    assert len(node.parents) == MAX_PARENTS_FOLLOWED and node.parents_dropped == 10_000 - MAX_PARENTS_FOLLOWED
    assert "10000 parents listed, the first 16 followed" in node.note
    assert lineage.fetched == 1 + MAX_PARENTS_FOLLOWED
    assert all(lineage.nodes[e.cid].status == MISSING for e in node.parents)
    assert "9984 more parent(s) not followed" in rendered(lineage)


def test_cycles_are_flagged_once_and_the_walk_ends() -> None:
    a, b, c = cid(1), cid(2), cid(3)
    metas = {a: {"round": 3, "parents": [a, b]}, b: {"round": 2, "parents": [a, c]}, c: {"round": 1}}
    lineage = walk(a, fake(metas), depth=50, max_nodes=50, timeout=1.0)
    assert lineage.fetched == 3
    cycles = [(n.cid, e.cid) for n in lineage.nodes.values() for e in n.parents if e.cycle]
    assert sorted(cycles) == sorted([(a, a), (b, a)])
    assert lineage.to_json()["cycles"] == 2
    assert rendered(lineage).count("a cycle") == 2
    assert dot(lineage).count("color=red") == 2


def test_cids_that_never_resolve_end_within_their_timeout() -> None:
    root, fine, hung = cid(0), cid(1), [cid(i) for i in range(2, 2 + MAX_PARENTS_FOLLOWED - 1)]
    never = threading.Event()
    metas = {root: {"parents": [*hung, fine]}, fine: {"round": 1}}

    def fetch(c: str, timeout: float) -> dict[str, Any]:
        if c in hung:
            never.wait()  # ignores its timeout, as a stuck daemon connection would
        return fake(metas)(c, timeout)

    started = time.monotonic()
    lineage = walk(root, fetch, timeout=0.3)
    # 16 parents, fetched 8 at a time: two rounds of 0.3 s
    assert time.monotonic() - started < 1.5
    assert all(lineage.nodes[c].status == MISSING for c in hung)
    assert "not found within 0.3 s" in lineage.nodes[hung[0]].note
    assert lineage.nodes[fine].status == OK


def test_invalid_cids_and_malformed_provenance_are_shown_not_raised() -> None:
    root = cid(0)
    metas = {root: {"parents": ["not-a-cid", 'x" [red]', 42], WEIGHTS_KEY: "[" * 5000}}
    lineage = walk(root, fake(metas))
    node = lineage.nodes[root]
    assert "merge weights unknown" in node.note
    assert [lineage.nodes[e.cid].status for e in node.parents] == [INVALID] * 3
    text = rendered(lineage)
    assert "invalid" in text and 'x" [red]' in text  # escaped, not taken as markup
    assert dot(lineage).count("->") == 3
    assert walk("bafy-nonsense", fake(metas)).nodes["bafy-nonsense"].status == INVALID


def test_depth_and_max_nodes_bound_the_walk() -> None:
    chain = {cid(i): {"round": 100 - i, "parents": [cid(i + 1)]} for i in range(100)}
    deep = walk(cid(0), fake(chain), depth=3, max_nodes=50)
    assert deep.fetched == 4 and deep.nodes[cid(4)].status == NOT_FOLLOWED
    assert "beyond --depth 3" in rendered(deep)
    wide = walk(cid(0), fake(chain), depth=100, max_nodes=5)
    assert wide.fetched == 5 and "--max-nodes 5 reached" in wide.nodes[cid(5)].note


def test_a_merge_records_weights_summing_to_one_with_the_self_parent() -> None:
    me, first, second = "me", cid(10), cid(11)
    p = Provenance.of_merge(4, me, cid(9), {me: 2.0, "a": 1.0, "b": 1.0, "refused": 0.0},
                            {"a": first, "b": second}, {"a": 0.9, "b": float("nan"), "c": 0.1})
    assert p.weights == {cid(9): 0.5, first: 0.25, second: 0.25}
    assert p.similarity == {first: 0.9}
    assert read_provenance(p.meta()) == (p.weights, p.similarity)
    unpublished = Provenance.of_merge(4, me, "", {me: 0.5, "a": 0.5}, {"a": first}, {})
    assert unpublished.weights == {first: 0.5}  # my half has no CID to go under
    assert Provenance.alone("").meta() == {} and Provenance.alone(first).weights == {first: 1.0}


def test_the_merge_behind_a_checkpointed_model_survives_a_restart(tmp_path: Path) -> None:
    merge = Provenance.of_merge(3, "me", cid(1), {"me": 0.5, "a": 0.5}, {"a": cid(2)}, {"a": 0.3})
    checkpoint.save(tmp_path, checkpoint.Checkpoint(peer_id="me", round=3, model={"w": torch.ones(1)},
                                                    optimizer={}, merge=merge.record()))
    saved = checkpoint.load(tmp_path)
    assert saved is not None and Provenance.from_record(saved.merge) == merge


def _tiny(meta: dict[str, Any]) -> bytes:
    return encode({"w": torch.zeros(3)}, meta=meta)


def test_an_old_snapshot_without_provenance_is_read_and_walked(tmp_path: Path) -> None:
    old = _tiny({"peer_id": "12D3KooWold", "round": 1, "samples": 100})  # as every node wrote before
    neighbour = _tiny({"peer_id": "12D3KooWother", "round": 1, "samples": 80, "dp_epsilon": 1.5})
    merged = Provenance.of_merge(1, "me", cid_of(old), {"me": 0.6, "n": 0.4}, {"n": cid_of(neighbour)},
                                 {"n": 0.75})
    new = _tiny({"peer_id": "12D3KooWold", "round": 2, "samples": 100, "parents": [cid_of(neighbour)],
                 **merged.meta()})
    assert set(decode(new).meta) >= {WEIGHTS_KEY, SIMILARITY_KEY}  # scalars: old readers take them too
    for name, data in (("me", old), ("me", new), ("other", neighbour)):
        LocalStore(tmp_path / name / SNAPSHOT_CACHE).put(data)
    sources = SnapshotSources(snapshot_caches([tmp_path]), None, max_size=1 << 20)
    lineage = walk(cid_of(new), sources)
    assert all(n.status == OK for n in lineage.nodes.values()) and len(lineage.nodes) == 3
    edges = {e.cid: e for e in lineage.nodes[cid_of(new)].parents}
    assert edges[cid_of(old)].self_parent and edges[cid_of(old)].weight == pytest.approx(0.6)
    assert edges[cid_of(neighbour)].similarity == 0.75 and not edges[cid_of(neighbour)].self_parent
    assert lineage.nodes[cid_of(old)].parents == []
    text = rendered(lineage)
    assert "(self, weight 0.60)" in text and "ε 1.50" in text and "no DP" in text


def test_the_command_reads_a_snapshot_file_and_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    parent = _tiny({"round": 1})
    LocalStore(tmp_path / "node" / SNAPSHOT_CACHE).put(parent)
    file = tmp_path / "model.snap"
    file.write_bytes(_tiny({"round": 2, WEIGHTS_KEY: json.dumps({cid_of(parent): 1.0})}))
    code = cli.main(["lineage", str(file), "--data-dir", str(tmp_path / "node"), "--ipfs-api",
                     "/ip4/127.0.0.1/tcp/9", "--json"])
    assert code == 0
    record = json.loads(capsys.readouterr().out)
    assert record["root"] == cid_of(file.read_bytes()) and len(record["nodes"]) == 2
    assert cli.main(["lineage", cid(77), "--data-dir", str(tmp_path / "node"), "--ipfs-api",
                     "/ip4/127.0.0.1/tcp/9", "--timeout", "2"]) == 1
    assert "IPFS not asked" in capsys.readouterr().out
    assert cli.main(["lineage", str(tmp_path / "no-such.snap")]) == 1
    assert "neither a snapshot file nor a CID" in capsys.readouterr().err


def test_every_option_has_help() -> None:
    parser = cli.build_parser("lineage")
    sub = next(a for a in parser._actions if a.dest == "command").choices["lineage"]  # type: ignore[attr-defined]
    assert all(a.help for a in sub._actions)
