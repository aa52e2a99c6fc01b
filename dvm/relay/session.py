"""The sans-I/O state of one relay connection: what to send, what was received.

NIP-01: https://github.com/nostr-protocol/nips/blob/master/01.md
NIP-42: https://github.com/nostr-protocol/nips/blob/master/42.md

A :class:`RelaySession` never touches a socket, a clock or an RNG. The shell
(:mod:`dvm.relay.connection`) feeds it ``connection_opened`` / ``receive(text, now=...)`` /
``connection_lost`` and the caller's ``publish`` / ``subscribe`` / ``unsubscribe``; it hands back
frames with :meth:`data_to_send` and typed outcomes with :meth:`events_received`. It outlives
connections: pending publishes (no OK yet) and open subscriptions are replayed on every
``connection_opened``.

Decisions made here (and tested without a network):

* **Resubscription with since.** For each subscription the session keeps a high-water mark:
  the largest ``created_at`` received from this relay, or, if EOSE came before any event, the
  time of that EOSE. On reconnect every filter is narrowed to
  ``since = high_water - since_overlap_s`` (never widened past the caller's own ``since``).
  The overlap absorbs clock skew between authors and the relay and events that arrive at the
  relay slightly out of order; what it re-delivers the pool drops by id. A filter that can
  match gift wraps (kind 1059, or no ``kinds`` at all) is widened by NIP-59's two days more:
  wraps carry a ``created_at`` deliberately backdated by up to two days, so a wrap published
  while we were disconnected can be older than anything we had seen.
* **OK without an id.** nostr-relay 1.14 refuses some events with ``["OK", "", false, ...]``.
  Relays answer one connection's EVENTs in order, so such an OK is matched to the earliest
  EVENT still waiting for its OK on this connection.
* **Bad frames.** A frame that does not parse (not JSON, a lone surrogate, not UTF-8, too
  deep, an event whose id or signature does not check...) is dropped and counted in
  ``invalid_messages``; its size and the reason are logged, never its text. The connection and
  every subscription go on (issue 10: one such frame used to end the relay task for good).
* **Event checks.** An EVENT for an unknown subscription, or one that matches none of the
  subscription's filters, is dropped: a relay cannot push arbitrary events at us.
* **NIP-42.** On ``["AUTH", challenge]`` with a signer configured, the session answers at once,
  with one AUTH event per key the signer holds (NIP-42 allows several: a client that publishes
  under several keys authenticates as each, in order, before anything is re-sent).
  A message refused with ``auth-required:`` is re-sent once after AUTH (waiting for a challenge
  if none came yet). ``restricted:`` refusals of messages sent *before* our AUTH are treated the
  same way, because some relays (nostr-relay 1.14) say ``restricted`` where NIP-42 says
  ``auth-required``; that relay also refuses a REQ with a ``NOTICE`` rather than ``CLOSED``,
  so such a NOTICE re-sends (signer) or closes (no signer) the REQs still waiting for EOSE
  that were sent before our AUTH. Each message is retried at most once per connection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dvm.nostr import nip59
from dvm.nostr.errors import MessageError
from dvm.nostr.event import Event
from dvm.nostr.filters import Filter
from dvm.nostr.messages import (
    ClientAuth,
    ClientClose,
    ClientEvent,
    ClientReq,
    Reason,
    ReasonPrefix,
    RelayAuth,
    RelayClosed,
    RelayCount,
    RelayEose,
    RelayEvent,
    RelayNotice,
    RelayOk,
    parse_relay_message,
)

__all__ = [
    "EoseReceived",
    "EventReceived",
    "OkReceived",
    "RelaySession",
    "SessionEvent",
    "SubscriptionClosed",
]

_log = logging.getLogger(__name__)

AuthSigner = Callable[[str, str], Event | Sequence[Event]]
"""``signer(relay_url, challenge) -> kind-22242 Event(s)``, one per key; supplied by the shell."""

_AUTH_PREFIXES = (ReasonPrefix.AUTH_REQUIRED, ReasonPrefix.RESTRICTED)
# NIP-59: gift wraps (stored kind 1059) are backdated by up to two days on purpose.
_BACKDATED_KINDS = frozenset({nip59.GIFT_WRAP_KIND})
_BACKDATE_WINDOW_S = nip59.TWO_DAYS_S


@dataclass(frozen=True, slots=True)
class OkReceived:
    event_id: str
    accepted: bool
    reason: Reason


@dataclass(frozen=True, slots=True)
class EventReceived:
    subscription_id: str
    event: Event


@dataclass(frozen=True, slots=True)
class EoseReceived:
    subscription_id: str


@dataclass(frozen=True, slots=True)
class SubscriptionClosed:
    subscription_id: str
    reason: Reason


SessionEvent = OkReceived | EventReceived | EoseReceived | SubscriptionClosed


@dataclass(slots=True)
class _Publish:
    event: Event
    sent_seq: int = -1
    retried: bool = False
    awaiting_auth: bool = False


@dataclass(slots=True)
class _Sub:
    filters: tuple[Filter, ...]
    sent_filters: tuple[Filter, ...] = ()
    sent_seq: int = -1
    eose: bool = False
    high_water: int | None = None
    retried: bool = False
    awaiting_auth: bool = False
    dropped_events: int = field(default=0)


class RelaySession:
    """State machine of one relay. See the module docstring for the rules."""

    def __init__(
        self, url: str, *, signer: AuthSigner | None = None, since_overlap_s: int = 30
    ) -> None:
        if since_overlap_s < 0:
            raise ValueError("since_overlap_s must be >= 0")
        self.url = url
        self.since_overlap_s = since_overlap_s
        self._signer = signer
        self._publishes: dict[str, _Publish] = {}
        self._subs: dict[str, _Sub] = {}
        self._out: list[str] = []
        self._events: list[SessionEvent] = []
        self.connected = False
        self.challenge: str | None = None
        self.auth_event_id: str | None = None  # the first of auth_event_ids
        self.auth_event_ids: tuple[str, ...] = ()
        self._auth_refusals: dict[str, Reason] = {}
        self.auth_refused: Reason | None = None  # set once every AUTH event was refused
        self._seq = 0
        self._auth_seq: int | None = None
        self.invalid_messages = 0

    # --- outputs ------------------------------------------------------------------------

    def data_to_send(self) -> list[str]:
        out, self._out = self._out, []
        return out

    def events_received(self) -> list[SessionEvent]:
        out, self._events = self._events, []
        return out

    @property
    def subscription_ids(self) -> frozenset[str]:
        return frozenset(self._subs)

    @property
    def authenticated(self) -> bool:
        return self._auth_seq is not None and self.auth_refused is None

    def high_water(self, subscription_id: str) -> int | None:
        sub = self._subs.get(subscription_id)
        return None if sub is None else sub.high_water

    # --- caller inputs ------------------------------------------------------------------

    def publish(self, event: Event) -> None:
        self._publishes[event.id] = _Publish(event)
        if self.connected:
            self._send_publish(self._publishes[event.id])

    def forget_publish(self, event_id: str) -> None:
        self._publishes.pop(event_id, None)

    def subscribe(self, subscription_id: str, filters: tuple[Filter, ...]) -> None:
        if not filters:
            raise ValueError("a subscription needs at least one filter")
        self._subs[subscription_id] = _Sub(filters)
        if self.connected:
            self._send_req(subscription_id, self._subs[subscription_id])

    def unsubscribe(self, subscription_id: str) -> None:
        if self._subs.pop(subscription_id, None) is not None and self.connected:
            self._emit(ClientClose(subscription_id).to_json())

    # --- connection inputs --------------------------------------------------------------

    def connection_opened(self) -> None:
        self.connected = True
        self.challenge = None
        self.auth_event_id = None
        self.auth_event_ids = ()
        self._auth_refusals = {}
        self.auth_refused = None
        self._auth_seq = None
        self._out = []
        for sub_id, sub in self._subs.items():
            sub.retried = sub.awaiting_auth = sub.eose = False
            self._send_req(sub_id, sub)
        for pub in self._publishes.values():
            pub.retried = pub.awaiting_auth = False
            self._send_publish(pub)

    def connection_lost(self) -> None:
        self.connected = False
        self._out = []
        for pub in self._publishes.values():
            pub.sent_seq = -1

    def receive(self, text: str | bytes, *, now: int) -> None:
        """Feed one frame from the relay; ``now`` (unix seconds) dates an EOSE high-water mark."""
        try:
            msg = parse_relay_message(text)
        except MessageError as exc:
            # Dropped, and the connection goes on: its size and the failed check are logged,
            # never its text (parse_relay_message raises MessageError and nothing else).
            self.invalid_messages += 1
            _log.info(
                "relay %s: dropped a frame of %d %s (%s)",
                self.url,
                len(text),
                "bytes" if isinstance(text, bytes | bytearray) else "characters",
                exc,
            )
            return
        if isinstance(msg, RelayEvent):
            self._on_event(msg)
        elif isinstance(msg, RelayOk):
            self._on_ok(msg)
        elif isinstance(msg, RelayEose):
            sub = self._subs.get(msg.subscription_id)
            if sub is not None and not sub.eose:
                sub.eose = True
                if sub.high_water is None:
                    sub.high_water = now
                self._events.append(EoseReceived(msg.subscription_id))
        elif isinstance(msg, RelayClosed):
            self._on_closed(msg)
        elif isinstance(msg, RelayNotice):
            self._on_notice(msg)
        elif isinstance(msg, RelayAuth):
            self._on_auth(msg.challenge)
        elif isinstance(msg, RelayCount):
            _log.debug("relay %s sent COUNT for %s", self.url, msg.subscription_id)

    # --- internals ----------------------------------------------------------------------

    def _emit(self, frame: str) -> int:
        self._out.append(frame)
        self._seq += 1
        return self._seq

    def _send_publish(self, pub: _Publish) -> None:
        pub.sent_seq = self._emit(ClientEvent(pub.event).to_json())

    def _send_req(self, sub_id: str, sub: _Sub) -> None:
        filters = sub.filters
        if sub.high_water is not None:
            high_water = sub.high_water
            filters = tuple(f.with_since(max(0, high_water - self._overlap_s(f))) for f in filters)
        sub.sent_filters = filters
        sub.sent_seq = self._emit(ClientReq(sub_id, filters).to_json())

    def _overlap_s(self, flt: Filter) -> int:
        if flt.kinds is None or _BACKDATED_KINDS.intersection(flt.kinds):
            return self.since_overlap_s + _BACKDATE_WINDOW_S
        return self.since_overlap_s

    def _sent_before_auth(self, sent_seq: int) -> bool:
        return self._auth_seq is not None and sent_seq < self._auth_seq

    def _retryable(self, reason: Reason, sent_seq: int, retried: bool) -> bool:
        if self._signer is None or retried or self.auth_refused is not None:
            return False
        if reason.prefix is ReasonPrefix.AUTH_REQUIRED:
            return self._auth_seq is None or self._sent_before_auth(sent_seq)
        if reason.prefix is ReasonPrefix.RESTRICTED:
            return self._sent_before_auth(sent_seq)
        return False

    def _on_event(self, msg: RelayEvent) -> None:
        sub = self._subs.get(msg.subscription_id)
        if sub is None:
            return
        event = msg.event
        if not any(f.matches(event) for f in sub.filters):
            sub.dropped_events += 1
            _log.debug(
                "relay %s sent %s outside filters of %s", self.url, event.id, msg.subscription_id
            )
            return
        if sub.high_water is None or event.created_at > sub.high_water:
            sub.high_water = event.created_at
        self._events.append(EventReceived(msg.subscription_id, event))

    def _on_ok(self, msg: RelayOk) -> None:
        if msg.event_id and msg.event_id in self.auth_event_ids:
            if not msg.accepted:
                self._auth_refusals[msg.event_id] = msg.reason
                _log.warning("relay %s refused our AUTH (%s)", self.url, msg.reason.prefix)
                if len(self._auth_refusals) == len(self.auth_event_ids):
                    self.auth_refused = msg.reason  # no key is left to stand on
                    self._fail_awaiting_auth(msg.reason)
            return
        event_id = msg.event_id or self._oldest_in_flight()
        if event_id is None or event_id not in self._publishes:
            return
        pub = self._publishes[event_id]
        if not msg.accepted and self._retryable(msg.reason, pub.sent_seq, pub.retried):
            pub.retried = True
            if self._auth_seq is None:
                pub.awaiting_auth = True
            else:
                self._send_publish(pub)
            return
        del self._publishes[event_id]
        self._events.append(OkReceived(event_id, msg.accepted, msg.reason))

    def _oldest_in_flight(self) -> str | None:
        # Relays answer EVENTs of one connection in order, so an OK without an id belongs to
        # the earliest EVENT still waiting for its OK.
        waiting = [p for p in self._publishes.values() if p.sent_seq >= 0 and not p.awaiting_auth]
        if not waiting:
            return None
        return min(waiting, key=lambda p: p.sent_seq).event.id

    def _on_closed(self, msg: RelayClosed) -> None:
        sub = self._subs.get(msg.subscription_id)
        if sub is None:
            return
        if self._retryable(msg.reason, sub.sent_seq, sub.retried):
            self._retry_sub(msg.subscription_id, sub)
            return
        del self._subs[msg.subscription_id]
        self._events.append(SubscriptionClosed(msg.subscription_id, msg.reason))

    def _retry_sub(self, sub_id: str, sub: _Sub) -> None:
        sub.retried = True
        if self._auth_seq is None:
            sub.awaiting_auth = True
        else:
            self._send_req(sub_id, sub)

    def _on_notice(self, msg: RelayNotice) -> None:
        reason = Reason.parse(msg.message)
        if reason.prefix not in _AUTH_PREFIXES:
            _log.info("relay %s NOTICE (%d chars)", self.url, len(msg.message))
            return
        for sub_id, sub in list(self._subs.items()):
            waiting = not sub.eose and not sub.awaiting_auth
            if not waiting or not (self._auth_seq is None or self._sent_before_auth(sub.sent_seq)):
                continue
            if self._retryable(reason, sub.sent_seq, sub.retried):
                self._retry_sub(sub_id, sub)
            else:
                del self._subs[sub_id]
                self._events.append(SubscriptionClosed(sub_id, reason))

    def _on_auth(self, challenge: str) -> None:
        self.challenge = challenge
        if self._signer is None:
            _log.debug("relay %s asked for AUTH; no key configured", self.url)
            return
        signed = self._signer(self.url, challenge)
        auths = (signed,) if isinstance(signed, Event) else tuple(signed)
        self.auth_event_ids = tuple(auth.id for auth in auths)
        self.auth_event_id = self.auth_event_ids[0] if auths else None
        self._auth_refusals = {}
        self.auth_refused = None
        for auth in auths:  # every AUTH goes out before anything waiting for it is re-sent
            self._auth_seq = self._emit(ClientAuth(auth).to_json())
            _log.info("relay %s: sent AUTH %s", self.url, auth.id)
        for sub_id, sub in self._subs.items():
            if sub.awaiting_auth:
                sub.awaiting_auth = False
                self._send_req(sub_id, sub)
        for pub in self._publishes.values():
            if pub.awaiting_auth:
                pub.awaiting_auth = False
                self._send_publish(pub)

    def _fail_awaiting_auth(self, reason: Reason) -> None:
        for event_id, pub in list(self._publishes.items()):
            if pub.awaiting_auth:
                del self._publishes[event_id]
                self._events.append(OkReceived(event_id, False, reason))
        for sub_id, sub in list(self._subs.items()):
            if sub.awaiting_auth:
                del self._subs[sub_id]
                self._events.append(SubscriptionClosed(sub_id, reason))
