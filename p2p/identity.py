"""A node's persistent libp2p identity: an ed25519 key in a 0600 file, so the peer id survives restarts."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID

from p2p.errors import P2PError
from storage.atomic import write_atomic

KEY_FILE = "libp2p-ed25519.key"
SEED_LEN = 32


class IdentityError(P2PError, RuntimeError):
    """The key file cannot be read, written or trusted; the message says which file and what to do."""


def load_or_create(path: Path | str) -> KeyPair:
    """Load the ed25519 key at `path`, or create one (mode 0600) if the file does not exist."""
    path = Path(path)
    if not path.exists():
        seed = os.urandom(SEED_LEN)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, seed, mode=0o600)
        except OSError as e:
            raise IdentityError(f"cannot write key file {path}: {e.strerror}; "
                                "choose a writable data dir") from None
        return create_new_key_pair(seed)
    try:
        mode = path.stat().st_mode
        seed = path.read_bytes()
    except OSError as e:
        raise IdentityError(f"cannot read key file {path}: {e.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise IdentityError(f"key file {path} is readable by others; run `chmod 600 {path}`")
    if len(seed) != SEED_LEN:
        raise IdentityError(f"key file {path} holds {len(seed)} bytes, expected a {SEED_LEN}-byte "
                            "ed25519 seed; move it away to create a new identity")
    try:
        return create_new_key_pair(seed)
    except ValueError as e:
        raise IdentityError(f"key file {path} is not a usable ed25519 seed ({e})") from None


def peer_id_of(key_pair: KeyPair) -> str:
    return ID.from_pubkey(key_pair.public_key).to_base58()
