"""NIP-59 gift wrap: rumor -> seal (kind 13) -> gift wrap (kind 1059 / 21059), and back.

NIP-59: https://github.com/nostr-protocol/nips/blob/master/59.md
NIP-44 v2 encrypts both layers (:mod:`dvm.nostr.nip44`).

* :func:`seal`: ``content = NIP-44(rumor JSON with its id, no sig)`` under
  ``conv(sender, recipient)``, kind 13, **empty tags**, signed by the sender.
* :func:`gift_wrap`: ``content = NIP-44(seal JSON)`` under ``conv(wrapper, recipient)``,
  ``tags = [["p", recipient], *extra_tags]``, signed by the one-time ``wrapper`` key. Kind 1059
  (NIP-59, stored by relays) or 21059 (the ephemeral variant cdvm/1 prefers).
* :func:`unwrap` opens both layers and applies every check, each failure one
  :class:`UnwrapError` (its message names the check for the operator log, never plaintext):
  the wrap kind is 1059 or 21059; it has exactly one ``p`` tag, naming the recipient; the wrap
  decrypts; the seal is a valid signed event (id and BIP-340 signature), kind 13 whose tags are
  empty or one NIP-40 ``["expiration", unix-seconds]`` (NIP-17 disappearing messages put one
  there; any other tag is refused, as NIP-59 asks); with ``now`` given, a seal whose expiration
  is not after ``now`` is refused (expired: to be ignored); the seal decrypts; the rumor parses,
  carries no ``sig`` and its ``id``, when present, matches; the seal's pubkey is the rumor's
  pubkey (otherwise anyone could impersonate anyone, NIP-17); the sender is
  ``expected_sender`` when one is given.

Randomness and time are the caller's: ``nonce`` (32 bytes per NIP-44 payload), ``aux_rand``
(32 bytes per signature), the one-time ``wrapper`` key, and ``created_at`` of the seal and of the
wrap. NIP-59 says those two timestamps SHOULD be tweaked to thwart time analysis and SHOULD be
in the past: callers pass ``now - uniform(0, 2 days)``, drawn independently for the seal and the
wrap (:func:`dvm.nostr.nip17.gift_wraps` does that from injected random bytes), except that an
ephemeral (21059) wrap carries the current time: relays store no ephemeral event and refuse
stale ones (strfry: older than 60 s). The rumor keeps the real time. A wrapper key must never
be reused, nor be the sender's key (which would reveal the sender); the latter is refused here,
the former is the caller's duty.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from . import nip44
from .errors import EventError, NostrError, UnwrapError
from .event import Event, UnsignedEvent
from .keys import PublicKey, SecretKey

__all__ = [
    "GIFT_WRAP_KIND",
    "GIFT_WRAP_KINDS",
    "SEAL_KIND",
    "TWO_DAYS_S",
    "WRAP_KIND_EPHEMERAL",
    "Unwrapped",
    "gift_wrap",
    "seal",
    "unwrap",
    "wrap",
]

SEAL_KIND = 13
GIFT_WRAP_KIND = 1059
WRAP_KIND_EPHEMERAL = 21059
GIFT_WRAP_KINDS = frozenset({GIFT_WRAP_KIND, WRAP_KIND_EPHEMERAL})
TWO_DAYS_S = 2 * 24 * 60 * 60


@dataclass(frozen=True, slots=True)
class Unwrapped:
    """An opened gift wrap: the rumor and who sealed it (authenticated by the seal signature)."""

    rumor: UnsignedEvent
    sender: PublicKey
    wrap_kind: int
    wrap_id: str
    seal_id: str
    expiration: int | None = None  # the seal's NIP-40 expiration, if it had one


def _encrypt(plaintext: str, secret: SecretKey, public: PublicKey, nonce: bytes) -> str:
    key = nip44.get_conversation_key(secret, public)
    try:
        return nip44.encrypt(plaintext, key, nonce=nonce)
    finally:
        key.wipe()


def seal(
    rumor: UnsignedEvent,
    sender: SecretKey,
    recipient: PublicKey,
    *,
    created_at: int,
    nonce: bytes,
    aux_rand: bytes,
    expiration: int | None = None,
) -> Event:
    """Seal ``rumor`` (authored by ``sender``) for ``recipient``: a signed kind-13 event.

    ``expiration`` adds NIP-17's disappearing-message tag ``["expiration", str(expiration)]``.
    """
    if rumor.pubkey != sender.public_key.hex():
        raise EventError("the rumor's pubkey is not the sender's: the seal would not verify")
    content = _encrypt(rumor.to_json(), sender, recipient, nonce)
    tags = () if expiration is None else (("expiration", str(expiration)),)
    return UnsignedEvent(sender.public_key.hex(), created_at, SEAL_KIND, tags, content).sign(
        sender, aux_rand=aux_rand
    )


def gift_wrap(
    sealed: Event,
    recipient: PublicKey,
    *,
    wrapper: SecretKey,
    created_at: int,
    nonce: bytes,
    aux_rand: bytes,
    kind: int = GIFT_WRAP_KIND,
    extra_tags: Sequence[Sequence[str]] = (),
) -> Event:
    """Wrap a seal for ``recipient`` under the one-time ``wrapper`` key."""
    if kind not in GIFT_WRAP_KINDS:
        raise EventError(f"gift wrap kind must be 1059 or 21059, not {kind}")
    if sealed.kind != SEAL_KIND or any(tag[0] != "expiration" for tag in sealed.tags):
        raise EventError("only a kind-13 seal with no tag but an expiration can be gift-wrapped")
    if wrapper.public_key.hex() == sealed.pubkey:
        raise EventError("the wrapper key must be a one-time key, not the sender's")
    if any(tag and tag[0] == "p" for tag in extra_tags):
        raise EventError("the gift wrap names exactly one recipient")
    content = _encrypt(sealed.to_json(), wrapper, recipient, nonce)
    tags = (("p", recipient.hex()), *(tuple(tag) for tag in extra_tags))
    return UnsignedEvent(wrapper.public_key.hex(), created_at, kind, tags, content).sign(
        wrapper, aux_rand=aux_rand
    )


def wrap(
    rumor: UnsignedEvent,
    sender: SecretKey,
    recipient: PublicKey,
    *,
    wrapper: SecretKey,
    seal_created_at: int,
    wrap_created_at: int,
    seal_nonce: bytes,
    wrap_nonce: bytes,
    seal_aux_rand: bytes,
    wrap_aux_rand: bytes,
    kind: int = GIFT_WRAP_KIND,
    extra_tags: Sequence[Sequence[str]] = (),
) -> Event:
    """:func:`seal` then :func:`gift_wrap`. Every random input is distinct and the caller's."""
    if seal_nonce == wrap_nonce:
        raise EventError("the seal and the wrap need different NIP-44 nonces")
    sealed = seal(
        rumor,
        sender,
        recipient,
        created_at=seal_created_at,
        nonce=seal_nonce,
        aux_rand=seal_aux_rand,
    )
    return gift_wrap(
        sealed,
        recipient,
        wrapper=wrapper,
        created_at=wrap_created_at,
        nonce=wrap_nonce,
        aux_rand=wrap_aux_rand,
        kind=kind,
        extra_tags=extra_tags,
    )


def _decrypt(payload: str, secret: SecretKey, public: PublicKey, max_payload_chars: int) -> str:
    key = nip44.get_conversation_key(secret, public)
    try:
        return nip44.decrypt(payload, key, max_payload_chars=max_payload_chars)
    finally:
        key.wipe()


def unwrap(
    wrapped: Event,
    recipient: SecretKey,
    *,
    expected_sender: PublicKey | None = None,
    max_payload_chars: int = nip44.DEFAULT_MAX_PAYLOAD_CHARS,
    now: int | None = None,
) -> Unwrapped:
    """Open a gift wrap addressed to ``recipient``, with every NIP-59/NIP-17 check (above)."""
    where = f"gift wrap {wrapped.id[:16]}…"
    if wrapped.kind not in GIFT_WRAP_KINDS:
        raise UnwrapError(f"{where}: kind {wrapped.kind} is not 1059 or 21059")
    p_tags = [t for t in wrapped.tags if t[0] == "p"]
    if len(p_tags) != 1 or len(p_tags[0]) < 2:
        raise UnwrapError(f"{where}: expected exactly one 'p' tag, found {len(p_tags)}")
    if p_tags[0][1] != recipient.public_key.hex():
        raise UnwrapError(f"{where}: not addressed to this key")
    try:
        seal_json = _decrypt(wrapped.content, recipient, wrapped.author, max_payload_chars)
    except NostrError:
        raise UnwrapError(f"{where}: does not decrypt") from None
    try:
        sealed = Event.from_json(seal_json)
    except NostrError:
        raise UnwrapError(f"{where}: the seal is not a valid signed event") from None
    where = f"{where} seal {sealed.id[:16]}…"
    if sealed.kind != SEAL_KIND:
        raise UnwrapError(f"{where}: kind {sealed.kind} is not 13")
    expiration = _seal_expiration(sealed, where)
    if expiration is not None and now is not None and expiration <= now:
        raise UnwrapError(f"{where}: expired at {expiration} (now {now})")
    if expected_sender is not None and sealed.pubkey != expected_sender.hex():
        raise UnwrapError(f"{where}: sealed by {sealed.pubkey[:16]}…, not the expected sender")
    try:
        rumor_json = _decrypt(sealed.content, recipient, sealed.author, max_payload_chars)
    except NostrError:
        raise UnwrapError(f"{where}: does not decrypt") from None
    try:
        rumor = UnsignedEvent.from_json(rumor_json)
    except NostrError as exc:
        raise UnwrapError(f"{where}: the rumor does not parse ({_reason(exc)})") from None
    if rumor.pubkey != sealed.pubkey:
        raise UnwrapError(f"{where}: rumor pubkey differs from the seal's (impersonation)")
    return Unwrapped(
        rumor=rumor,
        sender=sealed.author,
        wrap_kind=wrapped.kind,
        wrap_id=wrapped.id,
        seal_id=sealed.id,
        expiration=expiration,
    )


_MAX_EXPIRATION = 2**53  # NIP-40 timestamps are JSON numbers; past this they are not exact


def _seal_expiration(sealed: Event, where: str) -> int | None:
    # NIP-59: seal tags MUST be empty; NIP-17 (disappearing messages) adds one NIP-40 expiration.
    if not sealed.tags:
        return None
    if len(sealed.tags) != 1 or sealed.tags[0][0] != "expiration":
        raise UnwrapError(f"{where}: a seal's only tag may be one 'expiration'")
    tag = sealed.tags[0]
    if len(tag) < 2 or not tag[1].isascii() or not tag[1].isdigit() or len(tag[1]) > 16:
        raise UnwrapError(f"{where}: the seal's expiration is not a unix timestamp")
    value = int(tag[1])
    if value >= _MAX_EXPIRATION:
        raise UnwrapError(f"{where}: the seal's expiration is out of range")
    return value


def _reason(exc: NostrError) -> str:
    # EventError messages name fields and ids, never content; keep them for the operator log.
    return str(exc) if isinstance(exc, EventError) else type(exc).__name__
