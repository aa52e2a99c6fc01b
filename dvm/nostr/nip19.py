"""NIP-19: bech32-encoded entities (npub, nsec, note, nevent, nprofile, naddr).

NIP-19:  https://github.com/nostr-protocol/nips/blob/master/19.md
BIP-173: https://github.com/bitcoin/bips/blob/master/bip-0173.mediawiki (bech32, not bech32m)

Bech32 is an encoding, not cryptography, so it is implemented here from BIP-173 rather than
pulled from a library. NIP-19 lifts BIP-173's 90-character limit for TLV entities; we allow up
to :data:`MAX_LENGTH` characters so that a hostile string cannot make us do unbounded work.
TLV decoding ignores unknown types, as NIP-19 requires, and refuses truncated records.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .errors import Bech32Error, InvalidKeyError
from .keys import PublicKey, SecretKey

__all__ = [
    "MAX_LENGTH",
    "Addr",
    "EventPointer",
    "ProfilePointer",
    "bech32_decode",
    "bech32_encode",
    "decode",
    "decode_naddr",
    "decode_nevent",
    "decode_note",
    "decode_nprofile",
    "decode_npub",
    "decode_nsec",
    "encode_naddr",
    "encode_nevent",
    "encode_note",
    "encode_nprofile",
    "encode_npub",
    "encode_nsec",
]

MAX_LENGTH = 5000
_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_CHARSET_REV = {c: i for i, c in enumerate(_CHARSET)}
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)

_TLV_SPECIAL = 0
_TLV_RELAY = 1
_TLV_AUTHOR = 2
_TLV_KIND = 3


def _polymod(values: Sequence[int]) -> int:
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            chk ^= _GENERATOR[i] if ((top >> i) & 1) else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: Sequence[int], from_bits: int, to_bits: int, *, pad: bool) -> list[int]:
    acc = 0
    bits = 0
    out: list[int] = []
    max_value = (1 << to_bits) - 1
    for value in data:
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & max_value)
    if pad:
        if bits:
            out.append((acc << (to_bits - bits)) & max_value)
    elif bits >= from_bits or ((acc << (to_bits - bits)) & max_value):
        raise Bech32Error("invalid padding in bech32 data")
    return out


def bech32_encode(hrp: str, data: bytes) -> str:
    """Bech32 (BIP-173) of ``data`` under the human-readable part ``hrp``."""
    words = _convert_bits(data, 8, 5, pad=True)
    values = _hrp_expand(hrp) + words
    polymod = _polymod([*values, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    encoded = hrp + "1" + "".join(_CHARSET[w] for w in words + checksum)
    if len(encoded) > MAX_LENGTH:
        raise Bech32Error(f"bech32 string would be {len(encoded)} characters (max {MAX_LENGTH})")
    return encoded


def bech32_decode(text: str) -> tuple[str, bytes]:
    """Decode a bech32 string into (hrp, bytes); checks charset, case, checksum and padding."""
    if not isinstance(text, str):
        raise Bech32Error("bech32 input must be a string")
    if len(text) > MAX_LENGTH:
        raise Bech32Error(f"bech32 string longer than {MAX_LENGTH} characters")
    if text.lower() != text and text.upper() != text:
        raise Bech32Error("bech32 string mixes upper and lower case")
    text = text.lower()
    sep = text.rfind("1")
    if sep < 1 or sep + 7 > len(text):
        raise Bech32Error("bech32 separator missing or data too short")
    hrp = text[:sep]
    if any(ord(c) < 33 or ord(c) > 126 for c in hrp):
        raise Bech32Error("bech32 human-readable part has invalid characters")
    try:
        values = [_CHARSET_REV[c] for c in text[sep + 1 :]]
    except KeyError:
        raise Bech32Error("bech32 data has a character outside the charset") from None
    if _polymod(_hrp_expand(hrp) + values) != 1:
        raise Bech32Error("bech32 checksum mismatch")
    return hrp, bytes(_convert_bits(values[:-6], 5, 8, pad=False))


def _decode_expecting(text: str, hrp: str) -> bytes:
    got, data = bech32_decode(text)
    if got != hrp:
        raise Bech32Error(f"expected a {hrp}, got {got}")
    return data


def _fixed32(text: str, hrp: str) -> bytes:
    data = _decode_expecting(text, hrp)
    if len(data) != 32:
        raise Bech32Error(f"{hrp} must hold 32 bytes, got {len(data)}")
    return data


# --- bare keys and ids -----------------------------------------------------------------------


def encode_npub(key: PublicKey) -> str:
    return bech32_encode("npub", key.raw)


def decode_npub(text: str) -> PublicKey:
    try:
        return PublicKey.from_bytes(_fixed32(text, "npub"))
    except InvalidKeyError:
        raise Bech32Error("npub does not hold a valid public key") from None


def encode_nsec(key: SecretKey) -> str:
    """The secret key as nsec. The result is a secret: never log it."""
    return bech32_encode("nsec", key.reveal_bytes())


def decode_nsec(text: str) -> SecretKey:
    try:
        return SecretKey(_fixed32(text, "nsec"))
    except InvalidKeyError:
        raise Bech32Error("nsec does not hold a valid secret key") from None


def encode_note(event_id: str) -> str:
    return bech32_encode("note", _id_bytes(event_id))


def decode_note(text: str) -> str:
    return _fixed32(text, "note").hex()


def _id_bytes(event_id: str) -> bytes:
    if not isinstance(event_id, str) or len(event_id) != 64 or event_id != event_id.lower():
        raise Bech32Error("event id must be 64 lowercase hex characters")
    try:
        return bytes.fromhex(event_id)
    except ValueError:
        raise Bech32Error("event id is not hex") from None


# --- TLV entities ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProfilePointer:
    pubkey: PublicKey
    relays: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EventPointer:
    event_id: str
    relays: tuple[str, ...] = ()
    author: PublicKey | None = None
    kind: int | None = None


@dataclass(frozen=True, slots=True)
class Addr:
    """An addressable event coordinate (kind:pubkey:d), e.g. our NIP-89 31990 handler."""

    identifier: str
    author: PublicKey
    kind: int
    relays: tuple[str, ...] = ()


def _tlv(type_: int, value: bytes) -> bytes:
    if len(value) > 255:
        raise Bech32Error(f"TLV value of type {type_} is {len(value)} bytes (max 255)")
    return bytes([type_, len(value)]) + value


def _relay_tlvs(relays: Sequence[str]) -> bytes:
    return b"".join(_tlv(_TLV_RELAY, relay.encode("utf-8")) for relay in relays)


def _parse_tlv(data: bytes) -> dict[int, list[bytes]]:
    records: dict[int, list[bytes]] = {}
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise Bech32Error("truncated TLV header")
        type_, length = data[pos], data[pos + 1]
        value = data[pos + 2 : pos + 2 + length]
        if len(value) != length:
            raise Bech32Error("truncated TLV value")
        records.setdefault(type_, []).append(value)
        pos += 2 + length
    return records


def _relays(records: dict[int, list[bytes]]) -> tuple[str, ...]:
    try:
        return tuple(v.decode("utf-8") for v in records.get(_TLV_RELAY, []))
    except UnicodeDecodeError:
        raise Bech32Error("relay TLV is not UTF-8") from None


def _one(records: dict[int, list[bytes]], type_: int, size: int | None, what: str) -> bytes:
    values = records.get(type_)
    if not values:
        raise Bech32Error(f"missing {what}")
    if size is not None and len(values[0]) != size:
        raise Bech32Error(f"{what} must be {size} bytes")
    return values[0]


def _author(records: dict[int, list[bytes]]) -> PublicKey | None:
    if _TLV_AUTHOR not in records:
        return None
    try:
        return PublicKey.from_bytes(_one(records, _TLV_AUTHOR, 32, "author"))
    except InvalidKeyError:
        raise Bech32Error("author TLV is not a valid public key") from None


def _kind(records: dict[int, list[bytes]]) -> int | None:
    if _TLV_KIND not in records:
        return None
    return int.from_bytes(_one(records, _TLV_KIND, 4, "kind"), "big")


def encode_nprofile(pointer: ProfilePointer) -> str:
    return bech32_encode(
        "nprofile", _tlv(_TLV_SPECIAL, pointer.pubkey.raw) + _relay_tlvs(pointer.relays)
    )


def decode_nprofile(text: str) -> ProfilePointer:
    records = _parse_tlv(_decode_expecting(text, "nprofile"))
    try:
        pubkey = PublicKey.from_bytes(_one(records, _TLV_SPECIAL, 32, "pubkey"))
    except InvalidKeyError:
        raise Bech32Error("nprofile does not hold a valid public key") from None
    return ProfilePointer(pubkey=pubkey, relays=_relays(records))


def encode_nevent(pointer: EventPointer) -> str:
    data = _tlv(_TLV_SPECIAL, _id_bytes(pointer.event_id)) + _relay_tlvs(pointer.relays)
    if pointer.author is not None:
        data += _tlv(_TLV_AUTHOR, pointer.author.raw)
    if pointer.kind is not None:
        data += _tlv(_TLV_KIND, pointer.kind.to_bytes(4, "big"))
    return bech32_encode("nevent", data)


def decode_nevent(text: str) -> EventPointer:
    records = _parse_tlv(_decode_expecting(text, "nevent"))
    event_id = _one(records, _TLV_SPECIAL, 32, "event id").hex()
    return EventPointer(
        event_id=event_id, relays=_relays(records), author=_author(records), kind=_kind(records)
    )


def encode_naddr(addr: Addr) -> str:
    data = (
        _tlv(_TLV_SPECIAL, addr.identifier.encode("utf-8"))
        + _relay_tlvs(addr.relays)
        + _tlv(_TLV_AUTHOR, addr.author.raw)
        + _tlv(_TLV_KIND, addr.kind.to_bytes(4, "big"))
    )
    return bech32_encode("naddr", data)


def decode_naddr(text: str) -> Addr:
    records = _parse_tlv(_decode_expecting(text, "naddr"))
    try:
        identifier = _one(records, _TLV_SPECIAL, None, "identifier").decode("utf-8")
    except UnicodeDecodeError:
        raise Bech32Error("naddr identifier is not UTF-8") from None
    author, kind = _author(records), _kind(records)
    if author is None or kind is None:
        raise Bech32Error("naddr needs an author and a kind")
    return Addr(identifier=identifier, author=author, kind=kind, relays=_relays(records))


Decoded = PublicKey | SecretKey | str | ProfilePointer | EventPointer | Addr


def decode(text: str) -> Decoded:
    """Decode any NIP-19 entity by its prefix (note -> event id hex)."""
    hrp = bech32_decode(text)[0]
    decoders: dict[str, Callable[[str], Decoded]] = {
        "npub": decode_npub,
        "nsec": decode_nsec,
        "note": decode_note,
        "nprofile": decode_nprofile,
        "nevent": decode_nevent,
        "naddr": decode_naddr,
    }
    decoder = decoders.get(hrp)
    if decoder is None:
        raise Bech32Error(f"unknown NIP-19 prefix {hrp!r}")
    return decoder(text)
