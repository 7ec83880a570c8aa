"""A node's secrets and state are private to its user: key 0600, checkpoint and status 0600, and the
data dir 0700 (the private IPFS repo inside it holds the daemon's own key)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import torch

from node import checkpoint
from node.status import STATUS_FILE, NodeStatus
from p2p.identity import IdentityError, load_or_create
from storage.atomic import write_atomic


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_key_is_0600_and_a_readable_key_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "node" / "libp2p-ed25519.key"
    load_or_create(key)
    assert mode(key) == 0o600
    key.chmod(0o644)
    with pytest.raises(IdentityError, match="chmod 600"):
        load_or_create(key)


def test_checkpoint_and_status_are_0600_even_under_a_permissive_umask(tmp_path: Path) -> None:
    import os

    old = os.umask(0)
    try:
        checkpoint.save(tmp_path, checkpoint.Checkpoint(peer_id="p", round=1, model={"w": torch.ones(2)},
                                                        optimizer={}))
        write_atomic(tmp_path / STATUS_FILE, NodeStatus().to_json().encode())
    finally:
        os.umask(old)
    assert mode(tmp_path / checkpoint.CHECKPOINT_FILE) == 0o600
    assert mode(tmp_path / STATUS_FILE) == 0o600
    # No temp file is left behind by the atomic writes.
    assert sorted(p.name for p in tmp_path.iterdir()) == [checkpoint.CHECKPOINT_FILE, STATUS_FILE]
