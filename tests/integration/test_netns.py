"""The namespace harness (`support.netns`) with real namespaces: public hosts reach each other, a NAT
host reaches out and is seen as its router, nobody reaches a NAT host from outside, and nothing it
made (namespace, process) outlives its block. Root only, like CI; without root or a tool it fails
with the message saying what to install, it is not skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import netns
from support.netns import internet, leftover_namespaces

PORT = 7000

pytestmark = pytest.mark.timeout(60)


def _running(pid: int) -> bool:
    """Whether `pid` runs; a zombie (killed, awaiting its reaper) does not."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_public_host_reaches_another_and_is_seen_at_its_own_address() -> None:
    with internet() as net:
        a, b = net.public_host("a"), net.public_host("b")
        listener = b.listen(PORT)
        assert a.can_connect(b.ip, PORT)
        assert listener.next_peer() == a.ip


def test_a_nat_host_reaches_a_public_host_which_sees_the_router() -> None:
    with internet() as net:
        server, home = net.public_host("server"), net.nat_host("home")
        listener = server.listen(PORT)
        assert home.can_connect(server.ip, PORT)
        assert listener.next_peer() == home.public_ip
        assert home.public_ip != home.ip


def test_nobody_outside_opens_a_connection_to_a_nat_host() -> None:
    with internet() as net:
        outside, home, other_home = net.public_host("outside"), net.nat_host("home"), net.nat_host("other")
        home.listen(PORT)
        assert home.can_connect(home.ip, PORT)  # it does listen
        assert not outside.can_connect(home.ip, PORT)  # no route to a LAN, as on the internet
        assert not outside.can_connect(home.public_ip, PORT)  # the router forwards nothing inbound
        assert not other_home.can_connect(home.public_ip, PORT)  # nor from behind another NAT
        # Even given a route, the router's firewall drops what the outside opens.
        subprocess.run(["ip", "-n", outside.ns, "route", "add", f"{home.ip}/32", "via", home.public_ip],
                       check=True, timeout=10)
        assert not outside.can_connect(home.ip, PORT, timeout=1.0)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_nothing_survives_the_block_also_when_it_raised(error: type[BaseException]) -> None:
    started: list[subprocess.Popen[str]] = []
    with pytest.raises(error), internet() as net:
        host, home = net.public_host("a"), net.nat_host("home")
        home.listen(PORT)
        # One that ignores SIGTERM (so it needs SIGKILL) and has a child of its own in its group.
        stubborn = host.popen([sys.executable, "-c", "import signal, subprocess, sys, time; "
                               "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                               "print(subprocess.Popen(['sleep', '60']).pid, flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
        started.append(stubborn)
        assert stubborn.stdout is not None
        grandchild = int(stubborn.stdout.readline())
        namespaces = leftover_namespaces(net.id)
        raise error("the test body failed")
    assert len(namespaces) == 4  # bridge, host, router, NAT host
    assert leftover_namespaces(net.id) == []
    assert stubborn.returncode == -9
    assert not _running(grandchild)


def test_a_clean_exit_stops_processes_with_sigterm() -> None:
    with internet() as net:
        sleeper = net.public_host("a").popen(["sleep", "60"])
    assert sleeper.returncode == -15
    assert leftover_namespaces(net.id) == []


def test_processes_die_with_a_harness_killed_outright() -> None:
    # SIGKILL leaves no time to clean up: the started process must still go (PR_SET_PDEATHSIG), while
    # the namespaces stay behind, so this test deletes them itself.
    repo = Path(__file__).resolve().parents[2]
    script = ("import sys, time; from support.netns import internet\n"
              "with internet() as net:\n"
              "    sleeper = net.public_host('a').popen(['sleep', '60'])\n"
              "    print(net.id, sleeper.pid, flush=True); time.sleep(60)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo / "tests"), str(repo)])}
    harness = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert harness.stdout is not None
        net_id, pid = harness.stdout.readline().split()
    finally:
        harness.kill()
        harness.wait(10)
    try:
        deadline = time.monotonic() + 5
        while _running(int(pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(int(pid))
    finally:
        for ns in leftover_namespaces(net_id):
            subprocess.run(["ip", "netns", "del", ns], check=True, timeout=10)


def test_without_root_it_says_to_run_as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(netns.NetnsUnavailable, match="root"), internet():
        pass


def test_without_nft_it_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    with internet() as net:
        real_which = shutil.which
        monkeypatch.setattr(shutil, "which", lambda tool: None if tool == "nft" else real_which(tool))
        with pytest.raises(netns.NetnsUnavailable, match="nftables"):
            net.nat_host("home")
    assert leftover_namespaces(net.id) == []
