"""Hostile peers against a real swarm: poisoned snapshots (robust merge) and announcement floods.

Poisoned snapshots: honest `swarm-node join` trainers (random gossip over everyone, so every snapshot
announced is fetched and merged) share a swarm with attackers that are there before the honest
peers start and announce, every few seconds and with a fresh round each time, a crafted snapshot: NaN
weights, inf weights, a tensor of another shape, a huge-norm model (honest + noise 1000x), a
sign-flipped model (-4x the newest weights of an honest peer). Reported: honest peers' final test
accuracy without attack, under attack with the plain mean, under attack with median + norm clipping.

Flood: a libp2p host sends hundreds of validly signed announcements per second straight to one honest
trainer, and redials it (every `--flood-redial-s`) whenever the trainer cuts it off, as an attacker
would; the trainer's median round time is compared with the same swarm without the flood.

    nice -n 10 .venv/bin/python bench/hostile.py                  # both parts (~12 min on 2 cores)
    nice -n 10 .venv/bin/python bench/hostile.py --part flood     # one part
    nice -n 10 .venv/bin/python bench/hostile.py --part poison --scenario robust --repeat 3

A peer that exits with an error (or does not finish) gets the tail of its log printed at once, and the
summary at the end names every such peer and its scenario; the bench then exits with 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from cpu import cpu_seconds

from node import checkpoint
from node.config import NodeConfig
from node.demo import join_argv
from node.ipfs_setup import stop_leftover_daemon
from node.learner import Learner, load_shard
from node.processes import Bootstrap, Child, kill_all
from node.status import read_status_or_none
from p2p.addresses import LOOPBACK_LISTEN
from p2p.announcement import Announcement
from p2p.gossip import GossipConfig, GossipService
from p2p.identity import peer_id_of
from storage import IpfsDaemon, IpfsStore, encode, schema_fingerprint

ATTACKS = ("nan", "inf", "wrong-shape", "huge-norm", "sign-flip")
LOG_TAIL_LINES = 30
# A node's private IPFS daemon writes here (node.ipfs_setup.start_private, storage.daemon): a node that
# could not start it says only "see <this file>", and the file goes with the bench's temporary directory.
DAEMON_LOG = Path("ipfs") / "daemon.log"
STALE_S = 5.0  # the flooder's wait for a (busy) victim's pubsub hello before it redials
SWARM = "hostile"


def honest_config(root: Path, boot: str, client: int, clients: int, **over: Any) -> NodeConfig:
    base = NodeConfig(swarm=SWARM, bootstrap=[boot], listen=LOOPBACK_LISTEN, ipfs_api="private",
                      data_dir=root / f"honest-{client}",
                      dataset="fashion-mnist", partition="iid", clients=clients, client=client,
                      samples_per_client=200, strategy="random", neighbours=16, lr=0.003, rounds=6,
                      round_interval_s=2.0, headless=True)
    return replace(base, **over)


def wait_until(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.3)


def wait_first_round(data_dir: Path) -> None:
    wait_until(lambda: (s := read_status_or_none(data_dir)) is not None and s.round >= 1, 300,
               "the first honest round")


def crafted(kind: str, honest: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """The state dict an attacker of `kind` publishes, made from an honest peer's newest weights."""
    g = torch.Generator().manual_seed(seed)
    out = {k: v.clone() for k, v in honest.items()}
    floats = [k for k, v in out.items() if v.is_floating_point()]
    if kind in ("nan", "inf"):
        out[floats[0]].view(-1)[::3] = float(kind)
    elif kind == "wrong-shape":
        out[floats[-1]] = torch.zeros(out[floats[-1]].shape[0] + 1, *out[floats[-1]].shape[1:])
    elif kind == "huge-norm":
        for k in floats:
            out[k] += 1000.0 * torch.randn(out[k].shape, generator=g)
    elif kind == "sign-flip":
        for k in floats:
            out[k] *= -4.0
    else:
        raise ValueError(f"unknown attack {kind!r}; use one of {', '.join(ATTACKS)}")
    return out


@dataclass
class Attackers:
    """One libp2p identity per attack kind, all in this process, sharing one private IPFS daemon; a
    thread re-announces every `every_s` with a fresh round. They skip `swarm-node publish` because it
    (rightly) refuses non-finite snapshots, and announce the honest schema and class order (both
    public) whatever they serve. They craft from the swarm's common initial weights until the victim
    has a checkpoint, then from its newest weights, so they are there from the honest peers' first
    round to their last."""

    root: Path
    boot: str
    victim: NodeConfig  # the honest peer whose weights the attackers craft from
    kinds: tuple[str, ...] = ATTACKS
    every_s: float = 5.0
    published: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        learner = Learner(self.victim, load_shard(self.victim), torch.device("cpu"))
        self.initial, self.labels = learner.init, learner.labels
        self.daemon = IpfsDaemon.start(self.root / "ipfs")
        self.store = IpfsStore(self.daemon.api_multiaddr)
        self.services = {k: GossipService(GossipConfig(swarm_id=SWARM, data_dir=self.root / k,
                                                       bootstrap=[self.boot])) for k in self.kinds}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Attackers:
        for svc in self.services.values():
            svc.start()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(60)
        for svc in self.services.values():
            svc.stop()
        self.daemon.stop()

    def _run(self) -> None:
        rnd = 100
        honest = self.initial
        while not self.stop.is_set():
            with contextlib.suppress(Exception):  # none yet, or mid-rename: keep the last weights
                honest = checkpoint.load(self.victim.data_dir).model
            rnd += 1
            for kind in self.kinds:
                self._publish(kind, honest, rnd)
            self.stop.wait(self.every_s)

    def _publish(self, kind: str, honest: dict[str, torch.Tensor], rnd: int) -> None:
        svc = self.services[kind]
        state = crafted(kind, honest, seed=rnd)
        data = encode(state, meta={"peer_id": svc.peer_id, "round": rnd, "samples": 200, "train_loss": 0.1},
                      allow_nonfinite=kind in ("nan", "inf"))
        cid = self.store.put(data)
        self.store.pin(cid)
        svc.publish(Announcement(cid=cid, publisher=svc.peer_id, round=rnd, schema=schema_fingerprint(honest),
                                 samples=200, loss=0.1, encoding="fp32", size=len(data),
                                 timestamp=time.time(), addrs=(self.daemon.swarm_multiaddr,),
                                 labels=self.labels))
        self.published[kind] = self.published.get(kind, 0) + 1


@contextlib.contextmanager
def honest_swarm(root: Path, configs: list[NodeConfig], boot: Bootstrap) -> Iterator[list[Child]]:
    children = [Child(join_argv(cfg), root / f"{cfg.data_dir.name}.log") for cfg in configs]
    try:
        yield children
    finally:
        kill_all(children)
        for cfg in configs:
            stop_leftover_daemon(cfg.data_dir)  # a SIGKILLed node leaves its daemon running


@dataclass(frozen=True)
class Scenario:
    """One poison run: with or without the attackers, and how the honest peers merge."""

    label: str
    attack: bool
    merge: str
    clip_norm: float
    merge_guard: bool


# "defaults" is what a node does unless told otherwise: the mean with the merge guard.
SCENARIOS = {"defaults": Scenario("no attack, defaults (mean + guard)", False, "mean", 0.0, True),
             "attack-defaults": Scenario("attack, defaults (mean + guard)", True, "mean", 0.0, True),
             "mean": Scenario("no attack, mean, no guard", False, "mean", 0.0, False),
             "attack-mean": Scenario("attack, mean, no guard", True, "mean", 0.0, False),
             "attack-robust": Scenario("attack, median + clip 5, no guard", True, "median", 5.0, False),
             "robust": Scenario("no attack, median + clip 5, no guard", False, "median", 5.0, False)}


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of a peer's log (its stderr). Read while the bench's temporary directory
    still exists: afterwards the log is gone, and with it the only trace of why the peer failed."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


@dataclass
class Outcome:
    """Everything one honest peer printed (its JSON event lines), its exit code (None: it did not
    finish in time and was killed) and where its log is."""

    name: str = ""
    log_path: Path | None = None
    data_dir: Path | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int | None = None
    cpu_s: float = 0.0  # user + system CPU of the node process, last sampled shortly before it exited

    @property
    def final(self) -> dict[str, Any]:
        return next((r for r in reversed(self.records) if "test_acc" in r), {})

    @property
    def test_acc(self) -> float | None:
        return self.final.get("test_acc")

    @property
    def round_timings(self) -> list[dict[str, float]]:
        return [r["round_timings"] for r in self.records if "round_timings" in r]

    def events(self, needle: str) -> list[str]:
        return [r["event"] for r in self.records if needle in r.get("event", "")]

    @property
    def peer(self) -> str:
        """Its short peer id, as the other peers' events name it ("-" until its gossip host is up)."""
        return next((r["peer"] for r in reversed(self.records) if r.get("peer", "-") != "-"), "?")

    @property
    def failed(self) -> bool:
        return self.exit_code != 0

    def failure(self) -> str:
        """What went wrong, for a failed peer: its exit, its last events and the tail of its log."""
        how = "did not finish in time" if self.exit_code is None else f"exited with code {self.exit_code}"
        events = "\n".join(f"  {r.get('event', '')}" for r in self.records[-5:]) or "  (none)"
        tail = log_tail(self.log_path) if self.log_path else "(no log)"
        text = f"{self.name} (peer {self.peer}) {how}; its last events:\n{events}\nits log ends:\n{tail}"
        if self.data_dir and (self.data_dir / DAEMON_LOG).exists():
            text += f"\nits IPFS daemon's log ends:\n{log_tail(self.data_dir / DAEMON_LOG)}"
        return text


def drain(child: Child, outcome: Outcome) -> None:
    while not child.lines.empty():
        with contextlib.suppress(ValueError):
            outcome.records.append(json.loads(child.lines.get_nowait()))


def finish(children: list[Child], data_dirs: list[Path], timeout: float) -> list[Outcome]:
    """Each child's outcome once all have exited or `timeout` is over; one still running then keeps
    exit_code None (the caller kills it) so that the others' results and its log are still reported."""
    outcomes = [Outcome(d.name, c.log_path, d) for c, d in zip(children, data_dirs, strict=True)]
    deadline = time.monotonic() + timeout
    while any(c.proc.poll() is None for c in children) and time.monotonic() < deadline:
        for child, outcome in zip(children, outcomes, strict=True):
            drain(child, outcome)
            with contextlib.suppress(OSError):  # gone: keep its last sample
                outcome.cpu_s = cpu_seconds(child.proc.pid)
        time.sleep(0.5)
    time.sleep(0.5)  # the reader threads hand over the last lines
    for child, outcome in zip(children, outcomes, strict=True):
        drain(child, outcome)
        outcome.exit_code = child.proc.poll()
    return outcomes


def report_failures(scenario: str, outcomes: list[Outcome]) -> list[str]:
    """Print each failed peer's log tail now (the logs live in a temporary directory) and return one
    summary line per failed peer."""
    summary = []
    for outcome in outcomes:
        if outcome.failed:
            print(f"[{scenario}] {outcome.failure()}", flush=True)
            how = "did not finish" if outcome.exit_code is None else f"exit code {outcome.exit_code}"
            summary.append(f"{scenario}: {outcome.name} (peer {outcome.peer}) {how}")
    return summary


def poison_run(root: Path, *, attack: bool, merge: str, clip_norm: float, merge_guard: bool, nodes: int,
               rounds: int, attack_every_s: float = 5.0,
               probe: Callable[[list[NodeConfig], list[Child]], Any] | None = None) -> dict:
    """One honest swarm to the end; `probe(configs, children)` runs once while it is up (tests)."""
    root.mkdir(parents=True, exist_ok=True)
    boot = Bootstrap(SWARM, root / "boot")
    try:
        configs = [honest_config(root, boot.addr, i, nodes, merge=merge, clip_norm=clip_norm,
                                 merge_guard=merge_guard, rounds=rounds)
                   for i in range(nodes)]
        attackers = (Attackers(root / "attackers", boot.addr, configs[0], every_s=attack_every_s)
                     if attack else None)
        with attackers or contextlib.nullcontext(), honest_swarm(root, configs, boot) as children:
            probed = probe(configs, children) if probe else None
            outcomes = finish(children, [c.data_dir for c in configs], 1200)
    finally:
        kill_all([boot])
    accs = [o.test_acc for o in outcomes if o.test_acc is not None]
    return {"attack": attack, "merge": merge, "clip_norm": clip_norm, "accs": accs, "outcomes": outcomes,
            "exit_codes": [o.exit_code for o in outcomes], "probe": probed,
            "published": dict(attackers.published) if attackers else {},
            "non_finite": sum(1 for a in accs if a != a)}


# -- flood -------------------------------------------------------------------------------------------------


def flood(victim_addr: str, stop: threading.Event, per_s: float, redial_s: float = 1.0) -> dict[str, int]:
    """Announce `per_s` validly signed announcements per second to one peer until `stop`; redial it
    every `redial_s` while cut off. Returns {"sent": announcements published while the victim was
    a subscribed peer, "redials": dial attempts after the first}. The flooder is a real libp2p host
    with our gossipsub settings but no rate limit."""
    import trio
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.peer.peerinfo import info_from_p2p_addr
    from libp2p.tools.anyio_service import background_trio_service
    from multiaddr import Multiaddr

    from p2p.announcement import topic_for
    from p2p.host import MeshParams, build_host, build_pubsub, quiet_libp2p_logs

    quiet_libp2p_logs()  # its own subscription overflows (nobody reads it): one warning per message
    key_pair = create_new_key_pair()
    me = peer_id_of(key_pair)
    cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    victim = info_from_p2p_addr(Multiaddr(victim_addr))
    counts = {"sent": 0, "redials": -1}

    async def main() -> None:
        host = build_host(key_pair)
        pubsub, router = build_pubsub(host, MeshParams(relay_rate_per_s=1e6))
        topic = topic_for(SWARM)
        async with host.run([Multiaddr("/ip4/127.0.0.1/tcp/0")]), background_trio_service(pubsub), \
                background_trio_service(router):
            await pubsub.wait_until_ready()
            await pubsub.subscribe(topic)
            dialed = -redial_s
            while not stop.is_set():
                if victim.peer_id not in pubsub.peer_topics.get(topic, ()):
                    now = trio.current_time()
                    # Cut off: redial. Connected with no hello from the victim for STALE_S: py-libp2p may
                    # not notice that the victim closed the connection, so drop it and redial.
                    connected = bool(host.get_network().get_connections(victim.peer_id))
                    if now >= dialed + (STALE_S if connected else redial_s):
                        dialed = now
                        counts["redials"] += 1
                        await host.disconnect(victim.peer_id)
                        host.get_network().unblock_peer(victim.peer_id)
                        with trio.move_on_after(5), contextlib.suppress(Exception):
                            await host.connect(victim)
                    await trio.sleep(0.05)
                    continue
                ann = Announcement(cid=cid, publisher=me, round=counts["sent"] + 1, schema="s" * 32,
                                   samples=1, loss=0.1, encoding="fp32", size=1, timestamp=time.time())
                await pubsub.publish(topic, ann.to_bytes())
                counts["sent"] += 1
                await trio.sleep(1.0 / per_s)

    trio.run(main)
    return counts


def gossip_addr(data_dir: Path) -> str:
    status = read_status_or_none(data_dir)
    for _, message in status.events if status else []:
        if m := re.search(r" on (/ip4/\S+/p2p/\S+)", message):
            return m.group(1)
    raise LookupError(f"no listen address in {data_dir}/status.json yet")


def flood_run(root: Path, *, flooding: bool, rounds: int, per_s: float, redial_s: float) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    boot = Bootstrap(SWARM, root / "boot")
    flooded = {"sent": 0, "redials": 0}
    try:
        # The partner trains without a round limit until the victim is done: a partner that finished
        # first would leave the victim timing out on its last snapshot, whatever the flood did.
        configs = [honest_config(root, boot.addr, i, 2, rounds=0 if i else rounds, round_interval_s=0.0,
                                 samples_per_client=400, neighbours=1) for i in range(2)]
        with honest_swarm(root, configs, boot) as children:
            wait_first_round(configs[0].data_dir)
            stop, result = threading.Event(), []
            thread = threading.Thread(target=lambda: result.append(
                flood(gossip_addr(configs[0].data_dir), stop, per_s, redial_s)), daemon=True)
            if flooding:
                thread.start()
            try:
                outcomes = finish(children[:1], [configs[0].data_dir], 1200)
                partner_running = children[1].proc.poll() is None
            finally:
                stop.set()
            if flooding:
                thread.join(30)
                flooded = result[0] if result else {"sent": -1, "redials": -1}
    finally:
        kill_all([boot])
    victim = outcomes[0]
    times = [sum(t.values()) for t in victim.round_timings[2:]]  # first rounds: nobody to fetch yet
    log = (root / "honest-0.log").read_text()
    # The victim's last gossip line: "gossip stopped: rejected N announcement(s) {...}, B ban(s)".
    rejected = re.findall(r"gossip stopped: rejected (\d+) ", log)
    return {"flooding": flooding, "median_round_s": statistics.median(times) if times else float("nan"),
            "rounds": len(victim.round_timings), "exit_code": victim.exit_code,
            "partner_running": partner_running, "cpu_s": victim.cpu_s,
            "victim": victim,
            "test_acc": victim.test_acc, **flooded,
            "rejected": int(rejected[-1]) if rejected else 0, "bans": log.count(" banned for ")}


def poison_part(root: Path, scenarios: list[str], repeat: int, nodes: int, rounds: int) -> list[str]:
    """The poison table, one row per run; returns the summary lines of the peers that failed."""
    failures = []
    print("| run | honest test acc (mean) | min | max | exit codes | attacker announcements |")
    print("|---|---:|---:|---:|---|---|")
    for i, name in enumerate(name for _ in range(repeat) for name in scenarios):
        s = SCENARIOS[name]
        r = poison_run(root / f"poison-{i}", attack=s.attack, merge=s.merge, clip_norm=s.clip_norm,
                       merge_guard=s.merge_guard, nodes=nodes, rounds=rounds)
        accs = r["accs"] or [float("nan")]
        print(f"| {s.label} | {statistics.fmean(accs):.3f} | {min(accs):.3f} | {max(accs):.3f} | "
              f"{r['exit_codes']} | {json.dumps(r['published'])} |", flush=True)
        failures += report_failures(f"{s.label} (run {i + 1})", r["outcomes"])
    return failures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=("poison", "flood", "both"), default="both")
    p.add_argument("--scenario", action="append", choices=tuple(SCENARIOS),
                   help="poison scenario to run, repeatable (default: all four, in this order: "
                   f"{', '.join(f'{k} = {s.label}' for k, s in SCENARIOS.items())})")
    p.add_argument("--repeat", type=int, default=1, help="run the chosen poison scenarios this many times")
    p.add_argument("--nodes", type=int, default=4)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--flood-per-s", type=float, default=300.0)
    p.add_argument("--flood-redial-s", type=float, default=1.0, help="flooder's redial interval when cut off")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as work:
        root = Path(work)
        if args.part in ("poison", "both"):
            failures += poison_part(root, args.scenario or list(SCENARIOS), args.repeat, args.nodes,
                                    args.rounds)
        if args.part in ("flood", "both"):
            print("\n| run | median round s (victim) | victim CPU s | rounds | announcements sent | flooder "
                  "redials | rejected by victim | bans | victim test acc | victim exit, partner alive |")
            print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
            for flooding in (False, True):
                r = flood_run(root / f"flood-{int(flooding)}", flooding=flooding, rounds=args.rounds + 2,
                              per_s=args.flood_per_s, redial_s=args.flood_redial_s)
                label = "flood" if flooding else "no flood"
                print(f"| {label} | {r['median_round_s']:.2f} | {r['cpu_s']:.1f} | {r['rounds']} | "
                      f"{r['sent']} | {r['redials']} | {r['rejected']} | {r['bans']} | {r['test_acc']} | "
                      f"{r['exit_code']}, {r['partner_running']} |",
                      flush=True)
                failures += report_failures(label, [r["victim"]])
    summary = "\n".join(f"- {f}" for f in failures)
    print(f"\nfailed peers:\n{summary}" if failures else "\nevery peer exited 0", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
