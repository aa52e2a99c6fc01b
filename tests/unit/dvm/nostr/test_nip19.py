"""NIP-19 entities: the spec's examples, round trips, and garbage."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dvm.nostr import nip19
from dvm.nostr.errors import Bech32Error, NostrError
from dvm.nostr.keys import PublicKey, SecretKey

# Examples from NIP-19 itself.
NPUB = "npub10elfcs4fr0l0r8af98jlmgdh9c8tcxjvz9qkw038js35mp4dma8qzvjptg"
NPUB_HEX = "7e7e9c42a91bfef19fa929e5fda1b72e0ebc1a4c1141673e2794234d86addf4e"
NSEC = "nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe5"
NSEC_HEX = "67dea2ed018072d675f5415ecfaed7d2597555e202d85b3d65ea4e58d2d92ffa"
NPROFILE = (
    "nprofile1qqsrhuxx8l9ex335q7he0f09aej04zpazpl0ne2cgukyawd24mayt8gpp4mhxue69uhhytnc9e3k7mgpz4m"
    "hxue69uhkg6nzv9ejuumpv34kytnrdaksjlyr9p"
)
NPROFILE_HEX = "3bf0c63fcb93463407af97a5e5ee64fa883d107ef9e558472c4eb9aaaefa459d"


def test_spec_npub() -> None:
    assert nip19.decode_npub(NPUB).hex() == NPUB_HEX
    assert nip19.encode_npub(PublicKey.from_hex(NPUB_HEX)) == NPUB


def test_spec_nsec() -> None:
    key = nip19.decode_nsec(NSEC)
    assert key.reveal_hex() == NSEC_HEX
    assert nip19.encode_nsec(key) == NSEC
    assert key.public_key.hex() == NPUB_HEX


def test_spec_nprofile() -> None:
    pointer = nip19.decode_nprofile(NPROFILE)
    assert pointer.pubkey.hex() == NPROFILE_HEX
    assert pointer.relays == ("wss://r.x.com", "wss://djbas.sadkb.com")
    assert nip19.encode_nprofile(pointer) == NPROFILE


def test_generic_decode_dispatches() -> None:
    assert nip19.decode(NPUB) == PublicKey.from_hex(NPUB_HEX)
    assert isinstance(nip19.decode(NSEC), SecretKey)
    assert isinstance(nip19.decode(NPROFILE), nip19.ProfilePointer)


def test_wrong_prefix() -> None:
    with pytest.raises(Bech32Error, match="expected a npub, got nsec"):
        nip19.decode_npub(NSEC)


def test_checksum_error() -> None:
    broken = NPUB[:-1] + ("q" if NPUB[-1] != "q" else "p")
    with pytest.raises(Bech32Error, match="checksum"):
        nip19.decode_npub(broken)


def test_mixed_case_refused_upper_accepted() -> None:
    with pytest.raises(Bech32Error, match="case"):
        nip19.decode_npub(NPUB[:10] + NPUB[10:].upper())
    assert nip19.decode_npub(NPUB.upper()).hex() == NPUB_HEX


def test_unknown_tlv_types_are_ignored() -> None:
    # NIP-19: "When decoding, unknown TLV types must be ignored."
    data = bytes([0, 32]) + bytes.fromhex(NPROFILE_HEX) + bytes([9, 2, 1, 2])
    pointer = nip19.decode_nprofile(nip19.bech32_encode("nprofile", data))
    assert pointer.pubkey.hex() == NPROFILE_HEX


def test_truncated_tlv_refused() -> None:
    data = bytes([0, 32]) + bytes.fromhex(NPROFILE_HEX)[:20]
    with pytest.raises(Bech32Error, match="truncated"):
        nip19.decode_nprofile(nip19.bech32_encode("nprofile", data))


def test_too_long_refused_before_work() -> None:
    with pytest.raises(Bech32Error, match="longer than"):
        nip19.bech32_decode("npub1" + "q" * nip19.MAX_LENGTH)


hex32 = st.binary(min_size=32, max_size=32).map(bytes.hex)
relays = st.lists(st.text(min_size=1, max_size=40), max_size=3).map(tuple)


@given(
    event_id=hex32,
    rel=relays,
    kind=st.none() | st.integers(0, 2**32 - 1),
    seed=st.integers(1, 2**64),
)
def test_nevent_round_trip(
    event_id: str, rel: tuple[str, ...], kind: int | None, seed: int
) -> None:
    author = SecretKey(seed.to_bytes(32, "big")).public_key
    pointer = nip19.EventPointer(event_id=event_id, relays=rel, author=author, kind=kind)
    assert nip19.decode_nevent(nip19.encode_nevent(pointer)) == pointer


@given(event_id=hex32)
def test_note_round_trip(event_id: str) -> None:
    assert nip19.decode_note(nip19.encode_note(event_id)) == event_id


@given(ident=st.text(max_size=60), kind=st.integers(0, 65535), rel=relays)
def test_naddr_round_trip(ident: str, kind: int, rel: tuple[str, ...]) -> None:
    addr = nip19.Addr(identifier=ident, author=PublicKey.from_hex(NPUB_HEX), kind=kind, relays=rel)
    assert nip19.decode_naddr(nip19.encode_naddr(addr)) == addr


@given(st.text(max_size=300))
def test_garbage_text_raises_only_our_errors(text: str) -> None:
    with contextlib.suppress(NostrError):
        nip19.decode(text)


@given(
    hrp=st.sampled_from(["npub", "nsec", "note", "nprofile", "nevent", "naddr"]),
    data=st.binary(max_size=200),
)
def test_garbage_payloads_raise_only_our_errors(hrp: str, data: bytes) -> None:
    text = nip19.bech32_encode(hrp, data)
    with contextlib.suppress(NostrError):
        nip19.decode(text)
