"""Start and stop private IPFS daemons (Kubo `ipfs` if on PATH, else the pinned js-ipfs).

Every daemon gets its own repo directory and free ports, its API on 127.0.0.1 only (whoever reaches it
controls the daemon), an empty bootstrap list and no mDNS, DHT, relay, NAT mapping or preload, so it
can only reach peers it is explicitly connected to. Its swarm port listens on loopback unless the node
is reachable from other hosts.
The repo survives `stop()`, so a daemon can be restarted on it (same peer id, same ports).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from storage.errors import StoreUnavailable

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_JSIPFS = REPO_ROOT / "tools" / "ipfs" / "node_modules" / ".bin" / "jsipfs"
READY_TIMEOUT_S = 60.0
PORT_ATTEMPTS = 3
LOOPBACK = "127.0.0.1"
STOP_TIMEOUT_S = 10.0
# What a daemon prints when a port it was given is taken: EADDRINUSE for the API, gateway and RPC ports
# (js-ipfs exits at once for the RPC port; Kubo for any), js-libp2p's line for the swarm port (it hangs).
PORT_TAKEN_MARKS = (b"address already in use", b"could not listen on any available address")


class DaemonError(StoreUnavailable):
    """A private IPFS daemon could not be started."""


class PortTaken(DaemonError):
    """A port picked for the daemon was taken by another process before the daemon listened on it."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the OS picks it)."""
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """`n` distinct TCP ports on 127.0.0.1 that are free now: held open together while the OS picks,
    since one closed before the next is picked can be handed out twice."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` making the child get `sig` when the thread that started it exits (Linux only).

    A private daemon must never outlive its node: a SIGKILLed node cannot stop it, and an orphaned
    daemon is a service nobody runs (its swarm port may listen beyond loopback). PR_SET_PDEATHSIG
    survives exec, so the daemon itself gets the signal. SIGTERM, not SIGKILL: js-ipfs then shuts down
    cleanly and removes its repo.lock, which would otherwise block a restart on the repo for ~10 s.
    Caveat: the kernel sends it when the *thread* that forked exits, not the process, so start a
    daemon only from a thread that lives as long as its node (the node's main/run thread does).
    Returns None elsewhere; there the restarted node stops the leftover daemon of its data dir
    (`node.ipfs_setup.stop_leftover_daemon`).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        # Looked up here, in the parent: the child between fork and exec should do as little as possible.
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def set_pdeathsig() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect: no signal will come
            os._exit(1)

    return set_pdeathsig


def daemon_command() -> tuple[str, list[str]]:
    """(kind, executable) of the daemon to run: Kubo on PATH wins, else js-ipfs (SWARM_JSIPFS overrides)."""
    kubo = shutil.which("ipfs")
    if kubo and "SWARM_JSIPFS" not in os.environ:
        return "kubo", [kubo]
    jsipfs = Path(os.environ.get("SWARM_JSIPFS", DEFAULT_JSIPFS))
    if not jsipfs.exists():
        raise DaemonError(
            f"no IPFS daemon found: install Kubo (`ipfs` on PATH), run `make setup` to install js-ipfs at "
            f"{DEFAULT_JSIPFS}, or set SWARM_JSIPFS"
        )
    return "jsipfs", [str(jsipfs)]


def _config(api: int, swarm: int, gateway: int, rpc: int, swarm_host: str = LOOPBACK) -> dict:
    return {
        "Addresses": {
            "Swarm": [f"/ip4/{swarm_host}/tcp/{swarm}"],
            "API": f"/ip4/127.0.0.1/tcp/{api}",
            "Gateway": f"/ip4/127.0.0.1/tcp/{gateway}",
            "RPC": f"/ip4/127.0.0.1/tcp/{rpc}",
            "Announce": [],
            "NoAnnounce": [],
            "Delegates": [],
        },
        "Bootstrap": [],
        "Discovery": {"MDNS": {"Enabled": False}, "webRTCStar": {"Enabled": False}},
        "Swarm": {"DisableNatPortMap": True},
        "Routing": {"Type": "none"},
    }


# Kubo takes its config through `ipfs config`; these keys give the same isolation as `_config`.
_KUBO_EXTRA = {
    "Swarm.RelayClient.Enabled": False,
    "Swarm.RelayService.Enabled": False,
    "Swarm.Transports.Network.Relay": False,
    "AutoNAT.ServiceMode": "disabled",
}


def _configured_ports(config: Path) -> tuple[int, int, int] | None:
    """(api, swarm, gateway) ports of an existing repo, or None for a fresh one."""
    if not config.exists():
        return None
    try:
        addrs = json.loads(config.read_text())["Addresses"]
        api, swarm, gateway = (int(a.rsplit("/", 1)[-1])
                               for a in (addrs["API"], addrs["Swarm"][0], addrs["Gateway"]))
        return api, swarm, gateway
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise DaemonError(f"cannot read the ports from {config} ({exc}); delete that repo to start fresh") \
            from None


def _set_swarm_addr(config: Path, addr: str) -> None:
    """Make an existing repo's daemon listen for peers on `addr` (the node's --listen may have changed
    since the repo was made); both js-ipfs and Kubo keep their config as JSON in this file."""
    try:
        tree = json.loads(config.read_text())
        if tree["Addresses"]["Swarm"] != [addr]:
            tree["Addresses"]["Swarm"] = [addr]
            config.write_text(json.dumps(tree, indent=2))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DaemonError(f"cannot set the swarm address in {config} ({exc}); delete that repo to start "
                          "fresh") from None


def _api_post(api_port: int, path: str, timeout: float) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{api_port}/api/v0/{path}", method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


@dataclass
class IpfsDaemon:
    """A private IPFS daemon process; use `IpfsDaemon.start()` or `with IpfsDaemon.start() as d:`."""

    repo: Path
    api_port: int
    swarm_port: int
    gateway_port: int
    swarm_host: str = LOOPBACK  # where the swarm port listens: loopback, or 0.0.0.0 for other hosts
    kind: str = ""
    peer_id: str = ""
    owns_repo: bool = False
    log_start: int = 0  # where this launch's output begins in daemon.log (it keeps earlier launches')
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @classmethod
    def start(cls, repo: Path | str | None = None, *, swarm_host: str = LOOPBACK, swarm_port: int = 0,
              timeout: float = READY_TIMEOUT_S) -> IpfsDaemon:
        """Start a daemon on `repo` (initialised on first use; a temp dir deleted on close if None).

        Its API and gateway listen on loopback only, always; its swarm port (where other IPFS nodes
        fetch blocks) on `swarm_host`, port `swarm_port` (0: picked once and kept in the repo).
        A repo that exists keeps its identity and the ports in its config. On Linux the daemon gets
        SIGTERM when the calling thread exits (`die_with_parent`): call this from a thread that
        lives as long as the daemon should.
        """
        owns = repo is None
        path = Path(tempfile.mkdtemp(prefix="swarm-ipfs-")) if repo is None else Path(repo)
        path.mkdir(parents=True, exist_ok=True)
        configured = _configured_ports(path / "repo" / "config")
        attempt = 1
        while True:
            api, swarm, gateway = configured or free_ports(3)
            daemon = cls(path, api, swarm_port or swarm, gateway, swarm_host=swarm_host, owns_repo=owns)
            try:
                daemon._launch(timeout)
                return daemon
            except BaseException as exc:
                daemon.stop()
                if isinstance(exc, PortTaken) and swarm_port:
                    raise DaemonError(f"IPFS swarm port {swarm_port} or another port of the daemon is "
                                      f"taken (see {path / 'daemon.log'}): choose another --ipfs-swarm-port, "
                                      "or stop what uses it") from None
                # Another process took a port between picking and listening: a fresh repo picks again.
                if isinstance(exc, PortTaken) and configured is None and attempt < PORT_ATTEMPTS:
                    shutil.rmtree(path / "repo", ignore_errors=True)
                    attempt += 1
                    continue
                if owns:
                    shutil.rmtree(path, ignore_errors=True)
                raise

    @property
    def api_multiaddr(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.api_port}"

    @property
    def swarm_multiaddr(self) -> str:
        """Where an IPFS node on this host dials this daemon."""
        return f"/ip4/{LOOPBACK}/tcp/{self.swarm_port}/p2p/{self.peer_id}"

    @property
    def swarm_listen(self) -> str:
        return f"/ip4/{self.swarm_host}/tcp/{self.swarm_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _launch(self, timeout: float) -> None:
        kind, exe = daemon_command()
        self.kind = kind
        env = {**os.environ, "IPFS_PATH": str(self.repo / "repo")}
        fresh = not (self.repo / "repo").exists()
        if not fresh:
            _set_swarm_addr(self.repo / "repo" / "config", self.swarm_listen)
        if kind == "kubo":
            argv = [*exe, "daemon", "--migrate=false"]
            if fresh:
                self._init_kubo(exe, env)
        else:
            cfg = self.repo / "init-config.json"
            ports = (self.api_port, self.swarm_port, self.gateway_port)
            rpc = next(p for p in free_ports(4) if p not in ports)
            cfg.write_text(json.dumps(_config(*ports, rpc, self.swarm_host)))
            argv = [*exe, "daemon", "--init-profile", "test", "--init-config", str(cfg),
                    "--enable-preload=false"]
        logfile = open(self.repo / "daemon.log", "ab")  # noqa: SIM115 - the child keeps writing to it
        self.log_start = logfile.tell()
        try:
            # The process Popen starts is the daemon itself (js-ipfs's `jsipfs` is a node.js script run
            # by `node`, which holds the ports and renames itself `ipfs`; Kubo is one binary), so
            # the parent-death signal reaches the process that listens. Its own session keeps a
            # terminal's Ctrl-C away from it (the node stops it in order).
            self.proc = subprocess.Popen(argv, env=env, stdout=logfile, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         preexec_fn=die_with_parent())
        finally:
            logfile.close()
        self._wait_ready(timeout)
        log.info("ipfs daemon (%s) ready: api %s, peer %s", kind, self.api_multiaddr, self.peer_id[-8:])

    def _init_kubo(self, exe: list[str], env: dict[str, str]) -> None:
        subprocess.run([*exe, "init", "--profile", "test"], env=env, check=True, capture_output=True,
                       timeout=60)
        # Kubo has no RPC address
        config = _config(self.api_port, self.swarm_port, self.gateway_port, rpc=0, swarm_host=self.swarm_host)
        settings = {**{k: v for k, v in _flatten(config)
                       if not k.startswith(("Discovery.webRTCStar", "Addresses.RPC"))}, **_KUBO_EXTRA}
        for key, value in settings.items():
            subprocess.run([*exe, "config", "--json", key, json.dumps(value)], env=env, check=True,
                           capture_output=True, timeout=30)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # Whether it exited is read before its log, and the log is looked at before an exit is
            # reported: a daemon that lost a port race may exit at once, and that race must be retried.
            exited = self.proc is None or self.proc.poll() is not None
            if self._port_taken():
                raise PortTaken(f"a port of the IPFS daemon was taken by another process; see "
                                f"{self.repo / 'daemon.log'}")
            if exited:
                raise DaemonError(f"IPFS daemon exited during start-up; see {self.repo / 'daemon.log'}")
            try:
                self.peer_id = _api_post(self.api_port, "id", timeout=2)["ID"]
                return
            except (OSError, urllib.error.URLError, ValueError, KeyError):
                time.sleep(0.2)
        raise DaemonError(f"IPFS daemon not ready after {timeout:.0f} s; see {self.repo / 'daemon.log'}")

    def _port_taken(self) -> bool:
        with open(self.repo / "daemon.log", "rb") as logfile:
            logfile.seek(self.log_start)
            output = logfile.read()
        return any(mark in output for mark in PORT_TAKEN_MARKS)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM the daemon (SIGKILL after `timeout`); keeps the repo so `restart()` works."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL the daemon, as a crash would (tests use it); `restart()` recovers."""
        if self.running:
            assert self.proc is not None
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT_S)

    def restart(self, *, timeout: float = READY_TIMEOUT_S) -> None:
        """Start the daemon again on the same repo, ports and identity."""
        if self.running:
            self.stop()
        # We started the previous process and it is gone, so its repo lock is stale (js-ipfs would
        # otherwise refuse the repo for ~10 s).
        lock = self.repo / "repo" / "repo.lock"
        if lock.is_dir():
            shutil.rmtree(lock, ignore_errors=True)
        else:
            lock.unlink(missing_ok=True)
        self.proc = None
        self._launch(timeout)

    def close(self) -> None:
        """Stop the daemon and delete its repo if this object created it."""
        self.stop()
        if self.owns_repo:
            shutil.rmtree(self.repo, ignore_errors=True)

    def __enter__(self) -> IpfsDaemon:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _flatten(tree: dict, prefix: str = "") -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.extend(_flatten(value, f"{prefix}{key}."))
        else:
            out.append((f"{prefix}{key}", value))
    return out
