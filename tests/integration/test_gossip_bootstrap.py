"""`swarm-bootstrap` as users run it: one BOOTSTRAP line, loopback only, same peer id after a restart."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from node.processes import Bootstrap


def test_prints_one_line_keeps_its_identity_and_exits_cleanly(tmp_path: Path) -> None:
    first = Bootstrap("s1", tmp_path)
    try:
        assert re.fullmatch(r"/ip4/127\.0\.0\.1/tcp/\d+/p2p/12D3KooW\w+", first.addr)
    finally:
        assert first.stop() == 0
    time.sleep(0.2)  # the reader thread sees EOF
    assert first.lines.empty(), "more than one line on stdout"
    second = Bootstrap("s1", tmp_path)
    try:
        assert second.addr.split("/p2p/")[1] == first.addr.split("/p2p/")[1]
    finally:
        assert second.stop() == 0


def test_bad_swarm_id_is_refused_with_a_message(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bootstrap.cli", "--swarm", "a/b",
                           "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "swarm id" in done.stderr and "Traceback" not in done.stderr


def test_a_taken_port_is_refused_with_a_message(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        listen = f"/ip4/127.0.0.1/tcp/{s.getsockname()[1]}"
        done = subprocess.run([sys.executable, "-m", "bootstrap.cli", "--swarm", "s1", "--listen", listen,
                               "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"cannot listen on {listen}" in done.stderr and "pick another --listen port" in done.stderr
    assert "Traceback" not in done.stderr and "BOOTSTRAP" not in done.stdout
