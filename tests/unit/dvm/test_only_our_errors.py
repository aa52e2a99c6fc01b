"""Every parser of network input in ``dvm`` raises only the project's errors (issue 10).

The event-level codecs (NIP-90 requests, results and feedback, NIP-89 handlers, NIP-09
deletions, NIP-42 AUTH, NIP-13 proof of work, NIP-17 chat rumors, cdvm/1 kind 7100 and 37100,
channel messages and chunk tags) take a *verified* event, so what a stranger controls is its
kind, tags and content. Here the content is hostile JSON text (``tests.strategies``: escaped
lone surrogates, 5,000-digit numbers, ``NaN``, deep nesting, repeated keys, wrong types) or an
object shaped like the real content with hostile fields, and the tags carry hostile values
(huge decimals, negative and non-decimal numbers, wrong arity). NIP-11 documents are hostile
bytes. Each parser may accept or refuse; it must never raise anything but ``NostrError`` (or
``RelayError`` for NIP-11).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dvm.cdvm.channel import parse_channel_rumor
from dvm.cdvm.chunks import parse_chunk_tag
from dvm.cdvm.kind7100 import ATTESTATION_KIND, parse_attestation
from dvm.cdvm.refs import REFERENCE_VALUES_KIND, parse_reference_event
from dvm.nostr.errors import NostrError
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip09 import DELETION_KIND, parse_deletion
from dvm.nostr.nip13 import check_pow
from dvm.nostr.nip17 import parse_chat_rumor
from dvm.nostr.nip42 import AUTH_KIND, check_auth_event
from dvm.nostr.nip89 import HANDLER_KIND, parse_handler
from dvm.nostr.nip90 import FEEDBACK_KIND, parse_job_feedback, parse_job_request, parse_job_result
from dvm.nostr.strict_json import has_surrogate
from dvm.relay.errors import RelayError
from dvm.relay.nip11 import parse_relay_information
from tests.strategies import hostile_json, hostile_object, hostile_value

KEY = SecretKey(bytes.fromhex("3c" * 32))
HEX = "ab" * 32
PUB = KEY.public_key.hex()

_TAG_NAMES = [
    "e", "p", "i", "param", "request", "amount", "d", "k", "chunk", "cdvm", "expiration",
    "tee", "provider", "status", "nonce", "encrypted", "relays", "a", "relay", "challenge",
    "subject", "model", "output", "bid", "result-to", "t",
]  # fmt: skip
_TAG_VALUES = st.one_of(
    st.sampled_from([HEX, PUB, "0", "1", "-1", "9" * 25, "9" * 5000, "1e400", "NaN", ""]),
    st.sampled_from(["wss://r.example", "ws://127.0.0.1:1", "5050:" + PUB + ":x", "final"]),
    st.sampled_from(["partial", "input", "output", "end", "ready", "error", "text", "json"]),
    st.text(max_size=16),
    hostile_value.filter(lambda v: len(v) < 2000 and not has_surrogate(v)),
)
_TAGS = st.lists(
    st.builds(
        lambda name, values: (name, *values),
        st.sampled_from(_TAG_NAMES),
        st.lists(_TAG_VALUES, max_size=4),
    ),
    max_size=8,
)
_CONTENT = st.one_of(
    hostile_json().filter(lambda t: isinstance(t, str) and not has_surrogate(t)),
    hostile_object(
        {
            "v": st.just("1"),
            "claims": st.just("{}"),
            "evidence": st.just('[{"type":"simulated"}]'),
            "initdata": st.just("null"),
        }
    ),
    hostile_object({"name": st.just('"n"'), "about": st.just('"a"'), "nip90Params": st.just("{}")}),
    hostile_object({"v": st.just("1"), "tee": st.just('"simulated"'), "runtime": st.just("{}")}),
    st.text(max_size=64),
)
_KINDS = st.sampled_from(
    [
        *(5050, 5100, 6050, FEEDBACK_KIND, ATTESTATION_KIND, REFERENCE_VALUES_KIND),
        *(HANDLER_KIND, DELETION_KIND, AUTH_KIND, 14, 13, 1059),
    ]
)


def _event(kind: int, tags: list[tuple[str, ...]], content: str) -> Event:
    return UnsignedEvent(PUB, 1_700_000_000, kind, tuple(tags), content).sign(
        KEY, aux_rand=bytes(32)
    )


_PARSERS: list[Callable[[Event], Any]] = [
    parse_job_request,
    parse_job_result,
    parse_job_feedback,
    parse_handler,
    parse_deletion,
    parse_attestation,
    parse_reference_event,
    lambda e: check_auth_event(e, relay_url="ws://r", challenge="c", now=1_700_000_000),
    lambda e: check_pow(e, 8),
    lambda e: parse_chat_rumor(e.unsigned()),
    lambda e: parse_channel_rumor(e.unsigned(), job=HEX, recipient=KEY.public_key),
    lambda e: parse_chunk_tag(e.tags),
]


@settings(max_examples=300, deadline=None)
@given(_KINDS, _TAGS, _CONTENT)
def test_event_codecs_raise_only_nostr_errors(
    kind: int, tags: list[tuple[str, ...]], content: str
) -> None:
    event = _event(kind, tags, content)
    for parse in _PARSERS:
        with contextlib.suppress(NostrError):
            parse(event)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        hostile_json(),
        hostile_object(
            {
                "name": st.just('"relay"'),
                "supported_nips": st.just("[1,11,42]"),
                "limitation": st.just('{"max_message_length":65536,"auth_required":false}'),
                "software": st.just('"x"'),
            }
        ),
    )
)
def test_nip11_documents_raise_only_relay_errors(document: str | bytes) -> None:
    body = document if isinstance(document, bytes) else document.encode("utf-8", "surrogatepass")
    with contextlib.suppress(RelayError):
        info = parse_relay_information(body)
        for text in (info.name, info.software, info.version):
            assert text is None or not has_surrogate(text)
