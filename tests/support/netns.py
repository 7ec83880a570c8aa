"""Several hosts on one machine, some behind NAT, for tests: Linux network namespaces (root only).

Why: peers must find and reach each other across NAT. A peer at home behind its router cannot be
dialed from outside; it can only dial out, and whoever it dials sees its router's address. Loopback
cannot show any of that (every process there reaches every other), so this module builds a small
"internet" of network namespaces:

    bridge (a namespace of its own), 198.18.0.0/24
     ├── public host   198.18.0.N       routes to 198.18.0.0/24 only, like a server on the internet
     └── NAT router    198.18.0.N outside, 198.19.i.1 inside (LAN i)
          └── NAT host 198.19.i.2       default route via its router

The router does what a home router does (nftables): it forwards what its LAN opens, masqueraded to
its outside address, lets the replies back in, and drops every connection opened from outside.

Only addresses of 198.18.0.0/15 (RFC 2544, benchmarking) are used, so nothing collides with a real
network, and the caller's own namespace is left untouched (even the bridge lives in a namespace): it
works the same inside the loopback-only namespace of `tools/loopback-only` and outside it.

Needs root, `ip` (iproute2) and, for NAT hosts, `nft` (nftables). Every namespace and every process
started through a host is removed when the `internet()` block ends, however it ends.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from storage.daemon import die_with_parent

DEFAULT_PREFIX = "swt"
CMD_TIMEOUT_S = 10.0  # an `ip`/`nft` call takes milliseconds: this only bounds a hung one
STOP_GRACE_S = 3.0  # how long started processes get to exit on SIGTERM before SIGKILL
INTERNET_NET = "198.18.0"  # the bridge's /24
LAN_NET = "198.19.{}"  # NAT LAN i's /24
MAX_HOST_PART = 254
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,23}")

# Exit 3 means "no connection": any other failure is the harness's, never a silent "unreachable".
_CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), float(sys.argv[3])).close()
except OSError:
    sys.exit(3)
"""
_NO_CONNECTION = 3

_LISTEN = """
import socket, sys
server = socket.create_server(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
while True:
    conn, peer = server.accept()
    print(peer[0], flush=True)
    conn.close()
"""


class NetnsUnavailable(RuntimeError):
    """This machine cannot build the namespaces: not root, or a tool is missing (the message says which)."""


class NetnsError(RuntimeError):
    """A command of the harness failed or hung."""


def _check_root() -> None:
    if os.geteuid() != 0:
        raise NetnsUnavailable("network namespaces need root: run the tests as root (CI does)")


def _require(tool: str, package: str) -> None:
    if shutil.which(tool) is None:
        raise NetnsUnavailable(f"`{tool}` not found: install the Debian package {package} "
                               f"(apt-get install -y {package})")


def _run(argv: Sequence[str], stdin: str | None = None) -> str:
    try:
        done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=CMD_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        raise NetnsError(f"`{shlex.join(argv)}` did not finish within {CMD_TIMEOUT_S} s") from e
    if done.returncode != 0:
        raise NetnsError(f"`{shlex.join(argv)}` failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def _ip(ns: str, *commands: str) -> None:
    """`ip` commands run in namespace `ns`, in one process (`-batch` stops at the first failure)."""
    _run(["ip", "-n", ns, "-batch", "-"], stdin="\n".join(commands) + "\n")


def _router_rules(outside: str, inside: str) -> str:
    return f"""
table ip nat {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "{outside}" masquerade
    }}
}}
table ip filter {{
    chain forward {{
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname "{inside}" accept
    }}
}}
"""


def leftover_namespaces(prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Namespaces present now whose name starts with `prefix` + "-" (an `Internet.id` or a harness prefix)."""
    names = (line.split()[0] for line in _run(["ip", "netns", "list"]).splitlines() if line.strip())
    return sorted(name for name in names if name.startswith(prefix + "-"))


class Lines:
    """The lines a child writes to a pipe, each waited for at most a timeout."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream, self._pending = stream, b""

    def next(self, timeout: float) -> str:
        """The next line; TimeoutError if none came within `timeout`, EOFError if the pipe closed."""
        # select + os.read, not readline: a blocking read would ignore the timeout.
        deadline = time.monotonic() + timeout
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.stream], [], [], left)[0]:
                raise TimeoutError(f"no line within {timeout:g} s")
            chunk = os.read(self.stream.fileno(), 65536)
            if not chunk:
                raise EOFError("the process closed its output")
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return line.decode(errors="replace")


@dataclass
class Listener:
    """A TCP listener on every address of a host; reports the peer address of each connection it accepts."""

    proc: subprocess.Popen[bytes]
    lines: Lines = field(init=False)

    def __post_init__(self) -> None:
        assert self.proc.stdout is not None
        self.lines = Lines(self.proc.stdout)

    def next_peer(self, timeout: float = 5.0) -> str:
        """The peer address the listener saw on its next connection."""
        return self._next_line(timeout)

    def _next_line(self, timeout: float) -> str:
        try:
            return self.lines.next(timeout)
        except TimeoutError:
            raise NetnsError(f"the listener printed no line within {timeout} s") from None
        except EOFError:
            raise NetnsError("the listener exited") from None


def start_bootstrap(host: Host, swarm: str, data_dir: Path, listen: str, log: Path, timeout: float = 30.0
                    ) -> str:
    """A real `swarm-bootstrap` for `swarm` on `host`; the address it prints once it listens."""
    proc = host.popen([sys.executable, "-m", "bootstrap.cli", "--swarm", swarm, "--data-dir", str(data_dir),
                       "--listen", listen], stdout=subprocess.PIPE, stderr=log.open("w"))
    assert proc.stdout is not None
    try:
        line = Lines(proc.stdout).next(timeout)
    except (TimeoutError, EOFError):
        line = ""
    if not line.startswith("BOOTSTRAP /ip4/"):
        raise NetnsError(f"the bootstrap said {line!r}; see {log}")
    return line.split()[1]


@dataclass(kw_only=True)
class Host:
    """A host: its own network namespace `ns` with address `ip`."""

    name: str
    ns: str
    ip: str
    _started: list[subprocess.Popen[Any]] = field(repr=False)  # shared by all hosts of one internet

    def popen(self, argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
        """`argv` started inside this host's namespace, in a process group of its own.

        It gets SIGTERM if the thread that started it exits (see `die_with_parent`: `ip netns exec`
        execs `argv`, so the setting reaches it), and is stopped, its whole group, when the
        `internet()` block ends.
        """
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns, *argv], start_new_session=True,
                                preexec_fn=die_with_parent(), **popen_kwargs)
        self._started.append(proc)
        return proc

    def can_connect(self, ip: str, port: int, timeout: float = 2.0) -> bool:
        """Whether a TCP connection from this host to `ip`:`port` opens within `timeout` seconds."""
        argv = ["ip", "netns", "exec", self.ns, sys.executable, "-I", "-c", _CONNECT,
                ip, str(port), str(timeout)]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + CMD_TIMEOUT_S)
        except subprocess.TimeoutExpired as e:
            raise NetnsError(f"connecting from {self.ns} to {ip}:{port} hung") from e
        if done.returncode not in (0, _NO_CONNECTION):
            raise NetnsError(f"connecting from {self.ns} failed ({done.returncode}): {done.stderr.strip()}")
        return done.returncode == 0

    def listen(self, port: int, timeout: float = 5.0) -> Listener:
        """A `Listener` on `port`, returned once it accepts connections."""
        proc = self.popen([sys.executable, "-I", "-c", _LISTEN, str(port)], stdout=subprocess.PIPE)
        listener = Listener(proc)
        if (line := listener._next_line(timeout)) != "ready":
            raise NetnsError(f"the listener on {self.ns} port {port} said {line!r}, not 'ready'")
        return listener


@dataclass(kw_only=True)
class NatHost(Host):
    """A host at `ip` on a LAN of its own behind a NAT router (namespace `router_ns`) at `public_ip`."""

    public_ip: str
    router_ns: str


@dataclass
class Internet:
    """The hosts of one `internet()` block; their namespaces are named `<id>-<host name>`."""

    id: str
    _namespaces: list[str] = field(default_factory=list)
    _started: list[subprocess.Popen[Any]] = field(default_factory=list)
    _next_public: int = 1  # N of the next 198.18.0.N
    _next_lan: int = 1  # i of the next NAT LAN 198.19.i.0/24

    @property
    def _bridge_ns(self) -> str:
        return f"{self.id}-net"

    def public_host(self, name: str) -> Host:
        """A host on the bridge at 198.18.0.N."""
        ns = self._add_namespace(name)
        ip = self._take_public_ip()
        self._plug(ns, ip, "eth0")
        return Host(name=name, ns=ns, ip=ip, _started=self._started)

    def nat_host(self, name: str) -> NatHost:
        """A host at 198.19.i.2 behind a NAT router of its own, which is on the bridge at 198.18.0.N."""
        _require("nft", "nftables")
        if self._next_lan > MAX_HOST_PART:
            raise NetnsError(f"at most {MAX_HOST_PART} NAT hosts per internet")
        lan, self._next_lan = self._next_lan, self._next_lan + 1
        router, ns = self._add_namespace(f"{name}-nat"), self._add_namespace(name)
        public_ip = self._take_public_ip()
        self._plug(router, public_ip, "wan")
        gateway, ip = f"{LAN_NET.format(lan)}.1", f"{LAN_NET.format(lan)}.2"
        _ip(router, f"link add lan type veth peer name eth0 netns {ns}", f"addr add {gateway}/24 dev lan",
            "link set lan up")
        _ip(ns, "link set lo up", f"addr add {ip}/24 dev eth0", "link set eth0 up",
            f"route add default via {gateway}")
        # Firewall first, forwarding after: no moment where the LAN is open to the outside.
        _run(["ip", "netns", "exec", router, "nft", "-f", "-"], stdin=_router_rules("wan", "lan"))
        _run(["ip", "netns", "exec", router, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])
        return NatHost(name=name, ns=ns, ip=ip, public_ip=public_ip, router_ns=router, _started=self._started)

    def _add_namespace(self, name: str) -> str:
        if not _NAME.fullmatch(name):
            raise ValueError(f"host name {name!r}: use 1-24 of a-z, 0-9 and '-'")
        ns = f"{self.id}-{name}"
        if ns in self._namespaces:
            raise ValueError(f"a host or router named {name!r} exists already")
        # Recorded before it exists: a creation that failed half-way is cleaned up as well.
        self._namespaces.append(ns)
        _run(["ip", "netns", "add", ns])
        return ns

    def _take_public_ip(self) -> str:
        if self._next_public > MAX_HOST_PART:
            raise NetnsError(f"at most {MAX_HOST_PART} addresses on the bridge")
        n, self._next_public = self._next_public, self._next_public + 1
        return f"{INTERNET_NET}.{n}"

    def _plug(self, ns: str, ip: str, ifname: str) -> None:
        """Namespace `ns` on the bridge as `ip`/24 on its interface `ifname`."""
        # Interface names only need to be unique within their namespace: short fixed ones stay far
        # below the 15-character limit however long the namespace names are.
        port = f"p{ip.rsplit('.', 1)[1]}"
        _ip(self._bridge_ns, f"link add {port} type veth peer name {ifname} netns {ns}",
            f"link set {port} master br0", f"link set {port} up")
        _ip(ns, "link set lo up", f"addr add {ip}/24 dev {ifname}", f"link set {ifname} up")

    def _create_bridge(self) -> None:
        _ip(self._add_namespace("net"), "link add br0 type bridge", "link set br0 up")

    def _stop_processes(self) -> None:
        # Group leaders are reaped only after the last signal: an unreaped leader's pid (the group's
        # id) cannot be reused, so killpg never reaches someone else's processes.
        running = [p for p in self._started if p.returncode is None]
        for proc in running:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while not all(_has_exited(p) for p in running) and time.monotonic() < deadline:
            time.sleep(0.05)
        for proc in running:
            _signal_group(proc, signal.SIGKILL)  # also what the leader left behind in its group
        for proc in self._started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(CMD_TIMEOUT_S)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()

    def _delete_namespaces(self) -> None:
        for ns in reversed(self._namespaces):
            # Judged by what is left below, not by this: a namespace never created fails to delete.
            with contextlib.suppress(NetnsError):
                _run(["ip", "netns", "del", ns])
        if left := [ns for ns in leftover_namespaces(self.id) if ns in self._namespaces]:
            raise NetnsError(f"namespaces not deleted: {', '.join(left)}")

    def _close(self) -> None:
        try:
            self._stop_processes()
        finally:
            self._delete_namespaces()


def _has_exited(proc: subprocess.Popen[Any]) -> bool:
    # WNOWAIT: look without reaping (see `Internet._stop_processes`).
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _signal_group(proc: subprocess.Popen[Any], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


@contextlib.contextmanager
def internet(prefix: str = DEFAULT_PREFIX) -> Iterator[Internet]:
    """A fresh internet (a bridge, no hosts yet) named `<prefix>-<6 hex>`; deleted with all its hosts'
    namespaces and processes on leaving the block, also on an exception or KeyboardInterrupt."""
    _check_root()
    _require("ip", "iproute2")
    net = Internet(f"{prefix}-{secrets.token_hex(3)}")
    try:
        net._create_bridge()
        yield net
    finally:
        net._close()
