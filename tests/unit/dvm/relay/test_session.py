"""The sans-I/O relay session, driven with frames: no sockets, no clock, no RNG."""

from __future__ import annotations

import json

from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.filters import Filter
from dvm.nostr.keys import SecretKey
from dvm.nostr.messages import (
    ClientAuth,
    ClientClose,
    ClientEvent,
    ClientReq,
    Reason,
    ReasonPrefix,
    parse_client_message,
)
from dvm.nostr.nip42 import sign_auth_event
from dvm.relay.session import (
    EoseReceived,
    EventReceived,
    OkReceived,
    RelaySession,
    SubscriptionClosed,
)

URL = "ws://relay.test"
KEY = SecretKey(bytes.fromhex("55" * 32))


def event(created_at: int = 1000, kind: int = 1) -> Event:
    return UnsignedEvent(KEY.public_key.hex(), created_at, kind, (), "c").sign(
        KEY, aux_rand=bytes(32)
    )


def signer(relay_url: str, challenge: str) -> Event:
    return sign_auth_event(
        KEY, relay_url=relay_url, challenge=challenge, created_at=5, aux_rand=bytes(32)
    )


def sent(session: RelaySession) -> list[object]:
    return [parse_client_message(frame) for frame in session.data_to_send()]


def ok(event_id: str, accepted: bool, reason: str = "") -> str:
    return json.dumps(["OK", event_id, accepted, reason])


def test_publish_waits_for_connection_and_is_resent_after_reconnect() -> None:
    s = RelaySession(URL)
    e = event()
    s.publish(e)
    assert s.data_to_send() == []
    s.connection_opened()
    assert sent(s) == [ClientEvent(e)]
    s.connection_lost()
    s.connection_opened()
    assert sent(s) == [ClientEvent(e)]  # no OK yet: replayed
    s.receive(ok(e.id, True), now=0)
    assert s.events_received() == [OkReceived(e.id, True, Reason.parse(""))]
    s.connection_lost()
    s.connection_opened()
    assert sent(s) == []


def test_ok_without_id_matches_the_oldest_event_in_flight() -> None:
    s = RelaySession(URL)
    s.connection_opened()
    first, second = event(1), event(2)
    s.publish(first)
    s.publish(second)
    s.data_to_send()
    s.receive(ok("", False, "invalid: too big"), now=0)
    s.receive(ok(second.id, True), now=0)
    received = s.events_received()
    assert [(r.event_id, r.accepted) for r in received if isinstance(r, OkReceived)] == [
        (first.id, False),
        (second.id, True),
    ]


def test_resubscribe_uses_high_water_minus_overlap() -> None:
    s = RelaySession(URL, since_overlap_s=30)
    s.connection_opened()
    s.subscribe("s1", (Filter(kinds=(1,)), Filter(kinds=(7,), since=5000)))
    assert sent(s) == [ClientReq("s1", (Filter(kinds=(1,)), Filter(kinds=(7,), since=5000)))]
    e = event(1000)
    s.receive(json.dumps(["EVENT", "s1", e.to_dict()]), now=2000)
    s.receive(json.dumps(["EOSE", "s1"]), now=2000)
    assert s.events_received() == [EventReceived("s1", e), EoseReceived("s1")]
    s.connection_lost()
    s.connection_opened()
    # The first filter is narrowed to 1000 - 30; the second keeps its later since.
    assert sent(s) == [
        ClientReq("s1", (Filter(kinds=(1,), since=970), Filter(kinds=(7,), since=5000)))
    ]


def test_eose_without_events_dates_the_high_water_mark() -> None:
    s = RelaySession(URL, since_overlap_s=10)
    s.connection_opened()
    s.subscribe("s1", (Filter(kinds=(1,)),))
    s.receive(json.dumps(["EOSE", "s1"]), now=777)
    assert s.high_water("s1") == 777
    s.connection_lost()
    s.connection_opened()
    assert sent(s)[-1] == ClientReq("s1", (Filter(kinds=(1,), since=767),))


def test_filters_that_can_match_gift_wraps_reach_two_days_further_back() -> None:
    # A 1059 gift wrap published while we were away may be dated up to two days before
    # anything we saw (NIP-59); narrowing to high_water - overlap would lose it for good.
    s = RelaySession(URL, since_overlap_s=10)
    s.connection_opened()
    wraps, anything, plain = Filter(kinds=(1059, 21059)), Filter(), Filter(kinds=(7000,))
    s.subscribe("s1", (wraps, anything, plain))
    s.receive(json.dumps(["EOSE", "s1"]), now=1_000_000)
    s.connection_lost()
    s.connection_opened()
    two_days = 2 * 24 * 3600
    assert sent(s)[-1] == ClientReq(
        "s1",
        (
            Filter(kinds=(1059, 21059), since=1_000_000 - 10 - two_days),
            Filter(since=1_000_000 - 10 - two_days),
            Filter(kinds=(7000,), since=1_000_000 - 10),
        ),
    )


def test_events_outside_the_filters_or_unknown_subscriptions_are_dropped() -> None:
    s = RelaySession(URL)
    s.connection_opened()
    s.subscribe("s1", (Filter(kinds=(7,)),))
    s.receive(json.dumps(["EVENT", "s1", event(kind=1).to_dict()]), now=0)
    s.receive(json.dumps(["EVENT", "other", event(kind=7).to_dict()]), now=0)
    s.receive("not json", now=0)
    assert s.events_received() == []
    assert s.invalid_messages == 1


def test_unsubscribe_sends_close_and_closed_is_reported() -> None:
    s = RelaySession(URL)
    s.connection_opened()
    s.subscribe("a", (Filter(),))
    s.subscribe("b", (Filter(),))
    s.unsubscribe("a")
    assert sent(s)[-1] == ClientClose("a")
    s.receive(json.dumps(["CLOSED", "b", "error: shutting down"]), now=0)
    (closed,) = s.events_received()
    assert isinstance(closed, SubscriptionClosed)
    assert closed.reason.prefix is ReasonPrefix.ERROR
    assert s.subscription_ids == frozenset()


def test_auth_required_is_answered_and_retried_once() -> None:
    s = RelaySession(URL, signer=signer)
    s.connection_opened()
    e = event()
    s.publish(e)
    s.subscribe("s1", (Filter(),))
    s.data_to_send()
    s.receive(ok(e.id, False, "auth-required: sign in"), now=0)
    s.receive(json.dumps(["CLOSED", "s1", "auth-required: sign in"]), now=0)
    assert s.data_to_send() == []  # no challenge yet: wait for it
    s.receive(json.dumps(["AUTH", "chal"]), now=0)
    frames = sent(s)
    assert isinstance(frames[0], ClientAuth)
    assert frames[0].event.tag_values("challenge") == ["chal"]
    assert frames[0].event.tag_values("relay") == [URL]
    assert set(map(type, frames[1:])) == {ClientReq, ClientEvent}
    assert s.authenticated
    # A second refusal is final.
    s.receive(ok(e.id, False, "auth-required: still no"), now=0)
    (result,) = s.events_received()
    assert isinstance(result, OkReceived)
    assert result.reason.prefix is ReasonPrefix.AUTH_REQUIRED


def test_restricted_before_auth_is_retried_like_nostr_relay_needs() -> None:
    s = RelaySession(URL, signer=signer)
    s.connection_opened()
    e = event()
    s.publish(e)
    s.subscribe("s1", (Filter(),))
    s.data_to_send()
    s.receive(json.dumps(["AUTH", "chal"]), now=0)  # the relay's greeting, read after we sent
    assert isinstance(sent(s)[0], ClientAuth)
    s.receive(ok("", False, "restricted: permission denied"), now=0)
    s.receive(json.dumps(["NOTICE", "restricted: permission denied"]), now=0)
    assert set(map(type, sent(s))) == {ClientEvent, ClientReq}
    assert s.events_received() == []


def test_restricted_after_auth_and_without_signer_is_final() -> None:
    anonymous = RelaySession(URL)
    anonymous.connection_opened()
    anonymous.subscribe("s1", (Filter(),))
    e = event()
    anonymous.publish(e)
    anonymous.receive(json.dumps(["AUTH", "chal"]), now=0)
    anonymous.receive(ok("", False, "restricted: permission denied"), now=0)
    anonymous.receive(json.dumps(["NOTICE", "restricted: permission denied"]), now=0)
    results = anonymous.events_received()
    assert {type(r) for r in results} == {OkReceived, SubscriptionClosed}
    assert all(r.reason.prefix is ReasonPrefix.RESTRICTED for r in results)  # type: ignore[union-attr]

    signed = RelaySession(URL, signer=signer)
    signed.connection_opened()
    signed.receive(json.dumps(["AUTH", "chal"]), now=0)
    signed.publish(e)  # sent after AUTH: a restricted answer is about the key, not the AUTH
    signed.receive(ok(e.id, False, "restricted: not a member"), now=0)
    (result,) = signed.events_received()
    assert isinstance(result, OkReceived)
    assert not result.accepted


def test_refused_auth_fails_what_waits_for_it() -> None:
    s = RelaySession(URL, signer=signer)
    s.connection_opened()
    e = event()
    s.publish(e)
    s.receive(ok(e.id, False, "auth-required: x"), now=0)
    s.receive(json.dumps(["AUTH", "chal"]), now=0)
    auth = sent(s)[-2]
    assert isinstance(auth, ClientAuth)
    s.receive(ok(auth.event.id, False, "invalid: bad challenge"), now=0)
    assert not s.authenticated
    s.receive(ok(e.id, False, "auth-required: x"), now=0)
    (result,) = s.events_received()
    assert isinstance(result, OkReceived)
    assert result.reason.prefix is ReasonPrefix.AUTH_REQUIRED


OTHER = SecretKey(bytes.fromhex("66" * 32))


def two_signer(relay_url: str, challenge: str) -> tuple[Event, ...]:
    return tuple(
        sign_auth_event(
            key, relay_url=relay_url, challenge=challenge, created_at=1000, aux_rand=bytes(32)
        )
        for key in (KEY, OTHER)
    )


def test_auth_as_several_keys_sends_every_auth_before_the_retry() -> None:
    # NIP-42 allows several AUTH events on one connection: U signs the request, S talks.
    s = RelaySession(URL, signer=two_signer)
    s.connection_opened()
    e = event()
    s.publish(e)
    s.data_to_send()
    s.receive(ok("", False, "auth-required: sign in"), now=0)
    s.receive(json.dumps(["AUTH", "chal"]), now=0)
    frames = sent(s)
    assert [type(f) for f in frames] == [ClientAuth, ClientAuth, ClientEvent]
    authors = [f.event.pubkey for f in frames[:2]]  # type: ignore[attr-defined]
    assert authors == [KEY.public_key.hex(), OTHER.public_key.hex()]
    assert len(s.auth_event_ids) == 2
    # One key refused: the other still stands.
    s.receive(ok(s.auth_event_ids[0], False, "restricted: unknown key"), now=0)
    assert s.authenticated
    s.receive(ok(s.auth_event_ids[1], False, "restricted: unknown key"), now=0)
    assert not s.authenticated
