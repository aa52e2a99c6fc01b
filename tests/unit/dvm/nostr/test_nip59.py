"""NIP-59 seal / gift wrap / unwrap: round trips, every unwrap check, garbage."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dvm.nostr import nip44
from dvm.nostr.errors import EventError, UnwrapError
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip59 import gift_wrap, seal, unwrap, wrap
from tests.hostile_wraps import (
    MALFORMED_KINDS,
    event_templates,
    malformed_wraps,
    wrap_rumor_text,
    wrap_seal_text,
)
from tests.strategies import hostile_event, hostile_json

SENDER = SecretKey(b"\x11" * 32)
RECIPIENT = SecretKey(b"\x22" * 32)
WRAPPER = SecretKey(b"\x33" * 32)
STRANGER = SecretKey(b"\x44" * 32)
SECRET_TEXT = "the launch code is 0000"
T = 1_700_000_000


def _n(i: int) -> bytes:
    return bytes([i]) * 32


def _rumor(content: str = SECRET_TEXT, **overrides: Any) -> UnsignedEvent:
    fields: dict[str, Any] = {
        "pubkey": SENDER.public_key.hex(),
        "created_at": T,
        "kind": 14,
        "tags": (("p", RECIPIENT.public_key.hex()),),
        "content": content,
    }
    fields.update(overrides)
    return UnsignedEvent(**fields)


def _wrap(rumor: UnsignedEvent | None = None, **kwargs: Any) -> Event:
    args: dict[str, Any] = {
        "wrapper": WRAPPER,
        "seal_created_at": T - 100,
        "wrap_created_at": T - 200,
        "seal_nonce": _n(1),
        "wrap_nonce": _n(2),
        "seal_aux_rand": _n(3),
        "wrap_aux_rand": _n(4),
    }
    args.update(kwargs)
    return wrap(rumor or _rumor(), SENDER, RECIPIENT.public_key, **args)


def _craft_seal(
    plaintext: str,
    *,
    signer: SecretKey = SENDER,
    kind: int = 13,
    tags: tuple[tuple[str, ...], ...] = (),
) -> Event:
    """A seal whose encrypted content is exactly ``plaintext`` (for malformed rumors)."""
    key = nip44.get_conversation_key(signer, RECIPIENT.public_key)
    content = nip44.encrypt(plaintext, key, nonce=_n(5))
    return UnsignedEvent(signer.public_key.hex(), T, kind, tags, content).sign(
        signer, aux_rand=_n(6)
    )


def _craft_wrap(
    plaintext: str, *, kind: int = 1059, tags: tuple[tuple[str, ...], ...] | None = None
) -> Event:
    """A gift wrap whose encrypted content is exactly ``plaintext`` (for malformed seals)."""
    key = nip44.get_conversation_key(WRAPPER, RECIPIENT.public_key)
    content = nip44.encrypt(plaintext, key, nonce=_n(7))
    if tags is None:
        tags = (("p", RECIPIENT.public_key.hex()),)
    return UnsignedEvent(WRAPPER.public_key.hex(), T, kind, tags, content).sign(
        WRAPPER, aux_rand=_n(8)
    )


# --- building ---------------------------------------------------------------------------------


def test_seal_is_kind_13_with_empty_tags_signed_by_the_sender() -> None:
    sealed = seal(
        _rumor(), SENDER, RECIPIENT.public_key, created_at=T - 5, nonce=_n(1), aux_rand=_n(2)
    )
    assert (sealed.kind, sealed.tags, sealed.pubkey) == (13, (), SENDER.public_key.hex())
    assert sealed.created_at == T - 5
    assert Event.from_json(sealed.to_json()) == sealed
    key = nip44.get_conversation_key(RECIPIENT, SENDER.public_key)
    inner = json.loads(nip44.decrypt(sealed.content, key))
    assert inner == _rumor().to_dict()  # with its id, without a sig
    assert "sig" not in inner


def test_gift_wrap_has_the_p_tag_and_extra_tags() -> None:
    wrapped = _wrap(kind=21059, extra_tags=[("expiration", "1700100000")])
    assert wrapped.kind == 21059
    assert wrapped.pubkey == WRAPPER.public_key.hex()
    assert wrapped.tags == (("p", RECIPIENT.public_key.hex()), ("expiration", "1700100000"))
    assert wrapped.created_at == T - 200
    assert SECRET_TEXT not in wrapped.to_json()


def test_seal_refuses_a_rumor_of_someone_else() -> None:
    with pytest.raises(EventError, match="not the sender's"):
        seal(
            _rumor(pubkey=STRANGER.public_key.hex()),
            SENDER,
            RECIPIENT.public_key,
            created_at=T,
            nonce=_n(1),
            aux_rand=_n(2),
        )


@pytest.mark.parametrize("kind", [1, 13, 1058, 4, 20059])
def test_gift_wrap_refuses_other_kinds(kind: int) -> None:
    with pytest.raises(EventError, match="1059 or 21059"):
        _wrap(kind=kind)


def test_gift_wrap_refuses_the_sender_key_as_wrapper() -> None:
    with pytest.raises(EventError, match="one-time key"):
        _wrap(wrapper=SENDER)


def test_gift_wrap_refuses_a_non_seal() -> None:
    not_a_seal = _rumor().sign(SENDER, aux_rand=_n(1))
    with pytest.raises(EventError, match="kind-13 seal"):
        gift_wrap(
            not_a_seal,
            RECIPIENT.public_key,
            wrapper=WRAPPER,
            created_at=T,
            nonce=_n(1),
            aux_rand=_n(2),
        )


def test_gift_wrap_refuses_a_second_p_tag() -> None:
    with pytest.raises(EventError, match="exactly one recipient"):
        _wrap(extra_tags=[("p", STRANGER.public_key.hex())])


def test_wrap_refuses_reusing_one_nonce_for_both_layers() -> None:
    with pytest.raises(EventError, match="different NIP-44 nonces"):
        _wrap(wrap_nonce=_n(1))


# --- unwrapping: success -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", [1059, 21059])
def test_round_trip(kind: int) -> None:
    wrapped = _wrap(kind=kind)
    opened = unwrap(
        Event.from_json(wrapped.to_json()), RECIPIENT, expected_sender=SENDER.public_key
    )
    assert opened.rumor == _rumor()
    assert opened.sender == SENDER.public_key
    assert opened.wrap_kind == kind
    assert opened.wrap_id == wrapped.id


@settings(max_examples=40, deadline=None)
@given(
    content=st.text(max_size=400),
    tags=st.lists(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=4), max_size=5),
    kind=st.integers(0, 65535),
    created_at=st.integers(0, 2**40),
)
def test_any_rumor_round_trips(
    content: str, tags: list[list[str]], kind: int, created_at: int
) -> None:
    rumor = _rumor(content, tags=tags, kind=kind, created_at=created_at)
    opened = unwrap(_wrap(rumor), RECIPIENT)
    assert opened.rumor == rumor
    assert opened.rumor.id == rumor.id


def test_a_rumor_without_id_is_accepted() -> None:
    body = _rumor().to_dict()
    del body["id"]
    seal_event = _craft_seal(json.dumps(body))
    opened = unwrap(_craft_wrap(seal_event.to_json()), RECIPIENT)
    assert opened.rumor == _rumor()


# --- unwrapping: every check --------------------------------------------------------------------


def _refused(wrapped: Event, match: str, **kwargs: Any) -> UnwrapError:
    with pytest.raises(UnwrapError, match=match) as info:
        unwrap(wrapped, RECIPIENT, **kwargs)
    assert SECRET_TEXT not in str(info.value)
    assert RECIPIENT.reveal_hex() not in str(info.value)
    return info.value


def test_refuses_a_wrong_wrap_kind() -> None:
    seal_json = seal(
        _rumor(), SENDER, RECIPIENT.public_key, created_at=T, nonce=_n(1), aux_rand=_n(2)
    ).to_json()
    _refused(_craft_wrap(seal_json, kind=4), "kind 4 is not 1059 or 21059")


def test_refuses_no_p_tag() -> None:
    seal_json = _craft_seal(_rumor().to_json()).to_json()
    _refused(_craft_wrap(seal_json, tags=()), "exactly one 'p' tag, found 0")


def test_refuses_two_p_tags() -> None:
    seal_json = _craft_seal(_rumor().to_json()).to_json()
    tags = (("p", RECIPIENT.public_key.hex()), ("p", STRANGER.public_key.hex()))
    _refused(_craft_wrap(seal_json, tags=tags), "exactly one 'p' tag, found 2")


def test_refuses_a_wrap_for_someone_else() -> None:
    wrapped = wrap(
        _rumor(),
        SENDER,
        STRANGER.public_key,
        wrapper=WRAPPER,
        seal_created_at=T,
        wrap_created_at=T,
        seal_nonce=_n(1),
        wrap_nonce=_n(2),
        seal_aux_rand=_n(3),
        wrap_aux_rand=_n(4),
    )
    _refused(wrapped, "not addressed to this key")


def test_refuses_a_p_tag_lie() -> None:
    # Encrypted to STRANGER but tagged for RECIPIENT: the MAC fails.
    key = nip44.get_conversation_key(WRAPPER, STRANGER.public_key)
    content = nip44.encrypt(_craft_seal(_rumor().to_json()).to_json(), key, nonce=_n(7))
    lying = UnsignedEvent(
        WRAPPER.public_key.hex(), T, 1059, (("p", RECIPIENT.public_key.hex()),), content
    ).sign(WRAPPER, aux_rand=_n(8))
    _refused(lying, "does not decrypt")


def test_refuses_undecryptable_content() -> None:
    garbage = UnsignedEvent(
        WRAPPER.public_key.hex(), T, 1059, (("p", RECIPIENT.public_key.hex()),), "not nip44"
    ).sign(WRAPPER, aux_rand=_n(8))
    _refused(garbage, "does not decrypt")


def test_refuses_a_seal_that_is_not_json() -> None:
    _refused(_craft_wrap("this is not an event"), "seal is not a valid signed event")


def test_refuses_a_seal_with_a_bad_signature() -> None:
    body = _craft_seal(_rumor().to_json()).to_dict()
    body["sig"] = ("00" if body["sig"][:2] != "00" else "11") + body["sig"][2:]
    _refused(_craft_wrap(json.dumps(body)), "seal is not a valid signed event")


def test_refuses_a_seal_with_a_wrong_id() -> None:
    body = _craft_seal(_rumor().to_json()).to_dict()
    body["created_at"] += 1
    _refused(_craft_wrap(json.dumps(body)), "seal is not a valid signed event")


def test_refuses_a_seal_of_another_kind() -> None:
    _refused(_craft_wrap(_craft_seal(_rumor().to_json(), kind=14).to_json()), "kind 14 is not 13")


def test_refuses_a_seal_with_tags() -> None:
    sealed = _craft_seal(_rumor().to_json(), tags=(("p", RECIPIENT.public_key.hex()),))
    _refused(_craft_wrap(sealed.to_json()), "only tag may be one 'expiration'")
    two = _craft_seal(_rumor().to_json(), tags=(("expiration", str(T)), ("expiration", str(T))))
    _refused(_craft_wrap(two.to_json()), "only tag may be one 'expiration'")


@pytest.mark.parametrize("value", ["", "-1", "1e9", "١٢٣", "12345678901234567", "9" * 16])
def test_refuses_a_seal_expiration_that_is_not_a_timestamp(value: str) -> None:
    sealed = _craft_seal(_rumor().to_json(), tags=(("expiration", value),))
    _refused(_craft_wrap(sealed.to_json()), "expiration is (not a unix timestamp|out of range)")


def test_a_seal_with_an_expiration_is_accepted_until_it_expires() -> None:
    # NIP-17 disappearing messages: the seal carries ["expiration", t]; NIP-59 still wants no
    # other tag. Before t it opens (and says when it expires); at or after t it is refused.
    sealed = seal(
        _rumor(),
        SENDER,
        RECIPIENT.public_key,
        created_at=T,
        nonce=_n(1),
        aux_rand=_n(2),
        expiration=T + 60,
    )
    assert sealed.tags == (("expiration", str(T + 60)),)
    wrapped = gift_wrap(
        sealed, RECIPIENT.public_key, wrapper=WRAPPER, created_at=T, nonce=_n(3), aux_rand=_n(4)
    )
    assert unwrap(wrapped, RECIPIENT).expiration == T + 60
    assert unwrap(wrapped, RECIPIENT, now=T + 59).rumor.content == SECRET_TEXT
    for now in (T + 60, T + 10_000):
        _refused(wrapped, f"expired at {T + 60}", now=now)
    assert unwrap(_wrap(), RECIPIENT, now=T).expiration is None


def test_refuses_a_seal_that_does_not_decrypt() -> None:
    sealed = UnsignedEvent(SENDER.public_key.hex(), T, 13, (), "AAAA").sign(SENDER, aux_rand=_n(1))
    _refused(_craft_wrap(sealed.to_json()), "seal [0-9a-f]+…: does not decrypt")


def test_refuses_a_signed_rumor() -> None:
    signed = _rumor().sign(SENDER, aux_rand=_n(1))
    _refused(_craft_wrap(_craft_seal(signed.to_json()).to_json()), "must not be signed")


def test_refuses_a_rumor_with_a_wrong_id() -> None:
    body = _rumor().to_dict()
    body["id"] = "00" * 32
    _refused(_craft_wrap(_craft_seal(json.dumps(body)).to_json()), "rumor id does not match")


def test_refuses_a_rumor_that_is_not_an_event() -> None:
    _refused(_craft_wrap(_craft_seal("[1, 2, 3]").to_json()), "rumor does not parse")


def test_refuses_impersonation_rumor_pubkey_differs_from_seal() -> None:
    forged = _rumor(pubkey=STRANGER.public_key.hex())
    _refused(_craft_wrap(_craft_seal(forged.to_json()).to_json()), "impersonation")


def test_refuses_an_unexpected_sender() -> None:
    _refused(_wrap(), "not the expected sender", expected_sender=STRANGER.public_key)


def test_refuses_payloads_over_the_bound() -> None:
    _refused(_wrap(_rumor("x" * 2000)), "does not decrypt", max_payload_chars=1000)


def test_every_failure_is_the_one_error_type() -> None:
    # A peer sees one error type whatever failed (DESIGN: one error to the peer).
    failures = [
        _craft_wrap("nope"),
        _craft_wrap(_craft_seal("nope").to_json()),
        _craft_wrap(_craft_seal(_rumor(pubkey=STRANGER.public_key.hex()).to_json()).to_json()),
    ]
    for failure in failures:
        with pytest.raises(UnwrapError):
            unwrap(failure, RECIPIENT)


@settings(max_examples=60, deadline=None)
@given(
    inner=st.one_of(
        st.text(min_size=1, max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda children: (
                st.lists(children, max_size=4)
                | st.dictionaries(st.text(max_size=8), children, max_size=6)
            ),
            max_leaves=20,
        ).map(json.dumps),
    )
)
def test_garbage_inside_a_wrap_raises_only_unwrap_error(inner: str) -> None:
    # Garbage as the seal, and garbage as the rumor inside a valid seal.
    with pytest.raises(UnwrapError):
        unwrap(_craft_wrap(inner), RECIPIENT)
    with pytest.raises(UnwrapError):
        unwrap(_craft_wrap(_craft_seal(inner).to_json()), RECIPIENT)


# --- issue 10: hostile JSON text inside the layers: UnwrapError and nothing else ------------


@pytest.mark.parametrize("name", MALFORMED_KINDS)
def test_each_malformed_wrap_kind_raises_only_unwrap_error(name: str) -> None:
    wraps = malformed_wraps(
        RECIPIENT.public_key,
        attacker=STRANGER,
        impersonate=SENDER.public_key,
        job="ab" * 32,
        now=T,
    )
    for expected in (None, STRANGER.public_key, SENDER.public_key):
        with pytest.raises(UnwrapError):
            unwrap(wraps[name], RECIPIENT, expected_sender=expected)


_SEAL, _RUMOR = event_templates(SENDER, RECIPIENT.public_key, "ab" * 32, now=T)


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(hostile_json(), hostile_event(_SEAL), hostile_event(_RUMOR)).filter(
        lambda t: 0 < len(t) < 60000
    )
)
def test_hostile_json_as_seal_or_rumor_raises_only_unwrap_error(text: str | bytes) -> None:
    raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    with pytest.raises(UnwrapError, match=r"seal is not a valid signed event|does not decrypt"):
        unwrap(wrap_seal_text(raw, RECIPIENT.public_key, now=T, kind=1059), RECIPIENT)
    rumor_wrap = wrap_rumor_text(raw, SENDER, RECIPIENT.public_key, now=T, kind=1059)
    reason = ""
    try:
        unwrap(rumor_wrap, RECIPIENT)  # the intact template is a genuine rumor: it opens
    except UnwrapError as exc:
        reason = str(exc)
    assert not reason or re.search(r"rumor does not parse|seal .*: does not decrypt", reason)
