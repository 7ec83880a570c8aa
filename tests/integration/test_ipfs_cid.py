"""cid_of equals what a real IPFS daemon assigns with `add --cid-version=1 --raw-leaves --only-hash`."""

from __future__ import annotations

import io
import os
from collections.abc import Callable

import ipfshttpclient
import pytest

from storage import cid_of, normalize_cid
from storage.cid import CHUNK_SIZE, MAX_LINKS
from storage.daemon import IpfsDaemon

SIZES = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 10_000_000,
         MAX_LINKS * CHUNK_SIZE + 1]  # the last one needs a two-level tree

# ipfshttpclient passes a parameter urllib3 deprecates; harmless here.
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@pytest.fixture(scope="module")
def client(ipfs_daemon: Callable[..., IpfsDaemon]) -> ipfshttpclient.Client:
    daemon: IpfsDaemon = ipfs_daemon()
    return ipfshttpclient.Client(daemon.api_multiaddr)


@pytest.mark.parametrize("size", SIZES)
def test_cid_of_matches_daemon_only_hash(client: ipfshttpclient.Client, size: int) -> None:
    data = os.urandom(size)
    res = client.add(io.BytesIO(data), cid_version=1, raw_leaves=True, only_hash=True, timeout=60)
    assert normalize_cid(res["Hash"]) == cid_of(data)
