from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dvm.nostr.errors import MessageError
from dvm.nostr.event import UnsignedEvent
from dvm.nostr.filters import Filter
from dvm.nostr.keys import SecretKey

KEY = SecretKey(bytes.fromhex("33" * 32))
EVENT = UnsignedEvent(KEY.public_key.hex(), 100, 5050, (("p", "ab"), ("e", "cd")), "").sign(
    KEY, aux_rand=bytes(32)
)


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (Filter(), True),
        (Filter(kinds=(5050, 1)), True),
        (Filter(kinds=(1,)), False),
        (Filter(authors=(EVENT.pubkey,)), True),
        (Filter(authors=("0" * 64,)), False),
        (Filter(ids=(EVENT.id,)), True),
        (Filter(since=100, until=100), True),
        (Filter(since=101), False),
        (Filter(until=99), False),
        (Filter(tags=(Filter.tag("p", ["zz", "ab"]),)), True),
        (Filter(tags=(Filter.tag("p", ["ab"]), Filter.tag("e", ["no"]))), False),
        (Filter(tags=(Filter.tag("x", ["ab"]),)), False),
    ],
)
def test_matching(flt: Filter, expected: bool) -> None:
    assert flt.matches(EVENT) is expected


def test_with_since_narrows_only() -> None:
    assert Filter(since=50).with_since(40).since == 50
    assert Filter(since=50).with_since(60).since == 60
    assert Filter().with_since(7) == Filter(since=7)


@pytest.mark.parametrize(
    "data",
    [
        {"ids": ["ab"]},
        {"authors": "x"},
        {"kinds": [70000]},
        {"kinds": [True]},
        {"since": -1},
        {"limit": "3"},
        {"#pp": ["a"]},
        {"#p": [1]},
        {"search": "words"},
    ],
)
def test_bad_filters(data: dict[str, object]) -> None:
    with pytest.raises(MessageError):
        Filter.from_dict(data)


hex64 = st.text("0123456789abcdef", min_size=64, max_size=64)
filters = st.builds(
    Filter,
    ids=st.none() | st.lists(hex64, max_size=2).map(tuple),
    authors=st.none() | st.lists(hex64, max_size=2).map(tuple),
    kinds=st.none() | st.lists(st.integers(0, 65535), max_size=3).map(tuple),
    tags=st.dictionaries(
        st.sampled_from("abcdepqtz"),
        st.lists(st.text(max_size=5), max_size=3).map(tuple),
        max_size=2,
    ).map(lambda d: tuple(d.items())),
    since=st.none() | st.integers(0, 2**40),
    until=st.none() | st.integers(0, 2**40),
    limit=st.none() | st.integers(0, 5000),
)


@given(filters)
def test_round_trip(flt: Filter) -> None:
    assert Filter.from_dict(flt.to_dict()) == flt


@given(
    st.dictionaries(
        st.text(max_size=6), st.none() | st.integers() | st.text() | st.lists(st.integers())
    )
)
def test_garbage_raises_only_message_error(data: dict[str, object]) -> None:
    with contextlib.suppress(MessageError):
        Filter.from_dict(data)
