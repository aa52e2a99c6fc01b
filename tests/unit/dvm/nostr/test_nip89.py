"""NIP-89 kind-31990 handler announcement: round trips, both encryption spellings, garbage."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dvm.nostr.errors import CodecError, NostrError
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip89 import Handler, ModelInfo, build_handler, handler_address, parse_handler

NODE = SecretKey(b"\x05" * 32)
AUX = bytes(32)
T = 1_700_000_000
MODEL = ModelInfo("gemma-3-270m", "llama-cpp", "ab" * 32)


def _handler(**overrides: Any) -> Handler:
    fields: dict[str, Any] = {
        "identifier": "cdvm-node-1",
        "kinds": (5050,),
        "name": "Confidential DVM",
        "about": "AI jobs in SEV-SNP confidential containers",
        "nip90_params": {"model": {"required": True, "values": ["gemma-3-270m"]}},
        "tee": ("sev-snp", "sev-snp+nvidia-h100"),
        "models": (MODEL,),
    }
    fields.update(overrides)
    return Handler(**fields)


def _signed(tags: list[list[str]], content: str | dict[str, Any]) -> Event:
    text = content if isinstance(content, str) else json.dumps(content)
    return UnsignedEvent(NODE.public_key.hex(), T, 31990, tags, text).sign(NODE, aux_rand=AUX)


def test_round_trip() -> None:
    handler = _handler(kinds=(5050, 5051))
    event = build_handler(handler, author_hex=NODE.public_key.hex(), created_at=T).sign(
        NODE, aux_rand=AUX
    )
    assert event.tags == (("d", "cdvm-node-1"), ("k", "5050"), ("k", "5051"))
    parsed = parse_handler(Event.from_json(event.to_json()))
    assert parsed == handler
    assert parsed.event == event
    assert parsed.address == f"31990:{NODE.public_key.hex()}:cdvm-node-1"
    assert handler.address is None


def test_both_encryption_spellings_are_emitted() -> None:
    event = build_handler(_handler(), author_hex=NODE.public_key.hex(), created_at=T)
    body = json.loads(event.content)
    assert body["encryptionSupported"] is True
    assert body["supportsEncryption"] is True
    assert body["tee"] == ["sev-snp", "sev-snp+nvidia-h100"]
    assert body["models"] == [{"name": "gemma-3-270m", "runner": "llama-cpp", "sha256": "ab" * 32}]


@pytest.mark.parametrize("key", ["encryptionSupported", "supportsEncryption"])
def test_either_encryption_spelling_is_accepted(key: str) -> None:
    parsed = parse_handler(_signed([["d", "x"], ["k", "5050"]], {"name": "n", key: True}))
    assert parsed.encryption_supported is True


def test_a_generic_nip89_dvm_handler_parses() -> None:
    parsed = parse_handler(
        _signed(
            [["d", "x"], ["k", "5005"], ["t", "bitcoin"]],
            {"name": "Translating DVM", "about": "I translate."},
        )
    )
    assert (parsed.kinds, parsed.tee, parsed.models) == ((5005,), (), ())
    assert parsed.encryption_supported is False


@settings(max_examples=40, deadline=None)
@given(
    kinds=st.lists(st.integers(5000, 5999), min_size=1, max_size=4, unique=True),
    name=st.text(max_size=30),
    about=st.text(max_size=60),
    tee=st.lists(st.text(min_size=1, max_size=20), max_size=3, unique=True),
    flag=st.booleans(),
)
def test_round_trips(kinds: list[int], name: str, about: str, tee: list[str], flag: bool) -> None:
    handler = _handler(
        kinds=tuple(kinds), name=name, about=about, tee=tuple(tee), encryption_supported=flag
    )
    event = build_handler(handler, author_hex=NODE.public_key.hex(), created_at=T).sign(
        NODE, aux_rand=AUX
    )
    assert parse_handler(event) == handler


@pytest.mark.parametrize(
    ("tags", "content", "message"),
    [
        ([["k", "5050"]], {"name": "n"}, "exactly one \\['d', identifier\\]"),
        ([["d", "a"], ["d", "b"], ["k", "5050"]], {"name": "n"}, "exactly one \\['d'"),
        ([["d", "a"]], {"name": "n"}, "at least one 'k' tag"),
        ([["d", "a"], ["k", "50x"]], {"name": "n"}, "'k' tag must be"),
        ([["d", "a"], ["k", "65536"]], {"name": "n"}, "'k' tag must be"),
        ([["d", "a"], ["k", "5050"], ["k", "5050"]], {"name": "n"}, "announced twice"),
        ([["d", "a"], ["k", "5050"]], "not json", "not JSON"),
        ([["d", "a"], ["k", "5050"]], "[1]", "must be a JSON object"),
        ([["d", "a"], ["k", "5050"]], {"about": "x"}, "lacks 'name'"),
        ([["d", "a"], ["k", "5050"]], {"name": 1}, "'name' must be a string"),
        ([["d", "a"], ["k", "5050"]], {"name": "n", "encryptionSupported": "yes"}, "boolean"),
        (
            [["d", "a"], ["k", "5050"]],
            {"name": "n", "encryptionSupported": True, "supportsEncryption": False},
            "disagree",
        ),
        ([["d", "a"], ["k", "5050"]], {"name": "n", "nip90Params": []}, "JSON object"),
        ([["d", "a"], ["k", "5050"]], {"name": "n", "tee": "sev-snp"}, "list of non-empty"),
        ([["d", "a"], ["k", "5050"]], {"name": "n", "tee": ["a", "a"]}, "twice"),
        ([["d", "a"], ["k", "5050"]], {"name": "n", "models": {}}, "must be a list"),
        ([["d", "a"], ["k", "5050"]], {"name": "n", "models": ["m"]}, "JSON object"),
        ([["d", "a"], ["k", "5050"]], {"name": "n", "models": [{"name": "m"}]}, "string 'name'"),
        (
            [["d", "a"], ["k", "5050"]],
            {"name": "n", "models": [{"name": "m", "runner": "r", "sha256": "AB" * 32}]},
            "64 lowercase hex",
        ),
    ],
)
def test_refusals(tags: list[list[str]], content: Any, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        parse_handler(_signed(tags, content))


def test_refuses_another_kind() -> None:
    event = UnsignedEvent(NODE.public_key.hex(), T, 31989, [["d", "5050"]], "").sign(
        NODE, aux_rand=AUX
    )
    with pytest.raises(CodecError, match="not a handler announcement"):
        parse_handler(event)


def test_builder_refuses_no_kinds() -> None:
    with pytest.raises(CodecError, match="at least one kind"):
        build_handler(_handler(kinds=()), author_hex=NODE.public_key.hex(), created_at=T)


def test_handler_address() -> None:
    assert handler_address("ab" * 32, "x:y") == "31990:" + "ab" * 32 + ":x:y"


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda c: (
        st.lists(c, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "name",
                    "about",
                    "tee",
                    "models",
                    "nip90Params",
                    "encryptionSupported",
                    "supportsEncryption",
                    "runner",
                    "sha256",
                    "x",
                ]
            ),
            c,
            max_size=6,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(
    body=_JSON,
    tags=st.lists(
        st.lists(st.sampled_from(["d", "k", "5050", "x", "0"]), min_size=1, max_size=3), max_size=5
    ),
)
def test_garbage_raises_only_our_errors(body: Any, tags: list[list[str]]) -> None:
    with contextlib.suppress(NostrError):  # anything else fails the test
        parse_handler(_signed(tags, json.dumps(body)))
