"""Production relay behaviour for the real ``nostr-relay`` the tests run (issue 10, part 2).

These functions and classes are loaded *by the relay process* (nostr-relay 1.14 imports every
hook by dotted name from its YAML configuration); ``tests/integration/conftest.py`` puts the
repository root on the relay's ``PYTHONPATH`` and names them through
:data:`PROFILE_CONFIG` when a test asks for ``relay_factory(profile=...)``. They run inside
nostr-relay, on its objects (``aionostr.event.Event``), so this module imports nothing of ours.

Three profiles, each modelled on what a production relay does (docs/relay.md, "Relay
profiles"):

* ``strfry`` -- strfry's defaults (``strfry.conf``, ``events`` section):
  ``rejectEphemeralEventsOlderThanSeconds = 60`` answered ``invalid: ephemeral event expired``;
  ``maxEventSize = 65536`` bytes of the event's JSON answered ``invalid: event too large``;
  ``rejectEventsNewerThanSeconds = 900`` answered ``invalid: created_at too late``. Plain
  validators (``storage.validators``: ``(event, config) -> None`` or raise; the exception's
  text becomes the OK message), appended after the development relay's own.
* ``khatru`` -- khatru (fiatjaf/khatru) keeps no ephemeral event: it hands one to the live
  subscribers whose filters match and answers ``mute: no one was listening to your ephemeral
  event and it wasn't handled in any way, it was ignored`` when none does. A validator cannot see
  the subscriptions, so this is a storage class (``storage.class``) around nostr-relay's own
  ``DBStorage``: ephemeral kinds are validated and authorised as usual, then forwarded to the
  matching live subscriptions and never written; everything else is ``DBStorage``'s.
* ``auth`` -- the DM-relay policy of NIP-17 inbox relays: NIP-42 AUTH required to publish
  anything (``auth-required:``); an event other than a gift wrap only from a key the connection
  authenticated as (``restricted:``; gift wraps are signed by one-time keys, NIP-59); kinds 1059
  and 21059 served only to the connection that authenticated as the wrap's ``p`` recipient
  (stored queries through ``output_validator``, live events through ``subscription_class``),
  and a REQ that can match them refused with ``auth-required:`` before AUTH. nostr-relay keeps
  only the last AUTH of a connection; :class:`MultiKeyAuthenticator` remembers every key that
  answered the connection's challenge (NIP-42 allows several AUTH events), which is what makes a
  client that publishes under two keys (U signs the request, S talks) work here.

nostr-relay quirks these profiles inherit (docs/relay.md): refusals come as ``["OK", "", false,
reason]`` (no event id) and a refused REQ as a ``NOTICE``. One they avoid: nostr-relay sleeps
after every EVENT it refused with its own ``StorageError`` / ``AuthenticationError`` (2 s,
doubling, on that connection until an AUTH), which neither strfry nor khatru does; the profiles
refuse EVENTs with :class:`Refusal`, which nostr-relay turns into the same ``OK false`` without
the sleep. (A REQ must be refused with ``AuthenticationError``: anything else closes the socket.)
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from typing import Any

from aionostr.event import Event
from nostr_relay.auth import Authenticator
from nostr_relay.config import Config
from nostr_relay.errors import AuthenticationError, StorageError
from nostr_relay.storage.db import DBStorage, Subscription

__all__ = [
    "PROFILES",
    "PROFILE_CONFIG",
    "AuthGatedSubscription",
    "KhatruLikeStorage",
    "MultiKeyAuthenticator",
    "Refusal",
    "serve_wraps_to_recipient_only",
    "strfry_ephemeral_not_expired",
    "strfry_event_not_too_large",
    "strfry_not_too_far_in_future",
]

STRFRY_EPHEMERAL_MAX_AGE_S = 60
STRFRY_MAX_EVENT_BYTES = 65536
STRFRY_MAX_FUTURE_S = 900
KHATRU_MUTE = (
    "mute: no one was listening to your ephemeral event and it wasn't handled in any way,"
    " it was ignored"
)
WRAP_KINDS = frozenset({1059, 21059})
_MODULE = __name__


class Refusal(Exception):  # noqa: N818 - named for what the relay answers
    """An EVENT refused with this text as the OK message (see the module docstring)."""


def _is_ephemeral(kind: int) -> bool:
    return 20000 <= kind < 30000  # NIP-01


# --- strfry -------------------------------------------------------------------------------------


def strfry_ephemeral_not_expired(event: Any, config: Any) -> None:
    """strfry ``rejectEphemeralEventsOlderThanSeconds`` (default 60)."""
    if _is_ephemeral(event.kind) and time.time() - event.created_at > STRFRY_EPHEMERAL_MAX_AGE_S:
        raise Refusal("invalid: ephemeral event expired")


def strfry_event_not_too_large(event: Any, config: Any) -> None:
    """strfry ``maxEventSize`` (default 65536): bytes of the event's JSON."""
    size = len(
        json.dumps(event.to_json_object(), separators=(",", ":"), ensure_ascii=False).encode()
    )
    if size > STRFRY_MAX_EVENT_BYTES:
        raise Refusal(f"invalid: event too large: {size} bytes")


def strfry_not_too_far_in_future(event: Any, config: Any) -> None:
    """strfry ``rejectEventsNewerThanSeconds`` (default 900)."""
    if event.created_at > time.time() + STRFRY_MAX_FUTURE_S:
        raise Refusal("invalid: created_at too late")


# --- khatru -------------------------------------------------------------------------------------


class KhatruLikeStorage(DBStorage):  # type: ignore[misc]
    """``DBStorage`` that forwards ephemeral events to live listeners only, or answers ``mute:``."""

    async def add_event(self, event_json: Any, auth_token: Any = None) -> tuple[Any, bool]:
        kind = event_json.get("kind") if isinstance(event_json, dict) else None
        if not isinstance(kind, int) or not _is_ephemeral(kind):
            result: tuple[Any, bool] = await super().add_event(event_json, auth_token=auth_token)
            return result
        try:
            event = Event(**event_json)
        except Exception:  # noqa: BLE001 - nostr-relay's own answer to any malformed event
            raise StorageError("invalid: Bad JSON") from None
        await self.validate_event(event, Config)
        if not await self.authenticator.can_do(auth_token, "save", event):
            raise AuthenticationError("restricted: permission denied")
        listeners = [
            sub
            for client in list(self.clients.values())
            for sub in list(client.values())
            if sub.check_event(event, sub.filters)
        ]
        if not listeners:
            raise Refusal(KHATRU_MUTE)
        for sub in listeners:
            await sub.notify(event)
        return event, True


# --- auth-gated ---------------------------------------------------------------------------------


def _token_pubkeys(auth_token: Any) -> frozenset[str]:
    if not isinstance(auth_token, dict):
        return frozenset()
    return frozenset(auth_token.get("pubkeys", ()))


def _may_read(event: Any, auth_token: Any) -> bool:
    if event.kind not in WRAP_KINDS:
        return True
    recipients = {tag[1] for tag in event.tags if len(tag) > 1 and tag[0] == "p"}
    return bool(recipients & _token_pubkeys(auth_token))


class MultiKeyAuthenticator(Authenticator):  # type: ignore[misc]
    """NIP-42 with several keys per connection, and the DM-relay policy (module docstring).

    A connection's challenge is unique (nostr-relay draws 16 random bytes per connection), so
    the keys that answered it are remembered by challenge, for the last 4096 connections.
    """

    _CAPACITY = 4096

    def __init__(self, storage: Any, options: Any) -> None:
        super().__init__(storage, options)
        self._keys: OrderedDict[str, frozenset[str]] = OrderedDict()

    async def authenticate(self, auth_event_json: dict[str, Any], challenge: str = "") -> Any:
        token = await super().authenticate(auth_event_json, challenge=challenge)
        keys = self._keys.pop(challenge, frozenset()) | {token["pubkey"]}
        self._keys[challenge] = keys
        while len(self._keys) > self._CAPACITY:
            self._keys.popitem(last=False)
        token["pubkeys"] = keys
        return token

    async def can_do(self, auth_token: Any, action: str, target: Any = None) -> bool:
        pubkeys = _token_pubkeys(auth_token)
        if action == "save":
            if not pubkeys:
                raise Refusal("auth-required: publishing here requires NIP-42 AUTH")
            if (
                target is not None
                and target.kind not in WRAP_KINDS
                and target.pubkey not in pubkeys
            ):
                raise Refusal("restricted: authenticate as the event's author")
            return True
        if action == "query" and target is not None and not pubkeys:
            for flt in getattr(target, "filters", ()):
                kinds = getattr(flt, "kinds", None)
                if kinds is None or WRAP_KINDS.intersection(kinds):
                    raise AuthenticationError(
                        "auth-required: gift wraps are served only to their authenticated recipient"
                    )
        return True


class AuthGatedSubscription(Subscription):  # type: ignore[misc]
    """Live events: a gift wrap reaches only a connection authenticated as its ``p``."""

    __slots__ = ()

    async def notify(self, event: Any) -> None:
        if _may_read(event, self.auth_token):
            await super().notify(event)


def serve_wraps_to_recipient_only(event: Any, context: dict[str, Any]) -> bool:
    """``output_validator`` for stored queries: the same rule as :class:`AuthGatedSubscription`."""
    return _may_read(event, context.get("auth_token"))


# --- configuration ------------------------------------------------------------------------------

_STRFRY_VALIDATORS = [
    f"{_MODULE}.strfry_event_not_too_large",
    f"{_MODULE}.strfry_not_too_far_in_future",
    f"{_MODULE}.strfry_ephemeral_not_expired",
]

PROFILE_CONFIG: dict[str, dict[str, Any]] = {
    "strfry": {"storage": {"validators+": _STRFRY_VALIDATORS}},
    "khatru": {"storage": {"class": f"{_MODULE}.KhatruLikeStorage"}},
    "auth": {
        "storage": {"subscription_class": f"{_MODULE}.AuthGatedSubscription"},
        "output_validator": f"{_MODULE}.serve_wraps_to_recipient_only",
        "authentication": {
            "enabled": True,
            "authenticator_class": f"{_MODULE}.MultiKeyAuthenticator",
            "actions": {"save": "a", "query": "a"},
        },
    },
}
"""What each profile changes in the rendered nostr-relay YAML (``validators+`` appends)."""

PROFILES = tuple(PROFILE_CONFIG)


def apply_profile(config: dict[str, Any], profile: str) -> dict[str, Any]:
    """``config`` (a parsed nostr-relay YAML) with ``profile``'s hooks merged in."""
    for section, values in PROFILE_CONFIG[profile].items():
        if not isinstance(values, dict):
            config[section] = values
            continue
        target = config.setdefault(section, {})
        for key, value in values.items():
            if key.endswith("+"):
                target[key[:-1]] = [*target.get(key[:-1], []), *value]
            else:
                target[key] = value
    return config
