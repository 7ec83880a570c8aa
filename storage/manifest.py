"""The swarm manifest: what a swarm learns, agreed once and checked by every joiner.

A small JSON document in IPFS: `{"format": "swarm-manifest", "version": 1, "model": str,
"input_shape": [C, H, W], "classes": [str, ...], "init": CID}`. `classes` gives the meaning of each
model output (output k is `classes[k]`), `init` names the snapshot of the common initial weights,
the root of every lineage. Reading never trusts the bytes: size, types and bounds are checked and any
defect raises `ManifestError` saying which field is wrong. The format is in docs/protocol.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from storage.cid import normalize_cid
from storage.errors import BadContent, InvalidCid

FORMAT = "swarm-manifest"
VERSION = 1
MAX_BYTES = 64 * 1024
MAX_CLASSES = 1000
MAX_NAME_LEN = 64
MAX_SIDE = 4096
_KEYS = {"format", "version", "model", "input_shape", "classes", "init"}


class ManifestError(BadContent, ValueError):
    """Bytes that are not a valid swarm manifest; the message names the field and what it must be."""


def labels_fingerprint(classes: Sequence[str]) -> str:
    """A short fingerprint of the class names in order: peers whose fingerprints differ give a model
    output different meanings, so merging their models mixes classes up."""
    digest = hashlib.sha256(json.dumps(list(classes), ensure_ascii=False).encode()).hexdigest()
    return f"labels-{digest[:16]}"


@dataclass(frozen=True)
class Manifest:
    model: str
    input_shape: tuple[int, int, int]
    classes: tuple[str, ...]
    init: str

    def __post_init__(self) -> None:
        _require(isinstance(self.model, str) and 0 < len(self.model) <= MAX_NAME_LEN,
                 f"model must be a model name of 1-{MAX_NAME_LEN} characters")
        shape = self.input_shape
        _require(isinstance(shape, tuple) and len(shape) == 3
                 and all(type(n) is int and 0 < n <= MAX_SIDE for n in shape),
                 f"input_shape must be [channels, height, width], each 1-{MAX_SIDE}")
        _require(isinstance(self.classes, tuple) and 2 <= len(self.classes) <= MAX_CLASSES,
                 f"classes must list 2-{MAX_CLASSES} class names")
        for name in self.classes:
            _require(isinstance(name, str) and len(name.strip()) > 0 and len(name) <= MAX_NAME_LEN,
                     f"each class name must be a non-blank string of at most {MAX_NAME_LEN} characters")
        _require(len(set(self.classes)) == len(self.classes), "class names must be distinct")
        try:
            _require(isinstance(self.init, str) and normalize_cid(self.init) == self.init,
                     "init must be a CIDv1 in base32 (as `ipfs add --cid-version=1` prints it)")
        except InvalidCid as exc:
            raise ManifestError(f"init is not a CID: {exc}") from None

    @property
    def labels(self) -> str:
        return labels_fingerprint(self.classes)

    def to_bytes(self) -> bytes:
        doc = {"format": FORMAT, "version": VERSION, "model": self.model,
               "input_shape": list(self.input_shape), "classes": list(self.classes), "init": self.init}
        data = json.dumps(doc, ensure_ascii=False, indent=1).encode()
        _require(len(data) <= MAX_BYTES, f"the manifest is {len(data)} bytes, the limit is {MAX_BYTES}")
        return data

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        """Parse and check; any defect raises ManifestError, never another error."""
        if len(data) > MAX_BYTES:
            raise ManifestError(f"a manifest is at most {MAX_BYTES} bytes; this one has {len(data)}")
        try:
            doc = json.loads(bytes(data).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise ManifestError("invalid swarm manifest: not UTF-8 JSON") from None
        _require(isinstance(doc, dict) and doc.get("format") == FORMAT,
                 f"a JSON object with \"format\": \"{FORMAT}\" is expected")
        _require(doc.get("version") == VERSION,
                 f"manifest version {doc.get('version')!r} is not supported (this swarm-node reads "
                 f"{VERSION}); update swarm-node")
        missing = sorted(_KEYS - doc.keys())
        _require(not missing, f"manifest lacks {', '.join(missing)}")
        return cls(model=doc["model"], input_shape=_tuple(doc["input_shape"], "input_shape"),
                   classes=_tuple(doc["classes"], "classes"), init=doc["init"])


def _tuple(value: Any, name: str) -> tuple[Any, ...]:
    _require(isinstance(value, list), f"{name} must be a list")
    return tuple(value)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ManifestError(f"invalid swarm manifest: {message}")
