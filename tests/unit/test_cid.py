"""cid_of: CIDv1 base32 with raw leaves; one raw block up to 256 KiB, a dag-pb root above.

That the CIDs equal a real daemon's `add --only-hash` is checked in tests/integration/test_ipfs_cid.py.
"""

from __future__ import annotations

import hashlib

import pytest
from multiformats import CID

from storage import InvalidCid, cid_of, normalize_cid
from storage.cid import CHUNK_SIZE


def test_small_data_is_one_raw_block_hashed_with_sha256() -> None:
    for data in (b"", b"x", bytes(CHUNK_SIZE)):
        cid = CID.decode(cid_of(data))
        assert cid_of(data).startswith("b")  # multibase prefix of base32
        assert (cid.version, cid.codec.name, cid.hashfun.name) == (1, "raw", "sha2-256")
        assert cid.raw_digest == hashlib.sha256(data).digest()


def test_empty_file_cid_is_the_well_known_one() -> None:
    # The CID every IPFS implementation gives an empty file with --cid-version=1 --raw-leaves.
    assert cid_of(b"") == "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


def test_large_data_gets_a_dag_pb_root_that_depends_on_every_chunk() -> None:
    data = bytearray(3 * CHUNK_SIZE + 5)
    cid = CID.decode(cid_of(bytes(data)))
    assert cid.codec.name == "dag-pb" and cid.version == 1
    data[-1] = 1
    assert cid_of(bytes(data)) != str(cid)
    assert cid_of(bytes(data)) == cid_of(memoryview(bytes(data)))


def test_normalize_converts_other_bases_and_rejects_garbage() -> None:
    cid = cid_of(b"hello")
    b58 = CID.decode(cid).encode("base58btc")
    assert b58.startswith("z") and normalize_cid(b58) == cid
    assert normalize_cid(f"  {cid}\n") == cid
    with pytest.raises(InvalidCid, match="not a CID"):
        normalize_cid("not-a-cid")
