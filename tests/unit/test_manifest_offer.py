"""The manifest offer's parts that need no network: `swarm-bootstrap --manifest` values, the server's
answer to any request bytes, and the client's reading of any reply bytes (untrusted input)."""

from __future__ import annotations

import json

import pytest

from p2p.manifest_offer import (
    ManifestOfferError,
    ManifestOfferService,
    ManifestOptionError,
    parse_manifest_options,
    parse_reply,
)
from storage import cid_of

CID = cid_of(b"a manifest")
OTHER = cid_of(b"another manifest")


class _Host:
    """What ManifestOfferService needs of a host: somewhere to register its handler."""

    def __init__(self) -> None:
        self.handlers: dict[str, object] = {}

    def set_stream_handler(self, protocol: str, handler: object) -> None:
        self.handlers[protocol] = handler


def test_a_bare_cid_is_the_one_swarms_and_swarm_equals_cid_names_one_of_several() -> None:
    assert parse_manifest_options([CID], ["a"]) == {"a": CID}
    assert parse_manifest_options([f"a={CID}", f"b={OTHER}"], ["a", "b", "c"]) == {"a": CID, "b": OTHER}
    assert parse_manifest_options([], ["a"]) == {}


@pytest.mark.parametrize(("values", "swarms", "message"), [
    ([CID], ["a", "b"], "this bootstrap serves 2 swarms; say which one is meant, as --manifest SWARM=CID"),
    ([f"c={CID}"], ["a", "b"], "swarm 'c' is not served here; add --swarm c"),
    (["not-a-cid"], ["a"], "give the CID `swarm-node manifest create` printed"),
])
def test_bad_manifest_options_say_what_to_give(values: list[str], swarms: list[str], message: str) -> None:
    with pytest.raises(ManifestOptionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_manifest_options(values, swarms)


def test_the_server_answers_every_request_with_a_reply_never_an_exception() -> None:
    service = ManifestOfferService(_Host(), {"a": CID, "b": ""})  # type: ignore[arg-type]
    assert service.answer(b'{"swarm": "a"}') == {"swarm": "a", "manifest": CID}
    assert service.answer(b'{"swarm": "b"}') == {"swarm": "b", "manifest": None}
    assert "does not serve swarm 'c'" in service.answer(b'{"swarm": "c"}')["error"]
    for garbage in (b"", b"\xff\xfe", b"[1, 2]", b'{"swarm": 7}', b"[" * 10_000):
        assert "error" in service.answer(garbage)


def test_the_client_reads_a_cid_or_none_and_refuses_anything_else() -> None:
    assert parse_reply(json.dumps({"swarm": "a", "manifest": CID}).encode(), "b1", "a") == CID
    assert parse_reply(json.dumps({"swarm": "a", "manifest": None}).encode(), "b1", "a") is None
    hostile = {
        b"not json": "not JSON",
        b"[]": "not a JSON object",
        json.dumps({"error": "busy"}).encode(): "b1 refused the manifest request: busy",
        json.dumps({"swarm": "other", "manifest": CID}).encode(): "malformed",
        json.dumps({"swarm": "a", "manifest": 5}).encode(): "malformed",
        json.dumps({"swarm": "a", "manifest": "../../etc/passwd"}).encode(): "not a CID",
    }
    for data, message in hostile.items():
        with pytest.raises(ManifestOfferError, match=message):
            parse_reply(data, "b1", "a")
