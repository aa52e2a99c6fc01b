"""NIP-01 relay <-> client messages (with NIP-20 OK, NIP-42 AUTH, NIP-45 COUNT).

NIP-01: https://github.com/nostr-protocol/nips/blob/master/01.md
NIP-42: https://github.com/nostr-protocol/nips/blob/master/42.md
NIP-45: https://github.com/nostr-protocol/nips/blob/master/45.md

Contract: ``parse_relay_message`` and ``parse_client_message`` take one websocket text frame and
return a frozen, typed message or raise :class:`MessageError` -- and nothing else, whatever the
input: lone surrogates (escaped or raw), bytes that are not UTF-8, deep nesting, huge numbers,
``NaN``, repeated keys (:func:`dvm.nostr.strict_json.parse_json` reads every frame; hypothesis
tests over raw JSON text hold us to that). Error messages name the check, never frame text.
An ``EVENT`` message carries an :class:`Event`, which exists only after its id and signature
verified; an event that does not verify makes the whole message a ``MessageError``. Every
message has ``to_json()`` producing the wire form.

``OK`` and ``CLOSED`` carry a :class:`Reason`: the NIP-01 machine-readable prefix
(``"invalid: event too large"`` -> ``ReasonPrefix.INVALID``, ``"event too large"``) when the
relay used a standard one, else ``prefix=None``; ``text`` always keeps the relay's words.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .errors import JsonError, MessageError, NostrError
from .event import Event
from .filters import Filter
from .hex64 import is_hex64
from .strict_json import parse_json

__all__ = [
    "ClientAuth",
    "ClientClose",
    "ClientCount",
    "ClientEvent",
    "ClientMessage",
    "ClientReq",
    "Reason",
    "ReasonPrefix",
    "RelayAuth",
    "RelayClosed",
    "RelayCount",
    "RelayEose",
    "RelayEvent",
    "RelayMessage",
    "RelayNotice",
    "RelayOk",
    "parse_client_message",
    "parse_relay_message",
]


class ReasonPrefix(StrEnum):
    """NIP-01 machine-readable prefixes of ``OK`` and ``CLOSED`` messages."""

    DUPLICATE = "duplicate"
    POW = "pow"
    BLOCKED = "blocked"
    RATE_LIMITED = "rate-limited"
    INVALID = "invalid"
    RESTRICTED = "restricted"
    AUTH_REQUIRED = "auth-required"
    ERROR = "error"
    MUTE = "mute"
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True, slots=True)
class Reason:
    """A relay's reason string split into its standard prefix (if any) and message."""

    prefix: ReasonPrefix | None
    message: str
    text: str

    @classmethod
    def parse(cls, text: str) -> Reason:
        head, sep, rest = text.partition(":")
        if sep:
            try:
                prefix = ReasonPrefix(head.strip())
            except ValueError:
                return cls(None, text, text)
            return cls(prefix, rest.strip(), text)
        return cls(None, text, text)

    def __str__(self) -> str:
        return self.text


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise MessageError(f"{what} must be a string")
    return value


def _event(value: object) -> Event:
    if not isinstance(value, Mapping):
        raise MessageError("event must be a JSON object")
    try:
        return Event.from_dict(value)
    except NostrError as exc:
        raise MessageError(f"event does not verify: {exc}") from None


def _filters(values: Sequence[object]) -> tuple[Filter, ...]:
    if not values:
        raise MessageError("a subscription needs at least one filter")
    out = []
    for value in values:
        if not isinstance(value, Mapping):
            raise MessageError("a filter must be a JSON object")
        out.append(Filter.from_dict(value))
    return tuple(out)


# --- relay -> client ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RelayEvent:
    subscription_id: str
    event: Event

    def to_json(self) -> str:
        return _dumps(["EVENT", self.subscription_id, self.event.to_dict()])


@dataclass(frozen=True, slots=True)
class RelayOk:
    event_id: str  # "" when the relay did not name the event (see parse_relay_message)
    accepted: bool
    reason: Reason

    def to_json(self) -> str:
        return _dumps(["OK", self.event_id, self.accepted, self.reason.text])


@dataclass(frozen=True, slots=True)
class RelayEose:
    subscription_id: str

    def to_json(self) -> str:
        return _dumps(["EOSE", self.subscription_id])


@dataclass(frozen=True, slots=True)
class RelayClosed:
    subscription_id: str
    reason: Reason

    def to_json(self) -> str:
        return _dumps(["CLOSED", self.subscription_id, self.reason.text])


@dataclass(frozen=True, slots=True)
class RelayNotice:
    message: str

    def to_json(self) -> str:
        return _dumps(["NOTICE", self.message])


@dataclass(frozen=True, slots=True)
class RelayAuth:
    challenge: str

    def to_json(self) -> str:
        return _dumps(["AUTH", self.challenge])


@dataclass(frozen=True, slots=True)
class RelayCount:
    subscription_id: str
    count: int

    def to_json(self) -> str:
        return _dumps(["COUNT", self.subscription_id, {"count": self.count}])


RelayMessage = RelayEvent | RelayOk | RelayEose | RelayClosed | RelayNotice | RelayAuth | RelayCount


# --- client -> relay ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientEvent:
    event: Event

    def to_json(self) -> str:
        return _dumps(["EVENT", self.event.to_dict()])


@dataclass(frozen=True, slots=True)
class ClientReq:
    subscription_id: str
    filters: tuple[Filter, ...]

    def to_json(self) -> str:
        return _dumps(["REQ", self.subscription_id, *(f.to_dict() for f in self.filters)])


@dataclass(frozen=True, slots=True)
class ClientClose:
    subscription_id: str

    def to_json(self) -> str:
        return _dumps(["CLOSE", self.subscription_id])


@dataclass(frozen=True, slots=True)
class ClientAuth:
    event: Event

    def to_json(self) -> str:
        return _dumps(["AUTH", self.event.to_dict()])


@dataclass(frozen=True, slots=True)
class ClientCount:
    subscription_id: str
    filters: tuple[Filter, ...]

    def to_json(self) -> str:
        return _dumps(["COUNT", self.subscription_id, *(f.to_dict() for f in self.filters)])


ClientMessage = ClientEvent | ClientReq | ClientClose | ClientAuth | ClientCount


# --- parsing -----------------------------------------------------------------------------


def _load_array(text: str | bytes) -> list[Any]:
    try:
        value = parse_json(text)
    except JsonError as exc:
        raise MessageError(f"message is not valid JSON ({exc})") from None
    if not isinstance(value, list) or not value:
        raise MessageError("message must be a non-empty JSON array")
    if not isinstance(value[0], str):
        raise MessageError("message type must be a string")
    return value


def _arity(msg: list[Any], expected: int) -> None:
    if len(msg) != expected:
        raise MessageError(f"{msg[0]} message must have {expected} elements, got {len(msg)}")


def parse_relay_message(text: str | bytes) -> RelayMessage:
    """Parse one frame sent by a relay."""
    msg = _load_array(text)
    kind = msg[0]
    if kind == "EVENT":
        _arity(msg, 3)
        return RelayEvent(_str(msg[1], "subscription id"), _event(msg[2]))
    if kind == "OK":
        _arity(msg, 4)
        event_id = _str(msg[1], "event id")
        # nostr-relay 1.14 answers ["OK", "", false, reason] when it refuses an event before
        # reading its id; the empty id is kept so the pool can match the OK by order.
        if event_id and not is_hex64(event_id):
            raise MessageError("OK event id must be empty or 64 lowercase hex characters")
        if not isinstance(msg[2], bool):
            raise MessageError("OK status must be a boolean")
        return RelayOk(event_id, msg[2], Reason.parse(_str(msg[3], "OK message")))
    if kind == "EOSE":
        _arity(msg, 2)
        return RelayEose(_str(msg[1], "subscription id"))
    if kind == "CLOSED":
        _arity(msg, 3)
        return RelayClosed(
            _str(msg[1], "subscription id"), Reason.parse(_str(msg[2], "CLOSED message"))
        )
    if kind == "NOTICE":
        _arity(msg, 2)
        return RelayNotice(_str(msg[1], "NOTICE message"))
    if kind == "AUTH":
        _arity(msg, 2)
        return RelayAuth(_str(msg[1], "AUTH challenge"))
    if kind == "COUNT":
        _arity(msg, 3)
        body = msg[2]
        if not isinstance(body, Mapping):
            raise MessageError("COUNT body must be an object")
        count = body.get("count")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise MessageError("COUNT count must be a non-negative integer")
        return RelayCount(_str(msg[1], "subscription id"), count)
    raise MessageError(f"unknown relay message type ({len(kind)} characters)")


def parse_client_message(text: str | bytes) -> ClientMessage:
    """Parse one frame sent by a client (used by test relays and for symmetry)."""
    msg = _load_array(text)
    kind = msg[0]
    if kind == "EVENT":
        _arity(msg, 2)
        return ClientEvent(_event(msg[1]))
    if kind == "REQ":
        if len(msg) < 3:
            raise MessageError("REQ message needs a subscription id and a filter")
        return ClientReq(_str(msg[1], "subscription id"), _filters(msg[2:]))
    if kind == "CLOSE":
        _arity(msg, 2)
        return ClientClose(_str(msg[1], "subscription id"))
    if kind == "AUTH":
        _arity(msg, 2)
        return ClientAuth(_event(msg[1]))
    if kind == "COUNT":
        if len(msg) < 3:
            raise MessageError("COUNT message needs a subscription id and a filter")
        return ClientCount(_str(msg[1], "subscription id"), _filters(msg[2:]))
    raise MessageError(f"unknown client message type ({len(kind)} characters)")
