from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dvm.relay.errors import Nip11Error
from dvm.relay.nip11 import RelayLimits, http_url_for, parse_http_response, parse_relay_information

DOC = (
    b'{"name":"r","supported_nips":[1,11,42,"x"],"software":"s","version":"1",'
    b'"limitation":{"max_message_length":65536,"max_subscriptions":20,'
    b'"max_content_length":"lots","auth_required":true}}'
)


def test_parse_document_is_tolerant_of_bad_fields() -> None:
    info = parse_relay_information(DOC)
    assert info.name == "r"
    assert info.supported_nips == (1, 11, 42)
    assert info.limits == RelayLimits(
        max_message_length=65536, max_subscriptions=20, max_content_length=None, auth_required=True
    )


def test_override_wins_field_by_field() -> None:
    base = RelayLimits(max_message_length=10, max_subscriptions=3)
    assert base.overridden_by(RelayLimits(max_message_length=99)) == RelayLimits(99, 3)
    assert base.overridden_by(None) is base


def test_http_bodies() -> None:
    assert parse_http_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}junk") == b"{}"
    chunked = (
        b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{"\r\n4\r\na":1\r\n0\r\n\r\n'
    )
    assert parse_http_response(chunked) == b'{"a":1'
    assert parse_http_response(b"HTTP/1.0 200 OK\r\n\r\n{}") == b"{}"
    with pytest.raises(Nip11Error, match="HTTP 404"):
        parse_http_response(b"HTTP/1.1 404 Not Found\r\n\r\n")


def test_ws_url_to_http() -> None:
    assert http_url_for("ws://127.0.0.1:7447") == ("127.0.0.1:7447", "127.0.0.1", 7447, "/", False)
    assert http_url_for("wss://relay.example/x?y=1")[1:] == ("relay.example", 443, "/x?y=1", True)
    with pytest.raises(Nip11Error):
        http_url_for("https://relay.example")


@given(st.binary(max_size=300))
def test_garbage_http_raises_only_nip11_error(raw: bytes) -> None:
    with contextlib.suppress(Nip11Error):
        parse_http_response(raw)


@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_garbage_documents_raise_only_nip11_error(raw: bytes) -> None:
    with contextlib.suppress(Nip11Error):
        parse_relay_information(raw)
