"""dvm.nostr.strict_json: one strict loader; JsonError and nothing else, for any input."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dvm.nostr.errors import JsonError, NostrError
from dvm.nostr.strict_json import MAX_INT_DIGITS, has_surrogate, parse_json
from tests.strategies import LONE_SURROGATE_ESCAPES, deep_nesting, hostile_json

# --- known answers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('{"a":[1,2.5,"x",null,true,false]}', {"a": [1, 2.5, "x", None, True, False]}),
        ('"\\ud83d\\ude00"', "\U0001f600"),  # a valid surrogate pair is one code point
        ('"caf\u00e9 \\u00e9"', "caf\u00e9 \u00e9"),
        (b'["\xc3\xa9"]', ["\u00e9"]),
        ("-" + "9" * (MAX_INT_DIGITS - 1), -int("9" * (MAX_INT_DIGITS - 1))),
        ('"\\\\ud800"', "\\ud800"),  # an escaped backslash, then plain text: not a surrogate
        (deep_nesting(31), json.loads(deep_nesting(31))),
        ("1e308", 1e308),
    ],
)
def test_valid_json_parses_like_json_loads(text: str | bytes, value: Any) -> None:
    assert parse_json(text) == value


@pytest.mark.parametrize("escape", LONE_SURROGATE_ESCAPES)
def test_lone_surrogate_escapes_are_refused(escape: str) -> None:
    with pytest.raises(JsonError, match="lone surrogate"):
        parse_json(escape)
    with pytest.raises(JsonError, match="lone surrogate"):
        parse_json('{"tags":[["p",' + escape + "]]}")
    with pytest.raises(JsonError, match="lone surrogate"):
        parse_json("{" + escape + ":1}")  # as a key


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('"\ud800"', "not valid Unicode"),  # a raw lone surrogate in a str
        (b'"\xff"', "not UTF-8"),
        (b'"\xed\xa0\x80"', "not UTF-8"),  # CESU-style surrogate bytes
        ("[1]".encode("utf-16"), "not UTF-8"),
        ("NaN", "non-finite"),
        ('{"kind":Infinity}', "non-finite"),
        ("[-Infinity]", "non-finite"),
        ("1e400", "overflows"),
        ("-1e400", "overflows"),
        ("9" * (MAX_INT_DIGITS + 1), "too long"),
        ("9" * 5000, "too long"),  # past sys.int_max_str_digits
        ("0." + "0" * 100 + "1", "too long"),
        (deep_nesting(33), "nesting deeper"),
        (deep_nesting(20000), "not valid JSON"),  # RecursionError in the C scanner
        (deep_nesting(3000, opener='{"a":', closer="}"), "not valid JSON"),
        ('{"a":1,"a":1}', "repeats a key"),
        ('{"kind":13', "not valid JSON"),
        ("", "not valid JSON"),
        ("[1] [2]", "not valid JSON"),
    ],
)
def test_hostile_text_is_refused_with_its_reason(text: str | bytes, reason: str) -> None:
    with pytest.raises(JsonError, match=reason):
        parse_json(text)


def test_size_is_checked_before_parsing() -> None:
    with pytest.raises(JsonError, match="exceeds 8"):
        parse_json(b'"123456789"', max_bytes=8)
    with pytest.raises(JsonError, match="exceeds 8"):
        parse_json('"123456789"', max_bytes=8)
    with pytest.raises(JsonError, match="exceeds 8"):
        parse_json('"\u00e9\u00e9\u00e9\u00e9"', max_bytes=8)  # 6 chars, 10 bytes
    assert parse_json('"\u00e9\u00e9\u00e9"', max_bytes=8) == "\u00e9\u00e9\u00e9"


def test_depth_bound_is_a_parameter() -> None:
    assert parse_json("[[1]]", max_depth=2) == [[1]]
    with pytest.raises(JsonError, match="deeper than 1"):
        parse_json("[[1]]", max_depth=1)


def test_non_text_input_is_refused() -> None:
    with pytest.raises(JsonError):
        parse_json(5)  # type: ignore[arg-type]


def test_messages_never_quote_the_text() -> None:
    secret = "canary-8d1f"
    for text in (f'["{secret}"', f'{{"{secret}":1,"{secret}":2}}', f'["{secret}",NaN]'):
        with pytest.raises(JsonError) as caught:
            parse_json(text)
        assert secret not in str(caught.value)


def test_has_surrogate() -> None:
    assert has_surrogate("a\udc00")
    assert not has_surrogate("a\U0001f600")
    assert not has_surrogate("ascii")


# --- hypothesis: only JsonError, and agreement with json.loads on what it accepts ----------


@given(hostile_json())
def test_any_text_raises_only_json_error(text: str | bytes) -> None:
    try:
        value = parse_json(text)
    except JsonError:
        return
    # Whatever is accepted is plain, re-encodable JSON.
    json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**19), max_value=10**19)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children),
    max_leaves=12,
)


@given(json_values)
def test_every_plain_json_value_round_trips(value: Any) -> None:
    text = json.dumps(value, ensure_ascii=False)
    with contextlib.suppress(UnicodeEncodeError):
        text.encode("utf-8")
        assert parse_json(text) == value
        assert parse_json(json.dumps(value)) == value  # ASCII escapes of the same text


def test_json_error_is_a_nostr_error() -> None:
    assert issubclass(JsonError, NostrError)
