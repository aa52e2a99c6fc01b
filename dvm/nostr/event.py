"""NIP-01 events: canonical serialization, id, signing and verified parsing.

NIP-01: https://github.com/nostr-protocol/nips/blob/master/01.md

An :class:`Event` exists only after its id and signature were verified (``Event.from_json`` /
``Event.from_dict``) or after we signed it ourselves (``UnsignedEvent.sign``). Events are
frozen; nothing here rebuilds or "normalises" a received event, so its id and signature stay
valid wherever it is forwarded. ``UnsignedEvent`` is also the NIP-59 *rumor*: it has an id but
no signature.

The canonical serialization is ``[0, pubkey, created_at, kind, tags, content]`` as UTF-8 JSON
with no whitespace and NIP-01's minimal escaping. Python's ``json.dumps`` with
``ensure_ascii=False, separators=(",", ":")`` produces exactly that: it escapes ``"`` and ``\\``,
``\\b \\f \\n \\r \\t`` by name and the other control characters as ``\\u00XX``, and writes every
other character (U+007F and non-ASCII included) literally, which is what NIP-01 specifies.

Every string of an event (content and tag items) must be valid Unicode: a lone surrogate (a
Python ``str`` can hold one, from ``"\\ud800"`` in JSON or from a caller) has no UTF-8 form, so
the id could not be computed; it is refused with :class:`EventError` when the event is built,
never later as a ``UnicodeEncodeError`` (issue 10). JSON text is read with
:func:`dvm.nostr.strict_json.parse_json`, so ``from_json`` raises ``EventError`` and nothing
else for any input.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import EventError, InvalidKeyError, JsonError, SignatureError
from .hex64 import is_hex64
from .keys import PublicKey, SecretKey
from .strict_json import has_surrogate, parse_json

__all__ = ["MAX_KIND", "Event", "Tags", "UnsignedEvent", "serialize_for_id", "tags_from"]

MAX_KIND = 65535
_MAX_TIMESTAMP = 2**63 - 1

Tags = tuple[tuple[str, ...], ...]


def tags_from(tags: Iterable[Sequence[str]]) -> Tags:
    """Freeze a list of tags, checking every tag is a non-empty list of strings."""
    frozen: list[tuple[str, ...]] = []
    for tag in tags:
        if isinstance(tag, str | bytes) or not isinstance(tag, Sequence):
            raise EventError("each tag must be a list of strings")
        items = tuple(tag)
        if not items:
            raise EventError("empty tag")
        if not all(isinstance(item, str) for item in items):
            raise EventError("tag items must be strings")
        if any(has_surrogate(item) for item in items):
            raise EventError("a tag item is not valid Unicode (lone surrogate)")
        frozen.append(items)
    return tuple(frozen)


def serialize_for_id(pubkey: str, created_at: int, kind: int, tags: Tags, content: str) -> bytes:
    """NIP-01 canonical serialization, the preimage of the event id (EventError if not Unicode)."""
    try:
        return json.dumps(
            [0, pubkey, created_at, kind, [list(t) for t in tags], content],
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode("utf-8")
    except UnicodeEncodeError:
        raise EventError("the event is not valid Unicode (lone surrogate)") from None


def _check_common(pubkey: str, created_at: int, kind: int, content: str) -> None:
    if not is_hex64(pubkey):
        raise EventError("pubkey must be 64 lowercase hex characters")
    if isinstance(created_at, bool) or not isinstance(created_at, int):
        raise EventError("created_at must be an integer")
    if not 0 <= created_at <= _MAX_TIMESTAMP:
        raise EventError("created_at out of range")
    if isinstance(kind, bool) or not isinstance(kind, int) or not 0 <= kind <= MAX_KIND:
        raise EventError("kind must be an integer in [0, 65535]")
    if not isinstance(content, str):
        raise EventError("content must be a string")
    if has_surrogate(content):
        raise EventError("content is not valid Unicode (lone surrogate)")


class _TagAccess:
    """Read-only tag lookups shared by events and rumors (NIP-01 tags are positional)."""

    __slots__ = ()
    tags: Tags

    def tag_values(self, name: str) -> list[str]:
        """The first value of every tag called ``name`` (``["e", x, ...]`` -> ``x``)."""
        return [t[1] for t in self.tags if t[0] == name and len(t) > 1]

    def first_tag(self, name: str) -> tuple[str, ...] | None:
        """The first whole tag called ``name``, or None."""
        for tag in self.tags:
            if tag[0] == name:
                return tag
        return None


@dataclass(frozen=True, slots=True)
class UnsignedEvent(_TagAccess):
    """An event before signing; with its id it is a NIP-59 rumor."""

    pubkey: str
    created_at: int
    kind: int
    tags: Tags
    content: str

    def __post_init__(self) -> None:
        _check_common(self.pubkey, self.created_at, self.kind, self.content)
        object.__setattr__(self, "tags", tags_from(self.tags))

    @property
    def id(self) -> str:
        return hashlib.sha256(self.serialize()).hexdigest()

    def serialize(self) -> bytes:
        return serialize_for_id(self.pubkey, self.created_at, self.kind, self.tags, self.content)

    def sign(self, secret: SecretKey, *, aux_rand: bytes) -> Event:
        """Sign with ``secret`` (which must own ``pubkey``) using 32 bytes of ``aux_rand``."""
        if secret.public_key.hex() != self.pubkey:
            raise EventError("secret key does not match the event pubkey")
        digest = hashlib.sha256(self.serialize()).digest()
        sig = secret.sign_schnorr(digest, aux_rand=aux_rand)
        return Event(
            id=digest.hex(),
            pubkey=self.pubkey,
            created_at=self.created_at,
            kind=self.kind,
            tags=self.tags,
            content=self.content,
            sig=sig.hex(),
            _verified=True,
        )

    def to_dict(self) -> dict[str, Any]:
        """The rumor form of NIP-59: every field plus ``id``, no ``sig``."""
        return {
            "id": self.id,
            "pubkey": self.pubkey,
            "created_at": self.created_at,
            "kind": self.kind,
            "tags": [list(t) for t in self.tags],
            "content": self.content,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UnsignedEvent:
        """Parse a rumor; if it carries an ``id`` it must match. A ``sig`` is refused."""
        if not isinstance(data, Mapping):
            raise EventError("event must be a JSON object")
        if "sig" in data:
            raise EventError("a rumor must not be signed")
        try:
            rumor = cls(
                pubkey=data["pubkey"],
                created_at=data["created_at"],
                kind=data["kind"],
                tags=_tags_field(data),
                content=data["content"],
            )
        except KeyError as exc:
            raise EventError(f"event is missing field {exc.args[0]!r}") from None
        if "id" in data and (not is_hex64(data["id"]) or data["id"] != rumor.id):
            raise EventError("rumor id does not match its content")
        return rumor

    @classmethod
    def from_json(cls, text: str | bytes) -> UnsignedEvent:
        return cls.from_dict(_load_json_object(text))


def _tags_field(data: Mapping[str, Any]) -> Tags:
    tags = data["tags"]
    if not isinstance(tags, list):
        raise EventError("tags must be a list")
    return tags_from(tags)


def _load_json_object(text: str | bytes) -> dict[str, Any]:
    try:
        value = parse_json(text)
    except JsonError as exc:
        raise EventError(f"event is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise EventError("event must be a JSON object")
    return value


@dataclass(frozen=True, slots=True)
class Event(_TagAccess):
    """A signed NIP-01 event whose id and signature have been verified.

    Only :meth:`from_dict`, :meth:`from_json` and :meth:`UnsignedEvent.sign` make one; direct
    construction is refused so an unverified ``Event`` cannot exist.
    """

    id: str
    pubkey: str
    created_at: int
    kind: int
    tags: Tags
    content: str
    sig: str
    _verified: bool = field(default=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self._verified:
            raise EventError("construct events with Event.from_dict/from_json or sign()")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        """Parse and verify: structure, id == sha256(serialization), BIP-340 signature."""
        if not isinstance(data, Mapping):
            raise EventError("event must be a JSON object")
        try:
            event_id, sig = data["id"], data["sig"]
            unsigned = UnsignedEvent(
                pubkey=data["pubkey"],
                created_at=data["created_at"],
                kind=data["kind"],
                tags=_tags_field(data),
                content=data["content"],
            )
        except KeyError as exc:
            raise EventError(f"event is missing field {exc.args[0]!r}") from None
        if not is_hex64(event_id):
            raise EventError("id must be 64 lowercase hex characters")
        if not isinstance(sig, str) or len(sig) != 128 or sig != sig.lower():
            raise EventError("sig must be 128 lowercase hex characters")
        digest = hashlib.sha256(unsigned.serialize()).digest()
        if digest.hex() != event_id:
            raise EventError(f"event id {event_id[:16]}… does not match its content")
        try:
            pubkey = PublicKey.from_hex(unsigned.pubkey)
            pubkey.verify_schnorr(bytes.fromhex(sig), digest)
        except (InvalidKeyError, SignatureError, ValueError):
            raise EventError(f"event {event_id[:16]}… has an invalid signature") from None
        return cls(
            id=event_id,
            pubkey=unsigned.pubkey,
            created_at=unsigned.created_at,
            kind=unsigned.kind,
            tags=unsigned.tags,
            content=unsigned.content,
            sig=sig,
            _verified=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Event:
        return cls.from_dict(_load_json_object(text))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pubkey": self.pubkey,
            "created_at": self.created_at,
            "kind": self.kind,
            "tags": [list(t) for t in self.tags],
            "content": self.content,
            "sig": self.sig,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @property
    def author(self) -> PublicKey:
        return PublicKey(bytes.fromhex(self.pubkey))

    def unsigned(self) -> UnsignedEvent:
        return UnsignedEvent(self.pubkey, self.created_at, self.kind, self.tags, self.content)

    @property
    def is_ephemeral(self) -> bool:
        return 20000 <= self.kind < 30000

    @property
    def is_replaceable(self) -> bool:
        return self.kind in (0, 3) or 10000 <= self.kind < 20000

    @property
    def is_addressable(self) -> bool:
        return 30000 <= self.kind < 40000
