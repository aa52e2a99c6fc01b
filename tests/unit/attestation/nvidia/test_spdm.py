"""attestation.nvidia.spdm: structure of synthetic SPDM 1.1 messages, strictness, garbage."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attestation.errors import AttestationError, ParseError
from attestation.nvidia.spdm import (
    OpaqueFieldType,
    parse_gpu_report,
    parse_measurements_request,
    parse_measurements_response,
)

NONCE = bytes(range(32))
SIG = b"\x5a" * 96
VBIOS_RAW = bytes.fromhex("009f009601000000")


def _response(spdm, blocks, opaque=b"", signature=SIG):
    return spdm.response(blocks, opaque=opaque) + signature


def test_signed_request_fields(spdm) -> None:
    req = parse_measurements_request(spdm.request(NONCE))
    assert (req.version, req.param1, req.operation, req.slot_id) == (0x11, 0x01, 0xFF, 0)
    assert req.nonce == NONCE
    assert req.signature_requested
    assert req.raw == spdm.request(NONCE)


def test_unsigned_request_has_no_nonce() -> None:
    req = parse_measurements_request(bytes([0x11, 0xE0, 0x00, 0x01]))
    assert req.nonce is None
    assert req.slot_id is None
    assert not req.signature_requested
    assert req.operation == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x11\xe0", "needs 4 bytes"),
        (bytes([0x11, 0xE0, 0x01, 0xFF]) + NONCE, "wanted 37"),
        (bytes([0x11, 0xE0, 0x00, 0xFF, 0x00]), "wanted 4"),
        (bytes([0x10, 0xE0, 0x00, 0xFF]), "version 0x10"),
        (bytes([0x11, 0x60, 0x00, 0xFF]), "request code 0x60"),
    ],
)
def test_request_refused(data: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_measurements_request(data)


def test_response_fields_and_opaque(spdm) -> None:
    opaque = (
        spdm.tlv(OpaqueFieldType.DRIVER_VERSION, b"550.90.07\x00")
        + spdm.tlv(OpaqueFieldType.VBIOS_VERSION, VBIOS_RAW)
        + spdm.tlv(0x7777, b"kept raw")
    )
    blocks = [spdm.block(1, b"\x01" * 48), spdm.block(7, b"raw", value_type=0x85)]
    resp = parse_measurements_response(_response(spdm, blocks, opaque))
    assert [b.index for b in resp.blocks] == [1, 7]
    assert resp.blocks[0].is_digest
    assert not resp.blocks[1].is_digest
    assert resp.block(7) is not None
    assert resp.block(7).value == b"raw"  # type: ignore[union-attr]
    assert resp.block(2) is None
    assert resp.driver_version == "550.90.07"
    assert resp.vbios_version == "96.00.9f.00.01"
    assert resp.opaque(0x7777) == b"kept raw"  # type: ignore[arg-type]
    assert resp.opaque(OpaqueFieldType.FWID) is None
    assert resp.nonce == b"\x22" * 32
    assert resp.signature == SIG
    assert resp.signed_part + SIG == _response(spdm, blocks, opaque)


def test_versions_absent_without_opaque(spdm) -> None:
    resp = parse_measurements_response(_response(spdm, [spdm.block(1, b"x")]))
    assert resp.driver_version is None
    assert resp.vbios_version is None
    assert resp.opaque_fields == ()


def test_gpu_report_splits_request_and_response(spdm) -> None:
    response = _response(spdm, [spdm.block(1, b"\x00" * 48)])
    report = parse_gpu_report(spdm.request(NONCE) + response)
    assert report.request.nonce == NONCE
    assert report.signed_bytes == spdm.request(NONCE) + response[:-96]


def test_gpu_report_needs_signed_request(spdm) -> None:
    unsigned = bytes([0x11, 0xE0, 0x00, 0xFF])
    with pytest.raises(ParseError, match="does not ask for a signature"):
        parse_gpu_report(unsigned + _response(spdm, [spdm.block(1, b"x")]))


def _mutate(data: bytes, offset: int, value: int) -> bytes:
    out = bytearray(data)
    out[offset] = value
    return bytes(out)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda s: b"\x11\x60\x00", "needs 8 bytes"),
        (lambda s: _mutate(_response(s, [s.block(1, b"x")]), 0, 0x12), "version 0x12"),
        (lambda s: _mutate(_response(s, [s.block(1, b"x")]), 1, 0xE0), "response code 0xe0"),
        (lambda s: _response(s, [s.block(1, b"x")])[:-1], "with a 96-byte signature"),
        (lambda s: _response(s, [s.block(1, b"x")]) + b"\x00", "with a 96-byte signature"),
        (lambda s: _response(s, [s.block(1, b"x")])[:40], "truncated"),
        (lambda s: _mutate(_response(s, [s.block(1, b"x")]), 4, 2), "header truncated"),
        (lambda s: _mutate(_response(s, [s.block(1, b"x"), s.block(2, b"y")]), 4, 1), "blocks use"),
        (lambda s: _response(s, [s.block(0, b"x")]), "index 0 is reserved"),
        (lambda s: _response(s, [s.block(255, b"x")]), "index 255 is reserved"),
        (lambda s: _response(s, [s.block(3, b"x"), s.block(3, b"y")]), "appears twice"),
        (lambda s: _mutate(_response(s, [s.block(1, b"x")]), 9, 0x02), "specification 0x02"),
        (lambda s: _mutate(_response(s, [s.block(1, b"xy")]), 13, 5), "value size 5"),
        (lambda s: _response(s, [bytes([1, 1, 2, 0, 1, 0])]), "size 2"),
        (lambda s: _response(s, [s.block(1, b"x")], opaque=b"\x03\x00\x05"), "TLV header"),
        (lambda s: _response(s, [s.block(1, b"x")], opaque=b"\x03\x00\x05\x00ab"), "length 5"),
        (
            lambda s: _response(s, [s.block(1, b"x")], opaque=s.tlv(9, b"a") + s.tlv(9, b"b")),
            "twice",
        ),
        (lambda s: _response(s, [s.block(1, b"x")], opaque=s.tlv(20, b"\x00" * 1021)), "1024"),
        (lambda s: _response(s, [s.block(1, b"x")], opaque=s.tlv(6, b"\x00" * 7)), "VBIOS"),
        (lambda s: _response(s, [s.block(1, b"x")], opaque=s.tlv(3, b"5\x00.1")), "NUL inside"),
        (lambda s: _response(s, [s.block(1, b"x")], opaque=s.tlv(3, b"\xff\x00")), "not ASCII"),
    ],
)
def test_response_refused(spdm, build, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_measurements_response(build(spdm))


@given(st.binary(max_size=600))
def test_garbage_request_raises_only_our_errors(data: bytes) -> None:
    with contextlib.suppress(AttestationError):
        parse_measurements_request(data)


@given(st.binary(max_size=600))
def test_garbage_response_raises_only_our_errors(data: bytes) -> None:
    with contextlib.suppress(AttestationError):
        parse_measurements_response(data)


@given(st.binary(max_size=600))
def test_garbage_report_raises_only_our_errors(data: bytes) -> None:
    with contextlib.suppress(AttestationError):
        parse_gpu_report(data)


@given(data=st.data())
def test_structured_garbage_raises_only_our_errors(spdm, data) -> None:
    """Well-framed messages with random fields reach the inner checks, not just the first."""
    blocks = data.draw(
        st.lists(
            st.builds(
                lambda i, v, t: spdm.block(i, v, value_type=t),
                st.integers(0, 255),
                st.binary(max_size=60),
                st.integers(0, 255),
            ),
            max_size=5,
        )
    )
    opaque = data.draw(st.binary(max_size=40))
    raw = bytearray(spdm.request(NONCE) + _response(spdm, blocks, opaque))
    for _ in range(data.draw(st.integers(0, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    with contextlib.suppress(AttestationError):
        parse_gpu_report(bytes(raw))
