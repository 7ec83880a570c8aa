"""The node's local state: settings precedence, the peer table, checkpoints and the status record."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import pytest
import torch

from node import checkpoint
from node.config import ConfigError, load_config
from node.peer_table import BACKOFF_S, MAX_FAILURES_BEFORE_BACKOFF, PeerTable
from node.status import NodeStatus, PeerRow, read_status, render
from p2p.announcement import Announcement

CID = "bafkreibdpug3gru6cvxx3zxa2l6rg4h66buma55nsuqev75u3kgh7a3lka"
OTHER_CID = "bafkreic3q5cf4vquuqypvglq5nlaocxk2ijagdayaqwvcm4fgdhypzbygu"


def ann(publisher: str, round_: int, schema: str = "s1", role: str = "trainer") -> Announcement:
    return Announcement(cid=CID, publisher=publisher, round=round_, schema=schema, samples=100, loss=1.0,
                        encoding="fp32", size=10, timestamp=time.time(), role=role)


def test_settings_precedence_is_defaults_file_env_flags(tmp_path: Path) -> None:
    toml = tmp_path / "node.toml"
    toml.write_text('[node]\nswarm = "from-file"\nrounds = 3\nneighbours = 4\nbootstrap = ["/a", "/b"]\n')
    cfg = load_config(toml, {"rounds": "7"}, env={"SWARM_NEIGHBOURS": "9", "SWARM_HEADLESS": "yes"})
    assert (cfg.swarm, cfg.rounds, cfg.neighbours, cfg.headless) == ("from-file", 7, 9, True)
    assert cfg.bootstrap == ["/a", "/b"]
    assert load_config(None, {}, env={"SWARM_BOOTSTRAP": "/x,/y"}).bootstrap == ["/x", "/y"]


@pytest.mark.parametrize(("flags", "message"), [
    ({"rounds": "many"}, "rounds"),
    ({"role": "boss"}, "role"),
    ({"client": "5", "clients": "2"}, "client 5"),
    ({"colour": "red"}, "unknown setting"),
])
def test_bad_settings_name_the_setting(flags: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, flags, env={})


def test_bad_toml_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("swarm = [unclosed")
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        load_config(bad, {}, env={})


def test_peer_table_keeps_newest_compatible_and_says_why_it_skips() -> None:
    table = PeerTable("me", "s1")
    assert table.fold(ann("me", 1)) == "own announcement"
    assert "schema" in (table.fold(ann("p1", 1, schema="other")) or "")
    assert table.fold(ann("p1", 3)) is None
    assert (table.fold(ann("p1", 2)) or "").startswith("stale")
    assert table.records["p1"].announcement.round == 3
    assert table.fold(ann("pinner", 1, role="pinner")) is None
    assert [r.peer_id for r in table.candidates()] == ["p1"]


def test_a_peer_table_without_a_model_of_its_own_follows_every_schema() -> None:
    """A pinner's or observer's table: it trains nothing, so no schema of its own can rule a peer out."""
    table = PeerTable("me", "")
    assert table.fold(ann("p1", 1, schema="s1")) is None and table.fold(ann("p2", 1, schema="s2")) is None
    assert sorted(table.records) == ["p1", "p2"]


def test_peer_table_backs_off_a_failing_peer_then_forgives_it() -> None:
    table = PeerTable("me", "s1")
    table.fold(ann("p1", 1))
    now = time.time()
    for _ in range(MAX_FAILURES_BEFORE_BACKOFF):
        table.fetch_failed("p1", now=now)
    table.fold(dataclasses.replace(ann("p1", 2), cid=OTHER_CID), now=now)
    assert table.candidates(now=now + 1) == []  # failing again and again: not even a new snapshot
    assert [r.peer_id for r in table.candidates(now=now + BACKOFF_S + 1)] == ["p1"]
    table.fetch_succeeded("p1", 12.0)
    assert table.records["p1"].failures == 0


def test_a_snapshot_that_failed_waits_but_a_new_one_is_tried_at_once() -> None:
    # A peer that left: its last snapshot timed out; fetching it every round would cost a timeout each.
    table = PeerTable("me", "s1")
    table.fold(ann("p1", 1))
    now = time.time()
    table.fetch_failed("p1", now=now)
    assert table.candidates(now=now + 1) == []
    assert [r.peer_id for r in table.candidates(now=now + BACKOFF_S + 1)] == ["p1"]
    table.fold(dataclasses.replace(ann("p1", 2), cid=OTHER_CID), now=now + 2)
    assert [r.peer_id for r in table.candidates(now=now + 2)] == ["p1"]


def test_peer_table_round_trips_through_a_checkpoint(tmp_path: Path) -> None:
    table = PeerTable("me", "s1")
    table.fold(ann("p1", 4))
    saved = checkpoint.Checkpoint(peer_id="me", round=4, model={"w": torch.arange(3.0)}, optimizer={},
                                  strategy={"neighbours": 2}, peers=table.to_list(), last_cid=CID)
    checkpoint.save(tmp_path, saved)
    assert oct((tmp_path / checkpoint.CHECKPOINT_FILE).stat().st_mode & 0o777) == oct(0o600)
    loaded = checkpoint.load(tmp_path)
    assert loaded is not None and loaded.round == 4 and torch.equal(loaded.model["w"], torch.arange(3.0))
    again = PeerTable("me", "s1")
    again.load_list(loaded.peers)
    assert again.records["p1"].announcement == table.records["p1"].announcement


def test_a_corrupt_checkpoint_says_how_to_start_fresh(tmp_path: Path) -> None:
    assert checkpoint.load(tmp_path) is None
    (tmp_path / checkpoint.CHECKPOINT_FILE).write_bytes(os.urandom(200))
    with pytest.raises(checkpoint.CheckpointError, match="move it away"):
        checkpoint.load(tmp_path)


def test_status_round_trips_and_renders(tmp_path: Path) -> None:
    status = NodeStatus(peer_id="12D3KooWabcdefgh", swarm="s", round=2, val_acc=0.5,
                        peers=[PeerRow("12D3KooWzyxwvuts", CID, 2, similarity=0.7, merged=True)])
    status.event("hello")
    (tmp_path / "status.json").write_text(status.to_json())
    back = read_status(tmp_path)
    assert back.peers == status.peers and list(back.events) == list(status.events)
    from rich.console import Console

    console = Console(record=True, width=140)
    console.print(render(back))
    text = console.export_text()
    assert "…abcdefgh" in text and "…zyxwvuts" in text and "hello" in text and "0.700" in text


def test_announced_priors_round_trip_and_bad_ones_are_refused() -> None:
    from p2p.announcement import AnnouncementError

    with_priors = Announcement(cid=CID, publisher="p1", round=1, schema="s1", samples=1, loss=None,
                               encoding="fp32", size=1, timestamp=time.time(), priors=(("p2", 0.5),))
    assert Announcement.from_bytes(with_priors.to_bytes()).priors == (("p2", 0.5),)
    bad = Announcement(cid=CID, publisher="p1", round=1, schema="s1", samples=1, loss=None,
                       encoding="fp32", size=1, timestamp=time.time(), priors=(("p2", float("nan")),))
    with pytest.raises(AnnouncementError, match="priors"):
        bad.to_bytes()
