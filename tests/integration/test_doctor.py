"""`swarm-node doctor` as users run it, against a real `swarm-bootstrap` on loopback; and the bootstrap's
reach service under a hostile client, which must neither crash it nor stop it answering honest ones."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.network.stream.exceptions import StreamEOF, StreamError
from libp2p.peer.peerinfo import info_from_p2p_addr
from multiaddr import Multiaddr

from node.processes import Bootstrap
from p2p.host import build_host
from p2p.reach import MAX_REQUEST_BYTES, PROTOCOL_ID, READ_TIMEOUT_S, Reach, ask_reach
from storage.daemon import free_port

DOCTOR_BOUND_S = 60.0  # the checks' own timeouts sum to ~40 s; a dead bootstrap must not hang it


@pytest.fixture(scope="module")
def bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bootstrap]:
    boot = Bootstrap("doctor", tmp_path_factory.mktemp("bootstrap"))
    try:
        yield boot
    finally:
        boot.stop()


def doctor(tmp_path: Path, *args: str) -> tuple[int, dict[str, Any], float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "node.cli", "doctor", "--json", "--listen",
                           "/ip4/127.0.0.1/tcp/0", "--data-dir", str(tmp_path / "node"), *args],
                          capture_output=True, text=True, timeout=DOCTOR_BOUND_S)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout), time.monotonic() - started


def test_doctor_sees_a_reachable_peer_with_a_good_clock(bootstrap: Bootstrap, tmp_path: Path) -> None:
    code, report, _ = doctor(tmp_path, "--bootstrap", bootstrap.addr, "--ipfs-api", "private")
    checks = report["checks"]
    assert list(checks) == ["bootstrap", "reach", "clock", "ipfs", "manifest", "device", "disk"]
    assert checks["bootstrap"]["status"] == "OK"
    reach = checks["reach"]
    assert reach["status"] == "OK" and reach["observed_ip"] == "127.0.0.1"
    assert reach["observed"].startswith("/ip4/127.0.0.1/tcp/")
    assert reach["reachable_directly"] is True
    assert checks["clock"]["status"] == "OK" and abs(checks["clock"]["clock_skew_s"]) < 1.0
    assert checks["device"]["status"] == "OK" and checks["device"]["device"] in ("cpu", "cuda", "mps")
    # The IPFS verdict depends on this machine (is js-ipfs or Kubo installed?); the exit code follows it.
    problems = [name for name, c in checks.items() if c["status"] == "PROBLEM"]
    assert report["ok"] is (not problems) and code == (1 if problems else 0)


def test_a_dead_bootstrap_is_a_problem_with_advice(bootstrap: Bootstrap, tmp_path: Path) -> None:
    peer_id = bootstrap.addr.split("/p2p/")[1]
    code, report, took = doctor(tmp_path, "--bootstrap", f"/ip4/127.0.0.1/tcp/{free_port()}/p2p/{peer_id}")
    assert code == 1 and report["ok"] is False
    boot = report["checks"]["bootstrap"]
    assert boot["status"] == "PROBLEM" and "bootstrap may be down" in boot["advice"]
    assert report["checks"]["reach"]["status"] == "SKIP" and report["checks"]["clock"]["status"] == "SKIP"
    assert took < 30.0


async def _raw(host: Any, peer_id: Any, payload: bytes, *, close: bool = True) -> bytes:
    """Send `payload` on a reach stream; what the server answered (b"" if it reset the stream)."""
    stream = await host.new_stream(peer_id, [PROTOCOL_ID])
    try:
        await stream.write(payload)
        if close:
            await stream.close_write()
        reply = b""
        with trio.fail_after(READ_TIMEOUT_S + 5):
            while chunk := await stream.read(4096):
                reply += chunk
    except StreamEOF:
        return reply
    except StreamError:  # a reset stream: a valid way for the server to refuse
        return b""
    return reply


async def _hostile_then_honest(addr: str) -> tuple[dict[str, bytes], Reach]:
    host = build_host(create_new_key_pair())
    info = info_from_p2p_addr(Multiaddr(addr))
    payloads = {
        "garbage": b"\xc1\xff\x00not json",
        "oversized": b"{" + b" " * (MAX_REQUEST_BYTES * 4),
        "too many": json.dumps({"candidates": ["/ip4/127.0.0.1/tcp/1"] * 100}).encode(),
        "wrong shape": b'{"candidates": {"a": 1}}',
        "deep": b"[" * 2000,
    }
    replies: dict[str, bytes] = {}
    async with host.run([Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        await host.connect(info)

        async def send(name: str, payload: bytes, close: bool = True) -> None:
            replies[name] = await _raw(host, info.peer_id, payload, close=close)

        async with trio.open_nursery() as nursery:
            for name, payload in payloads.items():
                nursery.start_soon(send, name, payload)
            nursery.start_soon(send, "silent", b'{"candid', False)  # never finishes its request
        port = str(host.get_addrs()[0]).split("/")[4]
        honest = await ask_reach(host, info.peer_id, [f"/ip4/127.0.0.1/tcp/{port}",
                                                      "/ip4/127.0.0.2/tcp/80"])  # not the caller's IP
    return replies, honest


def test_hostile_reach_requests_are_refused_and_the_bootstrap_keeps_serving(bootstrap: Bootstrap) -> None:
    replies, honest = trio.run(_hostile_then_honest, bootstrap.addr)
    for name, reply in replies.items():
        assert reply == b"" or "error" in json.loads(reply), f"{name}: {reply[:200]!r}"
    assert json.loads(replies["too many"])["error"].startswith("100 candidates")
    assert "within" in json.loads(replies["silent"])["error"]
    assert bootstrap.proc.poll() is None
    assert honest.observed_ip == "127.0.0.1" and honest.directly_reachable
    assert list(honest.reachable) == [next(iter(honest.reachable))]  # 127.0.0.2 was never dialled
    assert abs(honest.clock_skew_s) < 1.0
