"""attestation.initdata: the generic CoCo initdata document, its annotation and HOST_DATA.

cdvm/1's own document (job, provider, image, agent policy) is tested with its module,
tests/unit/dvm/cdvm/test_pod_contract.py.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attestation.binding import host_data_for_initdata
from attestation.errors import AttestationError, BindingMismatch, ParseError
from attestation.initdata import (
    ANNOTATION,
    decode_initdata_annotation,
    encode_initdata_annotation,
    expected_host_data,
    parse_initdata,
    verify_initdata,
)


def _doc(value: str = "v") -> bytes:
    return (
        'version = "0.1.0"\nalgorithm = "sha256"\n\n[data]\n'
        f"k = \"{value}\"\n\"policy.rego\" = '''\npackage agent_policy\n'''\n"
    ).encode()


def test_annotation_is_deterministic() -> None:
    assert encode_initdata_annotation(_doc()) == encode_initdata_annotation(_doc())


def test_annotation_decodes_back_to_the_toml() -> None:
    doc = _doc()
    value = encode_initdata_annotation(doc)
    assert ANNOTATION == "io.katacontainers.config.hypervisor.cc_init_data"
    # Decoded independently of our decoder: standard base64, then gzip.
    assert gzip.decompress(base64.b64decode(value, validate=True)) == doc
    assert decode_initdata_annotation(value) == doc
    # Kata strips whitespace before decoding; so do we.
    wrapped = "\n".join(value[i : i + 60] for i in range(0, len(value), 60))
    assert decode_initdata_annotation(wrapped) == doc


def test_host_data_is_sha256_of_the_toml_as_the_client_expects() -> None:
    doc = _doc()
    assert expected_host_data(doc) == hashlib.sha256(doc).digest()
    assert expected_host_data(doc) == host_data_for_initdata(doc)
    assert len(expected_host_data(doc)) == 32


@pytest.mark.parametrize(
    ("algorithm", "fitted"),
    [
        ("sha384", lambda b: hashlib.sha384(b).digest()[:32]),
        ("sha512", lambda b: hashlib.sha512(b).digest()[:32]),
    ],
)
def test_longer_digests_are_truncated_as_kata_does(algorithm: str, fitted: Any) -> None:
    doc = f'version = "0.1.0"\nalgorithm = "{algorithm}"\n[data]\nk = "v"\n'.encode()
    assert expected_host_data(doc) == fitted(doc)


def test_verify_initdata_accepts_only_the_expected_bytes() -> None:
    verify_initdata(_doc(), expected=_doc())
    with pytest.raises(BindingMismatch, match=r"keys that differ: \['k'\]"):
        verify_initdata(_doc("w"), expected=_doc())
    # Same data, other bytes (a comment): HOST_DATA differs, so the document is refused.
    with pytest.raises(BindingMismatch, match="differs from the expected document"):
        verify_initdata(b"# comment\n" + _doc(), expected=_doc())
    assert parse_initdata(_doc()).policy == "package agent_policy\n"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (b'version = "0.2.0"\nalgorithm = "sha256"\n', "version"),
        (b'version = "0.1.0"\nalgorithm = "md5"\n', "algorithm"),
        (b'version = "0.1.0"\nalgorithm = "sha256"\n[data]\nk = 1\n', "strings"),
        (b'version = "0.1.0"\nalgorithm = "sha256"\nextra = 1\n', "unknown"),
        (b"\xff\xfe", "UTF-8 TOML"),
        (b"version = ", "UTF-8 TOML"),
    ],
)
def test_parse_refuses_malformed_documents(doc: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_initdata(doc)


def test_annotation_decoder_refuses_non_gzip_and_bombs() -> None:
    with pytest.raises(ParseError, match="base64"):
        decode_initdata_annotation("not base64!")
    with pytest.raises(ParseError, match="gzip"):
        decode_initdata_annotation(base64.b64encode(b"plain text").decode())
    bomb = base64.b64encode(gzip.compress(b"#" * (200 * 1024))).decode()
    with pytest.raises(ParseError, match="inflates"):
        decode_initdata_annotation(bomb)
    truncated = base64.b64encode(gzip.compress(_doc())[:-12]).decode()
    with pytest.raises(ParseError, match="truncated"):
        decode_initdata_annotation(truncated)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_garbage_documents_raise_only_our_errors(blob: bytes) -> None:
    with contextlib.suppress(AttestationError):
        parse_initdata(blob)
        expected_host_data(blob)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.text(max_size=256), st.binary(max_size=256).map(lambda b: base64.b64encode(b).decode())
    )
)
def test_garbage_annotations_raise_only_our_errors(value: str) -> None:
    with contextlib.suppress(AttestationError):
        decode_initdata_annotation(value)
