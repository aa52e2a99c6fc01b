"""Hypothesis strategies for hostile JSON *text* (issue 10: "only our errors, ever").

``json.dumps`` never writes a lone surrogate escape, a 5,000-digit integer, ``1e400``, a
duplicate key or 10,000 levels of nesting, so strategies built on Python values never reach the
parser paths that broke. These build the raw text instead, mixing valid JSON with every feature
a hostile peer or relay can send:

* lone surrogates, as JSON escapes (``"\\ud800"``, ``"\\udfff"``, a high half without its low
  half) and as raw characters in a ``str``;
* bytes that are not UTF-8, and UTF-16 text;
* deep nesting (up to 5,000 levels: past the interpreter's recursion limit);
* integers of up to 5,000 digits (past ``sys.int_max_str_digits``), floats that overflow;
* ``NaN``, ``Infinity`` and ``-Infinity`` literals;
* duplicate keys, wrong types, truncated text.

:func:`hostile_json` is any of those as text; :func:`hostile_object` is a JSON object with the
given keys whose values are hostile (so field-level checks past the loader are reached);
:func:`hostile_event` is an event-shaped object built from a real one, some fields hostile;
:func:`json_frames` wraps hostile values into relay or client message arrays. Import them as
``from tests.strategies import hostile_json`` (pytest runs with ``--import-mode=importlib`` from
the repository root).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from hypothesis import strategies as st

__all__ = [
    "LONE_SURROGATE_ESCAPES",
    "deep_nesting",
    "hostile_event",
    "hostile_json",
    "hostile_leaf",
    "hostile_object",
    "hostile_value",
    "json_frames",
]

LONE_SURROGATE_ESCAPES = (
    '"\\ud800"',
    '"\\udfff"',
    '"\\uDBFF"',
    '"abc\\ud83d"',  # a high half at the end
    '"\\ud83dx"',  # a high half followed by something else
    '"\\ude00\\ud83d"',  # the halves in the wrong order
    '"\\ud800\\ud800"',
)

_NUMBER_TOKENS = (
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "-1e400",
    "1E+999",
    "18446744073709551616",
    "-9223372036854775809",
    "0.0000000000000000000000000000000001",
    "1.5",
    "-0",
    "0",
)


def _big_int(digits: int) -> str:
    return "9" * digits


def deep_nesting(depth: int, *, opener: str = "[", closer: str = "]", inner: str = "1") -> str:
    """``depth`` levels of arrays (or ``{"a":`` objects) around ``inner``."""
    return opener * depth + inner + closer * depth


def _json_str(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


#: One hostile token: each is valid JSON syntax for Python's lenient parser, or very nearly.
hostile_leaf = st.one_of(
    st.sampled_from(LONE_SURROGATE_ESCAPES),
    st.sampled_from(_NUMBER_TOKENS),
    st.integers(min_value=20, max_value=5000).map(_big_int),
    st.integers(min_value=1, max_value=5000).map(deep_nesting),
    st.integers(min_value=1, max_value=2000).map(
        lambda d: deep_nesting(d, opener='{"a":', closer="}")
    ),
    st.sampled_from(["null", "true", "false", "[]", "{}", '""', '"x"', "[[]]", '[""]', '[["p"]]']),
    st.text(max_size=12).map(_json_str),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(['{"a":1,"a":2}', '{"k":"v","k":"v"}']),
)


def _join_array(items: Sequence[str]) -> str:
    return "[" + ",".join(items) + "]"


def _join_object(pairs: Sequence[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{key}:{value}" for key, value in pairs) + "}"


_keys = st.one_of(
    st.text(max_size=8).map(_json_str),
    st.sampled_from(['"id"', '"pubkey"', '"kind"', '"tags"', '"content"', '"sig"', '"v"']),
    st.sampled_from(LONE_SURROGATE_ESCAPES),
)

#: A JSON value whose leaves are hostile tokens, as text.
hostile_value: st.SearchStrategy[str] = st.recursive(
    hostile_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(_join_array),
        st.lists(st.tuples(_keys, children), max_size=4).map(_join_object),
    ),
    max_leaves=8,
)


def _raw_surrogate(text: str, position: int, code: int) -> str:
    cut = position % (len(text) + 1)
    return text[:cut] + chr(code) + text[cut:]


def _truncate(text: str, keep: int) -> str:
    return text[: keep % (len(text) + 1)]


def hostile_json() -> st.SearchStrategy[str | bytes]:
    """Hostile JSON text: ``str`` (escaped or raw surrogates, truncated) or ``bytes``."""
    return st.one_of(
        hostile_value,
        st.builds(
            _raw_surrogate,
            hostile_value,
            st.integers(min_value=0),
            st.integers(min_value=0xD800, max_value=0xDFFF),
        ),
        st.builds(_truncate, hostile_value, st.integers(min_value=0)),
        hostile_value.map(lambda t: t.encode("utf-8", "surrogatepass")),
        hostile_value.map(lambda t: t.encode("utf-16", "surrogatepass")),
        st.builds(
            lambda t, bad: t.encode("utf-8", "surrogatepass") + bad,
            hostile_value,
            st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"]),
        ),
        st.binary(max_size=64),
    )


def hostile_object(
    fields: dict[str, st.SearchStrategy[str]], *, extra: bool = True
) -> st.SearchStrategy[str]:
    """A JSON object with exactly ``fields`` (name -> strategy of *valid* value text); each
    value is its valid text, a hostile value or a lone surrogate string, so checks past the
    loader are reached."""
    names = sorted(fields)

    def render(values: list[str], more: list[tuple[str, str]]) -> str:
        pairs = [(_json_str(name), value) for name, value in zip(names, values, strict=True)]
        return _join_object([*pairs, *more])

    return st.builds(
        render,
        st.tuples(
            *(
                st.one_of(fields[name], hostile_value, st.sampled_from(LONE_SURROGATE_ESCAPES))
                for name in names
            )
        ).map(list),
        st.lists(st.tuples(_keys, hostile_value), max_size=2 if extra else 0),
    )


def json_frames(types: Sequence[str]) -> st.SearchStrategy[str]:
    """``[type, hostile...]`` message arrays, with ``type`` one of ``types``."""
    return st.builds(
        lambda head, rest: _join_array([_json_str(head), *rest]),
        st.sampled_from(list(types)),
        st.lists(hostile_value, max_size=4),
    )


def hostile_event(template: Mapping[str, object]) -> st.SearchStrategy[str | bytes]:
    """An object shaped like ``template`` (a real event's dict), each field kept or made
    hostile, rendered as text (or as UTF-8 bytes); mixed with :func:`hostile_json`. The fields
    that trip a later stage (a surrogate in ``content`` reaching the id serialisation) are
    reached only this way."""
    fields = {
        name: st.just(json.dumps(value, ensure_ascii=False)) for name, value in template.items()
    }
    shaped = hostile_object(fields, extra=False)
    return st.one_of(shaped, shaped.map(lambda t: t.encode("utf-8", "surrogatepass")))
