"""NIP-13 proof of work: difficulty, mining, committed targets, and the cdvm nonce clash."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dvm.nostr.errors import NostrError, PowError
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip13 import check_pow, committed_target, leading_zero_bits, mine
from dvm.nostr.nip90 import build_job_request, parse_job_request

KEY = SecretKey(b"\x09" * 32)
T = 1_700_000_000


def _unsigned(tags: tuple[tuple[str, ...], ...] = (), content: str = "hi") -> UnsignedEvent:
    return UnsignedEvent(KEY.public_key.hex(), T, 1, tags, content)


def test_the_nip_examples() -> None:
    assert (
        leading_zero_bits("000000000e9d97a1ab09fc381030b346cdd7a142ad57e6df0b46dc9bef6c7e2d") == 36
    )
    # The NIP's mined note: 20 committed, id 000006d8... has 21 leading zero bits.
    mined = Event.from_dict(
        {
            "id": "000006d8c378af1779d2feebc7603a125d99eca0ccf1085959b307f64e5dd358",
            "pubkey": "a48380f4cfcc1ad5378294fcac36439770f9c878dd880ffa94bb74ea54a6f243",
            "created_at": 1651794653,
            "kind": 1,
            "tags": [["nonce", "776797", "20"]],
            "content": "It's just me mining my own business",
            "sig": (
                "284622fc0a3f4f1303455d5175f7ba962a3300d136085b9566801bc2e0699de0"
                "c7e31e44c81fb40ad9049173742e904713c3594a1da0fc5d2382a25c11aba977"
            ),
        }
    )
    assert leading_zero_bits(mined.id) == 21
    check_pow(mined, 20)
    with pytest.raises(PowError, match="committed target 20 is below the required 21"):
        check_pow(mined, 21)  # lucky, but it only committed to 20


@given(st.binary(min_size=32, max_size=32))
def test_leading_zero_bits_matches_the_reference_loop(digest: bytes) -> None:
    expected = 0
    for byte in digest:  # NIP-13's reference C, transcribed
        if byte == 0:
            expected += 8
            continue
        expected += 8 - byte.bit_length()
        break
    assert leading_zero_bits(digest.hex()) == expected


def test_leading_zero_bits_edges_and_refusals() -> None:
    assert leading_zero_bits("0" * 64) == 256
    assert leading_zero_bits("f" + "0" * 63) == 0
    assert leading_zero_bits("01" + "f" * 62) == 7
    with pytest.raises(PowError, match="64 lowercase hex"):
        leading_zero_bits("F" * 64)


@pytest.mark.parametrize("difficulty", [0, 1, 8, 12])
def test_mine_reaches_the_difficulty(difficulty: int) -> None:
    mined = mine(_unsigned(content="mine me"), difficulty)
    assert leading_zero_bits(mined.id) >= difficulty
    assert mined.tags[-1][0] == "nonce"
    assert mined.tags[-1][2] == str(difficulty)
    assert committed_target(mined.tags) == difficulty
    check_pow(mined.sign(KEY, aux_rand=bytes(32)), difficulty)


def test_mine_replaces_an_old_pow_tag_and_keeps_other_tags() -> None:
    start = _unsigned(tags=(("t", "x"), ("nonce", "5", "3")), content='quote " and \n é')
    mined = mine(start, 6, start_nonce=100)
    assert mined.tags[0] == ("t", "x")
    assert len([t for t in mined.tags if t[0] == "nonce"]) == 1
    assert int(mined.tags[-1][1]) >= 100
    assert leading_zero_bits(mined.id) >= 6


def test_mine_gives_up() -> None:
    with pytest.raises(PowError, match="no nonce reached 40 bits in 10 attempts"):
        mine(_unsigned(), 40, max_iterations=10)
    with pytest.raises(PowError, match="difficulty must be"):
        mine(_unsigned(), 257)


def test_check_pow_requires_a_commitment() -> None:
    unmined = _unsigned()
    check_pow(unmined, 0)  # nothing required, nothing checked
    with pytest.raises(PowError, match="commits to no proof-of-work target"):
        check_pow(unmined, 1)


def test_check_pow_refuses_too_little_work() -> None:
    # Commit to a high target without doing the work.
    claimed = _unsigned(tags=(("nonce", "1", "30"),))
    bits = leading_zero_bits(claimed.id)
    with pytest.raises(PowError, match=f"event has {bits} bits of work, 20 required"):
        check_pow(claimed, 20)


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ((("nonce", "x", "20"),), "decimal integers"),
        ((("nonce", "1", "0020"),), "decimal integers"),
        ((("nonce", "1", "300"),), "at most 256"),
        ((("nonce", "1", "9" * 5000),), "at most 256"),
        ((("nonce", "1", "2"), ("nonce", "2", "2")), "more than one NIP-13"),
    ],
)
def test_bad_commitments(tags: tuple[tuple[str, ...], ...], message: str) -> None:
    with pytest.raises(PowError, match=message):
        check_pow(_unsigned(tags=tags), 1)


def test_cdvm_nonce_and_nip13_nonce_coexist_in_one_request() -> None:
    provider = SecretKey(b"\x02" * 32)
    request = build_job_request(
        requester=KEY.public_key,
        provider=provider.public_key,
        tee="simulated",
        nonce=bytes(range(32)),
        created_at=T,
        params=[("model", "m")],
    )
    mined = mine(request, 10)
    nonce_tags = [t for t in mined.tags if t[0] == "nonce"]
    assert nonce_tags == [("nonce", bytes(range(32)).hex()), nonce_tags[1]]
    assert len(nonce_tags[1]) == 3
    event = mined.sign(KEY, aux_rand=bytes(32))
    check_pow(event, 10)
    assert parse_job_request(event).nonce == bytes(range(32)).hex()
    # Mining again keeps the cdvm nonce and replaces only the NIP-13 one.
    again = mine(event.unsigned(), 11)
    assert next(t for t in again.tags if t[0] == "nonce") == ("nonce", bytes(range(32)).hex())
    assert len([t for t in again.tags if t[0] == "nonce"]) == 2


@settings(max_examples=100, deadline=None)
@given(
    tags=st.lists(
        st.lists(
            st.sampled_from(["nonce", "1", "20", "x", "", "256", "-1"]), min_size=1, max_size=4
        ),
        max_size=4,
    ),
    minimum=st.integers(-1, 300),
)
def test_garbage_raises_only_our_errors(tags: list[list[str]], minimum: int) -> None:
    with contextlib.suppress(NostrError):  # anything else fails the test
        check_pow(_unsigned(tags=tuple(tuple(t) for t in tags)), minimum)
