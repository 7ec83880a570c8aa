"""Fuzzing of what a node parses from outside: announcements, snapshots, config files, environment.

Each target takes bytes and may raise only its documented exception (AnnouncementError, SnapshotError,
ConfigError); anything else, a hang (per-input deadline) or unbounded memory (peak RSS growth) fails.
Inputs that parse must also satisfy the target's invariants (an announcement re-encodes to itself, a
snapshot's schema matches its tensors, a config has the declared field types).

Two engines share the targets: hypothesis (structure-aware: mutations of valid inputs, random msgpack
documents, TOML built from the real setting names) and atheris (coverage-guided libFuzzer; the
optional extra `fuzz`: `.venv/bin/pip install -c requirements.lock -e '.[fuzz]'`). tests/unit/test_fuzz.py
runs the hypothesis engine with a few hundred inputs per target.

    nice -n 10 .venv/bin/python bench/fuzz.py                       # hypothesis, 10,000 inputs per target
    nice -n 10 .venv/bin/python bench/fuzz.py --engine atheris      # atheris, 10,000 runs per target
    .venv/bin/python bench/fuzz.py --inputs 500 --targets snapshot  # a quick look
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import logging
import math
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import typing
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TARGETS = ("announcement", "snapshot", "config-file", "config-env")
DEADLINE_MS = 2000  # one input; the slowest legitimate one (a 4 KiB snapshot) takes a few ms
SIGNER = "12D3KooWFuzzSigner"


@dataclass
class Tally:
    """What happened to the inputs of one target."""

    inputs: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    slowest_ms: float = 0.0


def _first_words(message: str) -> str:
    # Rejections are grouped by the start of their message, without the numbers and names in it.
    return re.sub(r"\d+|'[^']*'", "#", message)[:40]


class Fuzz:
    """The targets, built once (they import torch); `run(name, data)` feeds one input."""

    def __init__(self, workdir: Path) -> None:
        import torch

        from node.config import ConfigError, NodeConfig, load_config
        from p2p.announcement import Announcement, AnnouncementError
        from p2p.validator import AnnounceValidator
        from storage import SnapshotError, decode, encode, schema_fingerprint

        torch.set_num_threads(1)
        self.torch, self.Announcement, self.decode = torch, Announcement, decode
        self.schema_fingerprint, self.load_config = schema_fingerprint, load_config
        self.validator = AnnounceValidator()
        self.allowed: dict[str, type[Exception]] = {
            "announcement": AnnouncementError, "snapshot": SnapshotError,
            "config-file": ConfigError, "config-env": ConfigError,
        }
        self.config_path = workdir / "fuzz.toml"
        state = {"conv.weight": torch.randn(2, 1, 3, 3), "conv.bias": torch.randn(2),
                 "fc.weight": torch.randn(3, 8), "bn.num_batches_tracked": torch.tensor(7)}
        meta = {"peer_id": SIGNER, "round": 3, "samples": 100, "train_loss": 0.5}
        self.seeds: dict[str, list[bytes]] = {
            "snapshot": [encode(state, encoding=e, meta=meta) for e in ("fp32", "fp16", "int8")],
            "announcement": [Announcement(
                cid="bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", publisher=SIGNER, round=3,
                schema="ab" * 16, samples=100, loss=0.5, encoding="fp32", size=1234, timestamp=time.time(),
                parents=("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",),
                addrs=("/ip4/127.0.0.1/tcp/4001/p2p/QmPeer",)).to_bytes()],
            "config-file": [b'swarm = "s"\nrounds = 3\nlr = 0.01\nbootstrap = ["/ip4/127.0.0.1/tcp/1"]\n',
                            b'[node]\nrole = "pinner"\nheadless = true\nclients = 8\nclient = 7\n'],
            "config-env": [b"SWARM_ROUNDS=4\nSWARM_BOOTSTRAP=/ip4/127.0.0.1/tcp/1,/ip4/127.0.0.1/tcp/2\n"],
        }
        self.kinds = typing.get_type_hints(NodeConfig)

    def run(self, name: str, data: bytes) -> str:
        """Feed one input; returns "accepted" or the rejection's gist. Other exceptions propagate."""
        try:
            getattr(self, "_" + name.replace("-", "_"))(data)
        except self.allowed[name] as exc:
            return _first_words(str(exc))
        return "accepted"

    def _announcement(self, data: bytes) -> None:
        before = self.validator.rejects().get("error", 0)
        self.validator.check(data, SIGNER)
        # The validator swallows everything; an "error" reject is an exception nobody documented.
        assert self.validator.rejects().get("error", 0) == before, self.validator.rejects()
        ann = self.Announcement.from_bytes(data)
        assert self.Announcement.from_bytes(ann.to_bytes()) == ann

    def _snapshot(self, data: bytes) -> None:
        snap = self.decode(data, max_size=1 << 20)
        if not snap.sparse:
            assert self.schema_fingerprint(snap.state_dict) == snap.schema
        for t in snap.tensors.values():
            assert isinstance(t, self.torch.Tensor) and t.numel() == math.prod(t.shape)

    def _config_file(self, data: bytes) -> None:
        self.config_path.write_bytes(data)
        self._check_types(self.load_config(self.config_path, env={}))

    def _config_env(self, data: bytes) -> None:
        env = dict(line.partition("=")[::2] for line in data.decode("utf-8", "replace").splitlines())
        self._check_types(self.load_config(None, env=env))

    def _check_types(self, cfg: Any) -> None:
        for name, kind in self.kinds.items():
            value = getattr(cfg, name)
            if typing.get_origin(kind) is list:
                assert isinstance(value, list) and all(isinstance(v, str) for v in value), (name, value)
            else:
                assert isinstance(value, kind), (name, value)
            assert not isinstance(value, float) or math.isfinite(value), (name, value)


# -- hypothesis: structure-aware inputs --------------------------------------------------------------------


def strategies(fuzz: Fuzz) -> dict[str, Any]:
    """One hypothesis strategy of input bytes per target."""
    import msgpack
    import zstandard
    from hypothesis import strategies as st

    from node.config import config_fields

    def mutated(seeds: list[bytes]) -> Any:
        ops = st.lists(st.tuples(st.sampled_from("fdit"), st.integers(0, 1 << 16), st.binary(min_size=1,
                                                                                          max_size=8)),
                       min_size=1, max_size=6)

        def apply(seed: bytes, edits: list[tuple[str, int, bytes]]) -> bytes:
            buf = bytearray(seed)
            for op, pos, chunk in edits:
                at = pos % (len(buf) + 1)
                if op == "f" and buf:  # flip bits of one byte
                    buf[at % len(buf)] ^= chunk[0] or 1
                elif op == "d":
                    del buf[at:at + len(chunk)]
                elif op == "i":
                    buf[at:at] = chunk
                else:
                    del buf[at:]
            return bytes(buf)

        return st.builds(apply, st.sampled_from(seeds), ops)

    def wrap(plain: bytes) -> bytes:  # a valid zstd frame + checksum around any content: reaches the parser
        return zstandard.ZstdCompressor().compress(plain + hashlib.sha256(plain).digest())

    leaves = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
              | st.text(max_size=12) | st.binary(max_size=24))
    docs = st.recursive(
        leaves, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
        max_leaves=20)
    plains = [zstandard.ZstdDecompressor().decompress(s)[:-32] for s in fuzz.seeds["snapshot"]]

    def doc_with(plain: bytes, key: str, value: Any) -> bytes:
        doc = msgpack.unpackb(plain, raw=False)
        target = doc["tensors"][0] if key.startswith("t.") else doc
        target[key.removeprefix("t.")] = value
        return msgpack.packb(doc, use_bin_type=True)

    snapshot_keys = ["format", "version", "encoding", "schema", "meta", "tensors", "t.name", "t.dtype",
                     "t.shape", "t.codec", "t.data", "t.scale", "t.lo"]
    ann_keys = ["v", "cid", "publisher", "round", "schema", "samples", "loss", "encoding", "size",
                "timestamp", "parents", "dp_epsilon", "role", "addrs"]
    ann_base = msgpack.unpackb(fuzz.seeds["announcement"][0], raw=False)
    names = [f.name for f in config_fields()]
    toml_value = (st.integers(-(2**70), 2**70).map(str) | st.floats().map(_toml_float)
                  | st.booleans().map(lambda b: str(b).lower()) | st.text(max_size=20).map(_toml_str)
                  | st.lists(st.text(max_size=8).map(_toml_str), max_size=3).map(_toml_list))
    toml = st.dictionaries(st.sampled_from([*names, "unknown_key"]), toml_value, max_size=6).map(
        lambda d: "".join(f"{k} = {v}\n" for k, v in d.items()).encode())
    env = st.dictionaries(st.sampled_from([f"SWARM_{n.upper()}" for n in names] + ["PATH"]),
                          st.text(alphabet=st.characters(blacklist_characters="\n\r"), max_size=16),
                          max_size=6).map(_env_file)
    return {
        "announcement": st.one_of(
            st.binary(max_size=1100), mutated(fuzz.seeds["announcement"]),
            st.builds(lambda k, v: msgpack.packb({**ann_base, k: v}, use_bin_type=True),
                      st.sampled_from(ann_keys), docs),
            st.dictionaries(st.sampled_from(ann_keys), docs, max_size=14).map(
                lambda d: msgpack.packb(d, use_bin_type=True))),
        "snapshot": st.one_of(
            st.binary(max_size=4096), mutated(fuzz.seeds["snapshot"]),
            st.builds(wrap, mutated(plains)), docs.map(lambda d: wrap(msgpack.packb(d, use_bin_type=True))),
            st.builds(lambda p, k, v: wrap(doc_with(p, k, v)), st.sampled_from(plains),
                      st.sampled_from(snapshot_keys), docs)),
        "config-file": st.one_of(st.binary(max_size=300), toml, mutated(fuzz.seeds["config-file"]),
                                 st.builds(lambda t: b"[node]\n" + t, toml)),
        "config-env": st.one_of(env, mutated(fuzz.seeds["config-env"])),
    }


def _toml_float(x: float) -> str:
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf") if math.isinf(x) else repr(x)


def _env_file(env: dict[str, str]) -> bytes:
    # os.environ may hold lone surrogates (undecodable bytes); keep them rather than fail here
    return "".join(f"{k}={v}\n" for k, v in env.items()).encode("utf-8", "surrogatepass")


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(items) + "]"


def _toml_str(s: str) -> str:
    return '"' + "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}" for c in s
                         if ord(c) < 0x10000 and not 0xD800 <= ord(c) < 0xE000) + '"'


def run_hypothesis(fuzz: Fuzz, name: str, inputs: int, seed: int = 0) -> Tally:
    """Feed `inputs` generated inputs to target `name`; raises on the first undocumented failure."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hseed

    tally = Tally()
    strategy = strategies(fuzz)[name]

    @hseed(seed)
    @settings(max_examples=inputs, deadline=DEADLINE_MS, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def feed(data: bytes) -> None:
        started = time.perf_counter()
        outcome = fuzz.run(name, data)
        tally.slowest_ms = max(tally.slowest_ms, (time.perf_counter() - started) * 1000)
        tally.inputs += 1
        if outcome == "accepted":
            tally.accepted += 1
        else:
            tally.rejected[outcome] += 1

    feed()
    return tally


# -- atheris: coverage-guided, in a child process per target (libFuzzer exits the process) ------------------


def atheris_child(name: str, runs: int) -> None:
    import atheris

    with atheris.instrument_imports(include=["node", "storage"]):
        fuzz = Fuzz(Path(tempfile.mkdtemp(prefix="fuzz-")))
    seed_dir = Path(tempfile.mkdtemp(prefix="fuzz-corpus-"))
    for i, seed in enumerate(fuzz.seeds[name]):
        (seed_dir / f"seed-{i}").write_bytes(seed)
    atheris.Setup([sys.argv[0], f"-runs={runs}", "-max_len=4096", "-rss_limit_mb=3072", "-timeout=10",
                   "-print_final_stats=1", str(seed_dir)], lambda data: fuzz.run(name, data))
    atheris.Fuzz()


def run_atheris(name: str, runs: int) -> dict[str, str]:
    done = subprocess.run([sys.executable, __file__, "--atheris-child", name, "--inputs", str(runs)],
                          capture_output=True, text=True, timeout=1800)
    stats = dict(re.findall(r"stat::(\w+):\s+(\d+)", done.stderr))
    if done.returncode != 0:
        tail = "\n".join(done.stderr.splitlines()[-25:])
        raise SystemExit(f"atheris found a failure in {name} (exit {done.returncode}):\n{tail}")
    return stats


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--engine", choices=("hypothesis", "atheris"), default="hypothesis")
    p.add_argument("--inputs", type=int, default=10_000, help="inputs per target (10,000)")
    p.add_argument("--targets", default=",".join(TARGETS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--atheris-child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    logging.disable(logging.WARNING)  # the validator's one line per reject cause would cut the table
    if args.atheris_child:
        atheris_child(args.atheris_child, args.inputs)
        return 0
    names = [t for t in args.targets.split(",") if t]
    if args.engine == "atheris":
        if importlib.util.find_spec("atheris") is None:
            raise SystemExit("atheris is not installed: "
                             ".venv/bin/pip install -c requirements.lock -e '.[fuzz]'")
        print("| target | runs | new corpus units | peak RSS MB | wall s |\n|---|---:|---:|---:|---:|")
        for name in names:
            started = time.monotonic()
            s = run_atheris(name, args.inputs)
            print(f"| {name} | {s.get('number_of_executed_units', '?')} | {s.get('new_units_added', '?')} | "
                  f"{s.get('peak_rss_mb', '?')} | {time.monotonic() - started:.0f} |", flush=True)
        return 0
    with tempfile.TemporaryDirectory(prefix="fuzz-") as work:
        fuzz = Fuzz(Path(work))
        print("| target | inputs | accepted | rejected (documented exception) | distinct rejections "
              "| slowest input ms | peak RSS growth MB | wall s |\n|---|---:|---:|---:|---:|---:|---:|---:|")
        for name in names:
            rss, started = peak_rss_mb(), time.monotonic()
            tally = run_hypothesis(fuzz, name, args.inputs, args.seed)
            print(f"| {name} | {tally.inputs} | {tally.accepted} | {sum(tally.rejected.values())} | "
                  f"{len(tally.rejected)} | {tally.slowest_ms:.1f} | {peak_rss_mb() - rss:.0f} | "
                  f"{time.monotonic() - started:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
