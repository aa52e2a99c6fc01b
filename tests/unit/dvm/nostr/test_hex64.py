"""dvm.nostr.hex64: exactly 64 lowercase hex characters, nothing else."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dvm.nostr.hex64 import HEX64_PATTERN, is_hex64


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("0" * 64, True),
        ("0123456789abcdef" * 4, True),
        ("A" * 64, False),  # uppercase: two spellings would be two ids
        ("a" * 63, False),
        ("a" * 65, False),
        ("a" * 64 + "\n", False),  # fullmatch: no trailing newline slips through
        ("g" * 64, False),
        ("\u0660" * 64, False),  # non-ASCII digits (ARABIC-INDIC ZERO)
        (b"a" * 64, False),
        (None, False),
        (64, False),
    ],
)
def test_is_hex64(value: object, ok: bool) -> None:
    assert is_hex64(value) is ok


@given(st.binary(min_size=32, max_size=32))
def test_every_32_byte_value_hex_encoded_is_hex64(raw: bytes) -> None:
    assert is_hex64(raw.hex())
    assert re.fullmatch(HEX64_PATTERN, raw.hex())


@given(st.text(max_size=70))
def test_agrees_with_the_definition(value: str) -> None:
    expected = len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    assert is_hex64(value) is expected
