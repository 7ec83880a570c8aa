"""The node identity behind every signed announcement: persistent, private, and checked on load."""

from __future__ import annotations

import stat

import pytest

from p2p.identity import IdentityError, load_or_create, peer_id_of


def test_same_peer_id_after_reload_and_file_is_private(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "d" / "key"
    first = peer_id_of(load_or_create(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert peer_id_of(load_or_create(path)) == first
    assert first.startswith("12D3KooW")  # ed25519 peer ids use the identity multihash


def test_other_nodes_get_other_ids(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert peer_id_of(load_or_create(tmp_path / "a")) != peer_id_of(load_or_create(tmp_path / "b"))


def test_refuses_a_key_readable_by_others(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "key"
    load_or_create(path)
    path.chmod(0o644)
    with pytest.raises(IdentityError, match="chmod 600"):
        load_or_create(path)


def test_refuses_a_truncated_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "key"
    path.write_bytes(b"short")
    path.chmod(0o600)
    with pytest.raises(IdentityError, match="32-byte"):
        load_or_create(path)
