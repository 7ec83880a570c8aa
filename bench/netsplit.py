"""Two-halves network partitions on one machine, every listener still on 127.0.0.1 (root only).

Half A is the caller's own network namespace; half B is a fresh one (`unshare -n sleep infinity`
holds it, loopback up). A process joins half B when it is started inside `split.in_b()`, which moves
the calling thread into B with setns(2) for the time of the block (children forked there stay in B).
The two loopbacks share nothing, so the only path between the halves is the bridge: one child
process (`python bench/netsplit.py bridge --netns /proc/PID/ns/net`) that mirrors every TCP port
listening on 127.0.0.1 (or 0.0.0.0) in one half (within that half's ephemeral port range, so the
machine's own services stay out of it) as a listener on 127.0.0.1 with the same port in the
other half, and forwards each connection to the real listener. Peers keep dialing
/ip4/127.0.0.1/tcp/PORT, unchanged. The halves draw ephemeral ports from disjoint ranges (the range
is per namespace), so a port means one listener in the whole swarm, as on a single loopback.

`cut()`: the bridge closes every mirror listener and resets every bridged connection; a dial to the
other half is refused, and no byte crosses until `heal()`, which mirrors every current listener again
before it returns. This is a rejecting partition: peers see resets and refusals at once.

`cut(silent=True)`: a silent partition, as when a link or firewall drops packets. Connections stay
open and dials to the other half are accepted, but no byte crosses: the bridge holds what it has read
and stops reading, so senders stall once their socket buffers fill, and a dial never completes its
handshake. Peers only notice through their own timeouts. `heal()` lets the held bytes through, as
TCP's retransmissions would after a short outage.

Test and bench infrastructure, not part of the node: bench/chaos.py and
tests/integration/test_partition.py use it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import queue
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

CLONE_NEWNET = 0x40000000
SCAN_S = 0.2  # how soon a new listener becomes reachable from the other half
CONNECT_TIMEOUT_S = 5.0
REPLY_TIMEOUT_S = 20.0
_libc = ctypes.CDLL(None, use_errno=True)


def unavailable() -> str | None:
    """Why partitions cannot run here (None: they can)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs unshare (util-linux) and ip (iproute2)"
    return None


def setns(fd: int) -> None:
    """Move the calling thread into the network namespace of `fd` (Python 3.11 has no os.setns)."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def inside(fd: int) -> Iterator[None]:
    """Run the block in namespace `fd`: sockets made and processes started there belong to it."""
    home = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
    try:
        setns(fd)
        try:
            yield
        finally:
            setns(home)
    finally:
        os.close(home)


def listening_ports(tcp_table: str) -> set[int]:
    """Ports in LISTEN state on 127.0.0.1 or 0.0.0.0 in a /proc/PID/net/tcp table."""
    ports = set()
    for line in tcp_table.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A":
            ip_hex, port_hex = fields[1].split(":")
            if ip_hex in ("0100007F", "00000000"):
                ports.add(int(port_hex, 16))
    return ports


# ------------------------------------------------------------------ the bridge (a child process)

class Bridge:
    """Mirrors listeners between the namespaces `fds["a"]` and `fds["b"]`; `tables` are their tcp tables."""

    def __init__(self, fds: dict[str, int], tables: dict[str, str], ranges: dict[str, range]) -> None:
        self.fds, self.tables, self.ranges = fds, tables, ranges
        self.mirrors: dict[str, dict[int, asyncio.Server]] = {"a": {}, "b": {}}  # ns -> port -> server
        self.conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self.joined = True  # False during a rejecting cut
        self.flowing = asyncio.Event()  # cleared during a silent cut
        self.flowing.set()
        self.stats = {"connections": 0, "bytes": 0, "refused": 0, "reset_by_cut": 0, "held_by_cut": 0}
        self.conflicts: set[tuple[str, int]] = set()

    def _socket(self, ns: str) -> socket.socket:
        with inside(self.fds[ns]):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        return sock

    async def scan(self) -> None:
        """Mirror each half's real listeners into the other half; drop mirrors of vanished ones."""
        real = {}
        for ns in ("a", "b"):
            try:
                table = Path(self.tables[ns]).read_text()
            except OSError:
                continue  # the holder of B is gone: the run is ending
            # only the run's ports (each half's ephemeral range), not the machine's other services
            real[ns] = {p for p in listening_ports(table) if p in self.ranges[ns]} - set(self.mirrors[ns])
        for src, dst in (("a", "b"), ("b", "a")):
            if src not in real:
                continue
            for port in set(self.mirrors[dst]) - real[src]:
                self.mirrors[dst].pop(port).close()
            for port in real[src] - set(self.mirrors[dst]) - real.get(dst, set()):
                await self._mirror(src, dst, port)
            for port in real[src] & real.get(dst, set()):
                if (dst, port) not in self.conflicts:  # both halves listen on it: cannot bridge
                    self.conflicts.add((dst, port))
                    print(json.dumps({"event": "conflict", "port": port}), flush=True)

    async def _mirror(self, src: str, dst: str, port: int) -> None:
        sock = self._socket(dst)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.close()
            return  # taken meanwhile; the next scan sees who holds it
        sock.listen(128)

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._forward(src, port, reader, writer)

        self.mirrors[dst][port] = await asyncio.start_server(accept, sock=sock)

    async def _forward(self, src: str, port: int, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
        await self.flowing.wait()  # silent cut: accepted, but the far side never hears of it until heal
        sock = self._socket(src)
        try:
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port)),
                                   CONNECT_TIMEOUT_S)
            far_reader, far_writer = await asyncio.open_connection(sock=sock)
        except (TimeoutError, OSError):
            sock.close()
            self.stats["refused"] += 1
            _reset(writer)
            return
        if not self.joined:  # cut while we connected
            _reset(writer)
            _reset(far_writer)
            return
        pair = (writer, far_writer)
        self.conns.add(pair)
        self.stats["connections"] += 1
        try:
            await asyncio.gather(self._pump(reader, far_writer), self._pump(far_reader, writer))
        finally:
            self.conns.discard(pair)
            for w in pair:
                w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self.flowing.wait()  # silent cut: hold it, and read no more
                if not self.joined or writer.is_closing():
                    return  # cut: what the reader had buffered must not cross either
                writer.write(data)
                self.stats["bytes"] += len(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, RuntimeError):
            _reset(writer)

    def cut_silently(self) -> int:
        self.flowing.clear()
        self.stats["held_by_cut"] += len(self.conns)
        return len(self.conns)

    def cut(self) -> int:
        self.joined = False
        for servers in self.mirrors.values():
            for server in servers.values():
                server.close()
            servers.clear()
        closed = len(self.conns)
        for pair in list(self.conns):
            for w in pair:
                _reset(w)
        self.conns.clear()
        self.stats["reset_by_cut"] += closed
        return closed

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        commands: asyncio.Queue[str] = asyncio.Queue()
        threading.Thread(target=_read_stdin, args=(loop, commands), daemon=True).start()
        await self.scan()
        print(json.dumps({"event": "ready", **self.counts()}), flush=True)
        while True:
            try:
                cmd = await asyncio.wait_for(commands.get(), SCAN_S)
            except TimeoutError:
                cmd = ""
            if cmd == "cut":
                reset = self.cut()
                print(json.dumps({"event": "cut", **self.counts(), "reset": reset}), flush=True)
            elif cmd == "cut silent":
                held = self.cut_silently()
                print(json.dumps({"event": "cut", **self.counts(), "reset": 0, "held": held}), flush=True)
            elif cmd == "heal":
                self.joined = True
                self.flowing.set()
                await self.scan()
                print(json.dumps({"event": "healed", **self.counts()}), flush=True)
            elif cmd == "stats":
                print(json.dumps({"event": "stats", **self.counts()}), flush=True)
            elif cmd == "quit":
                return
            elif self.joined:
                await self.scan()

    def counts(self) -> dict[str, Any]:
        return {"mirrors_in_a": sorted(self.mirrors["a"]), "mirrors_in_b": sorted(self.mirrors["b"]),
                "open": len(self.conns), "conflicts": len(self.conflicts), **self.stats}


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST, as a rejecting firewall would: the peer sees the connection break at once."""
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError):
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _read_stdin(loop: asyncio.AbstractEventLoop, commands: asyncio.Queue[str]) -> None:
    for line in sys.stdin:
        loop.call_soon_threadsafe(commands.put_nowait, line.strip())
    loop.call_soon_threadsafe(commands.put_nowait, "quit")  # the harness went away


# ------------------------------------------------------------------ the harness side

class NetSplit:
    """Half B (a namespace) and the bridge joining it to the caller's half A. Use as a context manager."""

    def __init__(self) -> None:
        reason = unavailable()
        if reason:
            raise RuntimeError(f"network partitions {reason}")
        self.holder = subprocess.Popen(["unshare", "-n", "sleep", "infinity"], stdin=subprocess.DEVNULL)
        self.bridge: subprocess.Popen[str] | None = None
        self.replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self.conflicts: list[int] = []  # ports listened on in both halves (should stay empty)
        self.fd = -1
        try:
            self._wait_for_namespace()
            self.fd = os.open(self.ns_path, os.O_RDONLY)
            lo, hi = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
            b_lo, b_hi = (lo - 12000, lo - 1) if lo > 13024 else (hi + 1, 65535)
            setup = f"ip link set lo up && echo {b_lo} {b_hi} > /proc/sys/net/ipv4/ip_local_port_range"
            subprocess.run(["nsenter", f"--net={self.ns_path}", "--", "sh", "-c", setup],
                           check=True, timeout=10, capture_output=True)
            self.bridge = subprocess.Popen(
                [sys.executable, __file__, "bridge", "--netns", self.ns_path,
                 "--table-b", f"/proc/{self.holder.pid}/net/tcp",
                 "--range-a", f"{lo}-{hi}", "--range-b", f"{b_lo}-{b_hi}"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
            threading.Thread(target=self._pump, args=(self.bridge.stdout,), daemon=True).start()
            self._ask(None, "ready")
        except BaseException:
            self.close()
            raise

    @property
    def ns_path(self) -> str:
        return f"/proc/{self.holder.pid}/ns/net"

    def _wait_for_namespace(self) -> None:
        mine = os.readlink("/proc/self/ns/net")
        for _ in range(100):
            with contextlib.suppress(OSError):
                if os.readlink(self.ns_path) != mine:
                    return
            if self.holder.poll() is not None:
                break
            threading.Event().wait(0.05)
        raise RuntimeError("unshare -n did not create a network namespace")

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if record.get("event") == "conflict":
                    self.conflicts.append(record["port"])
                else:
                    self.replies.put(record)

    def _ask(self, cmd: str | None, event: str) -> dict[str, Any]:
        assert self.bridge is not None and self.bridge.stdin is not None
        if cmd is not None:
            self.bridge.stdin.write(cmd + "\n")
            self.bridge.stdin.flush()
        try:
            reply = self.replies.get(timeout=REPLY_TIMEOUT_S)
        except queue.Empty:
            raise RuntimeError(f"the bridge did not answer {cmd or 'start'} (exit {self.bridge.poll()})") \
                from None
        if reply.get("event") != event:
            raise RuntimeError(f"the bridge answered {reply} to {cmd or 'start'}")
        return reply

    @contextlib.contextmanager
    def in_b(self) -> Iterator[None]:
        """Processes started (and sockets made) in this block belong to half B."""
        with inside(self.fd):
            yield

    def cut(self, silent: bool = False) -> dict[str, Any]:
        """Partition: returns {"reset": bridged connections closed, "held": those kept open (silent),
        "bytes": bridged so far, ...}."""
        return self._ask("cut silent" if silent else "cut", "cut")

    def heal(self) -> dict[str, Any]:
        """Join the halves again; every listener is reachable from the other half when this returns."""
        return self._ask("heal", "healed")

    def stats(self) -> dict[str, Any]:
        return self._ask("stats", "stats")

    def close(self) -> None:
        if self.bridge is not None and self.bridge.poll() is None:
            assert self.bridge.stdin is not None
            with contextlib.suppress(OSError):
                self.bridge.stdin.close()  # EOF: the bridge quits
            try:
                self.bridge.wait(5)
            except subprocess.TimeoutExpired:
                self.bridge.kill()
                self.bridge.wait(5)
        if self.holder.poll() is None:
            self.holder.kill()
            self.holder.wait(5)
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> NetSplit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="The bridge between half A (here) and half B (--netns).")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bridge", help="run the bridge; commands on stdin: cut, cut silent, heal, stats")
    b.add_argument("--netns", required=True, help="/proc/PID/ns/net of half B")
    b.add_argument("--table-b", required=True, help="/proc/PID/net/tcp of a process in half B")
    for half in ("a", "b"):
        b.add_argument(f"--range-{half}", required=True, metavar="LO-HI",
                       help=f"ports of half {half.upper()} to mirror (its ephemeral port range)")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    fds = {"a": os.open("/proc/self/ns/net", os.O_RDONLY), "b": os.open(args.netns, os.O_RDONLY)}
    tables = {"a": f"/proc/{os.getpid()}/net/tcp", "b": args.table_b}
    ranges = {}
    for half, spec in (("a", args.range_a), ("b", args.range_b)):
        lo, hi = (int(x) for x in spec.split("-"))
        ranges[half] = range(lo, hi + 1)
    asyncio.run(Bridge(fds, tables, ranges).serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
